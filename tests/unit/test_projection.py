"""The events -> jobs/providers projection: pure, deterministic, order-driven."""

from __future__ import annotations

import sys

from metascheduler.chain.types import JobStatus, ProviderStatus
from metascheduler.store.codec import args_to_json
from metascheduler.store.projection import EventRecord, apply_job_event, new_job, project

CUST = "0x" + "11" * 20
PROV = "0x" + "22" * 20
SPEC = b'{"command":["true"],"labels":["gpu"],"name":"t","time_limit_minutes":5}'


def ev(name: str, block: int, idx: int, **args: object) -> EventRecord:
    return EventRecord(name, args_to_json(args), block, idx, 1_000 + block)


def lifecycle() -> list[EventRecord]:
    return [
        ev(
            "ProviderRegistered",
            1,
            0,
            provider=PROV,
            hardware=(1, 8, 1, 4096),
            prices=(10, 20, 30),
            labels=["gpu"],
        ),
        ev("ProviderStatusChanged", 1, 1, provider=PROV, **{"from": 1, "to": 2}),
        ev(
            "JobRequested",
            2,
            0,
            jobId=1,
            customer=CUST,
            escrow=2**60,
            maxPricePerMinute=500,
            cpus=2,
            gpus=1,
            memMb=1024,
            spec=SPEC,
        ),
        ev("JobPlaced", 3, 0, jobId=1, provider=PROV, pricePerMinute=80, **{"from": 0, "to": 1}),
        ev("JobReturned", 4, 0, jobId=1, provider=PROV, reason="busy", **{"from": 1, "to": 0}),
        ev("JobPlaced", 5, 0, jobId=1, provider=PROV, pricePerMinute=80, **{"from": 0, "to": 1}),
        ev("JobStatusChanged", 6, 0, jobId=1, **{"from": 1, "to": 2}),
        ev("JobStatusChanged", 7, 0, jobId=1, **{"from": 2, "to": 3}),
        ev("JobToppedUp", 7, 1, jobId=1, amount=5, escrow=2**60 + 5),
        ev(
            "JobEnded",
            9,
            0,
            jobId=1,
            paid=7,
            fee=1,
            refunded=2**60 - 3,
            exitCode=-1,
            **{"from": 3, "to": 7},
        ),
    ]


def test_lifecycle_projects_every_column() -> None:
    jobs, provs = project(lifecycle())
    j = jobs[1]
    assert j["status"] == JobStatus.OUT_OF_CREDITS
    assert (j["provider"], j["price_per_minute"], j["returns"], j["last_reason"]) == (
        PROV,
        80,
        1,
        "busy",
    )
    assert (j["placed_at"], j["accepted_at"], j["started_at"], j["ended_at"]) == (
        1005,
        1006,
        1007,
        1009,
    )
    assert (j["paid"], j["fee"], j["refunded"], j["exit_code"], j["escrow"]) == (
        7,
        1,
        2**60 - 3,
        None,
        0,
    )
    assert j["labels"] == ["gpu"] and j["time_limit_minutes"] == 5
    assert provs[PROV]["status"] == ProviderStatus.APPROVED
    assert (provs[PROV]["cpus"], provs[PROV]["gb_price"]) == (8, 30)


def test_big_ints_are_strings_in_json_and_exact_in_rows() -> None:
    rec = lifecycle()[2]
    assert rec.args["escrow"] == str(2**60)
    jobs, _ = project(lifecycle()[:3])
    assert jobs[1]["escrow"] == 2**60


def test_order_not_arrival_decides() -> None:
    events = lifecycle()
    assert project(reversed(events)) == project(events)


def test_unreadable_spec_wants_no_labels() -> None:
    bad = ev(
        "JobRequested",
        2,
        0,
        jobId=3,
        customer=CUST,
        escrow=1,
        maxPricePerMinute=1,
        cpus=1,
        gpus=0,
        memMb=1,
        spec=b"\xff not json",
    )
    row = apply_job_event(None, bad)
    assert row is not None and row["labels"] == [] and row["time_limit_minutes"] is None


def test_event_without_request_projects_nothing() -> None:
    assert apply_job_event(None, lifecycle()[3]) is None


def test_apply_does_not_mutate_its_input() -> None:
    first = apply_job_event(None, lifecycle()[2])
    assert first is not None
    snapshot = dict(first)
    apply_job_event(first, lifecycle()[3])
    assert first == snapshot


def test_a_deeply_nested_spec_is_ingested_under_the_default_recursion_limit() -> None:
    """A 2.4 kB spec of nested arrays overflows a recursive JSON decoder at Python's default
    limit (a dependency that raises the limit on import hides it): the job is still ingested,
    its spec kept raw and read as asking for no labels."""
    nested = b'{"command":["true"],"name":"deep","note":' + b"[" * 1_200 + b"]" * 1_200 + b"}"
    record = lifecycle()[2]
    record = EventRecord(
        record.name,
        {**record.args, "spec": args_to_json({"spec": nested})["spec"]},
        record.block_number,
        record.log_index,
        record.block_time,
    )
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1_000)
    try:
        row = new_job(record)
    finally:
        sys.setrecursionlimit(limit)
    assert row["job_id"] == 1 and row["labels"] == [] and row["spec"] == nested


def test_container_job_wants_a_provider_labelled_container() -> None:
    image = "http://files.example/i.tar#sha256=" + "ab" * 32
    spec = (
        b'{"command":["true"],"container":{"image":"' + image.encode() + b'"},'
        b'"labels":["gpu"],"name":"c","version":2}'
    )
    request = ev(
        "JobRequested",
        2,
        0,
        jobId=4,
        customer=CUST,
        escrow=1,
        maxPricePerMinute=1,
        cpus=1,
        gpus=0,
        memMb=1,
        spec=spec,
    )
    row = apply_job_event(None, request)
    assert row is not None and row["labels"] == ["container", "gpu"]
