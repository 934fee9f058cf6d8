"""Hostile jobs, on both backends as an agent with default settings builds them.

Each job below tries one escape a customer could try: read the agent's environment, keystore,
settings and state; write the agent's state; read or signal another running job; use more memory
or CPUs than it paid for; start 10,000 processes; signal the agent; leave processes behind.
Each test asserts that the attempt failed and that the agent (its process and its files) is
unharmed. A process started with ``MS_PRIVATE_KEY`` in its environment stands for the agent
process (the backend object itself lives in the test process, whose pid the jobs also attack).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from metascheduler.agent.backends import (
    Backend,
    BackendError,
    BackendJob,
    BackendJobInfo,
    BackendStatus,
    csupervisor,
    make_backend,
)
from metascheduler.agent.backends.local import LocalBackend, Supervisor
from metascheduler.agent.backends.sandbox import SandboxPolicy, prepare
from metascheduler.agent.settings import AgentSettings
from metascheduler.spec import validate_spec
from tests.integration.agentkit import slurm_conf_or_skip

pytestmark = pytest.mark.sandbox
S = BackendStatus
SECRET = "0x" + "5e" * 32


@dataclass
class Host:
    """A backend built from default agent settings, and the agent's things a job must not
    reach."""

    backend: Backend
    kind: str
    base: Path
    state_dir: Path
    keystore: Path
    settings_file: Path
    agent: subprocess.Popen[bytes]
    prefix: str
    #: The local backend's job supervisor ("c" or "python"; "" on Slurm).
    supervisor: str = ""

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    def job(
        self, job_id: int, script: str, *, cpus: int = 1, mem_mb: int = 100, limit_s: int = 60
    ) -> BackendJob:
        spec = validate_spec(
            {
                "name": "hostile",
                "script": script,
                "resources": {"cpus_per_task": cpus, "mem_per_cpu_mb": mem_mb // cpus},
            }
        )
        return BackendJob(job_id, spec, limit_s, name=f"{self.prefix}{job_id}")

    def run(self, job: BackendJob, timeout: float = 90.0) -> tuple[str, str, BackendJobInfo]:
        native = self.backend.submit(job)
        st = self.wait(native, lambda s: s.is_terminal, timeout)
        return native, self.output(job, native), st

    def wait(
        self, native: str, done: Callable[[BackendStatus], bool], timeout: float = 60.0
    ) -> BackendJobInfo:
        deadline = time.time() + timeout
        while True:
            st = self.backend.status([native])[native]
            if done(st.status) or time.time() > deadline:
                return st
            time.sleep(0.2)

    def output(self, job: BackendJob, native: str) -> str:
        """The job's stdout then stderr, as far as written."""
        if self.kind == "local":
            folder = next((self.base / "local" / "jobs").glob(f"{native}-*"))
            files = [folder / "job.out", folder / "job.err"]
        else:
            out = self.base / "slurm-out"
            files = [out / f"job-{job.job_id}.out", out / f"job-{job.job_id}.err"]
        return "".join(f.read_text() for f in files if f.exists())

    def assert_agent_unharmed(self, state_before: str) -> None:
        assert self.agent.poll() is None, "the agent process was killed by a job"
        assert self.state_file.read_text() == state_before, "a job rewrote the agent's state"
        assert sorted(p.name for p in self.state_dir.iterdir()) == ["keystore.json", "state.json"]
        self.backend.capacity()  # the backend still answers


@pytest.fixture(params=["local-c", "local-python", pytest.param("slurm", marks=pytest.mark.slurm)])
def host(request: pytest.FixtureRequest) -> Iterator[Host]:
    """Each test on Slurm and on the local backend with each job supervisor (C, and the
    Python fallback)."""
    # Folders an operator would make: world-traversable, default modes. A private temporary
    # folder (pytest's tmp_path is 0700) would stop the job user at the door and prove nothing.
    base = Path(tempfile.mkdtemp(prefix="ms-sandbox-", dir="/tmp"))
    base.chmod(0o755)
    state_dir = base / "agent"
    state_dir.mkdir(mode=0o755)
    (state_dir / "state.json").write_text(f'{{"secret": "{SECRET}"}}')
    keystore = state_dir / "keystore.json"
    keystore.write_text(f'{{"crypto": "{SECRET}"}}')
    keystore.chmod(0o600)
    settings_file = base / "agent.toml"
    settings_file.write_text(f'private_key = "{SECRET}"\n')
    kind, _, supervisor = str(request.param).partition("-")
    prefix = f"msx{os.getpid()}-{uuid.uuid4().hex[:4]}-"
    over: dict[str, object] = {"state_dir": state_dir, "keystore": keystore}
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
    settings = AgentSettings.load(settings_file, backend=kind, **over)
    backend = make_backend(kind, **settings.backend_options(prefix))
    agent = subprocess.Popen(
        ["sleep", "600"], env={"PATH": os.environ["PATH"], "MS_PRIVATE_KEY": SECRET}
    )
    try:
        yield Host(
            backend, kind, base, state_dir, keystore, settings_file, agent, prefix, supervisor
        )
    finally:
        agent.kill()
        agent.wait()
        shutil.rmtree(base, ignore_errors=True)


def test_job_cannot_read_the_agents_secrets_nor_write_its_state(host: Host) -> None:
    before = host.state_file.read_text()
    script = f"""
echo "uid=$(id -u)"
env
cat /proc/{host.agent.pid}/environ /proc/{os.getpid()}/environ
grep -l {SECRET} /proc/*/environ
cat {host.keystore} {host.settings_file} {host.state_file}
echo '{{"pwned": 1}}' > {host.state_file}
echo pwned > {host.state_dir}/extra
ls -la {host.state_dir} {host.base}
exit 0
"""
    _, out, st = host.run(host.job(1, script))
    assert st.status is S.COMPLETED, (st, out)
    assert "uid=" in out and "uid=0\n" not in out, f"the job ran as root:\n{out}"
    assert f"uid={os.getuid()}\n" not in out, "the job ran as the agent's user"
    assert SECRET not in out, f"the job read a secret of the agent:\n{out}"
    host.assert_agent_unharmed(before)


def test_job_sees_only_the_specs_env_and_its_job_variables(host: Host) -> None:
    _, out, st = host.run(host.job(2, "env -0 | tr '\\0' '\\n' | cut -d= -f1 | sort"))
    assert st.status is S.COMPLETED, (st, out)
    names = set(out.split())
    allowed_basics = {
        "PATH",
        "HOME",
        "PWD",
        "SHLVL",
        "_",
        "TMPDIR",
        "LANG",
        "OLDPWD",
        "PYTHONUNBUFFERED",
    }
    extra = {n for n in names if not n.startswith("MS_")} - allowed_basics
    assert not extra, f"the job sees variables it was not given: {sorted(extra)}"
    assert {"MS_JOB_ID", "MS_CPUS", "MS_MEM_MB"} <= names


def test_job_cannot_signal_the_agent(host: Host) -> None:
    before = host.state_file.read_text()
    script = f"""
kill -0 {os.getpid()} && echo "reached the backend's process"
kill -TERM {host.agent.pid} && echo "signalled the agent"
kill -KILL {host.agent.pid}
exit 0
"""
    _, out, st = host.run(host.job(3, script))
    assert st.status is S.COMPLETED, (st, out)
    assert "reached" not in out and "signalled" not in out, out
    host.assert_agent_unharmed(before)


def test_job_cannot_read_or_signal_another_running_job(host: Host) -> None:
    marker = f"victim-{uuid.uuid4().hex[:8]}"
    victim = host.job(
        4,
        f"echo {SECRET} > private.txt; echo {SECRET} > /tmp/{marker}; pwd; "
        f"exec -a {marker} sleep 60",
        limit_s=120,
    )
    native = host.backend.submit(victim)
    assert host.wait(native, lambda s: s is S.RUNNING).status is S.RUNNING
    deadline = time.time() + 20
    while "/" not in host.output(victim, native) and time.time() < deadline:
        time.sleep(0.2)
    victim_dir = host.output(victim, native).split()[0]
    script = f"""
cat {victim_dir}/private.txt /tmp/{marker}
pkill -f {marker} && echo "killed the other job"
for p in /proc/[0-9]*; do grep -q {marker} $p/cmdline 2>/dev/null && echo "sees it: $p"; done
exit 0
"""
    try:
        _, out, st = host.run(host.job(5, script))
        assert st.status is S.COMPLETED, (st, out)
        assert SECRET not in out, f"the job read another job's files:\n{out}"
        assert "killed" not in out and "sees it" not in out, out
        assert host.backend.status([native])[native].status is S.RUNNING
    finally:
        host.backend.cancel(native)


def test_job_over_its_memory_is_killed_and_fails_saying_why(host: Host) -> None:
    # Paid for 64 MB; writes 400 MB.
    script = "python3 -c 'b = b\"x\" * (400 << 20); print(len(b))'"
    _, out, st = host.run(host.job(6, script, mem_mb=64))
    assert st.status is S.FAILED, (st, out)
    assert str(400 << 20) not in out, "the job held 400 MB after paying for 64 MB"
    assert st.reason and "memory" in st.reason, st


def test_job_cannot_use_more_cpus_than_it_paid_for(host: Host) -> None:
    # Paid for one CPU; runs two busy loops for 4 s of wall time, then reports the CPU time
    # its children used (bash `times`: user and system seconds of waited-for children).
    script = """
start=$(date +%s.%N)
for i in 1 2; do ( end=$((SECONDS + 4)); while [ $SECONDS -lt $end ]; do :; done ) & done
wait
now=$(date +%s.%N)
times | tail -1 | python3 -c "
import re, sys
m = [float(a) * 60 + float(b) for a, b in re.findall(r'(\\d+)m([\\d.]+)s', sys.stdin.read())]
print('cpu', m[0] + m[1], 'wall', $now - $start)"
"""
    _, out, st = host.run(host.job(7, script, cpus=1))
    assert st.status is S.COMPLETED, (st, out)
    words = out.split()
    cpu, wall = float(words[words.index("cpu") + 1]), float(words[words.index("wall") + 1])
    assert cpu <= wall * 1.15 + 0.2, f"one paid CPU, {cpu:.2f} s of CPU in {wall:.2f} s"


def test_fork_bomb_is_stopped_by_a_process_limit(host: Host) -> None:
    before = host.state_file.read_text()
    # Unconfined, this starts 10,000 sleeps and exits 0. Confined, bash gives up on a refused
    # fork and the job fails, saying why.
    script = """
for i in $(seq 10000); do sleep 20 & done 2>/dev/null
echo "started 10000"
exit 0
"""
    _, out, st = host.run(host.job(8, script, mem_mb=1000, limit_s=60), timeout=120)
    assert "started 10000" not in out
    assert st.status is S.FAILED and st.reason and "process limit" in st.reason, st
    host.assert_agent_unharmed(before)


def test_job_leaves_no_process_behind(host: Host) -> None:
    marker = f"left-{uuid.uuid4().hex[:8]}"
    script = (
        f"setsid bash -c 'exec -a {marker} sleep 300' </dev/null >/dev/null 2>&1 & sleep 1; exit 0"
    )
    _, out, st = host.run(host.job(9, script))
    assert st.status is S.COMPLETED, (st, out)
    time.sleep(1.0)
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    if left.stdout.strip():
        for pid in left.stdout.split():
            os.kill(int(pid), signal.SIGKILL)
    assert not left.stdout.strip(), f"processes left behind by a finished job: {left.stdout}"


def test_agent_that_cannot_sandbox_refuses_unless_its_operator_allows_unconfined(
    tmp_path: Path,
) -> None:
    job = BackendJob(10, validate_spec({"name": "j", "command": ["id", "-u"]}), 60)
    strict = LocalBackend(tmp_path / "a", sandbox=SandboxPolicy(user="no-such-user"))
    with pytest.raises(BackendError) as info:
        strict.submit(job)
    words = str(info.value)
    assert "cannot sandbox it" in words and "'no-such-user' does not exist" in words
    assert "sandbox.allow_unconfined" in words
    lenient = LocalBackend(
        tmp_path / "b", sandbox=SandboxPolicy(user="no-such-user", allow_unconfined=True)
    )
    native = lenient.submit(job)
    deadline = time.time() + 30
    while not (st := lenient.status([native])[native]).status.is_terminal:
        assert time.time() < deadline
        time.sleep(0.1)
    assert st.status is S.COMPLETED
    out = next((tmp_path / "b" / "jobs").glob(f"{native}-*")) / "job.out"
    assert out.read_text() == f"{os.getuid()}\n"  # unconfined: the agent's own user


@pytest.mark.parametrize(
    "odd",
    [
        {"workdir": "~no_such_user/x"},
        {"workdir": "/etc/passwd"},
        {"workdir": "/proc/1/x"},
    ],
    ids=["unknown user's home", "a file", "under /proc"],
)
def test_a_valid_spec_never_raises_anything_but_a_refusal(host: Host, odd: dict[str, Any]) -> None:
    spec = validate_spec({"name": "odd", "command": ["true"], **odd})
    job = BackendJob(11, spec, 60, name=f"{host.prefix}11")
    try:
        native = host.backend.submit(job)
    except BackendError as exc:
        assert str(exc)  # refused, in words
        return
    assert host.wait(native, lambda s: s.is_terminal).status.is_terminal


def test_a_rerun_gets_a_fresh_work_folder_not_links_an_earlier_run_planted(
    tmp_path: Path,
) -> None:
    # On Slurm a job's folder is named by its id: a job placed here again reuses it. A link
    # left in work/ must not steer the next staging (done as root) outside the folder.
    folder = tmp_path / "job-12"
    (folder / "work").mkdir(parents=True)
    target = tmp_path / "outside"
    target.mkdir()
    (folder / "work" / "data").symlink_to(target)
    job = BackendJob(12, validate_spec({"name": "again", "command": ["true"]}), 60)
    prepare(SandboxPolicy(), job, folder, tmp_path, "#!/bin/bash\ntrue\n")
    assert list((folder / "work").iterdir()) == []
    assert (folder / "work").stat().st_uid != os.getuid()


def test_job_writes_its_output_folder_and_nothing_else_of_the_agents(host: Host) -> None:
    # The agent collects output files from a folder among its own (state_dir/results/...):
    # mounted in for this job alone.
    outputs = host.state_dir / "results" / "13" / "outputs"
    other = host.state_dir / "results" / "14" / "outputs"
    other.mkdir(parents=True)
    (other / "theirs.txt").write_text(SECRET)
    spec = validate_spec(
        {
            "name": "outputs",
            "script": f'echo result > "$MS_OUTPUT_DIR/r.txt"; cat {other}/theirs.txt; exit 0',
        }
    )
    job = BackendJob(13, spec, 60, name=f"{host.prefix}13", output_dir=outputs)
    native = host.backend.submit(job)
    st = host.wait(native, lambda s: s.is_terminal)
    out = host.output(job, native)
    assert st.status is S.COMPLETED, (st, out)
    assert (outputs / "r.txt").read_text() == "result\n"
    assert SECRET not in out


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # ended meanwhile
        if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_a_local_jobs_sandbox_init_is_its_supervisors_own_child(host: Host) -> None:
    """No launcher process between the supervisor and the job's init: each Python process a
    job starts costs milliseconds of copy-on-write faults."""
    if host.kind != "local":
        pytest.skip("the local backend's supervisors only (a Slurm job runs the launcher script)")
    assert isinstance(host.backend, LocalBackend)
    native = host.backend.submit(host.job(20, "echo ready; sleep 30"))
    try:
        host.wait(native, lambda s: s is S.RUNNING)
        state = host.backend.workdir / "state.json"
        supervisor = json.loads(state.read_text())["jobs"][native]["runner_pid"]
        deadline = time.time() + 10
        while not (children := _children(supervisor)) and time.time() < deadline:
            time.sleep(0.05)
        assert len(children) == 1, children
        init = children[0]
        # It enters the job's cgroup as its first step: the job runs once its output shows.
        folder = next((host.backend.workdir / "jobs").glob(f"{native}-*"))
        while "ready" not in (folder / "job.out").read_text() and time.time() < deadline:
            time.sleep(0.05)
        cgroups = Path(f"/proc/{init}/cgroup").read_text()
        assert "/ms-" in cgroups, f"the supervisor's child is not in the job's cgroup:\n{cgroups}"
        own_ns = os.readlink(f"/proc/{supervisor}/ns/pid")
        assert os.readlink(f"/proc/{init}/ns/pid") != own_ns, "its child is not the job's init"
    finally:
        host.backend.cancel(native)
    st = host.wait(native, lambda s: s.is_terminal)
    assert st.status is S.CANCELLED, st


def test_the_c_supervisor_is_clean_under_address_and_undefined_behaviour_sanitizers(
    tmp_path: Path,
) -> None:
    """Jobs through every path of ``supervisor.c`` (sandboxed with hidden paths and an output
    folder, a sandbox that cannot be made, a time-out, a cancel, a plain job) with the C code
    built under AddressSanitizer and UndefinedBehaviorSanitizer: no out-of-bounds access, no
    use after free, no undefined behaviour, each reported on the supervisor's or init's stderr
    were there one."""
    cc = csupervisor.compiler()
    if cc is None:
        pytest.skip("no C compiler here: the C supervisor is not used on this host")
    binary = tmp_path / "ms-supervisor-asan"
    flags = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    subprocess.run([cc, *flags, "-o", str(binary), str(csupervisor.SOURCE)], check=True)
    base = Path(tempfile.mkdtemp(prefix="ms-asan-", dir="/tmp"))
    base.chmod(0o755)
    secret = base / "secret"
    secret.mkdir()
    # Outside /tmp: the job's init writes there too, and a job's /tmp is its own.
    reports_dir = Path(tempfile.mkdtemp(prefix="ms-asan-reports-", dir="/var/lib"))
    reports = reports_dir / "sanitizer"
    env = {
        "PATH": os.environ["PATH"],
        "ASAN_OPTIONS": f"detect_leaks=0:log_path={reports}",
        "UBSAN_OPTIONS": f"print_stacktrace=1:log_path={reports}",
    }
    try:
        backend = LocalBackend(
            base / "local",
            cpus=4,
            mem_mb=2000,
            kill_grace_s=0.5,
            env=env,
            sandbox=SandboxPolicy(hide=(secret,)),
            supervisor="c",
        )
        backend._binary = str(binary)

        def job(job_id: int, script: str, limit_s: int = 60, **over: Any) -> BackendJob:
            spec = validate_spec({"name": "asan", "script": script, **over})
            return BackendJob(job_id, spec, limit_s, name=f"msa-{job_id}")

        outputs = base / "results" / "1"
        done = backend.submit(
            BackendJob(
                1,
                validate_spec(
                    {"name": "asan", "script": f'ls {secret}; echo x > "$MS_OUTPUT_DIR/o"'}
                ),
                60,
                name="msa-1",
                output_dir=outputs,
            )
        )
        slow = backend.submit(job(2, "sleep 30", limit_s=1))
        cancelled = backend.submit(job(3, "sleep 30"))
        oom = backend.submit(
            job(4, "python3 -c 'b = b\"x\" * (400 << 20)'", resources={"mem_per_cpu_mb": 64})
        )
        deadline = time.time() + 60
        while backend.status([cancelled])[cancelled].status is not S.RUNNING:
            assert time.time() < deadline
            time.sleep(0.05)
        backend.cancel(cancelled)
        ends = {}
        for native in (done, slow, cancelled, oom):
            while not (st := backend.status([native])[native]).status.is_terminal:
                assert time.time() < deadline, native
                time.sleep(0.05)
            ends[native] = st.status
        assert ends == {
            done: S.COMPLETED,
            slow: S.TIMEOUT,
            cancelled: S.CANCELLED,
            oom: S.FAILED,
        }
        assert (outputs / "o").read_text() == "x\n"
        assert "out of memory" in (backend.status([oom])[oom].reason or "")
        # Inputs it must refuse, each failing its job in words (SETUP_FAILED, 126).
        bad = {
            "no final NUL": (b"plain\0bash\0job.sh", None, "not a mode and a NUL-separated"),
            "unknown mode": (b"host\0bash\0", None, "unknown mode host"),
            "odd policy": (b"sandbox\0true\0", b"name\0x\0uid\0", "key/value pairs"),
            "unknown key": (b"sandbox\0true\0", b"name\0x\0shell\0/bin/sh\0", "unknown key"),
            "bad number": (b"sandbox\0true\0", b"uid\0-1\0", "bad uid -1"),
            "missing key": (b"sandbox\0true\0", b"name\0x\0", "a required key is missing"),
        }
        for case, (argv, policy, words) in bad.items():
            folder = base / "bad" / case.replace(" ", "-")
            folder.mkdir(parents=True)
            (folder / "command.argv").write_bytes(argv)
            if policy is not None:
                (folder / "sandbox.kv").write_bytes(policy)
            ran = subprocess.run(
                [str(binary), str(folder), "0.5"], env=env, capture_output=True, text=True
            )
            assert ran.returncode == 0, (case, ran.stderr)
            result = json.loads((folder / "result.json").read_text())
            assert (result["state"], result["exit_code"]) == ("FAILED", 126), case
            assert words in (folder / "job.err").read_text(), case
            assert "Sanitizer" not in ran.stderr and "runtime error" not in ran.stderr, ran.stderr
        logs = "".join(p.read_text() for p in reports_dir.glob("sanitizer*"))
        for folder in (base / "local" / "jobs").iterdir():
            for name in ("runner.log", "job.err"):
                if (folder / name).exists():
                    logs += (folder / name).read_text()
        assert "Sanitizer" not in logs and "runtime error" not in logs, logs
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(reports_dir, ignore_errors=True)


def test_job_cannot_reach_the_network_but_has_its_own_loopback(host: Host) -> None:
    """A service of the provider's on its loopback (standing for any network the host can
    reach) is out of reach; the job's own loopback is up, for programs that talk to
    themselves."""
    with socket.socket() as service:
        service.bind(("127.0.0.1", 0))
        service.listen()
        port = service.getsockname()[1]
        script = f"""
(echo hello > /dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo "reached the host's service"
python3 -c '
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
c = socket.create_connection(s.getsockname()); print("own loopback", c.fileno() > 0)'
awk -F: 'NR > 2 {{print "interface", $1}}' /proc/net/dev
exit 0
"""
        _, out, st = host.run(host.job(21, script))
    assert st.status is S.COMPLETED, (st, out)
    assert "reached" not in out, out
    assert "own loopback True" in out, out
    assert [w for w in out.split() if w not in ("interface", "own", "loopback", "True")] == [
        "lo"
    ], out


def test_a_provider_that_allows_the_network_gives_jobs_the_hosts(tmp_path: Path) -> None:
    """``sandbox.network = "host"``: no network namespace of its own (both supervisors)."""
    base = Path(tempfile.mkdtemp(prefix="ms-net-", dir="/tmp"))
    base.chmod(0o755)
    try:
        with socket.socket() as service:
            service.bind(("127.0.0.1", 0))
            service.listen()
            port = service.getsockname()[1]
            script = f"echo hello > /dev/tcp/127.0.0.1/{port} && echo reached"
            kinds: tuple[Supervisor, ...] = ("c", "python")
            for n, kind in enumerate(kinds):
                backend = LocalBackend(
                    base / kind, sandbox=SandboxPolicy(network=True), supervisor=kind
                )
                spec = validate_spec({"name": "net", "script": script})
                native = backend.submit(BackendJob(30 + n, spec, 60, name=f"msn-{n}"))
                deadline = time.time() + 30
                while not (st := backend.status([native])[native]).status.is_terminal:
                    assert time.time() < deadline
                    time.sleep(0.05)
                out = next((base / kind / "jobs").glob(f"{native}-*")) / "job.out"
                assert st.status is S.COMPLETED and out.read_text() == "reached\n", (kind, st)
    finally:
        shutil.rmtree(base, ignore_errors=True)
