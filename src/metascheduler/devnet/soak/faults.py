"""The soak's fault injector: kills, outages, RPC cuts, reorgs, a ban, a price rise, hostile
specs, a spam burst and malformed input."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from web3 import Web3

from metascheduler.chain.rpc import connect
from metascheduler.devnet.anvil import dev_account
from metascheduler.devnet.soak.common import (
    CLI_WALLET,
    CREDIT,
    CUSTOMERS,
    HOSTILE,
    MAX_PRICE,
    MAX_REORG_DEPTH,
    PRICE_CPU,
    RAISED_PRICE_CPU,
    SPAM_WALLETS,
    SoakOptions,
    say,
)
from metascheduler.devnet.soak.grid import SoakGrid
from metascheduler.devnet.soak.wallets import Wallets
from metascheduler.heartbeat import Heartbeat, sign


def _rpc(w3: Web3, method: str, params: list[Any]) -> Any:
    """A raw JSON-RPC call (anvil's own methods have no web3 wrapper)."""
    r: dict[str, Any] = dict(w3.provider.make_request(method, params))  # type: ignore[arg-type]
    if r.get("error"):
        raise RuntimeError(f"{method} failed: {r['error']}")
    return r.get("result")


#: Seconds for the interval miner to finish a block under way before a reorg (1-second blocks).
REORG_SETTLE_S = 1.5


def _holes(w3: Web3, first: int, last: int) -> list[int]:
    """Block numbers in first..last the node has no block for."""
    return [
        n
        for n in range(first, last + 1)
        if _rpc(w3, "eth_getBlockByNumber", [hex(n), False]) is None
    ]


#: Faults that recur at random after the first round.
RECURRING = (
    "oracle_kill",
    "agent_kill",
    "rpc_cut",
    "reorg",
    "api_garbage",
    "cli_garbage",
    "api_down",
    "hostile_specs",
)
#: Faults that happen once a run, in the first round (a ban is for good; one price rise says
#: enough).
ONCE = ("ban", "price_raise")
#: Faults the first round opens with, in this order.
FIRST = ("hostile_specs", "api_down")
#: The spam burst comes at a fifth of the run, whatever the order of the others.
BURST_AT = 0.2
FAULT_KINDS = (*RECURRING, *ONCE, "burst")


def _json_spec(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "script": "echo hostile",
        "resources": {"tasks": 1, "cpus_per_task": 1, "mem_per_cpu_mb": 256},
        "time_limit_minutes": 5,
        **fields,
    }


#: Specs that killed agents or the oracle's ingestion on earlier versions, sent raw (around the
#: client's validation, as an attacker would): each must end refused or run, every agent alive.
HOSTILE_SPECS: dict[str, bytes] = {
    "tilde": json.dumps(_json_spec("hostile-tilde", workdir="~no_such_user/x")).encode(),
    # A lone surrogate, as a JSON escape: valid JSON, and no UTF-8 can encode it.
    "surrogate": json.dumps(_json_spec("hostile-surrogate", env={"A": "\ud800"})).encode(),
    "etc_passwd": json.dumps(_json_spec("hostile-passwd", workdir="/etc/passwd")).encode(),
    # 2.4 kB of nesting: deeper than Python's JSON decoder goes at its default recursion limit.
    "deep": ('{"name": ' + "[" * 1200 + "]" * 1200 + ', "script": "echo deep"}').encode(),
}


class Injector:
    """Faults at random times from one seeded generator; restorations run from the same loop."""

    def __init__(self, grid: SoakGrid, opts: SoakOptions, rng: random.Random):
        self.grid = grid
        self.opts = opts
        self.rng = rng
        self.stop = threading.Event()
        self.faults: Counter[str] = Counter()
        self.api_5xx: list[str] = []
        self.api_accepted: list[str] = []
        self.cli_wrong: list[str] = []
        self.notes: list[str] = []
        self._restores: list[tuple[float, str, Callable[[], None]]] = []
        self._down: set[str] = set()
        self._agent_kills = 0
        #: Jobs of the hostile customer, cancelled at the end if no agent ran them.
        self.hostile_jobs: list[int] = []
        self.spam = Wallets(grid.anvil.url, grid.market(0), "spam", SPAM_WALLETS)
        self.spam_sent = 0
        self._burst_thread: threading.Thread | None = None
        self._burst_raws: list[bytes] = []
        #: Agents found dead that the injector had not killed (a crash, e.g. on a hostile spec).
        self.crashed: list[str] = []
        #: The banned provider's agent once banned: it stops itself at its next start (a banned
        #: provider cannot register), which is no crash.
        self.banned = ""
        #: Blocks anvil lost in a reorg (a defect of the node, not of the grid): reported.
        self.anvil_holes: list[int] = []
        #: service name -> (down since, back at) wall-clock windows, for the verdict's bounds
        self.downtime: dict[str, list[tuple[float, float]]] = {}
        self.thread = threading.Thread(target=self._loop, name="injector", daemon=True)
        seconds = opts.minutes * 60
        self.interval = opts.fault_interval_s or max(4.0, min(15.0, seconds / 40))
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{grid.api_port}", timeout=10)

    @property
    def total(self) -> int:
        """Faults injected: the two refinements (`agent_kill_past_heartbeat`,
        `reorg_dropping_txs`) count some of the `agent_kill` and `reorg` faults again."""
        return sum(self.faults[k] for k in FAULT_KINDS)

    def fund(self) -> None:
        """Funds the spam wallets and signs the burst before the clock starts: signing 10,000
        transactions takes the soak's own process a while on a busy machine."""
        self.spam.fund_units(self.grid.admin, minted=10 * CREDIT, deposited=10 * CREDIT)
        spec = b'{"name":"soak-spam","script":"true"}'
        self._burst_raws = self.spam.same_requests(self.opts.burst_jobs, spec, 1, MAX_PRICE)
        say(f"{len(self._burst_raws)} spam jobs signed for the burst")

    def halt(self) -> None:
        """Stops injecting (what is down stays down until `finish`)."""
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(120)

    def start(self) -> None:
        self.thread.start()

    def finish(self) -> None:
        """Stops injecting and brings every service and the RPC back at once; then the
        customers of jobs no agent will run (hostile specs, the spam) cancel them."""
        self.halt()
        for _, what, fn in sorted(self._restores, key=lambda r: r[0]):
            self._run_restore(what, fn)
        self._restores.clear()
        if self._burst_thread is not None:
            self._burst_thread.join(300)
        self._cancel_leftovers()

    def _cancel_leftovers(self) -> None:
        from metascheduler.devnet.soak.verdict import job_views

        market = self.grid.market(HOSTILE)
        views = job_views(market, market.job_count())
        spam = {a.lower(): i for i, a in enumerate(self.spam.addresses)}
        raws: list[bytes] = []
        hostile = 0
        for j, v in views.items():
            if v.status.terminal:
                continue
            if j in self.hostile_jobs:
                try:
                    market.cancel_job(j)
                    hostile += 1
                except Exception as exc:
                    self._note(f"cancelling hostile job {j} failed: {type(exc).__name__}: {exc}")
            elif v.customer.lower() in spam:
                raws.append(self.spam.cancel(spam[v.customer.lower()], j))
        self.spam.send(raws)
        say(f"customers cancelled {hostile} hostile-spec and {len(raws)} spam jobs left PENDING")

    def _note(self, msg: str) -> None:
        self.notes.append(f"{time.strftime('%H:%M:%S')} {msg}")

    def _loop(self) -> None:
        # Every kind once first: the hostile specs and the API outage lead (a short run must
        # cover them, whatever the machine's speed), the others follow in a seeded order.
        rest = [k for k in (*RECURRING, *ONCE) if k not in FIRST]
        self.rng.shuffle(rest)
        queue = [*FIRST, *rest]
        started = time.monotonic()
        burst_at = started + BURST_AT * self.opts.minutes * 60
        next_at = started + self.rng.uniform(2, self.interval)
        while not self.stop.wait(0.25):
            now = time.monotonic()
            if now >= burst_at and self._burst():
                self.faults["burst"] += 1
            for r in [r for r in self._restores if r[0] <= now]:
                self._restores.remove(r)
                self._run_restore(r[1], r[2])
            self._look_for_crashes()
            if now < next_at:
                continue
            kind = queue.pop(0) if queue else self.rng.choice(RECURRING)
            try:
                if getattr(self, f"_{kind}")():
                    self.faults[kind] += 1
                elif kind in ONCE:
                    queue.append(kind)  # not now (e.g. nothing running to ban): later
            except Exception as exc:
                self._note(f"fault {kind} failed to inject: {type(exc).__name__}: {exc}")
            next_at = time.monotonic() + self.rng.expovariate(1 / self.interval)

    def _look_for_crashes(self) -> None:
        for svc in self.grid.services:
            if svc.name in self._down or svc.alive or svc.process is None:
                continue
            if svc.name == self.banned:
                self._down.add(svc.name)
                self._note(f"{svc.name} stopped itself: its provider is banned")
                self.downtime.setdefault(svc.name, []).append((time.time(), float("inf")))
                continue
            code = svc.process.returncode
            self.crashed.append(f"{svc.name} (exit {code})")
            self._note(f"{svc.name} died by itself (exit {code}); restarting it")
            svc.start()
            self.downtime.setdefault(svc.name, []).append((time.time() - 0.25, time.time()))

    def _later(self, delay_s: float, what: str, fn: Callable[[], None]) -> None:
        self._restores.append((time.monotonic() + delay_s, what, fn))

    def _run_restore(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:
            self._note(f"restoring {what} failed: {type(exc).__name__}: {exc}")

    # -- processes

    def _kill(self, name: str, delay_s: float) -> bool:
        if name in self._down:
            return False
        svc = self.grid.by_name[name]
        svc.kill()  # SIGKILL
        self._down.add(name)
        since = time.time()
        self._note(f"SIGKILL {name}; restart in {delay_s:.0f} s")

        def restart() -> None:
            self._down.discard(name)
            svc.start()
            self.downtime.setdefault(name, []).append((since, time.time()))

        self._later(delay_s, f"{name} restart", restart)
        return True

    def _oracle_kill(self) -> bool:
        return self._kill("oracle", self.rng.uniform(0.5, 6))

    def _agent_kill(self) -> bool:
        # Not the banned provider's agent: once banned it refuses to start again (registration
        # fails), which would leave its running jobs to the oracle's silence rule and their
        # results on its disk; the ban's own rule is that those jobs run on, reported as usual.
        name = self.rng.choice(sorted(set(self.grid.providers) - {self.banned}))
        self._agent_kills += 1
        # Every third kill (the second, fifth, ...) outlives the heartbeat timeout, so that even
        # a short run sees the oracle fail a silent provider's jobs.
        if self._agent_kills % 3 == 2:
            # Past the heartbeat timeout: the oracle must fail the agent's RUNNING jobs.
            delay = self.opts.heartbeat_timeout_s + 5 + self.rng.uniform(3, 10)
            self.faults["agent_kill_past_heartbeat"] += 1
        else:
            delay = self.rng.uniform(0.5, 5)
        return self._kill(name, delay)

    def _api_down(self) -> bool:
        """The API (heartbeats and results) down past the oracle's heartbeat timeout."""
        return self._kill("api", self.opts.heartbeat_timeout_s + self.rng.uniform(5, 10))

    def _ban(self) -> bool:
        """The admin bans a provider while it runs jobs; they must run on and be billed."""
        name = self.grid.ban_victim
        if name in self._down:
            return False
        state = self.grid.agents[name] / "state.json"
        running = [
            r
            for r in (
                json.loads(state.read_text()).get("jobs", {}) if state.exists() else {}
            ).values()
            if r.get("state") == "RUNNING"
        ]
        if not running:
            return False
        self.grid.admin.ban_provider(dev_account(self.grid.providers[name]).address)
        self.banned = name
        self._note(f"banned {name} with {len(running)} jobs running on its backend")
        return True

    def _price_raise(self) -> bool:
        """One provider re-registers at a higher price (its agent restarted with it): jobs
        placed before keep their price, later ones pay at most the quote."""
        name = "agent-2"
        if name in self._down:
            return False
        path = self.grid.agent_config(name)
        text = path.read_text()
        raised = text.replace(f"\ncpu = {PRICE_CPU}\n", f"\ncpu = {RAISED_PRICE_CPU}\n")
        if raised == text:
            return False
        svc = self.grid.by_name[name]
        since = time.time()
        svc.stop()
        path.write_text(raised)
        svc.start()
        self.downtime.setdefault(name, []).append((since, time.time()))
        self._note(f"{name} raised its CPU price from {PRICE_CPU} to {RAISED_PRICE_CPU}")
        return True

    def _hostile_specs(self) -> bool:
        market = self.grid.market(HOSTILE)
        for what, spec in HOSTILE_SPECS.items():
            try:
                self.hostile_jobs.append(
                    market.request_job(
                        spec, 1, 0, 256, max_price_per_minute=MAX_PRICE, escrow=CREDIT // 10
                    )
                )
            except Exception as exc:
                self._note(f"hostile spec {what} not submitted: {type(exc).__name__}: {exc}")
        return True

    def _burst(self) -> bool:
        """A burst of tiny jobs whose escrow pays no minimum run: they must not hold up the
        funded jobs, and their customers cancel them at the end."""
        if self._burst_thread is not None:
            return False
        raws, n = self._burst_raws, len(self._burst_raws)

        def send() -> None:
            started = time.monotonic()
            self.spam_sent = len(self.spam.send(raws))
            mined = self.spam.wait_mined()
            self._note(
                f"burst: {self.spam_sent} of {n} tiny jobs sent, "
                + (f"mined in {time.monotonic() - started:.0f} s" if mined else "NOT all mined")
            )

        self._burst_thread = threading.Thread(target=send, name="burst", daemon=True)
        self._burst_thread.start()
        return True

    # -- the RPC

    def _rpc_cut(self) -> bool:
        proxy = self.grid.proxy
        if proxy is None or proxy.is_cut:
            return False
        proxy.cut()
        delay = self.rng.uniform(2, 8)
        self._note(f"RPC cut for {delay:.1f} s")
        self._later(delay, "RPC", proxy.restore)
        return True

    def _reorg(self) -> bool:
        depth = self.rng.randint(1, MAX_REORG_DEPTH)
        drop_services = self.rng.random() < 0.3
        w3 = connect(self.grid.anvil.url)
        customers = {dev_account(i).address.lower() for i in CUSTOMERS}
        # Interval mining paused: the blocks we read are the blocks anvil_reorg replaces. A
        # block the interval miner has under way lands first: anvil_reorg racing it numbered
        # the new branch past the blocks it dropped, and left a hole in the chain that no read
        # of those blocks ever got past (seen in 10-minute runs: every agent and the oracle's
        # ingestion stopped at it for good).
        _rpc(w3, "evm_setIntervalMining", [0])
        time.sleep(REORG_SETTLE_S)
        try:
            head = int(w3.eth.block_number)
            if head - depth <= self.grid.deployment.block + 2:
                return False
            txs: list[tuple[str, str, int]] = []  # raw, sender, offset in the new branch
            for offset, n in enumerate(range(head - depth + 1, head + 1)):
                block = w3.eth.get_block(n, full_transactions=True)
                for tx in block["transactions"]:
                    assert not isinstance(tx, bytes)  # full_transactions=True gives dicts
                    raw = _rpc(w3, "eth_getRawTransactionByHash", [Web3.to_hex(tx["hash"])])
                    txs.append((str(raw), str(tx["from"]).lower(), offset))
            dropped: set[str] = set()
            if drop_services:
                # Forget every transaction of one service in these blocks (a service, not a
                # customer, so job ids stay the same): it must notice and send again.
                senders = sorted({s for _, s, _ in txs if s not in customers})
                if senders:
                    dropped.add(self.rng.choice(senders))
            replay: list[list[Any]] = []
            last = 0
            for raw, sender, offset in txs:
                if sender in dropped:
                    continue
                # Some transactions land a block later than before; order is kept.
                off = min(depth - 1, max(last, offset + (self.rng.random() < 0.3)))
                last = off
                replay.append([raw, off])
            _rpc(w3, "anvil_reorg", [depth, replay])
            holes = _holes(w3, head - depth + 1, int(w3.eth.block_number))
        finally:
            _rpc(w3, "evm_setIntervalMining", [1])
        if holes:
            self.anvil_holes.extend(holes)
            say(f"ANVIL: its reorg at block {head} left no block at {holes}")
        self._note(
            f"reorg depth {depth} at block {head}: {len(replay)} of {len(txs)} txs replayed"
            + (f", dropped all of {sorted(dropped)}" if dropped else "")
        )
        if dropped:
            self.faults["reorg_dropping_txs"] += 1
        return True

    # -- bad input

    def _api_garbage(self) -> bool:
        market = self.grid.deployment.market
        provider = dev_account(self.rng.choice(sorted(self.grid.providers.values())))
        stranger = Account.create()
        hb = Heartbeat(provider.address, market, 31337, 1, int(time.time()), 1, 0, 100)
        # A provider's name over someone else's signature.
        forged = sign(
            Heartbeat(stranger.address, market, 31337, 10**9, int(time.time()), 1, 0, 1), stranger
        )
        forged["heartbeat"]["provider"] = provider.address
        replayed = sign(hb, provider)  # seq 1: long since used by the real agent
        unknown = sign(
            Heartbeat(stranger.address, market, 31337, 1, int(time.time()), 1, 0, 1), stranger
        )
        wrong_types = sign(hb, provider)
        wrong_types["heartbeat"]["seq"] = "1"
        wrong_types["heartbeat"]["running"] = "all of them"
        huge = {"heartbeat": {**hb.__dict__, "running": list(range(200_000))}, "signature": "0x"}
        posts: list[tuple[str, Any]] = [
            ("{not json", None),
            ("[]", None),
            ("null", None),
            ("1e999999", None),
            ('{"heartbeat": 1, "signature": 2}', None),
            ("", forged),
            ("", replayed),
            ("", unknown),
            ("", wrong_types),
            ("", huge),
            ("", {**sign(hb, provider), "extra": True}),
            ("", {"heartbeat": {**hb.__dict__, "seq": 2**300}, "signature": "0x" + "ab" * 65}),
        ]
        gets = [
            "/api/jobs/" + "9" * 80,
            "/api/jobs/-1",
            "/api/jobs/abc",
            "/api/jobs/1.5",
            "/api/jobs/%00",
            "/api/jobs?limit=abc",
            "/api/jobs?limit=100000000000000000000000",
            "/api/jobs?status=NOPE",
            "/api/jobs?customer=0xzz",
            "/api/jobs?offset=1e400",
            "/api/jobs?cursor=" + "9" * 400,
            "/api/providers?x=" + "y" * 5000,
            "/api/jobs/" + str(2**63),
        ]
        n = 0
        for text, body in self.rng.sample(posts, 5):
            if body is None:
                r = self._request("POST", "/api/heartbeats", content=text.encode(), json_ct=True)
            else:
                r = self._request("POST", "/api/heartbeats", json_body=body)
            n += r is not None
        for path in self.rng.sample(gets, 5):
            n += self._request("GET", path) is not None
        n += self._request("DELETE", "/api/jobs/1") is not None
        return n > 0

    def _request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        json_body: Any = None,
        json_ct: bool = False,
    ) -> httpx.Response | None:
        headers = {"content-type": "application/json"} if json_ct else None
        try:
            r = self.http.request(method, path, content=content, json=json_body, headers=headers)
        except httpx.HTTPError as exc:
            self._note(f"API {method} {path[:60]}: no answer ({type(exc).__name__})")
            return None
        if r.status_code >= 500:
            self.api_5xx.append(f"{method} {path[:80]} -> {r.status_code}: {r.text[:200]}")
        elif r.status_code < 400 and method != "GET":
            # A forged, replayed or malformed heartbeat accepted (GETs may ignore junk).
            self.api_accepted.append(f"{method} {path[:80]} -> {r.status_code}: {r.text[:200]}")
        return r

    BROKEN_SPECS = (
        "name: [unclosed\nscript: echo",
        "- a\n- b\n",
        "name: x\n",
        "name: x\nscript: echo\nresources: {tasks: many}\n",
        "name: x\nscript: echo\nresources: {tasks: 1, cpus_per_task: -4}\n",
        "name: x\nscript: echo\ntime_limit_minutes: 1e400\n",
        "name: x\nscript: echo\nresources: {tasks: 99999999999999999999999999}\n",
        "\x00\x01\x02binary\xff",
        "name: &a [*a]\nscript: echo\n",
        "name: x\nscript: echo\nunknown_field: 1\n",
        '{"name": "x", "script": "echo", "resources": "lots"}',
    )

    def _cli_garbage(self) -> bool:
        spec = self.rng.choice(self.BROKEN_SPECS)
        cli = Path(sys.executable).with_name("metascheduler")
        acct = dev_account(CLI_WALLET)
        w3 = connect(self.grid.anvil.url)
        before = int(w3.eth.get_transaction_count(acct.address, "pending"))
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(spec)
        try:
            proc = subprocess.run(
                [
                    str(cli),
                    "--rpc-url",
                    self.grid.anvil.url,
                    "--market",
                    self.grid.deployment.market,
                    "--key-env",
                    "SOAK_CLI_KEY",
                    "--from-block",
                    str(self.grid.deployment.block),
                    "job",
                    "submit",
                    f.name,
                    "--escrow",
                    "1",
                    "--max-price",
                    "0.01",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                env={
                    **os.environ,
                    "SOAK_CLI_KEY": "0x" + bytes(acct.key).hex(),
                },
            )
        finally:
            Path(f.name).unlink(missing_ok=True)
        after = int(w3.eth.get_transaction_count(acct.address, "pending"))
        if proc.returncode != 2 or after != before:
            self.cli_wrong.append(
                f"spec {spec[:40]!r}: exit {proc.returncode} (want 2), nonce {before}->{after}; "
                f"stderr: {proc.stderr.strip()[-300:]}"
            )
        return True
