"""Two SeaweedFS object stores run side by side, as the grids of two clones (or a test run beside
a running devnet) do on one machine: neither takes a fixed port the other needs."""

from __future__ import annotations

import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from metascheduler.devnet.objectstore import ObjectStore, start_object_store

pytestmark = pytest.mark.results

#: Longer than SeaweedFS takes to open its S3 gateway's side listeners after the gateway answers.
SETTLE_S = 5.0


def _answers(store: ObjectStore) -> bool:
    client = boto3.client(
        "s3",
        endpoint_url=store.endpoint,
        aws_access_key_id=store.access_key,
        aws_secret_access_key=store.secret_key,
        region_name="us-east-1",
        config=Config(signature_version="s3v4", retries={"max_attempts": 1}),
    )
    client.list_buckets()
    return True


def test_two_object_stores_run_side_by_side(tmp_path: Path) -> None:
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    with (
        start_object_store(tmp_path / "first", log_path=logs[0]) as first,
        start_object_store(tmp_path / "second", log_path=logs[1]) as second,
    ):
        time.sleep(SETTLE_S)
        for store, log in zip((first, second), logs, strict=True):
            assert store.process.poll() is None, f"SeaweedFS died: {log.read_text()[-2000:]}"
            assert _answers(store)
