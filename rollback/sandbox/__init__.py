"""The local sandbox: the real Pulumi program and the whole rollback loop on an embedded moto server.

Modules: :mod:`~rollback.sandbox.emulator` (moto server on 127.0.0.1, clients),
:mod:`~rollback.sandbox.moto_patches` (what moto lacks), :mod:`~rollback.sandbox.runner`
(program -> emulator) with the per-resource appliers of :mod:`~rollback.sandbox.resources`,
:mod:`~rollback.sandbox.alarm_evaluator` (alarm evaluation from metric data),
:mod:`~rollback.sandbox.eventbus` (EventBridge delivery to in-process Lambda handlers),
:mod:`~rollback.sandbox.traffic` (simulated models and metrics), :mod:`~rollback.sandbox.simulation`
(scenarios and the report), :mod:`~rollback.sandbox.daemon` (``mlrollback sandbox up``, and
:func:`apply_stack`, the sandbox's ``pulumi up`` used by ``mlrollback revert --apply --sandbox``).
Never imported on the Lambda path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def apply_stack(root: Path, stack: str) -> dict[str, Any]:
    """Apply the stack file's program to the running background sandbox (see :mod:`.daemon`)."""
    # Imported here: ``python -m rollback.sandbox.daemon`` must not find the module already loaded.
    from rollback.sandbox.daemon import apply_stack as apply

    return apply(root, stack)


__all__ = ["apply_stack"]
