"""Structured JSON-lines logging with the standard library (small cold start, no Powertools).

Every runtime log line is one JSON object with ``level``, ``event`` and the fields passed, so
CloudWatch Logs Insights can filter on ``endpoint``, ``action`` or ``idempotencyKey``.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

LOGGER_NAME = "mlrollback"


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line; structured fields travel in ``extra={"fields": {...}}``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, sort_keys=True)


class _CurrentStdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is at emit time, not the one seen at configure time.

    A handler bound once to the stream of its first configuration keeps writing there after the
    stream was swapped (a test's capture, a redirect in a long-lived process).
    """

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure(level: int | str = logging.INFO) -> logging.Logger:
    """Attach one JSON handler to the ``mlrollback`` logger (idempotent across warm invocations)."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = _CurrentStdoutHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)
    return logger


def log(level: int, event: str, **fields: Any) -> None:
    """Log ``event`` with structured ``fields`` on the ``mlrollback`` logger."""
    logging.getLogger(LOGGER_NAME).log(level, event, extra={"fields": fields})


def log_result(action: str, reason: str, **fields: Any) -> dict[str, Any]:
    """The result dict of one runtime decision (``action``, ``reason``, non-None fields), logged at INFO."""
    out = {"action": action, "reason": reason, **{k: v for k, v in fields.items() if v is not None}}
    log(logging.INFO, f"alarm {action}", **out)
    return out
