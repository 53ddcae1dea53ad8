"""What every applier shares: the context (emulator, stack, names) and the input conversions.

An applier is ``(ctx, logical name, inputs, previous state or None) -> (physical id, computed
outputs)``; ``inputs`` arrive as the engine would send them (camelCase, numbers as floats).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rollback.sandbox.emulator import Emulator

Outputs = dict[str, Any]


Applier = Callable[["ApplyContext", str, dict[str, Any], "dict[str, Any] | None"], tuple[str, Outputs]]


def _plain(value: Any) -> Any:
    """Integral floats (how the mock runtime delivers every number) back to int for botocore."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def pascal(value: Any) -> Any:
    """camelCase input keys (Pulumi) to PascalCase API keys (AWS), recursively."""
    if isinstance(value, list):
        return [pascal(v) for v in value]
    if isinstance(value, dict):
        return {(k[:1].upper() + k[1:]): pascal(v) for k, v in value.items()}
    return _plain(value)


def _tags(inputs: dict[str, Any]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": str(v)} for k, v in sorted((inputs.get("tags") or {}).items())]


def _digest(value: Any, n: int = 7) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:n]


@dataclass
class ApplyContext:
    """What appliers share: the emulator, the stack, and the names they made."""

    emulator: Emulator
    stack: str
    project: str = "mlrollback"

    def client(self, service: str) -> Any:
        return self.emulator.client(service)

    def autoname(self, logical: str, inputs: dict[str, Any] | None = None, max_len: int = 63) -> str:
        """Pulumi-style ``<logical>-<7 hex>``; keyed on ``inputs`` for replace-on-change types."""
        suffix = _digest([self.stack, logical, inputs] if inputs is not None else [self.stack, logical])
        base = re.sub(r"[^A-Za-z0-9-]", "-", logical)[: max_len - 8].strip("-")
        return f"{base}-{suffix}"

    def arn(self, service: str, resource: str, *, region: bool = True) -> str:
        return self.emulator.arn(service, resource, region=region)
