"""Run the Pulumi program in Pulumi's mock runtime: the one runner (tests, benchmark, sandbox).

The Pulumi CLI engine cannot run everywhere the program must (CI, the sandbox, a laptop with no
Pulumi installed), so this project runs the real ``infra/`` program with
:func:`pulumi.runtime.set_mocks`. A fresh run needs a new event loop, a copied context (Pulumi
keeps runtime settings in context variables), no root resource left from a previous run, and the
given project, stack and config. That takes a few names from Pulumi's runtime internals
(``settings.ROOT``, ``run_pulumi_func``, ``_sync_await``): they are reached here and nowhere else,
so a Pulumi upgrade that moves them breaks one module (``pulumi>=3.150,<4`` in pyproject.toml).

:mod:`infra.testing` records resources with it; :mod:`rollback.sandbox.runner` applies them to
the emulator with it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import rpc as _rpc
from pulumi.runtime import settings as _settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from infra.limits import PROJECT


@dataclass
class MockRun:
    """What one run logged at WARNING and above, and its stack exports (Outputs resolved)."""

    warnings: list[str] = field(default_factory=list)
    exports: dict[str, Any] = field(default_factory=dict)


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def unsecret(value: Any) -> Any:
    """``value`` with Pulumi secret wrappers removed (the provider marks e.g. SSM values secret).

    Inputs the provider schema marks secret reach the mocks wrapped; AWS gets the plain value.
    """
    if isinstance(value, dict):
        if value.get(_rpc._special_sig_key) == _rpc._special_secret_sig:
            return unsecret(value.get("value"))
        return {k: unsecret(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unsecret(v) for v in value]
    return value


async def resolve(value: Any) -> Any:
    """``value`` with every Output awaited, through dicts, lists and tuples."""
    if isinstance(value, pulumi.Output):
        return await resolve(await value.future())
    if isinstance(value, dict):
        return {k: await resolve(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [await resolve(v) for v in value]
    return value


def run_in_mock_runtime(
    program: Callable[[], Any],
    mocks: pulumi.runtime.Mocks,
    *,
    stack: str,
    config: Mapping[str, str],
    project: str = PROJECT,
    exports: bool = False,
) -> MockRun:
    """Run ``program`` in a fresh mock runtime answered by ``mocks``; with ``exports``, resolve them.

    Exceptions raised by the program (e.g. ConfigError) propagate after the runtime has drained;
    the warnings logged until then are lost with the run, as the engine would print them.
    """
    capture = _Warnings()
    logger = logging.getLogger(f"mlrollback.pulumi.mock.{id(capture)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(capture)
    run = MockRun(warnings=capture.messages)

    def body() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            _settings.ROOT.set(None)
            pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, logger=logger)
            pulumi.runtime.set_all_config(dict(config))
            _sync_await(run_pulumi_func(program))
            if exports:
                root = _settings.get_root_resource()
                run.exports = _sync_await(resolve(dict(getattr(root, "outputs", {}) or {})))
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    try:
        contextvars.copy_context().run(body)
    finally:
        logger.removeHandler(capture)
    return run
