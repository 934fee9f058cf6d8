"""Whether the agent takes a job placed on it (``agent.admission``): each refusal says why in
words, and the time limit follows the escrow."""

from __future__ import annotations

import dataclasses

import pytest

from metascheduler.agent.admission import MAX_REFUSAL_REASON, Refusal, admit, time_limit_s
from metascheduler.agent.chainview import JobRequest
from metascheduler.chain.types import Hardware, JobStatus, JobView, Terms
from metascheduler.spec import JobSpec, encode_spec, parse_spec

HARDWARE = Hardware(nodes=1, cpus=8, gpus=1, mem_mb=16_384)
MAX_PRICE = 60_000
CUSTOMER, PROVIDER = "0x" + "aa" * 20, "0x" + "bb" * 20


def spec_bytes(cpus: int = 2, mem_per_cpu_mb: int = 512, labels: str = "[]") -> bytes:
    return encode_spec(
        parse_spec(
            f"name: t\nscript: 'true'\n"
            f"resources: {{cpus_per_task: {cpus}, mem_per_cpu_mb: {mem_per_cpu_mb}}}\n"
            f"labels: {labels}\n"
        )
    )


def request(
    spec: bytes, cpus: int = 2, gpus: int = 0, mem_mb: int = 1024, job_id: int = 3
) -> JobRequest:
    return JobRequest(job_id, CUSTOMER, 100_000, MAX_PRICE, cpus, gpus, mem_mb, spec, block=10)


def view_for(req: JobRequest, terms_of: JobRequest | None = None) -> JobView:
    """The chain's record of the job, with the terms tag of ``terms_of`` (default: ``req``)."""
    t = terms_of or req
    tag = Terms.for_spec(t.spec, t.cpus, t.gpus, t.mem_mb, t.max_price_per_minute).tag()
    return JobView(req.job_id, CUSTOMER, PROVIDER, JobStatus.META_SCHEDULED, 0, 1, 0, 100_000, tag)


def refusal(req: JobRequest, labels: list[str] | None = None, view: JobView | None = None) -> str:
    verdict = admit(req, view or view_for(req), HARDWARE, labels or [])
    assert isinstance(verdict, Refusal), f"admitted: {verdict}"
    return verdict.reason


def test_a_job_that_fits_is_admitted_with_its_spec() -> None:
    req = request(spec_bytes(labels="[gpu-free]"))
    verdict = admit(req, view_for(req), HARDWARE, ["gpu-free", "x86_64"])
    assert isinstance(verdict, JobSpec)
    assert (verdict.cpus, verdict.mem_mb, verdict.labels) == (2, 1024, ["gpu-free"])


def test_a_request_event_that_does_not_match_the_recorded_terms_is_refused() -> None:
    req = request(spec_bytes())
    other = request(spec_bytes(cpus=1), cpus=1, mem_mb=512)
    assert refusal(req, view=view_for(req, terms_of=other)) == (
        "the request event read for job 3 does not match its terms"
    )


def test_an_invalid_spec_is_refused_with_what_is_wrong() -> None:
    req = request(b'{"name":"t","bogus":1}')
    reason = refusal(req)
    assert reason.startswith("invalid job spec: ") and "bogus" in reason


def test_a_spec_asking_for_other_resources_than_paid_for_is_refused() -> None:
    req = request(spec_bytes(cpus=4), cpus=2, mem_mb=1024)
    assert refusal(req) == (
        "the spec asks for 4 CPUs, 0 GPUs, 2048 MB but the request pays for 2 CPUs, 0 GPUs, 1024 MB"
    )


def test_missing_labels_are_named_with_those_the_provider_has() -> None:
    req = request(spec_bytes(labels="[arm64, infiniband]"))
    assert refusal(req, labels=["x86_64"]) == (
        "needs labels this provider lacks: arm64, infiniband (it has: x86_64)"
    )
    assert refusal(req).endswith("(it has: none)")


def test_a_job_larger_than_the_provider_is_refused() -> None:
    req = request(spec_bytes(cpus=16, mem_per_cpu_mb=64), cpus=16, mem_mb=1024)
    assert refusal(req) == (
        "too big: asks for 16 CPUs, 0 GPUs, 1024 MB; this provider has 8 CPUs, 1 GPUs, 16384 MB"
    )


def test_a_long_reason_is_cut_to_what_the_chain_is_sent() -> None:
    long = Refusal("x" * (MAX_REFUSAL_REASON + 50))
    assert len(long.reason) == MAX_REFUSAL_REASON and long.reason.endswith("...")
    assert Refusal("short").reason == "short"


@pytest.mark.parametrize(
    ("escrow", "price", "grace", "lag", "cap", "want"),
    [
        (60_000, 60_000, 0, 0, 10_000, 60),  # one minute's price pays 60 s
        (60_000, 60_000, 30, 5, 10_000, 95),  # plus the grace and the start lag
        (60_000, 60_000, 30, 0, 70, 70),  # capped
        (0, 60_000, 0, 0, 10_000, 1),  # never below one second
        (10**12, 0, 0, 0, 3600, 3600),  # a free job runs until the cap
    ],
)
def test_the_time_limit_is_what_the_escrow_pays_for_plus_grace_and_lag_capped(
    escrow: int, price: int, grace: int, lag: int, cap: int, want: int
) -> None:
    assert (
        time_limit_s(escrow=escrow, price_per_minute=price, grace_s=grace, lag_s=lag, cap_s=cap)
        == want
    )


def test_an_escrow_that_pays_less_than_the_minimum_run_is_refused() -> None:
    # 1,000 units a minute: 100,000 units pay 6,000 s; 999 units pay 60 s (rounded up), 900 54 s.
    req = request(spec_bytes())
    view = view_for(req)
    priced = dataclasses.replace(view, price_per_minute=1_000)
    assert isinstance(admit(req, priced, HARDWARE, [], min_run_s=60), JobSpec)
    assert isinstance(
        admit(req, dataclasses.replace(priced, escrow=999), HARDWARE, [], 60), JobSpec
    )
    poor = admit(req, dataclasses.replace(priced, escrow=900), HARDWARE, [], min_run_s=60)
    assert poor == Refusal(
        "its escrow of 900 units pays 54 s at 1000 units/min, less than this provider's "
        "minimum run of 60 s: top it up"
    )
    # 0 takes any job, and a free job (price 0) is funded for ever.
    assert isinstance(admit(req, dataclasses.replace(priced, escrow=1), HARDWARE, [], 0), JobSpec)
    assert isinstance(admit(req, dataclasses.replace(view, escrow=1), HARDWARE, [], 60), JobSpec)
