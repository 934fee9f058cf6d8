"""Chain logs into the store, in the manner of web3.py's EventScanner and ape's poll_blocks.

- A cursor (block number and hash) is committed in the same transaction as the rows it covers,
  so a crash leaves either both or neither.
- Only blocks at or below head - confirmations are read.
- Before each step the cursor's hash is compared with the chain's; on a mismatch the store walks
  back through its recent `blocks` to the newest one the chain still has, deletes everything
  above it, rebuilds the touched jobs and providers from the remaining events, and reads again.
- Events are keyed by (tx_hash, log_index): a replay inserts nothing and projects nothing.
- The eth_getLogs range grows while calls succeed and halves when a node refuses a range as too
  large or times out.
- With `chunk_events`, a range holding many events is committed in several transactions (each
  a whole number of blocks, with its cursor) and `on_chunk` is called between them: a backlog of
  thousands of requests can be acted on from its first chunk instead of after all of it. Each
  chunk is at least twice the one before (see `chunk_runs`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session, sessionmaker
from web3 import Web3
from web3.exceptions import Web3RPCError

from metascheduler.chain import rawlogs
from metascheduler.chain.artifacts import load_artifact
from metascheduler.chain.events import ChainEvent, EventDecoder
from metascheduler.chain.rpc import get_block, get_blocks, is_too_much, is_transient, retrying
from metascheduler.store.codec import args_to_json
from metascheduler.store.models import Block, ChainCursor, Event, Job, Provider
from metascheduler.store.projection import (
    JOB_EVENTS,
    PROVIDER_EVENTS,
    EventRecord,
    Row,
    apply_job_event,
    apply_provider_event,
    event_job_id,
    event_parties,
)

log = logging.getLogger(__name__)

CURSOR = "market"
_JOB_COLUMNS = frozenset(c.name for c in Job.__table__.columns)
_PROVIDER_COLUMNS = frozenset(c.name for c in Provider.__table__.columns)


@dataclass
class StepResult:
    from_block: int
    to_block: int
    events: int
    reorg_depth: int = 0


def record_of(ev: Event) -> EventRecord:
    return EventRecord(ev.name, ev.args, ev.block_number, ev.log_index, ev.block_time, ev.tx_hash)


def _row_to_obj(obj: Any, row: Row, columns: frozenset[str]) -> None:
    for k, v in row.items():
        if k in columns:
            setattr(obj, k, v)


def chunk_runs(
    start: int, end: int, events: Sequence[ChainEvent], first: int | None
) -> list[tuple[int, int, list[ChainEvent]]]:
    """Events (in chain order) cut into runs of whole blocks, each with its block range: the
    first of at least `first` events, each next one of at least twice the one before, the last
    one the rest. One run for the whole range without `first`.

    Whoever acts between runs (the oracle places after each) reads what is still pending each
    time; runs that double keep that to O(log n) reads of a backlog of n events, O(n) in all,
    where runs of one size would cost O(n^2 / first), while the first action still comes after
    only `first` events."""
    if not first or len(events) <= first:
        return [(start, end, list(events))]
    out: list[tuple[int, int, list[ChainEvent]]] = []
    lo, lo_index, size = start, 0, first
    for i, ev in enumerate(events):
        last_of_block = i + 1 == len(events) or events[i + 1].block_number != ev.block_number
        if last_of_block and i + 1 - lo_index >= size and i + 1 < len(events):
            out.append((lo, ev.block_number, list(events[lo_index : i + 1])))
            lo, lo_index = ev.block_number + 1, i + 1
            size *= 2
    out.append((lo, end, list(events[lo_index:])))
    return out


def _obj_to_row(obj: Any, columns: frozenset[str]) -> Row:
    return {c: getattr(obj, c) for c in columns}


def apply_events(session: Session, records: Sequence[EventRecord]) -> None:
    """Projects new events (in chain order) onto the jobs and providers rows in `session`.

    Jobs go through bulk Core statements (thousands per block in a busy grid); the few
    providers through the ORM.
    """
    job_ids = {event_job_id(r.name, r.args) for r in records if r.name in JOB_EVENTS}
    job_ids.discard(None)
    jobs: dict[int, Row] = {}
    if job_ids:
        table = Job.__table__
        for m in session.execute(select(table).where(table.c.job_id.in_(job_ids))).mappings():
            jobs[int(m["job_id"])] = {k: m[k] for k in _JOB_COLUMNS if k != "unplaceable_reason"}
    existing = set(jobs)
    touched: set[int] = set()
    addrs = {r.args["provider"] for r in records if r.name in PROVIDER_EVENTS}
    provs = {
        p.address: p
        for p in session.scalars(select(Provider).where(Provider.address.in_(addrs))).all()
    }
    for r in records:
        if r.name in JOB_EVENTS:
            jid = event_job_id(r.name, r.args)
            assert jid is not None
            after = apply_job_event(jobs.get(jid), r)
            if after is None:
                log.warning(
                    "event %s of job %s has no JobRequested before it: skipped", r.name, jid
                )
                continue
            jobs[jid] = after
            touched.add(jid)
        elif r.name in PROVIDER_EVENTS:
            addr = r.args["provider"]
            pobj = provs.get(addr)
            pbefore = _obj_to_row(pobj, _PROVIDER_COLUMNS) if pobj is not None else None
            pafter = apply_provider_event(pbefore, r)
            if pafter is None:
                continue
            if pobj is None:
                pobj = Provider()
                session.add(pobj)
                provs[addr] = pobj
            _row_to_obj(pobj, pafter, _PROVIDER_COLUMNS)
    new_rows = [jobs[j] for j in sorted(touched - existing)]
    changed = [jobs[j] for j in sorted(touched & existing)]
    if new_rows:
        session.execute(insert(Job), new_rows)
    if changed:
        session.execute(update(Job), changed)  # bulk UPDATE by primary key


def rebuild(session: Session, job_ids: set[int] | None, providers: set[str] | None) -> None:
    """Re-projects the given jobs and providers (all when None) from the events table.

    Providers keep their heartbeat columns (the API's, not the chain's); jobs lose their
    oracle-set `unplaceable_reason`, which the next placement tick sets again.
    """
    job_q = delete(Job) if job_ids is None else delete(Job).where(Job.job_id.in_(job_ids))
    session.execute(job_q)
    ev_q = select(Event).where(Event.name.in_(JOB_EVENTS))
    if job_ids is not None:
        ev_q = ev_q.where(Event.job_id.in_(job_ids))
    pq = select(Event).where(Event.name.in_(PROVIDER_EVENTS))
    if providers is not None:
        pq = pq.where(Event.provider.in_(providers))
    session.flush()
    order = (Event.block_number, Event.log_index)
    job_records = [record_of(e) for e in session.scalars(ev_q.order_by(*order))]
    prov_records = [record_of(e) for e in session.scalars(pq.order_by(*order))]
    # Provider rows are reset in place (not deleted) so heartbeat columns survive.
    existing = select(Provider)
    if providers is not None:
        existing = existing.where(Provider.address.in_(providers))
    kept = {p.address: p for p in session.scalars(existing)}
    with_events = {r.args["provider"] for r in prov_records}
    for addr, p in kept.items():
        if addr not in with_events:
            session.delete(p)
    rows: dict[str, Row] = {}
    for r in prov_records:
        new = apply_provider_event(rows.get(r.args["provider"]), r)
        if new is not None:
            rows[r.args["provider"]] = new
    for addr, row in rows.items():
        obj = kept.get(addr)
        if obj is None:
            obj = Provider()
            session.add(obj)
        _row_to_obj(obj, row, _PROVIDER_COLUMNS)
    session.flush()
    apply_events(session, job_records)


class Ingester:
    """Reads the market's logs into the store, one confirmed range per step."""

    def __init__(
        self,
        w3: Web3,
        market_address: str,
        sessions: sessionmaker[Session],
        *,
        confirmations: int = 2,
        start_block: int = 0,
        initial_range: int = 500,
        max_range: int = 10_000,
        reorg_window: int = 128,
        rpc_deadline_s: float = 300.0,
        cursor_name: str = CURSOR,
        chunk_events: int | None = None,
    ):
        self.w3 = w3
        self.address = Web3.to_checksum_address(market_address)
        self.sessions = sessions
        self.confirmations = confirmations
        self.start_block = start_block
        self.range = initial_range
        self.max_range = max_range
        self.reorg_window = reorg_window
        self.rpc_deadline_s = rpc_deadline_s
        self.cursor_name = cursor_name
        self.chunk_events = chunk_events
        self.decoder = EventDecoder(load_artifact("JobMarket").abi)
        self._url = str(getattr(w3.provider, "endpoint_uri", ""))

    # ------------------------------------------------------------------ rpc

    def _rpc(self, what: str, fn: Any) -> Any:
        return retrying(what, fn, deadline_s=self.rpc_deadline_s, rpc_url=self._url)

    def _block(self, number: int) -> Any:
        return self._rpc(f"reading block {number}", lambda: get_block(self.w3, number))

    def _head(self) -> int:
        return int(self._rpc("reading the head block", lambda: self.w3.eth.block_number))

    # ------------------------------------------------------------------ cursor

    def cursor(self) -> tuple[int, str] | None:
        with self.sessions() as s:
            c = s.get(ChainCursor, self.cursor_name)
            return (c.block_number, c.block_hash) if c else None

    # ------------------------------------------------------------------ steps

    def run(self, max_steps: int = 1_000_000, on_chunk: Callable[[], object] | None = None) -> int:
        """Ingests up to the confirmed head; returns the number of new events stored.

        `on_chunk` is called after each committed chunk that more of the same range follows
        (see `chunk_events`); the store is then consistent up to its cursor."""
        total = 0
        for _ in range(max_steps):
            res = self.step(on_chunk)
            if res is None:
                break
            total += res.events
        return total

    def step(self, on_chunk: Callable[[], object] | None = None) -> StepResult | None:
        """One range of blocks; None when the store is at the confirmed head."""
        depth = self._check_reorg()
        safe = self._head() - self.confirmations
        cur = self.cursor()
        start = cur[0] + 1 if cur else self.start_block
        if start > safe:
            return StepResult(start, start - 1, 0, depth) if depth else None
        while True:
            end = min(start + self.range - 1, safe)
            try:
                raw = rawlogs.get_logs(self.w3, self.address, start, end)
            except Web3RPCError as exc:
                if is_too_much(exc) and end > start:
                    self.range = max(1, (end - start + 1) // 2)
                    log.info(
                        "eth_getLogs %d..%d refused (%s); range now %d", start, end, exc, self.range
                    )
                    continue
                raise
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if end > start:
                    self.range = max(1, (end - start + 1) // 2)
                # Retry (with backoff and logs) through the shared helper.
                raw = self._rpc(
                    f"reading logs {start}..{end}",
                    lambda s=start, e=end: rawlogs.get_logs(self.w3, self.address, s, e),
                )
            break
        n = self._store_range(start, end, raw, cur, on_chunk)
        if n is None:
            return StepResult(start, start - 1, 0, depth)  # the chain moved under us: next step
        self.range = min(self.max_range, self.range * 2)
        return StepResult(start, end, n, depth)

    def _store_range(
        self,
        start: int,
        end: int,
        raw: list[Any],
        cur: tuple[int, str] | None,
        on_chunk: Callable[[], object] | None = None,
    ) -> int | None:
        numbers = sorted({int(lg["blockNumber"], 16) for lg in raw} | {start, end})
        blocks = self._rpc(
            f"reading the headers of blocks {start}..{end}",
            lambda: get_blocks(self.w3, numbers),
        )
        if cur is not None and blocks[start]["parentHash"] != cur[1]:
            log.warning("block %d does not extend the cursor %d: reorg, re-checking", start, cur[0])
            return None
        events: list[ChainEvent] = []
        for lg in raw:
            bn = int(lg["blockNumber"], 16)
            if str(lg["blockHash"]).lower() != blocks[bn]["hash"]:
                log.warning("log of block %d is from a replaced block: reorg, re-reading", bn)
                return None
            ev = self.decoder.decode(lg, blocks[bn]["timestamp"])
            if ev is not None:
                events.append(ev)
        events.sort(key=lambda e: (e.block_number, e.log_index))
        new = 0
        chunks = chunk_runs(start, end, events, self.chunk_events)
        for k, (lo, hi, chunk) in enumerate(chunks):
            new += self._commit(lo, hi, chunk, blocks)
            if on_chunk is not None and k + 1 < len(chunks):
                on_chunk()
        if events:
            log.info(
                "ingested blocks=%d..%d events=%d new=%d chunks=%d",
                start,
                end,
                len(events),
                new,
                len(chunks),
            )
        return new

    def _commit(
        self, lo: int, hi: int, events: list[ChainEvent], blocks: dict[int, dict[str, Any]]
    ) -> int:
        """Stores the events of blocks lo..hi with the cursor at hi, in one transaction."""
        with self.sessions.begin() as s:
            stored = self._insert_events(s, events)
            apply_events(s, stored)
            for n, b in blocks.items():
                if lo <= n <= hi:
                    s.merge(
                        Block(
                            number=n,
                            hash=b["hash"],
                            parent_hash=b["parentHash"],
                            timestamp=b["timestamp"],
                        )
                    )
            s.execute(delete(Block).where(Block.number < hi - self.reorg_window))
            s.merge(
                ChainCursor(name=self.cursor_name, block_number=hi, block_hash=blocks[hi]["hash"])
            )
        return len(stored)

    def _insert_events(self, s: Session, events: list[ChainEvent]) -> list[EventRecord]:
        """Inserts events not yet stored; returns those it inserted (a replay returns none)."""
        if not events:
            return []
        hashes = {e.tx_hash for e in events}
        have = {
            (h, i)
            for h, i in s.execute(
                select(Event.tx_hash, Event.log_index).where(Event.tx_hash.in_(hashes))
            )
        }
        out: list[EventRecord] = []
        rows: list[dict[str, Any]] = []
        for e in events:
            if (e.tx_hash, e.log_index) in have:
                continue
            args = args_to_json(e.args)
            customer, provider = event_parties(e.name, args)
            block_time = int(e.block_time or 0)
            row = {
                "tx_hash": e.tx_hash,
                "log_index": e.log_index,
                "block_number": e.block_number,
                "block_hash": e.block_hash,
                "block_time": block_time,
                "name": e.name,
                "job_id": event_job_id(e.name, args),
                "customer": customer,
                "provider": provider,
                "args": args,
            }
            rows.append(row)
            out.append(
                EventRecord(e.name, args, e.block_number, e.log_index, block_time, e.tx_hash)
            )
        if rows:
            s.execute(insert(Event), rows)
        return out

    # ------------------------------------------------------------------ reorgs

    def _check_reorg(self) -> int:
        """Rolls back to the newest stored block the chain still has; returns the depth."""
        cur = self.cursor()
        if cur is None:
            return 0
        chain_hash = self._block(cur[0])["hash"]
        if chain_hash == cur[1]:
            return 0
        with self.sessions() as s:
            stored = s.execute(select(Block.number, Block.hash).order_by(Block.number.desc())).all()
        ancestor: tuple[int, str] | None = None
        for number, h in stored:
            if number >= cur[0]:
                continue
            try:
                b = self._block(number)
            except Exception:
                continue
            if b["hash"] == h:
                ancestor = (number, h)
                break
        t0 = time.monotonic()
        depth = cur[0] - (ancestor[0] if ancestor else self.start_block - 1)
        with self.sessions.begin() as s:
            floor = ancestor[0] if ancestor else self.start_block - 1
            gone = s.scalars(select(Event).where(Event.block_number > floor)).all()
            job_ids = {e.job_id for e in gone if e.job_id is not None}
            provs = {e.provider for e in gone if e.name in PROVIDER_EVENTS and e.provider}
            s.execute(delete(Event).where(Event.block_number > floor))
            s.execute(delete(Block).where(Block.number > floor))
            if ancestor is None:
                s.execute(delete(ChainCursor).where(ChainCursor.name == self.cursor_name))
                rebuild(s, None, None)
            else:
                s.merge(
                    ChainCursor(
                        name=self.cursor_name, block_number=ancestor[0], block_hash=ancestor[1]
                    )
                )
                rebuild(s, job_ids, provs)
        log.warning(
            "reorg: cursor block %d hash %s replaced on chain; rolled back %d blocks to %s, "
            "removed %d events, rebuilt %d jobs and %d providers in %.2f s",
            cur[0],
            cur[1],
            depth,
            ancestor[0] if ancestor else "the start",
            len(gone),
            len(job_ids),
            len(provs),
            time.monotonic() - t0,
        )
        return depth
