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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hexbytes import HexBytes
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session, sessionmaker
from web3 import Web3
from web3.exceptions import Web3RPCError

from metascheduler.chain.artifacts import load_artifact
from metascheduler.chain.events import ChainEvent, EventDecoder
from metascheduler.chain.rpc import is_transient, retrying
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
_TOO_MUCH = ("too many", "limit", "exceed", "range", "timeout", "timed out", "response size")


class IngestError(Exception):
    """Ingestion cannot go on; the message says where and why."""


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
        self.decoder = EventDecoder(load_artifact("JobMarket").abi)
        self._url = str(getattr(w3.provider, "endpoint_uri", ""))

    # ------------------------------------------------------------------ rpc

    def _rpc(self, what: str, fn: Any) -> Any:
        return retrying(what, fn, deadline_s=self.rpc_deadline_s, rpc_url=self._url)

    def _block(self, number: int) -> Any:
        return self._rpc(f"reading block {number}", lambda: self.w3.eth.get_block(number))

    def _head(self) -> int:
        return int(self._rpc("reading the head block", lambda: self.w3.eth.block_number))

    # ------------------------------------------------------------------ cursor

    def cursor(self) -> tuple[int, str] | None:
        with self.sessions() as s:
            c = s.get(ChainCursor, self.cursor_name)
            return (c.block_number, c.block_hash) if c else None

    # ------------------------------------------------------------------ steps

    def run(self, max_steps: int = 1_000_000) -> int:
        """Ingests up to the confirmed head; returns the number of new events stored."""
        total = 0
        for _ in range(max_steps):
            res = self.step()
            if res is None:
                break
            total += res.events
        return total

    def step(self) -> StepResult | None:
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
                raw = self.w3.eth.get_logs(
                    {"address": self.address, "fromBlock": start, "toBlock": end}
                )
            except Web3RPCError as exc:
                if any(m in str(exc).lower() for m in _TOO_MUCH) and end > start:
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
                    lambda s=start, e=end: self.w3.eth.get_logs(
                        {"address": self.address, "fromBlock": s, "toBlock": e}
                    ),
                )
            break
        n = self._store_range(start, end, raw, cur)
        if n is None:
            return StepResult(start, start - 1, 0, depth)  # the chain moved under us: next step
        self.range = min(self.max_range, self.range * 2)
        return StepResult(start, end, n, depth)

    def _store_range(
        self, start: int, end: int, raw: list[Any], cur: tuple[int, str] | None
    ) -> int | None:
        numbers = sorted({int(lg["blockNumber"]) for lg in raw} | {start, end})
        blocks = {n: self._block(n) for n in numbers}
        if cur is not None and HexBytes(blocks[start]["parentHash"]).to_0x_hex() != cur[1]:
            log.warning("block %d does not extend the cursor %d: reorg, re-checking", start, cur[0])
            return None
        events: list[ChainEvent] = []
        for lg in raw:
            bn = int(lg["blockNumber"])
            if HexBytes(lg["blockHash"]) != HexBytes(blocks[bn]["hash"]):
                log.warning("log of block %d is from a replaced block: reorg, re-reading", bn)
                return None
            ev = self.decoder.decode(lg, int(blocks[bn]["timestamp"]))
            if ev is not None:
                events.append(ev)
        events.sort(key=lambda e: (e.block_number, e.log_index))
        with self.sessions.begin() as s:
            stored = self._insert_events(s, events)
            new = len(stored)
            apply_events(s, stored)
            for n, b in blocks.items():
                s.merge(
                    Block(
                        number=n,
                        hash=HexBytes(b["hash"]).to_0x_hex(),
                        parent_hash=HexBytes(b["parentHash"]).to_0x_hex(),
                        timestamp=int(b["timestamp"]),
                    )
                )
            s.execute(delete(Block).where(Block.number < end - self.reorg_window))
            s.merge(
                ChainCursor(
                    name=self.cursor_name,
                    block_number=end,
                    block_hash=HexBytes(blocks[end]["hash"]).to_0x_hex(),
                )
            )
        if events:
            log.info("ingested blocks=%d..%d events=%d new=%d", start, end, len(events), new)
        return new

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
        chain_hash = HexBytes(self._block(cur[0])["hash"]).to_0x_hex()
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
            if HexBytes(b["hash"]).to_0x_hex() == h:
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
