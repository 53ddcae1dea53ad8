"""Idempotent follow-ups of a drain: the audit commit with its guard, then the message and the
quarantine record (written last, the completion marker), and finishing what a cut-off delivery owes.

Guard keys and windows are described in docs/contracts.md (audit item) and docs/runtime.md.

Standard library + boto3 only: on the Lambda import path.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from rollback.runtime import audit, clock, names, notify, records
from rollback.runtime.aws import Clients
from rollback.runtime.errors import FollowUpError
from rollback.runtime.logs import log, log_result
from rollback.runtime.records import Quarantine
from rollback.runtime.retry import RetryPolicy, call
from rollback.runtime.settings import Settings

#: A drain committed less than this long ago may still be running (its Publish and quarantine
#: write come after the commit): the rollback function's timeout. A delivery that finds such a
#: guard answers ``duplicate`` instead of finishing the follow-ups itself (that would send a
#: second message); a drain that really was cut off is finished by Lambda's own retry (at least
#: a minute later) or a later stepper tick.
IN_PROGRESS_WINDOW = timedelta(seconds=60)


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


def younger_than(guard: Mapping[str, Any] | None, window: timedelta, field: str = "auditAt") -> bool:
    """True when ``guard[field]`` (an audit item time) is less than ``window`` old."""
    if not guard or not guard.get(field):
        return False
    try:
        at = clock.parse_iso(str(guard[field]).split("#", 1)[0])
    except ValueError:
        return False
    return clock.now() - at < window


def commit(
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


def get_guard(clients: Clients, settings: Settings, key: str, retry: RetryPolicy) -> dict[str, Any] | None:
    return call(
        "GetItem",
        audit.get_guard,
        retry,
        dynamodb=clients.dynamodb,
        table=settings.audit_table,
        idempotency_key=key,
    )


def resolve_guard(
    clients: Clients, settings: Settings, key: str, retry: RetryPolicy
) -> tuple[str, dict[str, Any] | None]:
    """The guard of the newest drain recorded under ``key``: (its key, the item or None).

    A re-release drained under an alarm key that stayed in ALARM is committed under
    ``<key>#<item time>`` and the older guard points at it (``latest``): one more GetItem then.
    """
    found = get_guard(clients, settings, key, retry)
    latest = found.get("latest") if found else None
    if isinstance(latest, str) and latest != key:
        newer = get_guard(clients, settings, latest, retry)
        if newer is not None:
            return latest, newer
    return key, found


def finish_if_cut_off(
    clients: Clients, settings: Settings, key: str, retry: RetryPolicy
) -> tuple[str, dict[str, Any] | None, str, Any]:
    """Finish the follow-ups the newest drain under ``key`` still owes, if it was cut off.

    Returns (guard key, guard item, outcome, what ``finish`` did): outcome ``absent`` (no guard),
    ``complete`` (nothing owed), ``in-progress`` (owed, but committed less than
    :data:`IN_PROGRESS_WINDOW` ago: its own delivery may still be sending them) or ``finished``.
    """
    guard, found = resolve_guard(clients, settings, key, retry)
    if found is None:
        return guard, None, "absent", None
    owed = audit.guard_followups(found)
    if not owed:
        return guard, found, "complete", None
    if younger_than(found, IN_PROGRESS_WINDOW):
        return guard, found, "in-progress", None
    return guard, found, "finished", finish(clients, settings, guard, owed, retry)


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


def finish(
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


def record_failure(
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


@dataclass(frozen=True)
class DrainRequest:
    """What one drain is asked to do and why: the same for alarms, the stepper, the CLI and drills.

    ``state_at`` (the alarm's state-change time) enables the stale-replay check; ``supersedes``
    names the guards of a quarantine record this drain replaces (the stepper's enforcement drain),
    so the new record lists them and ``clear-quarantine`` marks them done too.
    """

    endpoint: str
    reason: str
    actor: str
    kind: str
    idempotency_key: str
    alarm: str | None = None
    version: str | None = None
    state_at: datetime | None = None
    supersedes: tuple[str, ...] = ()

    def audit_item(
        self,
        outcome: str,
        before: dict[str, float] | None,
        after: dict[str, float] | None,
        *,
        version: str | None,
        reason: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> audit.AuditItem:
        """The ``drain`` audit item of this request (every drain item is built here)."""
        return audit.AuditItem(
            endpoint=self.endpoint,
            action="drain",
            actor=self.actor,
            outcome=outcome,
            reason=self.reason if reason is None else reason,
            variant=names.CANDIDATE,
            version=version,
            alarm=self.alarm,
            weights_before=before,
            weights_after=after,
            idempotency_key=self.idempotency_key,
            detail={"kind": self.kind} if detail is None else detail,
        )


def build_followups(
    settings: Settings,
    request: DrainRequest,
    *,
    topic_arn: str | None,
    version: str,
    before: dict[str, float],
    after: dict[str, float],
    at: str,
    guards: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The drain's follow-ups, stored on its guard in the commit: the quarantine record and the message."""
    key = request.idempotency_key
    quarantine = Quarantine(
        endpoint=request.endpoint,
        version=version,
        variant=names.CANDIDATE,
        alarm=request.alarm,
        reason=request.reason,
        at=at.split("#", 1)[0],
        by=request.actor,
        kind=request.kind,
        extra={"idempotencyKey": key, **({"guards": list(dict.fromkeys(guards))} if guards else {})},
    )
    message = notify.rollback_message(
        stack=settings.stack,
        endpoint=request.endpoint,
        variant=names.CANDIDATE,
        version=version,
        alarm=request.alarm,
        reason=request.reason,
        weights_before=before,
        weights_after=after,
        kind=request.kind,
        actor=request.actor,
    )
    # The key lets subscribers drop the repeat a crash between Publish and the quarantine write
    # can cause (delivery is at-least-once in that window).
    body = json.dumps({**message.body, "idempotencyKey": key}, sort_keys=True)
    return {
        "quarantine": {
            "name": settings.quarantine_parameter(request.endpoint),
            "value": quarantine.to_json(),
        },
        "notify": {"subject": message.subject, "body": body, "topic": topic_arn},
    }


def append_audit(clients: Clients, settings: Settings, item: audit.AuditItem, retry: RetryPolicy) -> bool:
    """Write ``item`` with its idempotency guard in one transaction; False when it was a duplicate."""
    return commit(clients, settings, item, retry).written


def record_guard(
    clients: Clients, settings: Settings, record: Quarantine, retry: RetryPolicy
) -> tuple[str | None, dict[str, Any] | None]:
    """The guard of the drain that wrote ``record``: (its key, the item) or (None, None).

    Records name it (``guards[0]``); older ones carry only the key, and the guard is found from
    ``drain_guard(key, version)`` following ``latest``.
    """
    if record.guards:
        return record.guards[0], get_guard(clients, settings, record.guards[0], retry)
    if record.idempotency_key is None:
        return None, None
    return resolve_guard(clients, settings, drain_guard(record.idempotency_key, record.version), retry)


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
    _, _, outcome, done = finish_if_cut_off(clients, settings, str(marker["guard"]), retry)
    if outcome != "finished":
        return None
    return log_result(
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
    done = finish(clients, settings, guard, followups, retry)
    return {
        "action": "completed",
        "reason": "sent the message an earlier delivery could not send",
        "followUps": done,
    }


def clear_owed(clients: Clients, settings: Settings, key: str, retry: RetryPolicy) -> None:
    call(
        "UpdateItem",
        audit.set_followups,
        retry,
        dynamodb=clients.dynamodb,
        table=settings.audit_table,
        idempotency_key=key,
        followups={},
    )
