"""Alarm routing: one CloudWatch alarm state change -> drain the candidate, notify for stable, or skip.

What the rollback function does with each event (docs/runtime.md, rollback on alarm): the
alarm's name and metrics must agree on endpoint and role; a candidate alarm drains through
:func:`rollback.runtime.drain.drain_candidate`; a stable alarm is recorded and announced once,
never drained.

Standard library + boto3 only: on the Lambda import path.
"""

from __future__ import annotations

import json
from typing import Any

from rollback.runtime import audit, decisions, names, notify
from rollback.runtime.aws import Clients
from rollback.runtime.drain import drain_candidate
from rollback.runtime.endpoint import describe_endpoint, plan_version, topic_arn_for
from rollback.runtime.errors import EventError
from rollback.runtime.events import AlarmEvent
from rollback.runtime.followups import DrainRequest, clear_owed, commit, finish, get_guard
from rollback.runtime.logs import log_result
from rollback.runtime.retry import RetryPolicy
from rollback.runtime.settings import Settings


def handle_alarm(
    clients: Clients, settings: Settings, event: AlarmEvent, *, actor: str, retry: RetryPolicy | None = None
) -> dict[str, Any]:
    """React to one alarm state change (the rollback Lambda's logic).

    ``retry`` without a deadline gets one here (:meth:`RetryPolicy.bounded`): every retry of
    this invocation shares one time budget.
    """
    retry = (retry or RetryPolicy()).bounded()
    base = {"alarm": event.alarm_name, "state": event.state, "stack": settings.stack}
    if event.state != "ALARM":
        return log_result("skipped", f"alarm state is {event.state}; only ALARM transitions act", **base)
    parsed = names.parse_alarm_name(event.alarm_name)
    if parsed is None:
        return log_result(
            "skipped", "alarm name is not an mlrollback alarm (<endpoint>-<role>-<kpi>)", **base
        )
    name_endpoint, name_role, _kpi = parsed
    if not name_endpoint.endswith(f"-{settings.stack}"):
        return log_result(
            "skipped", f"alarm belongs to another stack (this function serves {settings.stack})", **base
        )
    if event.endpoint is None or event.variant is None:
        raise EventError(
            f"alarm event for {event.alarm_name}: no metric carries EndpointName and VariantName dimensions "
            "(detail.configuration.metrics[].metricStat.metric.dimensions); nothing was changed"
        )
    if (event.endpoint, event.variant) != (name_endpoint, name_role):
        raise EventError(
            f"alarm event for {event.alarm_name}: its metrics watch {event.endpoint}/{event.variant} "
            f"but its name "
            f"says {name_endpoint}/{name_role}; nothing was changed"
        )
    endpoint, role = event.endpoint, event.variant
    if role == names.STABLE:
        return _stable_alarm(clients, settings, event, endpoint, actor, retry)
    if role != names.CANDIDATE:
        return log_result(
            "skipped", f"{role} variant serves no live traffic; nothing to drain", **base, endpoint=endpoint
        )
    marker = event.marker
    request = DrainRequest(
        endpoint=endpoint,
        reason=event.reason or f"{event.alarm_name} in ALARM",
        actor=actor,
        kind="auto",
        idempotency_key=event.idempotency_key,
        alarm=event.alarm_name,
        version=marker.version if marker else None,
        state_at=event.state_at,
    )
    return drain_candidate(clients, settings, request, retry)


def _stable_alarm(
    clients: Clients, settings: Settings, event: AlarmEvent, endpoint: str, actor: str, retry: RetryPolicy
) -> dict[str, Any]:
    """Stable's own alarm: record and notify once, never touch weights.

    The message is owed on the guard from the commit until an UpdateItem after Publish clears it,
    so a delivery cut off in between is finished by the next one (which may repeat the message).
    """
    key = event.idempotency_key
    base = {"endpoint": endpoint, "variant": names.STABLE, "alarm": event.alarm_name, "idempotencyKey": key}
    found = get_guard(clients, settings, key, retry)
    if found is not None:
        owed = audit.guard_followups(found)
        if not owed:
            return log_result("duplicate", "this state change was already handled", **base)
        done = finish(clients, settings, key, owed, retry, what="stable alarm")
        clear_owed(clients, settings, key, retry)
        return log_result(
            "completed", "finished follow-ups an earlier delivery could not do", **base, followUps=done
        )
    state = describe_endpoint(clients, endpoint, retry, wait_ready=False)
    decision = decisions.decide_alarm(state.weights, names.STABLE, event.state)
    marker = event.marker
    version = (marker.version if marker else None) or plan_version(
        clients, settings, endpoint, names.STABLE, retry
    )
    version = version or "unknown"
    pct = decisions.percents(decision.before)
    item = audit.AuditItem(
        endpoint=endpoint,
        action="notify",
        actor=actor,
        outcome="done",
        reason=f"{decision.reason}: {event.reason}",
        variant=names.STABLE,
        version=version,
        alarm=event.alarm_name,
        weights_before=pct,
        weights_after=pct,
        idempotency_key=key,
        detail={"kind": "stable-failing"},
    )
    message = notify.stable_failing_message(
        stack=settings.stack,
        endpoint=endpoint,
        version=version,
        alarm=event.alarm_name,
        reason=event.reason,
        weights=pct,
        actor=actor,
    )
    followups = {
        "notify": {
            "subject": message.subject,
            "body": json.dumps({**message.body, "idempotencyKey": key}, sort_keys=True),
            "topic": topic_arn_for(settings, state.raw.get("EndpointArn")),
        }
    }
    base["version"] = version
    if not commit(clients, settings, item, retry, followups=followups).written:
        return log_result("duplicate", "another delivery of this state change already recorded it", **base)
    done = finish(clients, settings, key, followups, retry, what="stable alarm")
    clear_owed(clients, settings, key, retry)
    return log_result(
        "notified", decision.reason, **base, weightsBefore=pct, weightsAfter=pct, followUps=done
    )
