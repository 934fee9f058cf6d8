"""The CLI's pure parts: amounts, error classification, lazy imports, command wiring."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from metascheduler.chain.errors import RevertError, RpcUnavailable
from metascheduler.cli import EXIT_FAILED, EXIT_RPC, EXIT_USAGE, UsageError, app
from metascheduler.cli.errors import classify
from metascheduler.cli.inputs import credit_units
from metascheduler.client.errors import InsufficientCredits, NotFound
from metascheduler.spec import SpecError

TRACE = Path(__file__).resolve().parents[1] / "data/traces/alea-hpc2n-3171jobs.swf.gz"


@pytest.mark.parametrize(
    ("text", "units"),
    [("12.5", 12_500_000), ("1", 1_000_000), ("0.000001", 1), ("1000000", 10**12)],
)
def test_units_reads_credits_exactly(text: str, units: int) -> None:
    assert credit_units(text, "x") == units


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("ten", "not an amount of credits"),
        ("0", "must be above zero"),
        ("-3", "must be above zero"),
        ("1.0000001", "not an amount of credits"),
        ("", "not an amount of credits"),
    ],
)
def test_units_refuses_what_is_not_an_amount(text: str, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        credit_units(text, "--escrow")


@pytest.mark.parametrize(
    ("exc", "code", "kind"),
    [
        (SpecError(["name: required"]), EXIT_USAGE, "invalid-spec"),
        (UsageError("x"), EXIT_USAGE, "usage"),
        (RpcUnavailable("down"), EXIT_RPC, "rpc-unavailable"),
        (InsufficientCredits("a job", "market", 1, 3, ""), EXIT_FAILED, "insufficient-credits"),
        (NotFound("no job"), EXIT_FAILED, "not-found"),
        (RevertError("JobNotFound", {}, "job 9 does not exist"), EXIT_FAILED, "not-found"),
        (RevertError("JobUnexpectedStatus", {}, "ended"), EXIT_FAILED, "revert"),
    ],
)
def test_errors_map_to_exit_codes(exc: Exception, code: int, kind: str) -> None:
    assert classify(exc) == (code, kind)


def test_an_unexpected_error_is_not_swallowed() -> None:
    with pytest.raises(ZeroDivisionError):
        classify(ZeroDivisionError())


def test_insufficient_credits_says_how_much_is_missing() -> None:
    exc = InsufficientCredits("the job's escrow", "market", 2_500_000, 10_000_000, "Deposit.")
    assert exc.missing == 7_500_000
    assert "7.5 credits are missing" in str(exc) and "holds 2.5" in str(exc)


def test_help_is_fast_because_nothing_heavy_is_imported() -> None:
    code = (
        "import sys, metascheduler.cli; print(sorted(m for m in ('web3', 'eth_account', "
        "'metascheduler.client', 'metascheduler.audit', 'rich.live') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_every_command() -> None:
    out = CliRunner().invoke(app, ["--help"])
    assert out.exit_code == 0
    for name in (
        "wallet",
        "credits",
        "job",
        "provider",
        "audit",
        "oracle",
        "agent",
        "api",
        "sim",
        "devnet",
    ):
        assert name in out.output
    out = CliRunner().invoke(app, ["job", "--help"])
    for name in ("submit", "status", "list", "watch", "cancel", "top-up", "history"):
        assert name in out.output


def test_a_key_on_the_command_line_is_not_an_option() -> None:
    out = CliRunner().invoke(app, ["--private-key", "0x" + "11" * 32, "wallet", "address"])
    assert out.exit_code == 2 and "No such option" in out.output


def test_a_missing_key_variable_is_named(tmp_path: Path) -> None:
    out = CliRunner().invoke(
        app, ["--key-env", "MS_TEST_NO_SUCH_VAR", "wallet", "address", "--json"], env={}
    )
    assert out.exit_code == EXIT_USAGE
    err = json.loads(out.stdout.strip().splitlines()[-1])
    assert err == {
        "ok": False,
        "error": "environment variable MS_TEST_NO_SUCH_VAR (named for the private key) is not "
        "set or empty",
        "kind": "usage",
    }


def test_a_bad_key_is_refused_without_echoing_it() -> None:
    secret = "0x" + "zz" * 32
    out = CliRunner().invoke(app, ["--key-env", "K", "wallet", "address"], env={"K": secret})
    assert out.exit_code == EXIT_USAGE and secret not in out.output
    assert "not a 32-byte hex string" in out.output


def test_services_are_wired_with_their_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, object]] = []

    def fake_command(name: str) -> Callable[[object], int]:
        def command(arg: object) -> int:
            calls.append((name, arg))
            return 0

        return command

    for module, fn in [
        ("metascheduler.oracle.service", "run_oracle_command"),
        ("metascheduler.agent.service", "run_agent_command"),
        ("metascheduler.api.service", "run_api_command"),
        ("metascheduler.devnet.demo", "run_devnet_command"),
    ]:
        fake = types.ModuleType(module)
        setattr(fake, fn, fake_command(fn))
        monkeypatch.setitem(sys.modules, module, fake)
    runner = CliRunner()
    assert runner.invoke(app, ["oracle", "run", "--config", "o.toml"]).exit_code == 0
    assert runner.invoke(app, ["agent", "run"]).exit_code == 0
    assert runner.invoke(app, ["api", "run", "--config", "a.toml"]).exit_code == 0
    assert runner.invoke(app, ["devnet", "up", "--once"]).exit_code == 0
    assert calls == [
        ("run_oracle_command", Path("o.toml")),
        ("run_agent_command", None),
        ("run_api_command", Path("a.toml")),
        ("run_devnet_command", True),
    ]


def test_a_missing_service_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "metascheduler.devnet.demo", None)
    out = CliRunner().invoke(app, ["devnet", "up"])
    assert out.exit_code == EXIT_USAGE
    assert "metascheduler.devnet.demo" in out.output


def test_sim_runs_a_real_trace_with_json() -> None:
    out = CliRunner().invoke(
        app, ["--json", "sim", str(TRACE), "--clusters", "50,25,25", "--limit", "60"]
    )
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["jobs_kept"] == 60 and report["clusters"] == [50, 25, 25]


def test_commands_the_services_name_exist() -> None:
    """A message that tells an operator to run a command names one that exists."""
    from metascheduler import commands

    named = [v for k, v in vars(commands).items() if k.isupper() and isinstance(v, str)]
    assert named
    for template in named:
        words = [w for w in template.split() if not w.startswith("{")]
        assert words[0] == "metascheduler"
        out = CliRunner().invoke(app, [*words[1:], "--help"])
        assert out.exit_code == 0, f"{template}: {out.output}"


def test_help_lists_the_admin_commands_and_deploy() -> None:
    assert "deploy" in CliRunner().invoke(app, ["--help"]).output
    out = CliRunner().invoke(app, ["admin", "--help"])
    for name in (
        "approve-provider",
        "ban-provider",
        "remove-provider",
        "set-oracle",
        "set-fee",
        "set-timeouts",
        "pause",
        "unpause",
        "withdraw-fees",
        "mint",
    ):
        assert name in out.output
