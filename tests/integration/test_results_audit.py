"""The audit's check of stored results against the digest each completion committed, on a real
anvil, the real API and a real SeaweedFS: an honest job passes; an output archive replaced in the
store, or a log chunk altered in the API's database, is reported by job id with what differed.
Without the API's settings the audit is the chain's alone and checks nothing stored."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from typer.testing import CliRunner

from metascheduler.api import ApiSettings
from metascheduler.audit import audit_all, audit_job
from metascheduler.audit.results import StoredResults
from metascheduler.cli import app
from metascheduler.devnet.objectstore import ObjectStore
from metascheduler.results.objects import output_key
from tests.conftest import Grid
from tests.integration.results_kit import (
    Served,
    api_settings,
    object_store,
    running_job,
    serve,
    ship_and_complete,
)

pytestmark = [pytest.mark.chain, pytest.mark.results]
__all__ = ["object_store"]
BUCKET = "results-audit"


@pytest.fixture
def settings(grid: Grid, object_store: ObjectStore, tmp_path: Path) -> ApiSettings:
    return api_settings(grid, object_store, tmp_path, object_store_bucket=BUCKET)


@pytest.fixture
def api(settings: ApiSettings) -> Iterator[Served]:
    served = serve(settings)
    try:
        yield served
    finally:
        served.stop()


def settings_file(settings: ApiSettings, path: Path) -> Path:
    """The API's settings as an operator keeps them: a TOML file."""
    fields = {
        "database_url": settings.database_url,
        "object_store_endpoint": settings.object_store_endpoint,
        "object_store_bucket": settings.object_store_bucket,
        "object_store_access_key": settings.object_store_access_key.get_secret_value(),  # type: ignore[union-attr]
        "object_store_secret_key": settings.object_store_secret_key.get_secret_value(),  # type: ignore[union-attr]
    }
    path.write_text("".join(f'{k} = "{v}"\n' for k, v in fields.items()))
    return path


def test_the_audit_checks_stored_results_against_their_digest(
    grid: Grid,
    settings: ApiSettings,
    api: Served,
    object_store: ObjectStore,
    tmp_path: Path,
) -> None:
    job = running_job(grid)
    committed = ship_and_complete(job, api.url, tmp_path)
    market = grid.market(grid.admin)
    stored = StoredResults.from_settings(settings)

    # Honest: checked, and it matches.
    report = audit_all(market, results=stored)
    assert report.ok, report.all_discrepancies
    got = report.to_json()
    assert got["results_checked"] == 1 and got["results_mismatched"] == []
    (audited,) = report.jobs
    assert audited.results_check is not None and audited.results_check.stored == committed

    # The command line, from the API's settings file; without it, the chain alone.
    base = ["--rpc-url", grid.anvil.url, "--market", market.address, "audit", "all", "--json"]
    toml = settings_file(settings, tmp_path / "api.toml")
    out = CliRunner().invoke(app, [*base, "--results", str(toml)])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output.strip().splitlines()[-1])["results_checked"] == 1

    # Someone with the store's keys replaces the archive.
    s3 = boto3.client(
        "s3",
        endpoint_url=object_store.endpoint,
        aws_access_key_id=object_store.access_key,
        aws_secret_access_key=object_store.secret_key,
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    key = output_key(job.deployment, job.job_id)
    original = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=key, Body=original[:-1] + bytes([original[-1] ^ 1]))
    report = audit_all(market, results=stored)
    assert not report.ok and report.to_json()["results_mismatched"] == [job.job_id]
    (wrong,) = report.all_discrepancies
    assert wrong.check == "results" and wrong.job_id == job.job_id
    assert f"the output archive {key}: its stored bytes" in wrong.message
    assert f"not the {committed} committed on chain" in wrong.message
    out = CliRunner().invoke(app, [*base, "--results", str(toml)])
    assert out.exit_code == 1, out.output
    chain_only = CliRunner().invoke(app, base)
    assert chain_only.exit_code == 0, chain_only.output
    assert json.loads(chain_only.output.strip().splitlines()[-1])["results_checked"] is None

    # The archive put back, a log chunk altered in the API's database instead.
    s3.put_object(Bucket=BUCKET, Key=key, Body=original)
    assert audit_job(market, job.job_id, results=stored).ok
    with sqlite3.connect(tmp_path / "results.db") as db:
        (ct,) = db.execute(
            "SELECT ciphertext FROM log_chunks WHERE job_id = ? AND seq = 0", (job.job_id,)
        ).fetchone()
        db.execute(
            "UPDATE log_chunks SET ciphertext = ? WHERE job_id = ? AND seq = 0",
            (bytes([ct[0] ^ 1]) + ct[1:], job.job_id),
        )
    audited = audit_job(market, job.job_id, results=stored)
    assert not audited.ok
    assert audited.results_check is not None and not audited.results_check.ok
    differences = audited.results_check.differences
    assert differences[0].startswith("log chunk seq 0: its stored bytes hash to")
    assert "recorded when the API accepted it" in differences[0]
    assert any("does not follow the chunk before it" in d for d in differences)
    assert audited.to_json()["results_check"]["ok"] is False
