"""Endpoint facts the runtime decides on: DescribeEndpoint, the weights update, the rollout plan's
versions, an alarm's current state, the quarantine record and the stack's topic.

Standard library + boto3 only: on the Lambda import path.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rollback.runtime import decisions, names, records
from rollback.runtime.aws import Clients
from rollback.runtime.errors import ConfigError, ConflictError, NotFoundError, RetryExhaustedError
from rollback.runtime.logs import log
from rollback.runtime.records import Quarantine
from rollback.runtime.retry import RetryPolicy, call, error_code
from rollback.runtime.settings import Settings


@dataclass(frozen=True)
class EndpointState:
    """What DescribeEndpoint says, reduced to what decisions need."""

    name: str
    status: str
    weights: decisions.Weights
    shadow_weights: decisions.Weights
    last_modified: datetime | None
    raw: dict[str, Any]

    @property
    def desired_weights(self) -> decisions.Weights:
        """``DesiredWeight`` per production variant: where an update in progress is taking the weights."""
        return {
            v["VariantName"]: float(v.get("DesiredWeight", v.get("CurrentWeight", 0.0)) or 0.0)
            for v in self.raw.get("ProductionVariants", [])
        }


def _as_utc(value: Any) -> datetime | None:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    return None


def describe_endpoint(
    clients: Clients,
    endpoint: str,
    retry: RetryPolicy,
    *,
    wait_ready: bool,
    busy_ok: Callable[[EndpointState], bool] | None = None,
) -> EndpointState:
    """DescribeEndpoint; with ``wait_ready`` back off while the endpoint is busy (Updating, ...).

    ``busy_ok(state)`` true: a busy endpoint is returned as it is instead of waited for.
    Raises NotFoundError for an unknown endpoint, ConflictError for a Failed/OutOfService one,
    RetryExhaustedError when it stays busy.
    """
    for attempt in range(1, retry.attempts + 1):
        try:
            raw = call("DescribeEndpoint", clients.sagemaker.describe_endpoint, retry, EndpointName=endpoint)
        except Exception as exc:
            if error_code(exc) == "ValidationException" and "could not find" in str(exc).lower():
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
        if status in decisions.BUSY_STATUSES and busy_ok is not None and busy_ok(state):
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


def send_weights(clients: Clients, endpoint: str, after: decisions.Weights, roles: tuple[str, ...]) -> None:
    """One UpdateEndpointWeightsAndCapacities of ``roles`` to their weights in ``after``, no retry.

    Only the roles being changed are sent: the shadow variant and any other variant keep their
    weights, and instance counts are left to auto scaling.
    """
    clients.sagemaker.update_endpoint_weights_and_capacities(
        EndpointName=endpoint,
        DesiredWeightsAndCapacities=[{"VariantName": r, "DesiredWeight": float(after[r])} for r in roles],
    )


def update_weights(
    clients: Clients, endpoint: str, after: decisions.Weights, roles: tuple[str, ...], retry: RetryPolicy
) -> None:
    """:func:`send_weights`, retried by ``retry``."""
    call(
        "UpdateEndpointWeightsAndCapacities",
        send_weights,
        retry,
        clients=clients,
        endpoint=endpoint,
        after=after,
        roles=roles,
    )


def plan_role(
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


def plan_version(
    clients: Clients, settings: Settings, endpoint: str, role: str, retry: RetryPolicy
) -> str | None:
    return plan_role(clients, settings, endpoint, role, retry)[1]


def describe_alarm(clients: Clients, alarm: str, retry: RetryPolicy) -> dict[str, Any] | None:
    response = call(
        "DescribeAlarms",
        clients.cloudwatch.describe_alarms,
        retry,
        AlarmNames=[alarm],
        AlarmTypes=["MetricAlarm"],
    )
    alarms = response.get("MetricAlarms", [])
    return alarms[0] if alarms else None


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
