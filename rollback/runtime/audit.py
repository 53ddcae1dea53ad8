"""The audit trail: one DynamoDB item per action, idempotent, newest first.

Table ``names.audit_table_name(stack)``: partition key ``endpoint``, sort key ``at``
(ISO-8601 UTC with milliseconds + ``#`` + id). An idempotent append writes a guard item
``endpoint = "idem#<key>"`` and the audit item in one TransactWriteItems, both conditional on
not existing, so duplicates racing each other still leave exactly one audit item. The guard can
carry the follow-up effects still owed (``followUps``), and a retried commit whose first answer
was lost is recognised (ClientRequestToken, and the guard pointing at the same item).
Standard library only (the client is passed in): on the Lambda import path.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rollback.runtime import clock

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


@dataclass(frozen=True)
class Commit:
    """What an idempotent append found: ``written`` or the guard item that was there before."""

    written: bool
    guard: dict[str, Any] | None = None


def _guard_expiry(item: AuditItem) -> int:
    # Derived from the item's own time, not from "now": a retried attempt must send the very
    # same request, or DynamoDB's ClientRequestToken check would reject it as a mismatch.
    try:
        at = clock.parse_iso(item.at.split("#", 1)[0])
    except ValueError:
        at = clock.now()
    return int((at + GUARD_TTL).timestamp())


def client_token(guard: str, item: AuditItem) -> str:
    """ClientRequestToken (<= 36 chars) of the transaction writing ``item`` under ``guard``.

    The same attempt retried (by botocore after a lost response, or by rollback.runtime.retry) sends the
    same token and DynamoDB answers success instead of failing the condition its own first
    attempt made true. Racing deliveries carry different item times, hence different tokens,
    and one of them fails the condition as it should.
    """
    return hashlib.sha256(f"{guard}|{item.at}".encode()).hexdigest()[:32]


def commit(
    dynamodb: Any,
    table: str,
    item: AuditItem,
    *,
    guard: str | None = None,
    followups: dict[str, Any] | None = None,
    latest_of: str | None = None,
    marker: str | None = None,
) -> Commit:
    """Write ``item`` once per idempotency key; report the existing guard when it was a duplicate.

    ``guard`` (default: the item's idempotency key) names the guard item; ``followups`` (JSON-able)
    are stored on it in the same transaction, so a delivery that dies right after the commit
    leaves the exact effects still owed for the next one to finish. A condition failure whose
    guard points at this very item is our own earlier attempt (its response was lost): written.
    ``latest_of`` names an older guard that gets ``latest``/``latestAt`` pointing at this one (a
    re-release drain recorded under a suffixed key stays findable from the key everybody
    computes); ``marker`` names an item overwritten with this guard and time (the in-progress
    marker of a drain of one version, whatever its key). Both in the same transaction.
    Without any key: one conditional PutItem.
    """
    audit_put = {
        "TableName": table,
        "Item": item.to_item(),
        "ConditionExpression": "attribute_not_exists(#e)",
        "ExpressionAttributeNames": {"#e": "endpoint"},
    }
    key = guard or item.idempotency_key
    if key is None:
        dynamodb.put_item(**audit_put)
        return Commit(True)
    guard_item = {
        **guard_key(key),
        "auditEndpoint": {"S": item.endpoint},
        "auditAt": {"S": item.at},
        "expiresAt": {"N": str(_guard_expiry(item))},
    }
    if followups:
        guard_item["followUps"] = {"S": json.dumps(followups, sort_keys=True)}
    transact: list[dict[str, Any]] = [
        {
            "Put": {
                "TableName": table,
                "Item": guard_item,
                "ConditionExpression": "attribute_not_exists(#e)",
                "ExpressionAttributeNames": {"#e": "endpoint"},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        },
        {"Put": audit_put},
    ]
    if latest_of is not None:
        transact.append(
            {
                "Update": {
                    "TableName": table,
                    "Key": guard_key(latest_of),
                    "UpdateExpression": "SET latest = :g, latestAt = :a",
                    "ConditionExpression": "attribute_exists(#e)",
                    "ExpressionAttributeNames": {"#e": "endpoint"},
                    "ExpressionAttributeValues": {":g": {"S": key}, ":a": {"S": item.at}},
                }
            }
        )
    if marker is not None:
        transact.append(
            {
                "Put": {
                    "TableName": table,
                    "Item": {
                        **guard_key(marker),
                        "guard": {"S": key},
                        "auditEndpoint": {"S": item.endpoint},
                        "auditAt": {"S": item.at},
                        "expiresAt": {"N": str(_guard_expiry(item))},
                    },
                }
            }
        )
    try:
        dynamodb.transact_write_items(TransactItems=transact, ClientRequestToken=client_token(key, item))
        return Commit(True)
    except Exception as exc:
        if not is_duplicate(exc):
            raise
        existing = _cancelled_guard(exc)
        if existing is None:  # no ALL_OLD copy in the answer: read it
            existing = get_guard(dynamodb, table, key)
        if existing is not None and existing.get("auditAt") == item.at:
            return Commit(True)
        return Commit(False, existing)


def append(dynamodb: Any, table: str, item: AuditItem) -> bool:
    """Write ``item``; return False (and write nothing) when its idempotency key was seen before.

    With a key: one TransactWriteItems of the guard item and the audit item, both conditional,
    so of many racing duplicates exactly one succeeds. Without a key: one conditional PutItem.
    """
    return commit(dynamodb, table, item).written


def _cancelled_guard(exc: Exception) -> dict[str, Any] | None:
    reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
    if reasons and reasons[0].get("Code") == "ConditionalCheckFailed" and reasons[0].get("Item"):
        return {k: from_attr(v) for k, v in reasons[0]["Item"].items()}
    return None


def get_guard(dynamodb: Any, table: str, idempotency_key: str) -> dict[str, Any] | None:
    """The guard item of ``idempotency_key`` (consistent read), or None if never recorded."""
    response = dynamodb.get_item(TableName=table, Key=guard_key(idempotency_key), ConsistentRead=True)
    raw = response.get("Item")
    return None if raw is None else {k: from_attr(v) for k, v in raw.items()}


def get_guards(dynamodb: Any, table: str, idempotency_keys: list[str]) -> dict[str, dict[str, Any]]:
    """Guard items of ``idempotency_keys`` that exist (consistent reads), in BatchGetItem calls of 100."""
    out: dict[str, dict[str, Any]] = {}
    prefix = GUARD_PREFIX
    for start in range(0, len(idempotency_keys), 100):
        request: dict[str, Any] = {
            table: {
                "Keys": [guard_key(k) for k in idempotency_keys[start : start + 100]],
                "ConsistentRead": True,
            }
        }
        while request:
            response = dynamodb.batch_get_item(RequestItems=request)
            for raw in response.get("Responses", {}).get(table, []):
                item = {k: from_attr(v) for k, v in raw.items()}
                out[str(item["endpoint"])[len(prefix) :]] = item
            request = response.get("UnprocessedKeys") or {}
    return out


def guard_followups(guard: dict[str, Any]) -> dict[str, Any]:
    """The follow-up effects a guard item says may still be owed (empty when none).

    Reads ``followUps`` (written with the commit) and the older ``pending`` list of JSON chunks
    that guards written before it may still carry.
    """
    out: dict[str, Any] = {}
    for chunk in guard.get("pending") or []:
        out.update(json.loads(chunk))
    text = guard.get("followUps")
    if text:
        out.update(json.loads(text))
    return out


def set_followups(dynamodb: Any, table: str, idempotency_key: str, followups: dict[str, Any]) -> None:
    """Replace what the guard says is still owed; an empty dict marks the follow-ups done."""
    if followups:
        dynamodb.update_item(
            TableName=table,
            Key=guard_key(idempotency_key),
            UpdateExpression="SET followUps = :f REMOVE pending",
            ExpressionAttributeValues={":f": {"S": json.dumps(followups, sort_keys=True)}},
        )
    else:
        dynamodb.update_item(
            TableName=table, Key=guard_key(idempotency_key), UpdateExpression="REMOVE followUps, pending"
        )


def clear_followups(dynamodb: Any, table: str, idempotency_key: str) -> bool:
    """Mark an existing guard's follow-ups done; False (and nothing written) when there is no guard.

    Conditional on the guard existing: an UpdateItem on a missing key would create a guard and
    turn the next real commit of that key into a "duplicate".
    """
    try:
        dynamodb.update_item(
            TableName=table,
            Key=guard_key(idempotency_key),
            UpdateExpression="REMOVE followUps, pending",
            ConditionExpression="attribute_exists(#e)",
            ExpressionAttributeNames={"#e": "endpoint"},
        )
    except Exception as exc:
        if _error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise
    return True


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
