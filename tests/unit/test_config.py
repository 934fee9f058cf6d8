"""Settings errors name the field and never quote its value (it may be a key)."""

from __future__ import annotations

from pathlib import Path

import pytest

from metascheduler.config import SettingsError
from metascheduler.oracle.settings import OracleSettings

KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


def test_a_misspelt_key_field_is_named_but_its_value_never_shown(tmp_path: Path) -> None:
    cfg = tmp_path / "oracle.toml"
    cfg.write_text(f'privat_key = "{KEY}"\n')
    with pytest.raises(SettingsError) as info:
        OracleSettings.load(cfg)
    assert "privat_key" in str(info.value)
    assert KEY[2:12] not in str(info.value)


def test_a_bad_value_names_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "oracle.toml"
    cfg.write_text("confirmations = -3\n")
    with pytest.raises(SettingsError, match="confirmations"):
        OracleSettings.load(cfg)


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not found"):
        OracleSettings.load(tmp_path / "nope.toml")
