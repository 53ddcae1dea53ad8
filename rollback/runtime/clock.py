"""The one seam through which the runtime reads time and waits.

Backoff sleeps, bake windows, record timestamps and metric windows all go through this module,
so the sandbox can install a virtual clock (:func:`use`) and run a 30-minute rollout in seconds.
In Lambda the system clock is used. Standard library only: on the Lambda import path.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """What the runtime needs from a clock: aware UTC time and a way to wait."""

    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a virtual clock advances instead of blocking)."""
        ...


class SystemClock:
    """Wall-clock time and real sleeps; the default, and what runs in Lambda."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class VirtualClock:
    """A clock that only moves when told to: ``sleep`` and ``advance`` move it, nothing blocks.

    Thread-safe, so the sandbox can share one between its traffic generator and the handlers.
    ``slept`` keeps every requested sleep, which lets tests check backoff without waiting.
    """

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime.now(UTC)
        if start.tzinfo is None:
            raise ValueError("VirtualClock start time must be timezone-aware (UTC)")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()
        self.slept: list[float] = []

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self._now += timedelta(seconds=max(0.0, seconds))

    def advance(self, seconds: float) -> datetime:
        """Move time forward by ``seconds`` without recording a sleep; returns the new time."""
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now


_clock: Clock = SystemClock()


def now() -> datetime:
    """Current time (timezone-aware UTC) from the installed clock."""
    return _clock.now()


def sleep(seconds: float) -> None:
    """Wait ``seconds`` on the installed clock."""
    _clock.sleep(seconds)


def use(clock: Clock) -> Clock:
    """Install ``clock`` for the whole process and return the previous one (to restore it later)."""
    global _clock
    previous, _clock = _clock, clock
    return previous


def current() -> Clock:
    """The installed clock."""
    return _clock


def iso(at: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a ``Z`` suffix, the format of every record timestamp."""
    if at.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 timestamp (``Z``, ``+0000`` or ``+00:00``) into an aware UTC datetime."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no timezone")
    return parsed.astimezone(UTC)
