"""The oracle's fast placeJobs encoding equals web3's."""

from __future__ import annotations

from web3 import Web3

from metascheduler.chain.artifacts import load_artifact
from metascheduler.chain.types import Placement, Terms
from metascheduler.oracle.calldata import place_jobs


def test_place_jobs_calldata_equals_web3s() -> None:
    contract = Web3().eth.contract(
        address=Web3.to_checksum_address("0x" + "12" * 20), abi=load_artifact("JobMarket").abi
    )
    prov = Web3.to_checksum_address("0x" + "ab" * 20)
    items = [
        Placement(i, prov, Terms(bytes([i]) * 32, i, i % 3, 1024 * i, 10**6 + i), 4_800 + i)
        for i in range(1, 6)
    ]
    expected = contract.encode_abi(
        "placeJobs", args=[[(p.job_id, p.provider, p.terms.as_tuple(), p.quote()) for p in items]]
    )
    assert "0x" + place_jobs(items).hex() == expected
