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
    DrainRequest,
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


def _base(request: DrainRequest) -> dict[str, Any]:
    return {
        "endpoint": request.endpoint,
        "variant": names.CANDIDATE,
        "alarm": request.alarm,
        "idempotencyKey": request.idempotency_key,
    }


def drain_candidate(
    clients: Clients, settings: Settings, request: DrainRequest, retry: RetryPolicy | None = None
) -> dict[str, Any]:
    """Drain the candidate of ``request.endpoint``: the one code path for alarms, the CLI and drills.

    ``request.state_at`` (the alarm's state-change time) enables the stale-replay check: when the
    endpoint changed after that time and the candidate still serves traffic, the alarm's current
    state is read (one DescribeAlarms) and the drain happens only if it is still in ALARM.
    """
    retry = (retry or RetryPolicy()).bounded()
    started = clock.now()
    try:
        state = _current_state(clients, request.endpoint, retry)
    except (RetryExhaustedError, ConflictError) as exc:
        failed = request.audit_item("failed", None, None, version=request.version)
        record_failure(clients, settings, failed, exc, request.idempotency_key)
        raise
    decision = decisions.decide_alarm(state.weights, names.CANDIDATE, "ALARM")
    if decision.action != "drain":
        return _not_drainable(clients, settings, request, state, decision, retry)
    version, stale = _version_to_drain(clients, settings, request, state, retry)
    if stale is not None:
        return stale
    before, after = decisions.percents(state.weights), decisions.percents(decision.after)
    try:
        update_weights(clients, request.endpoint, decision.after, (names.CANDIDATE, names.STABLE), retry)
    except Exception as exc:
        failed = request.audit_item("failed", before, after, version=version)
        record_failure(clients, settings, failed, exc, request.idempotency_key)
        raise
    # The record's time is taken after the weights changed: a racing delivery's guard is then
    # never older than our start (see _raced).
    item = request.audit_item("done", before, after, version=version)
    topic = topic_arn_for(settings, state.raw.get("EndpointArn"))
    return _record_drain(clients, settings, request, item, topic, started, retry)


def _current_state(clients: Clients, endpoint: str, retry: RetryPolicy) -> EndpointState:
    """The endpoint as a drain must see it: InService (waiting while busy), or already being drained.

    SageMaker keeps an endpoint ``Updating`` for a while after a weights update, with the new
    weights in ``DesiredWeight``. A drain (this one's earlier delivery, another alarm's, an
    operator's) being applied is not something to wait out: a second alarm of the same bad canary
    arrives exactly then, and waiting would spend its retry budget and record a failure for a drain
    that is happening. Its desired weights are taken as the state instead (no extra call).
    """
    state = describe_endpoint(
        clients,
        endpoint,
        retry,
        wait_ready=True,
        busy_ok=lambda busy: busy.desired_weights.get(names.CANDIDATE) == 0.0,
    )
    if state.status != "InService":
        return replace(state, weights=state.desired_weights)
    return state


def _not_drainable(
    clients: Clients,
    settings: Settings,
    request: DrainRequest,
    state: EndpointState,
    decision: decisions.AlarmDecision,
    retry: RetryPolicy,
) -> dict[str, Any]:
    """The candidate is at weight 0 already, or no stable variant could take its share."""
    if state.weights.get(names.CANDIDATE, -1.0) == 0.0:
        return _already_drained(clients, settings, state, request, retry)
    # Cannot drain safely (no stable variant to take the share): record once, change nothing.
    before = decisions.percents(state.weights)
    skipped = request.audit_item(
        "skipped", before, before, version=request.version, reason=decision.reason, detail={}
    )
    append_audit(clients, settings, skipped, retry)
    return log_result("skipped", decision.reason, **_base(request), weightsBefore=before)


def _version_to_drain(
    clients: Clients, settings: Settings, request: DrainRequest, state: EndpointState, retry: RetryPolicy
) -> tuple[str, dict[str, Any] | None]:
    """(the candidate version the drain is about, the ``skipped`` result of a stale replay or None).

    The alarm's own marker names the version when the alarm had to be read (stale-replay check);
    else the request's version, else the rollout plan's candidate, else ``unknown``.
    """
    version = request.version
    changed_since = state.last_modified and request.state_at and state.last_modified > request.state_at
    if request.alarm and changed_since:
        current = describe_alarm(clients, request.alarm, retry)
        if current is None or current.get("StateValue") != "ALARM":
            now_state = "deleted" if current is None else current.get("StateValue")
            assert state.last_modified is not None and request.state_at is not None
            return "", log_result(
                "skipped",
                f"stale replay: the endpoint changed at {clock.iso(state.last_modified)}, "
                f"after this state change "
                f"({clock.iso(request.state_at)}), and the alarm is now {now_state}",
                **_base(request),
                weightsBefore=decisions.percents(state.weights),
            )
        marker = parse_marker(current.get("AlarmDescription"))
        if marker and marker.version:
            version = marker.version
    if version is None:
        version = plan_version(clients, settings, request.endpoint, names.CANDIDATE, retry)
    return version or "unknown", None


def _record_drain(
    clients: Clients,
    settings: Settings,
    request: DrainRequest,
    item: audit.AuditItem,
    topic: str | None,
    started: datetime,
    retry: RetryPolicy,
) -> dict[str, Any]:
    """Commit the drain's audit item with its guard and follow-ups, then do the follow-ups."""
    version = item.version or "unknown"
    base = {**_base(request), "version": version}
    before, after = item.weights_before or {}, item.weights_after or {}

    def followups_of(guard: str) -> dict[str, Any]:
        return build_followups(
            settings,
            request,
            topic_arn=topic,
            version=version,
            before=before,
            after=after,
            at=item.at,
            guards=(guard, *request.supersedes),
        )

    base_guard = drain_guard(request.idempotency_key, version)
    marker = drain_marker(request.endpoint, version)
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
        request.reason,
        **base,
        weightsBefore=before,
        weightsAfter=after,
        followUps=done,
        at=item.at,
    )


def _already_drained(
    clients: Clients, settings: Settings, state: EndpointState, request: DrainRequest, retry: RetryPolicy
) -> dict[str, Any]:
    """Candidate at weight 0: a duplicate, a cut-off earlier delivery, someone else's drain, or idle.

    The quarantine record is read first: written last by a drain and carrying its key, it answers
    a duplicate in 2 calls. Then the plan (an idle or re-released candidate is not this event's
    business), then the guard of this drain (an earlier delivery committed the audit item but
    not its follow-ups: finish them), else the records are completed for a drain nobody recorded.
    """
    endpoint, key, version = request.endpoint, request.idempotency_key, request.version
    base = _base(request)
    existing = read_quarantine(clients, settings, endpoint, retry)
    if existing is not None and existing.idempotency_key == key and version in (None, existing.version):
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
    return _finish_or_complete(clients, settings, state, request, version, base, retry)


def _finish_or_complete(
    clients: Clients,
    settings: Settings,
    state: EndpointState,
    request: DrainRequest,
    version: str,
    base: dict[str, Any],
    retry: RetryPolicy,
) -> dict[str, Any]:
    """Finish a cut-off drain of this key, wait for one still finishing, or complete unrecorded records."""
    key, endpoint = request.idempotency_key, request.endpoint
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
    item = request.audit_item(
        "done",
        pct,
        pct,
        version=version,
        reason=f"{request.reason} (candidate was already at weight 0; completing records)",
        detail={"kind": request.kind, "weightsAlreadyZero": True},
    )
    topic = topic_arn_for(settings, state.raw.get("EndpointArn"))
    followups = build_followups(
        settings,
        request,
        topic_arn=topic,
        version=version,
        before=pct,
        after=pct,
        at=item.at,
        guards=(guard,),
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
    request = DrainRequest(endpoint=physical, reason=reason, actor=actor, kind=kind, idempotency_key=key)
    return drain_candidate(clients, settings, request, retry)
