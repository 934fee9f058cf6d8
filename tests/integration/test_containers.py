"""Container jobs under podman, on both backends, on a busybox image built offline and served,
with the inputs, from a local HTTP server.

A job reads a staged input and writes a file; a digest mismatch, an oversized image and an
unreachable input each refuse the job with the reason (on chain, through the agent, in the last
test); a second job with the same image starts from the cache; a job cannot leave its
container's root.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from metascheduler.agent.backends import (
    Backend,
    BackendError,
    BackendJob,
    BackendJobInfo,
    BackendStatus,
    make_backend,
)
from metascheduler.agent.settings import AgentSettings
from metascheduler.chain.types import JobStatus
from metascheduler.devnet.images import FileServer, busybox_archive, file_server, missing, sha256
from metascheduler.spec import encode_spec, validate_spec
from tests.conftest import Grid
from tests.integration.agentkit import CREDIT, make_world, slurm_conf_or_skip

pytestmark = [pytest.mark.container, pytest.mark.sandbox]
S = BackendStatus
INPUT = b"staged input: 42\n"


@pytest.fixture(scope="module")
def served() -> Iterator[FileServer]:
    why = missing()
    if why:
        pytest.skip(why)
    image = busybox_archive()
    with file_server() as server:
        server.files["/busybox.tar"] = image
        server.files["/in.txt"] = INPUT
        yield server


def image_ref(server: FileServer, digest: str | None = None) -> str:
    return f"{server.url('/busybox.tar')}#sha256={digest or sha256(server.files['/busybox.tar'])}"


def v2_spec(server: FileServer, command: list[str], **over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "version": 2,
        "name": "contained",
        "command": command,
        "resources": {"cpus_per_task": 1, "mem_per_cpu_mb": 128},
        "container": {"image": image_ref(server)},
        "inputs": [{"url": server.url("/in.txt"), "sha256": sha256(INPUT), "path": "data/in.txt"}],
    }
    spec.update(over)
    return spec


@dataclass
class Host:
    backend: Backend
    kind: str
    base: Path
    state_file: Path
    prefix: str

    def submit(
        self, job_id: int, spec: dict[str, Any], outputs: Path | None = None
    ) -> tuple[BackendJob, str]:
        job = BackendJob(
            job_id, validate_spec(spec), 120, name=f"{self.prefix}{job_id}", output_dir=outputs
        )
        return job, self.backend.submit(job)

    def wait(self, native: str, timeout: float = 90.0) -> BackendJobInfo:
        deadline = time.time() + timeout
        while True:
            st = self.backend.status([native])[native]
            if st.status.is_terminal or time.time() > deadline:
                return st
            time.sleep(0.2)

    def folder(self, job: BackendJob, native: str) -> Path:
        if self.kind == "local":
            return next((self.base / "local" / "jobs").glob(f"{native}-*"))
        return self.base / "slurm-out" / f"job-{job.job_id}"

    def output(self, job: BackendJob, native: str) -> str:
        if self.kind == "local":
            folder = self.folder(job, native)
            files = [folder / "job.out", folder / "job.err"]
        else:
            out = self.base / "slurm-out"
            files = [out / f"job-{job.job_id}.out", out / f"job-{job.job_id}.err"]
        return "".join(f.read_text() for f in files if f.exists())


def settings_for(
    kind: Literal["local", "slurm"], base: Path, supervisor: str = "auto", **staging: Any
) -> AgentSettings:
    state_dir = base / "agent"
    over: dict[str, Any] = {
        "state_dir": state_dir,
        "staging": {"runtime": "podman", "cache_dir": base / "images", **staging},
    }
    if kind == "slurm":
        over["slurm"] = {
            "partition": "alpha",
            "output_dir": base / "slurm-out",
            "slurm_conf": slurm_conf_or_skip(),
        }
    else:
        over["local"] = {
            "workdir": base / "local",
            "cpus": 2,
            "mem_mb": 2000,
            "supervisor": supervisor,
        }
    return AgentSettings(backend=kind, **over)


@pytest.fixture(params=["local-c", "local-python", pytest.param("slurm", marks=pytest.mark.slurm)])
def host(request: pytest.FixtureRequest) -> Iterator[Host]:
    """On Slurm, and on the local backend with each job supervisor (C, and Python)."""
    base = Path(tempfile.mkdtemp(prefix="ms-containers-", dir="/tmp"))
    base.chmod(0o755)
    (base / "agent").mkdir()
    state_file = base / "agent" / "state.json"
    state_file.write_text('{"secret": "agent state"}')
    name, _, supervisor = str(request.param).partition("-")
    kind: Literal["local", "slurm"] = "local" if name == "local" else "slurm"
    settings = settings_for(kind, base, supervisor or "auto")
    prefix = f"msc{os.getpid()}-{uuid.uuid4().hex[:4]}-"
    try:
        yield Host(
            make_backend(kind, **settings.backend_options(prefix)), kind, base, state_file, prefix
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_job_reads_a_staged_input_and_writes_a_file_in_its_container(
    host: Host, served: FileServer
) -> None:
    script = (
        "cat data/in.txt > out.txt; cat data/in.txt; echo uid=$(id -u); "
        'cp data/in.txt "$MS_OUTPUT_DIR/copy.txt"; '
        f"cat {host.state_file} /etc/hostname 2>&1; ls /work/.. ; echo done"
    )
    outputs = host.state_file.parent / "results" / "1" / "outputs"
    job, native = host.submit(1, v2_spec(served, ["sh", "-c", script]), outputs)
    st = host.wait(native)
    out = host.output(job, native)
    assert st.status is S.COMPLETED, (st, out)
    assert INPUT.decode() in out and "uid=0" not in out and "uid=" in out, out
    assert "agent state" not in out, f"the container reached the host's files:\n{out}"
    assert (host.folder(job, native) / "work" / "out.txt").read_bytes() == INPUT
    assert (outputs / "copy.txt").read_bytes() == INPUT


def test_second_job_with_the_same_image_starts_from_the_cache(
    host: Host, served: FileServer
) -> None:
    before = served.hits.get("/busybox.tar", 0)
    for job_id in (2, 3):
        job, native = host.submit(job_id, v2_spec(served, ["echo", "ran"], inputs=None))
        st = host.wait(native)
        assert st.status is S.COMPLETED, (st, host.output(job, native))
    assert served.hits.get("/busybox.tar", 0) - before == 1, "the image was fetched twice"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"container": {"image": "DIGEST"}}, "not the"),
        (
            {"inputs": [{"url": "http://127.0.0.1:9/in.txt", "sha256": "0" * 64, "path": "in"}]},
            "could not be fetched",
        ),
    ],
    ids=["image digest mismatch", "unreachable input"],
)
def test_bad_image_or_input_refuses_the_job_in_words(
    host: Host, served: FileServer, change: dict[str, Any], words: str
) -> None:
    if change.get("container", {}).get("image") == "DIGEST":
        change = {"container": {"image": image_ref(served, "0" * 64)}}
    with pytest.raises(BackendError) as info:
        host.submit(4, v2_spec(served, ["true"], **change))
    assert words in str(info.value), info.value


def test_oversized_image_refuses_the_job_in_words(served: FileServer) -> None:
    base = Path(tempfile.mkdtemp(prefix="ms-containers-", dir="/tmp"))
    try:
        settings = settings_for("local", base, max_image_mb=1)
        backend = make_backend("local", **settings.backend_options("mso-"))
        job = BackendJob(5, validate_spec(v2_spec(served, ["true"])), 60)
        with pytest.raises(BackendError) as info:
            backend.submit(job)
        assert "over this provider's limit of 1048576" in str(info.value)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.chain
def test_agent_refuses_a_job_whose_image_digest_does_not_match_with_the_reason_on_chain(
    grid: Grid, served: FileServer
) -> None:
    base = Path(tempfile.mkdtemp(prefix="ms-containers-", dir="/tmp"))
    base.chmod(0o755)
    try:
        w = make_world(grid, base, staging={"runtime": "podman", "cache_dir": base / "images"})
        bad = v2_spec(served, ["true"], container={"image": image_ref(served, "0" * 64)})
        job_id = w.submit(encode_spec(validate_spec(bad)).decode(), escrow=CREDIT)
        w.tick_until("the refusal", lambda: w.events(job_id, "JobReturned"))
        (returned,) = w.events(job_id, "JobReturned")
        reason = returned.args["reason"]
        assert "image:" in reason and "SHA-256" in reason and "not the" in reason, reason
        view = w.job(job_id)
        # Back to PENDING for another provider, its escrow whole: the customer paid nothing.
        assert view.status is JobStatus.PENDING and view.escrow == CREDIT
        assert not w.events(job_id, "JobStarted")
    finally:
        shutil.rmtree(base, ignore_errors=True)
