"""Every error root of the project derives from `MetaschedulerError` and carries the exit code
the CLI and every service end with when it stops them."""

from __future__ import annotations

import pytest

from metascheduler.agent.backends.base import BackendError
from metascheduler.agent.envelope.fetch import FetchError
from metascheduler.agent.envelope.runtime import RuntimeFailure
from metascheduler.agent.envelope.staging import StagingError
from metascheduler.agent.registration import AgentError
from metascheduler.agent.state import StateError
from metascheduler.audit.audit import AuditError
from metascheduler.chain.artifacts import ArtifactError
from metascheduler.chain.deployment import DeploymentError
from metascheduler.chain.errors import ChainError, RevertError, RpcUnavailable
from metascheduler.cli.errors import UsageError, classify
from metascheduler.client.errors import ClientError, InsufficientCredits, NotFound, WatchTimeout
from metascheduler.config import SettingsError
from metascheduler.errors import MetaschedulerError, one_line
from metascheduler.heartbeat import HeartbeatError
from metascheduler.keys import KeyLoadError
from metascheduler.results.errors import ResultsError, Tampered, UnsafeArchive
from metascheduler.results.http import ApiRefused, ApiUnavailable
from metascheduler.results.objects import ObjectStoreError
from metascheduler.sim.swf import TraceError
from metascheduler.spec import SpecError

#: Each error, as raised, with the exit code and the CLI's `--json` kind it must carry.
TABLE: list[tuple[MetaschedulerError, int, str]] = [
    (SpecError(["cpus: must be positive"]), 2, "invalid-spec"),
    (KeyLoadError("no key"), 2, "key"),
    (SettingsError("bad setting"), 2, "settings"),
    (UsageError("bad flag"), 2, "usage"),
    (DeploymentError("bad file"), 2, "deployment"),
    (TraceError("bad trace"), 2, "trace"),
    (StateError("state of another market"), 2, "state"),
    (RpcUnavailable("no answer"), 3, "rpc-unavailable"),
    (ApiUnavailable("no answer"), 3, "api-unavailable"),
    (ChainError("chain"), 1, "chain"),
    (RevertError("NotOracle", {}, "not the oracle"), 1, "revert"),
    (ClientError("refused"), 1, "refused"),
    (InsufficientCredits("a job", "market", 1, 2, ""), 1, "insufficient-credits"),
    (NotFound("no job"), 1, "not-found"),
    (WatchTimeout("too slow"), 1, "refused"),
    (AuditError("no job"), 1, "not-found"),
    (ResultsError("bad"), 1, "results"),
    (Tampered("tampered"), 1, "tampered"),
    (UnsafeArchive("escapes"), 1, "unsafe-archive"),
    (ApiRefused(400, "bad"), 1, "refused"),
    (ObjectStoreError("refused"), 1, "object-store"),
    (AgentError("cannot go on"), 1, "agent"),
    (BackendError("sbatch failed"), 1, "backend"),
    (StagingError("cannot stage"), 1, "staging"),
    (RuntimeFailure("podman failed"), 1, "runtime"),
    (FetchError("no such url"), 1, "fetch"),
    (HeartbeatError("stale"), 1, "heartbeat"),
    (ArtifactError("run forge build"), 1, "artifacts"),
]


@pytest.mark.parametrize(("exc", "code", "kind"), TABLE, ids=lambda v: type(v).__name__)
def test_each_root_carries_its_exit_code(exc: MetaschedulerError, code: int, kind: str) -> None:
    assert isinstance(exc, MetaschedulerError)
    assert (exc.exit_code, exc.kind) == (code, kind)
    assert classify(exc) == (code, kind)


def test_a_reverted_lookup_of_a_missing_job_is_not_found() -> None:
    assert classify(RevertError("JobNotFound", {"jobId": 9}, "no job 9")) == (1, "not-found")


def test_anything_else_keeps_its_traceback() -> None:
    with pytest.raises(ZeroDivisionError):
        classify(ZeroDivisionError("a bug"))


def test_last_words_are_one_line() -> None:
    assert one_line(SettingsError("two problems:\n  rpc_url: bad\n\n  port: bad")) == (
        "two problems: | rpc_url: bad | port: bad"
    )
