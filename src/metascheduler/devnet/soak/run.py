"""Running a soak: the grid up, load and faults, the drain, the verdict."""

from __future__ import annotations

import json
import random
import signal
import threading
import time
import traceback
from typing import Any

from metascheduler.chain import Market
from metascheduler.chain.rpc import connect
from metascheduler.devnet.soak.common import (
    SoakOptions,
    say,
)
from metascheduler.devnet.soak.faults import Injector
from metascheduler.devnet.soak.grid import SoakGrid
from metascheduler.devnet.soak.verdict import (
    Verdict,
    job_states,
    job_views,
    judge,
)
from metascheduler.devnet.soak.workload import Workload


def _progress(grid: SoakGrid, work: Workload, inj: Injector, started: float, phase: str) -> None:
    try:
        m = Market(connect(grid.anvil.url), grid.deployment.market)
        count = m.job_count()
        states = job_states(m, count)
        terminal = sum(1 for s in states.values() if s.terminal)
    except Exception as exc:
        say(f"progress: chain unreadable ({type(exc).__name__})")
        return
    down = [s.name for s in grid.services if not s.alive]
    cut = " RPC CUT" if grid.proxy and grid.proxy.is_cut else ""
    say(
        f"{phase} {time.monotonic() - started:5.0f} s: jobs submitted "
        f"{sum(work.submitted.values())}, on chain {count}, terminal {terminal}; "
        f"faults {inj.total} {dict(inj.faults)}" + (f"; down {down}" if down else "") + cut
    )


def _ended(grid: SoakGrid, inj: Injector) -> int:
    """Jobs ended so far, the spam burst's excluded."""
    m = Market(connect(grid.anvil.url), grid.deployment.market)
    spam = {a.lower() for a in inj.spam.addresses}
    views = job_views(m, m.job_count())
    return sum(1 for v in views.values() if v.status.terminal and v.customer.lower() not in spam)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_soak(opts: SoakOptions) -> int:
    # SIGTERM unwinds like Ctrl-C, so the grid's processes (in their own sessions) are stopped.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    rng = random.Random(opts.seed)
    grid = SoakGrid(opts, rng)
    verdict: Verdict | None = None
    inj: Injector | None = None
    try:
        grid.up()
        work = Workload(grid, opts, opts.seed)
        inj = Injector(grid, opts, random.Random(rng.getrandbits(64)))
        work.fund()
        inj.fund()
        started = time.monotonic()
        end = started + opts.minutes * 60
        say(f"soak for {opts.minutes:g} min (seed {opts.seed}); faults every ~{inj.interval:.0f} s")
        work.start()
        inj.start()
        # Progress from its own thread: reading every job's state takes long once the burst is
        # on chain, and must not stretch the load past its time.
        quiet = threading.Event()

        def report() -> None:
            while not quiet.wait(opts.progress_s):
                _progress(grid, work, inj, started, "load ")

        threading.Thread(target=report, name="progress", daemon=True).start()
        time.sleep(max(0.0, end - time.monotonic()))
        quiet.set()
        say("stopping the load and the faults; bringing everything back")
        work.join()
        work.load_s = time.monotonic() - started
        inj.halt()
        work.ended_in_load = _ended(grid, inj)
        inj.finish()
        for svc in grid.services:
            if not svc.alive:
                code = svc.process.returncode if svc.process else None
                say(f"{svc.name} is down after the faults (exit {code}): restarting it")
                svc.start()
        drain_end = time.monotonic() + opts.drain_s
        m = Market(connect(grid.anvil.url), grid.deployment.market)
        while time.monotonic() < drain_end:
            states = job_states(m, m.job_count())
            if all(s.terminal for s in states.values()):
                break
            time.sleep(opts.progress_s)
            _progress(grid, work, inj, started, "drain")
        for n in inj.notes:
            say(f"fault: {n}")
        for e in work.error_samples:
            say(f"customer error: {e}")
        say(f"customer actions: {dict(work.actions)}")
        verdict = judge(grid, inj, work, opts)
    except Exception:
        traceback.print_exc()
        say("the soak itself failed before its verdict")
    finally:
        if inj is not None:
            inj.halt()  # no restore may start a service once the grid is going down
        crashed = [s.name for s in grid.services if s.process and not s.alive]
        if crashed:
            say(f"services not running at the end: {crashed}; logs in {grid.root / 'logs'}")
        # A second Ctrl-C must not leave the grid running: ignore it while stopping.
        main = threading.current_thread() is threading.main_thread()
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            grid.down()
        finally:
            if main:
                signal.signal(signal.SIGINT, old_int)
    if verdict is None:
        print(json.dumps({"ok": False, "error": "the soak failed before its verdict"}))
        return 3
    out = {"ok": verdict.ok, **verdict.__dict__}
    say("verdict: " + ("all promises kept" if verdict.ok else "PROMISES BROKEN (see above)"))
    print(json.dumps(out, sort_keys=False), flush=True)
    return 0 if verdict.ok else 1
