"""Fetching pinned files and the image cache, against a real local HTTP server."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from metascheduler.agent.envelope.cache import ImageCache
from metascheduler.agent.envelope.fetch import FetchError, fetch
from metascheduler.agent.envelope.staging import Stager, StagingError, StagingLimits
from metascheduler.devnet.images import file_server, sha256
from metascheduler.spec import validate_spec


def test_fetch_checks_digest_size_and_reachability(tmp_path: Path) -> None:
    body = os.urandom(3000)
    with file_server() as server:
        server.files["/f"] = body
        dest = tmp_path / "sub" / "f"
        assert fetch(server.url("/f"), sha256(body), dest, max_bytes=4000, timeout_s=10) == 3000
        assert dest.read_bytes() == body
        cases = [
            (server.url("/f"), "0" * 64, 4000, "not the " + "0" * 64),
            (server.url("/f"), sha256(body), 2999, "over this provider's limit of 2999"),
            (server.url("/missing"), sha256(body), 4000, "HTTP 404"),
            ("http://127.0.0.1:9/f", sha256(body), 4000, "could not be fetched"),
        ]
        for url, digest, cap, words in cases:
            out = tmp_path / "bad"
            with pytest.raises(FetchError) as info:
                fetch(url, digest, out, max_bytes=cap, timeout_s=10)
            assert words in str(info.value)
            # Nothing half-written or unchecked is left where the file would go.
            assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]
        # A name as long as a file system takes: the file being written must not be longer.
        longest = tmp_path / "sub" / ("a" * 255)
        assert fetch(server.url("/f"), sha256(body), longest, max_bytes=4000, timeout_s=10) == 3000
        with pytest.raises(FetchError, match="could not be fetched"):
            fetch("http://127.0.0.1:9/f", sha256(body), longest, max_bytes=4000, timeout_s=10)


def test_cache_reuses_by_digest_and_evicts_the_least_recently_used(tmp_path: Path) -> None:
    blobs = {name: os.urandom(1000) for name in ("a", "b", "c")}
    evicted: list[str] = []
    cache = ImageCache(tmp_path / "cache", max_bytes=2500)
    with file_server() as server:
        for name, body in blobs.items():
            server.files[f"/{name}"] = body

        def get(name: str) -> bool:
            body = blobs[name]
            _, cached = cache.archive(
                server.url(f"/{name}"),
                sha256(body),
                max_bytes=10_000,
                timeout_s=10,
                evicted=evicted.append,
            )
            return cached

        assert [get("a"), get("b"), get("a")] == [False, False, True]
        assert server.hits == {"/a": 1, "/b": 1}
        os.utime(cache.path(sha256(blobs["b"])), (1, 1))  # b used longest ago
        assert get("c") is False
        assert evicted == [sha256(blobs["b"])]
        assert cache.digests() == sorted(sha256(blobs[n]) for n in ("a", "c"))


def test_staging_refuses_in_words_past_its_deadline(tmp_path: Path) -> None:
    digest = "ab" * 32
    spec = validate_spec(
        {
            "version": 2,
            "name": "slow",
            "command": ["true"],
            "inputs": [{"url": "http://127.0.0.1:9/a", "sha256": digest, "path": "a"}],
        }
    )
    stager = Stager(StagingLimits(fetch_timeout_s=0.001))
    with pytest.raises(StagingError) as info:
        stager.inputs(spec, tmp_path, None, deadline=time.monotonic() - 1)
    assert "staging took longer than this provider's 0.001 s" in str(info.value)
