"""Operator functions the CLI uses (status, history, clear-quarantine) and retry classification."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from rollback.ops.status import clear_quarantine, endpoint_status, history
from rollback.runtime import names
from rollback.runtime.drain import drain
from rollback.runtime.errors import NotFoundError
from rollback.runtime.events import parse_alarm_event
from rollback.runtime.retry import is_retryable
from rollback.runtime.routing import handle_alarm
from tests.rollback.conftest import World, alarm_event


def test_status_shows_weights_alarms_plan_progress_and_quarantine(world: World) -> None:
    plan = world.put_plan(world.endpoint)
    alarm = names.alarm_name(world.endpoint, names.CANDIDATE, "errors")
    world.set_alarm(alarm, "ALARM")
    drain(world.clients, world.settings, world.endpoint, actor="cli:alice", reason="bad outputs")

    status = endpoint_status(world.clients, world.settings, "fraud-scorer")

    assert status["endpoint"] == world.endpoint and status["status"] == "InService"
    assert status["percents"] == {"stable": 100.0, "candidate": 0.0}
    by_name = {a["name"]: a for a in status["alarms"]}
    assert by_name[alarm]["state"] == "ALARM" and by_name[alarm]["version"] == "v2"
    assert by_name[names.alarm_name(world.endpoint, names.STABLE, "errors")]["role"] == "stable"
    assert status["plan"]["planId"] == plan["planId"]
    assert status["progress"] is None
    assert status["quarantine"]["kind"] == "manual"


def test_status_of_unknown_endpoint_is_not_found(world: World) -> None:
    with pytest.raises(NotFoundError, match="nope-dev does not exist"):
        endpoint_status(world.clients, world.settings, "nope")


def test_clear_quarantine_deletes_the_record_and_audits_it(world: World, vclock) -> None:
    event = alarm_event(
        names.alarm_name(world.endpoint, names.CANDIDATE, "errors"), world.endpoint, "candidate"
    )
    handle_alarm(world.clients, world.settings, parse_alarm_event(event), actor="lambda:x")
    vclock.advance(1)  # audit order is by time; two actions in one virtual millisecond have no order

    result = clear_quarantine(world.clients, world.settings, world.endpoint, actor="cli:bob", reason="fixed")

    assert result["version"] == "v2" and world.quarantine() is None
    items, _ = history(world.clients, world.settings, world.endpoint)
    assert [h["action"] for h in items] == ["clear-quarantine", "drain"]
    with pytest.raises(NotFoundError, match="no quarantine record"):
        clear_quarantine(world.clients, world.settings, world.endpoint, actor="cli:bob", reason="again")


@pytest.mark.parametrize(
    ("code", "message", "reasons", "retryable"),
    [
        ("ThrottlingException", "Rate exceeded", None, True),
        ("ValidationException", 'Cannot update in-progress endpoint "arn:aws:sagemaker:..."', None, True),
        ("ValidationException", "Could not find endpoint", None, False),
        ("TransactionCanceledException", "cancelled", [{"Code": "TransactionConflict"}], True),
        ("TransactionCanceledException", "cancelled", [{"Code": "ConditionalCheckFailed"}], False),
        ("AccessDeniedException", "no", None, False),
    ],
)
def test_retry_classification(code: str, message: str, reasons, retryable: bool) -> None:
    response = {"Error": {"Code": code, "Message": message}}
    if reasons:
        response["CancellationReasons"] = reasons

    assert is_retryable(ClientError(response, "Op")) is retryable
