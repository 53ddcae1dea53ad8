"""The rollback Lambda's drain path against moto: effects, call budget, duplicates, failures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rollback.runtime import names
from rollback.runtime.drain import drain
from rollback.runtime.errors import EventError, FollowUpError, RetryExhaustedError
from rollback.runtime.events import parse_alarm_event
from rollback.runtime.routing import handle_alarm
from rollback.runtime.settings import Settings
from tests.rollback.conftest import Faulty, World, alarm_event, instant_retry

ACTOR = "lambda:mlrollback-dev-rollback"


def candidate_alarm(world: World) -> str:
    return names.alarm_name(world.endpoint, names.CANDIDATE, "errors")


def stable_alarm(world: World) -> str:
    return names.alarm_name(world.endpoint, names.STABLE, "errors")


def handle(world: World, event: dict, **kwargs) -> dict:
    return handle_alarm(world.clients, world.settings, parse_alarm_event(event), actor=ACTOR, **kwargs)


def test_candidate_alarm_drains_candidate_to_stable_in_five_calls(world: World) -> None:
    result = handle(world, alarm_event(candidate_alarm(world), world.endpoint, names.CANDIDATE))

    assert result["action"] == "drained"
    assert world.weights() == {"stable": 100.0, "candidate": 0.0}
    assert world.log.count <= 5, world.log.ops()
    assert world.log.ops() == {
        "DescribeEndpoint": 1,
        "UpdateEndpointWeightsAndCapacities": 1,
        "TransactWriteItems": 1,
        "PutParameter": 1,
        "Publish": 1,
    }
    [update] = world.log.params("UpdateEndpointWeightsAndCapacities")
    assert {v["VariantName"] for v in update["DesiredWeightsAndCapacities"]} == {"stable", "candidate"}


def test_drain_writes_quarantine_audit_and_one_message_with_weights(world: World) -> None:
    alarm = candidate_alarm(world)
    handle(world, alarm_event(alarm, world.endpoint, names.CANDIDATE, version="v2"))

    record = world.quarantine()
    assert record is not None
    assert (record["endpoint"], record["version"], record["variant"], record["alarm"], record["kind"]) == (
        world.endpoint,
        "v2",
        "candidate",
        alarm,
        "auto",
    )
    assert record["by"] == ACTOR and record["reason"].startswith("Threshold Crossed")
    [item] = world.audit_items()
    assert item["action"] == "drain" and item["outcome"] == "done" and item["version"] == "v2"
    assert item["weightsBefore"] == {"stable": 90, "candidate": 10}
    assert item["weightsAfter"] == {"stable": 100, "candidate": 0}
    [message] = world.messages()
    assert message["subject"] == f"[mlrollback] dev: rolled back v2 on {world.endpoint}"
    assert message["body"]["weightsAfter"] == {"stable": 100.0, "candidate": 0.0}
    assert message["body"]["alarm"] == alarm and message["body"]["nextSteps"]


def test_metric_math_alarm_event_drains_the_variant_of_its_metrics(world: World) -> None:
    result = handle(world, alarm_event(candidate_alarm(world), world.endpoint, names.CANDIDATE, math=True))

    assert result["action"] == "drained"
    assert world.weights()["candidate"] == 0.0


def test_fifty_duplicate_deliveries_drain_record_and_notify_once(world: World) -> None:
    event = alarm_event(candidate_alarm(world), world.endpoint, names.CANDIDATE)
    handle(world, event)
    world.log.reset()

    per_duplicate = []
    for _ in range(49):
        before = world.log.count
        assert handle(world, event)["action"] == "duplicate"
        per_duplicate.append(world.log.count - before)

    assert max(per_duplicate) <= 2
    assert world.log.ops()["UpdateEndpointWeightsAndCapacities"] == 0
    assert len(world.audit_items()) == 1
    assert len(world.messages()) == 1


def test_duplicate_racing_past_describe_still_leaves_one_item_and_message(world: World) -> None:
    event = alarm_event(candidate_alarm(world), world.endpoint, names.CANDIDATE)
    handle(world, event)
    # The second delivery read DescribeEndpoint before the first one's update landed.
    sm = Faulty(world.clients.sagemaker)
    stale = {"stable": 90.0, "candidate": 10.0}

    def before_drain(response: dict) -> dict:
        for v in response["ProductionVariants"]:
            v["CurrentWeight"] = stale[v["VariantName"]]
        return response

    sm.rewrite("describe_endpoint", before_drain, times=1)
    world.clients.sagemaker = sm

    result = handle(world, event)

    assert result["action"] == "duplicate"
    assert world.weights() == {"stable": 100.0, "candidate": 0.0}
    assert len(world.audit_items()) == 1
    assert len(world.messages()) == 1


def test_stable_alarm_notifies_once_and_never_changes_weights(world: World) -> None:
    event = alarm_event(stable_alarm(world), world.endpoint, names.STABLE, version="v1")

    first = handle(world, event)
    world.log.reset()
    second = handle(world, event)

    assert first["action"] == "notified" and second["action"] == "duplicate"
    assert world.log.count <= 2
    assert world.weights() == {"stable": 90.0, "candidate": 10.0}
    [item] = world.audit_items()
    assert item["action"] == "notify" and item["variant"] == "stable" and item["version"] == "v1"
    [message] = world.messages()
    assert "stable v1 is failing" in message["subject"]
    assert world.quarantine() is None


def test_alarms_on_candidate_and_stable_at_once_drain_candidate_only_and_keep_traffic(world: World) -> None:
    at = datetime.now(UTC) + timedelta(seconds=1)
    events = [
        alarm_event(stable_alarm(world), world.endpoint, names.STABLE, at=at, version="v1"),
        alarm_event(candidate_alarm(world), world.endpoint, names.CANDIDATE, at=at),
        alarm_event(stable_alarm(world), world.endpoint, names.STABLE, at=at, version="v1"),
    ]

    actions = [handle(world, e)["action"] for e in events]

    assert actions == ["notified", "drained", "duplicate"]
    weights = world.weights()
    assert weights == {"stable": 100.0, "candidate": 0.0}
    assert sorted(i["action"] for i in world.audit_items()) == ["drain", "notify"]
    assert len(world.messages()) == 2


def test_candidate_already_at_zero_and_quarantined_is_skipped_without_writes(world: World) -> None:
    handle(world, alarm_event(candidate_alarm(world), world.endpoint, names.CANDIDATE))
    latency = world.add_alarm(world.endpoint, names.CANDIDATE, "latency", "v2")
    world.messages()
    world.log.reset()

    result = handle(world, alarm_event(latency, world.endpoint, names.CANDIDATE))

    assert result["action"] == "skipped" and "quarantined" in result["reason"]
    assert set(world.log.ops()) <= {"DescribeEndpoint", "GetItem", "GetParameter"}
    assert len(world.audit_items()) == 1 and world.messages() == []


@pytest.mark.parametrize("state", ["OK", "INSUFFICIENT_DATA"])
def test_non_alarm_states_change_nothing_and_say_why(world: World, state: str) -> None:
    result = handle(world, alarm_event(candidate_alarm(world), world.endpoint, names.CANDIDATE, state=state))

    assert result["action"] == "skipped" and state in result["reason"]
    assert world.log.count == 0
    assert world.weights() == {"stable": 90.0, "candidate": 10.0}


def test_foreign_alarm_name_and_other_stack_change_nothing(world: World) -> None:
    foreign = alarm_event("ServerCpuTooHigh", world.endpoint, names.CANDIDATE)
    other = alarm_event("fraud-scorer-prod-candidate-errors", "fraud-scorer-prod", names.CANDIDATE)

    results = [handle(world, foreign), handle(world, other)]

    assert [r["action"] for r in results] == ["skipped", "skipped"]
    assert "not an mlrollback alarm" in results[0]["reason"]
    assert "another stack" in results[1]["reason"]
    assert world.log.count == 0


def test_alarm_whose_metrics_disagree_with_its_name_is_an_event_error(world: World) -> None:
    event = alarm_event(candidate_alarm(world), world.endpoint, names.STABLE)

    with pytest.raises(EventError, match="its metrics watch"):
        handle(world, event)
    assert world.log.count == 0


def test_endpoint_updating_for_a_few_attempts_then_drains(world: World, vclock) -> None:
    sm = Faulty(world.clients.sagemaker)
    sm.rewrite("describe_endpoint", lambda r: {**r, "EndpointStatus": "Updating"}, times=2)
    sm.fail(
        "update_endpoint_weights_and_capacities",
        "ValidationException",
        1,
        "Cannot update in-progress endpoint",
    )
    world.clients.sagemaker = sm

    result = handle(
        world, alarm_event(candidate_alarm(world), world.endpoint, names.CANDIDATE), retry=instant_retry(4)
    )

    assert result["action"] == "drained"
    assert world.weights()["candidate"] == 0.0
    assert vclock.slept == [0.5, 1.0, 0.5]  # two busy describes, one busy update; full jitter at its max


def test_the_alarm_action_payload_of_the_same_state_change_is_a_duplicate_of_the_rule_event(
    world: World,
) -> None:
    """An alarm reaches the function twice: through the EventBridge rule and through its own Lambda
    action (CloudWatch's ``alarmData`` payload). One drain, one record, one message."""
    event = alarm_event(candidate_alarm(world), world.endpoint, names.CANDIDATE)
    action = {
        "source": "aws.cloudwatch",
        "alarmArn": f"arn:aws:cloudwatch:eu-west-1:123456789012:alarm:{candidate_alarm(world)}",
        "accountId": "123456789012",
        "time": event["detail"]["state"]["timestamp"],
        "region": "eu-west-1",
        "alarmData": event["detail"],
    }
    assert parse_alarm_event(action).idempotency_key == parse_alarm_event(event).idempotency_key

    first = handle(world, action)
    second = handle(world, event)

    assert first["action"] == "drained" and second["action"] == "duplicate"
    assert [i["outcome"] for i in world.audit_items()] == ["done"] and len(world.messages()) == 1


def test_a_malformed_alarm_action_payload_is_an_event_error() -> None:
    with pytest.raises(EventError, match="alarmData must be an object"):
        parse_alarm_event({"source": "aws.cloudwatch", "alarmData": "ALARM"})


def test_second_alarm_while_our_drain_is_still_updating_is_not_waited_out(world: World, vclock) -> None:
    """SageMaker keeps the endpoint Updating after the drain's weights call (the weights still the
    old ones, DesiredWeight the new): the bad canary's second alarm arrives in that window. Before,
    it waited the retry budget out and recorded a failed drain for a drain that was happening."""
    handle(world, alarm_event(candidate_alarm(world), world.endpoint, names.CANDIDATE))

    def updating(response: dict) -> dict:
        variants = [
            {**v, "CurrentWeight": 0.9 if v["VariantName"] == "stable" else 0.1}
            for v in response["ProductionVariants"]
        ]
        return {**response, "EndpointStatus": "Updating", "ProductionVariants": variants}

    sm = Faulty(world.clients.sagemaker)
    sm.rewrite("describe_endpoint", updating, times=100)
    world.clients.sagemaker = sm
    latency = names.alarm_name(world.endpoint, names.CANDIDATE, "latency")

    result = handle(world, alarm_event(latency, world.endpoint, names.CANDIDATE), retry=instant_retry(4))

    assert vclock.slept == []  # nothing waited for
    assert result["action"] in ("skipped", "duplicate"), result
    assert [i["outcome"] for i in world.audit_items()] == ["done"]  # no failed drain recorded
    assert len(world.messages()) == 1


def test_endpoint_updating_towards_other_weights_is_still_waited_for(world: World, vclock) -> None:
    """A busy endpoint whose desired weights still give the candidate traffic (a canary step being
    applied) is waited for, as before: only a drain in flight is taken as done."""
    sm = Faulty(world.clients.sagemaker)
    sm.rewrite("describe_endpoint", lambda r: {**r, "EndpointStatus": "Updating"}, times=1)
    world.clients.sagemaker = sm

    result = handle(
        world, alarm_event(candidate_alarm(world), world.endpoint, names.CANDIDATE), retry=instant_retry(4)
    )

    assert result["action"] == "drained" and vclock.slept == [0.5]


def test_endpoint_updating_until_retries_run_out_raises_and_records_nothing_as_done(
    world: World, vclock
) -> None:
    sm = Faulty(world.clients.sagemaker)
    sm.rewrite("describe_endpoint", lambda r: {**r, "EndpointStatus": "Updating"}, times=100)
    world.clients.sagemaker = sm
    event = alarm_event(candidate_alarm(world), world.endpoint, names.CANDIDATE)

    with pytest.raises(RetryExhaustedError, match="stayed Updating"):
        handle(world, event, retry=instant_retry(4))

    assert len(vclock.slept) == 3 and sum(vclock.slept) <= 0.5 + 1 + 2
    assert world.weights() == {"stable": 90.0, "candidate": 10.0}
    assert world.quarantine() is None and world.messages() == []
    [failed] = world.audit_items()
    assert failed["outcome"] == "failed" and "stayed Updating" in failed["detail"]["error"]


def test_throttled_update_is_retried_then_exhaustion_records_a_failed_item(world: World) -> None:
    sm = Faulty(world.clients.sagemaker)
    sm.fail("update_endpoint_weights_and_capacities", "ThrottlingException", times=2)
    world.clients.sagemaker = sm
    ok = handle(
        world, alarm_event(candidate_alarm(world), world.endpoint, names.CANDIDATE), retry=instant_retry(4)
    )
    assert ok["action"] == "drained"

    other = world.add_endpoint("churn")
    sm.fail("update_endpoint_weights_and_capacities", "ThrottlingException", times=10)
    alarm = names.alarm_name(other, names.CANDIDATE, "errors")
    with pytest.raises(RetryExhaustedError, match="ThrottlingException"):
        handle(world, alarm_event(alarm, other, names.CANDIDATE), retry=instant_retry(3))

    assert world.weights(other) == {"stable": 90.0, "candidate": 10.0}
    [failed] = world.audit_items(other)
    assert failed["outcome"] == "failed" and "ThrottlingException" in failed["detail"]["error"]
    assert world.quarantine(other) is None


def test_publish_failure_after_audit_is_finished_by_the_next_delivery(world: World) -> None:
    sns = Faulty(world.clients.sns)
    sns.fail("publish", "ThrottlingException", times=3)
    world.clients.sns = sns
    event = alarm_event(candidate_alarm(world), world.endpoint, names.CANDIDATE)

    with pytest.raises(FollowUpError, match="drain is done and recorded, but notify failed") as failed:
        handle(world, event, retry=instant_retry(3))
    assert isinstance(failed.value.__cause__, RetryExhaustedError)
    # The quarantine is written anyway (it keeps `pulumi up` from re-promoting) and says what is owed.
    assert world.messages() == [] and world.quarantine()["pending"] == ["notify"]

    retried = handle(world, event, retry=instant_retry(3))
    world.log.reset()
    again = handle(world, event, retry=instant_retry(3))

    assert retried["action"] == "completed" and retried["followUps"] == ["notify", "quarantine"]
    assert "pending" not in world.quarantine()
    assert again["action"] == "duplicate" and world.log.count <= 2
    assert len(world.messages()) == 1 and len(world.audit_items()) == 1


def test_audit_failure_after_drain_is_completed_by_the_next_delivery(world: World) -> None:
    ddb = Faulty(world.clients.dynamodb)
    ddb.fail("transact_write_items", "ProvisionedThroughputExceededException", times=3)
    world.clients.dynamodb = ddb
    event = alarm_event(candidate_alarm(world), world.endpoint, names.CANDIDATE)

    with pytest.raises(RetryExhaustedError):
        handle(world, event, retry=instant_retry(3))
    assert world.weights()["candidate"] == 0.0 and world.quarantine() is None

    retried = handle(world, event, retry=instant_retry(3))

    assert retried["action"] == "completed"
    assert world.quarantine()["version"] == "v2"
    done = [i for i in world.audit_items() if i["outcome"] == "done"]
    assert len(done) == 1 and done[0]["detail"]["weightsAlreadyZero"] is True
    assert len(world.messages()) == 1


def test_stale_replay_after_endpoint_changed_and_alarm_recovered_is_skipped(world: World) -> None:
    alarm = candidate_alarm(world)
    world.set_alarm(alarm, "OK")
    old = datetime.now(UTC) - timedelta(hours=1)  # before the endpoint's LastModifiedTime

    result = handle(world, alarm_event(alarm, world.endpoint, names.CANDIDATE, at=old))

    assert result["action"] == "skipped" and "stale replay" in result["reason"]
    assert world.weights() == {"stable": 90.0, "candidate": 10.0}
    assert world.audit_items() == []


def test_old_state_change_with_alarm_still_firing_drains_with_current_version(world: World) -> None:
    alarm = candidate_alarm(world)
    world.set_alarm(alarm, "ALARM")
    old = datetime.now(UTC) - timedelta(hours=1)

    result = handle(world, alarm_event(alarm, world.endpoint, names.CANDIDATE, at=old, version="v0-old"))

    assert result["action"] == "drained"
    assert world.quarantine()["version"] == "v2"  # from the alarm's current description marker


def test_missing_marker_takes_version_from_rollout_plan(world: World) -> None:
    world.put_plan(world.endpoint, candidate="v7")
    event = alarm_event(candidate_alarm(world), world.endpoint, names.CANDIDATE, description="no marker here")

    handle(world, event)

    assert world.quarantine()["version"] == "v7"
    assert world.log.ops()["GetParameter"] == 1


def test_manual_drain_uses_the_same_path_and_records_the_actor(world: World) -> None:
    world.put_plan(world.endpoint)

    result = drain(world.clients, world.settings, "fraud-scorer", actor="cli:alice", reason="bad outputs")

    assert result["action"] == "drained" and result["endpoint"] == world.endpoint
    [item] = world.audit_items()
    assert item["actor"] == "cli:alice" and item["detail"]["kind"] == "manual"
    assert world.quarantine()["kind"] == "manual"
    with pytest.raises(ValueError, match="needs a reason"):
        drain(world.clients, world.settings, world.endpoint, actor="cli:alice", reason=" ")


def test_manual_drain_without_a_topic_setting_notifies_the_stack_topic(world: World) -> None:
    cli_settings = Settings.for_stack("dev")  # the CLI knows the stack, not the account

    drain(world.clients, cli_settings, world.endpoint, actor="cli:alice", reason="bad outputs")

    [message] = world.messages()
    assert message["body"]["by"] == "cli:alice" and message["body"]["kind"] == "manual"


def test_an_idle_candidate_is_not_drained_quarantined_or_announced(world: World) -> None:
    # strategy.keepVariantNames between releases: candidate variant at 0, the plan has no candidate.
    world.add_endpoint("idle-scorer", stable=100.0, candidate=0.0)
    physical = names.endpoint_name("dev", "idle-scorer")
    world.put_plan(physical, candidate=None, steps=[])
    alarm = world.add_alarm(physical, names.CANDIDATE, "errors", None)

    manual = drain(world.clients, world.settings, physical, actor="cli:alice", reason="checking")
    fired = handle(world, alarm_event(alarm, physical, names.CANDIDATE, version=None))

    for result in (manual, fired):
        assert result["action"] == "skipped", result
        assert "candidate variant is idle" in result["reason"]
    assert "UpdateEndpointWeightsAndCapacities" not in world.log.ops()
    assert world.quarantine(physical) is None
    assert world.audit_items(physical) == []
    assert world.messages() == []
