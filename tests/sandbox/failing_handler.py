"""A Lambda handler that always raises, to deploy in place of a real one in the async-failure tests."""

from __future__ import annotations

from typing import Any


class DownstreamUnavailableError(RuntimeError):
    """What the handler raises: stands for any error a function returns to Lambda."""


def fail(event: Any, context: Any = None) -> dict[str, Any]:
    """Raise every time: Lambda treats this as a function error (retried, then given up)."""
    raise DownstreamUnavailableError("downstream unavailable")
