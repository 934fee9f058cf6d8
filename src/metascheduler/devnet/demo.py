"""`metascheduler devnet up [--once]`: a whole local grid in one command.

Starts anvil, deploys the contracts, funds demo wallets, starts the API, the oracle and two
provider agents (one on Slurm when a Slurm cluster answers, else both local), registers and
approves the providers, submits demo jobs that end FINISHED, FAILED, CANCELLED and
OUT_OF_CREDITS, and (where podman runs) a container job reading a staged input, prints their
timelines and the audit's verdict, and shows the dashboard's address. With --once it exits 0
only when every demo job reached its expected state and the audit is clean; without, it stays up
until Ctrl-C.

Anvil's development keys are public; they are used here on the devnet only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from metascheduler import billing
from metascheduler.api.settings import ApiSettings
from metascheduler.audit.results import StoredResults
from metascheduler.chain import JobStatus, Market
from metascheduler.chain.artifacts import REPO_ROOT
from metascheduler.chain.deployment import write_deployment
from metascheduler.chain.rpc import connect
from metascheduler.chain.types import ProviderStatus
from metascheduler.devnet.anvil import dev_account, free_port, start_anvil
from metascheduler.devnet.images import FileServer, busybox_archive, file_server, missing, sha256
from metascheduler.devnet.objectstore import ObjectStore, start_object_store
from metascheduler.devnet.procs import Service, python_module
from metascheduler.spec import JobSpec, encode_spec, parse_spec

CREDIT = billing.UNITS_PER_CREDIT
console = Console()

ADMIN, ORACLE, PROVIDER_A, PROVIDER_B, ALICE, BOB = range(6)


@dataclass
class DemoJob:
    label: str
    spec: str
    expected: JobStatus
    escrow: int
    customer: int
    job_id: int = 0
    #: called once the job is RUNNING (e.g. to cancel it)
    on_running: Callable[[Market, int], Any] | None = None


def _spec(name: str, script: str, cpus: int = 1, minutes: int = 10) -> str:
    return json.dumps(
        {
            "name": name,
            "script": script,
            "resources": {"tasks": 1, "cpus_per_task": cpus, "mem_per_cpu_mb": 256},
            "time_limit_minutes": minutes,
        }
    )


def _cancel_after_a_while(market: Market, job_id: int) -> None:
    time.sleep(4)  # let it run (and cost) a few seconds first
    market.cancel_job(job_id)


def demo_jobs() -> list[DemoJob]:
    # Prices: 1,000 units per CPU-minute (0.001 credit): a 1-CPU job costs 16.7 units a second.
    return [
        DemoJob(
            "hello",
            _spec(
                "hello",
                "echo hello from the grid; echo hello from the grid > $MS_OUTPUT_DIR/hello.txt; "
                "sleep 3",
            ),
            JobStatus.FINISHED,
            2 * CREDIT,
            ALICE,
        ),
        DemoJob(
            "fails",
            _spec("fails", "echo about to fail >&2; sleep 2; exit 3"),
            JobStatus.FAILED,
            2 * CREDIT,
            BOB,
        ),
        DemoJob(
            "cancelled",
            _spec("cancelled", "sleep 600"),
            JobStatus.CANCELLED,
            2 * CREDIT,
            ALICE,
            on_running=_cancel_after_a_while,
        ),
        # 1,250 units of escrow at 1,000 units/minute: 75 s of compute, then OUT_OF_CREDITS.
        # The oracle offers no job whose escrow pays less than a minimum run (60 s) on the
        # cheapest able provider, so a smaller escrow would stay PENDING, never run dry.
        DemoJob("runs-dry", _spec("runs-dry", "sleep 600"), JobStatus.OUT_OF_CREDITS, 1_250, BOB),
    ]


GREETING = b"hello from a staged input\n"


def container_job(server: FileServer) -> DemoJob:
    """A job in a busybox image (served by the devnet, pinned by digest) that reads a staged
    input and writes a file; placed only on a provider labelled ``container``."""
    spec = {
        "version": 2,
        "name": "container",
        "command": ["sh", "-c", "cat data/greeting.txt; wc -c data/greeting.txt > count.txt"],
        "resources": {"tasks": 1, "cpus_per_task": 1, "mem_per_cpu_mb": 256},
        "time_limit_minutes": 10,
        "container": {
            "image": f"{server.url('/busybox.tar')}#sha256={sha256(server.files['/busybox.tar'])}"
        },
        "inputs": [
            {
                "url": server.url("/greeting.txt"),
                "sha256": sha256(GREETING),
                "path": "data/greeting.txt",
            }
        ],
    }
    return DemoJob("container", json.dumps(spec), JobStatus.FINISHED, 2 * CREDIT, ALICE)


def _port_or_free(preferred: int) -> int:
    """The well-known port when nothing listens there, so the CLI's defaults just work."""
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred


def slurm_available() -> Path | None:
    conf = Path(os.environ.get("SLURM_CONF", REPO_ROOT / "var" / "slurm" / "slurm.conf"))
    if not conf.exists() or not shutil.which("sinfo"):
        return None
    try:
        r = subprocess.run(
            ["sinfo", "--noheader", "-o", "%P"],
            env={**os.environ, "SLURM_CONF": str(conf)},
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return conf if r.returncode == 0 and "alpha" in r.stdout else None


def _toml(values: dict[str, Any]) -> str:
    lines: list[str] = []
    tables: dict[str, dict[str, Any]] = {}
    for k, v in values.items():
        if isinstance(v, dict):
            tables[k] = v
        else:
            lines.append(f"{k} = {json.dumps(v)}")
    for name, table in tables.items():
        lines.append(f"\n[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


class Devnet:
    def __init__(self, root: Path, api_port: int | None = None, *, profile: bool = False):
        self.root = root
        self.api_port = api_port or _port_or_free(8000)
        #: Each service runs under cProfile, which writes ``logs/<name>.prof`` when it stops.
        self.profile = profile
        self.services: list[Service] = []
        self.anvil: Any = None
        self._closing = contextlib.ExitStack()
        #: Serves the container demo's image and input; None where podman cannot run here.
        self.files: FileServer | None = None
        self.objects: ObjectStore | None = None
        #: The API's stored results, as the operator's audit reads them.
        self.stored: StoredResults | None = None

    # ------------------------------------------------------------------ bring-up

    def up(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        (self.root / "logs").mkdir(parents=True)
        console.print(f"[bold]metascheduler devnet[/] in {self.root}")
        self.anvil = start_anvil(
            port=_port_or_free(8545), block_time=1, log_path=self.root / "logs" / "anvil.log"
        )
        console.print(f"  chain      anvil at {self.anvil.url} (1-second blocks)")
        w3 = connect(self.anvil.url)
        dep = Market.deploy(
            w3,
            dev_account(ADMIN),
            oracle=dev_account(ORACLE).address,
            accept_timeout_s=60,
            start_timeout_s=600,
        )
        self.deployment = dep
        console.print(f"  contracts  JobMarket {dep.market}, Credit {dep.credit}")
        self.admin = self.market(ADMIN)

        db = f"sqlite:///{self.root / 'grid.db'}"
        base = {"rpc_url": self.anvil.url, "market_address": dep.market}
        oracle_cfg = {
            **base,
            "confirmations": 0,
            "database_url": db,
            "start_block": dep.block,
            "heartbeat_source": "api",
            "heartbeat_timeout_s": 60,
        }
        self.objects = start_object_store(
            self.root / "seaweedfs", log_path=self.root / "logs" / "seaweedfs.log"
        )
        console.print(f"  objects    SeaweedFS S3 at {self.objects.endpoint} (logs and outputs)")
        api_cfg = {
            **base,
            "database_url": db,
            "port": self.api_port,
            "heartbeat_timeout_s": 60,
            "object_store_endpoint": self.objects.endpoint,
        }
        # The store's keys, like every key, travel in the environment; only the API has them.
        store_keys = {
            "MS_OBJECT_STORE_ACCESS_KEY": self.objects.access_key,
            "MS_OBJECT_STORE_SECRET_KEY": self.objects.secret_key,
        }
        self._service("api", "metascheduler.api", api_cfg, ORACLE, positional=True, env=store_keys)
        self.stored = StoredResults.from_settings(
            ApiSettings(
                **api_cfg,
                object_store_access_key=SecretStr(self.objects.access_key),
                object_store_secret_key=SecretStr(self.objects.secret_key),
            )
        )
        self._service("oracle", "metascheduler.oracle", oracle_cfg, ORACLE)

        # Jobs run sandboxed, which needs root; elsewhere the demo runs them unconfined, and
        # without the container job (containers run only in the sandbox).
        root_user = os.geteuid() == 0
        if root_user and missing() is None:
            self.files = self._closing.enter_context(file_server())
            self.files.files["/busybox.tar"] = busybox_archive()
            self.files.files["/greeting.txt"] = GREETING
        slurm_conf = slurm_available()
        api_url = f"http://127.0.0.1:{self.api_port}"
        agent_base = {
            **base,
            "confirmations": 0,
            "start_block": dep.block,
            "api_url": api_url,
            "poll_interval_s": 1.0,
            "heartbeat_interval_s": 5.0,
            "prices": {"cpu": 1_000, "gpu": 0, "gb": 0},
        }
        if not root_user:
            agent_base["sandbox"] = {"allow_unconfined": True}
        if slurm_conf:
            a = {
                **agent_base,
                "backend": "slurm",
                "state_dir": str(self.root / "agent-a"),
                "slurm": {
                    "partition": "alpha",
                    "slurm_conf": str(slurm_conf),
                    "output_dir": str(self.root / "agent-a" / "jobs"),
                },
            }
            kind_a = "Slurm (partition alpha)"
        else:
            a = {
                **agent_base,
                "backend": "local",
                "state_dir": str(self.root / "agent-a"),
                "local": {
                    "workdir": str(self.root / "agent-a" / "work"),
                    "cpus": 2,
                    "mem_mb": 4096,
                },
            }
            kind_a = "local executor (no Slurm answered)"
        b = {
            **agent_base,
            "backend": "local",
            "state_dir": str(self.root / "agent-b"),
            "local": {"workdir": str(self.root / "agent-b" / "work"), "cpus": 2, "mem_mb": 4096},
            "hardware": {"nodes": 1, "cpus": 2, "mem_mb": 4096, "gpus": 0},
        }
        if self.files is not None:
            b["staging"] = {"runtime": "podman", "cache_dir": str(self.root / "agent-b-images")}
        self._service("agent-a", "metascheduler.agent", a, PROVIDER_A)
        self._service("agent-b", "metascheduler.agent", b, PROVIDER_B)
        console.print(f"  provider A {dev_account(PROVIDER_A).address}: {kind_a}")
        containers = ", podman (label container)" if self.files is not None else ""
        console.print(f"  provider B {dev_account(PROVIDER_B).address}: local executor{containers}")

        self._approve_providers()
        self._fund(ALICE)
        self._fund(BOB)
        self._wait_api()
        console.print(f"  dashboard  [bold]http://127.0.0.1:{self.api_port}/[/]")

    def market(self, index: int) -> Market:
        return Market(connect(self.anvil.url), self.deployment.market, dev_account(index))

    def _service(
        self,
        name: str,
        module: str,
        cfg: dict[str, Any],
        key_index: int,
        positional: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        path = self.root / f"{name}.toml"
        path.write_text(_toml(cfg))
        args = [str(path)] if positional else ["--config", str(path)]
        if self.profile:
            prof = self.root / "logs" / f"{name}.prof"
            args = python_module("metascheduler.devnet.cpuprofile", str(prof), module, *args)
        else:
            args = python_module(module, *args)
        # Keys travel in the environment, never in files or on command lines.
        keys = {"MS_PRIVATE_KEY": "0x" + bytes(dev_account(key_index).key).hex(), **(env or {})}
        svc = Service(name, args, self.root / "logs" / f"{name}.log", keys).start()
        self.services.append(svc)

    def _approve_providers(
        self, addresses: set[str] | None = None, timeout_s: float = 60.0
    ) -> None:
        """Approves each provider (the demo's two by default) once its agent registered it."""
        pending = set(
            addresses or {dev_account(PROVIDER_A).address, dev_account(PROVIDER_B).address}
        )
        deadline = time.monotonic() + timeout_s
        while pending:
            for addr in list(pending):
                status, _, _ = self.admin.get_provider(addr)
                if status == ProviderStatus.REGISTERED:
                    self.admin.approve_provider(addr)
                if status in (ProviderStatus.REGISTERED, ProviderStatus.APPROVED):
                    pending.discard(addr)
            self._check_services()
            if time.monotonic() > deadline:
                raise RuntimeError(f"providers {sorted(pending)} did not register in {timeout_s} s")
            time.sleep(0.5)
        console.print("  providers  registered and approved by the admin")

    def _fund(self, index: int) -> None:
        m = self.market(index)
        self.admin.mint(dev_account(index).address, 100 * CREDIT)
        m.approve(2**256 - 1)
        m.deposit(50 * CREDIT)

    def _wait_api(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.api_port}/api/health", timeout=1).is_success:
                    return
            except httpx.HTTPError:
                pass
            self._check_services()
            time.sleep(0.3)
        raise RuntimeError(f"the API did not answer on port {self.api_port} in {timeout_s} s")

    def _check_services(self) -> None:
        for svc in self.services:
            if not svc.alive:
                raise RuntimeError(
                    f"service {svc.name} exited ({svc.process.returncode if svc.process else '?'})"
                    f"; its log {svc.log_path} ends with:\n{svc.tail()}"
                )

    # ------------------------------------------------------------------ demo jobs

    def run_jobs(self, jobs: list[DemoJob], timeout_s: float = 240.0) -> bool:
        for job in jobs:
            spec: JobSpec = parse_spec(job.spec)
            m = self.market(job.customer)
            job.job_id = m.request_job(
                encode_spec(spec),
                spec.cpus,
                spec.gpus,
                spec.mem_mb,
                max_price_per_minute=10 * CREDIT,
                escrow=job.escrow,
            )
            console.print(
                f"  submitted  job {job.job_id} [cyan]{job.label}[/] by "
                f"{'alice' if job.customer == ALICE else 'bob'}, escrow "
                f"{billing.from_units(job.escrow)} credits, expecting {job.expected.name}"
            )
        deadline = time.monotonic() + timeout_s
        seen: dict[int, JobStatus] = {}
        triggered: set[int] = set()
        while time.monotonic() < deadline:
            for job in jobs:
                status = self.admin.get_job(job.job_id).status
                if seen.get(job.job_id) != status:
                    seen[job.job_id] = status
                    console.print(f"  job {job.job_id:>3} {job.label:<10} {status.name}")
                if status == JobStatus.RUNNING and job.on_running and job.job_id not in triggered:
                    triggered.add(job.job_id)
                    job.on_running(self.market(job.customer), job.job_id)
            if all(s.terminal for s in seen.values()):
                break
            self._check_services()
            time.sleep(1.0)
        ok = all(seen.get(j.job_id) == j.expected for j in jobs)
        table = Table(title="demo jobs")
        for col in ("job", "label", "expected", "reached", ""):
            table.add_column(col)
        for j in jobs:
            got = seen.get(j.job_id)
            table.add_row(
                str(j.job_id),
                j.label,
                j.expected.name,
                got.name if got else "-",
                "[green]ok[/]" if got == j.expected else "[red]MISMATCH[/]",
            )
        console.print(table)
        return ok

    def audit(self, jobs: list[DemoJob]) -> bool:
        from metascheduler.audit import audit_all, audit_job

        m = Market(connect(self.anvil.url), self.deployment.market)
        for j in jobs:
            result = audit_job(m, j.job_id, from_block=self.deployment.block)
            console.print(_timeline_table(result, j.label))
        grid = audit_all(m, from_block=self.deployment.block, results=self.stored)
        verdict = "[green]clean[/]" if grid.ok else "[red]DISCREPANCIES[/]"
        console.print(f"\naudit of the whole grid: {verdict}")
        mismatched = grid.to_json()["results_mismatched"]
        checked = grid.results_checked or 0
        console.print(
            f"  stored results of {checked} job{'' if checked == 1 else 's'} "
            + ("match the digests committed on chain" if not mismatched else f"{mismatched} differ")
        )
        for d in grid.all_discrepancies[:20]:
            console.print(f"  [red]job {d.job_id} block {d.block}: {d.message}[/]")
        return bool(grid.ok)

    def write_env_file(self) -> Path:
        """Settings for the CLI against this devnet, as alice: the RPC URL, the deployment file
        (the market, its block and chain) and her key. Her key is anvil's public development
        key; it goes in a file readable by its owner only, never on screen."""
        deployment = self.root / "deployment.json"
        deployment.unlink(missing_ok=True)  # the previous run's chain is gone
        write_deployment(self.deployment, deployment)
        path = self.root / "env.sh"
        key = "0x" + bytes(dev_account(ALICE).key).hex()
        path.write_text(
            f"export MS_RPC_URL={self.anvil.url}\n"
            f"export MS_DEPLOYMENT={deployment}\n"
            f"export MS_API_URL=http://127.0.0.1:{self.api_port}\n"
            f"export MS_DEVNET_KEY={key}\n"
            "export MS_KEY_ENV=MS_DEVNET_KEY\n"
        )
        path.chmod(0o600)
        return path

    def demo_jobs(self) -> list[DemoJob]:
        jobs = demo_jobs()
        if self.files is not None:
            jobs.append(container_job(self.files))
        return jobs

    def results(self, job: DemoJob) -> bool:
        """The job's lines and output files, as its customer reads them (decrypted with their
        wallet), and the result digest checked."""
        from metascheduler.client import Client

        client = Client(self.market(job.customer), api_url=f"http://127.0.0.1:{self.api_port}")
        stream = client.logs(job.job_id, follow=True, timeout_s=60)
        lines = [r for r in stream if not r.agent]
        console.print(f"\njob {job.job_id} ({job.label}) as its customer reads it:")
        for r in lines:
            console.print(f"  {r.stream}: {escape(r.line)}")
        if not stream.final:
            console.print("  [red]its log did not close within 60 s[/]")
            return False
        got = client.outputs(job.job_id, self.root / "outputs" / str(job.job_id))
        where = "checked against the digest on chain" if got.committed else "computed"
        console.print(
            f"  outputs: {', '.join(got.files) or 'none'} in {got.dest}; "
            f"result digest {got.digest} {where}"
        )
        return any(r.line == "hello from the grid" for r in lines)

    def down(self) -> None:
        if self.profile:
            # A busy service finishes its round, then writes its profile: more than the 10 s
            # ``stop`` waits by default before it kills, on a loaded machine.
            for svc in self.services:
                if svc.alive and svc.process is not None:
                    svc.process.send_signal(signal.SIGTERM)
            for svc in reversed(self.services):
                svc.stop(timeout_s=120.0)
        for svc in reversed(self.services):
            svc.stop()
        if self.objects is not None:
            self.objects.stop()
        if self.anvil is not None:
            self.anvil.stop()
        self._closing.close()


def _timeline_table(result: Any, label: str) -> Table:
    verdict = "[green]bill follows the rules[/]" if result.ok else "[red]bill is WRONG[/]"
    table = Table(
        title=f"job {result.job_id} ({label}): {result.state}; {verdict}", title_justify="left"
    )
    for col in ("block", "time", "transition", "credits moved"):
        table.add_column(col)
    for step in result.steps:
        moved = ", ".join(
            f"{k.replace('_', ' ')} {billing.from_units(v)}" for k, v in step.moved.items() if v
        )
        table.add_row(
            str(step.block),
            time.strftime("%H:%M:%S", time.gmtime(step.time)),
            f"{step.from_status or '-'} -> {step.to_status}",
            moved,
        )
    for d in result.discrepancies:
        table.add_row("", "", "[red]discrepancy[/]", f"[red]{d.message}[/]")
    return table


def run_devnet_command(once: bool = False, root: Path | None = None) -> int:
    root = root or REPO_ROOT / "var" / "devnet"
    net = Devnet(root)

    def _stop(*_: object) -> None:
        raise KeyboardInterrupt  # unwinds to the `finally` below, which stops every service

    signal.signal(signal.SIGTERM, _stop)
    # Set explicitly: a shell that starts us in the background hands us SIGINT ignored.
    signal.signal(signal.SIGINT, _stop)
    try:
        net.up()
        jobs = net.demo_jobs()
        jobs_ok = net.run_jobs(jobs)
        audit_ok = net.audit(jobs)
        results_ok = net.results(jobs[0])
        ok = jobs_ok and audit_ok and results_ok
        jobs_words = "every demo job reached its expected state" if jobs_ok else "some went wrong"
        console.print(f"\n[bold]{jobs_words}; audit {'clean' if audit_ok else 'NOT clean'}[/]")
        console.print(f"dashboard: http://127.0.0.1:{net.api_port}/   logs: {root / 'logs'}")
        env_file = net.write_env_file()
        if once:
            return 0 if ok else 1
        console.print(
            f"\nThe grid stays up until Ctrl-C. Try the CLI as alice:\n"
            f"  source {env_file}\n"
            "  metascheduler credits balance\n"
            "  metascheduler job submit examples/specs/hello.yaml --escrow 1 --max-price 0.01\n"
            "  metascheduler job watch <ID>\n"
            "  metascheduler job logs <ID> --follow\n"
            "  metascheduler job outputs <ID> -o out/\n"
            "  metascheduler audit all\n"
            "  metascheduler audit account"
        )
        while True:
            net._check_services()
            time.sleep(1)
        return 0
    except KeyboardInterrupt:
        return 0
    except RuntimeError as exc:
        console.print(f"[red]devnet failed:[/] {exc}")
        return 1
    finally:
        console.print("stopping the grid ...")
        net.down()
