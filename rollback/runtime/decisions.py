"""Pure rollback and rollout decisions: no I/O, no clock, no boto3.

The runtime gathers facts (live weights, alarm states, request counts, records) and asks
this module what to do; keeping the decisions pure makes their safety invariants checkable
with property tests: weights never all zero, the stable variant never drained because of the
candidate, total weight preserved by every change.
Standard library only: on the Lambda import path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from rollback.runtime.errors import UnsafeOperationError
from rollback.runtime.names import CANDIDATE, SHADOW, STABLE
from rollback.runtime.records import Progress, RolloutPlan

Weights = dict[str, float]

#: Endpoint states in which SageMaker refuses weight updates for a while; retrying helps.
BUSY_STATUSES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack"})

#: Live candidate share may differ from the planned step by this many percentage points
#: (weights are floats) before the stepper refuses to advance.
SHARE_TOLERANCE = 0.5

#: A stable+candidate weight pool smaller than this is treated as empty by a rollout step.
MIN_WEIGHT_POOL = 1e-6


def step_words(index: int, steps: tuple[float, ...] | list[float]) -> str:
    """``step 2 of 4``: how people read a step (records keep the 0-based ``stepIndex``)."""
    return f"step {index + 1} of {len(steps)}"


def percents(weights: Weights) -> dict[str, float]:
    """Role -> share of traffic in percent (rounded to 0.01), from relative SageMaker weights."""
    total = sum(weights.values())
    if total <= 0:
        return {name: 0.0 for name in weights}
    return {name: round(100.0 * w / total, 2) for name, w in weights.items()}


def drain_weights(weights: Weights, variant: str = CANDIDATE) -> Weights:
    """Weights after draining ``variant``: its weight goes to stable, every other weight is kept.

    Refuses (UnsafeOperationError) to drain stable or shadow, or to drain when there is no
    stable variant to take the share, because either would leave traffic nowhere or drain the
    model that is supposed to be safe.
    """
    if variant in (STABLE, SHADOW):
        raise UnsafeOperationError(
            f"refusing to drain the {variant} variant: only the candidate is drained; "
            "to take the stable model out, deploy a different stable version"
        )
    if variant not in weights:
        raise UnsafeOperationError(f"endpoint has no variant {variant!r} (variants: {sorted(weights)})")
    if STABLE not in weights:
        raise UnsafeOperationError(
            f"endpoint has no {STABLE!r} variant to take the {variant!r} share; draining would lose traffic"
        )
    after = dict(weights)
    after[STABLE] = weights[STABLE] + weights[variant]
    after[variant] = 0.0
    if sum(after.values()) <= 0:
        raise UnsafeOperationError("refusing to leave every variant at weight 0")
    return after


@dataclass(frozen=True)
class AlarmDecision:
    """What to do about one alarm state change on one endpoint."""

    action: str  # "drain" | "notify-stable" | "skip"
    reason: str
    before: Weights
    after: Weights


def decide_alarm(weights: Weights, role: str, state: str) -> AlarmDecision:
    """Decide from the live production-variant weights (shadow excluded) and the alarm's role/state.

    - not ALARM: nothing to do (recovery is not a reason to shift traffic back automatically);
    - candidate ALARM: drain the candidate unless it is already at weight 0 or cannot be drained;
    - stable ALARM: never touch weights; tell people the stable model itself is failing;
    - shadow ALARM: a shadow serves no live responses, nothing to drain.
    """
    same = dict(weights)
    if state != "ALARM":
        return AlarmDecision("skip", f"alarm state is {state}, only ALARM drains", same, same)
    if role == STABLE:
        return AlarmDecision(
            "notify-stable",
            "the stable variant itself is failing; weights left unchanged (stable is never drained)",
            same,
            same,
        )
    if role != CANDIDATE:
        return AlarmDecision("skip", f"{role} variant serves no live traffic; nothing to drain", same, same)
    if CANDIDATE not in weights:
        return AlarmDecision("skip", "endpoint has no candidate variant", same, same)
    if weights[CANDIDATE] <= 0:
        return AlarmDecision("skip", "candidate is already at weight 0", same, same)
    try:
        after = drain_weights(weights, CANDIDATE)
    except UnsafeOperationError as exc:
        return AlarmDecision("skip", f"cannot drain safely: {exc}", same, same)
    return AlarmDecision("drain", "candidate alarm is in ALARM", same, after)


def step_weights(weights: Weights, candidate_percent: float) -> Weights:
    """Weights giving the candidate ``candidate_percent`` of the stable+candidate total.

    The total is preserved so other variants keep their share; the result is never all zero.
    """
    if not 0 < candidate_percent <= 100:
        raise ValueError(f"candidate percent must be in (0, 100], got {candidate_percent}")
    if STABLE not in weights or CANDIDATE not in weights:
        raise UnsafeOperationError("a rollout step needs both a stable and a candidate variant")
    pool = weights[STABLE] + weights[CANDIDATE]
    if pool < MIN_WEIGHT_POOL:
        # Both (practically) zero: start from a unit pool rather than leave traffic nowhere; a
        # vanishing pool would also underflow the candidate's share to 0.
        pool = 1.0
    after = dict(weights)
    after[CANDIDATE] = pool * candidate_percent / 100.0
    # max(): pool - pool * 100 / 100 can round to -3e-14, and SageMaker rejects a negative weight.
    after[STABLE] = max(0.0, pool - after[CANDIDATE])
    return after


def candidate_share(weights: Weights) -> float:
    """Candidate percent of the stable+candidate pool (0 when there is no candidate)."""
    pool = weights.get(STABLE, 0.0) + weights.get(CANDIDATE, 0.0)
    return 0.0 if pool <= 0 else 100.0 * weights.get(CANDIDATE, 0.0) / pool


@dataclass(frozen=True)
class StepDecision:
    """What the stepper does for one endpoint on this tick.

    ``action`` is one of: ``none`` (nothing to do, no write), ``start`` (new or changed plan:
    progress at the first step), ``wait`` (bake period not over), ``evaluate`` (fetch alarm states, or
    the request count once the bake is over, then decide again), ``advance``, ``finalize`` (last step baked:
    ready to finalize), ``pause`` (too little traffic), ``hold`` (an alarm is not OK yet or the
    endpoint is not in the planned state), ``halt`` (a candidate alarm is in ALARM), ``halt-quarantined``.
    """

    action: str
    reason: str
    step_index: int = 0
    candidate_percent: float | None = None
    alarms_in_alarm: tuple[str, ...] = ()


def bake_window(plan: RolloutPlan, progress: Progress, now: datetime) -> tuple[datetime, datetime]:
    """The window whose candidate requests count for the current step: the last bake period of it."""
    start = max(progress.step_started_at, now - timedelta(seconds=plan.bake_seconds))
    return start, now


def decide_step(
    plan: RolloutPlan,
    progress: Progress | None,
    now: datetime,
    *,
    quarantined: bool = False,
    alarm_states: dict[str, str] | None = None,
    requests: float | None = None,
    live_weights: Weights | None = None,
) -> StepDecision:
    """Decide the next stepper action for one endpoint (see :class:`StepDecision`).

    Never rolls back for lack of data: too little traffic pauses. The stepper asks in up to
    three rounds, fetching facts in one batch for all endpoints that answered ``evaluate``:
    first with no facts, then with alarm states (checked on every tick, so a firing candidate
    alarm halts the rollout even mid-bake), then with the request count once the bake is over.
    """
    if plan.candidate is None or not plan.steps:
        return StepDecision("none", "plan has no candidate: nothing to advance")
    if not plan.advances:
        # ab / all-at-once / blue-green: nothing to walk through, but the alarm safety net still
        # applies (a lost alarm event must not leave a failing candidate serving).
        if quarantined:
            return StepDecision("none", f"candidate {plan.candidate} is quarantined (single-step plan)")
        if alarm_states is None:
            return StepDecision("evaluate", "single-step plan: checking candidate alarms (safety net)")
        firing = tuple(a for a in plan.candidate_alarms if alarm_states.get(a) == "ALARM")
        if firing:
            return StepDecision("halt", f"candidate alarm(s) in ALARM: {', '.join(firing)}", 0, None, firing)
        return StepDecision("none", "single-step plan: nothing to advance")
    if progress is None or progress.plan_id != plan.plan_id:
        return StepDecision(
            "start", f"plan {plan.plan_id} starts at {step_words(0, plan.steps)} ({plan.steps[0]:g}%)", 0
        )
    index = progress.step_index
    if index >= len(plan.steps):
        return StepDecision(
            "none",
            f"progress {step_words(index, plan.steps)} is beyond the plan; waiting for a new plan",
            index,
        )
    if quarantined:
        if progress.state == "halted":
            return StepDecision("none", "candidate is quarantined; rollout halted", index)
        return StepDecision("halt-quarantined", f"candidate {plan.candidate} is quarantined", index)
    if progress.state in ("halted", "ready-to-finalize"):
        return StepDecision("none", f"rollout is {progress.state}", index)
    if alarm_states is None:
        return StepDecision("evaluate", "checking candidate alarms", index)
    firing = tuple(a for a in plan.candidate_alarms if alarm_states.get(a) == "ALARM")
    if firing:
        return StepDecision("halt", f"candidate alarm(s) in ALARM: {', '.join(firing)}", index, None, firing)
    elapsed = (now - progress.step_started_at).total_seconds()
    if elapsed < plan.bake_seconds:
        return StepDecision(
            "wait",
            f"{step_words(index, plan.steps)} baking: {elapsed:.0f}s of {plan.bake_seconds:.0f}s",
            index,
        )
    if requests is None:
        return StepDecision("evaluate", "bake period over: counting candidate requests", index)
    not_ok = [
        f"{a}={alarm_states.get(a, 'missing')}" for a in plan.candidate_alarms if alarm_states.get(a) != "OK"
    ]
    if requests < plan.min_requests_per_step:
        return StepDecision(
            "pause",
            f"candidate served {requests:g} of {plan.min_requests_per_step:g} requests "
            "needed in the bake window",
            index,
        )
    if not_ok:
        return StepDecision("hold", f"candidate alarm(s) not OK: {', '.join(not_ok)}", index)
    if live_weights is not None:
        share = candidate_share(live_weights)
        nxt = index + 1
        if nxt < len(plan.steps) and abs(share - plan.steps[nxt]) <= SHARE_TOLERANCE < abs(
            share - plan.steps[index]
        ):
            # An earlier tick moved the weights and was cut off before its progress write:
            # finish that step's records instead of holding forever on "someone else changed it".
            return StepDecision(
                "advance",
                f"live candidate share is already {step_words(nxt, plan.steps)} ({plan.steps[nxt]:g}%): "
                "an earlier tick advanced and was cut off before recording it; completing the step's records",
                nxt,
                plan.steps[nxt],
            )
        if abs(share - plan.steps[index]) > SHARE_TOLERANCE:
            return StepDecision(
                "hold",
                f"live candidate share {share:.2f}% differs from {step_words(index, plan.steps)} "
                f"({plan.steps[index]:g}%); "
                "not advancing a rollout someone else changed",
                index,
            )
    if index == len(plan.steps) - 1:
        return StepDecision(
            "finalize", f"last step ({plan.steps[index]:g}%) baked healthy: ready to finalize", index
        )
    nxt = index + 1
    return StepDecision(
        "advance",
        f"{step_words(index, plan.steps)} baked healthy: advancing to {plan.steps[nxt]:g}%",
        nxt,
        plan.steps[nxt],
    )
