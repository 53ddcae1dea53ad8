"""The installed ``mlrollback`` entry point exits with the codes CI branches on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rollback.runtime.errors import CredentialsError, NotFoundError

REPO = Path(__file__).resolve().parents[2]


def _mlrollback(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from rollback.cli import main; main()", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_unknown_stack_exits_with_the_not_found_code_and_one_line() -> None:
    done = _mlrollback("status", "--stack", "nosuchstack")
    assert done.returncode == NotFoundError.exit_code, done.stderr
    assert "nosuchstack" in done.stderr
    assert "Traceback" not in done.stderr


def test_usage_error_exits_2_and_help_exits_0() -> None:
    assert _mlrollback("status", "--no-such-option").returncode == 2
    helped = _mlrollback("--help")
    assert helped.returncode == 0
    assert "drill" in helped.stdout and "rollback" in helped.stdout


def test_a_command_ending_in_a_nonzero_exit_keeps_it(tmp_path: Path) -> None:
    # `sandbox status` with no sandbox running exits 3 (typer.Exit / SystemExit inside the command).
    (tmp_path / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    done = _mlrollback("sandbox", "status", cwd=tmp_path)
    assert done.returncode == 3, (done.stdout, done.stderr)


def _without_aws_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["HOME"] = "/nonexistent"  # no ~/.aws/credentials or config either
    env["AWS_EC2_METADATA_DISABLED"] = "true"  # no instance-metadata lookup (slow off EC2)
    return env


def test_missing_credentials_is_one_line_with_exit_code_5() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from rollback.cli import main; main()", "history", "--stack", "dev"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=_without_aws_env(),
    )
    assert done.returncode == CredentialsError.exit_code, (done.stdout, done.stderr)
    assert done.stderr.startswith("error: no AWS credentials")
    assert "AWS_PROFILE" in done.stderr and "--sandbox" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_unknown_endpoint_exits_not_found_and_lists_the_known_ones() -> None:
    done = _mlrollback("status", "--stack", "staging", "--endpoint", "nope")
    assert done.returncode == NotFoundError.exit_code, done.stderr
    flat = " ".join(done.stderr.split())
    assert "no endpoint 'nope' in stack staging (known: fraud-scorer, churn-predictor)" in flat
    assert "Traceback" not in done.stderr


def test_top_level_help_lists_exit_codes_and_every_command_help_has_examples() -> None:
    top = _mlrollback("--help")
    assert "5 no AWS credentials" in " ".join(top.stdout.split())
    for command in ("status", "history", "rollback", "preflight", "finalize", "clear-quarantine", "revert",
                    "promote", "record-deploy"):  # fmt: skip
        helped = _mlrollback(command, "--help")
        assert helped.returncode == 0 and "Examples:" in helped.stdout, command
