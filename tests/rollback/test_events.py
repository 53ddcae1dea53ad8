"""Parsing of real-shaped alarm events and the alarm-description version marker."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rollback.runtime.errors import EventError
from rollback.runtime.events import parse_alarm_event, parse_marker
from tests.rollback.conftest import alarm_event

ALARM = "fraud-scorer-dev-candidate-errors"


def test_single_metric_event_gives_endpoint_variant_state_time_and_version() -> None:
    at = datetime(2026, 11, 25, 19, 49, 31, 123000, tzinfo=UTC)

    event = parse_alarm_event(alarm_event(ALARM, "fraud-scorer-dev", "candidate", at=at, version="v2"))

    assert (event.endpoint, event.variant, event.state, event.state_at) == (
        "fraud-scorer-dev",
        "candidate",
        "ALARM",
        at,
    )
    assert event.marker is not None and event.marker.version == "v2"
    assert event.idempotency_key == f"alarm#{ALARM}#2026-11-25T19:49:31.123Z"


def test_metric_math_event_takes_dimensions_from_its_metric_stats() -> None:
    event = parse_alarm_event(alarm_event(ALARM, "fraud-scorer-dev", "candidate", math=True))

    assert (event.endpoint, event.variant) == ("fraud-scorer-dev", "candidate")


def test_replays_of_one_state_change_share_the_idempotency_key() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    first = alarm_event(ALARM, "fraud-scorer-dev", "candidate", at=at)
    replay = {**alarm_event(ALARM, "fraud-scorer-dev", "candidate", at=at), "id": "another-event-id"}

    assert parse_alarm_event(first).idempotency_key == parse_alarm_event(replay).idempotency_key


def _broken(mutate) -> dict:
    event = alarm_event(ALARM, "fraud-scorer-dev", "candidate", math=True)
    mutate(event)
    return event


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ([], "expected a JSON object"),
        (_broken(lambda e: e.update({"detail-type": "Scheduled Event"})), "detail-type"),
        (_broken(lambda e: e.pop("detail")), "missing event.detail"),
        (_broken(lambda e: e["detail"].pop("alarmName")), "detail.alarmName"),
        (_broken(lambda e: e["detail"]["state"].update(value="RED")), "detail.state.value"),
        (_broken(lambda e: e["detail"]["state"].update(timestamp="yesterday")), "detail.state.timestamp"),
        (_broken(lambda e: e["detail"]["state"].pop("timestamp")), "detail.state.timestamp"),
        (_broken(lambda e: e["detail"]["configuration"].update(metrics={})), "metrics must be a list"),
        (
            _broken(
                lambda e: e["detail"]["configuration"]["metrics"][2]["metricStat"]["metric"].update(
                    dimensions={"EndpointName": "other-dev", "VariantName": "candidate"}
                )
            ),
            "different endpoint/variant pairs",
        ),
    ],
)
def test_malformed_events_raise_event_error_naming_the_field(event, message: str) -> None:
    with pytest.raises(EventError, match=message):
        parse_alarm_event(event)


def test_marker_is_read_from_the_last_marker_line() -> None:
    text = (
        "old text\nmlrollback: endpoint=e-dev role=candidate kpi=errors version=v1\n"
        "edited\nmlrollback: endpoint=e-dev role=candidate kpi=errors version=v2"
    )

    marker = parse_marker(text)

    assert marker is not None and (marker.endpoint, marker.role, marker.kpi, marker.version) == (
        "e-dev",
        "candidate",
        "errors",
        "v2",
    )
    assert parse_marker("mlrollback: endpoint=e-dev role=stable kpi=errors version=-").version is None
    assert parse_marker("no marker") is None and parse_marker(None) is None
