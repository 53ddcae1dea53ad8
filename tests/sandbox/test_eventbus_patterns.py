"""EventBridge pattern matching in the sandbox bus: what a rule delivers and what it must not."""

from __future__ import annotations

from typing import Any

import pytest

from rollback.runtime.errors import SandboxError
from rollback.sandbox.eventbus import matches, rate_seconds


def _alarm_event(name: str = "fraud-scorer-dev-candidate-errors", state: str = "ALARM") -> dict[str, Any]:
    return {
        "source": "aws.cloudwatch",
        "detail-type": "CloudWatch Alarm State Change",
        "resources": ["arn:aws:cloudwatch:eu-west-1:123456789012:alarm:" + name],
        "detail": {"alarmName": name, "state": {"value": state}, "previousState": {"value": "OK"}},
    }


def test_nested_fields_must_all_match() -> None:
    pattern = {"source": ["aws.cloudwatch"], "detail": {"state": {"value": ["ALARM"]}}}

    assert matches(pattern, _alarm_event(state="ALARM"))
    assert not matches(pattern, _alarm_event(state="OK"))
    assert not matches({**pattern, "source": ["aws.events"]}, _alarm_event())


def test_any_listed_value_matches_and_array_event_fields_match_on_any_element() -> None:
    event = _alarm_event()

    assert matches({"detail": {"state": {"value": ["OK", "ALARM"]}}}, event)
    assert matches({"resources": [event["resources"][0]]}, event)
    assert not matches({"resources": ["arn:aws:cloudwatch:eu-west-1:123456789012:alarm:other"]}, event)


def test_prefix_and_suffix_match_strings_only() -> None:
    event = _alarm_event("fraud-scorer-dev-candidate-errors")

    assert matches({"detail": {"alarmName": [{"prefix": "fraud-scorer-dev-"}]}}, event)
    assert not matches({"detail": {"alarmName": [{"prefix": "fraud-scorer-prod-"}]}}, event)
    assert matches({"detail": {"alarmName": [{"suffix": "-errors"}]}}, event)
    assert not matches({"detail": {"alarmName": [{"suffix": "-latency"}]}}, event)


def test_anything_but_excludes_listed_values_and_prefixes() -> None:
    event = _alarm_event(state="ALARM")

    assert not matches({"detail": {"state": {"value": [{"anything-but": ["ALARM"]}]}}}, event)
    assert matches({"detail": {"state": {"value": [{"anything-but": "OK"}]}}}, event)
    assert not matches({"detail": {"alarmName": [{"anything-but": {"prefix": "fraud-"}}]}}, event)
    assert matches({"detail": {"alarmName": [{"anything-but": {"prefix": "churn-"}}]}}, event)


def test_exists_tests_presence_not_value() -> None:
    event = _alarm_event()

    assert matches({"detail": {"alarmName": [{"exists": True}]}}, event)
    assert not matches({"detail": {"configuration": [{"exists": True}]}}, event)
    assert matches({"detail": {"configuration": [{"exists": False}]}}, event)
    assert not matches({"detail": {"alarmName": [{"exists": False}]}}, event)


def test_numeric_ranges() -> None:
    event = {"detail": {"errors": 7}}

    assert matches({"detail": {"errors": [{"numeric": [">", 5, "<=", 7]}]}}, event)
    assert not matches({"detail": {"errors": [{"numeric": [">", 7]}]}}, event)
    assert not matches({"detail": {"errors": [{"numeric": [">", 1]}]}}, {"detail": {"errors": "7"}})


def test_a_missing_field_never_matches_a_value_or_a_nested_pattern() -> None:
    assert not matches({"detail": {"alarmName": ["x"]}}, {"detail": {}})
    assert not matches({"detail": {"state": {"value": ["ALARM"]}}}, {"source": "aws.cloudwatch"})


def test_unsupported_operator_is_a_clear_error() -> None:
    with pytest.raises(SandboxError, match="wildcard"):
        matches({"detail": {"alarmName": [{"wildcard": "*-errors"}]}}, _alarm_event())


def test_rate_expressions_in_seconds_and_cron_refused() -> None:
    assert rate_seconds("rate(1 minute)") == 60
    assert rate_seconds("rate(5 minutes)") == 300
    assert rate_seconds("rate(2 hours)") == 7200
    with pytest.raises(SandboxError, match="cron"):
        rate_seconds("cron(0 12 * * ? *)")
