"""Deploying a Credit token and a JobMarket to any EVM chain."""

from __future__ import annotations

from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3

from metascheduler.chain.artifacts import load_artifact
from metascheduler.chain.deployment import Deployment
from metascheduler.chain.errors import ChainError, ErrorDecoder
from metascheduler.chain.gas import DEPLOY_CREDIT_GAS, DEPLOY_MARKET_GAS
from metascheduler.chain.sender import TxSender


def deploy_contracts(
    w3: Web3,
    deployer: LocalAccount,
    *,
    oracle: str,
    accept_timeout_s: int = 120,
    start_timeout_s: int = 3600,
    admin: str | None = None,
    fee_bps: int = 0,
    request_fee: int = 0,
) -> Deployment:
    """Deploys a Credit token and a JobMarket. The admin (the deployer unless told) holds the
    market's admin role and the token's admin and minter roles; `oracle` the oracle's role.
    A fee or a request fee (in units) above zero is set at once (by the deployer, who must then
    be the admin)."""
    admin = admin or deployer.address
    credit_art = load_artifact("Credit")
    market_art = load_artifact("JobMarket")
    sender = TxSender(w3, deployer, ErrorDecoder([credit_art.abi, market_art.abi]))
    credit_c = w3.eth.contract(abi=credit_art.abi, bytecode=credit_art.bytecode)
    r = sender.transact(
        None,
        credit_c.constructor(admin).data_in_transaction,
        "deploying Credit",
        gas=DEPLOY_CREDIT_GAS,
    )
    credit_addr = Web3.to_checksum_address(str(r["contractAddress"]))
    market_c = w3.eth.contract(abi=market_art.abi, bytecode=market_art.bytecode)
    data = market_c.constructor(
        credit_addr, admin, oracle, accept_timeout_s, start_timeout_s
    ).data_in_transaction
    r = sender.transact(None, data, "deploying JobMarket", gas=DEPLOY_MARKET_GAS)
    market_addr = Web3.to_checksum_address(str(r["contractAddress"]))
    if fee_bps:
        fee_data = w3.eth.contract(abi=market_art.abi).encode_abi("setFee", args=[fee_bps])
        sender.transact(market_addr, fee_data, f"setting the fee to {fee_bps} bps")
    if request_fee:
        data = w3.eth.contract(abi=market_art.abi).encode_abi("setRequestFee", args=[request_fee])
        sender.transact(market_addr, data, f"setting the request fee to {request_fee} units")
    return Deployment(
        market=market_addr,
        credit=credit_addr,
        block=int(r["blockNumber"]),
        chain_id=sender.chain_id,
        admin=Web3.to_checksum_address(admin),
        oracle=Web3.to_checksum_address(oracle),
        market_code_hash=code_hash(w3, market_addr),
        credit_code_hash=code_hash(w3, credit_addr),
    )


def code_hash(w3: Web3, address: str) -> str:
    """keccak256 of the runtime code at `address` ("0x..." hex)."""
    code = bytes(w3.eth.get_code(Web3.to_checksum_address(address)))
    if not code:
        raise ChainError(f"no contract code at {address} after deploying it")
    return "0x" + keccak(code).hex()
