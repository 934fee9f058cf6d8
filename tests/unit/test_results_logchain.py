"""Log chunks: sealed by the placed provider, refused when forged, replayed, reordered, cut, or
moved to another job or deployment; read back only with the customer's key."""

from __future__ import annotations

import dataclasses

import pytest
from eth_account import Account

from metascheduler.results.errors import ChunkRefused, ResultsError, Tampered
from metascheduler.results.keys import new_job_key, wrap
from metascheduler.results.logchain import (
    ZERO_DIGEST,
    Chunk,
    ChunkSealer,
    Deployment,
    LogReader,
    LogRecord,
    check_chunk,
)

PROVIDER = Account.create()
CUSTOMER = Account.create()
OTHER = Account.create()
DEP = Deployment(31337, "0x" + "ab" * 20)
JOB = 7


def customer_pub() -> bytes:
    from eth_keys import keys

    return keys.PrivateKey(CUSTOMER.key).public_key.to_bytes()


def sealer(account=PROVIDER, job_id: int = JOB, dep: Deployment = DEP) -> ChunkSealer:
    key = new_job_key()
    return ChunkSealer(account, dep, job_id, key, wrap(customer_pub(), key))


def reader(private_key: bytes = CUSTOMER.key) -> LogReader:
    return LogReader(bytes(private_key), DEP, JOB, PROVIDER.address)


def lines(*texts: str) -> list[LogRecord]:
    return [LogRecord(1000.0 + i, "stdout", t) for i, t in enumerate(texts)]


def test_chain_round_trips_in_order_with_exit_code() -> None:
    s = sealer()
    chunks = [
        s.seal([LogRecord(1.0, "stderr", "pulling image", agent=True)]),
        s.seal(lines("hello from the grid", "ünïcode ok")),
        s.seal([], final=True, exit_code=3),
    ]
    r = reader()
    got = [rec for c in chunks for rec in r.add(Chunk.from_wire(c.to_wire()))]
    assert [g.line for g in got] == ["pulling image", "hello from the grid", "ünïcode ok"]
    assert got[0].agent and not got[1].agent
    assert r.final and r.exit_code == 3
    assert r.head == chunks[-1].digest_hex()


def test_ciphertext_holds_no_plaintext() -> None:
    c = sealer().seal(lines("MARKER-plaintext-4242"))
    assert b"MARKER" not in str(c.to_wire()).encode()
    assert b"MARKER" not in c.ciphertext


def _check(c: Chunk, *, seq: int = 0, prev: str = ZERO_DIGEST, provider=PROVIDER.address) -> None:
    check_chunk(c, deployment=DEP, job_id=JOB, provider=provider, expected_seq=seq, prev=prev)


def test_chunk_signed_by_another_key_is_forged() -> None:
    c = sealer(account=OTHER).seal(lines("x"))
    with pytest.raises(ChunkRefused) as e:
        _check(c)
    assert e.value.reason == "forged"


def test_altered_ciphertext_or_header_is_forged() -> None:
    c = sealer().seal(lines("x"))
    flipped = bytes([c.ciphertext[0] ^ 1]) + c.ciphertext[1:]
    for bad in (
        dataclasses.replace(c, ciphertext=flipped),
        dataclasses.replace(c, header=dataclasses.replace(c.header, exit_code=0, final=True)),
    ):
        with pytest.raises(ChunkRefused) as e:
            _check(bad)
        assert e.value.reason == "forged"


def test_replayed_chunk_is_refused() -> None:
    s = sealer()
    first = s.seal(lines("a"))
    _check(first)
    with pytest.raises(ChunkRefused) as e:
        _check(first, seq=1, prev=first.digest_hex())
    assert e.value.reason == "replayed"


def test_reordered_and_skipped_chunks_are_refused() -> None:
    s = sealer()
    c0, c1, c2 = s.seal(lines("a")), s.seal(lines("b")), s.seal(lines("c"))
    with pytest.raises(ChunkRefused) as e:
        _check(c1)  # c1 before c0
    assert e.value.reason == "gap"
    with pytest.raises(ChunkRefused) as e:
        _check(c2, seq=1, prev=c0.digest_hex())  # c1 left out
    assert e.value.reason == "gap"
    # A chunk with the right number that does not link to the head (a fork of the chain).
    fork = sealer()
    fork.seq, fork.prev = 1, "0x" + "11" * 32
    with pytest.raises(ChunkRefused) as e:
        _check(fork.seal(lines("z")), seq=1, prev=c0.digest_hex())
    assert e.value.reason == "out_of_order"


def test_chunk_of_another_job_or_deployment_is_refused() -> None:
    with pytest.raises(ChunkRefused) as e:
        _check(sealer(job_id=JOB + 1).seal(lines("a")))
    assert e.value.reason == "wrong_job"
    with pytest.raises(ChunkRefused) as e:
        _check(sealer(dep=Deployment(1, DEP.market)).seal(lines("a")))
    assert e.value.reason == "wrong_deployment"


def test_reader_refuses_a_reordered_stream_and_lines_past_the_end() -> None:
    s = sealer()
    c0, c1 = s.seal(lines("a")), s.seal(lines("b"), final=True, exit_code=0)
    r = reader()
    with pytest.raises(ChunkRefused):
        r.add(c1)
    r.add(c0)
    r.add(c1)
    with pytest.raises(ChunkRefused):
        r.add(s.seal(lines("after the end")))


def test_another_wallet_cannot_read() -> None:
    c = sealer().seal(lines("secret"))
    with pytest.raises(ResultsError, match="encrypted to the customer's wallet"):
        reader(bytes(OTHER.key)).add(c)


def test_record_count_is_checked() -> None:
    s = sealer()
    c = s.seal(lines("a", "b"))
    # The provider itself lying about the count (re-signed) is caught after decryption.
    lying = dataclasses.replace(c.header, records=1)
    from eth_account.messages import encode_defunct

    from metascheduler.results.logchain import chunk_digest

    sig = PROVIDER.sign_message(encode_defunct(primitive=chunk_digest(lying, c.ciphertext)))
    with pytest.raises(Tampered):
        reader().add(Chunk(lying, c.ciphertext, bytes(sig.signature)))


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"header": {}, "ciphertext": "", "signature": ""},
        "not an object",
    ],
)
def test_malformed_wire_chunks_are_refused_in_words(body: object) -> None:
    with pytest.raises(ChunkRefused) as e:
        Chunk.from_wire(body)
    assert e.value.reason == "malformed"


def test_wire_chunk_with_bad_types_is_malformed() -> None:
    wire = sealer().seal(lines("a")).to_wire()
    for field, value in (("seq", -1), ("seq", "1"), ("final", 1), ("prev", "0x12")):
        bad = {**wire, "header": {**wire["header"], field: value}}
        with pytest.raises(ChunkRefused) as e:
            Chunk.from_wire(bad)
        assert e.value.reason == "malformed"
