"""Errors of the chain layer, and the contract's custom errors decoded into words."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from eth_abi import decode
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address

from metascheduler import billing
from metascheduler.chain.types import JobStatus, ProviderStatus
from metascheduler.errors import EXIT_UNREACHABLE, MetaschedulerError, UnreachableError


class ChainError(MetaschedulerError):
    """Something on the chain side failed; the message says what and what to do."""

    kind = "chain"


class RpcUnavailable(ChainError, UnreachableError):
    """The RPC endpoint did not answer (after retries)."""

    exit_code = EXIT_UNREACHABLE
    kind = "rpc-unavailable"


class RevertError(ChainError):
    """A call or transaction reverted with the contract's error `name`."""

    kind = "revert"

    def __init__(self, name: str, args: dict[str, Any], message: str, data: bytes = b""):
        super().__init__(message)
        self.name = name
        self.args_ = args
        self.data = data


def _states(mask: bytes) -> str:
    bits = int.from_bytes(mask, "big")
    return " or ".join(s.name for s in JobStatus if bits >> s.value & 1) or "none"


#: The roles of the contracts (OpenZeppelin AccessControl), by their bytes32 id.
_ROLES = {
    bytes(32): "admin role (DEFAULT_ADMIN_ROLE)",
    keccak(b"MINTER_ROLE"): "minter role (MINTER_ROLE)",
}


def _role(role: bytes) -> str:
    return _ROLES.get(bytes(role), f"role 0x{bytes(role).hex()}")


def _c(units: int) -> str:
    return f"{billing.from_units(units)} credits"


# One sentence per error: what failed, with which input, and what to do.
_WORDS: dict[str, Callable[[dict[str, Any]], str]] = {
    "JobNotFound": lambda a: (
        f"job {a['jobId']} does not exist: check the id (`metascheduler job list`)"
    ),
    "JobUnexpectedStatus": lambda a: (
        f"job {a['jobId']} is {JobStatus(a['current']).name}, "
        f"but this needs it {_states(a['expectedStates'])}"
    ),
    "JobNotCustomer": lambda a: (
        f"job {a['jobId']} belongs to {a['customer']}, not to {a['caller']}: "
        "only its customer may do this"
    ),
    "JobNotAssignedProvider": lambda a: (
        f"job {a['jobId']} is placed on {a['provider']}, not on {a['caller']}"
    ),
    "JobTermsMismatch": lambda a: (
        f"the terms given for job {a['jobId']} do not match the ones it was requested under "
        f"(tag {a['expected'].hex()}, given {a['given'].hex()})"
    ),
    "JobPriceAboveMax": lambda a: (
        f"provider {a['provider']} charges {_c(a['price'])}/min for job {a['jobId']}, "
        f"above its max price of {_c(a['maxPrice'])}/min"
    ),
    "JobPriceAboveQuote": lambda a: (
        f"provider {a['provider']} now charges {_c(a['price'])}/min for job {a['jobId']}, "
        f"above the {_c(a['quotedPrice'])}/min it was quoted at: place it again at the new price"
    ),
    "JobDoesNotFit": lambda a: f"job {a['jobId']} needs more than provider {a['provider']} has",
    "JobStillFunded": lambda a: (
        f"job {a['jobId']} still has credits until t={a['fundedUntil']} "
        f"({a['fundedUntil'] - a['nowTime']} s from now): it cannot be expired yet"
    ),
    "JobEscrowSpent": lambda a: (
        f"job {a['jobId']} cannot be topped up: its escrow ran out at t={a['fundedUntil']}, so "
        "it will end OUT_OF_CREDITS and a top-up would pay for less than it ran; submit a new "
        "job (`metascheduler job submit`)"
    ),
    "JobTimeoutNotReached": lambda a: (
        f"job {a['jobId']}'s placement times out at t={a['deadline']} "
        f"({a['deadline'] - a['nowTime']} s from now): it cannot be reclaimed yet"
    ),
    "JobInvalidResources": lambda a: (
        f"a job needs at least one CPU (got cpus={a['cpus']}, gpus={a['gpus']}, "
        f"mem={a['memMb']} MB): fix the spec's resources"
    ),
    "JobInvalidSpecLength": lambda a: (
        f"the job spec is {a['length']} bytes; it must be 1 to {a['max']} bytes"
    ),
    "JobInvalidAmount": lambda a: (
        f"amount {a['amount']} units is zero or above the limit of {a['max']} units"
    ),
    "MarketNotOracle": lambda a: f"{a['caller']} is not the oracle ({a['oracle']})",
    "MarketRequestsPaused": lambda a: "new job requests are paused by the admin: try later",
    "MarketInsufficientBalance": lambda a: (
        f"{a['account']} has {_c(a['balance'])} in the market but needs {_c(a['needed'])}: "
        f"deposit {_c(a['needed'] - a['balance'])} more (`metascheduler credits deposit`)"
    ),
    "MarketZeroAmount": lambda a: "the amount must be above zero",
    "MarketFeeTooHigh": lambda a: f"fee {a['bps']} bps is above the maximum of {a['max']} bps",
    "MarketRequestFeeTooHigh": lambda a: (
        f"a request fee of {_c(a['fee'])} is above the maximum of {_c(a['max'])}"
    ),
    "MarketTooManyRuleChanges": lambda a: (
        "the fee and timeouts were changed 65,535 times: deploy a new market to change them again"
    ),
    "ProviderNotApproved": lambda a: (
        f"provider {a['provider']} is {ProviderStatus(a['status']).name}, not APPROVED: "
        "ask the admin to approve it"
    ),
    "ProviderBanned": lambda a: (
        f"provider {a['provider']} is banned: it can neither register nor accept a job (it may "
        "still start and complete the jobs it accepted before the ban)"
    ),
    "ProviderInvalidHardware": lambda a: "hardware must declare at least one node and one CPU",
    "ProviderNotFound": lambda a: (
        f"provider {a['provider']} has no record in the standing this needs (approving needs "
        "REGISTERED, banning REGISTERED or APPROVED, removing any but BANNED): see "
        f"`metascheduler provider status {a['provider']}`"
    ),
    "AccessControlUnauthorizedAccount": lambda a: (
        f"{a['account']} lacks the {_role(a['neededRole'])} this call needs: send it with the "
        "key of an account that holds it"
    ),
    "ERC20InsufficientBalance": lambda a: (
        f"wallet {a['sender']} holds {_c(a['balance'])} credits but needs {_c(a['needed'])}"
    ),
    "ERC20InsufficientAllowance": lambda a: (
        f"allowance of {a['spender']} is {_c(a['allowance'])}, needs {_c(a['needed'])}: "
        "approve first"
    ),
    "CreditFaucetDisabled": lambda a: (
        f"the faucet works on local devnets only (this chain id is {a['chainId']})"
    ),
    # OpenZeppelin's, inherited by the contracts: reached by calling them directly, or by a
    # token transfer or permit gone wrong.
    "AccessControlBadConfirmation": lambda a: (
        "renouncing a role needs the caller's own address as confirmation"
    ),
    "SafeERC20FailedOperation": lambda a: (
        f"the credit token {a['token']} refused the transfer: check the token's address"
    ),
    "ERC20InvalidApprover": lambda a: f"{a['approver']} cannot approve spending (zero address)",
    "ERC20InvalidReceiver": lambda a: f"credits cannot be sent to {a['receiver']} (zero address)",
    "ERC20InvalidSender": lambda a: f"credits cannot be sent from {a['sender']} (zero address)",
    "ERC20InvalidSpender": lambda a: f"{a['spender']} cannot be approved (zero address)",
    "ERC2612ExpiredSignature": lambda a: (
        f"the permit expired at t={a['deadline']}: sign a new one with a later deadline"
    ),
    "ERC2612InvalidSigner": lambda a: (
        f"the permit was signed by {a['signer']}, not by the owner {a['owner']}: sign it with "
        "the owner's key"
    ),
    "InvalidAccountNonce": lambda a: (
        f"the permit's nonce is stale: {a['account']}'s nonce is now {a['currentNonce']}; "
        "sign a new permit"
    ),
    "ECDSAInvalidSignature": lambda a: "the signature is invalid: sign again",
    "ECDSAInvalidSignatureLength": lambda a: (
        f"the signature is {a['length']} bytes, not 65: sign again"
    ),
    "ECDSAInvalidSignatureS": lambda a: "the signature is malleable (high s): sign again",
    "InvalidShortString": lambda a: "a short string in the token's metadata is invalid",
    "StringTooLong": lambda a: f"the string is too long for a short string: {a['str'][:40]!r}",
}


class ErrorDecoder:
    """Turns revert data into a RevertError, using the custom errors of the given ABIs."""

    def __init__(self, abis: Iterable[list[dict[str, Any]]]):
        self._errors: dict[bytes, tuple[str, list[str], list[str]]] = {}
        for abi in abis:
            for item in abi:
                if item.get("type") != "error":
                    continue
                types = [_abi_type(i) for i in item["inputs"]]
                names = [i["name"] for i in item["inputs"]]
                sig = f"{item['name']}({','.join(types)})"
                self._errors[function_signature_to_4byte_selector(sig)] = (
                    item["name"],
                    types,
                    names,
                )

    def decode(self, data: bytes, context: str = "") -> RevertError:
        prefix = f"{context}: " if context else ""
        if len(data) < 4:
            return RevertError("Unknown", {}, f"{prefix}reverted without a reason", data)
        selector, body = data[:4], data[4:]
        if selector == function_signature_to_4byte_selector("Error(string)"):
            (reason,) = decode(["string"], body)
            return RevertError("Error", {"reason": reason}, f"{prefix}{reason}", data)
        if selector == function_signature_to_4byte_selector("Panic(uint256)"):
            (code,) = decode(["uint256"], body)
            return RevertError("Panic", {"code": code}, f"{prefix}panic 0x{code:x}", data)
        known = self._errors.get(selector)
        if known is None:
            return RevertError(
                "Unknown", {}, f"{prefix}reverted with unknown error 0x{data.hex()}", data
            )
        name, types, names = known
        # Addresses as users see them elsewhere (checksummed), not as eth_abi decodes them.
        values = [
            to_checksum_address(v) if t == "address" else v
            for t, v in zip(types, decode(types, body), strict=True)
        ]
        args = dict(zip(names, values, strict=True))
        words = _WORDS.get(name)
        text = words(args) if words else f"{name}({', '.join(f'{k}={v}' for k, v in args.items())})"
        return RevertError(name, args, f"{prefix}{text}", data)


def _abi_type(item: dict[str, Any]) -> str:
    t: str = item["type"]
    if t.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in item["components"])
        return f"({inner}){t[5:]}"
    return t
