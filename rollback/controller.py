"""Drain, step and status with injected AWS clients: the Lambda handlers and the CLI share this.

Decisions come from :mod:`rollback.policy` (pure); this module gathers the facts, applies the
decision and records it. Guarantees (see docs/runtime.md):

- a drain costs at most 5 AWS calls (DescribeEndpoint, UpdateEndpointWeightsAndCapacities,
  TransactWriteItems of guard + audit, PutParameter of the quarantine record, Publish), and a
  repeated delivery of the same alarm state change at most 2;
- the stable variant is never drained because of the candidate and weights are never all zero;
- busy endpoints and throttling are retried with bounded full-jitter backoff on
  :mod:`rollback.clock`, then :class:`RetryExhaustedError` is raised (Lambda retries the invocation, the
  DLQ keeps the event); an audit item never says ``done`` for something not done, and follow-up
  effects that failed after the audit item was written are kept on the guard item as
  ``pending`` so the next delivery finishes them.

Standard library + boto3 only: on the Lambda import path.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rollback import audit, clock, names, notify, policy, records
from rollback.aws import Clients
from rollback.errors import (
    ConfigError,
    ConflictError,
    EventError,
    FollowUpError,
    NotFoundError,
    RetryExhaustedError,
)
from rollback.events import AlarmEvent, parse_marker
from rollback.logs import log
from rollback.records import Quarantine

THROTTLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "ServiceUnavailable",
        "InternalServerError",
    }
)
#: SageMaker answers a weights update on a busy endpoint with a ValidationException like
#: 'Cannot update in-progress endpoint "arn:..."'.
_BUSY_MESSAGE = re.compile(r"in-progress|in progress|being updated|is updating|currently updating", re.I)


@dataclass(frozen=True)
class Settings:
    """Where the stack's records live; from the Lambda environment or built for a stack by the CLI."""

    stack: str
    audit_table: str
    topic_arn: str | None
    quarantine_prefix: str
    rollout_prefix: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the MLROLLBACK_* variables the program sets on the functions (docs/contracts.md)."""
        env = os.environ if env is None else env
        missing = [
            k
            for k in (
                names.ENV_STACK,
                names.ENV_AUDIT_TABLE,
                names.ENV_QUARANTINE_PREFIX,
                names.ENV_ROLLOUT_PREFIX,
            )
            if not env.get(k)
        ]
        if missing:
            raise ConfigError(
                f"Lambda environment is missing {', '.join(missing)}; these are set by the Pulumi program "
                "(infra/components/autorollback): redeploy with `pulumi up`"
            )
        return cls(
            stack=names.check_stack(env[names.ENV_STACK]),
            audit_table=env[names.ENV_AUDIT_TABLE],
            topic_arn=env.get(names.ENV_TOPIC_ARN) or None,
            quarantine_prefix=env[names.ENV_QUARANTINE_PREFIX].rstrip("/"),
            rollout_prefix=env[names.ENV_ROLLOUT_PREFIX].rstrip("/"),
        )

    @classmethod
    def for_stack(cls, stack: str, topic_arn: str | None = None) -> Settings:
        """Settings derived from :mod:`rollback.names` (what the program would set)."""
        return cls(
            stack=names.check_stack(stack),
            audit_table=names.audit_table_name(stack),
            topic_arn=topic_arn,
            quarantine_prefix=names.quarantine_prefix(stack),
            rollout_prefix=names.rollout_prefix(stack),
        )

    def quarantine_parameter(self, endpoint: str) -> str:
        """Quarantine record parameter of ``endpoint`` under this stack's prefix."""
        return f"{self.quarantine_prefix}/{endpoint}"

    def plan_parameter(self, endpoint: str) -> str:
        """Rollout plan parameter of ``endpoint``."""
        return f"{self.rollout_prefix}/{endpoint}/plan"

    def progress_parameter(self, endpoint: str) -> str:
        """Rollout progress parameter of ``endpoint``."""
        return f"{self.rollout_prefix}/{endpoint}/progress"

    def physical(self, endpoint: str) -> str:
        """Accept a physical endpoint name of this stack or a logical one (made physical)."""
        return endpoint if endpoint.endswith(f"-{self.stack}") else names.endpoint_name(self.stack, endpoint)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter: sleep U(0, min(cap, base * 2**n)).

    Six attempts with base 0.5 s and cap 8 s wait at most 23.5 s in total (about half on
    average), well inside a 60 s Lambda timeout.
    """

    attempts: int = 6
    base: float = 0.5
    cap: float = 8.0
    rng: Callable[[float, float], float] = random.uniform

    def delay(self, attempt: int) -> float:
        """Sleep before retry number ``attempt`` (1-based)."""
        return self.rng(0.0, min(self.cap, self.base * 2 ** (attempt - 1)))


def _code(exc: BaseException) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def is_retryable(exc: BaseException) -> bool:
    """Throttling, transient service errors, and "endpoint is being updated" validation errors."""
    code = _code(exc)
    if code in THROTTLE_CODES:
        return True
    response = getattr(exc, "response", {})
    if code == "TransactionCanceledException":
        # Two racing transactions on one guard item: DynamoDB cancels one with TransactionConflict;
        # the retry then sees the winner's guard and reports a duplicate.
        reasons = {r.get("Code") for r in response.get("CancellationReasons") or []}
        return "TransactionConflict" in reasons
    message = response.get("Error", {}).get("Message", "")
    return code == "ValidationException" and bool(_BUSY_MESSAGE.search(message))


def call(op: str, fn: Callable[..., Any], retry: RetryPolicy, **kwargs: Any) -> Any:
    """Call ``fn(**kwargs)``, retrying retryable errors; RetryExhaustedError after the last attempt."""
    for attempt in range(1, retry.attempts + 1):
        try:
            return fn(**kwargs)
        except Exception as exc:
            if not is_retryable(exc):
                raise
            if attempt == retry.attempts:
                raise RetryExhaustedError(
                    f"{op} kept failing with {_code(exc)} after {retry.attempts} attempts; "
                    "raising so Lambda retries the invocation (then the dead-letter queue keeps the event)"
                ) from exc
            delay = retry.delay(attempt)
            log(logging.WARNING, "retrying", op=op, code=_code(exc), attempt=attempt, sleep=round(delay, 3))
            clock.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


# --- endpoint facts -----------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointState:
    """What DescribeEndpoint says, reduced to what decisions need."""

    name: str
    status: str
    weights: policy.Weights
    shadow_weights: policy.Weights
    last_modified: datetime | None
    raw: dict[str, Any]


def _as_utc(value: Any) -> datetime | None:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    return None


def describe_endpoint(
    clients: Clients, endpoint: str, retry: RetryPolicy, *, wait_ready: bool
) -> EndpointState:
    """DescribeEndpoint; with ``wait_ready`` back off while the endpoint is busy (Updating, ...).

    Raises NotFoundError for an unknown endpoint, ConflictError for a Failed/OutOfService one,
    RetryExhaustedError when it stays busy.
    """
    for attempt in range(1, retry.attempts + 1):
        try:
            raw = call("DescribeEndpoint", clients.sagemaker.describe_endpoint, retry, EndpointName=endpoint)
        except Exception as exc:
            if _code(exc) == "ValidationException" and "could not find" in str(exc).lower():
                raise NotFoundError(f"endpoint {endpoint} does not exist in this account/region") from exc
            raise
        status = raw.get("EndpointStatus", "")
        state = EndpointState(
            name=endpoint,
            status=status,
            weights={
                v["VariantName"]: float(v.get("CurrentWeight", v.get("DesiredWeight", 0.0)) or 0.0)
                for v in raw.get("ProductionVariants", [])
            },
            shadow_weights={
                v["VariantName"]: float(v.get("CurrentWeight", v.get("DesiredWeight", 0.0)) or 0.0)
                for v in raw.get("ShadowProductionVariants", [])
            },
            last_modified=_as_utc(raw.get("LastModifiedTime")),
            raw=raw,
        )
        if status == "InService" or not wait_ready:
            return state
        if status not in policy.BUSY_STATUSES:
            raise ConflictError(
                f"endpoint {endpoint} is {status}; weights cannot be changed until it is InService"
            )
        if attempt == retry.attempts:
            raise RetryExhaustedError(
                f"endpoint {endpoint} stayed {status} for {retry.attempts} attempts; "
                "raising so the event is retried"
            )
        delay = retry.delay(attempt)
        log(
            logging.WARNING,
            "endpoint busy",
            endpoint=endpoint,
            status=status,
            attempt=attempt,
            sleep=round(delay, 3),
        )
        clock.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _update_weights(
    clients: Clients, endpoint: str, after: policy.Weights, roles: tuple[str, ...], retry: RetryPolicy
) -> None:
    # Only the roles being changed are sent: the shadow variant and any other variant keep
    # their weights, and instance counts are left to auto scaling.
    desired = [{"VariantName": role, "DesiredWeight": float(after[role])} for role in roles]
    call(
        "UpdateEndpointWeightsAndCapacities",
        clients.sagemaker.update_endpoint_weights_and_capacities,
        retry,
        EndpointName=endpoint,
        DesiredWeightsAndCapacities=desired,
    )


def _plan_role(
    clients: Clients, settings: Settings, endpoint: str, role: str, retry: RetryPolicy
) -> tuple[bool, str | None]:
    """(whether a readable rollout plan exists, the version it gives ``role``)."""
    text = call(
        "GetParameter", records.get_text, retry, ssm=clients.ssm, name=settings.plan_parameter(endpoint)
    )
    if text is None:
        return False, None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return False, None
    if not isinstance(data, dict):
        return False, None
    value = data.get(role)
    return True, value if isinstance(value, str) else None


def _plan_version(
    clients: Clients, settings: Settings, endpoint: str, role: str, retry: RetryPolicy
) -> str | None:
    return _plan_role(clients, settings, endpoint, role, retry)[1]


# --- drain ---------------------------------------------------------------------------------


def _result(action: str, reason: str, **fields: Any) -> dict[str, Any]:
    out = {"action": action, "reason": reason, **{k: v for k, v in fields.items() if v is not None}}
    log(logging.INFO, f"alarm {action}", **out)
    return out


def _finish(
    clients: Clients,
    settings: Settings,
    key: str,
    pending: dict[str, Any],
    retry: RetryPolicy,
) -> list[str]:
    """Do the follow-up effects after the audit item was written; on failure keep them on the guard."""
    done: list[str] = []
    remaining = dict(pending)
    try:
        if "quarantine" in remaining:
            q = remaining["quarantine"]
            call(
                "PutParameter",
                records.put_text,
                retry,
                ssm=clients.ssm,
                name=q["name"],
                value=q["value"],
                description="mlrollback quarantine record: the program keeps this candidate at weight 0",
            )
            remaining.pop("quarantine")
            done.append("quarantine")
        if "notify" in remaining:
            n = remaining["notify"]
            topic = n.get("topic") or settings.topic_arn
            if topic:
                message = notify.Message(subject=n["subject"], body=json.loads(n["body"]))
                call(
                    "Publish",
                    notify.publish,
                    retry,
                    sns=clients.sns,
                    topic_arn=topic,
                    message=message,
                )
                done.append("notify")
            else:
                log(logging.WARNING, "no topic configured; notification not sent", key=key)
            remaining.pop("notify")
    except Exception as exc:
        log(
            logging.ERROR,
            "follow-up failed; kept on the guard item",
            key=key,
            pending=sorted(remaining),
            error=str(exc),
        )
        try:
            audit.set_pending(
                clients.dynamodb, settings.audit_table, key, [json.dumps(remaining, sort_keys=True)]
            )
        except Exception as mark_exc:  # the original error is the one to surface
            log(logging.ERROR, "could not record pending follow-ups", key=key, error=str(mark_exc))
        raise FollowUpError(
            f"the drain is done and recorded, but {', '.join(sorted(remaining))} failed ({exc}); "
            f"kept as pending on audit guard {key!r} for the next delivery to finish"
        ) from exc
    return done


def _resume(
    clients: Clients, settings: Settings, key: str, guard: dict[str, Any], retry: RetryPolicy
) -> list[str]:
    """Finish what an earlier delivery of ``key`` could not do (stored on its guard item)."""
    stored = guard.get("pending") or []
    pending: dict[str, Any] = {}
    for chunk in stored:
        pending.update(json.loads(chunk))
    done = _finish(clients, settings, key, pending, retry)
    call(
        "UpdateItem",
        audit.set_pending,
        retry,
        dynamodb=clients.dynamodb,
        table=settings.audit_table,
        idempotency_key=key,
        pending=[],
    )
    return done


def _record_failure(clients: Clients, settings: Settings, item: audit.AuditItem, error: Exception) -> None:
    """Best effort: an audit item with outcome ``failed`` (no idempotency guard: every failed try counts)."""
    item.outcome = "failed"
    item.detail = {**item.detail, "error": str(error)[:500]}
    item.idempotency_key = None
    try:
        audit.append(clients.dynamodb, settings.audit_table, item)
    except Exception as exc:
        log(logging.ERROR, "could not write the failed audit item", endpoint=item.endpoint, error=str(exc))


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
) -> dict[str, Any]:
    """Drain the candidate of ``endpoint``: the one code path for alarms, the CLI and drills.

    ``state_at`` (the alarm's state-change time) enables the stale-replay check: when the
    endpoint changed after that time and the candidate still serves traffic, the alarm's current
    state is read (one DescribeAlarms) and the drain happens only if it is still in ALARM.
    """
    retry = retry or RetryPolicy()
    base = {
        "endpoint": endpoint,
        "variant": names.CANDIDATE,
        "alarm": alarm,
        "idempotencyKey": idempotency_key,
    }
    try:
        state = describe_endpoint(clients, endpoint, retry, wait_ready=True)
    except (RetryExhaustedError, ConflictError) as exc:
        failed = audit.AuditItem(
            endpoint=endpoint,
            action="drain",
            actor=actor,
            reason=reason,
            variant=names.CANDIDATE,
            version=version,
            alarm=alarm,
            idempotency_key=idempotency_key,
            detail={"kind": kind},
        )
        _record_failure(clients, settings, failed, exc)
        raise
    decision = policy.decide_alarm(state.weights, names.CANDIDATE, "ALARM")
    pct_before = policy.percents(state.weights)

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
        item = audit.AuditItem(
            endpoint=endpoint,
            action="drain",
            actor=actor,
            outcome="skipped",
            reason=decision.reason,
            variant=names.CANDIDATE,
            version=version,
            alarm=alarm,
            weights_before=pct_before,
            weights_after=pct_before,
            idempotency_key=idempotency_key,
        )
        append_audit(clients, settings, item, retry)
        return _result("skipped", decision.reason, **base, weightsBefore=pct_before)

    if state_at is not None and alarm and state.last_modified and state.last_modified > state_at:
        current = _describe_alarm(clients, alarm, retry)
        if current is None or current.get("StateValue") != "ALARM":
            now_state = "deleted" if current is None else current.get("StateValue")
            return _result(
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
        version = _plan_version(clients, settings, endpoint, names.CANDIDATE, retry)
    version = version or "unknown"
    pct_after = policy.percents(decision.after)
    item = audit.AuditItem(
        endpoint=endpoint,
        action="drain",
        actor=actor,
        outcome="done",
        reason=reason,
        variant=names.CANDIDATE,
        version=version,
        alarm=alarm,
        weights_before=pct_before,
        weights_after=pct_after,
        idempotency_key=idempotency_key,
        detail={"kind": kind},
    )
    try:
        _update_weights(clients, endpoint, decision.after, (names.CANDIDATE, names.STABLE), retry)
    except Exception as exc:
        _record_failure(clients, settings, item, exc)
        raise
    written = append_audit(clients, settings, item, retry)
    base["version"] = version
    if not written:
        return _result(
            "duplicate", "another delivery of this state change already recorded the drain", **base
        )
    topic = topic_arn_for(settings, state.raw.get("EndpointArn"))
    pending = _followups(
        settings, topic, endpoint, version, alarm, reason, actor, kind, pct_before, pct_after, item.at
    )
    done = _finish(clients, settings, idempotency_key, pending, retry)
    return _result(
        "drained",
        reason,
        **base,
        weightsBefore=pct_before,
        weightsAfter=pct_after,
        followUps=done,
        at=item.at,
    )


def topic_arn_for(settings: Settings, endpoint_arn: str | None) -> str | None:
    """The stack's topic ARN: from settings, else built from the endpoint's ARN (no extra call).

    The CLI knows the stack but not the account; the endpoint ARN from DescribeEndpoint carries
    partition, region and account, and the topic name comes from :mod:`rollback.names`.
    """
    if settings.topic_arn:
        return settings.topic_arn
    parts = (endpoint_arn or "").split(":")
    if len(parts) < 6 or not parts[4]:
        return None
    return f"arn:{parts[1]}:sns:{parts[3]}:{parts[4]}:{names.topic_name(settings.stack)}"


def _followups(
    settings: Settings,
    topic_arn: str | None,
    endpoint: str,
    version: str,
    alarm: str | None,
    reason: str,
    actor: str,
    kind: str,
    before: dict[str, float],
    after: dict[str, float],
    at: str,
) -> dict[str, Any]:
    quarantine = Quarantine(
        endpoint=endpoint,
        version=version,
        variant=names.CANDIDATE,
        alarm=alarm,
        reason=reason,
        at=at.split("#", 1)[0],
        by=actor,
        kind=kind,
    )
    message = notify.rollback_message(
        stack=settings.stack,
        endpoint=endpoint,
        variant=names.CANDIDATE,
        version=version,
        alarm=alarm,
        reason=reason,
        weights_before=before,
        weights_after=after,
        kind=kind,
        actor=actor,
    )
    return {
        "quarantine": {"name": settings.quarantine_parameter(endpoint), "value": quarantine.to_json()},
        "notify": {"subject": message.subject, "body": message.to_json(), "topic": topic_arn},
    }


def append_audit(clients: Clients, settings: Settings, item: audit.AuditItem, retry: RetryPolicy) -> bool:
    """Write ``item`` with its idempotency guard in one transaction; False when it was a duplicate."""
    return call(
        "TransactWriteItems",
        audit.append,
        retry,
        dynamodb=clients.dynamodb,
        table=settings.audit_table,
        item=item,
    )


def _handled_before(
    clients: Clients,
    settings: Settings,
    key: str,
    base: dict[str, Any],
    retry: RetryPolicy,
    duplicate_reason: str,
) -> dict[str, Any] | None:
    """The result for a state change whose guard item exists (finishing pending follow-ups), else None."""
    guard = call(
        "GetItem",
        audit.get_guard,
        retry,
        dynamodb=clients.dynamodb,
        table=settings.audit_table,
        idempotency_key=key,
    )
    if guard is None:
        return None
    if guard.get("pending"):
        done = _resume(clients, settings, key, guard, retry)
        return _result(
            "completed", "finished follow-ups an earlier delivery could not do", **base, followUps=done
        )
    return _result("duplicate", duplicate_reason, **base)


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
    """Candidate at weight 0: a duplicate, a partly handled earlier delivery, or someone else's drain."""
    endpoint = state.name
    base = {"endpoint": endpoint, "variant": names.CANDIDATE, "alarm": alarm, "idempotencyKey": key}
    handled = _handled_before(
        clients, settings, key, base, retry, "this state change was already handled; candidate is at weight 0"
    )
    if handled is not None:
        return handled
    text = call(
        "GetParameter", records.get_text, retry, ssm=clients.ssm, name=settings.quarantine_parameter(endpoint)
    )
    existing = Quarantine.parse(settings.quarantine_parameter(endpoint), text) if text else None
    if version is None:
        plan_found, version = _plan_role(clients, settings, endpoint, names.CANDIDATE, retry)
        if plan_found and version is None:
            # strategy.keepVariantNames: between releases the candidate variant serves the stable
            # version at weight 0. Quarantining "unknown" would only add noise to the records.
            return _result(
                "skipped",
                f"no candidate is released on {endpoint}: the candidate variant is idle (it serves the "
                "stable version at weight 0); nothing to drain",
                **base,
            )
    version = version or "unknown"
    base["version"] = version
    if existing is not None and existing.version == version:
        return _result(
            "skipped",
            f"candidate already at weight 0 and {version} quarantined "
            f"({existing.kind}, {existing.alarm or existing.by} "
            f"at {existing.at})",
            **base,
        )
    # Drained (by an earlier attempt that failed before recording, or by hand) but never
    # quarantined: finish the records so `pulumi up` does not re-promote it silently.
    pct = policy.percents(state.weights)
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
    written = append_audit(clients, settings, item, retry)
    if not written:
        return _result("duplicate", "another delivery of this state change already recorded it", **base)
    topic = topic_arn_for(settings, state.raw.get("EndpointArn"))
    pending = _followups(settings, topic, endpoint, version, alarm, reason, actor, kind, pct, pct, item.at)
    done = _finish(clients, settings, key, pending, retry)
    return _result(
        "completed",
        "candidate was already at weight 0; quarantine and audit completed",
        **base,
        followUps=done,
    )


def _describe_alarm(clients: Clients, alarm: str, retry: RetryPolicy) -> dict[str, Any] | None:
    response = call(
        "DescribeAlarms",
        clients.cloudwatch.describe_alarms,
        retry,
        AlarmNames=[alarm],
        AlarmTypes=["MetricAlarm"],
    )
    alarms = response.get("MetricAlarms", [])
    return alarms[0] if alarms else None


def _stable_alarm(
    clients: Clients, settings: Settings, event: AlarmEvent, endpoint: str, actor: str, retry: RetryPolicy
) -> dict[str, Any]:
    """Stable's own alarm: record and notify once, never touch weights."""
    key = event.idempotency_key
    base = {"endpoint": endpoint, "variant": names.STABLE, "alarm": event.alarm_name, "idempotencyKey": key}
    handled = _handled_before(clients, settings, key, base, retry, "this state change was already handled")
    if handled is not None:
        return handled
    state = describe_endpoint(clients, endpoint, retry, wait_ready=False)
    decision = policy.decide_alarm(state.weights, names.STABLE, event.state)
    marker = event.marker
    version = (marker.version if marker else None) or _plan_version(
        clients, settings, endpoint, names.STABLE, retry
    )
    version = version or "unknown"
    pct = policy.percents(decision.before)
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
    written = append_audit(clients, settings, item, retry)
    base["version"] = version
    if not written:
        return _result("duplicate", "another delivery of this state change already recorded it", **base)
    message = notify.stable_failing_message(
        stack=settings.stack,
        endpoint=endpoint,
        version=version,
        alarm=event.alarm_name,
        reason=event.reason,
        weights=pct,
        actor=actor,
    )
    done = _finish(
        clients,
        settings,
        key,
        {
            "notify": {
                "subject": message.subject,
                "body": message.to_json(),
                "topic": topic_arn_for(settings, state.raw.get("EndpointArn")),
            }
        },
        retry,
    )
    return _result("notified", decision.reason, **base, weightsBefore=pct, weightsAfter=pct, followUps=done)


def handle_alarm(
    clients: Clients, settings: Settings, event: AlarmEvent, *, actor: str, retry: RetryPolicy | None = None
) -> dict[str, Any]:
    """React to one alarm state change (the rollback Lambda's logic)."""
    retry = retry or RetryPolicy()
    base = {"alarm": event.alarm_name, "state": event.state, "stack": settings.stack}
    if event.state != "ALARM":
        return _result("skipped", f"alarm state is {event.state}; only ALARM transitions act", **base)
    parsed = names.parse_alarm_name(event.alarm_name)
    if parsed is None:
        return _result("skipped", "alarm name is not an mlrollback alarm (<endpoint>-<role>-<kpi>)", **base)
    name_endpoint, name_role, _kpi = parsed
    if not name_endpoint.endswith(f"-{settings.stack}"):
        return _result(
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
        return _result(
            "skipped", f"{role} variant serves no live traffic; nothing to drain", **base, endpoint=endpoint
        )
    marker = event.marker
    return drain_candidate(
        clients,
        settings,
        endpoint=endpoint,
        reason=event.reason or f"{event.alarm_name} in ALARM",
        actor=actor,
        kind="auto",
        idempotency_key=event.idempotency_key,
        alarm=event.alarm_name,
        version=marker.version if marker else None,
        state_at=event.state_at,
        retry=retry,
    )


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


# --- status, history, quarantine ------------------------------------------------------------


def _json_or_none(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"unreadable": text}


def endpoint_status(
    clients: Clients, settings: Settings, endpoint: str, retry: RetryPolicy | None = None
) -> dict[str, Any]:
    """Everything an operator asks first: status, weights, alarms, plan, progress, quarantine."""
    retry = retry or RetryPolicy(attempts=3)
    physical = settings.physical(endpoint)
    state = describe_endpoint(clients, physical, retry, wait_ready=False)
    alarms: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"AlarmNamePrefix": f"{physical}-", "AlarmTypes": ["MetricAlarm"]}
    while True:
        page = call("DescribeAlarms", clients.cloudwatch.describe_alarms, retry, **kwargs)
        for alarm in page.get("MetricAlarms", []):
            parsed = names.parse_alarm_name(alarm["AlarmName"])
            if parsed is None or parsed[0] != physical:
                continue
            marker = parse_marker(alarm.get("AlarmDescription"))
            updated = alarm.get("StateUpdatedTimestamp")
            alarms.append(
                {
                    "name": alarm["AlarmName"],
                    "role": parsed[1],
                    "kpi": parsed[2],
                    "state": alarm.get("StateValue"),
                    "since": clock.iso(updated) if isinstance(updated, datetime) else None,
                    "version": marker.version if marker else None,
                }
            )
        if not page.get("NextToken"):
            break
        kwargs["NextToken"] = page["NextToken"]
    texts = {
        key: call("GetParameter", records.get_text, retry, ssm=clients.ssm, name=name)
        for key, name in (
            ("plan", settings.plan_parameter(physical)),
            ("progress", settings.progress_parameter(physical)),
            ("quarantine", settings.quarantine_parameter(physical)),
        )
    }
    return {
        "endpoint": physical,
        "status": state.status,
        "lastModified": clock.iso(state.last_modified) if state.last_modified else None,
        "weights": state.weights,
        "percents": policy.percents(state.weights),
        "shadow": state.shadow_weights,
        "variants": [
            {
                "name": v.get("VariantName"),
                "currentWeight": v.get("CurrentWeight"),
                "desiredWeight": v.get("DesiredWeight"),
                "currentInstanceCount": v.get("CurrentInstanceCount"),
                "desiredInstanceCount": v.get("DesiredInstanceCount"),
            }
            for v in state.raw.get("ProductionVariants", [])
        ],
        "alarms": sorted(alarms, key=lambda a: a["name"]),
        **{key: _json_or_none(text) for key, text in texts.items()},
    }


def history(
    clients: Clients, settings: Settings, endpoint: str, *, limit: int = 20, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """Audit records of ``endpoint``, newest first, and the cursor of the next page."""
    return audit.query(
        clients.dynamodb, settings.audit_table, settings.physical(endpoint), limit=limit, cursor=cursor
    )


def clear_quarantine(
    clients: Clients,
    settings: Settings,
    endpoint: str,
    *,
    actor: str,
    reason: str,
    retry: RetryPolicy | None = None,
) -> dict[str, Any]:
    """Delete the quarantine record of ``endpoint`` (operator decision) and audit it."""
    retry = retry or RetryPolicy(attempts=3)
    physical = settings.physical(endpoint)
    name = settings.quarantine_parameter(physical)
    text = call("GetParameter", records.get_text, retry, ssm=clients.ssm, name=name)
    if text is None:
        raise NotFoundError(f"no quarantine record for {physical} (parameter {name} does not exist)")
    existing = Quarantine.parse(name, text)
    call("DeleteParameter", clients.ssm.delete_parameter, retry, Name=name)
    # The quarantine halted the rollout; its progress record would keep it halted for the same plan.
    # Without it the stepper starts the rollout again at step 0 on its next tick.
    restarted = _delete_if_present(clients, settings.progress_parameter(physical), retry)
    item = audit.AuditItem(
        endpoint=physical,
        action="clear-quarantine",
        actor=actor,
        reason=reason,
        variant=existing.variant,
        version=existing.version,
        alarm=existing.alarm,
        detail={"record": json.loads(text), "rolloutRestarted": restarted},
    )
    call("PutItem", audit.append, retry, dynamodb=clients.dynamodb, table=settings.audit_table, item=item)
    return {
        "action": "cleared",
        "endpoint": physical,
        "version": existing.version,
        "at": item.at,
        "rolloutRestarted": restarted,
    }


def _delete_if_present(clients: Clients, name: str, retry: RetryPolicy) -> bool:
    """Delete an SSM parameter; False when there was none."""
    try:
        call("DeleteParameter", clients.ssm.delete_parameter, retry, Name=name)
    except clients.ssm.exceptions.ParameterNotFound:
        return False
    return True
