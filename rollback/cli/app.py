"""The typer application shared by every command module, and the error-to-exit-code boundary."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from rollback.runtime.errors import ConfigError, CredentialsError, MLRollbackError, NotFoundError

app = typer.Typer(
    name="mlrollback",
    help=(
        "Operate safe SageMaker model rollouts: status, history, manual rollback, stack revert, "
        "promotion, preflight drift guard and rollback drills, against AWS or the local sandbox."
    ),
    epilog=(
        "Start with `mlrollback status --stack dev`; every command has --help with examples. "
        "Exit codes: 0 ok, 1 other error, 2 bad config or usage, 3 not found (stack, endpoint, "
        "not deployed), 4 endpoint busy, 5 no AWS credentials, 8 a gate refused, 11 bad captured data."
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


# -- shared plumbing for the command modules ------------------------------------------------------


#: Where ``mlrollback sandbox up`` leaves the running emulator's address (read by ``--sandbox``).
SANDBOX_DIR = Path(".mlrollback") / "sandbox"


def find_project_root(project_dir: Path | None = None) -> Path:
    """``--project-dir``, else the nearest directory at or above the cwd that holds Pulumi.yaml."""
    if project_dir is not None:
        if not (project_dir / "Pulumi.yaml").is_file():
            raise NotFoundError(f"{project_dir}: no Pulumi.yaml here; pass the project root as --project-dir")
        return project_dir
    from infra.config import find_project_root as nearest

    start = Path.cwd()
    found = nearest(start)
    if found is not None:
        return found
    raise NotFoundError(f"no Pulumi.yaml in {start} or above; run inside the project or pass --project-dir")


def stack_path(root: Path, stack: str) -> Path:
    """``environments/Pulumi.<stack>.yaml`` under ``root``; unknown stacks list the known ones."""
    path = root / "environments" / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        known = sorted(
            p.name[len("Pulumi.") : -len(".yaml")] for p in (root / "environments").glob("Pulumi.*.yaml")
        )
        raise NotFoundError(
            f"unknown stack {stack!r}: {path} does not exist (known: {', '.join(known) or 'none'})"
        )
    return path


def load_stack(root: Path, stack: str) -> Any:
    """The validated :class:`infra.config.StackConfig` of ``stack``."""
    from infra.config import load_stack_file

    return load_stack_file(stack_path(root, stack), stack)


def sandbox_endpoint(root: Path) -> str:
    """URL of the sandbox started by ``mlrollback sandbox up`` in this project.

    Reads ``.mlrollback/sandbox/endpoint_url`` (one line), else ``port`` (a number) or
    ``state.json`` (``endpoint_url`` or ``port`` key); NotFoundError tells how to start it.
    """
    base = root / SANDBOX_DIR
    url_file, port_file, state_file = base / "endpoint_url", base / "port", base / "state.json"
    if url_file.is_file():
        return url_file.read_text().strip()
    if port_file.is_file():
        return f"http://127.0.0.1:{int(port_file.read_text().strip())}"
    if state_file.is_file():
        state = json.loads(state_file.read_text())
        if state.get("endpoint_url"):
            return str(state["endpoint_url"])
        if state.get("port"):
            return f"http://127.0.0.1:{int(state['port'])}"
    raise NotFoundError(f"no running sandbox found under {base}; start one with `mlrollback sandbox up`")


def clients_for(root: Path, region: str | None, *, sandbox: bool) -> Any:
    """AWS clients through boto3's standard chain; ``--sandbox`` points them at the local emulator."""
    from rollback.runtime.aws import make_clients

    if sandbox:
        os.environ["AWS_ENDPOINT_URL"] = sandbox_endpoint(root)
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    return make_clients(region=region)


def actor() -> str:
    """Who is acting, for the audit trail: ``cli:<user>`` (the CI actor in GitHub Actions)."""
    user = os.environ.get("GITHUB_ACTOR") or os.environ.get("USER") or getpass.getuser()
    return f"cli:{user}"


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
    except MLRollbackError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
