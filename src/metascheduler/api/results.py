"""Results routes: log chunks in (the placed provider's, signed) and out (to the customer, with
a signed grant), pre-signed URLs for the encrypted outputs, and sizes and state for everyone.

Who may do what is read from the chain (`getJob`: customer, placed provider, status), not from
the store, so there is no wait for ingestion and nothing to trust but the contract. Everything
this module handles is ciphertext; the checks are in metascheduler.results.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from metascheduler.chain import Market
from metascheduler.chain.errors import RevertError
from metascheduler.chain.rpc import connect
from metascheduler.chain.types import ZERO_ADDRESS, JobView
from metascheduler.results import grant
from metascheduler.results import store as rstore
from metascheduler.results.customer import find_request
from metascheduler.results.errors import ChunkRefused
from metascheduler.results.logchain import Chunk, Deployment
from metascheduler.results.objects import ObjectStore, ObjectStoreError, output_key
from metascheduler.store.db import RESULTS, make_engine, session_factory, upgrade_to_head
from metascheduler.store.models import Job

from .schemas import MAX_INT, ChunkAccepted, ChunkBody
from .schemas import Problem as ProblemBody
from .settings import ApiSettings

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/jobs/{job_id}", tags=["results"])

JobId = Annotated[int, Path(ge=1, le=MAX_INT)]
GrantHeader = Annotated[str | None, Header(alias=grant.HEADER)]
#: A running job's record is re-read from the chain after this long; an ended one never.
VIEW_CACHE_S = 1.0
_P: dict[str, Any] = {"model": ProblemBody}
_CHUNK_STATUS = {
    "malformed": 400,
    "forged": 401,
    "wrong_deployment": 409,
    "wrong_job": 409,
    "replayed": 409,
    "gap": 409,
    "out_of_order": 409,
    "too_large": 413,
}


class Problem(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class UploadRequest(BaseModel):
    size: int = Field(ge=0, description="bytes of the encrypted archive")


class PartDone(BaseModel):
    number: int = Field(ge=1, le=10_000)
    etag: str = Field(max_length=200)


class UploadComplete(BaseModel):
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^0x[0-9a-f]{64}$")
    upload_id: str | None = None
    parts: list[PartDone] = Field(default_factory=list, max_length=10_000)


@dataclass
class Results:
    """What the results routes need, built once by `create_app`."""

    settings: ApiSettings
    sessions: sessionmaker[Session]
    #: The chain index the oracle writes (read only here).
    chain_index: sessionmaker[Session]
    objects: ObjectStore | None
    _market: Market | None = None
    _deployment: Deployment | None = None
    _views: dict[int, tuple[JobView, float]] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, settings: ApiSettings, chain_index: sessionmaker[Session]) -> Results:
        upgrade_to_head(settings.results_url(), RESULTS)
        engine = make_engine(settings.results_url())
        objects = None
        if settings.object_store_endpoint:
            access = settings.object_store_access_key
            secret = settings.object_store_secret_key
            if access is None or secret is None:
                raise ValueError(
                    "object_store_endpoint is set but its access or secret key is not: set "
                    "object_store_access_key and object_store_secret_key"
                )
            objects = ObjectStore(
                settings.object_store_endpoint,
                settings.object_store_bucket,
                access.get_secret_value(),
                secret.get_secret_value(),
                settings.object_store_region,
            )
        return cls(settings, session_factory(engine), chain_index, objects, _views={})

    # -- the chain's word on a job ------------------------------------------------------------

    def market(self) -> Market:
        if self._market is None:
            address = self.settings.market_address
            if not address:
                raise Problem(503, "this API has no market_address set: it serves no results")
            self._market = Market(connect(self.settings.rpc_url, timeout_s=5.0), address)
        return self._market

    def deployment(self) -> Deployment:
        if self._deployment is None:
            market = self.market()
            chain_id = self.settings.chain_id
            if chain_id is None:
                try:
                    chain_id = int(market.w3.eth.chain_id)
                except Exception as exc:
                    raise Problem(
                        503, f"cannot read the chain id from {self.settings.rpc_url} ({exc})"
                    ) from None
            self._deployment = Deployment(chain_id, market.address)
        return self._deployment

    def job(self, job_id: int) -> JobView:
        assert self._views is not None
        now = time.monotonic()
        with self._lock:
            cached = self._views.get(job_id)
        if cached and (cached[0].status.terminal or now - cached[1] < VIEW_CACHE_S):
            return cached[0]
        try:
            view = self.market().get_job(job_id)
        except Problem:
            raise
        except RevertError as exc:
            if exc.name == "JobNotFound":
                raise Problem(404, str(exc)) from None
            raise Problem(503, f"cannot read job {job_id} from the chain: {exc}") from None
        except Exception as exc:
            raise Problem(503, f"cannot read job {job_id} from the chain: {exc}") from None
        if view.customer == ZERO_ADDRESS:
            # An ended job's record no longer names its customer; its request event does.
            view = replace(view, customer=self.customer_of(job_id))
        with self._lock:
            self._views[job_id] = (view, now)
        return view

    def customer_of(self, job_id: int) -> str:
        with self.chain_index() as s:
            row = s.get(Job, job_id)
            if row is not None:
                return row.customer
        market = self.market()
        try:
            head = int(market.w3.eth.block_number)
            return find_request(market, job_id, from_block=0, to_block=head).customer
        except Exception as exc:
            raise Problem(503, f"cannot find who requested job {job_id}: {exc}") from None

    def signer(self, value: str | None, action: str, job_id: int) -> str:
        try:
            return grant.verify(value, action=action, deployment=self.deployment(), job_id=job_id)
        except grant.GrantRefused as exc:
            raise Problem(exc.status, exc.detail) from None

    def customer_only(self, value: str | None, action: str, job_id: int) -> JobView:
        who = self.signer(value, action, job_id)
        view = self.job(job_id)
        if who.lower() != view.customer.lower():
            raise Problem(
                403,
                f"{who} is not the customer of job {job_id}: only {view.customer} may read its "
                "results (they are encrypted to that wallet anyway)",
            )
        return view

    def provider_only(self, value: str | None, job_id: int) -> JobView:
        who = self.signer(value, grant.PUT_OUTPUTS, job_id)
        view = self.job(job_id)
        if who.lower() != view.provider.lower():
            raise Problem(
                403,
                f"{who} is not the placed provider of job {job_id} (that is {view.provider}): "
                "only it may upload the job's outputs",
            )
        return view

    def store(self) -> ObjectStore:
        if self.objects is None:
            # 501, not 503: a grid without a store will not have one in a minute, and the agent
            # must close the job's log rather than wait for it.
            raise Problem(
                501,
                "this API has no object store (object_store_endpoint): outputs cannot be stored",
            )
        return self.objects


def get_results(request: Request) -> Results:
    res: Results = request.app.state.results
    return res


Res = Annotated[Results, Depends(get_results)]


async def _answer(fn: Any, *args: Any) -> Any:
    try:
        return await run_in_threadpool(fn, *args)
    except Problem as p:
        return JSONResponse({"detail": p.detail}, status_code=p.status)
    except ObjectStoreError as exc:
        log.error("object store: %s", exc)
        return JSONResponse({"detail": str(exc)}, status_code=502)


# -- logs ----------------------------------------------------------------------------------


def _append(res: Results, job_id: int, body: Any) -> dict[str, Any]:
    try:
        chunk = Chunk.from_wire(body)
        view = res.job(job_id)
        with res.sessions() as s:
            done = rstore.append_chunk(
                s,
                chunk,
                deployment=res.deployment(),
                job_id=job_id,
                provider=view.provider,
                max_bytes=res.settings.max_log_bytes,
            )
    except ChunkRefused as exc:
        log.info("log chunk refused job=%d reason=%s: %s", job_id, exc.reason, exc)
        raise Problem(_CHUNK_STATUS.get(exc.reason, 409), str(exc)) from None
    return {"job_id": job_id, "seq": done.seq, "digest": done.digest, "duplicate": done.duplicate}


@router.post(
    "/logs/chunks",
    response_model=ChunkAccepted,
    responses={400: _P, 401: _P, 404: _P, 409: _P, 413: _P, 503: _P},
    summary="Append the next chunk of a job's log (its placed provider only)",
    description=(
        "The body is a sealed chunk (`metascheduler.results.logchain`). 200 acknowledges it "
        "(also for a chunk already stored: `duplicate`), so the agent may drop it from its "
        "spool. 400 malformed; 401 not signed by the job's placed provider; 409 another "
        "deployment or job, replayed, out of order or a gap; 413 over the log cap."
    ),
)
async def append_log(res: Res, job_id: JobId, body: ChunkBody) -> Any:
    return await _answer(_append, res, job_id, body.model_dump())


def _read(res: Results, job_id: int, value: str | None, after: int, limit: int) -> dict[str, Any]:
    view = res.customer_only(value, grant.READ_LOGS, job_id)
    with res.sessions() as s:
        chunks = rstore.read_chunks(s, job_id, after=after, limit=limit)
    return {
        "job_id": job_id,
        "provider": view.provider,
        "status": view.status.name,
        "chunks": [c.to_wire() for c in chunks],
        "final": bool(chunks and chunks[-1].header.final),
    }


@router.get(
    "/logs",
    responses={401: _P, 403: _P, 404: _P, 409: _P, 503: _P},
    summary="Read a job's log chunks (its customer only, with a signed grant)",
    description=(
        "Chunks with seq above `after`, in order, as sealed (ciphertext). With `wait`, an "
        "empty answer waits up to that many seconds for a new chunk (long polling)."
    ),
)
async def read_log(
    res: Res,
    job_id: JobId,
    x_ms_grant: GrantHeader = None,
    after: Annotated[int, Query(ge=-1, le=MAX_INT)] = -1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    wait: Annotated[float, Query(ge=0, le=60)] = 0,
) -> Any:
    deadline = time.monotonic() + min(wait, res.settings.log_wait_max_s)
    while True:
        out = await _answer(_read, res, job_id, x_ms_grant, after, limit)
        if isinstance(out, JSONResponse) or out["chunks"] or time.monotonic() >= deadline:
            return out
        await asyncio.sleep(0.05)


# -- outputs -------------------------------------------------------------------------------


def _upload(res: Results, job_id: int, value: str | None, req: UploadRequest) -> dict[str, Any]:
    res.provider_only(value, job_id)
    cap = res.settings.max_output_bytes
    if req.size > cap:
        raise Problem(
            413,
            f"the outputs of job {job_id} are {req.size:,} bytes, over the grid's cap of "
            f"{cap:,} bytes",
        )
    objects = res.store()
    key = output_key(res.deployment(), job_id)
    ttl = res.settings.presign_ttl_s
    part = res.settings.multipart_part_bytes
    with res.sessions() as s:
        row = s.get(rstore.OutputRow, job_id)
        if row is not None and row.state == "stored":
            raise Problem(409, f"the outputs of job {job_id} are already stored")
        objects.ensure_bucket()
        upload_id = None
        parts: list[dict[str, Any]] = []
        url = None
        if req.size > part:
            upload_id = objects.start_multipart(key)
            count = math.ceil(req.size / part)
            parts = [
                {"number": p.number, "url": p.url}
                for p in objects.presign_parts(key, upload_id, count, ttl)
            ]
        else:
            url = objects.presign_put(key, ttl)
        if row is None:
            row = rstore.OutputRow(job_id=job_id, key=key)
            s.add(row)
        row.state, row.declared_size, row.upload_id = "uploading", req.size, upload_id
        row.size = row.sha256 = None
        row.updated_at = time.time()
        s.commit()
    return {"key": key, "url": url, "upload_id": upload_id, "part_bytes": part, "parts": parts}


@router.post(
    "/outputs/upload",
    responses={400: _P, 401: _P, 403: _P, 404: _P, 409: _P, 413: _P, 501: _P, 502: _P, 503: _P},
    summary="Pre-signed URLs to upload a job's encrypted outputs (its placed provider only)",
    description=(
        "One PUT URL, or for more than `multipart_part_bytes` a multipart upload with one URL "
        "per part. Then POST `outputs/complete`. 403 not the placed provider; 413 over the cap."
    ),
)
async def start_upload(
    res: Res, job_id: JobId, req: UploadRequest, x_ms_grant: GrantHeader = None
) -> Any:
    return await _answer(_upload, res, job_id, x_ms_grant, req)


def _complete(res: Results, job_id: int, value: str | None, req: UploadComplete) -> dict[str, Any]:
    res.provider_only(value, job_id)
    objects = res.store()
    with res.sessions() as s:
        row = s.get(rstore.OutputRow, job_id)
        if row is None:
            raise Problem(409, f"no upload of the outputs of job {job_id} was started")
        if row.state == "stored":
            if row.sha256 == req.sha256 and row.size == req.size:
                return {"job_id": job_id, "size": row.size, "sha256": row.sha256}
            raise Problem(409, f"the outputs of job {job_id} are already stored")
        if row.upload_id:
            if req.upload_id != row.upload_id:
                raise Problem(409, f"upload {req.upload_id} is not the current one of job {job_id}")
            etags = {p.number: p.etag for p in req.parts}
            objects.complete_multipart(row.key, row.upload_id, etags)
        size = objects.size(row.key)
        if size is None or size != req.size or size > res.settings.max_output_bytes:
            if size is not None:
                objects.delete(row.key)
            raise Problem(
                400,
                f"the stored outputs of job {job_id} are {size} bytes, not the {req.size} "
                "declared: upload again",
            )
        row.state, row.size, row.sha256, row.updated_at = "stored", size, req.sha256, time.time()
        s.commit()
    return {"job_id": job_id, "size": size, "sha256": req.sha256}


@router.post(
    "/outputs/complete",
    summary="Record a finished upload of a job's outputs (its placed provider only)",
    responses={400: _P, 401: _P, 403: _P, 404: _P, 409: _P, 501: _P, 502: _P, 503: _P},
)
async def complete_upload(
    res: Res, job_id: JobId, req: UploadComplete, x_ms_grant: GrantHeader = None
) -> Any:
    return await _answer(_complete, res, job_id, x_ms_grant, req)


def _download(res: Results, job_id: int, value: str | None) -> dict[str, Any]:
    res.customer_only(value, grant.READ_OUTPUTS, job_id)
    with res.sessions() as s:
        row = s.get(rstore.OutputRow, job_id)
        if row is None or row.state != "stored":
            raise Problem(
                404,
                f"job {job_id} has no stored outputs yet: they are uploaded when the job ends",
            )
        key, size, sha = row.key, row.size, row.sha256
    url = res.store().presign_get(key, res.settings.presign_ttl_s)
    return {"job_id": job_id, "url": url, "size": size, "sha256": sha}


@router.get(
    "/outputs",
    responses={401: _P, 403: _P, 404: _P, 409: _P, 501: _P, 502: _P, 503: _P},
    summary="A pre-signed GET of a job's encrypted outputs (its customer only)",
)
async def download(res: Res, job_id: JobId, x_ms_grant: GrantHeader = None) -> Any:
    return await _answer(_download, res, job_id, x_ms_grant)


def _summary(res: Results, job_id: int) -> dict[str, Any]:
    with res.sessions() as s:
        logs = rstore.log_summary(s, job_id)
        row = s.get(rstore.OutputRow, job_id)
        outputs = (
            {"state": row.state, "size": row.size if row.state == "stored" else row.declared_size}
            if row
            else None
        )
    return {
        "job_id": job_id,
        "log": {
            "chunks": logs.chunks,
            "bytes": logs.bytes,
            "final": logs.final,
            "head": logs.head,
        },
        "outputs": outputs,
    }


@router.get(
    "/results",
    responses={503: _P},
    summary="Sizes and state of a job's log and outputs (never their content)",
)
async def summary(res: Res, job_id: JobId) -> Any:
    return await _answer(_summary, res, job_id)
