"""A job's results for its customer: the log, checked chunk by chunk and decrypted with the
wallet's key, and the outputs, checked against the digest the provider committed on chain,
decrypted and unpacked safely. The API is trusted for nothing but delivery."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from eth_account.signers.local import LocalAccount

from metascheduler.chain.types import JobView
from metascheduler.results import archive
from metascheduler.results.digest import check, result_digest
from metascheduler.results.http import ApiRefused, ApiUnavailable, ResultsApi
from metascheduler.results.logchain import Chunk, Deployment, LogReader, LogRecord

from .errors import ClientError, NotFound

#: Seconds a long-polling read waits at the API for a new chunk.
WAIT_S = 2.0
#: After the chain says the job ended, how long to wait for its final chunk (the agent ships it
#: at the end of its round) before ending the stream without it.
FINAL_GRACE_S = 15.0
#: Seconds between two tries while the API does not answer a follower.
RETRY_S = 0.5


@dataclass
class LogStream:
    """Iterates a job's log records in order. After the iteration: `final` (the provider's last
    chunk was read), `exit_code` (from it), `head` (the log chain's digest)."""

    api: ResultsApi
    account: LocalAccount
    deployment: Deployment
    job_id: int
    view: Callable[[], JobView]
    follow: bool = False
    timeout_s: float | None = None
    final: bool = False
    exit_code: int | None = None
    head: str = ""
    _reader: LogReader | None = field(default=None, repr=False)

    def __iter__(self) -> Iterator[LogRecord]:
        view = self.view()
        self._reader = reader = LogReader(
            bytes(self.account.key), self.deployment, self.job_id, view.provider
        )
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        ended_at: float | None = None
        while True:
            wait = WAIT_S if self.follow else 0.0
            try:
                body = self.api.read(
                    self.account, self.deployment, self.job_id, after=reader.seq - 1, wait_s=wait
                )
            except ApiRefused as exc:
                if exc.status == 404:
                    raise NotFound(exc.detail) from None
                raise ClientError(
                    f"the API refused to read job {self.job_id}'s log: {exc}"
                ) from None
            except ApiUnavailable:
                # Following rides out an API restart; a one-off read says the API is down.
                if not self.follow or (deadline is not None and time.monotonic() > deadline):
                    raise
                time.sleep(RETRY_S)
                continue
            for wire in body["chunks"]:
                yield from reader.add(Chunk.from_wire(wire))
            self.final, self.exit_code, self.head = reader.final, reader.exit_code, reader.head
            if reader.final or (not body["chunks"] and not self.follow):
                return
            if body["chunks"]:
                continue
            if ended_at is None and self.view().status.terminal:
                ended_at = time.monotonic()
            if ended_at is not None and time.monotonic() - ended_at > FINAL_GRACE_S:
                return
            if deadline is not None and time.monotonic() > deadline:
                return


@dataclass(frozen=True)
class Outputs:
    job_id: int
    dest: Path
    files: list[str]
    size: int
    sha256: str
    log_head: str
    digest: str
    #: The digest the provider committed on chain, when the contract records one.
    committed: str | None


def fetch_outputs(
    api: ResultsApi,
    account: LocalAccount,
    deployment: Deployment,
    job_id: int,
    view: Callable[[], JobView],
    committed: str | None,
    dest: Path,
) -> Outputs:
    """Downloads, checks against the committed digest (before decrypting), decrypts and
    unpacks safely into `dest`."""
    logs = LogStream(api, account, deployment, job_id, view)
    for _ in logs:
        pass
    if not logs.final:
        raise ClientError(
            f"job {job_id}'s log has no final chunk yet: its outputs are uploaded when it ends; "
            "try again once `metascheduler job logs` shows its end"
        )
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        enc = Path(tmp) / "outputs.enc"
        try:
            sha = api.download(account, deployment, job_id, enc)
        except ApiRefused as exc:
            if exc.status == 404:
                raise NotFound(exc.detail) from None
            raise ClientError(f"the API refused job {job_id}'s outputs: {exc}") from None
        digest = result_digest(sha, logs.head)
        if committed is not None:
            check(committed, sha, logs.head)
        files = archive.open_archive(
            enc, dest, private_key=bytes(account.key), deployment=deployment, job_id=job_id
        )
        size = enc.stat().st_size
    return Outputs(
        job_id,
        dest,
        files,
        size,
        "0x" + sha.hex(),
        logs.head,
        "0x" + digest.hex(),
        committed,
    )
