"""A drain cut off at any point is finished by the next delivery: crashes, lost answers, time budget."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from rollback.runtime import audit, handler, names
from rollback.runtime.clock import VirtualClock
from rollback.runtime.drain import drain
from rollback.runtime.errors import RetryExhaustedError
from rollback.runtime.events import parse_alarm_event
from rollback.runtime.retry import RetryPolicy
from rollback.runtime.routing import handle_alarm
from tests.rollback.conftest import Faulty, Killed, World, alarm_event, instant_retry, killed_in

ACTOR = "lambda:mlrollback-dev-rollback"


def handle(world: World, event: dict, **kwargs: Any) -> dict:
    kwargs.setdefault("retry", instant_retry())
    return handle_alarm(world.clients, world.settings, parse_alarm_event(event), actor=ACTOR, **kwargs)


def candidate_event(world: World, **kwargs: Any) -> dict:
    return alarm_event(
        names.alarm_name(world.endpoint, names.CANDIDATE, "errors"), world.endpoint, "candidate", **kwargs
    )


def test_delivery_killed_before_its_message_is_finished_by_the_next_one_with_one_message(
    world: World, vclock: VirtualClock
) -> None:
    event = candidate_event(world)
    world.clients.sns = killed_in(world.clients.sns, "publish")
    with pytest.raises(Killed):
        handle(world, event)
    assert world.weights()["candidate"] == 0.0 and world.quarantine() is None
    world.clients.sns = world.clients.sns._client
    vclock.advance(60)  # Lambda retries the event a minute later (the function timed out)

    retried = handle(world, event)
    world.log.reset()
    again = handle(world, event)

    assert retried["action"] == "completed" and retried["followUps"] == ["notify", "quarantine"]
    assert world.quarantine()["version"] == "v2"
    assert len(world.messages()) == 1 and len(world.audit_items()) == 1
    assert again["action"] == "duplicate" and world.log.count <= 2


def test_delivery_killed_while_writing_the_quarantine_is_finished_and_may_repeat_the_message(
    world: World, vclock: VirtualClock
) -> None:
    event = candidate_event(world)
    world.clients.ssm = killed_in(world.clients.ssm, "put_parameter")
    with pytest.raises(Killed):
        handle(world, event)
    world.clients.ssm = world.clients.ssm._client
    vclock.advance(60)  # Lambda retries the event a minute later (the function timed out)

    retried = handle(world, event)

    assert retried["action"] == "completed"
    record = world.quarantine()
    assert record["version"] == "v2" and record["idempotencyKey"] == parse_alarm_event(event).idempotency_key
    # At-least-once in this window (docs/runtime.md): the repeat carries the same key to drop it by.
    messages = world.messages()
    assert len(messages) == 2
    assert messages[0]["body"] == messages[1]["body"]
    assert messages[0]["body"]["idempotencyKey"] == record["idempotencyKey"]
    assert len(world.audit_items()) == 1


class CommitThenLoseResponse(Faulty):
    """TransactWriteItems commits, its answer is lost, and botocore sends the same request again."""

    def transact_write_items(self, **kwargs: Any) -> Any:
        self._client.transact_write_items(**kwargs)
        return self._client.transact_write_items(**kwargs)


def test_lost_answer_of_the_audit_commit_still_quarantines_and_notifies(world: World) -> None:
    world.clients.dynamodb = CommitThenLoseResponse(world.clients.dynamodb)

    result = handle(world, candidate_event(world))

    assert result["action"] == "drained"
    assert world.quarantine()["version"] == "v2"
    assert len(world.messages()) == 1 and len(world.audit_items()) == 1
    [params] = world.log.params("TransactWriteItems")[:1]
    assert 0 < len(params["ClientRequestToken"]) <= 36  # DynamoDB's own idempotency for that retry


def test_worst_case_retries_stop_at_the_time_budget_and_the_next_delivery_completes(
    world: World, vclock: VirtualClock
) -> None:
    sm, ddb, ssm = (
        Faulty(world.clients.sagemaker),
        Faulty(world.clients.dynamodb),
        Faulty(world.clients.ssm),
    )
    world.clients.sagemaker, world.clients.dynamodb, world.clients.ssm = sm, ddb, ssm
    sm.rewrite("describe_endpoint", lambda r: {**r, "EndpointStatus": "Updating"}, 5)
    sm.fail("update_endpoint_weights_and_capacities", "ThrottlingException", 5)
    ddb.fail("transact_write_items", "ProvisionedThroughputExceededException", 5)
    ssm.fail("put_parameter", "ThrottlingException", 5)
    worst = RetryPolicy(rng=lambda _low, high: high)  # default attempts, cap and budget; maximal jitter
    event = candidate_event(world)
    start = vclock.now()

    with pytest.raises(RetryExhaustedError, match="time budget is spent"):
        handle(world, event, retry=worst)

    slept = (vclock.now() - start).total_seconds()
    assert slept <= worst.budget < 60  # never outlives the 60 s function timeout
    assert world.weights()["candidate"] == 0.0 and world.quarantine() is None

    retried = handle(world, event, retry=worst)

    assert retried["action"] == "completed"
    assert world.quarantine()["version"] == "v2" and len(world.messages()) == 1
    [item] = world.audit_items()
    assert item["outcome"] == "done" and item["detail"]["weightsAlreadyZero"] is True


def test_lambda_handler_bounds_retries_by_the_remaining_time(world: World, vclock: VirtualClock) -> None:
    class Context:
        function_name = "mlrollback-dev-rollback"

        @staticmethod
        def get_remaining_time_in_millis() -> int:
            return 18_000

    policy = handler._retry(Context(), RetryPolicy(rng=lambda _low, high: high))
    sm = Faulty(world.clients.sagemaker)
    sm.rewrite("describe_endpoint", lambda r: {**r, "EndpointStatus": "Updating"}, 100)
    world.clients.sagemaker = sm
    start = vclock.now()

    assert policy.deadline == start + timedelta(seconds=18 - handler.SAFETY_MARGIN_SECONDS)
    with pytest.raises(RetryExhaustedError, match="time budget"):
        handle(world, candidate_event(world), retry=policy)
    assert (vclock.now() - start).total_seconds() <= 18 - handler.SAFETY_MARGIN_SECONDS


def test_endpoint_busy_on_every_retry_of_one_event_records_one_failed_item(world: World) -> None:
    sm = Faulty(world.clients.sagemaker)
    sm.rewrite("describe_endpoint", lambda r: {**r, "EndpointStatus": "Updating"}, 100)
    world.clients.sagemaker = sm
    event = candidate_event(world)

    for _ in range(3):  # the first try and Lambda's two retries
        with pytest.raises(RetryExhaustedError):
            handle(world, event, retry=instant_retry(2))

    [failed] = world.audit_items()
    assert failed["outcome"] == "failed" and "stayed Updating" in failed["detail"]["error"]


def test_late_alarm_naming_a_version_just_finalized_is_skipped_on_the_idle_candidate(world: World) -> None:
    physical = world.add_endpoint("idle-scorer", stable=100.0, candidate=0.0)
    world.put_plan(physical, stable="v2", candidate=None, steps=[])  # v2 was finalized: now stable
    alarm = world.add_alarm(physical, names.CANDIDATE, "errors", None)
    late = alarm_event(alarm, physical, names.CANDIDATE, version="v2")  # fired while v2 was the candidate

    result = handle(world, late)

    assert result["action"] == "skipped" and "idle" in result["reason"]
    assert world.quarantine(physical) is None  # quarantining v2 now would quarantine the stable model
    assert world.audit_items(physical) == [] and world.messages() == []


def test_replayed_alarm_about_an_older_candidate_is_skipped_without_records(world: World) -> None:
    world.put_plan(world.endpoint, candidate="v3")
    world.raw["sagemaker"].update_endpoint_weights_and_capacities(
        EndpointName=world.endpoint,
        DesiredWeightsAndCapacities=[
            {"VariantName": "stable", "DesiredWeight": 100.0},
            {"VariantName": "candidate", "DesiredWeight": 0.0},
        ],
    )

    result = handle(world, candidate_event(world, version="v2"))

    assert result["action"] == "skipped" and "released candidate is v3" in result["reason"]
    assert world.quarantine() is None and world.audit_items() == [] and world.messages() == []


def test_stable_alarm_killed_before_its_message_is_finished_by_the_next_delivery(world: World) -> None:
    event = alarm_event(
        names.alarm_name(world.endpoint, "stable", "errors"), world.endpoint, "stable", version="v1"
    )
    world.clients.sns = killed_in(world.clients.sns, "publish")
    with pytest.raises(Killed):
        handle(world, event)
    world.clients.sns = world.clients.sns._client

    retried = handle(world, event)
    world.log.reset()
    again = handle(world, event)

    assert retried["action"] == "completed" and retried["followUps"] == ["notify"]
    assert again["action"] == "duplicate" and world.log.count == 1
    assert len(world.messages()) == 1 and len(world.audit_items()) == 1
    assert world.weights() == {"stable": 90.0, "candidate": 10.0}


def test_long_manual_reason_is_capped_in_the_quarantine_record_and_kept_whole_in_the_audit(
    world: World,
) -> None:
    reason = "model returns NaN for every German locale request; " * 100  # ~5 KB

    result = drain(world.clients, world.settings, world.endpoint, actor="cli:alice", reason=reason)

    assert result["action"] == "drained"
    record = world.quarantine()
    assert record["reason"].endswith("...") and len(record["reason"]) <= 1000
    [item] = world.audit_items()
    assert item["reason"] == reason
    assert world.messages()[0]["body"]["reason"] == reason


def test_commit_of_the_same_item_twice_is_written_and_another_item_is_a_duplicate(world: World) -> None:
    ddb, table = world.raw["dynamodb"], world.settings.audit_table

    def item() -> audit.AuditItem:
        return audit.AuditItem(endpoint="e-dev", action="drain", actor="t", idempotency_key="k")

    first = item()
    results = [
        audit.commit(ddb, table, first, followups={"notify": {"subject": "s"}}),
        audit.commit(ddb, table, first),
    ]
    other = audit.commit(ddb, table, item())

    assert [r.written for r in results] == [True, True]  # the repeat is our own lost-answer retry
    assert other.written is False and other.guard is not None
    assert other.guard["auditAt"] == first.at
    assert audit.guard_followups(other.guard) == {"notify": {"subject": "s"}}
    assert len(audit.query(ddb, table, "e-dev")[0]) == 1
