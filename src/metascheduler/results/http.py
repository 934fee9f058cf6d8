"""The results API over HTTP, for the agent (append chunks, upload outputs) and the customer
(read chunks, fetch outputs). Transfers of output bytes go straight to the object store through
the pre-signed URLs the API hands out; the API never sees them."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from eth_account.signers.local import LocalAccount

from metascheduler.errors import MetaschedulerError, UnreachableError

from . import archive, grant
from .archive import Packed
from .errors import ResultsError
from .logchain import Chunk, Deployment

#: Parts of a multipart upload sent at once.
PARALLEL_PARTS = 4
#: Bytes per read or write when streaming output archives.
STREAM_BYTES = 1 << 20


class ApiRefused(MetaschedulerError):
    """The API answered with a 4xx, or 501 (it does not do this at all): sending the request
    again will not help (except 404 and 409 where the message says so). `status` is the HTTP
    code."""

    kind = "refused"

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class ApiUnavailable(UnreachableError):
    """The API (or the object store) did not answer, or answered 5xx: try again later."""

    kind = "api-unavailable"


class ApiDown(ApiUnavailable):
    """The API itself did not answer at all (refused or timed out): every request to it fails
    alike until it is back, whatever the job."""


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
        return str(body.get("detail", body)) if isinstance(body, dict) else str(body)
    except ValueError:
        return resp.text[:500] or resp.reason_phrase


@dataclass
class ResultsApi:
    base_url: str
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        self._http = httpx.Client(base_url=self.base_url.rstrip("/"), timeout=self.timeout_s)

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise ApiDown(f"the API at {self.base_url} did not answer: {exc}") from None
        if resp.status_code >= 500 and resp.status_code != 501:
            raise ApiUnavailable(
                f"the API at {self.base_url} failed ({resp.status_code}): {_detail(resp)}"
            )
        if resp.status_code >= 400:
            raise ApiRefused(resp.status_code, _detail(resp))
        out: dict[str, Any] = resp.json()
        return out

    # -- provider ----------------------------------------------------------------------------

    def append(self, job_id: int, chunk: Chunk) -> dict[str, Any]:
        return self._send("POST", f"/api/jobs/{job_id}/logs/chunks", json=chunk.to_wire())

    def pack_and_upload(
        self,
        account: LocalAccount,
        deployment: Deployment,
        job_id: int,
        src: Path,
        dest: Path,
        *,
        job_key: bytes,
        wrapped_key: bytes,
        max_bytes: int | None = None,
        before_complete: Callable[[dict[str, Any]], None] | None = None,
    ) -> Packed:
        """Packs the outputs under `src` (`archive.pack`) and uploads them. A small archive is
        written to `dest` and put in one request; a larger one goes up in parts while the
        packing goes on, so the two overlap, and is kept nowhere else (its `path` is None). The
        upload is planned on `archive.size_bound`; the parts past the archive's end go unused.
        `before_complete` gets the body of the request that records the upload before it is
        sent: if its answer is lost, `complete_again` with that body learns whether the API
        recorded it (a new upload would be refused once it did). Raises ResultsError (over the
        cap), ApiRefused, or ApiUnavailable (call again: the outputs are packed anew)."""
        archive.check_size(src, job_id, max_bytes)
        header = {grant.HEADER: grant.sign(account, grant.PUT_OUTPUTS, deployment, job_id)}
        plan = self._send(
            "POST",
            f"/api/jobs/{job_id}/outputs/upload",
            json={"size": archive.size_bound(src)},
            headers=header,
        )

        def pack(to: Path | None, sink: Any = None) -> Packed:
            return archive.pack(
                src,
                to,
                deployment=deployment,
                job_id=job_id,
                job_key=job_key,
                wrapped_key=wrapped_key,
                max_bytes=max_bytes,
                sink=sink,
            )

        etags: dict[int, str] = {}
        if plan["url"]:
            packed = pack(dest)
            with open(dest, "rb") as f:
                _put(plan["url"], _file_chunks(f, packed.size), packed.size)
        else:
            sender = _PartSender(plan["parts"], int(plan["part_bytes"]))
            try:
                # No copy on disk: a retry packs anew.
                packed = pack(None, sender.feed)
                etags = sender.finish()
            finally:
                sender.close()
        body = _completion(packed, plan["upload_id"], etags)
        if before_complete is not None:
            before_complete(body)
        self._send("POST", f"/api/jobs/{job_id}/outputs/complete", json=body, headers=header)
        return packed

    def complete_again(
        self, account: LocalAccount, deployment: Deployment, job_id: int, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Sends a completion (`before_complete`'s body) again: the API acknowledges one it
        already recorded, and refuses (409) one of an upload it no longer knows."""
        header = {grant.HEADER: grant.sign(account, grant.PUT_OUTPUTS, deployment, job_id)}
        return self._send("POST", f"/api/jobs/{job_id}/outputs/complete", json=body, headers=header)

    def upload(
        self, account: LocalAccount, deployment: Deployment, job_id: int, packed: Packed
    ) -> dict[str, Any]:
        """Uploads an encrypted archive through the URLs the API issues (multipart when large)
        and records it. Raises ApiUnavailable on any transfer failure: call again to retry."""
        path = packed.path
        if path is None:
            raise ValueError("this archive was packed to no file: upload it with pack_and_upload")
        header = {grant.HEADER: grant.sign(account, grant.PUT_OUTPUTS, deployment, job_id)}
        plan = self._send(
            "POST", f"/api/jobs/{job_id}/outputs/upload", json={"size": packed.size}, headers=header
        )
        etags: dict[int, str] = {}
        if plan["url"]:
            with open(path, "rb") as f:
                _put(plan["url"], _file_chunks(f, packed.size), packed.size)
        else:
            part = int(plan["part_bytes"])

            def put_part(p: dict[str, Any]) -> tuple[int, str]:
                n = int(p["number"])
                length = min(part, packed.size - (n - 1) * part)
                with open(path, "rb") as f:
                    f.seek((n - 1) * part)
                    return n, _put(p["url"], _file_chunks(f, length), length)

            # Parts go up side by side: one stream alone leaves the store's bandwidth idle.
            with ThreadPoolExecutor(PARALLEL_PARTS) as pool:
                etags = dict(pool.map(put_part, plan["parts"]))
        return self._complete(job_id, header, packed, plan["upload_id"], etags)

    def _complete(
        self,
        job_id: int,
        header: dict[str, str],
        packed: Packed,
        upload_id: str | None,
        etags: dict[int, str],
    ) -> dict[str, Any]:
        return self._send(
            "POST",
            f"/api/jobs/{job_id}/outputs/complete",
            json=_completion(packed, upload_id, etags),
            headers=header,
        )

    # -- customer ----------------------------------------------------------------------------

    def read(
        self,
        account: LocalAccount,
        deployment: Deployment,
        job_id: int,
        *,
        after: int = -1,
        wait_s: float = 0,
        limit: int = 200,
    ) -> dict[str, Any]:
        header = {grant.HEADER: grant.sign(account, grant.READ_LOGS, deployment, job_id)}
        return self._send(
            "GET",
            f"/api/jobs/{job_id}/logs",
            params={"after": after, "wait": wait_s, "limit": limit},
            headers=header,
            timeout=self.timeout_s + wait_s,
        )

    def download(
        self, account: LocalAccount, deployment: Deployment, job_id: int, dest: Path
    ) -> bytes:
        """Fetches the encrypted outputs to `dest`; returns the SHA-256 of the bytes fetched."""
        header = {grant.HEADER: grant.sign(account, grant.READ_OUTPUTS, deployment, job_id)}
        where = self._send("GET", f"/api/jobs/{job_id}/outputs", headers=header)
        h = hashlib.sha256()
        tmp = dest.with_name(dest.name + ".part")
        try:
            with httpx.stream("GET", where["url"], timeout=60.0) as resp:
                if resp.status_code != 200:
                    raise ApiUnavailable(
                        f"the object store refused the download ({resp.status_code}): "
                        f"{resp.read()[:300]!r}"
                    )
                with open(tmp, "wb") as f:
                    for block in resp.iter_bytes(STREAM_BYTES):
                        f.write(block)
                        h.update(block)
        except httpx.HTTPError as exc:
            raise ApiUnavailable(f"the download of job {job_id}'s outputs failed: {exc}") from None
        os.replace(tmp, dest)
        return h.digest()

    def summary(self, job_id: int) -> dict[str, Any]:
        return self._send("GET", f"/api/jobs/{job_id}/results")


class _PartSender:
    """Cuts an archive's bytes, as packing hands them over, into the parts of a multipart upload
    and sends each as soon as it is whole, PARALLEL_PARTS at a time. Packing waits while they are
    all in flight, so at most PARALLEL_PARTS + 1 parts are held in memory. The first failed part
    stops the packing (its error is raised at the next bytes handed over)."""

    def __init__(self, parts: list[dict[str, Any]], part_bytes: int) -> None:
        self._urls = {int(p["number"]): str(p["url"]) for p in parts}
        self._part_bytes = part_bytes
        self._pieces: list[bytes] = []
        self._held = 0
        self._number = 1
        self._pool = ThreadPoolExecutor(PARALLEL_PARTS)
        self._slots = threading.Semaphore(PARALLEL_PARTS)
        self._sent: list[Future[tuple[int, str]]] = []
        self._error: BaseException | None = None

    def feed(self, data: bytes) -> None:
        self._pieces.append(data)
        self._held += len(data)
        if self._held >= self._part_bytes:
            joined = b"".join(self._pieces)
            at = 0
            while len(joined) - at >= self._part_bytes:
                self._send(joined[at : at + self._part_bytes])
                at += self._part_bytes
            rest = joined[at:]
            self._pieces, self._held = ([rest] if rest else []), len(rest)

    def _send(self, body: bytes) -> None:
        url = self._urls.get(self._number)
        if url is None:
            raise ResultsError(
                f"the archive outgrew the {len(self._urls)} parts its upload was planned on "
                "(archive.size_bound is wrong): nothing was stored"
            )
        self._slots.acquire()
        if self._error is not None:
            self._slots.release()
            raise self._error
        self._sent.append(self._pool.submit(self._put, self._number, url, body))
        self._number += 1

    def _put(self, number: int, url: str, body: bytes) -> tuple[int, str]:
        try:
            return number, _put(url, iter((body,)), len(body))
        except BaseException as exc:
            self._error = self._error or exc
            raise
        finally:
            self._slots.release()

    def finish(self) -> dict[int, str]:
        """Sends the last part and waits for them all; their ETags by number."""
        if self._held or self._number == 1:
            self._send(b"".join(self._pieces))
            self._pieces, self._held = [], 0
        return dict(f.result() for f in self._sent)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _completion(packed: Packed, upload_id: str | None, etags: dict[int, str]) -> dict[str, Any]:
    return {
        "size": packed.size,
        "sha256": "0x" + packed.sha256.hex(),
        "upload_id": upload_id,
        "parts": [{"number": n, "etag": e} for n, e in sorted(etags.items())],
    }


def _file_chunks(f: Any, length: int) -> Iterator[bytes]:
    left = length
    while left > 0:
        block = f.read(min(STREAM_BYTES, left))
        if not block:
            return
        left -= len(block)
        yield block


def _put(url: str, body: Iterator[bytes], length: int) -> str:
    try:
        resp = httpx.put(url, content=body, headers={"Content-Length": str(length)}, timeout=120.0)
    except httpx.HTTPError as exc:
        raise ApiUnavailable(f"the upload to the object store failed: {exc}") from None
    if resp.status_code != 200:
        raise ApiUnavailable(
            f"the object store refused the upload ({resp.status_code}): {resp.text[:300]}"
        )
    return str(resp.headers.get("ETag", ""))
