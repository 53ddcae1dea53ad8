"""Drain, step and status with injected AWS clients: the Lambda handlers and the CLI share this.

Decisions come from :mod:`rollback.runtime.decisions` (pure); this module gathers the facts, applies the
decision and records it. Guarantees (see docs/runtime.md):

- a drain costs at most 5 AWS calls (DescribeEndpoint, UpdateEndpointWeightsAndCapacities,
  TransactWriteItems of guard + audit, Publish, PutParameter of the quarantine record), and a
  repeated delivery of the same alarm state change at most 2 (DescribeEndpoint, GetParameter);
- the stable variant is never drained because of the candidate and weights are never all zero;
- busy endpoints and throttling are retried with bounded full-jitter backoff on
  :mod:`rollback.runtime.clock` within one time budget per invocation, then :class:`RetryExhaustedError`
  is raised (Lambda retries the invocation, the DLQ keeps the event); an audit item never says
  ``done`` for something not done;
- the follow-ups (message, quarantine record) are stored on the guard item in the audit commit
  and the quarantine record, carrying the drain's idempotency key, is written last: until it
  exists a redelivery finishes them, whether the invocation died, timed out or lost an answer.

Standard library + boto3 only: on the Lambda import path.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from rollback.runtime import audit, clock, decisions, names, notify, records
from rollback.runtime.aws import Clients
from rollback.runtime.errors import (
    ConfigError,
    ConflictError,
    EventError,
    FollowUpError,
    NotFoundError,
    RetryExhaustedError,
)
from rollback.runtime.events import AlarmEvent, parse_marker
from rollback.runtime.logs import log
from rollback.runtime.records import Quarantine

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
        """Settings derived from :mod:`rollback.runtime.names` (what the program would set)."""
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


#: Seconds of one invocation that retries (their sleeps and the calls between them) may use when
#: nothing tighter is known. The rollback function's timeout is 60 s: what is left after the
#: budget is for the calls themselves and for failing loudly, so Lambda records an error (and
#: retries the event, then keeps it in the DLQ) instead of killing the function mid-sequence.
DEFAULT_BUDGET_SECONDS = 45.0


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter: sleep U(0, min(cap, base * 2**n)).

    Six attempts with base 0.5 s and cap 8 s sleep at most 23.5 s for one call, and a drain makes
    up to five calls in a row, so the attempts alone do not bound an invocation. ``deadline``
    does: one time limit for every retry of the invocation (:meth:`bounded` sets it from
    ``budget`` and the Lambda context's remaining time). A retry whose sleep would end past the
    deadline raises :class:`RetryExhaustedError` instead of sleeping.
    """

    attempts: int = 6
    base: float = 0.5
    cap: float = 8.0
    rng: Callable[[float, float], float] = random.uniform
    budget: float | None = DEFAULT_BUDGET_SECONDS
    deadline: datetime | None = None

    def delay(self, attempt: int) -> float:
        """Sleep before retry number ``attempt`` (1-based)."""
        return self.rng(0.0, min(self.cap, self.base * 2 ** (attempt - 1)))

    def bounded(self, remaining_seconds: float | None = None) -> RetryPolicy:
        """This policy with its deadline set from now: the tighter of ``budget`` and ``remaining_seconds``.

        A policy that already has a deadline keeps it (the invocation's budget is shared by every
        step of it, the stepper's safety-net drain included); with neither limit it stays unbounded.
        """
        if self.deadline is not None:
            return self
        limits = [s for s in (self.budget, remaining_seconds) if s is not None]
        if not limits:
            return self
        return replace(self, deadline=clock.now() + timedelta(seconds=max(0.0, min(limits))))

    def wait(self, op: str, attempt: int, code: str) -> None:
        """Sleep before retry ``attempt + 1`` of ``op``, or raise when that would pass the deadline."""
        delay = self.delay(attempt)
        if self.deadline is not None and clock.now() + timedelta(seconds=delay) > self.deadline:
            raise RetryExhaustedError(
                f"{op} kept failing ({code}) and the invocation's retry time budget is spent "
                f"(deadline {clock.iso(self.deadline)}); raising so Lambda retries the invocation "
                "(then the dead-letter queue keeps the event)"
            )
        log(logging.WARNING, "retrying", op=op, code=code, attempt=attempt, sleep=round(delay, 3))
        clock.sleep(delay)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ("" for anything else)."""
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


_code = error_code


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
    """Call ``fn(**kwargs)``, retrying retryable errors; RetryExhaustedError after the last attempt.

    Also raised early when the next sleep would pass ``retry.deadline``.
    """
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
            try:
                retry.wait(op, attempt, _code(exc))
            except RetryExhaustedError as spent:
                raise spent from exc
    raise AssertionError("unreachable")  # pragma: no cover


# --- endpoint facts -----------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointState:
    """What DescribeEndpoint says, reduced to what decisions need."""

    name: str
    status: str
    weights: decisions.Weights
    shadow_weights: decisions.Weights
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
        if status not in decisions.BUSY_STATUSES:
            raise ConflictError(
                f"endpoint {endpoint} is {status}; weights cannot be changed until it is InService"
            )
        if attempt == retry.attempts:
            raise RetryExhaustedError(
                f"endpoint {endpoint} stayed {status} for {retry.attempts} attempts; "
                "raising so the event is retried"
            )
        retry.wait(f"DescribeEndpoint ({endpoint} busy)", attempt, status)
    raise AssertionError("unreachable")  # pragma: no cover


def _update_weights(
    clients: Clients, endpoint: str, after: decisions.Weights, roles: tuple[str, ...], retry: RetryPolicy
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

#: A guard of the same drain key written this close before (or after) the start of our drain was
#: written by a delivery racing ours on the same drain. An older one belongs to an earlier drain
#: of an earlier release of this candidate (an alarm that stayed in ALARM keeps its key).
RACE_WINDOW = timedelta(seconds=60)

#: A drain committed less than this long ago may still be running (its Publish and quarantine
#: write come after the commit): the rollback function's timeout. A delivery that finds such a
#: guard answers ``duplicate`` instead of finishing the follow-ups itself (that would send a
#: second message); a drain that really was cut off is finished by Lambda's own retry (at least
#: a minute later) or a later stepper tick.
IN_PROGRESS_WINDOW = timedelta(seconds=60)


def _result(action: str, reason: str, **fields: Any) -> dict[str, Any]:
    out = {"action": action, "reason": reason, **{k: v for k, v in fields.items() if v is not None}}
    log(logging.INFO, f"alarm {action}", **out)
    return out


def drain_guard(key: str, version: str) -> str:
    """Guard key of the drain of candidate ``version`` for state change (or command) ``key``.

    The version is part of it because the stepper's safety net reuses an alarm's state-change key
    for as long as the alarm stays in ALARM: a new release drained under that key is a new drain
    that needs its own audit item, quarantine record and message.
    """
    return f"{key}#{version}"


def drain_marker(endpoint: str, version: str) -> str:
    """Guard key of the marker the last drain of ``version`` on ``endpoint`` overwrites in its commit.

    Another alarm of the same candidate (errors and latency often trip together) has another
    key: the marker lets it see that a drain of this version is still finishing its follow-ups.
    """
    return f"drain#{endpoint}#{version}"


def _younger_than(guard: Mapping[str, Any] | None, window: timedelta, field: str = "auditAt") -> bool:
    """True when ``guard[field]`` (an audit item time) is less than ``window`` old."""
    if not guard or not guard.get(field):
        return False
    try:
        at = clock.parse_iso(str(guard[field]).split("#", 1)[0])
    except ValueError:
        return False
    return clock.now() - at < window


def _commit(
    clients: Clients,
    settings: Settings,
    item: audit.AuditItem,
    retry: RetryPolicy,
    *,
    guard: str | None = None,
    followups: dict[str, Any] | None = None,
    latest_of: str | None = None,
    marker: str | None = None,
) -> audit.Commit:
    return call(
        "TransactWriteItems",
        audit.commit,
        retry,
        dynamodb=clients.dynamodb,
        table=settings.audit_table,
        item=item,
        guard=guard,
        followups=followups,
        latest_of=latest_of,
        marker=marker,
    )


def _get_guard(clients: Clients, settings: Settings, key: str, retry: RetryPolicy) -> dict[str, Any] | None:
    return call(
        "GetItem",
        audit.get_guard,
        retry,
        dynamodb=clients.dynamodb,
        table=settings.audit_table,
        idempotency_key=key,
    )


def _resolve_guard(
    clients: Clients, settings: Settings, key: str, retry: RetryPolicy
) -> tuple[str, dict[str, Any] | None]:
    """The guard of the newest drain recorded under ``key``: (its key, the item or None).

    A re-release drained under an alarm key that stayed in ALARM is committed under
    ``<key>#<item time>`` and the older guard points at it (``latest``): one more GetItem then.
    """
    found = _get_guard(clients, settings, key, retry)
    latest = found.get("latest") if found else None
    if isinstance(latest, str) and latest != key:
        newer = _get_guard(clients, settings, latest, retry)
        if newer is not None:
            return latest, newer
    return key, found


def _finish_if_cut_off(
    clients: Clients, settings: Settings, key: str, retry: RetryPolicy
) -> tuple[str, dict[str, Any] | None, str, Any]:
    """Finish the follow-ups the newest drain under ``key`` still owes, if it was cut off.

    Returns (guard key, guard item, outcome, what ``_finish`` did): outcome ``absent`` (no guard),
    ``complete`` (nothing owed), ``in-progress`` (owed, but committed less than
    :data:`IN_PROGRESS_WINDOW` ago: its own delivery may still be sending them) or ``finished``.
    """
    guard, found = _resolve_guard(clients, settings, key, retry)
    if found is None:
        return guard, None, "absent", None
    owed = audit.guard_followups(found)
    if not owed:
        return guard, found, "complete", None
    if _younger_than(found, IN_PROGRESS_WINDOW):
        return guard, found, "in-progress", None
    return guard, found, "finished", _finish(clients, settings, guard, owed, retry)


def _publish(clients: Clients, settings: Settings, spec: dict[str, Any], retry: RetryPolicy) -> bool:
    topic = spec.get("topic") or settings.topic_arn
    if not topic:
        log(logging.WARNING, "no topic configured; notification not sent", subject=spec.get("subject"))
        return False
    message = notify.Message(subject=spec["subject"], body=json.loads(spec["body"]))
    call("Publish", notify.publish, retry, sns=clients.sns, topic_arn=topic, message=message)
    return True


def _put_quarantine(
    clients: Clients, spec: dict[str, Any], retry: RetryPolicy, pending: tuple[str, ...] = ()
) -> None:
    value = spec["value"]
    if pending:
        value = json.dumps({**json.loads(value), "pending": list(pending)}, sort_keys=True)
    call(
        "PutParameter",
        records.put_text,
        retry,
        ssm=clients.ssm,
        name=spec["name"],
        value=value,
        description="mlrollback quarantine record: the program keeps this candidate at weight 0",
    )


def _finish(
    clients: Clients,
    settings: Settings,
    guard: str,
    followups: dict[str, Any],
    retry: RetryPolicy,
    what: str = "drain",
) -> list[str]:
    """Do the follow-ups after the audit commit: Publish, then the quarantine record, last.

    The quarantine record carries the drain's idempotency key and is written last, so it is the
    completion marker a redelivery checks: until it exists, the guard's ``followUps`` (stored in
    the commit) tell the next delivery what to redo. When Publish fails the record is still
    written (it keeps ``pulumi up`` from re-promoting the candidate) with ``pending: ["notify"]``.
    """
    done: list[str] = []
    notify_error: Exception | None = None
    if "notify" in followups:
        try:
            if _publish(clients, settings, followups["notify"], retry):
                done.append("notify")
        except Exception as exc:
            notify_error = exc
            log(logging.ERROR, "notification failed", key=guard, error=str(exc))
    if "quarantine" in followups:
        try:
            _put_quarantine(
                clients, followups["quarantine"], retry, ("notify",) if notify_error is not None else ()
            )
            done.append("quarantine")
        except Exception as exc:
            owed = {k: v for k, v in followups.items() if k not in done}
            if done:  # narrow what the guard says is owed, so the next delivery does not publish twice
                try:
                    audit.set_followups(clients.dynamodb, settings.audit_table, guard, owed)
                except Exception as mark_exc:  # the original error is the one to surface
                    log(logging.ERROR, "could not narrow the owed follow-ups", key=guard, error=str(mark_exc))
            raise FollowUpError(
                f"the {what} is done and recorded, but {', '.join(sorted(owed))} failed ({exc}); "
                f"audit guard {guard!r} keeps them for the next delivery to finish"
            ) from exc
    if notify_error is not None:
        where = (
            "the quarantine record notes it as pending"
            if "quarantine" in followups
            else f"audit guard {guard!r} keeps it"
        )
        raise FollowUpError(
            f"the {what} is done and recorded, but notify failed ({notify_error}); "
            f"{where} for the next delivery to send"
        ) from notify_error
    return done


def _record_failure(
    clients: Clients, settings: Settings, item: audit.AuditItem, error: Exception, key: str | None
) -> None:
    """Best effort: an audit item with outcome ``failed``, once per key.

    A command without a key records every failure; a retried alarm event, or the stepper's safety
    net trying every minute while ``pulumi up`` keeps the endpoint Updating, records one.
    """
    item.outcome = "failed"
    item.detail = {**item.detail, "error": str(error)[:500]}
    guard = None
    if key:
        guard = f"{drain_guard(key, item.version)}#failed" if item.version else f"{key}#failed"
    try:
        audit.commit(clients.dynamodb, settings.audit_table, item, guard=guard)
    except Exception as exc:
        log(logging.ERROR, "could not write the failed audit item", endpoint=item.endpoint, error=str(exc))


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
        _record_failure(clients, settings, item_of("failed", None, None), exc, idempotency_key)
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
    pct_after = decisions.percents(decision.after)
    try:
        _update_weights(clients, endpoint, decision.after, (names.CANDIDATE, names.STABLE), retry)
    except Exception as exc:
        _record_failure(clients, settings, item_of("failed", pct_before, pct_after), exc, idempotency_key)
        raise
    # The record's time is taken after the weights changed: a racing delivery's guard is then
    # never older than our start (see _raced).
    item = item_of("done", pct_before, pct_after)
    base["version"] = version
    topic = topic_arn_for(settings, state.raw.get("EndpointArn"))

    def followups_of(guard: str) -> dict[str, Any]:
        return _followups(
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
    committed = _commit(clients, settings, item, retry, guard=guard, followups=followups, marker=marker)
    if not committed.written:
        if _raced(committed.guard, started) or _younger_than(committed.guard, RACE_WINDOW, "latestAt"):
            return _result(
                "duplicate", "another delivery of this state change already recorded the drain", **base
            )
        # The guard is from an earlier drain of this version (released again since, while the alarm
        # stayed in ALARM). This drain really moved traffic: it gets its own records, and the older
        # guard points at them (``latest``) in the same transaction.
        guard = f"{base_guard}#{item.at}"
        followups = followups_of(guard)
        committed = _commit(
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
            return _result("duplicate", "another delivery already recorded this drain", **base)
    done = _finish(clients, settings, guard, followups, retry)
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
    partition, region and account, and the topic name comes from :mod:`rollback.runtime.names`.
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
    key: str,
    guards: tuple[str, ...] = (),
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
        extra={"idempotencyKey": key, **({"guards": list(dict.fromkeys(guards))} if guards else {})},
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
    # The key lets subscribers drop the repeat a crash between Publish and the quarantine write
    # can cause (delivery is at-least-once in that window).
    body = json.dumps({**message.body, "idempotencyKey": key}, sort_keys=True)
    return {
        "quarantine": {"name": settings.quarantine_parameter(endpoint), "value": quarantine.to_json()},
        "notify": {"subject": message.subject, "body": body, "topic": topic_arn},
    }


def append_audit(clients: Clients, settings: Settings, item: audit.AuditItem, retry: RetryPolicy) -> bool:
    """Write ``item`` with its idempotency guard in one transaction; False when it was a duplicate."""
    return _commit(clients, settings, item, retry).written


def read_quarantine(
    clients: Clients, settings: Settings, endpoint: str, retry: RetryPolicy
) -> Quarantine | None:
    """The quarantine record of ``endpoint`` (one GetParameter); None when absent or unreadable."""
    name = settings.quarantine_parameter(endpoint)
    text = call("GetParameter", records.get_text, retry, ssm=clients.ssm, name=name)
    if text is None:
        return None
    try:
        return Quarantine.parse(name, text)
    except ConfigError as exc:
        # Overwritten with a readable record if this delivery completes a drain.
        log(logging.WARNING, "unreadable quarantine record", endpoint=endpoint, error=str(exc))
        return None


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
        return _result("duplicate", "this state change was already handled; candidate is at weight 0", **base)
    if existing is not None and version is not None and existing.version == version:
        return _skipped_quarantined(existing, base, version)
    plan_found, planned = _plan_role(clients, settings, endpoint, names.CANDIDATE, retry)
    if plan_found and planned is None:
        # strategy.keepVariantNames: between releases the candidate variant serves the stable
        # version at weight 0. Quarantining anything would only add noise to the records, and a
        # late event naming the version just finalized would quarantine the *stable* version.
        return _result(
            "skipped",
            f"no candidate is released on {endpoint}: the candidate variant is idle (it serves the "
            "stable version at weight 0); nothing to drain",
            **base,
            version=version,
        )
    if plan_found and version is not None and version != planned:
        return _result(
            "skipped",
            f"stale event: it is about {version} but the released candidate is {planned}; nothing recorded",
            **base,
            version=version,
        )
    version = version or planned or "unknown"
    base["version"] = version
    if existing is not None and existing.version == version:
        return _skipped_quarantined(existing, base, version)
    guard, found, outcome, done = _finish_if_cut_off(clients, settings, drain_guard(key, version), retry)
    if outcome == "complete":
        return _result("duplicate", "this state change was already handled", **base)
    if outcome == "in-progress":
        assert found is not None
        return _result(
            "duplicate",
            f"the drain of this state change was committed at {found.get('auditAt')} and may still be "
            "sending its follow-ups; a later delivery or stepper tick finishes them if it was cut off",
            **base,
        )
    if outcome == "finished":
        return _result(
            "completed", "finished follow-ups an earlier delivery could not do", **base, followUps=done
        )
    marker = _get_guard(clients, settings, drain_marker(endpoint, version), retry)
    if _younger_than(marker, IN_PROGRESS_WINDOW):
        assert marker is not None
        return _result(
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
    followups = _followups(
        settings, topic, endpoint, version, alarm, reason, actor, kind, pct, pct, item.at, key, (guard,)
    )
    committed = _commit(
        clients,
        settings,
        item,
        retry,
        guard=guard,
        followups=followups,
        marker=drain_marker(endpoint, version),
    )
    if not committed.written:
        return _result("duplicate", "another delivery of this state change already recorded it", **base)
    done = _finish(clients, settings, guard, followups, retry)
    return _result(
        "completed",
        "candidate was already at weight 0; quarantine and audit completed",
        **base,
        followUps=done,
    )


def _skipped_quarantined(existing: Quarantine, base: dict[str, Any], version: str) -> dict[str, Any]:
    return _result(
        "skipped",
        f"candidate already at weight 0 and {version} quarantined "
        f"({existing.kind}, {existing.alarm or existing.by} at {existing.at})",
        **{**base, "version": version},
    )


def _resume_notify(
    clients: Clients, settings: Settings, record: Quarantine, base: dict[str, Any], retry: RetryPolicy
) -> dict[str, Any]:
    """The drain's quarantine is written but its message is not: send it, then clear ``pending``."""
    return _result(**resume_followups(clients, settings, record, retry), **base)


def record_guard(
    clients: Clients, settings: Settings, record: Quarantine, retry: RetryPolicy
) -> tuple[str | None, dict[str, Any] | None]:
    """The guard of the drain that wrote ``record``: (its key, the item) or (None, None).

    Records name it (``guards[0]``); older ones carry only the key, and the guard is found from
    ``drain_guard(key, version)`` following ``latest``.
    """
    if record.guards:
        return record.guards[0], _get_guard(clients, settings, record.guards[0], retry)
    if record.idempotency_key is None:
        return None, None
    return _resolve_guard(clients, settings, drain_guard(record.idempotency_key, record.version), retry)


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


def drain_markers(
    clients: Clients, settings: Settings, candidates: Mapping[str, str], retry: RetryPolicy
) -> dict[str, dict[str, Any]]:
    """Endpoint -> the drain marker of its candidate version, for those drained at least once.

    One BatchGetItem per 100 endpoints: the stepper reads them every tick (see
    :func:`finish_cut_off_drain`).
    """
    keys = {drain_marker(ep, version): ep for ep, version in candidates.items()}
    if not keys:
        return {}
    found = call(
        "BatchGetItem",
        audit.get_guards,
        retry,
        dynamodb=clients.dynamodb,
        table=settings.audit_table,
        idempotency_keys=list(keys),
    )
    return {keys[k]: item for k, item in found.items() if k in keys}


def finish_cut_off_drain(
    clients: Clients,
    settings: Settings,
    endpoint: str,
    version: str,
    marker: Mapping[str, Any],
    retry: RetryPolicy,
) -> dict[str, Any] | None:
    """Finish the follow-ups of the last drain of ``version`` if it was cut off after its commit.

    The stepper calls this for a candidate without a quarantine record whose drain ``marker`` it
    read (:func:`drain_markers`): a drain the stepper itself started has no event that would be
    delivered again, and a delivery that found it still in progress answered ``duplicate``. None
    when nothing is owed, or the drain is too young to call cut off.
    """
    if not marker.get("guard"):
        return None
    _, _, outcome, done = _finish_if_cut_off(clients, settings, str(marker["guard"]), retry)
    if outcome != "finished":
        return None
    return _result(
        "completed",
        f"finished the follow-ups of a drain of {version} that was cut off after its commit",
        endpoint=endpoint,
        version=version,
        followUps=done,
    )


def resume_followups(
    clients: Clients, settings: Settings, record: Quarantine, retry: RetryPolicy | None = None
) -> dict[str, Any]:
    """Send the message a quarantine record says is still owed (``pending``), then drop ``pending``.

    The alarm function calls this on a redelivery; the stepper calls it on every tick for records
    with ``pending``, because a drain the stepper started (safety net, quarantine enforcement)
    has no event that would ever be delivered again. Returns ``{"action", "reason", ...}``:
    ``completed`` (sent), ``duplicate`` (nothing owed any more).
    """
    retry = (retry or RetryPolicy(attempts=3)).bounded()
    guard, found = record_guard(clients, settings, record, retry)
    owed = audit.guard_followups(found) if found is not None else {}
    if guard is None or "notify" not in owed or "notify" not in record.pending:
        return {"action": "duplicate", "reason": "already handled; no message is owed on the guard any more"}
    extra = {k: v for k, v in record.extra.items() if k != "pending"}
    rewritten = replace(record, extra=extra)
    followups = {
        "notify": owed["notify"],
        "quarantine": {"name": settings.quarantine_parameter(record.endpoint), "value": rewritten.to_json()},
    }
    done = _finish(clients, settings, guard, followups, retry)
    return {
        "action": "completed",
        "reason": "sent the message an earlier delivery could not send",
        "followUps": done,
    }


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
    """Stable's own alarm: record and notify once, never touch weights.

    The message is owed on the guard from the commit until an UpdateItem after Publish clears it,
    so a delivery cut off in between is finished by the next one (which may repeat the message).
    """
    key = event.idempotency_key
    base = {"endpoint": endpoint, "variant": names.STABLE, "alarm": event.alarm_name, "idempotencyKey": key}
    found = _get_guard(clients, settings, key, retry)
    if found is not None:
        owed = audit.guard_followups(found)
        if not owed:
            return _result("duplicate", "this state change was already handled", **base)
        done = _finish(clients, settings, key, owed, retry, what="stable alarm")
        _clear_owed(clients, settings, key, retry)
        return _result(
            "completed", "finished follow-ups an earlier delivery could not do", **base, followUps=done
        )
    state = describe_endpoint(clients, endpoint, retry, wait_ready=False)
    decision = decisions.decide_alarm(state.weights, names.STABLE, event.state)
    marker = event.marker
    version = (marker.version if marker else None) or _plan_version(
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
    if not _commit(clients, settings, item, retry, followups=followups).written:
        return _result("duplicate", "another delivery of this state change already recorded it", **base)
    done = _finish(clients, settings, key, followups, retry, what="stable alarm")
    _clear_owed(clients, settings, key, retry)
    return _result("notified", decision.reason, **base, weightsBefore=pct, weightsAfter=pct, followUps=done)


def _clear_owed(clients: Clients, settings: Settings, key: str, retry: RetryPolicy) -> None:
    call(
        "UpdateItem",
        audit.set_followups,
        retry,
        dynamodb=clients.dynamodb,
        table=settings.audit_table,
        idempotency_key=key,
        followups={},
    )


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
        "percents": decisions.percents(state.weights),
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
    """Delete the quarantine record of ``endpoint`` (operator decision) and audit it.

    First the follow-ups of the drain(s) that wrote the record are marked done on their guards
    (one UpdateItem each, usually one): otherwise a replay of the alarm event, or the stepper's
    safety net while the alarm stays in ALARM, would find them owed and write the record (and
    send the old message) again, undoing this clear.
    """
    retry = retry or RetryPolicy(attempts=3)
    physical = settings.physical(endpoint)
    name = settings.quarantine_parameter(physical)
    text = call("GetParameter", records.get_text, retry, ssm=clients.ssm, name=name)
    if text is None:
        raise NotFoundError(f"no quarantine record for {physical} (parameter {name} does not exist)")
    existing = Quarantine.parse(name, text)
    guards = list(existing.guards)
    if not guards:  # a record written before records named their guards
        guard, _found = record_guard(clients, settings, existing, retry)
        guards = [guard] if guard else []
    for guard in guards:
        call(
            "UpdateItem",
            audit.clear_followups,
            retry,
            dynamodb=clients.dynamodb,
            table=settings.audit_table,
            idempotency_key=guard,
        )
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
        detail={"record": json.loads(text), "rolloutRestarted": restarted, "guardsCleared": guards},
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
