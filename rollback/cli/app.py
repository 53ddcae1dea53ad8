"""The typer application shared by every command module, and the error-to-exit-code boundary."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console

from rollback.errors import MLRollbackError

app = typer.Typer(
    name="mlrollback",
    help=(
        "Operate safe SageMaker model rollouts: status, history, manual rollback, stack revert, "
        "promotion, preflight drift guard and rollback drills, against AWS or the local sandbox."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

console = Console()
err_console = Console(stderr=True)


def print_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout (for ``--json``), nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def main() -> None:
    """Console-script entry point: run the app, turning package errors into one line + exit code."""
    try:
        app(standalone_mode=False)
    except MLRollbackError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        err_console.print("aborted")
        raise SystemExit(130) from None
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", None)
        if code is None:
            code = getattr(exc, "code", 0)
        raise SystemExit(code) from None
    except Exception as exc:  # click usage errors come through here with standalone_mode=False
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            raise SystemExit(exc.exit_code) from None
        raise
