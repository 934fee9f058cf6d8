"""Fetching one file over HTTP(S), checked against its SHA-256, within a size cap and a deadline.

The file is written next to its destination and renamed into place only once its digest
matches: a destination either holds the right bytes or does not exist.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from metascheduler.errors import MetaschedulerError

CHUNK = 1 << 16


class FetchError(MetaschedulerError):
    """A fetch failed; the message says what, with which URL, in words fit for the chain."""

    kind = "fetch"


def fetch(url: str, sha256: str, dest: Path, *, max_bytes: int, timeout_s: float) -> int:
    """Downloads ``url`` to ``dest``; returns its size. Raises ``FetchError`` on a digest
    mismatch, a file over ``max_bytes``, a fetch that takes longer than ``timeout_s`` in all,
    or any network or HTTP failure."""
    deadline = time.monotonic() + timeout_s
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A name of fixed length: the destination's own name plus a suffix could pass the file
    # system's limit on one name (255 bytes) where the destination does not.
    part = dest.with_name(f".{hashlib.sha256(dest.name.encode()).hexdigest()[:16]}.part")
    digest = hashlib.sha256()
    size = 0
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "metascheduler-agent"})
        with urllib.request.urlopen(request, timeout=timeout_s) as resp, open(part, "wb") as out:
            declared = resp.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(
                    f"{url} is {int(declared)} bytes, over this provider's limit of {max_bytes}"
                )
            while chunk := resp.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(f"{url} is over this provider's limit of {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise FetchError(f"{url} took longer than {timeout_s:g} s to fetch")
                digest.update(chunk)
                out.write(chunk)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{url} could not be fetched: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        why = getattr(exc, "reason", None) or exc
        raise FetchError(f"{url} could not be fetched: {why}") from None
    finally:
        if digest.hexdigest() != sha256:
            with contextlib.suppress(OSError):  # never made: the failure above says why
                part.unlink()
    got = digest.hexdigest()
    if got != sha256:
        raise FetchError(f"{url} has SHA-256 {got}, not the {sha256} the spec pins")
    os.replace(part, dest)
    return size
