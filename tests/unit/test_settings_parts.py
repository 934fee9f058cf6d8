"""Each service's settings take the shared parts it reads and no others; a key of a part it
does not read, from files written when every service took every part, loads with a warning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from metascheduler.agent.settings import AgentSettings
from metascheduler.api.settings import ApiSettings
from metascheduler.config import (
    ChainSettings,
    HistorySettings,
    SettingsError,
    SignerSettings,
    StoreSettings,
)
from metascheduler.oracle.settings import OracleSettings

MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@pytest.fixture(autouse=True)
def _no_ms_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for var in [v for v in os.environ if v.startswith("MS_")]:
        monkeypatch.delenv(var)


def fields(part: type[ChainSettings] | type[SignerSettings] | type[StoreSettings]) -> set[str]:
    return set(part.model_fields) - {"log_level"}


@pytest.mark.parametrize(
    ("service", "parts", "not_parts"),
    [
        (OracleSettings, [HistorySettings, SignerSettings, StoreSettings], []),
        (AgentSettings, [HistorySettings, SignerSettings], [StoreSettings]),
        (ApiSettings, [ChainSettings, StoreSettings], [SignerSettings]),
    ],
)
def test_each_service_takes_only_its_parts(
    service: type[ChainSettings],
    parts: list[type[ChainSettings] | type[SignerSettings] | type[StoreSettings]],
    not_parts: list[type[SignerSettings] | type[StoreSettings]],
) -> None:
    own = set(service.model_fields)
    for part in parts:
        assert fields(part) <= own, part.__name__
    for part in not_parts:
        assert not fields(part) & own, part.__name__


def test_the_api_follows_no_events_and_signs_nothing() -> None:
    assert {"confirmations", "start_block", "private_key", "keystore"}.isdisjoint(
        ApiSettings.model_fields
    )


def test_an_unread_key_of_an_older_file_loads_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = tmp_path / "api.toml"
    cfg.write_text(
        f'market_address = "{MARKET}"\nconfirmations = 0\nprivate_key = "0x{"11" * 32}"\n'
    )
    with caplog.at_level(logging.WARNING, logger="metascheduler.config"):
        settings = ApiSettings.load(cfg)
    assert settings.market_address == MARKET
    assert "confirmations, private_key not read by ApiSettings" in caplog.text
    assert "11" * 8 not in caplog.text  # the value is never shown


def test_the_agent_takes_an_older_files_database_url_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="metascheduler.config"):
        AgentSettings(market_address=MARKET, database_url="sqlite:///var/oracle.db")  # type: ignore[call-arg]
    assert "database_url not read by AgentSettings" in caplog.text


def test_a_key_no_part_has_is_still_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "api.toml"
    cfg.write_text("batch_size = 3\n")  # the oracle's, never the API's
    with pytest.raises(SettingsError, match="batch_size"):
        ApiSettings.load(cfg)


def test_the_oracle_reads_every_part(tmp_path: Path) -> None:
    cfg = tmp_path / "oracle.toml"
    cfg.write_text(
        f'market_address = "{MARKET}"\nconfirmations = 5\nstart_block = 9\n'
        f'database_url = "sqlite:///{tmp_path / "o.db"}"\nreceipt_timeout_s = 7.5\n'
    )
    s = OracleSettings.load(cfg, private_key=f"0x{'22' * 32}")
    assert (s.confirmations, s.start_block, s.receipt_timeout_s) == (5, 9, 7.5)
    assert s.database_url.endswith("o.db") and s.account().address.startswith("0x")


def test_a_variable_of_a_part_a_service_does_not_read_is_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One environment for every service (the demo gives the API the oracle's key): each takes
    the variables it reads."""
    monkeypatch.setenv("MS_PRIVATE_KEY", f"0x{'33' * 32}")
    monkeypatch.setenv("MS_CONFIRMATIONS", "4")
    monkeypatch.setenv("MS_DATABASE_URL", "sqlite:///var/other.db")
    assert ApiSettings.load(None).database_url == "sqlite:///var/other.db"
    assert AgentSettings.load(None).confirmations == 4
