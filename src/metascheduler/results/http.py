"""The results API over HTTP, for the agent (append chunks, upload outputs) and the customer
(read chunks, fetch outputs). Transfers of output bytes go straight to the object store through
the pre-signed URLs the API hands out; the API never sees them."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from eth_account.signers.local import LocalAccount

from . import grant
from .archive import Packed
from .logchain import Chunk, Deployment

#: Parts of a multipart upload sent at once.
PARALLEL_PARTS = 4
#: Bytes per read or write when streaming output archives.
STREAM_BYTES = 1 << 20


class ApiRefused(Exception):
    """The API answered with a 4xx, or 501 (it does not do this at all): sending the request
    again will not help (except 404 and 409 where the message says so). `status` is the HTTP
    code."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class ApiUnavailable(Exception):
    """The API (or the object store) did not answer, or answered 5xx: try again later."""


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
            raise ApiUnavailable(f"the API at {self.base_url} did not answer: {exc}") from None
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

    def upload(
        self, account: LocalAccount, deployment: Deployment, job_id: int, packed: Packed
    ) -> dict[str, Any]:
        """Uploads an encrypted archive through the URLs the API issues (multipart when large)
        and records it. Raises ApiUnavailable on any transfer failure: call again to retry."""
        header = {grant.HEADER: grant.sign(account, grant.PUT_OUTPUTS, deployment, job_id)}
        plan = self._send(
            "POST", f"/api/jobs/{job_id}/outputs/upload", json={"size": packed.size}, headers=header
        )
        etags: dict[int, str] = {}
        if plan["url"]:
            with open(packed.path, "rb") as f:
                _put(plan["url"], _file_chunks(f, packed.size), packed.size)
        else:
            part = int(plan["part_bytes"])

            def put_part(p: dict[str, Any]) -> tuple[int, str]:
                n = int(p["number"])
                length = min(part, packed.size - (n - 1) * part)
                with open(packed.path, "rb") as f:
                    f.seek((n - 1) * part)
                    return n, _put(p["url"], _file_chunks(f, length), length)

            # Parts go up side by side: one stream alone leaves the store's bandwidth idle.
            with ThreadPoolExecutor(PARALLEL_PARTS) as pool:
                etags = dict(pool.map(put_part, plan["parts"]))
        return self._send(
            "POST",
            f"/api/jobs/{job_id}/outputs/complete",
            json={
                "size": packed.size,
                "sha256": "0x" + packed.sha256.hex(),
                "upload_id": plan["upload_id"],
                "parts": [{"number": n, "etag": e} for n, e in sorted(etags.items())],
            },
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
