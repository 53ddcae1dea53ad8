"""Drains racing their own follow-ups, the operator's clear, re-releases and single-step plans.

Each test is a defect the third runtime review reproduced (docs/runtime.md says what must hold).
"""

from __future__ import annotations

from typing import Any

import pytest

from rollback.ops.status import clear_quarantine
from rollback.runtime import names
from rollback.runtime.aws import Clients
from rollback.runtime.clock import VirtualClock
from rollback.runtime.events import parse_alarm_event
from rollback.runtime.routing import handle_alarm
from tests.rollback.conftest import Faulty, Killed, World, alarm_event, instant_retry, killed_in
from tests.rollback.test_stepper import declare_first_step, tick

ACTOR = "lambda:mlrollback-dev-rollback"


def handle(world: World, event: dict, clients: Clients | None = None) -> dict:
    return handle_alarm(
        clients or world.clients, world.settings, parse_alarm_event(event), actor=ACTOR, retry=instant_retry()
    )


def cand_alarm(world: World) -> str:
    return names.alarm_name(world.endpoint, names.CANDIDATE, "errors")


# clear-quarantine stays cleared -------------------------------------------------------------------
def test_replay_after_clear_quarantine_is_a_noop(world: World) -> None:
    """docs/runtime.md: 'the idempotency key makes a replay of an event that did drain a no-op'."""
    event = alarm_event(cand_alarm(world), world.endpoint, names.CANDIDATE)
    assert handle(world, event)["action"] == "drained"
    assert len(world.messages()) == 1
    clear_quarantine(world.clients, world.settings, world.endpoint, actor="cli:bob", reason="retry v2")

    replay = handle(world, event)  # DLQ replay / late Lambda retry of the same event

    assert world.quarantine() is None, f"operator's clear undone: {replay}"
    assert world.messages() == []


def test_stuck_alarm_after_clear_quarantine_does_not_requarantine_before_release(
    world: World, vclock: VirtualClock
) -> None:
    ep = world.endpoint
    world.put_plan(ep, bakeSeconds=60, minRequestsPerStep=10)
    tick(world)
    at = world.set_alarm(cand_alarm(world), "ALARM")
    handle(world, alarm_event(cand_alarm(world), ep, "candidate", at=at))
    world.messages()
    vclock.advance(600)
    clear_quarantine(world.clients, world.settings, ep, actor="cli:bob", reason="flaky alarm, retrying v2")
    # `pulumi up` has not run yet: the candidate is still at 0; the stepper ticks meanwhile.
    tick(world)
    vclock.advance(60)
    result = tick(world)[ep]

    assert world.weights(ep)["candidate"] == 0.0
    assert world.quarantine(ep) is None, f"clear undone by stale guard followUps: {result.get('drain')}"
    assert world.messages() == []


# a re-release drain keeps its own records ---------------------------------------------------------
def test_rerelease_drain_cut_off_is_finished_with_its_own_records(world: World, vclock: VirtualClock) -> None:
    ep = world.endpoint
    world.put_plan(ep, bakeSeconds=60, minRequestsPerStep=10)
    tick(world)
    at = world.set_alarm(cand_alarm(world), "ALARM")
    handle(world, alarm_event(cand_alarm(world), ep, "candidate", at=at))
    world.messages()
    vclock.advance(600)
    clear_quarantine(world.clients, world.settings, ep, actor="cli:bob", reason="retrying v2")
    declare_first_step(world, ep, candidate=10.0)
    tick(world)  # start
    vclock.advance(60)
    sns = killed_in(world.clients.sns, "publish")
    world.clients.sns = sns
    with pytest.raises(Killed):
        tick(world)  # safety-net drain of the re-release commits under K#v2#<at>, then dies
    world.clients.sns = sns._client
    vclock.advance(60)
    tick(world)

    drains = [i for i in world.audit_items(ep) if i["action"] == "drain"]
    newest = drains[0]
    record = world.quarantine(ep)
    # contract: the quarantine record's `at` equals its drain's audit item time
    assert record["at"] == newest["at"].split("#")[0], (record["at"], [d["at"] for d in drains])


# a drain still sending its follow-ups is not finished twice ---------------------------------------
def test_duplicate_delivery_during_first_ones_publish_sends_one_message(world: World) -> None:
    event = alarm_event(cand_alarm(world), world.endpoint, names.CANDIDATE)
    other = Clients(**{s: world.raw[s] for s in ("sagemaker", "cloudwatch", "dynamodb", "ssm", "sns")})
    results = []

    class Concurrent(Faulty):
        def publish(self, **kwargs: Any) -> Any:
            results.append(handle(world, event, clients=other))  # EventBridge's duplicate, concurrently
            return self._client.publish(**kwargs)

    world.clients.sns = Concurrent(world.clients.sns)
    first = handle(world, event)

    assert first["action"] == "drained"
    assert len(world.messages()) == 1, f"second delivery: {results}"


def test_stepper_tick_during_lambda_publish_does_not_repeat_the_message(
    world: World, vclock: VirtualClock
) -> None:
    ep = world.endpoint
    world.put_plan(ep, bakeSeconds=60, minRequestsPerStep=10)
    tick(world)
    at = world.set_alarm(cand_alarm(world), "ALARM")
    lam = Clients(**{s: world.raw[s] for s in ("sagemaker", "cloudwatch", "dynamodb", "ssm")})
    stepped = []

    class TickMeanwhile(Faulty):
        def publish(self, **kwargs: Any) -> Any:
            stepped.append(tick(world)[ep])
            return self._client.publish(**kwargs)

    lam.sns = TickMeanwhile(world.raw["sns"])
    handle(world, alarm_event(cand_alarm(world), ep, "candidate", at=at), clients=lam)

    assert len(world.messages()) == 1, stepped


# a stepper-started drain's owed message is sent ---------------------------------------------------
def test_safety_net_drain_whose_publish_failed_is_announced_later(world: World, vclock: VirtualClock) -> None:
    """The alarm event was lost; the stepper drains; SNS refuses once. Nobody else will come."""
    ep = world.endpoint
    world.put_plan(ep, bakeSeconds=60, minRequestsPerStep=10)
    tick(world)
    world.set_alarm(cand_alarm(world), "ALARM")
    sns = Faulty(world.clients.sns)
    sns.fail("publish", "AuthorizationError", times=1)  # not retryable: caught, record gets pending
    world.clients.sns = sns
    first = tick(world)[ep]
    for _ in range(10):
        vclock.advance(60)
        tick(world)

    assert world.weights(ep)["candidate"] == 0.0
    assert world.quarantine(ep)["version"] == "v2"
    assert world.quarantine(ep).get("pending") is None, (first, world.quarantine(ep))
    assert len(world.messages()) == 1


# single-step plans --------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["ab", "all-at-once"])
def test_quarantined_candidate_serving_on_a_single_step_plan_is_drained(
    world: World, vclock: VirtualClock, strategy: str
) -> None:
    ep = world.endpoint
    at = world.set_alarm(cand_alarm(world), "ALARM")
    world.put_plan(ep, strategy=strategy, steps=[50] if strategy == "ab" else [100])
    handle(world, alarm_event(cand_alarm(world), ep, "candidate", at=at))
    declare_first_step(world, ep, candidate=50.0)  # a pulumi up computed before the drain lands after it
    for _ in range(3):
        vclock.advance(60)
        tick(world)

    assert world.quarantine(ep)["version"] == "v2"
    assert world.weights(ep)["candidate"] == 0.0, "quarantined candidate left serving"


def test_second_alarm_of_the_same_candidate_during_the_drain_is_skipped(world: World) -> None:
    ep = world.endpoint
    latency = world.add_alarm(ep, names.CANDIDATE, "latency", version="v2")
    other = Clients(**{s: world.raw[s] for s in ("sagemaker", "cloudwatch", "dynamodb", "ssm", "sns")})
    world.put_plan(ep)
    results = []

    class Concurrent(Faulty):
        def publish(self, **kwargs: Any) -> Any:
            results.append(handle(world, alarm_event(latency, ep, names.CANDIDATE), clients=other))
            return self._client.publish(**kwargs)

    world.clients.sns = Concurrent(world.clients.sns)
    handle(world, alarm_event(cand_alarm(world), ep, names.CANDIDATE))

    assert [i["action"] for i in world.audit_items()] == ["drain"], results
    assert len(world.messages()) == 1


def test_replay_after_clearing_a_record_rewritten_by_quarantine_enforcement_is_a_noop(
    world: World, vclock: VirtualClock
) -> None:
    ep = world.endpoint
    world.put_plan(ep, strategy="ab", steps=[50])
    event = alarm_event(cand_alarm(world), ep, names.CANDIDATE)
    assert handle(world, event)["action"] == "drained"
    declare_first_step(world, ep, candidate=50.0)  # a stale weights update re-serves v2
    vclock.advance(60)
    assert tick(world)[ep]["drain"]["action"] == "drained"  # enforcement rewrites the record
    assert len(world.quarantine(ep)["guards"]) == 2
    world.messages()
    vclock.advance(600)
    clear_quarantine(world.clients, world.settings, ep, actor="cli:bob", reason="fixed, retrying v2")

    replay = handle(world, event)

    assert world.quarantine(ep) is None, replay
    assert world.messages() == []
