"""The results API against a real anvil and a real SeaweedFS: log chunks in from the placed
provider only and out to the customer only, outputs up and down through pre-signed URLs, and
nothing but ciphertext in the API's database and the store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from metascheduler.devnet.objectstore import ObjectStore
from metascheduler.results import archive, grant
from metascheduler.results.digest import check, result_digest
from metascheduler.results.errors import Tampered
from metascheduler.results.http import ApiRefused, ResultsApi
from metascheduler.results.keys import new_job_key, wrap
from metascheduler.results.logchain import Chunk, ChunkSealer, LogReader, LogRecord
from tests.conftest import Grid
from tests.integration.results_kit import (
    RunningJob,
    Served,
    api_settings,
    object_store,
    running_job,
    serve,
)

pytestmark = [pytest.mark.chain, pytest.mark.results]
__all__ = ["object_store"]

MARKER = "MARKER-plain-31f7c2"


@pytest.fixture
def job(grid: Grid) -> RunningJob:
    return running_job(grid)


@pytest.fixture
def api(grid: Grid, object_store: ObjectStore, tmp_path: Path) -> Iterator[tuple[Served, Path]]:
    settings = api_settings(grid, object_store, tmp_path, multipart_part_bytes=5 * 2**20)
    served = serve(settings)
    try:
        yield served, tmp_path
    finally:
        served.stop()


def sealer(job: RunningJob, account=None) -> ChunkSealer:
    key = new_job_key()
    return ChunkSealer(
        account or job.provider, job.deployment, job.job_id, key, wrap(job.customer_pub, key)
    )


def records(*lines: str) -> list[LogRecord]:
    return [LogRecord(1.0 + i, "stdout", line) for i, line in enumerate(lines)]


def read_all(client: ResultsApi, job: RunningJob, account=None) -> tuple[list[str], LogReader]:
    body = client.read(account or job.customer, job.deployment, job.job_id)
    reader = LogReader(bytes(job.customer.key), job.deployment, job.job_id, job.provider.address)
    lines = [r.line for c in body["chunks"] for r in reader.add(Chunk.from_wire(c))]
    return lines, reader


def test_log_chunks_round_trip_and_retries_are_not_doubled(
    job: RunningJob, api: tuple[Served, Path]
) -> None:
    served, db_dir = api
    client = ResultsApi(served.url)
    s = sealer(job)
    first = s.seal(records("hello from the grid", MARKER))
    assert client.append(job.job_id, first)["duplicate"] is False
    # The acknowledgement was lost: the agent sends the same chunk again.
    assert client.append(job.job_id, first)["duplicate"] is True
    client.append(job.job_id, s.seal(records("bye"), final=True, exit_code=0))
    lines, reader = read_all(client, job)
    assert lines == ["hello from the grid", MARKER, "bye"]
    assert reader.final and reader.exit_code == 0
    summary = client.summary(job.job_id)
    assert summary["log"]["chunks"] == 2 and summary["log"]["final"] is True
    assert summary["log"]["head"] == reader.head
    for f in db_dir.iterdir():
        assert MARKER.encode() not in f.read_bytes(), f"plaintext in {f}"


def test_forged_replayed_reordered_and_foreign_chunks_are_refused(
    job: RunningJob, api: tuple[Served, Path]
) -> None:
    served, _ = api
    client = ResultsApi(served.url)
    s = sealer(job)
    c0, c1, c2 = s.seal(records("a")), s.seal(records("b")), s.seal(records("c"))
    forged = sealer(job, account=job.other).seal(records("forged"))
    cases = [(forged, 401), (c1, 409)]  # a stranger's chunk; c1 before c0
    for chunk, status in cases:
        with pytest.raises(ApiRefused) as e:
            client.append(job.job_id, chunk)
        assert e.value.status == status, e.value.detail
    client.append(job.job_id, c0)
    with pytest.raises(ApiRefused, match="skips ahead"):
        client.append(job.job_id, c2)  # c1 left out
    client.append(job.job_id, c1)
    # c0 re-sent as if it were later in the chain: a replay, not a duplicate of seq 2.
    moved = ChunkSealer(job.provider, job.deployment, job.job_id + 1, s.job_key, s.wrapped_key)
    with pytest.raises(ApiRefused) as e:
        client.append(job.job_id, moved.seal(records("for another job")))
    assert e.value.status == 409 and "not job" in e.value.detail
    assert read_all(client, job)[0] == ["a", "b"]


def test_only_the_customer_reads_the_log(job: RunningJob, api: tuple[Served, Path]) -> None:
    served, _ = api
    client = ResultsApi(served.url)
    client.append(job.job_id, sealer(job).seal(records("secret")))
    with pytest.raises(ApiRefused) as e:
        client.read(job.other, job.deployment, job.job_id)
    assert e.value.status == 403
    r = httpx.get(f"{served.url}/api/jobs/{job.job_id}/logs")
    assert r.status_code == 401 and grant.HEADER in r.json()["detail"]


def _store_client(store: ObjectStore) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=store.endpoint,
        aws_access_key_id=store.access_key,
        aws_secret_access_key=store.secret_key,
        region_name="us-east-1",
        config=Config(signature_version="s3v4"),
    )


@pytest.mark.parametrize("big", [False, True], ids=["single-put", "multipart"])
def test_outputs_round_trip_match_the_digest_and_tampering_is_detected(
    job: RunningJob,
    api: tuple[Served, Path],
    object_store: ObjectStore,
    tmp_path: Path,
    big: bool,
) -> None:
    served, _ = api
    client = ResultsApi(served.url)
    src = tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    (src / "result.txt").write_text(MARKER + "\n")
    (src / "sub" / "data.bin").write_bytes(os.urandom(12 * 2**20 if big else 1000))
    key = new_job_key()
    packed = archive.pack(
        src,
        tmp_path / "o.enc",
        deployment=job.deployment,
        job_id=job.job_id,
        job_key=key,
        wrapped_key=wrap(job.customer_pub, key),
    )
    s = sealer(job)
    head = s.seal([], final=True, exit_code=0).digest_hex()
    digest = result_digest(packed.sha256, head)

    # Only the placed provider may upload.
    with pytest.raises(ApiRefused) as e:
        client.upload(job.other, job.deployment, job.job_id, packed)
    assert e.value.status == 403
    client.upload(job.provider, job.deployment, job.job_id, packed)

    # Only the customer may download.
    with pytest.raises(ApiRefused) as e:
        client.download(job.other, job.deployment, job.job_id, tmp_path / "x.enc")
    assert e.value.status == 403
    got = tmp_path / "got.enc"
    sha = client.download(job.customer, job.deployment, job.job_id, got)
    check(digest, sha, head)
    dest = tmp_path / "unpacked"
    archive.open_archive(
        got,
        dest,
        private_key=bytes(job.customer.key),
        deployment=job.deployment,
        job_id=job.job_id,
    )
    for rel in ("result.txt", "sub/data.bin"):
        assert (dest / rel).read_bytes() == (src / rel).read_bytes()
    assert client.summary(job.job_id)["outputs"] == {"state": "stored", "size": packed.size}

    # No plaintext in the store's files.
    for f in object_store.data_dir.rglob("*"):
        if f.is_file():
            assert MARKER.encode() not in f.read_bytes(), f"plaintext in {f}"

    # Someone with the store's keys replaces the object: the digest check catches it.
    s3 = _store_client(object_store)
    obj = got.read_bytes()
    tampered = obj[:-1] + bytes([obj[-1] ^ 1])
    stored_key = client.summary(job.job_id)
    assert stored_key["outputs"]["state"] == "stored"
    from metascheduler.results.objects import output_key

    s3.put_object(Bucket="results-test", Key=output_key(job.deployment, job.job_id), Body=tampered)
    sha2 = client.download(job.customer, job.deployment, job.job_id, tmp_path / "t.enc")
    with pytest.raises(Tampered, match="do not match"):
        check(digest, sha2, head)


@pytest.mark.parametrize("mb", [1, 23], ids=["single-put", "parts-while-packing"])
def test_outputs_packed_and_uploaded_together_round_trip(
    job: RunningJob, api: tuple[Served, Path], tmp_path: Path, mb: int
) -> None:
    """The agent's way: parts go up while the archive is packed (5 MiB parts here, so 23 MB is
    five parts and a short last one), and the customer gets every byte back."""
    served, _ = api
    client = ResultsApi(served.url)
    src = tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "data.bin").write_bytes(os.urandom(mb * 2**20))
    (src / "result.txt").write_text(MARKER + "\n")
    key = new_job_key()
    packed = client.pack_and_upload(
        job.provider,
        job.deployment,
        job.job_id,
        src,
        tmp_path / "o.enc",
        job_key=key,
        wrapped_key=wrap(job.customer_pub, key),
    )
    assert packed.size <= archive.size_bound(src)
    assert client.summary(job.job_id)["outputs"] == {"state": "stored", "size": packed.size}
    head = sealer(job).seal([], final=True, exit_code=0).digest_hex()
    got = tmp_path / "got.enc"
    sha = client.download(job.customer, job.deployment, job.job_id, got)
    assert sha == packed.sha256
    if mb == 1:
        assert packed.path is not None and archive.sha256_file(packed.path) == sha
    else:  # the parts went up as they were packed, and no copy was kept
        assert packed.path is None and not (tmp_path / "o.enc").exists()
    check(result_digest(packed.sha256, head), sha, head)
    dest = tmp_path / "unpacked"
    archive.open_archive(
        got, dest, private_key=bytes(job.customer.key), deployment=job.deployment, job_id=job.job_id
    )
    for rel in ("result.txt", "sub/data.bin"):
        assert (dest / rel).read_bytes() == (src / rel).read_bytes()


def test_outputs_over_the_cap_are_refused(
    grid: Grid, job: RunningJob, object_store: ObjectStore, tmp_path: Path
) -> None:
    served = serve(api_settings(grid, object_store, tmp_path, max_output_bytes=100))
    try:
        packed = archive.Packed(tmp_path / "none", 101, bytes(32), 0, 0)
        with pytest.raises(ApiRefused) as e:
            ResultsApi(served.url).upload(job.provider, job.deployment, job.job_id, packed)
        assert e.value.status == 413 and "cap" in e.value.detail
    finally:
        served.stop()


def test_an_api_without_a_store_refuses_outputs_for_good(
    grid: Grid, job: RunningJob, object_store: ObjectStore, tmp_path: Path
) -> None:
    """501, not 503: the agent then closes the job's log instead of retrying for ever."""
    served = serve(api_settings(grid, object_store, tmp_path, object_store_endpoint=None))
    try:
        packed = archive.Packed(tmp_path / "none", 10, bytes(32), 0, 0)
        with pytest.raises(ApiRefused) as e:
            ResultsApi(served.url).upload(job.provider, job.deployment, job.job_id, packed)
        assert e.value.status == 501 and "no object store" in e.value.detail
    finally:
        served.stop()
