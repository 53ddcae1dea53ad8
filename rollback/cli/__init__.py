"""The ``mlrollback`` operator CLI (typer + rich). Never imported on the Lambda path.

Commands live in modules of this package, each registering on :data:`app`:
``ops`` (status, history, rollback, preflight, finalize, clear-quarantine), ``gitops`` (revert, promote),
``sandbox_cmds`` (sandbox up/status/down and ``drill``, with or without ``--sandbox``), ``verdicts``
(shadow-report, ab-report, drift-report). A module that is not there yet is simply not registered.
"""

from __future__ import annotations

import importlib

from rollback.cli.app import app, main

_COMMAND_MODULES = ("ops", "gitops", "sandbox_cmds", "verdicts")

for _mod in _COMMAND_MODULES:
    try:
        importlib.import_module(f"rollback.cli.{_mod}")
    except ModuleNotFoundError as exc:  # pragma: no cover - only while a module is not written yet
        if exc.name != f"rollback.cli.{_mod}":
            raise

__all__ = ["app", "main"]
