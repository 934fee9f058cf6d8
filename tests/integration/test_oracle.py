"""The oracle against a real anvil: placement, crashes, RPC outages, housekeeping."""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from metascheduler.chain import JobStatus, Market
from metascheduler.chain.types import Hardware, Placement, Prices, ProviderAction, ProviderStep
from metascheduler.devnet.anvil import dev_account, mine_after
from metascheduler.oracle import service
from metascheduler.oracle.service import Oracle
from metascheduler.store import Job, Provider
from metascheduler.store.models import OracleAction
from tests.conftest import ON_ANVIL_AND_HARDHAT, Grid
from tests.integration import oracle_kit as kit

pytestmark = pytest.mark.chain
CREDIT = kit.CREDIT


def _oracle(grid: Grid, tmp_path: Path, **kw: object) -> Oracle:
    o = service.build(kit.settings(grid, f"sqlite:///{tmp_path / 'oracle.db'}", **kw))
    o.start()
    return o


def _advance(m: Market, seconds: int) -> None:
    mine_after(m.w3, seconds)


def _job_events(m: Market, job_id: int, from_block: int) -> list[str]:
    """The names of the market's events about one job (its id is their first indexed topic)."""
    logs = m.w3.eth.get_logs(
        {"address": m.address, "fromBlock": from_block, "topics": [None, f"0x{job_id:064x}"]}
    )
    return [e.name for e in (m.events.decode(raw) for raw in logs) if e is not None]


@ON_ANVIL_AND_HARDHAT
def test_jobs_from_several_wallets_respect_resources_prices_labels(
    grid: Grid, tmp_path: Path
) -> None:
    small = kit.provider(grid, 2, Hardware(1, 8, 0, 16_384), Prices(1_000, 0, 10), ["x86_64"])
    gpu = kit.provider(
        grid, 5, Hardware(1, 64, 4, 262_144), Prices(5_000, 100_000, 50), ["x86_64", "gpu"]
    )
    c1, c2, c3 = kit.customer(grid, 3), kit.customer(grid, 4), kit.customer(grid, 6)
    cheap = [kit.request(c, f"s{i}", cpus=2, mem_mb=2048) for i, c in enumerate((c1, c2, c3))]
    needs_gpu = kit.request(c2, "g", cpus=4, gpus=1, mem_mb=4096, labels=["gpu"])
    too_wide = kit.request(c3, "wide", cpus=128)
    too_cheap = kit.request(c1, "stingy", cpus=16, mem_mb=1024, max_price=1_000)
    arm = kit.request(c1, "arm", labels=["aarch64"])
    oracle = _oracle(grid, tmp_path, policy="cheapest")
    for _ in range(3):
        oracle.sync_tick()
    m = grid.market()
    saddr, gaddr = small.sender_or_fail().address, gpu.sender_or_fail().address
    for jid in cheap:
        view = m.get_job(jid)
        assert (view.status, view.provider) == (JobStatus.META_SCHEDULED, saddr), jid
    view = m.get_job(needs_gpu)
    assert (view.status, view.provider) == (JobStatus.META_SCHEDULED, gaddr)
    assert view.price_per_minute <= CREDIT
    with oracle.sessions() as s:
        for jid, words in ((too_wide, "too large"), (too_cheap, "price"), (arm, "aarch64")):
            assert m.get_job(jid).status == JobStatus.PENDING
            row = s.get(Job, jid)
            assert row is not None and words in (row.unplaceable_reason or ""), row
    assert set(kit.placed_events(m, grid.deployment.block)) == {*cheap, needs_gpu}
    oracle.close()


def test_keep_expires_reclaims_and_fails_silent_providers(grid: Grid, tmp_path: Path) -> None:
    prov = kit.provider(grid, 2, Hardware(1, 64, 0, 262_144), Prices(1_000, 0, 0), [])
    silent = kit.provider(grid, 5, Hardware(1, 64, 0, 262_144), Prices(2_000, 0, 0), ["silent"])
    cust = kit.customer(grid, 3)
    poor = kit.request(cust, "poor", cpus=1, escrow=1_000)  # 1,000/min: funded 60 s
    idle = kit.request(cust, "idle", cpus=1)
    lost = kit.request(cust, "lost", cpus=1, labels=["silent"], escrow=7 * CREDIT)
    oracle = _oracle(grid, tmp_path, heartbeat_source="api", heartbeat_timeout_s=30.0)
    oracle.ingest_tick()
    now = int(time.time())
    with oracle.sessions.begin() as s:  # what the API writes when agents POST heartbeats
        s.execute(update(Provider).values(last_heartbeat_at=now))
    oracle.sync_tick()
    oracle.sync_tick()
    m = grid.market()
    assert all(m.get_job(j).status == JobStatus.META_SCHEDULED for j in (poor, idle, lost))
    prov.provider_batch(
        [ProviderStep(poor, ProviderAction.ACCEPT), ProviderStep(poor, ProviderAction.START)]
    )
    silent.provider_batch(
        [ProviderStep(lost, ProviderAction.ACCEPT), ProviderStep(lost, ProviderAction.START)]
    )
    oracle.ingest_tick()
    oracle.keep_tick()  # nothing due yet
    assert m.get_job(poor).status == JobStatus.RUNNING
    assert m.get_job(idle).status == JobStatus.META_SCHEDULED
    # The silent provider's last heartbeat is now old; time passes beyond funding and timeouts.
    with oracle.sessions.begin() as s:
        s.execute(
            update(Provider)
            .where(Provider.address == silent.sender_or_fail().address)
            .values(last_heartbeat_at=now - 3600)
        )
    _advance(m, 120)
    oracle.ingest_tick()
    oracle.keep_tick()
    assert m.get_job(poor).status == JobStatus.OUT_OF_CREDITS
    assert m.get_job(lost).status == JobStatus.FAILED
    oracle.ingest_tick()
    with oracle.sessions() as s:
        row = s.get(Job, lost)
        assert row is not None and row.refunded == 7 * CREDIT and row.paid == 0
    # idle: reclaimed after the 60 s accept timeout, back to PENDING (and placeable again).
    assert m.get_job(idle).status in (JobStatus.PENDING, JobStatus.META_SCHEDULED)
    with oracle.sessions() as s:
        assert s.get(Job, idle).returns == 1  # type: ignore[union-attr]
    oracle.close()


#: How far ahead a test dates the beats of providers it wants fresh (see below).
FRESH_S = 5


def test_silent_provider_is_billed_to_its_last_heartbeat_and_an_outage_fails_nobody(
    grid: Grid, tmp_path: Path
) -> None:
    """Heartbeats stopping for every provider at once is the heartbeat path's outage (the API
    down), not the providers': nothing is failed. Once heartbeats arrive again, a provider still
    silent a whole timeout later is failed, and paid up to the time its last heartbeat was
    signed at."""
    kit.provider(grid, 2, Hardware(1, 64, 0, 262_144), Prices(1_000, 0, 0), [])
    quiet = kit.provider(grid, 5, Hardware(1, 64, 0, 262_144), Prices(6_000, 0, 0), ["quiet"])
    cust = kit.customer(grid, 3)
    job = kit.request(cust, "long", cpus=1, labels=["quiet"], escrow=7 * CREDIT)
    oracle = _oracle(grid, tmp_path, heartbeat_source="api", heartbeat_timeout_s=1.0)
    oracle.ingest_tick()
    now = int(time.time())
    # Beats dated a few seconds ahead stay fresh through the tick on a loaded machine: at the
    # 1 s timeout, a beat dated now (rounded down) went stale before a slow tick placed the job.
    fresh = now + FRESH_S
    with oracle.sessions.begin() as s:
        s.execute(update(Provider).values(last_heartbeat_at=fresh))
    oracle.sync_tick()
    quiet.provider_batch(
        [ProviderStep(job, ProviderAction.ACCEPT), ProviderStep(job, ProviderAction.START)]
    )
    started_wall = time.time()
    m = grid.market()
    oracle.ingest_tick()

    # The API goes down: no provider's heartbeat arrives any more.
    with oracle.sessions.begin() as s:
        s.execute(update(Provider).values(last_heartbeat_at=now - 3600))
    oracle.keep_tick()
    assert m.get_job(job).status == JobStatus.RUNNING, "an outage of the API fails no job"

    # The API is back; every provider beats but the quiet one, last heard 3 s into the job.
    last_heard = int(started_wall) + 3
    while time.time() < last_heard + 2:  # past the 1 s heartbeat timeout
        time.sleep(0.2)
    quiet_addr = quiet.sender_or_fail().address
    with oracle.sessions.begin() as s:
        s.execute(update(Provider).values(last_heartbeat_at=int(time.time()) + FRESH_S))
        s.execute(
            update(Provider)
            .where(Provider.address == quiet_addr)
            .values(last_heartbeat_at=last_heard, heartbeat={"timestamp": last_heard})
        )
    m.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]  # a live chain's block
    oracle.keep_tick()
    # The first beats through the returning API are not proof of the others' silence: each
    # provider has one whole timeout to be heard (failing them at once refunded compute they
    # delivered through the outage).
    assert m.get_job(job).status == JobStatus.RUNNING, "the quiet provider's grace after an outage"
    time.sleep(1.5)  # past the grace (the 1 s timeout); the others' beats are dated ahead
    m.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    oracle.keep_tick()
    assert m.get_job(job).status == JobStatus.FAILED
    oracle.ingest_tick()
    with oracle.sessions() as s:
        row = s.get(Job, job)
        # 6,000 units a minute is 100 a second: billed for the 2 to 4 s up to the heartbeat
        # (whole seconds of wall and block clocks), not for the rest, and not nothing.
        assert row is not None and row.paid is not None
        assert 200 <= row.paid <= 400, row.paid
        assert row.refunded == 7 * CREDIT - row.paid
    oracle.close()


def test_a_refused_job_is_never_offered_to_that_provider_again(grid: Grid, tmp_path: Path) -> None:
    """Without a memory of refusals, a job no agent will run is placed and refused each round,
    a transaction each way, for ever."""
    prov = kit.provider(grid, 2, Hardware(1, 64, 0, 262_144), Prices(1_000, 0, 0), [])
    cust = kit.customer(grid, 3)
    job = kit.request(cust, "unwanted")
    oracle = _oracle(grid, tmp_path)
    oracle.sync_tick()
    m = grid.market()
    assert m.get_job(job).status == JobStatus.META_SCHEDULED
    prov.refuse_job(job, "workdir not writable")
    for _ in range(3):
        oracle.sync_tick()
    assert m.get_job(job).status == JobStatus.PENDING
    with oracle.sessions() as s:
        row = s.get(Job, job)
        assert row is not None and row.returns == 1, "placed once, refused once, never again"
        assert "refused by every provider able to run it" in (row.unplaceable_reason or "")
    # A provider that has not refused it gets it.
    kit.provider(grid, 5, Hardware(1, 64, 0, 262_144), Prices(2_000, 0, 0), [])
    oracle.sync_tick()
    oracle.sync_tick()
    assert m.get_job(job).status == JobStatus.META_SCHEDULED
    assert m.get_job(job).provider == dev_account(5).address
    oracle.close()


def test_a_ban_takes_back_the_placements_not_accepted_and_leaves_the_accepted_jobs(
    grid: Grid, tmp_path: Path
) -> None:
    """A banned provider's placements not accepted go back to PENDING at once and are placed
    elsewhere; a job it accepted before the ban is its to start (within the start timeout):
    the oracle does not try to take it back, which the contract would refuse each tick."""
    prov = kit.provider(grid, 2, Hardware(1, 64, 0, 262_144), Prices(1_000, 0, 0), [])
    cust = kit.customer(grid, 3)
    placed, accepted = kit.request(cust, "placed"), kit.request(cust, "accepted")
    oracle = _oracle(grid, tmp_path)
    oracle.sync_tick()
    m = grid.market()
    assert {m.get_job(j).status for j in (placed, accepted)} == {JobStatus.META_SCHEDULED}
    prov.accept_job(accepted)
    kit.provider(grid, 5, Hardware(1, 64, 0, 262_144), Prices(2_000, 0, 0), [])
    grid.market(grid.admin).ban_provider(prov.sender_or_fail().address)
    oracle.ingest_tick()
    oracle.keep_tick()
    for _ in range(2):
        oracle.sync_tick()
    assert m.get_job(placed).provider == dev_account(5).address  # placed elsewhere at once
    assert "JobReturned" in _job_events(m, placed, grid.deployment.block)
    assert m.get_job(accepted).status == JobStatus.SCHEDULED
    assert _job_events(m, accepted, grid.deployment.block) == [
        "JobRequested",
        "JobPlaced",
        "JobStatusChanged",
    ], "no reclaim of the accepted job was tried"
    prov.provider_batch([ProviderStep(accepted, ProviderAction.START)])
    assert m.get_job(accepted).status == JobStatus.RUNNING
    oracle.close()


def test_a_funded_job_is_placed_within_two_blocks_behind_a_flood_of_spam(
    grid: Grid, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The oracle reads a window of the pending jobs a tick (20,000; 25 here, behind 250 spam
    jobs, the same ratio as 100,000 at full size). Spam with a 1-unit escrow used to hold the
    window, oldest first, and block every newer job; the window now takes the largest escrows
    first, and a job whose escrow cannot pay a minimum run is not placed at all."""
    monkeypatch.setattr(service, "MAX_PENDING_PER_TICK", 25)
    kit.provider(grid, 2, Hardware(1, 8, 0, 262_144), Prices(1_000, 0, 0), [])
    spammer, cust = kit.customer(grid, 4), kit.customer(grid, 3)
    _spam(spammer, 250)
    funded = kit.request(cust, "funded", escrow=10 * CREDIT)
    requested_block = grid.market().w3.eth.block_number
    oracle = _oracle(grid, tmp_path)
    oracle.sync_tick()
    m = grid.market()
    assert m.get_job(funded).status == JobStatus.META_SCHEDULED
    placed = [
        e
        for r in _receipts_since(m, requested_block)
        for e in m.decode_events(r)
        if e.name == "JobPlaced"
    ]
    assert [e.args["jobId"] for e in placed] == [funded]
    assert placed[0].block_number <= requested_block + 2
    oracle.close()


def test_a_tick_behind_a_judged_flood_reads_back_only_what_changed(
    grid: Grid, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A verdict on spam (its escrow pays no minimum run) holds until the job or the providers
    change. Reading the same window of verdicts back every tick cost seconds behind 100,000
    spam jobs, and the funded job behind them waited blocks for it. Here the window is 20,
    behind 60 spam jobs: once judged (and, by a fresh oracle, checked once), a tick reads none
    of them back; a funded job is placed within 2 blocks of its request; a top-up has that
    job's verdict made again, and a cheaper provider all of them."""
    monkeypatch.setattr(service, "MAX_PENDING_PER_TICK", 20)
    kit.provider(grid, 2, Hardware(1, 64, 0, 262_144), Prices(1_000, 0, 0), [])
    spammer, cust = kit.customer(grid, 4), kit.customer(grid, 3)
    spam = _spam(spammer, 60)
    assert len(spam) == 60
    oracle = _oracle(grid, tmp_path)
    oracle.ingest_tick()
    ticks = [oracle.place() for _ in range(8)]
    assert [t.unplaceable for t in ticks[:3]] == [20, 20, 20], "the window, 20 new jobs a tick"
    assert (ticks[-1].placed, ticks[-1].held, ticks[-1].unplaceable) == (0, 0, 0), ticks
    with oracle.sessions() as s:
        rows = [s.get(Job, j) for j in spam]
        assert all(r is not None and "pays less than" in (r.unplaceable_reason or "") for r in rows)

    m = grid.market()
    funded = kit.request(cust, "funded", escrow=10 * CREDIT)
    requested_block = m.w3.eth.block_number
    oracle.sync_tick()
    _wait_placed(m, [funded])
    placed = [
        e
        for r in _receipts_since(m, requested_block)
        for e in m.decode_events(r)
        if e.name == "JobPlaced"
    ]
    assert [e.args["jobId"] for e in placed] == [funded]
    assert placed[0].block_number <= requested_block + 2

    spammer.top_up(spam[0], CREDIT)
    oracle.ingest_tick()
    stats = oracle.place()
    assert (stats.placed, stats.held, stats.unplaceable) == (1, 0, 0), "only the topped-up job"
    _wait_placed(m, spam[:1])

    # At 1 unit a minute, a 1-unit escrow pays the minimum run: every verdict is made again.
    kit.provider(grid, 5, Hardware(1, 64, 0, 262_144), Prices(1, 0, 0), [])
    for _ in range(4):
        oracle.sync_tick()
    _wait_placed(m, spam)
    oracle.close()


def _wait_placed(m: Market, job_ids: list[int], timeout_s: float = 30.0) -> None:
    """Waits until the node has mined the placement of each job: the oracle sends its
    placements without waiting for them, and a node mines them in a moment of its own."""
    deadline = time.monotonic() + timeout_s
    left = list(job_ids)
    while left := [j for j in left if m.get_job(j).status != JobStatus.META_SCHEDULED]:
        assert time.monotonic() < deadline, f"jobs not placed after {timeout_s:g} s: {left}"
        time.sleep(0.1)


def _spam(spammer: Market, n: int) -> list[int]:
    """`n` requests of a 1-unit escrow (no minimum run at any price here), sent at once; their
    job ids once mined."""
    sender = spammer.sender_or_fail()
    spec = kit.spec_bytes("spam", 1, 1024)
    flood = [
        spammer.send_request_job(spec, 1, 0, 1024, max_price_per_minute=CREDIT, escrow=1)
        for _ in range(n)
    ]
    return [
        int(e.args["jobId"])
        for p in flood
        for e in spammer.decode_events(sender.wait(p))
        if e.name == "JobRequested"
    ]


def _receipts_since(m: Market, block: int) -> list[Any]:
    return [
        m.w3.eth.get_transaction_receipt(tx)
        for n in range(block + 1, m.w3.eth.block_number + 1)
        for tx in m.w3.eth.get_block(n)["transactions"]
        if isinstance(tx, bytes)  # hashes (blocks read without full transactions)
    ]


class CuttableProxy:
    """A TCP proxy to the RPC that the test can cut (connections refused) and restore."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.port = 0
        self._sock: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self.open()

    def open(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        sock.listen(64)
        self._sock = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _accept(self, sock: socket.socket) -> None:
        while True:
            try:
                client, _ = sock.accept()
            except OSError:
                return
            if self._sock is not sock:
                client.close()
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        assert self._sock is not None
        # shutdown wakes the thread blocked in accept(); close alone would not on Linux.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        for c in self._conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass
        self._conns.clear()


def test_rpc_outage_waits_logs_and_resumes(
    grid: Grid, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kit.provider(grid, 2, Hardware(1, 64, 0, 262_144), Prices(1_000, 0, 0), [])
    cust = kit.customer(grid, 3)
    proxy = CuttableProxy(grid.anvil.port)
    oracle = _oracle(grid, tmp_path, rpc_url=f"http://127.0.0.1:{proxy.port}", rpc_deadline_s=2.0)
    first = kit.request(cust, "before")
    oracle.sync_tick()
    m = grid.market()
    assert m.get_job(first).status == JobStatus.META_SCHEDULED
    proxy.cut()
    during = kit.request(cust, "during")  # straight to anvil: the chain goes on
    caplog.set_level(logging.INFO)
    oracle.sync_tick()  # retries, logs, gives up this tick without crashing
    assert m.get_job(during).status == JobStatus.PENDING
    assert "unreachable" in caplog.text and "did not answer" in caplog.text
    proxy.open()  # same port
    oracle.sync_tick()
    oracle.sync_tick()
    assert m.get_job(during).status == JobStatus.META_SCHEDULED
    assert kit.placed_events(m, grid.deployment.block) == {first: 1, during: 1}
    oracle.close()


def test_kill9_at_random_points_places_every_job_exactly_once(grid: Grid, tmp_path: Path) -> None:
    rng = random.Random(20261126)
    kit.provider(grid, 2, Hardware(1, 100_000, 0, 10**8), Prices(1_000, 0, 0), [])
    kit.provider(grid, 5, Hardware(1, 100_000, 0, 10**8), Prices(1_500, 0, 0), [])
    customers = [kit.customer(grid, i, credits=10_000) for i in (3, 4, 6, 7)]
    s = kit.settings(
        grid, f"sqlite:///{tmp_path / 'oracle.db'}", place_interval_s=0.2, batch_size=7
    )
    config = kit.write_toml(tmp_path / "oracle.toml", s)
    log_path = tmp_path / "oracle.log"

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "metascheduler.oracle", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=open(log_path, "ab"),
        )

    total = 300
    ids: list[int] = []
    proc = start()
    last_start_at = 0
    try:
        kills = 0
        while len(ids) < total:
            burst = rng.randint(10, 40)
            for _ in range(min(burst, total - len(ids))):
                c = customers[len(ids) % len(customers)]
                ids.append(kit.request(c, f"k{len(ids)}", cpus=rng.randint(1, 8)))
            if rng.random() < 0.5:
                time.sleep(rng.uniform(0.0, 1.5))
                proc.kill()  # SIGKILL: no clean-up at all
                proc.wait()
                kills += 1
                last_start_at = len(log_path.read_text())
                proc = start()
        m = grid.market()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            placed = kit.placed_events(m, grid.deployment.block)
            if len(placed) == total:
                break
            time.sleep(0.5)
        # SIGTERM before the last run installed its handlers would be no test of a clean stop.
        while "oracle started" not in log_path.read_text()[last_start_at:]:
            assert time.monotonic() < deadline, "the last oracle run never started"
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert kills >= 3
    assert placed == {j: 1 for j in ids}, (
        f"{total - len(placed)} jobs unplaced; twice: {[j for j, n in placed.items() if n > 1]}"
    )
    assert proc.returncode == 0  # SIGTERM is a clean stop
    assert "oracle stopped" in log_path.read_text()


def test_placement_gas_limit_covers_real_use_tightly(grid: Grid) -> None:
    """placeJobs gas limits come from a model, not eth_estimateGas: every batch must fit its
    limit (else it reverts out of gas), and the limit must stay within 1% of use (blocks are
    packed by limit, so slack is block space lost)."""
    from metascheduler.chain import Terms

    hw = Hardware(1, 10_000, 0, 10**7)
    provs = [
        kit.provider(grid, i, hw, Prices(1_000 * i, 0, 0), []).sender_or_fail().address
        for i in (2, 3)
    ]
    cust = kit.customer(grid, 4)
    sizes = [1, 2, 40]
    triples = []
    for k in range(sum(sizes)):
        spec = kit.spec_bytes(f"g{k}", 2, 2048)
        jid = kit.request(cust, f"g{k}", cpus=2, mem_mb=2048)
        triples.append(Placement(jid, provs[k % 2], Terms.for_spec(spec, 2, 0, 2048, kit.CREDIT)))
    oracle = grid.market(grid.oracle)
    start = 0
    for n in sizes:
        batch = triples[start : start + n]
        start += n
        pending = oracle.send_place_jobs(batch)
        receipt = oracle.sender_or_fail().wait(pending)
        assert receipt["status"] == 1 and not oracle.skipped(receipt)
        limit, used = pending.tx["gas"], receipt["gasUsed"]
        assert used <= limit, f"batch of {n}: used {used} > limit {limit}"
        assert limit - used <= 0.01 * used + 1_000, f"batch of {n}: limit {limit}, used {used}"


def test_settle_records_items_the_contract_skipped(grid: Grid, tmp_path: Path) -> None:
    """A placement of a job cancelled after the oracle last read it is skipped on chain; the
    settled action records which job, and why, in words."""
    kit.provider(grid, 2, Hardware(1, 64, 0, 262_144), Prices(1_000, 0, 0), [])
    cust = kit.customer(grid, 3)
    kept = kit.request(cust, "kept")
    gone = kit.request(cust, "gone")
    cust.cancel_job(gone)  # the head block: an oracle one block behind has not seen it
    oracle = _oracle(grid, tmp_path, confirmations=1)
    oracle.sync_tick()  # ingests both requests, places both
    cust.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    oracle.actions.settle(lambda _a, _s: None)
    with oracle.sessions() as s:
        (action,) = [a for a in s.scalars(select(OracleAction)) if a.kind == "place"]
        assert action.state == "mined" and action.job_ids == [kept, gone]
        assert action.skipped is not None and len(action.skipped) == 1
        index, job_id, why = action.skipped[0]
        assert (index, job_id) == (1, gone) and "CANCELLED" in why, why
    assert grid.market().get_job(kept).status == JobStatus.META_SCHEDULED
    oracle.close()
