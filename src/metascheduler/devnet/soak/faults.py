"""The soak's fault injector: kills, RPC cuts, reorgs and malformed input."""

from __future__ import annotations

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
    CUSTOMERS,
    MAX_REORG_DEPTH,
    SoakOptions,
)
from metascheduler.devnet.soak.grid import SoakGrid
from metascheduler.heartbeat import Heartbeat, sign


def _rpc(w3: Web3, method: str, params: list[Any]) -> Any:
    """A raw JSON-RPC call (anvil's own methods have no web3 wrapper)."""
    r: dict[str, Any] = dict(w3.provider.make_request(method, params))  # type: ignore[arg-type]
    if r.get("error"):
        raise RuntimeError(f"{method} failed: {r['error']}")
    return r.get("result")


FAULT_KINDS = ("oracle_kill", "agent_kill", "rpc_cut", "reorg", "api_garbage", "cli_garbage")


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
        self.thread = threading.Thread(target=self._loop, name="injector", daemon=True)
        seconds = opts.minutes * 60
        self.interval = opts.fault_interval_s or max(4.0, min(15.0, seconds / 40))
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{grid.api_port}", timeout=10)

    @property
    def total(self) -> int:
        """Faults injected: the two refinements (`agent_kill_past_heartbeat`,
        `reorg_dropping_txs`) count some of the `agent_kill` and `reorg` faults again."""
        return sum(self.faults[k] for k in FAULT_KINDS)

    def start(self) -> None:
        self.thread.start()

    def finish(self) -> None:
        """Stops injecting and brings every service and the RPC back at once."""
        self.stop.set()
        self.thread.join(120)
        for _, what, fn in sorted(self._restores, key=lambda r: r[0]):
            self._run_restore(what, fn)
        self._restores.clear()

    def _note(self, msg: str) -> None:
        self.notes.append(f"{time.strftime('%H:%M:%S')} {msg}")

    def _loop(self) -> None:
        # Every kind once first, in a seeded order, so a short run covers them all.
        queue = list(FAULT_KINDS)
        self.rng.shuffle(queue)
        next_at = time.monotonic() + self.rng.uniform(2, self.interval)
        while not self.stop.wait(0.25):
            now = time.monotonic()
            for r in [r for r in self._restores if r[0] <= now]:
                self._restores.remove(r)
                self._run_restore(r[1], r[2])
            if now < next_at:
                continue
            kind = queue.pop(0) if queue else self.rng.choice(FAULT_KINDS)
            try:
                if getattr(self, f"_{kind}")():
                    self.faults[kind] += 1
            except Exception as exc:
                self._note(f"fault {kind} failed to inject: {type(exc).__name__}: {exc}")
            next_at = time.monotonic() + self.rng.expovariate(1 / self.interval)

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
        self._note(f"SIGKILL {name}; restart in {delay_s:.0f} s")

        def restart() -> None:
            self._down.discard(name)
            svc.start()

        self._later(delay_s, f"{name} restart", restart)
        return True

    def _oracle_kill(self) -> bool:
        return self._kill("oracle", self.rng.uniform(0.5, 6))

    def _agent_kill(self) -> bool:
        name = self.rng.choice(sorted(self.grid.providers))
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
        # Interval mining paused: the blocks we read are the blocks anvil_reorg replaces.
        _rpc(w3, "evm_setIntervalMining", [0])
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
        finally:
            _rpc(w3, "evm_setIntervalMining", [1])
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
