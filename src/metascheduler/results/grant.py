"""Signed requests to the API: who asks, for what, about which job, until when.

A grant is canonical JSON signed with EIP-191 by the asker's wallet, sent in the `X-MS-Grant`
header. It names the action (read the logs, read the outputs, upload the outputs), the deployment
(chain id and market) and the job, and expires: a grant seen by someone else is of no use on
another job, another deployment, or after a few minutes. The API then checks that the signer is
the job's customer (reads) or its placed provider (uploads).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from .logchain import Deployment

HEADER = "X-MS-Grant"
DOMAIN = "metascheduler grant v1\n"
#: A grant may not be valid for longer than this: a leaked one soon becomes useless.
MAX_TTL_S = 3600
DEFAULT_TTL_S = 300
READ_LOGS = "read-logs"
READ_OUTPUTS = "read-outputs"
PUT_OUTPUTS = "put-outputs"
ACTIONS = frozenset({READ_LOGS, READ_OUTPUTS, PUT_OUTPUTS})


class GrantRefused(Exception):
    """`status` is the HTTP code (401: no or bad signature or expired; 403: not this job's
    customer or provider; 409: another deployment or action), `detail` the words."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Grant:
    action: str
    chain_id: int
    market: str
    job_id: int
    expires: int

    def message(self) -> bytes:
        return (DOMAIN + json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))).encode()


def sign(
    account: LocalAccount,
    action: str,
    deployment: Deployment,
    job_id: int,
    *,
    ttl_s: int = DEFAULT_TTL_S,
    now: float | None = None,
) -> str:
    """The `X-MS-Grant` header value."""
    if action not in ACTIONS:
        raise ValueError(f"unknown grant action {action!r}")
    expires = int((time.time() if now is None else now) + min(ttl_s, MAX_TTL_S))
    g = Grant(action, deployment.chain_id, deployment.market, job_id, expires)
    sig = bytes(account.sign_message(encode_defunct(g.message())).signature)
    body = {"grant": asdict(g), "signature": "0x" + sig.hex()}
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode()


def verify(
    value: str | None,
    *,
    action: str,
    deployment: Deployment,
    job_id: int,
    now: float | None = None,
) -> str:
    """The signer's address, once the grant is well-formed, for this action, deployment and job,
    and neither expired nor valid for too long. Who the signer must be is the caller's check."""
    if not value:
        raise GrantRefused(
            401, f"this request needs a signed grant in the {HEADER} header (the SDK adds it)"
        )
    try:
        body: dict[str, Any] = json.loads(base64.urlsafe_b64decode(value.encode()))
        g = Grant(**body["grant"])
        signature = bytes.fromhex(str(body["signature"]).removeprefix("0x"))
        if not isinstance(g.expires, int) or not isinstance(g.job_id, int):
            raise ValueError("expires and job_id must be integers")
    except (KeyError, TypeError, ValueError) as exc:
        raise GrantRefused(401, f"malformed {HEADER} header: {exc}") from None
    if g.chain_id != deployment.chain_id or str(g.market).lower() != deployment.market.lower():
        raise GrantRefused(
            409,
            f"the grant is for market {g.market} on chain {g.chain_id}, but this API serves "
            f"{deployment.market} on chain {deployment.chain_id}",
        )
    if g.action != action or g.job_id != job_id:
        raise GrantRefused(
            409, f"the grant is for {g.action} of job {g.job_id}, not {action} of job {job_id}"
        )
    now = time.time() if now is None else now
    if g.expires < now:
        raise GrantRefused(401, f"the grant expired {now - g.expires:.0f} s ago: sign a new one")
    if g.expires > now + MAX_TTL_S + 60:
        raise GrantRefused(
            401, f"the grant is valid for more than {MAX_TTL_S} s: sign one that expires sooner"
        )
    try:
        return str(Account.recover_message(encode_defunct(g.message()), signature=signature))
    except Exception:
        raise GrantRefused(401, "the grant's signature is not a valid signature") from None
