"""Drain a candidate: the one code path for alarms, the stepper, the CLI and drills.

Guarantees (see docs/runtime.md):

- a drain costs at most 5 AWS calls (DescribeEndpoint, UpdateEndpointWeightsAndCapacities,
  TransactWriteItems of guard + audit, Publish, PutParameter of the quarantine record), and a
  repeated delivery of the same alarm state change at most 2 (DescribeEndpoint, GetParameter);
- the stable variant is never drained because of the candidate and weights are never all zero
  (:func:`rollback.runtime.decisions.decide_alarm`);
- busy endpoints and throttling are retried within one time budget per invocation
  (:mod:`rollback.runtime.retry`); an audit item never says ``done`` for something not done;
- the follow-ups are stored on the guard in the audit commit and the quarantine record is written
  last (:mod:`rollback.runtime.followups`): until it exists a redelivery finishes them.

Standard library + boto3 only: on the Lambda import path.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from rollback.runtime import audit, clock, decisions, names, records
from rollback.runtime.aws import Clients
from rollback.runtime.endpoint import (
    EndpointState,
    describe_alarm,
    describe_endpoint,
    plan_role,
    plan_version,
    read_quarantine,
    topic_arn_for,
    update_weights,
)
from rollback.runtime.errors import ConflictError, RetryExhaustedError
from rollback.runtime.events import parse_marker
from rollback.runtime.followups import (
    IN_PROGRESS_WINDOW,
    append_audit,
    build_followups,
    commit,
    drain_guard,
    drain_marker,
    finish,
    finish_if_cut_off,
    get_guard,
    record_failure,
    resume_followups,
    younger_than,
)
from rollback.runtime.logs import log_result
from rollback.runtime.records import Quarantine
from rollback.runtime.retry import RetryPolicy
from rollback.runtime.settings import Settings

#: A guard of the same drain key written this close before (or after) the start of our drain was
#: written by a delivery racing ours on the same drain. An older one belongs to an earlier drain
#: of an earlier release of this candidate (an alarm that stayed in ALARM keeps its key).
RACE_WINDOW = timedelta(seconds=60)


def _raced(guard: dict[str, Any] | None, started: datetime) -> bool:
    """True when ``guard`` was written by a delivery racing ours (not by an earlier drain)."""
    if guard is None:
        return True
    try:
        at = clock.parse_iso(str(guard.get("auditAt", "")).split("#", 1)[0])
    except ValueError:
        return True
    return at >= started - RACE_WINDOW


def drain_candidate(
    clients: Clients,
    settings: Settings,
    *,
    endpoint: str,
    reason: str,
    actor: str,
    kind: str,
    idempotency_key: str,
    alarm: str | None = None,
    version: str | None = None,
    state_at: datetime | None = None,
    retry: RetryPolicy | None = None,
    supersedes: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Drain the candidate of ``endpoint``: the one code path for alarms, the CLI and drills.

    ``state_at`` (the alarm's state-change time) enables the stale-replay check: when the
    endpoint changed after that time and the candidate still serves traffic, the alarm's current
    state is read (one DescribeAlarms) and the drain happens only if it is still in ALARM.
    ``supersedes``: guards of the quarantine record this drain replaces (the stepper's
    enforcement drain); the new record lists them so ``clear-quarantine`` marks them done too.
    """
    retry = (retry or RetryPolicy()).bounded()
    started = clock.now()
    base = {
        "endpoint": endpoint,
        "variant": names.CANDIDATE,
        "alarm": alarm,
        "idempotencyKey": idempotency_key,
    }

    def item_of(outcome: str, before: dict[str, float] | None, after: dict[str, float] | None, **kw: Any):
        return audit.AuditItem(
            endpoint=endpoint,
            action="drain",
            actor=actor,
            outcome=outcome,
            reason=kw.pop("why", reason),
            variant=names.CANDIDATE,
            version=version,
            alarm=alarm,
            weights_before=before,
            weights_after=after,
            idempotency_key=idempotency_key,
            detail=kw.pop("detail", {"kind": kind}),
        )

    try:
        state = describe_endpoint(clients, endpoint, retry, wait_ready=True)
    except (RetryExhaustedError, ConflictError) as exc:
        record_failure(clients, settings, item_of("failed", None, None), exc, idempotency_key)
        raise
    decision = decisions.decide_alarm(state.weights, names.CANDIDATE, "ALARM")
    pct_before = decisions.percents(state.weights)

    if decision.action != "drain":
        if state.weights.get(names.CANDIDATE, -1.0) == 0.0:
            return _already_drained(
                clients,
                settings,
                state,
                reason=reason,
                actor=actor,
                kind=kind,
                key=idempotency_key,
                alarm=alarm,
                version=version,
                retry=retry,
            )
        # Cannot drain safely (no stable variant to take the share): record once, change nothing.
        skipped = item_of("skipped", pct_before, pct_before, why=decision.reason, detail={})
        append_audit(clients, settings, skipped, retry)
        return log_result("skipped", decision.reason, **base, weightsBefore=pct_before)

    if state_at is not None and alarm and state.last_modified and state.last_modified > state_at:
        current = describe_alarm(clients, alarm, retry)
        if current is None or current.get("StateValue") != "ALARM":
            now_state = "deleted" if current is None else current.get("StateValue")
            return log_result(
                "skipped",
                f"stale replay: the endpoint changed at {clock.iso(state.last_modified)}, "
                f"after this state change "
                f"({clock.iso(state_at)}), and the alarm is now {now_state}",
                **base,
                weightsBefore=pct_before,
            )
        marker = parse_marker(current.get("AlarmDescription"))
        if marker and marker.version:
            version = marker.version

    if version is None:
        version = plan_version(clients, settings, endpoint, names.CANDIDATE, retry)
    version = version or "unknown"
    pct_after = decisions.percents(decision.after)
    try:
        update_weights(clients, endpoint, decision.after, (names.CANDIDATE, names.STABLE), retry)
    except Exception as exc:
        record_failure(clients, settings, item_of("failed", pct_before, pct_after), exc, idempotency_key)
        raise
    # The record's time is taken after the weights changed: a racing delivery's guard is then
    # never older than our start (see _raced).
    item = item_of("done", pct_before, pct_after)
    base["version"] = version
    topic = topic_arn_for(settings, state.raw.get("EndpointArn"))

    def followups_of(guard: str) -> dict[str, Any]:
        return build_followups(
            settings,
            topic,
            endpoint,
            version,
            alarm,
            reason,
            actor,
            kind,
            pct_before,
            pct_after,
            item.at,
            idempotency_key,
            (guard, *supersedes),
        )

    base_guard = drain_guard(idempotency_key, version)
    marker = drain_marker(endpoint, version)
    guard, followups = base_guard, followups_of(base_guard)
    committed = commit(clients, settings, item, retry, guard=guard, followups=followups, marker=marker)
    if not committed.written:
        if _raced(committed.guard, started) or younger_than(committed.guard, RACE_WINDOW, "latestAt"):
            return log_result(
                "duplicate", "another delivery of this state change already recorded the drain", **base
            )
        # The guard is from an earlier drain of this version (released again since, while the alarm
        # stayed in ALARM). This drain really moved traffic: it gets its own records, and the older
        # guard points at them (``latest``) in the same transaction.
        guard = f"{base_guard}#{item.at}"
        followups = followups_of(guard)
        committed = commit(
            clients,
            settings,
            item,
            retry,
            guard=guard,
            followups=followups,
            latest_of=base_guard,
            marker=marker,
        )
        if not committed.written:  # pragma: no cover - the key carries this item's own time
            return log_result("duplicate", "another delivery already recorded this drain", **base)
    done = finish(clients, settings, guard, followups, retry)
    return log_result(
        "drained",
        reason,
        **base,
        weightsBefore=pct_before,
        weightsAfter=pct_after,
        followUps=done,
        at=item.at,
    )


def _already_drained(
    clients: Clients,
    settings: Settings,
    state: EndpointState,
    *,
    reason: str,
    actor: str,
    kind: str,
    key: str,
    alarm: str | None,
    version: str | None,
    retry: RetryPolicy,
) -> dict[str, Any]:
    """Candidate at weight 0: a duplicate, a cut-off earlier delivery, someone else's drain, or idle.

    The quarantine record is read first: written last by a drain and carrying its key, it answers
    a duplicate in 2 calls. Then the plan (an idle or re-released candidate is not this event's
    business), then the guard of this drain (an earlier delivery committed the audit item but
    not its follow-ups: finish them), else the records are completed for a drain nobody recorded.
    """
    endpoint = state.name
    base = {"endpoint": endpoint, "variant": names.CANDIDATE, "alarm": alarm, "idempotencyKey": key}
    existing = read_quarantine(clients, settings, endpoint, retry)
    if (
        existing is not None
        and existing.idempotency_key == key
        and (version is None or existing.version == version)
    ):
        base["version"] = existing.version
        if "notify" in existing.pending:
            return _resume_notify(clients, settings, existing, base, retry)
        return log_result(
            "duplicate", "this state change was already handled; candidate is at weight 0", **base
        )
    if existing is not None and version is not None and existing.version == version:
        return _skipped_quarantined(existing, base, version)
    plan_found, planned = plan_role(clients, settings, endpoint, names.CANDIDATE, retry)
    if plan_found and planned is None:
        # strategy.keepVariantNames: between releases the candidate variant serves the stable
        # version at weight 0. Quarantining anything would only add noise to the records, and a
        # late event naming the version just finalized would quarantine the *stable* version.
        return log_result(
            "skipped",
            f"no candidate is released on {endpoint}: the candidate variant is idle (it serves the "
            "stable version at weight 0); nothing to drain",
            **base,
            version=version,
        )
    if plan_found and version is not None and version != planned:
        return log_result(
            "skipped",
            f"stale event: it is about {version} but the released candidate is {planned}; nothing recorded",
            **base,
            version=version,
        )
    version = version or planned or "unknown"
    base["version"] = version
    if existing is not None and existing.version == version:
        return _skipped_quarantined(existing, base, version)
    guard, found, outcome, done = finish_if_cut_off(clients, settings, drain_guard(key, version), retry)
    if outcome == "complete":
        return log_result("duplicate", "this state change was already handled", **base)
    if outcome == "in-progress":
        assert found is not None
        return log_result(
            "duplicate",
            f"the drain of this state change was committed at {found.get('auditAt')} and may still be "
            "sending its follow-ups; a later delivery or stepper tick finishes them if it was cut off",
            **base,
        )
    if outcome == "finished":
        return log_result(
            "completed", "finished follow-ups an earlier delivery could not do", **base, followUps=done
        )
    marker = get_guard(clients, settings, drain_marker(endpoint, version), retry)
    if younger_than(marker, IN_PROGRESS_WINDOW):
        assert marker is not None
        return log_result(
            "duplicate",
            f"a drain of {version} (guard {marker.get('guard')}) was committed at {marker.get('auditAt')} "
            "and may still be finishing; not recording a second drain",
            **base,
        )
    # Drained (by an earlier attempt that failed before recording, or by hand) but never
    # recorded: complete the records so `pulumi up` does not re-promote it silently.
    pct = decisions.percents(state.weights)
    item = audit.AuditItem(
        endpoint=endpoint,
        action="drain",
        actor=actor,
        outcome="done",
        reason=f"{reason} (candidate was already at weight 0; completing records)",
        variant=names.CANDIDATE,
        version=version,
        alarm=alarm,
        weights_before=pct,
        weights_after=pct,
        idempotency_key=key,
        detail={"kind": kind, "weightsAlreadyZero": True},
    )
    topic = topic_arn_for(settings, state.raw.get("EndpointArn"))
    followups = build_followups(
        settings, topic, endpoint, version, alarm, reason, actor, kind, pct, pct, item.at, key, (guard,)
    )
    committed = commit(
        clients,
        settings,
        item,
        retry,
        guard=guard,
        followups=followups,
        marker=drain_marker(endpoint, version),
    )
    if not committed.written:
        return log_result("duplicate", "another delivery of this state change already recorded it", **base)
    done = finish(clients, settings, guard, followups, retry)
    return log_result(
        "completed",
        "candidate was already at weight 0; quarantine and audit completed",
        **base,
        followUps=done,
    )


def _skipped_quarantined(existing: Quarantine, base: dict[str, Any], version: str) -> dict[str, Any]:
    return log_result(
        "skipped",
        f"candidate already at weight 0 and {version} quarantined "
        f"({existing.kind}, {existing.alarm or existing.by} at {existing.at})",
        **{**base, "version": version},
    )


def _resume_notify(
    clients: Clients, settings: Settings, record: Quarantine, base: dict[str, Any], retry: RetryPolicy
) -> dict[str, Any]:
    """The drain's quarantine is written but its message is not: send it, then clear ``pending``."""
    return log_result(**resume_followups(clients, settings, record, retry), **base)


#: A drain the stepper starts must end its last call before another delivery would take its
#: guard for a cut-off drain (``IN_PROGRESS_WINDOW`` after the commit): the stepper's tick has more
#: time than the rollback function, so each of its drains gets this budget of its own.
STEPPER_DRAIN_BUDGET_SECONDS = 40.0


def drain_retry(retry: RetryPolicy) -> RetryPolicy:
    """``retry`` for one drain the stepper starts: its deadline at most
    :data:`STEPPER_DRAIN_BUDGET_SECONDS` from now (and never past the tick's own deadline)."""
    own = clock.now() + timedelta(seconds=STEPPER_DRAIN_BUDGET_SECONDS)
    deadline = own if retry.deadline is None else min(retry.deadline, own)
    return replace(retry, deadline=deadline)


def drain(
    clients: Clients,
    settings: Settings,
    endpoint: str,
    *,
    actor: str,
    reason: str,
    kind: str = "manual",
    idempotency_key: str | None = None,
    retry: RetryPolicy | None = None,
) -> dict[str, Any]:
    """Manual (CLI) or drill drain of the candidate of ``endpoint``: same path as the alarm Lambda.

    ``endpoint`` may be physical (``fraud-scorer-dev``) or logical (``fraud-scorer``). Pass an
    ``idempotency_key`` to make a retried command safe; by default each call is a new action.
    """
    if kind not in records.QUARANTINE_KINDS:
        raise ValueError(f"kind must be one of {records.QUARANTINE_KINDS}, got {kind!r}")
    if not reason.strip():
        raise ValueError("a manual drain needs a reason (it goes into the audit trail and the notification)")
    physical = settings.physical(endpoint)
    key = idempotency_key or f"{kind}#{physical}#{clock.iso(clock.now())}"
    return drain_candidate(
        clients,
        settings,
        endpoint=physical,
        reason=reason,
        actor=actor,
        kind=kind,
        idempotency_key=key,
        retry=retry,
    )
