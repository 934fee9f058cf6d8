"""The API's OpenAPI schema, exercised with generated inputs (schemathesis): whatever a client
sends within or outside the schema, the API answers with a documented status, a body matching
its documented model, and never a 5xx. Runs over the same real-chain store as test_api.py.

schemathesis' fixture-based loader does not work with pytest 9 (it writes `node._nodeid`), so
the schema is loaded at import through a forwarding ASGI app: the schema does not depend on the
settings, and the module fixture points the forwarder at the app over the real store.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings

from metascheduler.api import ApiSettings, create_app
from metascheduler.devnet.anvil import start_anvil

from .test_api import build_world

pytestmark = pytest.mark.chain


class Forward:
    """An ASGI app that forwards to `target`."""

    def __init__(self, target: FastAPI):
        self.target = target

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.target(scope, receive, send)


# Creating the app touches nothing (no database or chain connection until a request comes).
forward = Forward(create_app(ApiSettings(database_url="sqlite:///:memory:")))
schema = schemathesis.openapi.from_asgi("/openapi.json", forward)


@pytest.fixture(scope="module", autouse=True)
def real_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with start_anvil(accounts=10) as chain:
        world = build_world(chain, tmp_path_factory.mktemp("schema") / "store.db")
        placeholder = forward.target
        forward.target = create_app(world.settings(f"sqlite:///{world.db_file}"))
        yield
        forward.target = placeholder


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    case.call_and_validate()
