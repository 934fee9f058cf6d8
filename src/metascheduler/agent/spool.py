"""A job's results on the provider's disk until the API has them: one folder per job.

    <results dir>/<job id>/tracked.json  the backend job, from the moment it is queued (so
                                        that an agent killed before state.json is written
                                        still ships the job's results after its restart)
                          state.json    where shipping stands (atomic rewrites)
                          pending.json  the sealed chunk in flight, with the state it leads to
                          agent.log     the agent's own messages about the job (JSON lines)
                          outputs/      $MS_OUTPUT_DIR
                          outputs.enc   a small encrypted archive, until uploaded (a large
                                        one goes up in parts as it is packed, kept nowhere)

Shipping a chunk is: seal, write `pending.json` (fsync), send, and only on the API's
acknowledgement write the new `state.json` and remove `pending.json`. An agent killed anywhere in
between finds `pending.json` at restart and sends it again; the API acknowledges a chunk it
already has without storing it twice. So no line is lost and none is doubled.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from metascheduler.results.logchain import ZERO_DIGEST

STREAMS = ("stdout", "stderr", "agent")


@dataclass
class SpoolState:
    job_id: int
    native_id: str
    stdout: str | None
    stderr: str | None
    job_key: str
    wrapped_key: str
    seq: int = 0
    prev: str = ZERO_DIGEST
    offsets: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STREAMS, 0))
    #: Set once the backend reports the job ended (its exit code, None when unknown).
    ended: bool = False
    exit_code: int | None = None
    #: The encrypted archive, once uploaded: its SHA-256 (hex).
    archive_sha256: str | None = None
    #: The request recording the upload, saved before it is sent: sent again first, should its
    #: answer be lost (the API refuses a new upload once it recorded this one).
    completing: dict[str, Any] | None = None
    outputs_error: str | None = None
    #: The last chunk (final) was acknowledged; the result digest is known.
    done: bool = False
    result_digest: str | None = None


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class JobSpool:
    def __init__(self, root: Path, job_id: int) -> None:
        self.dir = Path(root) / str(job_id)
        self.job_id = job_id

    @property
    def output_dir(self) -> Path:
        return self.dir / "outputs"

    @property
    def archive(self) -> Path:
        return self.dir / "outputs.enc"

    @property
    def agent_log(self) -> Path:
        return self.dir / "agent.log"

    def exists(self) -> bool:
        return (self.dir / "state.json").exists()

    def load(self) -> SpoolState:
        return SpoolState(**json.loads((self.dir / "state.json").read_text()))

    def save(self, state: SpoolState) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.dir / "state.json", asdict(state))

    def mark_tracked(self, native_id: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.dir / "tracked.json", {"native_id": native_id})

    def tracked(self) -> str | None:
        """The backend job recorded by `mark_tracked`, if any."""
        try:
            data = json.loads((self.dir / "tracked.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        native = data.get("native_id")
        return str(native) if native is not None else None

    def pending(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads((self.dir / "pending.json").read_text())
        except FileNotFoundError:
            return None
        return data

    def set_pending(self, chunk_wire: dict[str, Any], after: SpoolState) -> None:
        _write_atomic(self.dir / "pending.json", {"chunk": chunk_wire, "after": asdict(after)})

    def acknowledge(self, after: dict[str, Any]) -> SpoolState:
        """The API has the pending chunk: its state becomes the job's."""
        state = SpoolState(**after)
        self.save(state)
        (self.dir / "pending.json").unlink(missing_ok=True)
        return state

    def note(self, line: str, *, now: float | None = None) -> None:
        """Appends one of the agent's own messages to the job's log."""
        self.dir.mkdir(parents=True, exist_ok=True)
        rec = json.dumps({"t": time.time() if now is None else now, "line": line})
        with open(self.agent_log, "a") as f:
            f.write(rec + "\n")

    def remove_outputs(self) -> None:
        shutil.rmtree(self.output_dir, ignore_errors=True)
        self.archive.unlink(missing_ok=True)
