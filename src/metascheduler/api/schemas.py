"""The API's response and request bodies: the OpenAPI schema is generated from these.

Credit amounts and prices are integer credit units (6 decimals: 1 credit = 1_000_000 units).
Times are unix seconds (block time for chain facts, this server's clock for heartbeats).
Addresses are checksummed 0x strings. A job status is given by name and by number.
"""

from __future__ import annotations

from typing import Annotated, Literal

from annotated_types import Ge, Le
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictStr,
)

#: Bound of integer inputs (job ids, heartbeat seqs, offsets): exact in every JSON reader and
#: schema tool (larger bounds turn into floats there), and within the store's BIGINT columns.
MAX_INT = 2**53 - 1

Address = Annotated[str, Field(description="0x-prefixed 20-byte address, checksummed")]
Units = Annotated[int, Field(ge=0, description="credit units (1 credit = 1_000_000 units)")]


class JobSummary(BaseModel):
    """A job as the chain's events tell it."""

    job_id: int = Field(ge=1, description="on-chain job id (ids start at 1)")
    customer: Address
    provider: Address | None = Field(description="provider the job is placed on, if any")
    status: str = Field(description="JobStatus name, e.g. RUNNING")
    status_code: int = Field(ge=0, le=7, description="JobStatus number, as in the contract")
    escrow: Units = Field(description="credits still escrowed (0 once the job ended)")
    max_price_per_minute: Units
    price_per_minute: Units | None = Field(description="price fixed at placement")
    cpus: int = Field(ge=0)
    gpus: int = Field(ge=0)
    mem_mb: int = Field(ge=0)
    labels: list[str] = Field(description="labels the job's spec asks for")
    requested_at: int
    placed_at: int | None
    started_at: int | None
    ended_at: int | None
    paid: Units | None = Field(description="credits paid to the provider (terminal jobs)")
    fee: Units | None = Field(description="platform fee taken (terminal jobs)")
    refunded: Units | None = Field(description="credits refunded to the customer (terminal jobs)")
    exit_code: int | None
    unplaceable_reason: str | None = Field(description="why the oracle cannot place it, if so")
    last_reason: str | None = Field(description="the last refusal or reclaim reason")


class TimelineEntry(BaseModel):
    """One event of a job, with the status change and the credits it moved."""

    block_number: int
    block_time: int
    tx_hash: str
    log_index: int
    event: str = Field(description="contract event name, e.g. JobPlaced")
    from_status: str | None = Field(description="status before, when the event changes it")
    to_status: str | None = Field(description="status after, when the event changes it")
    credits: dict[str, int] = Field(
        description="credit units moved, by kind: escrowed, topped_up, paid, fee, refunded"
    )
    detail: str = Field(description="the event in words")


class MovementOut(BaseModel):
    """One change of an account's market balance."""

    block_number: int
    block_time: int
    tx_hash: str
    log_index: int
    kind: str = Field(
        description="deposit, withdrawal, escrow, top-up, refund, or payment (to a provider)"
    )
    job_id: int | None
    amount: int = Field(description="credit units the balance gained (negative: it lost)")
    balance: int = Field(description="the balance after this movement, rebuilt from events")


class AccountStatement(BaseModel):
    """Every movement of one account's credits in the market, from the indexed events."""

    account: str
    balance: int = Field(description="the sum of the movements: the market balance they give")
    in_escrow: int = Field(description="escrow locked in the account's live jobs")
    totals: dict[str, int] = Field(description="the movements summed by kind (signed units)")
    movements: list[MovementOut]


class JobDetail(JobSummary):
    spec: str = Field(description="the job spec bytes as sent on chain (UTF-8, or 0x hex)")
    spec_hash: str
    time_limit_minutes: int | None
    returns: int = Field(ge=0, description="times the job went back to PENDING")
    timeline: list[TimelineEntry]


class JobPage(BaseModel):
    """A page of jobs, newest first."""

    items: list[JobSummary]
    total: int = Field(ge=0, description="jobs matching the filters, all pages together")
    limit: int
    offset: int
    next_cursor: int | None = Field(
        description="pass as `cursor` for the next page; null on the last page"
    )


class Hardware(BaseModel):
    nodes: int
    cpus: int
    gpus: int
    mem_mb: int


class Prices(BaseModel):
    """Credit units per minute of one CPU, one GPU, one GB of memory."""

    cpu: Units
    gpu: Units
    gb: Units


class Load(BaseModel):
    """What the grid has put on a provider (from the chain, not from its heartbeats)."""

    jobs_placed: int = Field(ge=0, description="jobs META_SCHEDULED or SCHEDULED on it")
    jobs_running: int = Field(ge=0)
    cpus_in_use: int = Field(ge=0, description="CPUs of its RUNNING jobs")
    cpus_reserved: int = Field(ge=0, description="CPUs of its placed and RUNNING jobs")
    gpus_reserved: int = Field(ge=0)
    mem_mb_reserved: int = Field(ge=0)


class ProviderOut(BaseModel):
    address: Address
    status: str = Field(description="ProviderStatus name: REGISTERED, APPROVED, BANNED, NONE")
    hardware: Hardware
    prices: Prices
    labels: list[str]
    alive: bool = Field(description="last heartbeat younger than the heartbeat timeout")
    last_heartbeat_at: int | None
    last_heartbeat_seq: int | None
    heartbeat: dict[str, object] | None = Field(description="the last verified heartbeat")
    load: Load


class Credits(BaseModel):
    escrowed: Units = Field(description="held in the escrow of live jobs")
    paid: Units = Field(description="paid to providers by ended jobs")
    fees: Units = Field(description="platform fees of ended jobs")
    refunded: Units = Field(description="refunded to customers by ended jobs")
    spent: Units = Field(description="paid + fees: what customers spent")


class Unplaceable(BaseModel):
    job_id: int
    reason: str


class Stats(BaseModel):
    jobs_total: int
    jobs_by_status: dict[str, int] = Field(description="every JobStatus name, with its count")
    jobs_by_state: dict[str, int] = Field(description="the same as jobs_by_status (earlier key)")
    credits: Credits
    providers_total: int
    providers_approved: int
    providers_alive: int
    unplaceable: list[Unplaceable] = Field(description="pending jobs the oracle cannot place")


class Health(BaseModel):
    status: Literal["ok", "degraded", "down"] = Field(
        description="ok; degraded: the chain head is unknown; down: the store is unreachable"
    )
    store_reachable: bool
    cursor_block: int | None = Field(description="last block ingested into the store")
    cursor_block_time: int | None
    head_block: int | None = Field(description="the chain's head, if the RPC answered")
    lag_blocks: int | None = Field(description="head_block - cursor_block")
    detail: str | None = None


def _integral(value: object) -> object:
    """JSON Schema counts 3.0 as an integer; it is one here too. Strings and bools stay wrong."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


#: A JSON integer within MAX_INT, taken strictly: a heartbeat's signature covers exact values.
HbInt = Annotated[int, Strict(), Ge(0), Le(MAX_INT), BeforeValidator(_integral)]


class HeartbeatIn(BaseModel):
    """A heartbeat as `metascheduler.heartbeat.Heartbeat` defines it; types are strict because
    the signature covers the exact JSON values."""

    model_config = ConfigDict(extra="forbid")

    provider: StrictStr = Field(pattern=r"^0x[0-9a-fA-F]{40}$")
    market: StrictStr = Field(pattern=r"^0x[0-9a-fA-F]{40}$")
    chain_id: HbInt
    seq: HbInt
    timestamp: HbInt
    free_cpus: HbInt
    free_gpus: HbInt
    free_mem_mb: HbInt
    running: list[HbInt] = Field(default_factory=list, max_length=100_000)
    queued: list[HbInt] = Field(default_factory=list, max_length=100_000)
    backend: StrictStr = Field(default="", max_length=64)


class HeartbeatBody(BaseModel):
    """What an agent POSTs: `metascheduler.heartbeat.sign(...)`."""

    model_config = ConfigDict(extra="forbid")

    heartbeat: HeartbeatIn
    signature: StrictStr = Field(
        pattern=r"^(0x)?[0-9a-fA-F]{130}$", description="65-byte EIP-191 signature, hex"
    )


class HeartbeatAccepted(BaseModel):
    provider: Address
    seq: int
    received_at: int


class Problem(BaseModel):
    """Every 4xx/5xx answer: `detail` says what was wrong and what to do."""

    detail: str


class ChunkHeaderIn(BaseModel):
    """A log chunk's header as `metascheduler.results.logchain.ChunkHeader` defines it; strict,
    because the provider's signature covers the exact JSON values."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    chain_id: HbInt
    market: StrictStr = Field(pattern=r"^0x[0-9a-fA-F]{40}$")
    job_id: HbInt
    seq: HbInt
    prev: StrictStr = Field(pattern=r"^0x[0-9a-f]{64}$")
    final: StrictBool
    exit_code: (
        Annotated[int, Strict(), Ge(-(2**31)), Le(2**31 - 1), BeforeValidator(_integral)] | None
    )
    records: HbInt
    wrapped_key: StrictStr = Field(pattern=r"^([0-9a-f]{2}){1,512}$")
    nonce: StrictStr = Field(pattern=r"^[0-9a-f]{24}$")


class ChunkBody(BaseModel):
    """What an agent POSTs: `metascheduler.results.logchain.Chunk.to_wire()`."""

    model_config = ConfigDict(extra="forbid")

    header: ChunkHeaderIn
    ciphertext: StrictStr = Field(
        pattern=r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
        description="AES-GCM ciphertext, base64",
    )
    signature: StrictStr = Field(
        pattern=r"^0x[0-9a-f]{130}$", description="65-byte EIP-191 signature, hex"
    )


class ChunkAccepted(BaseModel):
    job_id: int
    seq: int
    digest: str
    duplicate: bool = Field(description="already stored: acknowledged again, not stored twice")
