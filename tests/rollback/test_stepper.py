"""The rollout stepper against moto, with a virtual clock and real CloudWatch metric data."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from botocore.exceptions import ClientError

from rollback.ops.status import clear_quarantine
from rollback.runtime import clock, names
from rollback.runtime.aws import Clients
from rollback.runtime.clock import VirtualClock
from rollback.runtime.events import alarm_idempotency_key, parse_alarm_event
from rollback.runtime.routing import handle_alarm
from rollback.runtime.stepper import step
from tests.rollback.conftest import Faulty, World, alarm_event

ACTOR = "lambda:mlrollback-dev-stepper"


def send_traffic(world: World, vclock: VirtualClock, physical: str, requests: float) -> None:
    """Candidate invocations, as the client library publishes them (1-second resolution)."""
    world.raw["cloudwatch"].put_metric_data(
        Namespace=names.CUSTOM_METRIC_NAMESPACE,
        MetricData=[
            {
                "MetricName": "Invocations",
                "Dimensions": [
                    {"Name": "EndpointName", "Value": physical},
                    {"Name": "VariantName", "Value": names.CANDIDATE},
                ],
                "Timestamp": vclock.now() - timedelta(seconds=1),
                "Value": requests,
                "Unit": "Count",
                "StorageResolution": 1,
            }
        ],
    )


def declare_first_step(world: World, physical: str, candidate: float = 10.0) -> None:
    """What `pulumi up` does for a released candidate: the declared weights (steps[0]) go live."""
    world.raw["sagemaker"].update_endpoint_weights_and_capacities(
        EndpointName=physical,
        DesiredWeightsAndCapacities=[
            {"VariantName": "stable", "DesiredWeight": 100.0 - candidate},
            {"VariantName": "candidate", "DesiredWeight": candidate},
        ],
    )


def tick(world: World, **kwargs) -> dict:
    return step(world.clients, world.settings, actor=ACTOR, **kwargs)["endpoints"]


def progress(world: World, physical: str) -> dict:
    return json.loads(
        world.raw["ssm"].get_parameter(Name=world.settings.progress_parameter(physical))["Parameter"]["Value"]
    )


def share(world: World, physical: str) -> float:
    w = world.weights(physical)
    return round(100 * w["candidate"] / (w["candidate"] + w["stable"]), 2)


def run(world: World, vclock: VirtualClock, minutes: int, per_minute: float, on_minute=None) -> list[float]:
    """Tick once a minute with steady traffic; returns the candidate share seen each minute."""
    seen = []
    for minute in range(minutes):
        vclock.advance(60)
        if per_minute:
            send_traffic(world, vclock, world.endpoint, per_minute)
        if on_minute:
            on_minute(minute)
        tick(world)
        seen.append(share(world, world.endpoint))
    return seen


def test_healthy_canary_walks_every_step_then_is_ready_to_finalize(
    world: World, vclock: VirtualClock
) -> None:
    world.put_plan(world.endpoint)
    world.set_alarm(names.alarm_name(world.endpoint, names.CANDIDATE, "errors"), "OK")
    assert tick(world)[world.endpoint]["action"] == "start"

    seen = run(world, vclock, minutes=25, per_minute=50)

    assert sorted(set(seen)) == [10.0, 25.0, 50.0, 100.0]
    assert seen.index(25.0) == 4  # first advance once the 300 s bake is over (minute 5)
    assert progress(world, world.endpoint)["state"] == "ready-to-finalize"
    steps = [i for i in world.audit_items() if i["action"] == "step"]
    assert len(steps) == 4  # three advances + ready-to-finalize
    assert any(i["detail"].get("state") == "ready-to-finalize" for i in steps)
    assert world.quarantine() is None


def test_alarm_midway_halts_the_rollout_and_drains_once(world: World, vclock: VirtualClock) -> None:
    world.put_plan(world.endpoint)
    alarm = names.alarm_name(world.endpoint, names.CANDIDATE, "errors")
    world.set_alarm(alarm, "OK")
    tick(world)

    def fire_at_minute_7(minute: int) -> None:
        if minute == 7:
            world.set_alarm(alarm, "ALARM")

    seen = run(world, vclock, minutes=20, per_minute=50, on_minute=fire_at_minute_7)

    assert seen[6] == 25.0 and seen[7:] == [0.0] * 13
    assert progress(world, world.endpoint)["state"] == "halted"
    drains = [i for i in world.audit_items() if i["action"] == "drain"]
    assert len(drains) == 1 and drains[0]["alarm"] == alarm
    assert world.quarantine()["version"] == "v2"
    assert len(world.messages()) == 1


def test_no_traffic_pauses_and_never_rolls_back(world: World, vclock: VirtualClock) -> None:
    world.put_plan(world.endpoint)
    world.set_alarm(names.alarm_name(world.endpoint, names.CANDIDATE, "errors"), "OK")
    tick(world)

    seen = run(world, vclock, minutes=15, per_minute=0)

    assert seen == [10.0] * 15
    record = progress(world, world.endpoint)
    assert record["state"] == "paused" and "0 of 100 requests" in record["reason"]
    pauses = [i for i in world.audit_items() if i["action"] == "pause"]
    assert len(pauses) == 1
    assert world.quarantine() is None


def test_traffic_returning_after_a_pause_resumes_the_rollout(world: World, vclock: VirtualClock) -> None:
    world.put_plan(world.endpoint)
    world.set_alarm(names.alarm_name(world.endpoint, names.CANDIDATE, "errors"), "OK")
    tick(world)
    run(world, vclock, minutes=6, per_minute=0)
    assert progress(world, world.endpoint)["state"] == "paused"

    seen = run(world, vclock, minutes=3, per_minute=60)

    assert seen[-1] == 25.0
    assert progress(world, world.endpoint)["state"] == "baking"


def test_new_plan_id_restarts_progress_at_step_zero(world: World, vclock: VirtualClock) -> None:
    world.put_plan(world.endpoint)
    world.set_alarm(names.alarm_name(world.endpoint, names.CANDIDATE, "errors"), "OK")
    tick(world)
    run(world, vclock, minutes=6, per_minute=50)
    assert progress(world, world.endpoint)["stepIndex"] == 1

    world.put_plan(world.endpoint, candidate="v3", planId="plan00000002")
    result = tick(world)[world.endpoint]

    assert result["action"] == "start"
    record = progress(world, world.endpoint)
    assert (record["planId"], record["stepIndex"]) == ("plan00000002", 0)


def test_quarantined_candidate_is_drained_and_never_advanced(world: World, vclock: VirtualClock) -> None:
    world.put_plan(world.endpoint)
    world.set_alarm(names.alarm_name(world.endpoint, names.CANDIDATE, "errors"), "OK")
    tick(world)
    world.raw["ssm"].put_parameter(
        Name=world.settings.quarantine_parameter(world.endpoint),
        Type="String",
        Value=json.dumps({"endpoint": world.endpoint, "version": "v2", "kind": "manual", "by": "cli:bob"}),
    )

    seen = run(world, vclock, minutes=12, per_minute=50)

    # The record says v2 stays at weight 0: a quarantined candidate found serving is drained once.
    assert seen == [0.0] * 12
    assert progress(world, world.endpoint)["state"] == "halted"
    [drain] = [i for i in world.audit_items() if i["action"] == "drain"]
    assert drain["version"] == "v2" and "quarantined" in drain["reason"]
    assert drain["weightsBefore"] == {"stable": 90, "candidate": 10}
    assert world.quarantine()["kind"] == "manual"


def test_clearing_the_quarantine_restarts_a_halted_rollout_at_step_zero(
    world: World, vclock: VirtualClock
) -> None:
    world.put_plan(world.endpoint)
    world.set_alarm(names.alarm_name(world.endpoint, names.CANDIDATE, "errors"), "OK")
    tick(world)
    world.raw["ssm"].put_parameter(
        Name=world.settings.quarantine_parameter(world.endpoint),
        Type="String",
        Value=json.dumps({"endpoint": world.endpoint, "version": "v2", "kind": "manual", "by": "cli:bob"}),
    )
    run(world, vclock, minutes=2, per_minute=50)
    assert progress(world, world.endpoint)["state"] == "halted"

    cleared = clear_quarantine(world.clients, world.settings, world.endpoint, actor="cli:bob", reason="fixed")
    # `pulumi up` after the clear declares the candidate at steps[0] again.
    declare_first_step(world, world.endpoint)

    assert cleared["rolloutRestarted"] is True
    assert tick(world)[world.endpoint]["action"] == "start"
    seen = run(world, vclock, minutes=6, per_minute=50)
    assert 25.0 in seen  # the same plan advances again after one bake
    assert progress(world, world.endpoint)["state"] == "baking"


def test_safety_net_drain_uses_the_transition_time_like_the_alarm_event(
    world: World, vclock: VirtualClock
) -> None:
    world.put_plan(world.endpoint)
    alarm = names.alarm_name(world.endpoint, names.CANDIDATE, "errors")
    world.set_alarm(alarm, "OK")
    tick(world)
    world.set_alarm(alarm, "ALARM")
    transitioned = clock.now() - timedelta(seconds=40)

    def as_aws_reports_it(response: dict) -> dict:
        # AWS also returns StateTransitionedTimestamp (the transition the EventBridge event carries);
        # StateUpdatedTimestamp moves on evaluation-state changes too. moto returns only the latter.
        for a in response.get("MetricAlarms", []):
            a["StateTransitionedTimestamp"] = transitioned
            a["StateUpdatedTimestamp"] = transitioned + timedelta(seconds=25)
        return response

    cloudwatch = Faulty(world.clients.cloudwatch)
    cloudwatch.rewrite("describe_alarms", as_aws_reports_it, times=5)
    world.clients.cloudwatch = cloudwatch
    tick(world)

    (drain,) = [i for i in world.audit_items() if i["action"] == "drain"]
    assert drain["idempotencyKey"] == alarm_idempotency_key(alarm, transitioned)


def test_live_weights_changed_by_someone_else_hold_the_rollout(world: World, vclock: VirtualClock) -> None:
    world.put_plan(world.endpoint)
    world.set_alarm(names.alarm_name(world.endpoint, names.CANDIDATE, "errors"), "OK")
    tick(world)
    world.raw["sagemaker"].update_endpoint_weights_and_capacities(
        EndpointName=world.endpoint,
        DesiredWeightsAndCapacities=[
            {"VariantName": "stable", "DesiredWeight": 60.0, "DesiredInstanceCount": 1},
            {"VariantName": "candidate", "DesiredWeight": 40.0, "DesiredInstanceCount": 1},
        ],
    )

    seen = run(world, vclock, minutes=7, per_minute=50)

    assert seen == [40.0] * 7
    assert "differs from step 1 of 4" in progress(world, world.endpoint)["reason"]


def test_idle_tick_over_many_endpoints_is_cheap_and_writes_nothing(
    world: World, vclock: VirtualClock
) -> None:
    for i in range(24):
        physical = world.add_endpoint(f"model{i}")
        world.put_plan(physical)
    world.put_plan(world.endpoint)
    tick(world)  # starts all 25
    world.log.reset()

    vclock.advance(60)
    results = tick(world)

    assert {r["action"] for r in results.values()} == {"wait"}
    ops = world.log.ops()
    # 25 plans + 25 progress records = 50 parameters = 5 pages of 10 (moto adds an empty sixth);
    # one page of (no) quarantines; 25 candidate alarms = 1 DescribeAlarms; the 25 candidates' drain
    # markers (cut-off drains) = 1 BatchGetItem; no per-endpoint call.
    assert set(ops) == {"GetParametersByPath", "DescribeAlarms", "BatchGetItem"}
    assert ops["GetParametersByPath"] <= 7 and ops["DescribeAlarms"] == 1 and ops["BatchGetItem"] == 1


def test_broken_plan_is_reported_and_other_endpoints_still_step(world: World, vclock: VirtualClock) -> None:
    other = world.add_endpoint("other")
    world.put_plan(world.endpoint)
    world.raw["ssm"].put_parameter(
        Name=world.settings.plan_parameter(other), Type="String", Value='{"endpoint": "x"}', Overwrite=True
    )

    results = tick(world)

    assert results[world.endpoint]["action"] == "start"
    assert results[other]["action"] == "error" and "missing key 'steps'" in results[other]["reason"]


class DrainDuringUpdate(Faulty):
    """The alarm Lambda drains between the stepper's DescribeEndpoint and its weights update.

    While that drain is in progress SageMaker refuses the stepper's update ("in-progress"), so the
    stepper's retry lands after the drain.
    """

    def __init__(self, client: Any, drain_now: Callable[[], None]) -> None:
        super().__init__(client)
        self._drain_now: Callable[[], None] | None = drain_now

    def update_endpoint_weights_and_capacities(self, **kwargs: Any) -> Any:
        if self._drain_now is not None:
            drain_now, self._drain_now = self._drain_now, None
            drain_now()
            raise ClientError(
                {
                    "Error": {
                        "Code": "ValidationException",
                        "Message": 'Cannot update in-progress endpoint "x"',
                    }
                },
                "UpdateEndpointWeightsAndCapacities",
            )
        return self._client.update_endpoint_weights_and_capacities(**kwargs)


def test_advance_refused_during_a_drain_never_puts_the_candidate_back(
    world: World, vclock: VirtualClock
) -> None:
    ep = world.endpoint
    world.put_plan(ep, bakeSeconds=60, minRequestsPerStep=10)
    tick(world)
    vclock.advance(120)
    send_traffic(world, vclock, ep, 50)
    alarm = names.alarm_name(ep, names.CANDIDATE, "errors")
    lambda_clients = Clients(
        **{s: world.raw[s] for s in ("sagemaker", "cloudwatch", "dynamodb", "ssm", "sns")}
    )

    def alarm_lambda_drains() -> None:
        at = world.set_alarm(alarm, "ALARM")
        event = parse_alarm_event(alarm_event(alarm, ep, names.CANDIDATE, at=at))
        assert handle_alarm(lambda_clients, world.settings, event, actor="lambda:rb")["action"] == "drained"

    world.clients.sagemaker = DrainDuringUpdate(world.clients.sagemaker, alarm_lambda_drains)
    during = tick(world)[ep]
    later = []
    for _ in range(3):
        vclock.advance(60)
        later.append(tick(world)[ep]["action"])

    assert during["action"] == "hold" and "not advancing" in during["reason"]
    assert world.weights(ep)["candidate"] == 0.0
    assert world.quarantine(ep)["version"] == "v2"
    assert "advance" not in later and progress(world, ep)["state"] == "halted"
    assert [i["action"] for i in world.audit_items(ep)] == ["drain"]


def test_quarantined_candidate_put_back_into_service_is_drained_again(
    world: World, vclock: VirtualClock
) -> None:
    ep = world.endpoint
    world.put_plan(ep, bakeSeconds=60, minRequestsPerStep=10)
    tick(world)
    alarm = names.alarm_name(ep, names.CANDIDATE, "errors")
    at = world.set_alarm(alarm, "ALARM")
    handle_alarm(
        world.clients,
        world.settings,
        parse_alarm_event(alarm_event(alarm, ep, "candidate", at=at)),
        actor="lambda:rb",
    )
    world.messages()
    declare_first_step(world, ep, candidate=25.0)  # a late weights update lands after the drain

    vclock.advance(60)
    result = tick(world)[ep]
    vclock.advance(60)
    tick(world)

    assert result["drain"]["action"] == "drained"
    assert world.weights(ep)["candidate"] == 0.0
    drains = [i for i in world.audit_items(ep) if i["action"] == "drain"]
    assert len(drains) == 2 and drains[0]["weightsBefore"] == {"stable": 75, "candidate": 25}
    assert len(world.messages()) == 1


def test_safety_net_drain_of_a_new_release_under_an_old_alarm_key_is_recorded(
    world: World, vclock: VirtualClock
) -> None:
    ep = world.endpoint
    alarm = names.alarm_name(ep, names.CANDIDATE, "errors")
    world.put_plan(ep, bakeSeconds=60, minRequestsPerStep=10)
    tick(world)
    at = world.set_alarm(alarm, "ALARM")
    handle_alarm(
        world.clients,
        world.settings,
        parse_alarm_event(alarm_event(alarm, ep, "candidate", at=at)),
        actor="lambda:rb",
    )
    world.messages()
    # v3 is released while the alarm stays in ALARM from v2's state change: no new event comes.
    declare_first_step(world, ep)
    world.put_plan(ep, candidate="v3", bakeSeconds=60, minRequestsPerStep=10, planId="plan00000003")
    vclock.advance(60)
    tick(world)
    vclock.advance(60)

    result = tick(world)[ep]

    assert result["drain"]["action"] == "drained"
    assert world.weights(ep)["candidate"] == 0.0
    v3 = [i for i in world.audit_items(ep) if i["action"] == "drain" and i["version"] == "v3"]
    assert len(v3) == 1 and v3[0]["weightsBefore"] == {"stable": 90, "candidate": 10}
    assert world.quarantine(ep)["version"] == "v3"
    [message] = world.messages()
    assert message["body"]["version"] == "v3"


def test_same_version_released_again_under_a_stuck_alarm_gets_its_own_drain_records(
    world: World, vclock: VirtualClock
) -> None:
    ep = world.endpoint
    alarm = names.alarm_name(ep, names.CANDIDATE, "errors")
    world.put_plan(ep, bakeSeconds=60, minRequestsPerStep=10)
    tick(world)
    at = world.set_alarm(alarm, "ALARM")
    handle_alarm(
        world.clients,
        world.settings,
        parse_alarm_event(alarm_event(alarm, ep, "candidate", at=at)),
        actor="lambda:rb",
    )
    world.messages()
    vclock.advance(600)
    clear_quarantine(world.clients, world.settings, ep, actor="cli:bob", reason="flaky alarm, retrying v2")
    declare_first_step(world, ep)
    tick(world)  # the same plan starts again
    vclock.advance(60)

    result = tick(world)[ep]

    assert result["drain"]["action"] == "drained"
    drains = [i for i in world.audit_items(ep) if i["action"] == "drain"]
    assert len(drains) == 2 and {d["version"] for d in drains} == {"v2"}
    assert world.quarantine(ep)["version"] == "v2" and len(world.messages()) == 1


def test_advance_whose_progress_write_failed_is_audited_and_completed_by_the_next_tick(
    world: World, vclock: VirtualClock
) -> None:
    ep = world.endpoint
    world.put_plan(ep, bakeSeconds=60, minRequestsPerStep=10)
    world.set_alarm(names.alarm_name(ep, names.CANDIDATE, "errors"), "OK")
    tick(world)
    vclock.advance(120)
    send_traffic(world, vclock, ep, 50)
    ssm = Faulty(world.clients.ssm)
    world.clients.ssm = ssm
    ssm.fail("put_parameter", "ThrottlingException", 3)  # every attempt of the stepper's policy

    failed = tick(world)[ep]

    assert failed["action"] == "error" and share(world, ep) == 25.0
    [step_item] = [i for i in world.audit_items(ep) if i["action"] == "step"]
    assert step_item["weightsAfter"] == {"stable": 75, "candidate": 25}
    vclock.advance(60)
    send_traffic(world, vclock, ep, 50)
    completed = tick(world)[ep]
    assert completed["action"] == "advance" and "completing" in completed["reason"]
    assert (progress(world, ep)["stepIndex"], share(world, ep)) == (1, 25.0)
    assert len([i for i in world.audit_items(ep) if i["action"] == "step"]) == 1
    seen = run(world, vclock, minutes=6, per_minute=50)
    assert 50.0 in seen  # the rollout goes on
