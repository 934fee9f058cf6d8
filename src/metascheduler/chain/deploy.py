"""Deploying a Credit token and a JobMarket."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account.signers.local import LocalAccount
from web3 import Web3

from metascheduler.chain.artifacts import load_artifact
from metascheduler.chain.errors import ErrorDecoder
from metascheduler.chain.gas import DEPLOY_CREDIT_GAS, DEPLOY_MARKET_GAS
from metascheduler.chain.sender import TxSender


@dataclass(frozen=True)
class Deployment:
    market: str
    credit: str
    block: int


def deploy_contracts(
    w3: Web3,
    deployer: LocalAccount,
    *,
    oracle: str,
    accept_timeout_s: int = 120,
    start_timeout_s: int = 3600,
    admin: str | None = None,
) -> Deployment:
    """Deploys a Credit token and a JobMarket; the deployer is the admin unless told."""
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
    credit_addr = str(r["contractAddress"])
    market_c = w3.eth.contract(abi=market_art.abi, bytecode=market_art.bytecode)
    data = market_c.constructor(
        credit_addr, admin, oracle, accept_timeout_s, start_timeout_s
    ).data_in_transaction
    r = sender.transact(None, data, "deploying JobMarket", gas=DEPLOY_MARKET_GAS)
    return Deployment(str(r["contractAddress"]), credit_addr, int(r["blockNumber"]))
