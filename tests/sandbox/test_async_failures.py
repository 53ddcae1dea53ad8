"""A rollback Lambda that keeps failing: Lambda's own retries, then its on-failure record in the DLQ.

EventBridge invokes the function asynchronously, so its target retry policy only covers delivery.
The sandbox, like AWS, retries a function *error* per the function's event-invoke config (1 then 2
minutes later) and then sends Lambda's on-failure record to the destination the program declares.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rollback.runtime import names
from rollback.sandbox.alarm_evaluator import AlarmChange
from rollback.sandbox.emulator import Emulator
from rollback.sandbox.eventbus import EventBus, alarm_event
from rollback.sandbox.runner import apply_program
from tests.infra.helpers import config_map, stack_values

REGION = "eu-west-1"
CANDIDATE_ALARM = "fraud-scorer-dev-candidate-errors"


class Clock:
    """A virtual clock the test moves by hand."""

    def __init__(self) -> None:
        self.at = datetime(2025, 7, 19, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture
def emulator():
    with Emulator(REGION) as emu:
        yield emu


def _applied(emu: Emulator, tmp_path: Path) -> None:
    apply_program(emu, stack="dev", config=config_map(stack_values()), state_path=tmp_path / "state.json")


def _candidate_alarm_event(emu: Emulator, clock: Clock) -> dict[str, Any]:
    cloudwatch = emu.client("cloudwatch")
    cloudwatch.set_alarm_state(AlarmName=CANDIDATE_ALARM, StateValue="ALARM", StateReason="drill")
    (alarm,) = cloudwatch.describe_alarms(AlarmNames=[CANDIDATE_ALARM])["MetricAlarms"]
    change = AlarmChange(
        name=CANDIDATE_ALARM,
        arn=alarm["AlarmArn"],
        old_state="OK",
        new_state="ALARM",
        old_reason="ok",
        reason="drill",
        reason_data="{}",
        at=clock(),
        old_at=clock() - timedelta(minutes=5),
        configuration=_configuration(alarm),
    )
    return alarm_event(change, REGION)


def _configuration(alarm: dict[str, Any]) -> dict[str, Any]:
    """The event's ``detail.configuration`` for a described alarm (metric queries with dimensions)."""
    metrics = []
    for query in alarm.get("Metrics", []):
        item: dict[str, Any] = {"id": query["Id"], "returnData": query.get("ReturnData", False)}
        if "Expression" in query:
            item["expression"] = query["Expression"]
        if "MetricStat" in query:
            stat = query["MetricStat"]
            item["metricStat"] = {
                "metric": {
                    "namespace": stat["Metric"]["Namespace"],
                    "name": stat["Metric"]["MetricName"],
                    "dimensions": {d["Name"]: d["Value"] for d in stat["Metric"]["Dimensions"]},
                },
                "period": stat["Period"],
                "stat": stat["Stat"],
            }
        metrics.append(item)
    return {"metrics": metrics}


def _dlq_messages(emu: Emulator) -> list[dict[str, Any]]:
    sqs = emu.client("sqs")
    url = sqs.get_queue_url(QueueName=names.dead_letter_queue_name("dev"))["QueueUrl"]
    out: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
        if not batch.get("Messages"):
            return out
        out.extend(batch["Messages"])
        for m in batch["Messages"]:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def _rollback_runs(bus: EventBus, rollback: str) -> list[bool]:
    """Outcomes of the rollback function's invocations that this schedule pass ran."""
    return [i.ok for i in bus.run_schedules() if i.function == rollback]


def _break_notifications(emu: Emulator) -> None:
    """The alert topic is gone: every drain attempt fails on its notification."""
    sns = emu.client("sns")
    (topic,) = [t["TopicArn"] for t in sns.list_topics()["Topics"] if t["TopicArn"].endswith("-alerts")]
    sns.delete_topic(TopicArn=topic)


def test_failing_rollback_is_invoked_three_times_then_its_event_reaches_the_dlq_once(
    emulator: Emulator, tmp_path: Path
) -> None:
    _applied(emulator, tmp_path)
    _break_notifications(emulator)
    clock = Clock()
    bus = EventBus(emulator, clock)
    event = _candidate_alarm_event(emulator, clock)
    rollback = names.rollback_function_name("dev")

    first = bus.publish(event)
    assert [(i.function, i.ok) for i in first] == [(rollback, False)]
    assert "NotFound" in (first[0].error or ""), first[0].error  # the missing topic, nothing else
    assert _dlq_messages(emulator) == []  # not yet: Lambda retries first, 1 then 2 minutes later
    clock.advance(59)
    assert _rollback_runs(bus, rollback) == []
    clock.advance(1)
    assert _rollback_runs(bus, rollback) == [False]
    clock.advance(119)
    assert _rollback_runs(bus, rollback) == []
    assert _dlq_messages(emulator) == []
    clock.advance(1)
    assert _rollback_runs(bus, rollback) == [False]

    assert len([i for i in bus.invocations if i.function == rollback]) == 3
    (message,) = _dlq_messages(emulator)
    record = json.loads(message["Body"])
    assert record["requestPayload"] == event
    context = record["requestContext"]
    assert context["condition"] == "RetriesExhausted"
    assert context["approximateInvokeCount"] == 3
    assert context["functionArn"].split(":function:")[1] == f"{rollback}:$LATEST"
    last = [i for i in bus.invocations if i.function == rollback][-1]
    assert record["responsePayload"] == {"errorMessage": last.error_message, "errorType": last.error_type}
    assert last.error_type  # a real exception class name from the handler
    assert bus.pending_retries == 0
    # Nothing more later: the event was given up once.
    clock.advance(3600)
    bus.run_schedules()
    assert _dlq_messages(emulator) == []


FAILING_HANDLER = "tests.sandbox.failing_handler.fail"


def _replace_handler(emu: Emulator, function: str) -> None:
    emu.client("lambda").update_function_configuration(FunctionName=function, Handler=FAILING_HANDLER)


def test_failed_stepper_tick_is_dropped_not_retried_and_never_reaches_the_dlq(
    emulator: Emulator, tmp_path: Path
) -> None:
    _applied(emulator, tmp_path)
    stepper = names.stepper_function_name("dev")
    _replace_handler(emulator, stepper)
    clock = Clock()
    bus = EventBus(emulator, clock)
    bus.run_schedules()  # the first tick is one period in
    clock.advance(60)

    (tick,) = [i for i in bus.run_schedules() if i.function == stepper]
    assert not tick.ok and tick.error_type == "DownstreamUnavailableError"
    clock.advance(59)  # before the next tick: a retry would have come at +60 s
    assert bus.run_schedules() == []
    assert bus.pending_retries == 0
    assert [(d["function"].split(":function:")[1], d["attempts"]) for d in bus.discarded] == [(stepper, 1)]
    assert _dlq_messages(emulator) == []


def test_undeliverable_alarm_event_goes_straight_to_the_dlq_without_invoking_or_retrying(
    emulator: Emulator, tmp_path: Path
) -> None:
    _applied(emulator, tmp_path)
    rollback = names.rollback_function_name("dev")
    lam = emulator.client("lambda")
    for statement in json.loads(lam.get_policy(FunctionName=rollback)["Policy"])["Statement"]:
        lam.remove_permission(FunctionName=rollback, StatementId=statement["Sid"])
    clock = Clock()
    bus = EventBus(emulator, clock)
    event = _candidate_alarm_event(emulator, clock)

    (delivery,) = bus.publish(event)
    clock.advance(3600)
    bus.run_schedules()

    assert not delivery.ok and delivery.api_calls == 0
    assert [i for i in bus.invocations if i.function == rollback and i.api_calls] == []
    (message,) = _dlq_messages(emulator)
    assert json.loads(message["Body"]) == event  # EventBridge keeps the event itself
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes["ERROR_CODE"] == "AccessDeniedException"
    assert attributes["RULE_ARN"].endswith(f"rule/{names.alarm_rule_name('dev', 1)}")


def test_event_older_than_the_max_age_is_given_up_with_event_age_exceeded(
    emulator: Emulator, tmp_path: Path
) -> None:
    _applied(emulator, tmp_path)
    rollback = names.rollback_function_name("dev")
    _replace_handler(emulator, rollback)
    lam = emulator.client("lambda")
    dlq_arn = lam.get_function_event_invoke_config(FunctionName=rollback)["DestinationConfig"]["OnFailure"][
        "Destination"
    ]
    lam.delete_function_event_invoke_config(FunctionName=rollback)
    lam.put_function_event_invoke_config(
        FunctionName=rollback,
        MaximumRetryAttempts=2,
        MaximumEventAgeInSeconds=60,
        DestinationConfig={"OnFailure": {"Destination": dlq_arn}},
    )
    clock = Clock()
    bus = EventBus(emulator, clock)
    event = _candidate_alarm_event(emulator, clock)

    bus.publish(event)
    clock.advance(300)  # the retry was due at +60 s, but nothing ran until the event was 5 minutes old
    assert [i for i in bus.run_schedules() if i.function == rollback] == []

    (message,) = _dlq_messages(emulator)
    record = json.loads(message["Body"])
    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["requestPayload"] == event
    assert record["responsePayload"] == {
        "errorMessage": "downstream unavailable",
        "errorType": "DownstreamUnavailableError",
    }
