"""The ``mlrollback`` operator CLI (typer + rich). Never imported on the Lambda path.

Commands live in modules of this package, each registering on :data:`app`:
``operate`` (status, history, rollback, preflight, finalize, clear-quarantine), ``change`` (revert,
promote, record-deploy), ``rehearse`` (sandbox up/status/down and ``drill``, with or without ``--sandbox``),
``reports`` (shadow-report, ab-report, drift-report). A module that is not there yet is simply not registered.
"""

from __future__ import annotations

import importlib

from rollback.cli.app import app, main

_COMMAND_MODULES = ("operate", "change", "rehearse", "reports")

for _mod in _COMMAND_MODULES:
    try:
        importlib.import_module(f"rollback.cli.{_mod}")
    except ModuleNotFoundError as exc:  # pragma: no cover - only while a module is not written yet
        if exc.name != f"rollback.cli.{_mod}":
            raise

__all__ = ["app", "main"]
