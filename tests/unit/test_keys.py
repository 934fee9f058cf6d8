"""Key loading (docs/security.md, "keys"): keystores round-trip, errors say what failed without
echoing a secret, nothing is logged, and anvil's public keys are refused off a devnet."""

from __future__ import annotations

import json
import logging
import stat
import traceback
from pathlib import Path

import pytest
from eth_account import Account
from pydantic import SecretStr

from metascheduler.devnet.anvil import dev_account
from metascheduler.keys import (
    KeyLoadError,
    account_from_secret,
    load_account,
    load_keystore,
    refuse_dev_key_off_devnet,
    save_keystore,
)

# A fixed key of no value, so that a failure message is reproducible.
KEY = "0x" + "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
PASSWORD = "correct horse battery staple"


def _secret_fragments(key: str) -> list[str]:
    """The forms in which a key could leak: whole, without 0x, and any 16-hex-digit piece."""
    bare = key.removeprefix("0x").lower()
    return [key.lower(), bare] + [bare[i : i + 16] for i in range(0, len(bare) - 15, 8)]


def _assert_no_secret(text: str, key: str) -> None:
    low = text.lower()
    for fragment in _secret_fragments(key):
        assert fragment not in low, "key material appears in the text"


@pytest.fixture(scope="module")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """KEY in a keystore under PASSWORD; made once (scrypt takes about a second a use)."""
    return save_keystore(
        Account.from_key(KEY), tmp_path_factory.mktemp("keys") / "provider.json", PASSWORD
    )


def test_keystore_round_trip(keystore: Path) -> None:
    assert stat.S_IMODE(keystore.stat().st_mode) == 0o600
    _assert_no_secret(keystore.read_text(), KEY)  # encrypted, not stored in the clear
    loaded = load_account(keystore=keystore, password=SecretStr(PASSWORD))
    assert loaded.address == Account.from_key(KEY).address
    assert loaded.key == Account.from_key(KEY).key


def test_save_keystore_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    path.write_text("an existing keystore")
    with pytest.raises(FileExistsError):
        save_keystore(Account.from_key(KEY), path, PASSWORD)
    assert path.read_text() == "an existing keystore"


def test_keystore_wrong_password(keystore: Path) -> None:
    path = keystore
    with pytest.raises(KeyLoadError, match="wrong password") as exc:
        load_keystore(path, SecretStr("not the password"))
    assert str(path) in str(exc.value)
    assert "not the password" not in str(exc.value)


def test_keystore_missing_or_not_json(tmp_path: Path) -> None:
    with pytest.raises(KeyLoadError, match="not found"):
        load_keystore(tmp_path / "absent.json", PASSWORD)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(KeyLoadError, match="not valid JSON"):
        load_keystore(bad, PASSWORD)


def test_keystore_needs_password(tmp_path: Path) -> None:
    with pytest.raises(KeyLoadError, match="needs a password"):
        load_account(keystore=tmp_path / "k.json")


def test_no_key_configured() -> None:
    with pytest.raises(KeyLoadError, match="no key configured"):
        load_account()


def test_raw_key_loads_with_or_without_prefix_and_whitespace() -> None:
    expected = Account.from_key(KEY).address
    assert load_account(private_key=SecretStr(KEY)).address == expected
    assert account_from_secret(KEY.removeprefix("0x") + "\n").address == expected


@pytest.mark.parametrize(
    "bad",
    [
        KEY[:-1],  # one digit short: a typo in a real key
        KEY + "0",  # one digit long
        KEY[:-1] + "g",  # not hex
        KEY[:20] + " " + KEY[20:],  # a space inside
    ],
)
def test_bad_raw_key_error_never_echoes_the_value(bad: str) -> None:
    with pytest.raises(KeyLoadError, match="not a 32-byte hex string") as exc:
        load_account(private_key=SecretStr(bad))
    # Neither the message nor the whole printed traceback (chained errors included) shows it.
    printed = "".join(traceback.format_exception(exc.value))
    _assert_no_secret(printed, KEY)
    _assert_no_secret(printed, bad)


def test_refuses_anvil_key_zero_on_mainnet() -> None:
    acct = dev_account(0)
    with pytest.raises(KeyLoadError, match="well-known development key") as exc:
        refuse_dev_key_off_devnet(acct, 1)
    assert acct.address in str(exc.value)
    assert "chain 1 " in str(exc.value)
    _assert_no_secret(str(exc.value), acct.key.hex())


@pytest.mark.parametrize("index", [1, 9, 29])
def test_refuses_every_dev_account_off_devnet(index: int) -> None:
    with pytest.raises(KeyLoadError):
        refuse_dev_key_off_devnet(dev_account(index), 11155111)


@pytest.mark.parametrize("chain_id", [31337, 1337])
def test_accepts_anvil_key_zero_on_devnets(chain_id: int) -> None:
    refuse_dev_key_off_devnet(dev_account(0), chain_id)


def test_accepts_own_key_on_mainnet() -> None:
    refuse_dev_key_off_devnet(Account.from_key(KEY), 1)


def test_loading_logs_no_key_material(
    keystore: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    path = keystore
    load_account(keystore=path, password=SecretStr(PASSWORD))
    load_account(private_key=SecretStr(KEY))
    refuse_dev_key_off_devnet(Account.from_key(KEY), 1)
    with pytest.raises(KeyLoadError):
        load_account(keystore=path, password=SecretStr("wrong"))
    with pytest.raises(KeyLoadError):
        refuse_dev_key_off_devnet(dev_account(0), 1)
    out = capsys.readouterr()
    for text in (
        caplog.text,
        out.out,
        out.err,
        json.dumps([r.args for r in caplog.records], default=str),
    ):
        _assert_no_secret(text, KEY)
        _assert_no_secret(text, dev_account(0).key.hex())
        assert PASSWORD not in text
