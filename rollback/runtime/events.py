"""Typed parsing of the events the Lambda functions receive.

Everything the runtime trusts about an event is checked here once; a malformed event raises
:class:`~rollback.runtime.errors.EventError` naming the field, before any AWS call is made.
Standard library only: on the Lambda import path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rollback.runtime import clock
from rollback.runtime.errors import EventError

ALARM_DETAIL_TYPE = "CloudWatch Alarm State Change"
ALARM_STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")

_MARKER_RE = re.compile(
    r"^mlrollback:\s+endpoint=(?P<endpoint>\S+)\s+role=(?P<role>\S+)\s+kpi=(?P<kpi>\S+)"
    r"\s+version=(?P<version>\S+)\s*$",
    re.MULTILINE,
)


@dataclass(frozen=True)
class Marker:
    """The machine-readable line the program puts at the end of every alarm description."""

    endpoint: str
    role: str
    kpi: str
    version: str | None


def parse_marker(description: str | None) -> Marker | None:
    """Find the ``mlrollback: endpoint=... role=... kpi=... version=...`` line, or None.

    The last marker wins (a description edited by hand may keep an old one above it);
    ``version=-`` means the role had no version when the alarm was declared.
    """
    if not description:
        return None
    matches = list(_MARKER_RE.finditer(description))
    if not matches:
        return None
    m = matches[-1]
    version = m.group("version")
    return Marker(m.group("endpoint"), m.group("role"), m.group("kpi"), None if version == "-" else version)


@dataclass(frozen=True)
class AlarmEvent:
    """What the runtime uses from a "CloudWatch Alarm State Change" event."""

    alarm_name: str
    state: str
    previous_state: str | None
    state_at: datetime
    reason: str
    description: str | None
    endpoint: str | None
    variant: str | None
    region: str | None
    event_id: str | None

    @property
    def marker(self) -> Marker | None:
        """The version marker of the alarm description carried in the event."""
        return parse_marker(self.description)

    @property
    def idempotency_key(self) -> str:
        """Alarm name + state-change time: the same for every delivery of one state change.

        Built from the state timestamp (not the EventBridge event id) so a replay with a new
        event id, and the stepper's safety net reading the alarm via DescribeAlarms, agree.
        """
        return alarm_idempotency_key(self.alarm_name, self.state_at)


def alarm_idempotency_key(alarm_name: str, state_at: datetime) -> str:
    """Idempotency key of one alarm state change."""
    return f"alarm#{alarm_name}#{clock.iso(state_at)}"


def _field(mapping: Any, key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(mapping, dict):
        raise EventError(f"malformed alarm event: {where} must be an object")
    if key not in mapping:
        raise EventError(f"malformed alarm event: missing {where}.{key}")
    value = mapping[key]
    if not isinstance(value, kind):
        raise EventError(f"malformed alarm event: {where}.{key} has type {type(value).__name__}")
    return value


def _dimensions(configuration: dict[str, Any]) -> tuple[str | None, str | None]:
    """EndpointName and VariantName from the alarm's metrics (single-metric or metric math).

    Every metric of a metric-math alarm that carries these dimensions must agree: an alarm
    mixing two variants cannot say which one to drain.
    """
    metrics = configuration.get("metrics", [])
    if not isinstance(metrics, list):
        raise EventError("malformed alarm event: detail.configuration.metrics must be a list")
    found: set[tuple[str, str]] = set()
    for i, metric in enumerate(metrics):
        if not isinstance(metric, dict):
            raise EventError(f"malformed alarm event: detail.configuration.metrics[{i}] must be an object")
        stat = metric.get("metricStat")
        if stat is None:
            continue  # an expression: its inputs are the other entries
        dims = stat.get("metric", {}).get("dimensions", {}) if isinstance(stat, dict) else None
        if not isinstance(dims, dict):
            raise EventError(
                f"malformed alarm event: detail.configuration.metrics[{i}].metricStat.metric.dimensions "
                "must be an object"
            )
        if "EndpointName" in dims or "VariantName" in dims:
            found.add((str(dims.get("EndpointName", "")), str(dims.get("VariantName", ""))))
    if not found:
        return None, None
    if len(found) > 1:
        pairs = ", ".join(f"{e}/{v}" for e, v in sorted(found))
        raise EventError(
            f"malformed alarm event: the alarm's metrics name different endpoint/variant pairs ({pairs}); "
            "an mlrollback alarm must watch exactly one variant"
        )
    endpoint, variant = found.pop()
    return endpoint or None, variant or None


def from_alarm_action(event: dict[str, Any]) -> dict[str, Any]:
    """An alarm's own Lambda action payload (``source`` aws.cloudwatch, ``alarmData``) in the
    EventBridge shape: the same alarm, state and timestamp, hence the same idempotency key, so the
    two deliveries of one state change (the rule's and the alarm action's) drain once."""
    return {
        "version": "0",
        "id": event.get("alarmArn", "") + "#" + str(event.get("time", "")),
        "detail-type": ALARM_DETAIL_TYPE,
        "source": "aws.cloudwatch",
        "account": event.get("accountId"),
        "time": event.get("time"),
        "region": event.get("region"),
        "resources": [event.get("alarmArn")],
        "detail": event["alarmData"],
    }


def parse_alarm_event(event: Any) -> AlarmEvent:
    """Validate an alarm state change and return its typed form.

    Two shapes: EventBridge's "CloudWatch Alarm State Change" event, and the payload an alarm's own
    Lambda action sends (``alarmData``; see :func:`from_alarm_action`).
    """
    if not isinstance(event, dict):
        raise EventError(f"malformed alarm event: expected a JSON object, got {type(event).__name__}")
    if "alarmData" in event and event.get("source") == "aws.cloudwatch":
        if not isinstance(event["alarmData"], dict):
            raise EventError("malformed alarm action payload: alarmData must be an object")
        event = from_alarm_action(event)
    detail_type = event.get("detail-type")
    if detail_type != ALARM_DETAIL_TYPE:
        raise EventError(
            f"malformed alarm event: detail-type is {detail_type!r}, expected {ALARM_DETAIL_TYPE!r}"
        )
    detail = _field(event, "detail", "event", dict)
    alarm_name = _field(detail, "alarmName", "detail", str)
    if not alarm_name:
        raise EventError("malformed alarm event: detail.alarmName is empty")
    state = _field(detail, "state", "detail", dict)
    value = _field(state, "value", "detail.state", str)
    if value not in ALARM_STATES:
        raise EventError(f"malformed alarm event: detail.state.value {value!r} is not one of {ALARM_STATES}")
    stamp = _field(state, "timestamp", "detail.state", str)
    try:
        state_at = clock.parse_iso(stamp)
    except ValueError as exc:
        raise EventError(f"malformed alarm event: detail.state.timestamp {stamp!r} is not ISO-8601") from exc
    reason = state.get("reason", "")
    configuration = detail.get("configuration", {})
    if not isinstance(configuration, dict):
        raise EventError("malformed alarm event: detail.configuration must be an object")
    description = configuration.get("description")
    endpoint, variant = _dimensions(configuration)
    previous = detail.get("previousState")
    return AlarmEvent(
        alarm_name=alarm_name,
        state=value,
        previous_state=previous.get("value") if isinstance(previous, dict) else None,
        state_at=state_at,
        reason=reason if isinstance(reason, str) else str(reason),
        description=description if isinstance(description, str) else None,
        endpoint=endpoint,
        variant=variant,
        region=event.get("region") if isinstance(event.get("region"), str) else None,
        event_id=event.get("id") if isinstance(event.get("id"), str) else None,
    )
