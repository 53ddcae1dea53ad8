"""The installed ``mlrollback`` entry point exits with the codes CI branches on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rollback.errors import NotFoundError

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
