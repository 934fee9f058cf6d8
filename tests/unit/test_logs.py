"""The one logging set-up: one line per record, `key=value`, on stderr; a second set-up replaces
the first instead of doubling every line; a secret setting logs as stars."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from metascheduler import logs

KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


@pytest.fixture(autouse=True)
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def test_one_line_per_record_in_key_value_form(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup("INFO")
    log = logging.getLogger("metascheduler.oracle.service")
    log.info("placed %d jobs\non %s", 3, "alpha")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("tick failed")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("ts=") and lines[0].endswith(
        " level=INFO logger=metascheduler.oracle.service msg=placed 3 jobs | on alpha"
    )
    assert "level=ERROR" in lines[1] and "msg=tick failed exc=Traceback" in lines[1]
    assert "RuntimeError: boom" in lines[1]


def test_level_filters_and_a_second_setup_replaces_the_first(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.setup("INFO")
    logs.setup("WARNING")
    log = logging.getLogger("metascheduler.agent.service")
    log.info("not shown")
    log.warning("shown once")
    assert capsys.readouterr().err.count("msg=") == 1


def test_other_handlers_stay(caplog: pytest.LogCaptureFixture) -> None:
    logs.setup("INFO")
    logging.getLogger("metascheduler.api").warning("still captured")
    assert "still captured" in caplog.text


def test_routine_library_chatter_is_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup("DEBUG")
    logging.getLogger("apscheduler.executors").info("job ran")
    logging.getLogger("httpx").info("HTTP Request: PUT https://store/obj?X-Amz-Signature=abc")
    assert capsys.readouterr().err == ""


def test_a_secret_setting_logs_as_stars(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup("INFO")
    logging.getLogger("metascheduler.config").info("private_key=%s", SecretStr(KEY))
    err = capsys.readouterr().err
    assert "msg=private_key=**********" in err and KEY[2:] not in err
