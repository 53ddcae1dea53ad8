"""The audit trail: one DynamoDB item per action, idempotent, newest first.

Table ``names.audit_table_name(stack)``: partition key ``endpoint``, sort key ``at``
(ISO-8601 UTC with milliseconds + ``#`` + id). An idempotent append writes a guard item
``endpoint = "idem#<key>"`` and the audit item in one TransactWriteItems, both conditional on
not existing, so duplicates racing each other still leave exactly one audit item.
Standard library only (the client is passed in): on the Lambda import path.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rollback import clock

ACTIONS = (
    "deploy",
    "step",
    "pause",
    "drain",
    "notify",
    "revert",
    "promote",
    "drill",
    "finalize",
    "clear-quarantine",
)
OUTCOMES = ("done", "skipped", "failed")
GUARD_PREFIX = "idem#"
GUARD_SORT_KEY = "guard"
#: Guard items carry an epoch ``expiresAt`` so a DynamoDB TTL on that attribute can expire
#: them; redeliveries come within hours, 30 days is generous.
GUARD_TTL = timedelta(days=30)


@dataclass
class AuditItem:
    """One audit record; ``to_item`` gives the DynamoDB form, ``from_item`` reads it back."""

    endpoint: str
    action: str
    actor: str
    outcome: str = "done"
    reason: str = ""
    variant: str | None = None
    version: str | None = None
    alarm: str | None = None
    weights_before: dict[str, float] | None = None
    weights_after: dict[str, float] | None = None
    idempotency_key: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    at: str = ""

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"audit action {self.action!r} is not one of {ACTIONS}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"audit outcome {self.outcome!r} is not one of {OUTCOMES}")
        if not self.at:
            self.at = f"{clock.iso(clock.now())}#{os.urandom(6).hex()}"

    def to_record(self) -> dict[str, Any]:
        """Plain JSON-able form (camelCase keys, as in docs/contracts.md), None values dropped."""
        record = {
            "endpoint": self.endpoint,
            "at": self.at,
            "action": self.action,
            "actor": self.actor,
            "outcome": self.outcome,
            "reason": self.reason,
            "variant": self.variant,
            "version": self.version,
            "alarm": self.alarm,
            "weightsBefore": self.weights_before,
            "weightsAfter": self.weights_after,
            "idempotencyKey": self.idempotency_key,
            "detail": self.detail or None,
        }
        return {k: v for k, v in record.items() if v is not None}

    def to_item(self) -> dict[str, Any]:
        """DynamoDB attribute-value form."""
        return {k: to_attr(v) for k, v in self.to_record().items()}


def to_attr(value: Any) -> dict[str, Any]:
    """Python value -> DynamoDB attribute value (numbers as exact decimal strings)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": repr(value) if isinstance(value, float) else str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, dict):
        return {"M": {str(k): to_attr(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [to_attr(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__} in an audit item")


def from_attr(attr: dict[str, Any]) -> Any:
    """DynamoDB attribute value -> Python value (numbers as int when integral, else float)."""
    (kind, value), *_ = attr.items()
    if kind == "S":
        return value
    if kind == "N":
        number = float(value)
        return (
            int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
        )
    if kind == "BOOL":
        return value
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: from_attr(v) for k, v in value.items()}
    if kind == "L":
        return [from_attr(v) for v in value]
    if kind == "SS":
        return list(value)
    raise TypeError(f"unsupported DynamoDB attribute type {kind}")


def _error_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def is_duplicate(exc: Exception) -> bool:
    """True when a conditional audit write failed because the item/guard already exists."""
    code = _error_code(exc)
    if code == "ConditionalCheckFailedException":
        return True
    if code == "TransactionCanceledException":
        reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
        codes = {r.get("Code") for r in reasons}
        if codes:
            return "ConditionalCheckFailed" in codes and codes <= {"ConditionalCheckFailed", "None", None}
        return "ConditionalCheckFailed" in str(exc)
    return False


def guard_key(idempotency_key: str) -> dict[str, Any]:
    """Primary key of the guard item of ``idempotency_key``."""
    return {"endpoint": {"S": GUARD_PREFIX + idempotency_key}, "at": {"S": GUARD_SORT_KEY}}


def append(dynamodb: Any, table: str, item: AuditItem) -> bool:
    """Write ``item``; return False (and write nothing) when its idempotency key was seen before.

    With a key: one TransactWriteItems of the guard item and the audit item, both conditional,
    so of many racing duplicates exactly one succeeds. Without a key: one conditional PutItem.
    """
    audit_put = {
        "TableName": table,
        "Item": item.to_item(),
        "ConditionExpression": "attribute_not_exists(#e)",
        "ExpressionAttributeNames": {"#e": "endpoint"},
    }
    try:
        if item.idempotency_key is None:
            dynamodb.put_item(**audit_put)
            return True
        expires = int((clock.now() + GUARD_TTL).timestamp())
        guard = {
            **guard_key(item.idempotency_key),
            "auditEndpoint": {"S": item.endpoint},
            "auditAt": {"S": item.at},
            "expiresAt": {"N": str(expires)},
        }
        dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": table,
                        "Item": guard,
                        "ConditionExpression": "attribute_not_exists(#e)",
                        "ExpressionAttributeNames": {"#e": "endpoint"},
                    }
                },
                {"Put": audit_put},
            ]
        )
        return True
    except Exception as exc:
        if is_duplicate(exc):
            return False
        raise


def get_guard(dynamodb: Any, table: str, idempotency_key: str) -> dict[str, Any] | None:
    """The guard item of ``idempotency_key`` (consistent read), or None if never recorded."""
    response = dynamodb.get_item(TableName=table, Key=guard_key(idempotency_key), ConsistentRead=True)
    raw = response.get("Item")
    return None if raw is None else {k: from_attr(v) for k, v in raw.items()}


def set_pending(dynamodb: Any, table: str, idempotency_key: str, pending: list[str]) -> None:
    """Note on the guard which follow-up effects (``quarantine``, ``notify``) are still owed.

    A redelivery that finds the guard reads this list and finishes the work instead of treating
    the event as a completed duplicate. An empty list clears it.
    """
    if pending:
        dynamodb.update_item(
            TableName=table,
            Key=guard_key(idempotency_key),
            UpdateExpression="SET pending = :p",
            ExpressionAttributeValues={":p": to_attr(pending)},
        )
    else:
        dynamodb.update_item(
            TableName=table, Key=guard_key(idempotency_key), UpdateExpression="REMOVE pending"
        )


def _encode_cursor(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, sort_keys=True).encode()).decode()


def _decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"invalid audit cursor {cursor!r}: pass the value a previous query returned"
        ) from exc
    if not isinstance(key, dict) or set(key) != {"endpoint", "at"}:
        raise ValueError(f"invalid audit cursor {cursor!r}: pass the value a previous query returned")
    return key


def query(
    dynamodb: Any,
    table: str,
    endpoint: str,
    *,
    limit: int = 20,
    cursor: str | None = None,
    since: datetime | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Audit records of ``endpoint``, newest first: (records, cursor for the next page or None)."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "#e = :e",
        "ExpressionAttributeNames": {"#e": "endpoint"},
        "ExpressionAttributeValues": {":e": {"S": endpoint}},
        "ScanIndexForward": False,
        "Limit": limit,
    }
    if since is not None:
        kwargs["KeyConditionExpression"] = "#e = :e AND #a >= :since"
        kwargs["ExpressionAttributeNames"]["#a"] = "at"
        kwargs["ExpressionAttributeValues"][":since"] = {"S": clock.iso(since)}
    if cursor:
        kwargs["ExclusiveStartKey"] = _decode_cursor(cursor)
    response = dynamodb.query(**kwargs)
    records = [{k: from_attr(v) for k, v in raw.items()} for raw in response.get("Items", [])]
    last = response.get("LastEvaluatedKey")
    return records, (_encode_cursor(last) if last else None)
