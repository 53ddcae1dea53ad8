"""What an operator asks first, and the one decision only an operator takes: status, history,
clear-quarantine. Never shipped to Lambda; the CLI renders what these return.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rollback.runtime import audit, clock, decisions, names, records
from rollback.runtime.aws import Clients
from rollback.runtime.endpoint import describe_endpoint
from rollback.runtime.errors import NotFoundError
from rollback.runtime.events import parse_marker
from rollback.runtime.followups import record_guard
from rollback.runtime.records import Quarantine
from rollback.runtime.retry import RetryPolicy, call
from rollback.runtime.settings import Settings


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


def settle_guards(clients: Clients, settings: Settings, record: Quarantine, retry: RetryPolicy) -> list[str]:
    """Mark done the follow-ups of the drain(s) that wrote ``record``; the guards marked.

    Call it before the record is deleted (``clear-quarantine``, a drill's restore): the runtime
    takes a missing record as a drain cut off before its last follow-up, and after
    ``IN_PROGRESS_WINDOW`` the stepper or a replayed event would write it (and send the old
    message) again.
    """
    guards = list(record.guards)
    if not guards:  # a record written before records named their guards
        guard, _found = record_guard(clients, settings, record, retry)
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
    return guards


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
    guards = settle_guards(clients, settings, existing, retry)
    call("DeleteParameter", clients.ssm.delete_parameter, retry, Name=name)
    # The quarantine halted the rollout; its progress record would keep it halted for the same plan.
    # Without it the stepper starts the rollout again at its first step on its next tick.
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
