"""The contract's custom errors decoded into words (``chain.errors.ErrorDecoder``), from revert
data encoded as the contracts' ABIs say."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from metascheduler.chain import load_artifact
from metascheduler.chain.errors import ErrorDecoder, RevertError
from metascheduler.chain.types import JobStatus, ProviderStatus

ABIS = [load_artifact("JobMarket").abi, load_artifact("Credit").abi]
DECODER = ErrorDecoder(ABIS)
ALICE, BOB = "0x" + "a1" * 20, "0x" + "b2" * 20
CREDIT = 10**6


def revert_data(signature: str, types: list[str], values: list[Any]) -> bytes:
    return function_signature_to_4byte_selector(signature) + encode(types, values)


def words(signature: str, types: list[str], values: list[Any], context: str = "") -> RevertError:
    return DECODER.decode(revert_data(signature, types, values), context)


def _error_signatures() -> list[str]:
    def t(i: dict[str, Any]) -> str:
        if i["type"].startswith("tuple"):
            return "(" + ",".join(t(c) for c in i["components"]) + ")" + i["type"][5:]
        return str(i["type"])

    return sorted(
        {
            f"{e['name']}({','.join(t(i) for i in e['inputs'])})"
            for abi in ABIS
            for e in abi
            if e.get("type") == "error"
        }
    )


@pytest.mark.parametrize("signature", _error_signatures())
def test_every_custom_error_of_the_contracts_reads_in_words(signature: str) -> None:
    """No error falls back to ``Name(arg=value)``: each has its sentence."""
    name, _, arglist = signature.partition("(")
    types = [a for a in arglist.rstrip(")").split(",") if a]
    samples = {
        "uint256": 5,
        "uint32": 1,
        "uint8": 1,
        "uint16": 1,
        "address": ALICE,
        "bytes16": b"\x01" * 16,
        "bytes32": b"\x00" * 31 + b"\x06",
        "int256": 1,
        "string": "a name",
    }
    err = words(signature, types, [samples[t] for t in types])
    assert err.name == name
    assert not str(err).startswith(f"{name}("), str(err)


def test_the_unexpected_status_names_the_status_found_and_those_allowed() -> None:
    mask = (1 << JobStatus.META_SCHEDULED) | (1 << JobStatus.SCHEDULED)
    err = words(
        "JobUnexpectedStatus(uint256,uint8,bytes32)",
        ["uint256", "uint8", "bytes32"],
        [7, JobStatus.CANCELLED, mask.to_bytes(32, "big")],
        context="refusing job 7",
    )
    assert (
        str(err)
        == "refusing job 7: job 7 is CANCELLED, but this needs it META_SCHEDULED or SCHEDULED"
    )
    assert err.args_ == {"jobId": 7, "current": 4, "expectedStates": mask.to_bytes(32, "big")}


def test_a_short_balance_says_how_much_more_to_deposit() -> None:
    err = words(
        "MarketInsufficientBalance(address,uint256,uint256)",
        ["address", "uint256", "uint256"],
        [ALICE, 2 * CREDIT, 5 * CREDIT],
    )
    assert "needs 5 credits" in str(err) and "deposit 3 credits more" in str(err)


def test_a_provider_not_approved_names_its_standing() -> None:
    err = words(
        "ProviderNotApproved(address,uint8)", ["address", "uint8"], [BOB, ProviderStatus.BANNED]
    )
    # Addresses in words are checksummed, as the CLI and the SDK show them everywhere else.
    bob = to_checksum_address(BOB)
    assert str(err) == f"provider {bob} is BANNED, not APPROVED: ask the admin to approve it"


def test_a_top_up_after_the_escrow_ran_out_says_the_job_will_end_and_to_submit_anew() -> None:
    err = words("JobEscrowSpent(uint256,uint256)", ["uint256", "uint256"], [7, 1_700_000_000])
    assert err.args_ == {"jobId": 7, "fundedUntil": 1_700_000_000}
    assert str(err) == (
        "job 7 cannot be topped up: its escrow ran out at t=1700000000, so it will end "
        "OUT_OF_CREDITS and a top-up would pay for less than it ran; submit a new job "
        "(`metascheduler job submit`)"
    )


def test_a_plain_revert_string_and_a_panic_are_read() -> None:
    err = words("Error(string)", ["string"], ["no can do"], context="sending")
    assert (err.name, str(err)) == ("Error", "sending: no can do")
    panic = words("Panic(uint256)", ["uint256"], [0x11])
    assert (panic.name, str(panic)) == ("Panic", "panic 0x11")


def test_unknown_and_empty_revert_data_say_so() -> None:
    unknown = DECODER.decode(b"\xde\xad\xbe\xef" + b"\x00" * 32)
    assert unknown.name == "Unknown" and "unknown error 0xdeadbeef" in str(unknown)
    empty = DECODER.decode(b"", "withdrawing")
    assert (empty.name, str(empty), empty.data) == (
        "Unknown",
        "withdrawing: reverted without a reason",
        b"",
    )


def test_the_raw_data_is_kept() -> None:
    data = revert_data("JobNotFound(uint256)", ["uint256"], [9])
    err = DECODER.decode(data)
    assert err.data == data and err.args_ == {"jobId": 9}
    assert str(err) == "job 9 does not exist: check the id (`metascheduler job list`)"
