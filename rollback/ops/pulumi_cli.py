"""``--apply``: run ``pulumi up`` for a stack through Pulumi's Automation API.

The Automation API drives the Pulumi CLI binary, which cannot be pip-installed; when it is
missing, the operator gets one line telling how to install it instead of a traceback.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rollback.runtime.errors import MLRollbackError

INSTALL_HINT = (
    "the Pulumi CLI is not installed: install it (curl -fsSL https://get.pulumi.com | sh, or "
    "`brew install pulumi`), then run again; or commit the change and let CI run `pulumi up`"
)


def pulumi_available() -> bool:
    """True when the ``pulumi`` binary is on PATH (the Automation API needs it)."""
    return shutil.which("pulumi") is not None


def up(project_root: Path, stack: str, *, on_output: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """``pulumi up --stack <stack>`` in ``project_root``; returns the summary (result, resource changes)."""
    if not pulumi_available():
        raise MLRollbackError(INSTALL_HINT)
    from pulumi import automation as auto

    try:
        ws_stack = auto.select_stack(stack_name=stack, work_dir=str(project_root))
        result = ws_stack.up(on_output=on_output)
    except auto.CommandError as exc:
        raise MLRollbackError(
            f"pulumi up failed for stack {stack}: {str(exc).strip().splitlines()[-1]}"
        ) from None
    return {"result": result.summary.result, "changes": dict(result.summary.resource_changes or {})}
