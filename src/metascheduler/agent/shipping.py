"""Shipping each job's log and outputs to the grid's API, encrypted to the job's customer.

A thread of the agent, apart from its rounds, so that a line reaches the customer within a
fraction of a second whatever the round's pace. Every ``ship_interval_s`` it reads what each
job wrote to its stdout and stderr files (and the agent's own messages about it) since the last
acknowledged offset, seals the lines into the job's next log chunk and sends it (see
``spool`` for why nothing is lost or doubled). When the backend reports the job ended, in
whatever state, the rest of its lines go out, then its ``$MS_OUTPUT_DIR`` is packed, encrypted
and uploaded, and a final chunk with its exit code closes the log. The result digest (archive
and log chain) is then known, for the completion to commit.

The rounds tell it which jobs were queued (``track``) and what the agent did to them
(``note``); it asks the backend itself, once a second, which of its jobs ended (a round forgets
a job it killed at once, so it would not tell).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from metascheduler.agent.backends import Backend, BackendError
from metascheduler.agent.settings import AgentSettings
from metascheduler.agent.spool import JobSpool, SpoolState
from metascheduler.chain import Market
from metascheduler.results.customer import customer_public_key, find_request
from metascheduler.results.digest import result_digest
from metascheduler.results.errors import ResultsError
from metascheduler.results.http import ApiDown, ApiRefused, ApiUnavailable, ResultsApi
from metascheduler.results.keys import new_job_key, wrap
from metascheduler.results.logchain import Chunk, ChunkSealer, Deployment, LogRecord

log = logging.getLogger("metascheduler.agent.shipping")

#: Bytes read from one stream in one look (a chatty job's backlog goes out in several chunks).
READ_BYTES = 4 << 20
#: Longest wait between two attempts while the API is down.
MAX_BACKOFF_S = 10.0
#: Refusals (4xx) that sending again cannot change: a malformed chunk, a log or outputs over the
#: grid's cap, an API that stores no results. Any other refusal may come from the API's passing
#: view of the chain (a job it read before its placement, or on a reorganised fork): the job is
#: tried again, with a longer backoff, `MAX_REFUSALS` times before its results are left on disk.
FINAL_REFUSALS = frozenset({400, 413, 501})
MAX_REFUSALS = 8
#: Longest wait between two attempts after a refusal.
MAX_REFUSED_BACKOFF_S = 60.0
#: Seconds between two reads of the backend's status of the jobs still running.
STATUS_EVERY_S = 1.0
#: The archive hash of a job whose outputs could not be stored (the digest still covers its log).
NO_ARCHIVE = bytes(32)


def _backoff_s(n: int, *, first_s: float = 0.2, cap_s: float = MAX_BACKOFF_S) -> float:
    """The wait after the `n`-th failure in a row: doubling from `first_s`, at most `cap_s`."""
    return min(cap_s, first_s * 2**n)


def _worth_a_line(n: int) -> bool:
    """Whether the `n`-th failure in a row is logged: the first, then every 20th."""
    return n == 1 or n % 20 == 0


class ResultsShipper:
    def __init__(
        self,
        settings: AgentSettings,
        market: Market,
        account: LocalAccount,
        chain_id: int,
        backend: Backend,
    ) -> None:
        if not settings.api_url:
            raise ValueError("shipping results needs api_url")
        self.settings = settings
        self.root = settings.results_dir()
        self.market = market
        self.account = account
        self.deployment = Deployment(chain_id, market.address)
        self.api = ResultsApi(settings.api_url)
        self.backend = backend
        self._next_status = 0.0
        self._lock = threading.Lock()
        self._wanted: dict[int, str] = {}
        self._ended: dict[int, int | None] = {}
        self._states: dict[int, SpoolState] = {}
        self._retry_at: dict[int, float] = {}
        self._failures: dict[int, int] = {}
        self._begin_failures: dict[int, int] = {}
        self._begin_retry_at: dict[int, float] = {}
        self._refusals: dict[int, int] = {}
        self._given_up: set[int] = set()
        #: While the API answers nothing, no job is tried before this (monotonic) time.
        self._api_retry_at = 0.0
        self._api_failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.root.mkdir(parents=True, exist_ok=True)
        for d in sorted(self.root.iterdir()):
            if not d.name.isdigit():
                continue
            spool = JobSpool(self.root, int(d.name))
            if spool.exists():
                st = spool.load()
                if not st.done:
                    self._states[st.job_id] = st
            elif (native := spool.tracked()) is not None:
                # Queued, then the agent stopped before its results were set up.
                self._wanted[spool.job_id] = native

    # -- what the rounds call (any thread) ---------------------------------------------------

    def output_dir(self, job_id: int) -> Path:
        return JobSpool(self.root, job_id).output_dir

    def track(self, job_id: int, native_id: str) -> None:
        """Ships the results of `job_id`, queued on the backend as `native_id`. Recorded on
        disk at once, so that a restart goes on with it. Calling it again changes nothing."""
        with self._lock:
            if job_id in self._states or job_id in self._wanted:
                return
            spool = JobSpool(self.root, job_id)
            if spool.exists():
                return  # set up (and perhaps done) before a restart
            spool.mark_tracked(native_id)
            self._wanted[job_id] = native_id

    def ended(self, job_id: int, exit_code: int | None) -> None:
        with self._lock:
            self._ended.setdefault(job_id, exit_code)

    def note(self, job_id: int, line: str) -> None:
        JobSpool(self.root, job_id).note(line)

    def result_digest(self, job_id: int) -> str | None:
        """The job's result digest, once its outputs are stored and its log closed."""
        spool = JobSpool(self.root, job_id)
        if not spool.exists():
            return None
        return spool.load().result_digest

    def waiting_is_useful(self, job_id: int) -> bool:
        """Whether a COMPLETE waiting for this job's digest may get it soon: the shipping
        thread runs and the API answers it. While the API is down the job completes without a
        digest rather than being metered for the outage."""
        running = self._thread is not None and self._thread.is_alive()
        return (
            running
            and not self._api_failures
            and job_id not in self._failures
            and job_id not in self._refusals
            and job_id not in self._given_up
        )

    def busy(self) -> list[int]:
        """Jobs whose results are not all acknowledged yet."""
        with self._lock:
            return sorted(set(self._states) | set(self._wanted))

    # -- the thread ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="results-shipper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.api.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:
                log.exception("shipping results failed this pass; trying again")
            self._stop.wait(self.settings.results.ship_interval_s)

    def step(self) -> None:
        """One pass over every job (public for tests)."""
        self._poll_backend()
        with self._lock:
            wanted, self._wanted = dict(self._wanted), {}
            ended = dict(self._ended)
        now = time.monotonic()
        for job_id, native in wanted.items():
            if now < self._begin_retry_at.get(job_id, 0.0):
                with self._lock:
                    self._wanted.setdefault(job_id, native)
                continue
            try:
                self._begin(job_id, native)
                self._begin_failures.pop(job_id, None)
            except Exception as exc:
                # Its request is read from the chain: an RPC cut fails every pass until it ends.
                n = self._begin_failures[job_id] = self._begin_failures.get(job_id, 0) + 1
                self._begin_retry_at[job_id] = now + _backoff_s(n)
                if _worth_a_line(n):
                    log.warning(
                        "job %d: cannot set up its results yet (%s); trying again (attempt %d)",
                        job_id,
                        exc,
                        n,
                    )
                with self._lock:
                    self._wanted.setdefault(job_id, native)
        now = time.monotonic()
        if now < self._api_retry_at:
            return
        for job_id in sorted(self._states):
            if job_id in self._given_up or now < self._retry_at.get(job_id, 0.0):
                continue
            if job_id in ended and not self._states[job_id].ended:
                st = replace(self._states[job_id], ended=True, exit_code=ended[job_id])
                JobSpool(self.root, job_id).save(st)
                self._states[job_id] = st
            try:
                self._ship(job_id)
                self._failures.pop(job_id, None)
                self._refusals.pop(job_id, None)
                self._api_failures = 0
            except ApiDown as exc:
                # Down for every job alike: the pass stops here, and the next one waits (a
                # backlog of jobs each timing out in turn would hold the thread for minutes).
                n = self._api_failures = self._api_failures + 1
                self._api_retry_at = now + _backoff_s(n)
                if _worth_a_line(n):
                    log.warning("results wait on the provider's disk: %s", exc)
                break
            except ApiUnavailable as exc:
                n = self._failures[job_id] = self._failures.get(job_id, 0) + 1
                self._retry_at[job_id] = now + _backoff_s(n)
                if _worth_a_line(n):
                    log.warning("job %d: results wait on the provider's disk: %s", job_id, exc)
            except ApiRefused as exc:
                self._refused(job_id, exc, now)
            if self._states.get(job_id) is not None and self._states[job_id].done:
                with self._lock:
                    del self._states[job_id]

    def _refused(self, job_id: int, exc: ApiRefused, now: float) -> None:
        n = self._refusals[job_id] = self._refusals.get(job_id, 0) + 1
        where = JobSpool(self.root, job_id).dir
        if exc.status in FINAL_REFUSALS or n >= MAX_REFUSALS:
            # Sending it again will not help: kept on disk for the operator.
            self._given_up.add(job_id)
            log.error(
                "job %d: the API refused its results (%d: %s); they stay in %s",
                job_id,
                exc.status,
                exc.detail,
                where,
            )
            return
        self._retry_at[job_id] = now + _backoff_s(n, first_s=2.0, cap_s=MAX_REFUSED_BACKOFF_S)
        log.warning(
            "job %d: the API refused its results (%d: %s); trying again (%d of %d)",
            job_id,
            exc.status,
            exc.detail,
            n,
            MAX_REFUSALS,
        )

    def _poll_backend(self) -> None:
        if time.monotonic() < self._next_status:
            return
        self._next_status = time.monotonic() + STATUS_EVERY_S
        running = {st.native_id: st.job_id for st in self._states.values() if not st.ended}
        if not running:
            return
        try:
            statuses = self.backend.status(list(running))
        except BackendError as exc:
            log.warning("cannot read the backend's job states for shipping results: %s", exc)
            return
        for native, info in statuses.items():
            if info.status.is_terminal:
                self.ended(running[native], info.exit_code)

    # -- one job ------------------------------------------------------------------------------

    def _begin(self, job_id: int, native_id: str) -> None:
        spool = JobSpool(self.root, job_id)
        if spool.exists():
            st = spool.load()
        else:
            head = int(self.market.w3.eth.block_number)
            req = find_request(
                self.market, job_id, from_block=self.settings.start_block, to_block=head
            )
            pub = customer_public_key(self.market, req.tx_hash, req.customer)
            key = new_job_key()
            paths = self.backend.log_paths(job_id, native_id)
            st = SpoolState(
                job_id=job_id,
                native_id=native_id,
                stdout=str(paths[0]) if paths else None,
                stderr=str(paths[1]) if paths else None,
                job_key=key.hex(),
                wrapped_key=wrap(pub, key).hex(),
            )
            spool.save(st)
        if not st.done:
            with self._lock:
                self._states[job_id] = st

    def _sealer(self, st: SpoolState) -> ChunkSealer:
        return ChunkSealer(
            self.account,
            self.deployment,
            st.job_id,
            bytes.fromhex(st.job_key),
            bytes.fromhex(st.wrapped_key),
            seq=st.seq,
            prev=st.prev,
        )

    def _send(self, spool: JobSpool, chunk: Chunk, after: SpoolState) -> SpoolState:
        spool.set_pending(chunk.to_wire(), after)
        self.api.append(spool.job_id, chunk)
        return spool.acknowledge(asdict(after))

    def _ship(self, job_id: int) -> None:
        spool = JobSpool(self.root, job_id)
        pending = spool.pending()
        if pending is not None:
            self.api.append(job_id, Chunk.from_wire(pending["chunk"]))
            self._states[job_id] = spool.acknowledge(pending["after"])
        st = self._states[job_id]
        while not st.done:
            records, offsets = self._read(st, spool)
            if records:
                sealer = self._sealer(st)
                chunk = sealer.seal(records)
                after = replace(st, seq=sealer.seq, prev=sealer.prev, offsets=offsets)
                st = self._states[job_id] = self._send(spool, chunk, after)
                continue
            if not st.ended:
                return
            if st.archive_sha256 is None and st.outputs_error is None:
                st = self._states[job_id] = self._outputs(st, spool)
                continue  # its note goes out before the final chunk
            sealer = self._sealer(st)
            chunk = sealer.seal([], final=True, exit_code=st.exit_code)
            sha = bytes.fromhex(st.archive_sha256) if st.archive_sha256 else NO_ARCHIVE
            digest = "0x" + result_digest(sha, sealer.prev).hex()
            after = replace(st, seq=sealer.seq, prev=sealer.prev, done=True, result_digest=digest)
            st = self._states[job_id] = self._send(spool, chunk, after)
            log.info("job %d: log closed, result digest %s", job_id, digest)

    def _read(self, st: SpoolState, spool: JobSpool) -> tuple[list[LogRecord], dict[str, int]]:
        """New complete lines of every stream (the last partial one too, once the job ended),
        up to the chunk's line cap; and the offsets after them."""
        now = time.time()
        records: list[LogRecord] = []
        offsets = dict(st.offsets)
        cap = self.settings.results.max_chunk_lines
        sources: list[tuple[str, str | None]] = [
            ("stdout", st.stdout),
            ("stderr", st.stderr),
            ("agent", str(spool.agent_log)),
        ]
        for stream, path in sources:
            if path is None or len(records) >= cap:
                continue
            try:
                with open(path, "rb") as f:
                    f.seek(offsets[stream])
                    data = f.read(READ_BYTES)
                    at_end = not f.read(1)
            except FileNotFoundError:
                continue
            lines = data.split(b"\n")
            tail = lines.pop()  # after the last newline: a line still being written, or b""
            taken = lines[: cap - len(records)]
            used = sum(len(x) + 1 for x in taken)
            # A partial line waits for its newline, unless the job is over (the agent's own
            # lines are always whole).
            if tail and st.ended and at_end and stream != "agent" and len(taken) == len(lines):
                taken.append(tail)
                used += len(tail)
            offsets[stream] += used
            for raw in taken:
                text = raw.decode("utf-8", errors="replace").rstrip("\r")
                if stream == "agent":
                    item = json.loads(text)
                    records.append(LogRecord(float(item["t"]), "stderr", item["line"], agent=True))
                else:
                    records.append(LogRecord(now, stream, text))
        records.sort(key=lambda r: r.t)
        return records, offsets

    def _outputs(self, st: SpoolState, spool: JobSpool) -> SpoolState:
        """Packs, encrypts and uploads the job's outputs (parts go up while it packs); the state
        records the archive's hash (or why there is none). ApiUnavailable leaves it to be tried
        again, packed anew; so does a refusal that sending again may change (`FINAL_REFUSALS`)."""
        if st.completing is not None:
            recorded = self._complete_again(st, spool)
            if recorded is not None:
                return recorded
            st = replace(st, completing=None)
            spool.save(st)

        def before_complete(body: dict[str, Any]) -> None:
            # On disk and in memory: the next attempt, in this process or after a restart,
            # starts from it.
            completing = self._states[st.job_id] = replace(st, completing=body)
            spool.save(completing)

        try:
            packed = self.api.pack_and_upload(
                self.account,
                self.deployment,
                st.job_id,
                spool.output_dir,
                spool.archive,
                job_key=bytes.fromhex(st.job_key),
                wrapped_key=bytes.fromhex(st.wrapped_key),
                max_bytes=self.settings.results.max_output_bytes,
                before_complete=before_complete,
            )
        except ResultsError as exc:
            spool.note(f"outputs not stored: {exc}")
            after = replace(st, outputs_error=str(exc))
            spool.save(after)
            return after
        except ApiRefused as exc:
            if exc.status not in FINAL_REFUSALS:
                raise
            spool.note(f"outputs not stored: the grid refused them ({exc.detail})")
            after = replace(st, outputs_error=exc.detail)
            spool.save(after)
            return after
        spool.note(
            f"outputs stored: {packed.files} files, {packed.plain_bytes:,} bytes "
            f"({packed.size:,} encrypted), sha256 {packed.sha256.hex()}"
        )
        return self._stored(st, spool, packed.sha256.hex())

    def _complete_again(self, st: SpoolState, spool: JobSpool) -> SpoolState | None:
        """The state once the API acknowledges the completion whose answer was lost; None when
        it never recorded that upload (the outputs are then packed and uploaded anew)."""
        body = st.completing
        assert body is not None
        try:
            self.api.complete_again(self.account, self.deployment, st.job_id, body)
        except ApiRefused as exc:
            log.info("job %d: its last upload is not recorded (%s); uploading anew", st.job_id, exc)
            return None
        sha = str(body["sha256"]).removeprefix("0x")
        spool.note(f"outputs stored: {int(body['size']):,} bytes encrypted, sha256 {sha}")
        return self._stored(st, spool, sha)

    def _stored(self, st: SpoolState, spool: JobSpool, sha: str) -> SpoolState:
        after = replace(st, archive_sha256=sha, completing=None)
        spool.save(after)
        spool.remove_outputs()
        return after
