"""A drain the stepper started and was killed after its commit is finished by a later tick.

Found by a third review: the stepper's safety net drains under the alarm's key; killed after the
audit commit (the stepper has no Lambda retries), the alarm Lambda's delivery then found the guard
"in progress" and answered duplicate, the alarm went OK once the candidate took no traffic, and the
drained candidate stayed without a quarantine record, so `pulumi up` would have re-promoted it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from rollback.runtime import clock, names
from rollback.runtime.clock import VirtualClock
from rollback.runtime.drain import STEPPER_DRAIN_BUDGET_SECONDS, drain_retry
from rollback.runtime.events import parse_alarm_event
from rollback.runtime.retry import RetryPolicy
from rollback.runtime.routing import handle_alarm
from tests.rollback.conftest import Killed, World, alarm_event, instant_retry, killed_in
from tests.rollback.test_stepper import tick


def _candidate_alarm(world: World) -> str:
    return names.alarm_name(world.endpoint, names.CANDIDATE, "errors")


def test_stepper_drain_cut_off_after_its_commit_is_quarantined_and_announced_by_a_later_tick(
    world: World, vclock: VirtualClock
) -> None:
    ep = world.endpoint
    world.put_plan(ep, bakeSeconds=60, minRequestsPerStep=10)
    tick(world)
    at = world.set_alarm(_candidate_alarm(world), "ALARM")
    sns = killed_in(world.clients.sns, "publish")
    world.clients.sns = sns
    with pytest.raises(Killed):
        tick(world)  # the safety net drains, commits, and dies before Publish
    world.clients.sns = sns._client

    vclock.advance(5)
    event = alarm_event(_candidate_alarm(world), ep, names.CANDIDATE, at=at)
    late = handle_alarm(
        world.clients, world.settings, parse_alarm_event(event), actor="lambda:x", retry=instant_retry()
    )
    assert late["action"] == "duplicate"  # still "in progress" for the Lambda: it must not double-send
    world.set_alarm(_candidate_alarm(world), "OK")  # no traffic, missing data not breaching

    for _ in range(3):
        vclock.advance(60)
        tick(world)

    record = world.quarantine(ep)
    assert record is not None and record["version"] == "v2"
    assert world.weights(ep)["candidate"] == 0.0
    assert [i["action"] for i in world.audit_items(ep)].count("drain") == 1
    assert len(world.messages()) == 1


def test_a_drain_the_stepper_starts_ends_its_retries_well_inside_the_in_progress_window(
    vclock: VirtualClock,
) -> None:
    tick_policy = RetryPolicy(budget=None).bounded(103.0)  # the stepper: 120 s minus the margin
    start = clock.now()
    drain = drain_retry(tick_policy)
    assert drain.deadline is not None and drain.deadline <= start + timedelta(
        seconds=STEPPER_DRAIN_BUDGET_SECONDS
    )
    # ...and never later than the tick's own deadline
    short = RetryPolicy(budget=None).bounded(5.0)
    assert drain_retry(short).deadline == short.deadline
