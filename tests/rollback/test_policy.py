"""Safety invariants of the pure decisions, checked over generated weights and plans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from rollback.runtime import decisions
from rollback.runtime.errors import UnsafeOperationError
from rollback.runtime.records import Progress, RolloutPlan

weight = st.floats(min_value=0.0, max_value=1000.0, allow_nan=False, allow_infinity=False)
extra = st.dictionaries(st.sampled_from(["blue", "green", "legacy"]), weight, max_size=2)


@st.composite
def endpoint_weights(draw) -> dict[str, float]:
    weights = {"stable": draw(weight), "candidate": draw(weight), **draw(extra)}
    if sum(weights.values()) == 0:
        weights["stable"] = 1.0
    return weights


@given(
    endpoint_weights(), st.sampled_from(["stable", "candidate", "shadow"]), st.sampled_from(["ALARM", "OK"])
)
def test_alarm_decisions_preserve_total_never_zero_and_never_drain_stable(weights, role, state) -> None:
    decision = decisions.decide_alarm(weights, role, state)

    assert sum(decision.after.values()) == pytest.approx(sum(weights.values()))
    assert sum(decision.after.values()) > 0
    assert decision.after["stable"] >= weights["stable"]
    assert {k: v for k, v in decision.after.items() if k not in ("stable", "candidate")} == {
        k: v for k, v in weights.items() if k not in ("stable", "candidate")
    }
    if decision.action == "drain":
        assert role == "candidate" and state == "ALARM"
        assert decision.after["candidate"] == 0.0
    if role != "candidate" or state != "ALARM":
        assert decision.after == weights


@given(endpoint_weights(), st.floats(min_value=0.01, max_value=100.0))
@example({"stable": 1.2735850169763978, "candidate": 162.59409657355582}, 100.0)  # stable was -3e-14
def test_step_weights_give_the_candidate_its_share_of_the_pool(weights, percent) -> None:
    after = decisions.step_weights(weights, percent)

    pool = weights["stable"] + weights["candidate"]
    # An empty (or vanishing) pool restarts at 1.
    expected_total = sum(weights.values()) + (0.0 if pool >= decisions.MIN_WEIGHT_POOL else 1.0 - pool)
    assert sum(after.values()) == pytest.approx(expected_total)
    assert decisions.candidate_share(after) == pytest.approx(percent)
    assert min(after.values()) >= 0 and sum(after.values()) > 0


def test_draining_stable_or_without_a_stable_variant_is_refused() -> None:
    with pytest.raises(UnsafeOperationError, match="stable"):
        decisions.drain_weights({"stable": 50.0, "candidate": 50.0}, "stable")
    with pytest.raises(UnsafeOperationError, match="no 'stable' variant"):
        decisions.drain_weights({"candidate": 100.0}, "candidate")
    decision = decisions.decide_alarm({"candidate": 100.0}, "candidate", "ALARM")
    assert decision.action == "skip" and decision.after == {"candidate": 100.0}


T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def make_plan(**overrides) -> RolloutPlan:
    fields = {
        "endpoint": "fraud-scorer-dev",
        "stable": "v1",
        "candidate": "v2",
        "strategy": "canary",
        "steps": (10.0, 25.0, 50.0, 100.0),
        "bake_seconds": 300.0,
        "min_requests_per_step": 100.0,
        "metrics": "custom",
        "candidate_alarms": ("a-errors", "a-latency"),
        "plan_id": "p1",
    }
    fields.update(overrides)
    return RolloutPlan(**fields)


def baking(index: int = 0, started: datetime = T0, state: str = "baking") -> Progress:
    return Progress("p1", index, started, state)


OK = {"a-errors": "OK", "a-latency": "OK"}


@pytest.mark.parametrize(
    ("progress", "now", "kwargs", "action"),
    [
        (None, T0, {}, "start"),
        (Progress("old", 2, T0, "baking"), T0, {}, "start"),
        (baking(), T0, {}, "evaluate"),
        (baking(), T0 + timedelta(seconds=299), {"alarm_states": OK}, "wait"),
        (baking(), T0 + timedelta(seconds=300), {"alarm_states": OK}, "evaluate"),
        (baking(), T0 + timedelta(seconds=300), {"alarm_states": OK, "requests": 100}, "advance"),
        (baking(), T0 + timedelta(seconds=300), {"alarm_states": OK, "requests": 99}, "pause"),
        (baking(), T0 + timedelta(seconds=10), {"alarm_states": {**OK, "a-latency": "ALARM"}}, "halt"),
        (
            baking(),
            T0 + timedelta(seconds=300),
            {"alarm_states": {"a-errors": "OK"}, "requests": 500},
            "hold",
        ),
        (baking(3), T0 + timedelta(seconds=300), {"alarm_states": OK, "requests": 500}, "finalize"),
        (baking(1, state="ready-to-finalize"), T0, {}, "none"),
        (baking(1, state="halted"), T0, {}, "none"),
        (baking(1), T0, {"quarantined": True}, "halt-quarantined"),
    ],
)
def test_step_decisions(progress, now, kwargs, action) -> None:
    assert decisions.decide_step(make_plan(), progress, now, **kwargs).action == action


def test_too_little_traffic_pauses_even_when_alarms_have_no_data() -> None:
    states = {"a-errors": "INSUFFICIENT_DATA", "a-latency": "INSUFFICIENT_DATA"}

    decision = decisions.decide_step(
        make_plan(), baking(), T0 + timedelta(minutes=6), alarm_states=states, requests=0
    )

    assert decision.action == "pause" and "0 of 100" in decision.reason


def test_single_step_and_candidate_less_plans_never_advance() -> None:
    assert decisions.decide_step(make_plan(candidate=None, steps=()), None, T0).action == "none"
    single = make_plan(steps=(100.0,))
    healthy = dict.fromkeys(single.candidate_alarms, "OK")
    assert decisions.decide_step(single, None, T0, alarm_states=healthy, requests=1e6).action == "none"
    assert decisions.decide_step(single, None, T0, quarantined=True).action == "none"


def test_single_step_plan_still_gets_the_alarm_safety_net() -> None:
    single = make_plan(steps=(100.0,))
    assert decisions.decide_step(single, None, T0).action == "evaluate"
    firing = dict.fromkeys(single.candidate_alarms, "ALARM")

    decision = decisions.decide_step(single, None, T0, alarm_states=firing)

    assert decision.action == "halt" and decision.alarms_in_alarm == single.candidate_alarms


@given(
    st.integers(min_value=0, max_value=3),
    st.floats(min_value=0, max_value=2000),
    st.floats(min_value=0, max_value=1000),
    st.lists(st.sampled_from(["OK", "ALARM", "INSUFFICIENT_DATA"]), min_size=2, max_size=2),
)
def test_stepper_advances_only_when_baked_healthy_and_busy(index, elapsed, requests, states) -> None:
    plan = make_plan()
    alarm_states = dict(zip(plan.candidate_alarms, states, strict=True))
    decision = decisions.decide_step(
        plan, baking(index), T0 + timedelta(seconds=elapsed), alarm_states=alarm_states, requests=requests
    )

    if decision.action in ("advance", "finalize"):
        assert elapsed >= plan.bake_seconds and requests >= plan.min_requests_per_step
        assert all(s == "OK" for s in states)
    if "ALARM" in states:
        assert decision.action == "halt"
    if decision.action == "advance":
        assert decision.step_index == index + 1 and decision.candidate_percent == plan.steps[index + 1]


@pytest.mark.parametrize(
    ("index", "live", "action", "to_index"),
    [
        (0, {"stable": 90.0, "candidate": 10.0}, "advance", 1),  # as planned: the next step
        (0, {"stable": 75.0, "candidate": 25.0}, "advance", 1),  # already there: records were cut off
        (0, {"stable": 60.0, "candidate": 40.0}, "hold", 0),  # someone else changed it
        (0, {"stable": 100.0, "candidate": 0.0}, "hold", 0),  # drained meanwhile
        (3, {"stable": 0.0, "candidate": 100.0}, "finalize", 3),
    ],
)
def test_advance_completes_a_cut_off_step_and_holds_on_other_live_weights(
    index, live, action, to_index
) -> None:
    decision = decisions.decide_step(
        make_plan(),
        baking(index),
        T0 + timedelta(seconds=300),
        alarm_states=OK,
        requests=500,
        live_weights=live,
    )

    assert (decision.action, decision.step_index) == (action, to_index)
    if live["candidate"] == 25.0:
        assert "cut off" in decision.reason
