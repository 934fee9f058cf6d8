"""The API over a real store, filled by the real ingester from real chain activity on anvil.

`build_world` (also used by test_api_schema.py and test_dashboard_browser.py) deploys a market
on a private anvil, registers providers and runs jobs into every kind of end, ingests the logs,
and returns a migrated SQLite file; each test opens a copy, so heartbeat state never leaks.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from sqlalchemy import update

from metascheduler.api import ApiSettings, create_app
from metascheduler.chain import JobStatus, Market, Terms
from metascheduler.chain.deployment import Deployment
from metascheduler.chain.rpc import connect
from metascheduler.chain.types import Hardware, Prices
from metascheduler.devnet.anvil import Anvil, dev_account, mine_after, start_anvil
from metascheduler.heartbeat import Heartbeat, sign
from metascheduler.spec import JobSpec, Resources, encode_spec
from metascheduler.store import Ingester, Job, make_engine, session_factory, upgrade_to_head
from tests.integration.store_db import BACKENDS, fresh_url

pytestmark = pytest.mark.chain

CHAIN_ID = 31337
PRICE = 6_000  # units per CPU-minute: 100 units per CPU-second
ESCROW = 5_000_000


@dataclass
class World:
    anvil: Anvil
    deployment: Deployment
    db_file: Path
    alpha: LocalAccount  # approved provider, runs most jobs
    beta: LocalAccount  # approved provider, refuses a job, holds a placement
    banned: LocalAccount  # registered, approved, then banned
    newcomer: LocalAccount  # registered, not yet approved
    stranger: LocalAccount  # never registered
    alice: LocalAccount  # customer
    bob: LocalAccount  # customer
    #: The job id of each demo job, by the state it ends the world in.
    jobs: dict[str, int] = field(default_factory=dict)

    @property
    def market(self) -> str:
        return self.deployment.market

    def settings(self, database_url: str, **kw: Any) -> ApiSettings:
        fields: dict[str, Any] = {
            "database_url": database_url,
            "rpc_url": self.anvil.url,
            "market_address": self.market,
            "chain_id": CHAIN_ID,
        }
        return ApiSettings(**{**fields, **kw})


def _spec(name: str, cpus: int, labels: list[str] | None = None) -> tuple[bytes, JobSpec]:
    spec = JobSpec(
        name=name,
        resources=Resources(tasks=1, cpus_per_task=cpus, mem_per_cpu_mb=256),
        command=["sleep", "1"],
        labels=labels or [],
    )
    return encode_spec(spec), spec


def _request(m: Market, name: str, cpus: int, escrow: int = ESCROW) -> tuple[int, Terms]:
    raw, spec = _spec(name, cpus, ["x86"])
    max_price = 10 * PRICE * cpus
    jid = m.request_job(
        raw, spec.cpus, spec.gpus, spec.mem_mb, max_price_per_minute=max_price, escrow=escrow
    )
    return jid, Terms.for_spec(raw, spec.cpus, spec.gpus, spec.mem_mb, max_price)


def _advance(m: Market, seconds: int) -> None:
    mine_after(m.w3, seconds)


def build_world(anvil: Anvil, db_file: Path) -> World:
    """Real chain activity: two approved providers and a banned one; jobs FINISHED, FAILED,
    CANCELLED, OUT_OF_CREDITS, RUNNING, META_SCHEDULED, and PENDING after a refusal and a
    top-up. Then the real ingester fills the store at `db_file`."""
    admin, oracle_acct = dev_account(0), dev_account(1)
    w = World(
        anvil=anvil,
        deployment=Market.deploy(
            connect(anvil.url), admin, oracle=oracle_acct.address, accept_timeout_s=60
        ),
        db_file=db_file,
        alpha=dev_account(2),
        beta=dev_account(3),
        banned=dev_account(4),
        stranger=dev_account(5),
        alice=dev_account(6),
        bob=dev_account(7),
        newcomer=dev_account(8),
    )

    def market(acct: LocalAccount) -> Market:
        return Market(connect(anvil.url), w.market, acct)

    adm, oracle = market(admin), market(oracle_acct)
    alpha, beta, banned = market(w.alpha), market(w.beta), market(w.banned)
    for m, cpus, labels in ((alpha, 16, ["x86", "slurm"]), (beta, 8, ["x86"]), (banned, 4, [])):
        m.register_provider(Hardware(1, cpus, 0, 65_536), Prices(PRICE, 0, 0), labels)
        adm.approve_provider(m.sender_or_fail().address)
    adm.ban_provider(w.banned.address)
    market(w.newcomer).register_provider(Hardware(1, 2, 0, 4096), Prices(PRICE, 0, 0), [])
    for cust in (w.alice, w.bob):
        adm.mint(cust.address, 100 * ESCROW)
        c = market(cust)
        c.approve(100 * ESCROW)
        c.deposit(100 * ESCROW)
    alice, bob = market(w.alice), market(w.bob)

    def run_on_alpha(cust: Market, name: str, cpus: int, escrow: int = ESCROW) -> int:
        jid, terms = _request(cust, name, cpus, escrow)
        oracle.place_job(jid, w.alpha.address, terms)
        alpha.accept_job(jid)
        alpha.start_job(jid)
        return jid

    w.jobs["FINISHED"] = run_on_alpha(alice, "finishes", 2)
    _advance(alice, 30)
    alpha.complete_job(w.jobs["FINISHED"], 0)

    w.jobs["FAILED"] = run_on_alpha(bob, "fails", 1)
    _advance(alice, 10)
    alpha.complete_job(w.jobs["FAILED"], 3)

    w.jobs["CANCELLED"], _ = _request(alice, "cancelled", 1)
    alice.cancel_job(w.jobs["CANCELLED"])

    # 600 units at 6000 units/min: funded for 6 s of running.
    w.jobs["OUT_OF_CREDITS"] = run_on_alpha(bob, "runs dry", 1, escrow=600)
    _advance(alice, 10)
    oracle.expire_jobs([w.jobs["OUT_OF_CREDITS"]])

    w.jobs["RUNNING"] = run_on_alpha(alice, "keeps running", 4)

    w.jobs["PENDING"], terms = _request(bob, "refused then topped up", 2)
    oracle.place_job(w.jobs["PENDING"], w.beta.address, terms)
    beta.refuse_job(w.jobs["PENDING"], "no x86 nodes free")
    bob.top_up(w.jobs["PENDING"], 1_000_000)

    w.jobs["META_SCHEDULED"], terms = _request(alice, "placed", 3)
    oracle.place_job(w.jobs["META_SCHEDULED"], w.beta.address, terms)

    fill_store(w, f"sqlite:///{db_file}")
    return w


def fill_store(w: World, database_url: str) -> None:
    """The real ingester reads the world's chain into an empty store at `database_url`."""
    upgrade_to_head(database_url)
    engine = make_engine(database_url)
    sessions = session_factory(engine)
    ingester = Ingester(
        connect(w.anvil.url),
        w.market,
        sessions,
        confirmations=0,
        start_block=w.deployment.block,
    )
    assert ingester.run() > 0
    # The oracle's mark on a job it cannot place (the oracle is the writer of this column).
    with sessions() as s:
        s.execute(
            update(Job)
            .where(Job.job_id == w.jobs["PENDING"])
            .values(unplaceable_reason="no approved provider has the labels x86,gpu")
        )
        s.commit()
    engine.dispose()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A private anvil (its clock is moved forward; other tests share the session's anvil)."""
    with start_anvil(accounts=10) as chain:
        yield build_world(chain, tmp_path_factory.mktemp("world") / "store.db")


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, world: World, tmp_path: Path) -> Iterator[str]:
    """A private store of the world for one test: a copy of the SQLite file, or a PostgreSQL
    schema the ingester fills afresh (the API runs on either, as the oracle does)."""
    if request.param == "sqlite":
        dst = tmp_path / "store.db"
        shutil.copy(world.db_file, dst)
        yield f"sqlite:///{dst}"
        return
    for url in fresh_url(request.param, tmp_path):
        fill_store(world, url)
        yield url


@pytest.fixture
def client(world: World, store_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(world.settings(store_url))) as c:
        yield c


# ---------------------------------------------------------------------- reads


def test_jobs_lists_every_job_newest_first_with_its_state(client: TestClient, world: World) -> None:
    r = client.get("/api/jobs")
    assert r.status_code == 200
    page = r.json()
    assert page["total"] == len(world.jobs)
    ids = [j["job_id"] for j in page["items"]]
    assert ids == sorted(world.jobs.values(), reverse=True)
    by_id = {j["job_id"]: j for j in page["items"]}
    for state, jid in world.jobs.items():
        assert by_id[jid]["status"] == state
        assert by_id[jid]["status_code"] == JobStatus[state].value


@pytest.mark.parametrize("value", ["RUNNING", "3"])
def test_jobs_filter_by_status_name_or_number(client: TestClient, world: World, value: str) -> None:
    page = client.get("/api/jobs", params={"status": value}).json()
    assert [j["job_id"] for j in page["items"]] == [world.jobs["RUNNING"]]
    assert page["total"] == 1


def test_jobs_filter_by_several_states_and_customer(client: TestClient, world: World) -> None:
    params: Any = {"status": ["FAILED", "OUT_OF_CREDITS", "PENDING"], "customer": world.bob.address}
    page = client.get("/api/jobs", params=params).json()
    expected = {world.jobs[s] for s in ("FAILED", "OUT_OF_CREDITS", "PENDING")}
    assert {j["job_id"] for j in page["items"]} == expected
    # Addresses are matched whatever their case.
    lower = client.get("/api/jobs", params={**params, "customer": world.bob.address.lower()})
    assert lower.json()["total"] == 3


def test_jobs_filter_by_provider(client: TestClient, world: World) -> None:
    page = client.get("/api/jobs", params={"provider": world.beta.address}).json()
    # The refused job went back to PENDING and left beta.
    assert [j["job_id"] for j in page["items"]] == [world.jobs["META_SCHEDULED"]]


@pytest.mark.parametrize(
    "params",
    [
        {"status": "SLEEPING"},
        {"status": "8"},
        {"status": "running"},
        {"customer": "0x1234"},
        {"provider": "alice"},
        {"limit": 0},
        {"limit": 501},
        {"offset": -1},
        {"cursor": 0},
    ],
)
def test_jobs_bad_filters_are_422(client: TestClient, params: dict[str, Any]) -> None:
    r = client.get("/api/jobs", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]


def test_jobs_offset_pages_cover_everything_once(client: TestClient, world: World) -> None:
    seen: list[int] = []
    for offset in range(0, len(world.jobs), 3):
        page = client.get("/api/jobs", params={"limit": 3, "offset": offset}).json()
        assert page["total"] == len(world.jobs)
        seen += [j["job_id"] for j in page["items"]]
    assert seen == sorted(world.jobs.values(), reverse=True)


def test_jobs_cursor_pages_cover_everything_once(client: TestClient, world: World) -> None:
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = client.get("/api/jobs", params=params).json()
        seen += [j["job_id"] for j in page["items"]]
        if page["next_cursor"] is None:
            break
        assert page["next_cursor"] == seen[-1]
        params["cursor"] = page["next_cursor"]
    assert seen == sorted(world.jobs.values(), reverse=True)


def test_job_detail_has_its_timeline_with_credits(client: TestClient, world: World) -> None:
    jid = world.jobs["FINISHED"]
    j = client.get(f"/api/jobs/{jid}").json()
    assert j["status"] == "FINISHED" and j["exit_code"] == 0
    events = [(t["event"], t["from_status"], t["to_status"]) for t in j["timeline"]]
    assert events == [
        ("JobRequested", None, "PENDING"),
        ("JobPlaced", "PENDING", "META_SCHEDULED"),
        ("JobStatusChanged", "META_SCHEDULED", "SCHEDULED"),
        ("JobStatusChanged", "SCHEDULED", "RUNNING"),
        ("JobEnded", "RUNNING", "FINISHED"),
    ]
    requested, ended = j["timeline"][0], j["timeline"][-1]
    assert requested["credits"] == {"escrowed": ESCROW}
    moved = ended["credits"]
    assert moved["paid"] > 0  # about 30 s at 2 CPUs
    assert moved["paid"] + moved["fee"] + moved["refunded"] == ESCROW
    assert (j["paid"], j["fee"], j["refunded"]) == (moved["paid"], moved["fee"], moved["refunded"])
    assert [t["block_number"] for t in j["timeline"]] == sorted(
        t["block_number"] for t in j["timeline"]
    )
    assert '"name":"finishes"' in j["spec"]


def test_job_detail_tells_refusal_and_top_up(client: TestClient, world: World) -> None:
    j = client.get(f"/api/jobs/{world.jobs['PENDING']}").json()
    names = [t["event"] for t in j["timeline"]]
    assert names == ["JobRequested", "JobPlaced", "JobReturned", "JobToppedUp"]
    assert "no x86 nodes free" in j["timeline"][2]["detail"]
    assert j["timeline"][3]["credits"] == {"topped_up": 1_000_000}
    assert j["escrow"] == ESCROW + 1_000_000
    assert j["returns"] == 1 and j["last_reason"] == "no x86 nodes free"


def test_unknown_job_is_404_with_a_reason(client: TestClient) -> None:
    r = client.get("/api/jobs/999999")
    assert r.status_code == 404
    assert "job 999999 is not in the store" in r.json()["detail"]
    assert client.get("/api/jobs/0").status_code == 422


def test_account_statement_matches_the_audit_from_the_chain(
    client: TestClient, world: World
) -> None:
    from metascheduler.audit import audit_account

    market = Market(connect(world.anvil.url), world.market)
    for who in (world.alice, world.bob, world.alpha, world.beta):
        got = client.get(f"/api/accounts/{who.address.lower()}")
        assert got.status_code == 200, got.text
        body = got.json()
        chain = audit_account(market, who.address)
        assert chain.ok
        assert body["account"] == who.address
        assert [
            (m["block_number"], m["tx_hash"], m["log_index"], m["kind"], m["job_id"], m["amount"])
            for m in body["movements"]
        ] == [(m.block, m.tx, m.log_index, m.kind, m.job_id, m.amount) for m in chain.movements]
        assert [m["block_time"] for m in body["movements"]] == [m.time for m in chain.movements]
        assert body["balance"] == chain.balance == market.balance_of(who.address)
        assert body["in_escrow"] == chain.in_escrow and body["totals"] == chain.totals()
    alice = client.get(f"/api/accounts/{world.alice.address}").json()
    assert alice["movements"][0]["kind"] == "deposit" and alice["in_escrow"] > 0  # live jobs
    alpha = client.get(f"/api/accounts/{world.alpha.address}").json()
    assert {m["kind"] for m in alpha["movements"]} == {"payment"}
    assert {m["job_id"] for m in alpha["movements"]} >= {world.jobs["FINISHED"]}


def test_account_statement_of_nobody_is_empty_and_of_garbage_is_422(
    client: TestClient, world: World
) -> None:
    nobody = client.get(f"/api/accounts/{world.stranger.address}").json()
    assert nobody == {
        "account": world.stranger.address,
        "balance": 0,
        "in_escrow": 0,
        "totals": {},
        "movements": [],
    }
    assert client.get("/api/accounts/0x1234").status_code == 422


def test_providers_show_capacity_prices_and_load(client: TestClient, world: World) -> None:
    r = client.get("/api/providers")
    assert r.status_code == 200
    by = {p["address"]: p for p in r.json()}
    assert set(by) == {
        world.alpha.address,
        world.beta.address,
        world.banned.address,
        world.newcomer.address,
    }
    assert by[world.newcomer.address]["status"] == "REGISTERED"
    alpha, beta = by[world.alpha.address], by[world.beta.address]
    assert alpha["status"] == "APPROVED" and by[world.banned.address]["status"] == "BANNED"
    assert alpha["hardware"]["cpus"] == 16 and alpha["prices"]["cpu"] == PRICE
    assert alpha["labels"] == ["x86", "slurm"]
    assert alpha["load"]["jobs_running"] == 1 and alpha["load"]["cpus_in_use"] == 4
    assert beta["load"] == {
        "jobs_placed": 1,
        "jobs_running": 0,
        "cpus_in_use": 0,
        "cpus_reserved": 3,
        "gpus_reserved": 0,
        "mem_mb_reserved": 768,
    }
    assert not alpha["alive"] and alpha["last_heartbeat_at"] is None


def test_stats_count_states_and_credits(client: TestClient, world: World) -> None:
    s = client.get("/api/stats").json()
    assert s["jobs_total"] == len(world.jobs)
    assert s["jobs_by_status"] == {st.name: (1 if st.name in world.jobs else 0) for st in JobStatus}
    assert s["jobs_by_state"] == s["jobs_by_status"]  # the earlier key, kept
    c = s["credits"]
    # Every ended job split its escrow; live jobs still hold theirs.
    ended_escrow = 3 * ESCROW + 600  # FINISHED, FAILED, CANCELLED + OUT_OF_CREDITS
    assert c["paid"] + c["fees"] + c["refunded"] == ended_escrow
    assert c["escrowed"] == 3 * ESCROW + 1_000_000  # RUNNING, META_SCHEDULED, PENDING (+top-up)
    assert c["spent"] == c["paid"] + c["fees"] and c["paid"] >= 600
    assert (s["providers_total"], s["providers_approved"], s["providers_alive"]) == (4, 2, 0)
    assert s["unplaceable"] == [
        {"job_id": world.jobs["PENDING"], "reason": "no approved provider has the labels x86,gpu"}
    ]


def test_health_reports_the_ingest_cursor_and_lag(client: TestClient, world: World) -> None:
    h = client.get("/api/health").json()
    head = connect(world.anvil.url).eth.block_number
    assert h["status"] == "ok" and h["store_reachable"]
    assert h["head_block"] == head and h["cursor_block"] == head and h["lag_blocks"] == 0
    assert h["cursor_block_time"] is not None


def test_health_is_degraded_without_the_chain(world: World, store_url: str) -> None:
    settings = world.settings(store_url, rpc_url="http://127.0.0.1:9", rpc_timeout_s=0.5)
    with TestClient(create_app(settings)) as c:
        h = c.get("/api/health").json()
    assert h["status"] == "degraded" and h["head_block"] is None and h["cursor_block"]


def test_health_is_503_when_the_store_is_unreachable(world: World, tmp_path: Path) -> None:
    # A file that is not a database: SQLite cannot open it.
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a SQLite database\n" * 100)
    settings = world.settings(f"sqlite:///{garbage}")
    with TestClient(create_app(settings)) as c:
        r = c.get("/api/health")
        assert r.status_code == 503
        assert r.json()["status"] == "down" and not r.json()["store_reachable"]
        assert c.get("/api/jobs").status_code == 503


# ---------------------------------------------------------------------- heartbeats


def beat(
    world: World,
    signer: LocalAccount,
    seq: int,
    *,
    provider: str | None = None,
    market: str | None = None,
    chain_id: int = CHAIN_ID,
    timestamp: float | None = None,
) -> dict[str, Any]:
    hb = Heartbeat(
        provider=provider or signer.address,
        market=market or world.market,
        chain_id=chain_id,
        seq=seq,
        timestamp=int(time.time() if timestamp is None else timestamp),
        free_cpus=12,
        free_gpus=0,
        free_mem_mb=60_000,
        running=[world.jobs["RUNNING"]],
        queued=[],
        backend="local",
    )
    if provider and provider != signer.address:
        # sign() refuses to sign for someone else: forge the body by hand.
        sig = signer.sign_message(encode_defunct(hb.message())).signature
        return {"heartbeat": asdict(hb), "signature": "0x" + bytes(sig).hex()}
    return sign(hb, signer)


def test_heartbeat_accepted_marks_the_provider_alive(client: TestClient, world: World) -> None:
    r = client.post("/api/heartbeats", json=beat(world, world.alpha, 1))
    assert r.status_code == 200, r.text
    assert r.json()["provider"] == world.alpha.address and r.json()["seq"] == 1
    alpha = next(
        p for p in client.get("/api/providers").json() if p["address"] == world.alpha.address
    )
    assert alpha["alive"] and alpha["last_heartbeat_seq"] == 1
    assert alpha["heartbeat"]["free_cpus"] == 12
    assert alpha["heartbeat"]["running"] == [world.jobs["RUNNING"]]
    assert client.get("/api/stats").json()["providers_alive"] == 1
    # The next seq is accepted too.
    assert client.post("/api/heartbeats", json=beat(world, world.alpha, 2)).status_code == 200


def test_heartbeat_from_a_provider_awaiting_approval_is_accepted(
    client: TestClient, world: World
) -> None:
    # An agent heartbeats while it waits for approval; the oracle places nothing on it anyway.
    r = client.post("/api/heartbeats", json=beat(world, world.newcomer, 1))
    assert r.status_code == 200, r.text


def test_heartbeat_liveness_expires_after_the_timeout(world: World, store_url: str) -> None:
    with TestClient(create_app(world.settings(store_url, heartbeat_timeout_s=1e-9))) as c:
        assert c.post("/api/heartbeats", json=beat(world, world.alpha, 1)).status_code == 200
        alpha = next(
            p for p in c.get("/api/providers").json() if p["address"] == world.alpha.address
        )
    assert not alpha["alive"] and alpha["last_heartbeat_seq"] == 1


def _rejected(client: TestClient, body: Any, status: int, words: str) -> None:
    r = client.post("/api/heartbeats", json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]


def test_heartbeat_forged_by_another_key_is_401(client: TestClient, world: World) -> None:
    body = beat(world, world.stranger, 1, provider=world.alpha.address)
    _rejected(client, body, 401, f"signed by {world.stranger.address}")


def test_heartbeat_tampered_after_signing_is_401(client: TestClient, world: World) -> None:
    body = beat(world, world.alpha, 1)
    body["heartbeat"]["free_cpus"] = 999
    _rejected(client, body, 401, "signed by")


def test_heartbeat_replayed_seq_is_409(client: TestClient, world: World) -> None:
    body = beat(world, world.alpha, 5)
    assert client.post("/api/heartbeats", json=body).status_code == 200
    _rejected(client, body, 409, "seq 5 is not after the last one (5)")
    _rejected(client, beat(world, world.alpha, 4), 409, "not after the last one")


def test_heartbeat_for_another_market_or_chain_is_409(client: TestClient, world: World) -> None:
    other = dev_account(9).address
    _rejected(client, beat(world, world.alpha, 1, market=other), 409, f"for market {other}")
    _rejected(client, beat(world, world.alpha, 1, chain_id=1), 409, "on chain 1")


@pytest.mark.parametrize("skew", [-3600, 3600])
def test_heartbeat_with_a_stale_or_future_timestamp_is_409(
    client: TestClient, world: World, skew: int
) -> None:
    _rejected(
        client,
        beat(world, world.alpha, 1, timestamp=time.time() + skew),
        409,
        "check the agent's clock",
    )


def test_heartbeat_from_an_unknown_provider_is_403(client: TestClient, world: World) -> None:
    _rejected(client, beat(world, world.stranger, 1), 403, "is not a provider of market")


def test_heartbeat_from_a_banned_provider_is_accepted(client: TestClient, world: World) -> None:
    """A ban stops new work, not the running jobs: their provider's heartbeats are still the
    evidence that it delivers them (the oracle bills a silent provider up to its last one)."""
    r = client.post("/api/heartbeats", json=beat(world, world.banned, 1))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.pop("signature"),
        lambda b: b["heartbeat"].update(seq="7"),
        lambda b: b["heartbeat"].update(seq=True),
        lambda b: b["heartbeat"].update(extra=1),
        lambda b: b["heartbeat"].update(provider="alpha"),
        lambda b: b.update(signature="0xzz"),
        lambda b: b["heartbeat"].update(seq=2**64),
    ],
)
def test_malformed_heartbeat_is_400(client: TestClient, world: World, mutate: Any) -> None:
    body = beat(world, world.alpha, 1)
    mutate(body)
    _rejected(client, body, 400, "malformed heartbeat")


def test_heartbeat_that_is_not_json_is_400(client: TestClient) -> None:
    r = client.post(
        "/api/heartbeats", content=b"hello", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and "malformed heartbeat" in r.json()["detail"]


def test_a_rejected_heartbeat_changes_nothing(client: TestClient, world: World) -> None:
    forged = beat(world, world.stranger, 50, provider=world.alpha.address)
    assert client.post("/api/heartbeats", json=forged).status_code == 401
    # The forged seq 50 was not recorded: seq 1 is still fresh.
    assert client.post("/api/heartbeats", json=beat(world, world.alpha, 1)).status_code == 200


# ---------------------------------------------------------------------- metrics, dashboard


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"metric {name} not found")


def test_metrics_expose_jobs_heartbeats_latency_and_lag(client: TestClient, world: World) -> None:
    client.post("/api/heartbeats", json=beat(world, world.alpha, 1))
    client.post("/api/heartbeats", json=beat(world, world.alpha, 1))
    client.post("/api/heartbeats", json=beat(world, world.stranger, 1))
    client.get("/api/jobs/1")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert _metric(text, 'metascheduler_jobs{state="RUNNING"}') == 1
    assert _metric(text, 'metascheduler_jobs{state="FINISHED"}') == 1
    assert _metric(text, "metascheduler_providers_alive") == 1
    assert _metric(text, "metascheduler_heartbeats_accepted_total") == 1
    assert _metric(text, 'metascheduler_heartbeats_rejected_total{reason="replayed_seq"}') == 1
    assert _metric(text, 'metascheduler_heartbeats_rejected_total{reason="unknown_provider"}') == 1
    assert _metric(text, "metascheduler_ingest_lag_blocks") == 0
    # Latency is labelled by route template, not by raw path.
    assert (
        'metascheduler_api_request_seconds_count{method="GET",route="/api/jobs/{job_id}",'
        'status="200"} 1.0' in text
    )


def test_dashboard_and_its_assets_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script src="/static/app.js"' in page.text
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "/api/jobs" in js.text
    assert client.get("/static/style.css").status_code == 200
    # Everything is local: no CDN (this machine has no internet).
    assert "http" not in page.text.replace("http-equiv", "")


def test_openapi_schema_documents_every_endpoint(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert set(paths) == {
        "/api/jobs",
        "/api/jobs/{job_id}",
        "/api/accounts/{address}",
        "/api/providers",
        "/api/stats",
        "/api/health",
        "/api/heartbeats",
        "/api/jobs/{job_id}/logs",
        "/api/jobs/{job_id}/logs/chunks",
        "/api/jobs/{job_id}/outputs",
        "/api/jobs/{job_id}/outputs/upload",
        "/api/jobs/{job_id}/outputs/complete",
        "/api/jobs/{job_id}/results",
    }
    assert set(paths["/api/heartbeats"]["post"]["responses"]) >= {"200", "400", "401", "403", "409"}
    assert "404" in paths["/api/jobs/{job_id}"]["get"]["responses"]
    assert paths["/api/jobs"]["get"]["description"]
    assert "422" in paths["/api/accounts/{address}"]["get"]["responses"]
