"""What every request needs, built once per app by `create_app` and kept on `app.state`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker

from .chainhead import ChainHead
from .metrics import Metrics
from .settings import ApiSettings


@dataclass
class ApiContext:
    settings: ApiSettings
    sessions: sessionmaker[Session]
    head: ChainHead
    metrics: Metrics

    def alive_since(self) -> float:
        """A provider whose last heartbeat is after this instant is alive."""
        return time.time() - self.settings.heartbeat_timeout_s


def get_context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


def get_session(request: Request) -> Iterator[Session]:
    with get_context(request).sessions() as s:
        yield s
