"""One stack as the operator library sees it: project root, stack file, validated config, settings, clients.

Every operator command starts from a :class:`StackContext`; ``--sandbox`` points its clients at the
emulator that ``mlrollback sandbox up`` started (its address is under ``.mlrollback/sandbox``).
"""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import Any

from rollback.runtime.errors import NotFoundError
from rollback.runtime.settings import Settings

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
    """The validated :class:`infra.model.StackConfig` of ``stack``."""
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


class StackContext:
    """Everything a command needs about one stack: root, validated config, settings, clients."""

    def __init__(self, stack: str, project_dir: Path | None, sandbox: bool) -> None:
        self.root = find_project_root(project_dir)
        self.stack = stack
        self.path = stack_path(self.root, stack)
        self.cfg = load_stack(self.root, stack)
        self.settings = Settings.for_stack(stack)
        self.sandbox = sandbox
        self._clients: Any = None

    @property
    def clients(self) -> Any:
        if self._clients is None:
            self._clients = clients_for(self.root, self.cfg.region, sandbox=self.sandbox)
        return self._clients

    def endpoint(self, name: str) -> Any:
        """The endpoint called ``name`` (logical or physical); NotFoundError (exit 3) lists the known ones."""
        for ep in self.cfg.endpoints:
            if name in (ep.name, ep.physical_name):
                return ep
        known = ", ".join(ep.name for ep in self.cfg.endpoints)
        raise NotFoundError(
            f"{self.path.relative_to(self.root)}: no endpoint {name!r} in stack {self.stack} "
            f"(known: {known}); pass one of them as --endpoint"
        )

    def endpoints(self, only: str | None) -> list[Any]:
        return [self.endpoint(only)] if only else list(self.cfg.endpoints)
