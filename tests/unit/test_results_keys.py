"""The customer's public key from their transaction, key wrapping, and signed grants."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_keys import keys

from metascheduler.results import grant
from metascheduler.results.errors import ResultsError
from metascheduler.results.keys import (
    address_of,
    new_job_key,
    public_key_from_raw_transaction,
    unwrap,
    wrap,
)
from metascheduler.results.logchain import Deployment

CUSTOMER = Account.create()
OTHER = Account.create()
DEP = Deployment(31337, "0x" + "ef" * 20)


def _raw(tx: dict) -> bytes:
    return bytes(CUSTOMER.sign_transaction(tx).raw_transaction)


BASE = {"to": "0x" + "12" * 20, "value": 0, "gas": 100_000, "nonce": 3, "chainId": 31337}


@pytest.mark.parametrize(
    "tx",
    [
        {**BASE, "maxFeePerGas": 2 * 10**9, "maxPriorityFeePerGas": 10**9, "data": "0x1234"},
        {**BASE, "gasPrice": 10**9},
        {**BASE, "gasPrice": 10**9, "accessList": [], "type": 1},
    ],
    ids=["eip1559", "legacy-eip155", "eip2930"],
)
def test_public_key_is_recovered_from_the_transaction(tx: dict) -> None:
    pub = public_key_from_raw_transaction(_raw(tx), expected_sender=CUSTOMER.address)
    assert pub == keys.PrivateKey(CUSTOMER.key).public_key.to_bytes()
    assert address_of(pub) == CUSTOMER.address


def test_transaction_of_someone_else_is_refused() -> None:
    raw = _raw({**BASE, "gasPrice": 10**9})
    with pytest.raises(ResultsError, match="not by"):
        public_key_from_raw_transaction(raw, expected_sender=OTHER.address)


def test_garbage_is_refused_in_words() -> None:
    with pytest.raises(ResultsError, match="cannot recover"):
        public_key_from_raw_transaction(b"\x02\x01\x02")


def test_wrapped_key_opens_only_with_the_customer_key() -> None:
    key = new_job_key()
    wrapped = wrap(keys.PrivateKey(CUSTOMER.key).public_key.to_bytes(), key)
    assert key not in wrapped
    assert unwrap(bytes(CUSTOMER.key), wrapped) == key
    with pytest.raises(ResultsError, match="customer's wallet"):
        unwrap(bytes(OTHER.key), wrapped)


def test_grant_round_trip() -> None:
    value = grant.sign(CUSTOMER, grant.READ_LOGS, DEP, 5, now=1000)
    signer = grant.verify(value, action=grant.READ_LOGS, deployment=DEP, job_id=5, now=1100)
    assert signer == CUSTOMER.address


@pytest.mark.parametrize(
    ("kw", "status", "words"),
    [
        ({"job_id": 6}, 409, "not read-logs of job 6"),
        ({"action": grant.READ_OUTPUTS}, 409, "not read-outputs"),
        ({"deployment": Deployment(1, DEP.market)}, 409, "on chain 1"),
        ({"now": 1000 + grant.DEFAULT_TTL_S + 1}, 401, "expired"),
    ],
)
def test_grant_refusals(kw: dict, status: int, words: str) -> None:
    value = grant.sign(CUSTOMER, grant.READ_LOGS, DEP, 5, now=1000)
    args = {"action": grant.READ_LOGS, "deployment": DEP, "job_id": 5, "now": 1001, **kw}
    with pytest.raises(grant.GrantRefused) as e:
        grant.verify(value, **args)
    assert e.value.status == status
    assert words in e.value.detail


def test_grant_missing_or_garbled_is_401() -> None:
    for value in (None, "", "not-base64!", "eyJ4IjoxfQ=="):
        with pytest.raises(grant.GrantRefused) as e:
            grant.verify(value, action=grant.READ_LOGS, deployment=DEP, job_id=5)
        assert e.value.status == 401
