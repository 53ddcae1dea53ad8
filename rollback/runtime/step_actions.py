"""What one stepper decision does to one endpoint: the records and weights each action changes.

The stepper (:mod:`rollback.runtime.stepper`) reads every endpoint's plan, progress, quarantine and
alarms in batches and asks :func:`rollback.runtime.decisions.decide_step`; :func:`apply_decision`
carries the answer out (start, halt and drain, pause, hold, finalize, advance), after enforcing a
quarantine the candidate escaped. Every progress record and step/pause audit item of a tick is
built by :class:`_Tick`. Standard library + boto3 only: on the Lambda import path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rollback.runtime import audit, decisions, names, records
from rollback.runtime.aws import Clients
from rollback.runtime.drain import drain_candidate, drain_retry
from rollback.runtime.endpoint import describe_endpoint, read_quarantine, send_weights
from rollback.runtime.events import alarm_idempotency_key, parse_marker
from rollback.runtime.followups import (
    DrainRequest,
    append_audit,
)
from rollback.runtime.records import Progress, Quarantine, RolloutPlan
from rollback.runtime.retry import RetryPolicy, call
from rollback.runtime.settings import Settings


class PlannedEndpoint:
    """One endpoint's plan, progress and quarantine as read at the start of the tick."""

    def __init__(
        self, name: str, plan: RolloutPlan, progress: Progress | None, quarantine: Quarantine | None
    ):
        self.name = name
        self.plan = plan
        self.progress = progress
        self.quarantine = quarantine

    @property
    def quarantined(self) -> bool:
        return self.quarantine is not None and self.quarantine.version == self.plan.candidate


def write_progress(
    clients: Clients, settings: Settings, endpoint: str, progress: Progress, retry: RetryPolicy
) -> None:
    call(
        "PutParameter",
        records.put_text,
        retry,
        ssm=clients.ssm,
        name=settings.progress_parameter(endpoint),
        value=progress.to_json(),
        description="mlrollback rollout progress (owned by the stepper Lambda)",
    )


@dataclass
class _Tick:
    """One endpoint's step of a tick: what every action needs, and the one way to build its records."""

    clients: Clients
    settings: Settings
    ep: PlannedEndpoint
    decision: decisions.StepDecision
    now: datetime
    actor: str
    retry: RetryPolicy
    alarms: dict[str, dict[str, Any]]
    live: decisions.Weights | None

    @property
    def progress(self) -> Progress:
        assert self.ep.progress is not None  # every action but start/halt follows a current record
        return self.ep.progress

    def write_progress(
        self, state: str, *, step_index: int | None = None, started: datetime | None = None
    ) -> None:
        """The progress record of this plan in ``state`` with the decision's reason.

        ``step_index`` and ``started`` default to the current record's (a state change, no step).
        """
        if step_index is None or started is None:
            step_index = self.progress.step_index if step_index is None else step_index
            started = self.progress.step_started_at if started is None else started
        record = Progress(self.ep.plan.plan_id, step_index, started, state, self.decision.reason)
        write_progress(self.clients, self.settings, self.ep.name, record, self.retry)

    def append_audit(
        self,
        action: str,
        key: str,
        detail: dict[str, Any],
        before: dict[str, float] | None = None,
        after: dict[str, float] | None = None,
    ) -> None:
        """The stepper's audit item (``step`` or ``pause``) of this endpoint, guarded by ``key``."""
        item = audit.AuditItem(
            endpoint=self.ep.name,
            action=action,
            actor=self.actor,
            reason=self.decision.reason,
            variant=names.CANDIDATE,
            version=self.ep.plan.candidate,
            weights_before=before,
            weights_after=after,
            idempotency_key=key,
            detail={"planId": self.ep.plan.plan_id, **detail},
        )
        append_audit(self.clients, self.settings, item, self.retry)


def apply_decision(
    clients: Clients,
    settings: Settings,
    ep: PlannedEndpoint,
    decision: decisions.StepDecision,
    now: datetime,
    actor: str,
    retry: RetryPolicy,
    alarms: dict[str, dict[str, Any]],
    live: decisions.Weights | None,
) -> dict[str, Any]:
    """Carry out ``decision`` for ``ep``: the records and weights each action changes."""
    out: dict[str, Any] = {
        "action": decision.action,
        "reason": decision.reason,
        "stepIndex": decision.step_index,
    }
    if ep.quarantined and ep.plan.candidate is not None:
        enforced = _enforce_quarantine(clients, settings, ep, actor, retry)
        if enforced is not None:
            out["drain"] = enforced
    act = _ACTIONS.get(decision.action)
    if act is None:  # none, wait, evaluate: nothing to change
        return out
    return act(_Tick(clients, settings, ep, decision, now, actor, retry, alarms, live), out)


def _start(tick: _Tick, out: dict[str, Any]) -> dict[str, Any]:
    tick.write_progress("baking", step_index=0, started=tick.now)
    return out


def _halt(tick: _Tick, out: dict[str, Any]) -> dict[str, Any]:
    """A candidate alarm is in ALARM: the safety net for a lost or still-retrying alarm event.

    It drains through the same code path with the same idempotency key the alarm Lambda uses, so
    both together drain once.
    """
    plan = tick.ep.plan
    alarm = tick.alarms[tick.decision.alarms_in_alarm[0]]
    # The event's detail.state.timestamp is the transition time; StateUpdatedTimestamp also moves
    # when only the evaluation state changes, which would give a different idempotency key.
    state_at = alarm.get("StateTransitionedTimestamp") or alarm["StateUpdatedTimestamp"]
    marker = parse_marker(alarm.get("AlarmDescription"))
    # The plan's candidate is the version this rollout put into service; the drain's records
    # (and its guard key) name it even if the alarm's description still carries an older marker.
    request = DrainRequest(
        endpoint=tick.ep.name,
        reason=alarm.get("StateReason") or f"{alarm['AlarmName']} in ALARM",
        actor=tick.actor,
        kind="auto",
        idempotency_key=alarm_idempotency_key(alarm["AlarmName"], state_at),
        alarm=alarm["AlarmName"],
        version=plan.candidate or (marker.version if marker else None),
    )
    out["drain"] = drain_candidate(tick.clients, tick.settings, request, drain_retry(tick.retry))
    if tick.ep.progress is not None and plan.advances:  # single-step plans keep no progress
        tick.write_progress("halted")
    return out


def _halt_quarantined(tick: _Tick, out: dict[str, Any]) -> dict[str, Any]:
    tick.write_progress("halted")
    return out


def _pause(tick: _Tick, out: dict[str, Any]) -> dict[str, Any]:
    progress, plan = tick.progress, tick.ep.plan
    if progress.state != "paused":
        tick.write_progress("paused")
        tick.append_audit(
            "pause",
            f"pause#{tick.ep.name}#{plan.plan_id}#{progress.step_index}",
            {"stepIndex": progress.step_index},
        )
    return out


def _hold(tick: _Tick, out: dict[str, Any]) -> dict[str, Any]:
    if tick.progress.reason != tick.decision.reason or tick.progress.state != "baking":
        tick.write_progress("baking")
    return out


def _finalize(tick: _Tick, out: dict[str, Any]) -> dict[str, Any]:
    progress, plan = tick.progress, tick.ep.plan
    assert tick.live is not None
    before = decisions.percents(tick.live)
    tick.write_progress("ready-to-finalize")
    tick.append_audit(
        "step",
        f"finalize#{tick.ep.name}#{plan.plan_id}",
        {"state": "ready-to-finalize", "stepIndex": progress.step_index},
        before,
        before,
    )
    return out


def _advance(tick: _Tick, out: dict[str, Any]) -> dict[str, Any]:
    progress, plan, decision, live = tick.progress, tick.ep.plan, tick.decision, tick.live
    assert live is not None and decision.candidate_percent is not None
    before = decisions.percents(live)
    if abs(decisions.candidate_share(live) - decision.candidate_percent) <= decisions.SHARE_TOLERANCE:
        after = live  # an earlier tick moved the weights and was cut off before its records
    else:
        moved = _advance_weights(
            tick.clients, tick.settings, tick.ep, live, decision.candidate_percent, tick.retry
        )
        if isinstance(moved, str):
            return {"action": "hold", "reason": moved, "stepIndex": progress.step_index}
        after = moved
    # The audit item first: the weights have moved, so the record of it must not depend on the
    # progress write. A tick cut off before the progress write is finished by the next one
    # (decisions.decide_step recognises live weights at the next step); the item's key dedupes it.
    tick.append_audit(
        "step",
        f"step#{tick.ep.name}#{plan.plan_id}#{decision.step_index}",
        {"stepIndex": decision.step_index},
        before,
        decisions.percents(after),
    )
    tick.write_progress("baking", step_index=decision.step_index, started=tick.now)
    out["weightsBefore"], out["weightsAfter"] = before, decisions.percents(after)
    return out


#: What each StepDecision action does (the others change nothing).
_ACTIONS: dict[str, Callable[[_Tick, dict[str, Any]], dict[str, Any]]] = {
    "start": _start,
    "halt": _halt,
    "halt-quarantined": _halt_quarantined,
    "pause": _pause,
    "hold": _hold,
    "finalize": _finalize,
    "advance": _advance,
}


def _advance_weights(
    clients: Clients,
    settings: Settings,
    ep: PlannedEndpoint,
    live: decisions.Weights,
    percent: float,
    retry: RetryPolicy,
) -> decisions.Weights | str:
    """Move the candidate to ``percent``; the weights sent, or why the advance was abandoned.

    The quarantine is read again right before every attempt, and after a refused attempt (a drain
    keeps the endpoint Updating) the live weights are read again: a retry computed from the
    weights seen before a drain would put the drained candidate back into service. Each attempt
    sends the update once; the retries, their backoff and the time budget are those of
    :func:`rollback.runtime.retry.call`.
    """
    assert ep.progress is not None
    step_index = ep.progress.step_index
    expected = ep.plan.steps[step_index]
    tries = 0

    def attempt() -> decisions.Weights | str:
        nonlocal tries
        tries += 1
        current = live
        if tries > 1:  # the last update was refused: a drain may have moved the weights since
            state = describe_endpoint(clients, ep.name, retry, wait_ready=True)
            share = decisions.candidate_share(state.weights)
            if abs(share - expected) > decisions.SHARE_TOLERANCE:
                return (
                    f"live candidate share changed to {share:.2f}% while advancing from "
                    f"{decisions.step_words(step_index, ep.plan.steps)} ({expected:g}%): a drain or "
                    "someone else moved the weights; "
                    "not advancing"
                )
            current = state.weights
        quarantine = read_quarantine(clients, settings, ep.name, retry)
        if quarantine is not None and quarantine.version == ep.plan.candidate:
            return (
                f"candidate {quarantine.version} was quarantined ({quarantine.kind} at {quarantine.at}) "
                "during this tick; not advancing"
            )
        after = decisions.step_weights(current, percent)
        send_weights(clients, ep.name, after, (names.STABLE, names.CANDIDATE))
        return after

    # One retry loop (rollback.runtime.retry.call): every attempt is the whole read-decide-update.
    return call("UpdateEndpointWeightsAndCapacities", attempt, retry)


def _enforce_quarantine(
    clients: Clients, settings: Settings, ep: PlannedEndpoint, actor: str, retry: RetryPolicy
) -> dict[str, Any] | None:
    """Drain a quarantined candidate found serving traffic again (the same drain path as alarms).

    A weights update computed before a drain can land after it (the stepper's own advance, a
    script, a late retry): the quarantine says this version stays at weight 0, so every tick
    checks (one DescribeEndpoint per quarantined endpoint) and drains it again. The record is read
    again right before draining, so a restore that just cleared it (a drill) is left alone.
    """
    state = describe_endpoint(clients, ep.name, retry, wait_ready=False)
    if state.weights.get(names.CANDIDATE, 0.0) <= 0:
        return None
    share = decisions.candidate_share(state.weights)
    if state.status != "InService":
        return {
            "action": "wait",
            "reason": f"quarantined candidate serves {share:.2f}% but the endpoint is {state.status}; "
            "draining it on a later tick",
        }
    record = read_quarantine(clients, settings, ep.name, retry)
    if record is None or record.version != ep.plan.candidate:
        return None
    request = DrainRequest(
        endpoint=ep.name,
        reason=f"candidate {record.version} is quarantined ({record.kind}, {record.alarm or record.by} at "
        f"{record.at}) but served {share:.2f}% of traffic again; drained again",
        actor=actor,
        kind=record.kind if record.kind in records.QUARANTINE_KINDS else "auto",
        idempotency_key=f"quarantined#{ep.name}#{record.version}#{record.at}",
        alarm=record.alarm,
        version=record.version,
        supersedes=record.guards,
    )
    return drain_candidate(clients, settings, request, drain_retry(retry))
