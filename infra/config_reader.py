"""Typed reads of a stack file's mappings that collect every problem instead of stopping at the first.

:class:`Problems` gathers ``key: message`` lines; :class:`Reader` reads one mapping's keys with
their types, ranges and defaults, and reports unknown keys (:mod:`infra.validation`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from rollback.runtime.errors import ConfigError


class Problems:
    """Collects problems as (key, message) so every mistake is reported in one go."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.items.append(f"{self.source}: {key}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            count = len(self.items)
            head = f"{count} problem{'s' if count > 1 else ''} in the stack config:"
            raise ConfigError("\n".join([head, *self.items]))


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Reader:
    """Typed getters over one mapping that record a problem instead of raising."""

    def __init__(self, data: Any, key: str, problems: Problems) -> None:
        self.key = key
        self.problems = problems
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            problems.add(key, f"must be a mapping, got {type(data).__name__}")
            data = {}
        self.data = data

    def k(self, name: str) -> str:
        return f"{self.key}.{name}"

    def unknown(self, allowed: set[str]) -> None:
        for name in self.data:
            if name not in allowed:
                self.problems.add(
                    self.k(str(name)), f"unknown key; expected one of {', '.join(sorted(allowed))}"
                )

    def str_(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.data.get(name)
        if value is None:
            if required:
                self.problems.add(self.k(name), "is required; add it")
            return default
        if not isinstance(value, str) or not value.strip():
            self.problems.add(self.k(name), f"must be a non-empty string, got {value!r}")
            return default
        return value

    def int_(self, name: str, default: int, lo: int | None = None, hi: int | None = None) -> int:
        value = self.data.get(name, default)
        if not is_int(value):
            self.problems.add(self.k(name), f"must be an integer, got {value!r}")
            return default
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            self.problems.add(self.k(name), f"{value} is out of range; use {describe_range(lo, hi)}")
        return value

    def num(self, name: str, default: float | None) -> float | None:
        value = self.data.get(name, default)
        if value is None:
            return None
        if not is_number(value):
            self.problems.add(self.k(name), f"must be a number, got {value!r}")
            return default
        return value

    def bool_(self, name: str, default: bool) -> bool:
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            self.problems.add(self.k(name), f"must be true or false, got {value!r}")
            return default
        return value


def describe_range(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f"{lo}-{hi}"
    return f">= {lo}" if lo is not None else f"<= {hi}"


def read_percent(r: Reader, name: str, default: int, *, lo_open: bool = True) -> int:
    value = r.data.get(name, default)
    if not is_int(value):
        r.problems.add(r.k(name), f"must be an integer percent, got {value!r}")
        return default
    if not (0 < value <= 100 if lo_open else 0 <= value <= 100):
        bound = "(0, 100]" if lo_open else "[0, 100]"
        r.problems.add(r.k(name), f"{value} is out of range; a percent in {bound}")
    return value
