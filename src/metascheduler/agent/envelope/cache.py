"""Image archives cached by their SHA-256, within a size cap, least recently used evicted first.

``<root>/<sha256>.tar`` holds each archive; its modification time is its last use. An archive
is fetched once, checked against its digest (``fetch``), then reused by every job that pins the
same digest. When the cache outgrows its cap, the archives used longest ago go (with their
images in the runtime), never the one just asked for.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from metascheduler.agent.envelope.fetch import fetch


class ImageCache:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def path(self, digest: str) -> Path:
        return self.root / f"{digest}.tar"

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One fetch or eviction at a time, among every agent sharing this cache."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def archive(
        self,
        url: str,
        digest: str,
        *,
        max_bytes: int,
        timeout_s: float,
        evicted: Callable[[str], None],
    ) -> tuple[Path, bool]:
        """The archive of ``digest`` (fetched from ``url`` if not cached) and whether it was
        cached. ``evicted`` is told each digest the cache drops to stay under its cap."""
        with self.locked():
            path = self.path(digest)
            if path.exists():
                os.utime(path)
                return path, True
            fetch(url, digest, path, max_bytes=max_bytes, timeout_s=timeout_s)
            self._evict(keep=digest, evicted=evicted)
            return path, False

    def _evict(self, keep: str, evicted: Callable[[str], None]) -> None:
        entries = sorted(
            ((p.stat().st_mtime, p) for p in self.root.glob("*.tar")), key=lambda e: e[0]
        )
        total = sum(p.stat().st_size for _, p in entries)
        for _, p in entries:
            if total <= self.max_bytes:
                return
            digest = p.name.removesuffix(".tar")
            if digest == keep:
                continue
            total -= p.stat().st_size
            p.unlink()
            evicted(digest)

    def digests(self) -> list[str]:
        return sorted(p.name.removesuffix(".tar") for p in self.root.glob("*.tar"))
