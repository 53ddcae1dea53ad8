"""The typer application shared by every command module, and the error-to-exit-code boundary."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from rollback.ops.stack_changes import commit_stack_file
from rollback.ops.stack_context import StackContext
from rollback.runtime.errors import (
    ConfigError,
    CredentialsError,
    Interrupted,
    MLRollbackError,
    NotFoundError,
)

app = typer.Typer(
    name="mlrollback",
    help=(
        "Operate safe SageMaker model rollouts: status, history, manual rollback, stack revert, "
        "promotion, preflight drift guard and rollback drills, against AWS or the local sandbox."
    ),
    epilog=(
        "Start with `mlrollback status --stack dev`; every command has --help with examples. "
        "Exit codes: 0 ok, 1 other error, 2 bad config or usage, 3 not found (stack, endpoint, "
        "not deployed), 4 endpoint busy, 5 no AWS credentials, 8 a gate refused, 11 bad captured data, "
        "130 interrupted (Ctrl-C)."
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
    """Console-script entry point: run the app, turning package errors into one line + exit code.

    Click's standalone mode already turns usage errors, ``--help``, aborts and ``typer.Exit(n)``
    into exit codes; only this package's own errors are left to map.
    """
    try:
        app()
    except MLRollbackError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise SystemExit(exc.exit_code) from None


# -- what every command module shares: options, where lines for people go ------------------------

StackOpt = Annotated[str, typer.Option("--stack", "-s", help="Stack name: environments/Pulumi.<stack>.yaml.")]


EndpointOpt = Annotated[
    str, typer.Option("--endpoint", "-e", help="Logical endpoint name from the stack file.")
]


MaybeEndpointOpt = Annotated[
    str | None,
    typer.Option("--endpoint", "-e", help="Only this endpoint (default: every endpoint of the stack)."),
]


ProjectOpt = Annotated[
    Path | None,
    typer.Option("--project-dir", help="Project root (default: nearest Pulumi.yaml above the cwd)."),
]


SandboxOpt = Annotated[
    bool, typer.Option("--sandbox", help="Talk to the local sandbox started by `mlrollback sandbox up`.")
]


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of tables.")]


YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


CommitOpt = Annotated[
    bool,
    typer.Option(
        "--commit",
        help="Also `git commit` the rewritten stack file (only that file; refused if it has other edits).",
    ),
]


def human(json_out: bool) -> Any:
    """Where lines for people go: stdout, or stderr under ``--json`` (stdout carries only the JSON)."""
    return err_console if json_out else console


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Turn package and AWS errors into one clear line on stderr and a distinct exit code."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    try:
        try:
            yield
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise CredentialsError(
                f"no AWS credentials ({exc}); set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "or use --sandbox"
            ) from None
        except NoRegionError:
            raise ConfigError("no AWS region: set aws:region in the stack file or AWS_REGION") from None
        except EndpointConnectionError as exc:
            raise MLRollbackError(
                f"cannot reach AWS at {exc.kwargs.get('endpoint_url')}: is the sandbox up?"
            ) from None
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            message = exc.response.get("Error", {}).get("Message", str(exc))
            if code in (
                "ExpiredToken",
                "ExpiredTokenException",
                "InvalidClientTokenId",
                "UnrecognizedClientException",
            ):
                raise CredentialsError(f"AWS rejected the credentials ({code}): {message}") from None
            if code == "ResourceNotFoundException":
                raise NotFoundError(f"{message} (is the stack deployed? run `pulumi up` first)") from None
            raise MLRollbackError(f"AWS error {code}: {message}") from None
        except KeyboardInterrupt:
            raise Interrupted("interrupted (Ctrl-C)") from None
    except MLRollbackError as exc:
        if isinstance(exc, Interrupted):
            # A Ctrl-C inside an event loop (the sandbox applier's mock runtime) leaves tasks whose
            # KeyboardInterrupt asyncio would log at exit as "Task exception was never retrieved".
            logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None


def commit_change(
    ctx: StackContext, commit: bool, subject: str, reason: str, audit_id: str, *, json_out: bool = False
) -> str | None:
    """With --commit, commit the stack file (:func:`rollback.ops.stack_changes.commit_stack_file`).

    The ``committed <sha>`` line is for people: under ``--json`` it goes to stderr (stdout is JSON only).
    """
    if not commit:
        return None
    sha = commit_stack_file(ctx, subject, reason, audit_id)
    human(json_out).print(f"committed {sha[:12]}: {subject}", highlight=False)
    return sha
