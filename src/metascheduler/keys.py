"""Loading signing keys: from an encrypted keystore (eth-account), or a raw key from the
environment where the operator asks for it. Keys are never printed or logged; a well-known
development key is refused on a chain that is not a devnet."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from pydantic import SecretStr

from metascheduler.errors import InputError

DEVNET_CHAIN_IDS = frozenset({31337, 1337})
_DEV_MNEMONIC = "test test test test test test test test test test test junk"
_HEX = frozenset("0123456789abcdefABCDEF")


class KeyLoadError(InputError):
    """A key could not be loaded; the message says which source and what to do."""

    kind = "key"


@functools.cache  # 30 HD derivations take about a second; the set never changes
def _dev_addresses(n: int = 30) -> frozenset[str]:
    Account.enable_unaudited_hdwallet_features()
    return frozenset(
        Account.from_mnemonic(_DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}").address
        for i in range(n)
    )


def load_keystore(path: Path, password: SecretStr | str) -> LocalAccount:
    """Decrypts an eth-account (Web3 Secret Storage) keystore file."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise KeyLoadError(
            f"keystore {path} not found: create one with `metascheduler wallet create`"
        ) from None
    except json.JSONDecodeError as exc:
        raise KeyLoadError(f"keystore {path} is not valid JSON ({exc.msg})") from None
    pw = password.get_secret_value() if isinstance(password, SecretStr) else password
    try:
        key = Account.decrypt(data, pw)
    except ValueError:
        raise KeyLoadError(f"keystore {path}: wrong password (MAC mismatch)") from None
    acct: LocalAccount = Account.from_key(key)
    return acct


def save_keystore(account: LocalAccount, path: Path, password: str) -> Path:
    """Encrypts the key into a keystore file readable only by its owner."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = Account.encrypt(account.key, password)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(blob, f)
    return path


def account_from_secret(secret: SecretStr | str) -> LocalAccount:
    """A raw hex key (e.g. from an environment variable the operator named)."""
    raw = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    digits = raw.strip().removeprefix("0x") if isinstance(raw, str) else ""
    # Exactly 64 hex digits: eth-account left-pads a shorter string, so a key missing a digit
    # would load as another account instead of failing.
    if len(digits) != 64 or any(c not in _HEX for c in digits):
        # Never echo the value: it may be a real key with a typo.
        raise KeyLoadError("the private key given is not a 32-byte hex string (64 hex digits)")
    try:
        acct: LocalAccount = Account.from_key("0x" + digits)
    except (ValueError, TypeError):
        raise KeyLoadError("the private key given is not a valid secp256k1 private key") from None
    return acct


def load_account(
    *,
    keystore: Path | None = None,
    password: SecretStr | None = None,
    private_key: SecretStr | None = None,
) -> LocalAccount:
    """One account from whichever source is configured (keystore first)."""
    if keystore is not None:
        if password is None:
            raise KeyLoadError(f"keystore {keystore} needs a password (set its password setting)")
        return load_keystore(keystore, password)
    if private_key is not None:
        return account_from_secret(private_key)
    raise KeyLoadError("no key configured: give a keystore (and its password) or a private key")


def refuse_dev_key_off_devnet(account: LocalAccount, chain_id: int) -> None:
    """Anvil's development keys are public: using one on a real chain loses its funds."""
    if chain_id not in DEVNET_CHAIN_IDS and account.address in _dev_addresses():
        raise KeyLoadError(
            f"account {account.address} is a well-known development key (anvil's mnemonic) and "
            f"chain {chain_id} is not a devnet: use a keystore of your own"
        )
