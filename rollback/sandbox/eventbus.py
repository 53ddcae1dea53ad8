"""EventBridge delivery in the sandbox: alarm state changes and schedules to Lambda handlers.

moto stores rules and targets but does not deliver CloudWatch alarm events, and it would run
Lambda functions in Docker. The sandbox does both itself, as AWS would:

- an alarm transition becomes a real-shaped "CloudWatch Alarm State Change" event, matched
  against each enabled rule's event pattern (:func:`matches`, the pattern features EventBridge
  documents: exact values, ``prefix``, ``anything-but``, ``exists``, ``numeric``);
- a ``rate(...)`` schedule rule fires its targets every period of the virtual clock;
- a Lambda target is called in-process: its deployed ``Handler`` string is resolved by import and
  called with the deployed environment variables (plus the emulator's endpoint and fake
  credentials); a failing invocation is retried per the target's ``RetryPolicy`` and then sent
  to its dead-letter queue, and only if the function's resource policy lets
  ``events.amazonaws.com`` invoke it from that rule.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import botocore.client

from rollback.errors import SandboxError
from rollback.sandbox.alarms import AlarmChange
from rollback.sandbox.emulator import ACCOUNT_ID, Emulator, environment

_RATE_RE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_LAST_ENV: dict[str, dict[str, str]] = {}
_UNIT_SECONDS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}


def _match_value(rule: Any, value: Any, present: bool) -> bool:
    if isinstance(rule, dict):
        if "exists" in rule:
            return bool(rule["exists"]) == present
        if not present:
            return False
        if "prefix" in rule:
            return isinstance(value, str) and value.startswith(rule["prefix"])
        if "suffix" in rule:
            return isinstance(value, str) and value.endswith(rule["suffix"])
        if "anything-but" in rule:
            excluded = rule["anything-but"]
            if isinstance(excluded, dict):  # {"anything-but": {"prefix": ...}} or suffix
                if set(excluded) - {"prefix", "suffix"}:
                    raise SandboxError(
                        f"event pattern anything-but {sorted(excluded)} is not supported by the sandbox"
                    )
                return not _match_value(excluded, value, present)
            excluded = excluded if isinstance(excluded, list) else [excluded]
            return value not in excluded
        if "numeric" in rule:
            if not isinstance(value, int | float):
                return False
            ops = rule["numeric"]
            checks = {"<": float.__lt__, "<=": float.__le__, ">": float.__gt__, ">=": float.__ge__}
            for i in range(0, len(ops), 2):
                op, bound = ops[i], float(ops[i + 1])
                if op == "=":
                    if float(value) != bound:
                        return False
                elif not checks[op](float(value), bound):
                    return False
            return True
        raise SandboxError(f"event pattern operator {sorted(rule)} is not supported by the sandbox matcher")
    return present and value == rule


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """True when ``event`` matches the EventBridge ``pattern`` (every field; any listed value)."""
    for key, rule in pattern.items():
        present = key in event
        value = event.get(key)
        if isinstance(rule, dict) and not any(
            k in rule for k in ("exists", "prefix", "suffix", "anything-but", "numeric")
        ):
            if not isinstance(value, dict) or not matches(rule, value):
                return False
            continue
        rules = rule if isinstance(rule, list) else [rule]
        values = value if isinstance(value, list) else [value]
        if not any(_match_value(r, v, present) for r in rules for v in values):
            return False
    return True


def _aws_time(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}+0000"


def alarm_event(change: AlarmChange, region: str) -> dict[str, Any]:
    """The EventBridge event AWS sends for an alarm state change (documented shape)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": ACCOUNT_ID,
        "time": change.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [change.arn],
        "detail": {
            "alarmName": change.name,
            "state": {
                "value": change.new_state,
                "reason": change.reason,
                "reasonData": change.reason_data,
                "timestamp": _aws_time(change.at),
            },
            "previousState": {
                "value": change.old_state,
                "reason": change.old_reason,
                "timestamp": _aws_time(change.old_at),
            },
            "configuration": change.configuration,
        },
    }


def scheduled_event(rule_arn: str, at: datetime, region: str) -> dict[str, Any]:
    """The event a schedule rule sends to its targets."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


def rate_seconds(expression: str) -> int:
    """Seconds between firings of a ``rate(N unit)`` schedule expression."""
    m = _RATE_RE.match(expression.strip())
    if not m:
        raise SandboxError(
            f"schedule expression {expression!r} is not supported by the sandbox (use rate(N minutes))"
        )
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


@dataclass
class Invocation:
    """One in-process Lambda invocation, for the drill report and the timeline."""

    function: str
    rule: str
    detail_type: str
    at: datetime
    api_calls: int
    ok: bool
    result: Any = None
    error: str | None = None
    calls: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)


class _CallCounter:
    """Counts AWS API calls made through botocore while a handler runs (any client it builds)."""

    def __init__(self) -> None:
        self.calls: list[str] | None = None
        self._original = botocore.client.BaseClient._make_api_call
        counter = self

        def counting(client: Any, operation_name: str, api_params: Any) -> Any:
            if counter.calls is not None:
                counter.calls.append(f"{client.meta.service_model.service_name}:{operation_name}")
            return counter._original(client, operation_name, api_params)

        self._counting = counting

    def __enter__(self) -> list[str]:
        self.calls = []
        botocore.client.BaseClient._make_api_call = self._counting  # type: ignore[method-assign]
        return self.calls

    def __exit__(self, *exc: object) -> None:
        botocore.client.BaseClient._make_api_call = self._original  # type: ignore[method-assign]


class EventBus:
    """Delivers events to the targets of matching rules of the default bus, in-process.

    ``now`` is the (virtual) clock; every invocation is appended to :attr:`invocations`.
    """

    def __init__(self, emulator: Emulator, now: Callable[[], datetime]) -> None:
        self._emu = emulator
        self._now = now
        self._next_fire: dict[str, float] = {}
        self.invocations: list[Invocation] = []
        self.dead_letters: list[dict[str, Any]] = []
        self._rule_cache: list[dict[str, Any]] | None = None
        self._target_cache: dict[str, list[dict[str, Any]]] = {}

    def invalidate(self) -> None:
        """Forget cached rules and targets (call after the program was applied again)."""
        self._rule_cache = None
        self._target_cache.clear()

    def _rules(self) -> list[dict[str, Any]]:
        if self._rule_cache is None:
            self._rule_cache = self._list_rules()
        return self._rule_cache

    def _list_rules(self) -> list[dict[str, Any]]:
        events = self._emu.client("events")
        rules: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {}
        while True:
            page = events.list_rules(**kwargs)
            rules.extend(page.get("Rules", []))
            if not page.get("NextToken"):
                return [r for r in rules if r.get("State", "ENABLED") == "ENABLED"]
            kwargs["NextToken"] = page["NextToken"]

    def publish(self, event: dict[str, Any]) -> list[Invocation]:
        """Deliver ``event`` to every target of every enabled rule whose pattern matches it."""
        done: list[Invocation] = []
        for rule in self._rules():
            if not rule.get("EventPattern"):
                continue
            if matches(json.loads(rule["EventPattern"]), event):
                done.extend(self._deliver(rule, event))
        return done

    def publish_alarm_changes(self, changes: list[AlarmChange]) -> list[Invocation]:
        """Turn alarm transitions into events and deliver them."""
        done: list[Invocation] = []
        for change in changes:
            done.extend(self.publish(alarm_event(change, self._emu.region)))
        return done

    def run_schedules(self) -> list[Invocation]:
        """Fire schedule rules whose next firing time has come (the first firing is one period in)."""
        now = self._now()
        done: list[Invocation] = []
        for rule in self._rules():
            expression = rule.get("ScheduleExpression")
            if not expression:
                continue
            every = rate_seconds(expression)
            due = self._next_fire.setdefault(rule["Arn"], now.timestamp() + every)
            if now.timestamp() >= due:
                self._next_fire[rule["Arn"]] = due + every
                done.extend(self._deliver(rule, scheduled_event(rule["Arn"], now, self._emu.region)))
        return done

    def _deliver(self, rule: dict[str, Any], event: dict[str, Any]) -> list[Invocation]:
        targets = self._target_cache.get(rule["Name"])
        if targets is None:
            events = self._emu.client("events")
            targets = events.list_targets_by_rule(Rule=rule["Name"]).get("Targets", [])
            self._target_cache[rule["Name"]] = targets
        done: list[Invocation] = []
        for target in targets:
            arn = target["Arn"]
            if ":lambda:" not in arn:
                raise SandboxError(
                    f"rule {rule['Name']}: target {arn} is not a Lambda function; the sandbox only "
                    "delivers to Lambda targets"
                )
            payload = json.loads(target["Input"]) if target.get("Input") else event
            attempts = 1 + int(target.get("RetryPolicy", {}).get("MaximumRetryAttempts", 2))
            invocation = None
            for _ in range(attempts):
                invocation = self.invoke(arn, payload, rule=rule)
                if invocation.ok:
                    break
            assert invocation is not None
            if not invocation.ok:
                self._dead_letter(target, rule, payload, invocation)
            done.append(invocation)
        return done

    def _dead_letter(self, target: dict[str, Any], rule: dict[str, Any], event: Any, inv: Invocation) -> None:
        dlq = target.get("DeadLetterConfig", {}).get("Arn")
        record = {"rule": rule["Name"], "target": target["Arn"], "error": inv.error, "event": event}
        self.dead_letters.append(record)
        if dlq:
            name = dlq.rsplit(":", 1)[-1]
            sqs = self._emu.client("sqs")
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event))

    def _allowed(self, function: str, rule_arn: str | None) -> bool:
        if rule_arn is None:
            return True
        try:
            policy = json.loads(self._emu.client("lambda").get_policy(FunctionName=function)["Policy"])
        except Exception:
            return False
        for statement in policy.get("Statement", []):
            principal = statement.get("Principal", {})
            service = principal.get("Service") if isinstance(principal, dict) else principal
            if service != "events.amazonaws.com":
                continue
            source = statement.get("Condition", {}).get("ArnLike", {}).get("AWS:SourceArn")
            if source in (None, rule_arn):
                return True
        return False

    def invoke(self, function_arn: str, event: Any, rule: dict[str, Any] | None = None) -> Invocation:
        """Call a deployed function's handler in-process with its environment; never raises."""
        lam = self._emu.client("lambda")
        name = function_arn.split(":function:")[-1].split(":")[0]
        config = lam.get_function_configuration(FunctionName=name)
        detail_type = event.get("detail-type", "") if isinstance(event, dict) else ""
        at = self._now()
        rule_name = rule["Name"] if rule else ""
        if not self._allowed(name, rule["Arn"] if rule else None):
            inv = Invocation(
                name, rule_name, detail_type, at, 0, False, error="AccessDenied: no lambda permission"
            )
            self.invocations.append(inv)
            return inv
        handler = _resolve_handler(config["Handler"], name)
        env = {
            **config.get("Environment", {}).get("Variables", {}),
            **self._emu.env(),
            "AWS_LAMBDA_FUNCTION_NAME": name,
        }
        # A warm container keeps clients made from its environment; a different environment
        # (another function, another emulator) is a cold start: the module forgets its cache.
        module = sys.modules.get(handler.__module__)
        if module is not None and hasattr(module, "reset") and _LAST_ENV.get(handler.__module__) != env:
            module.reset()
        _LAST_ENV[handler.__module__] = dict(env)
        context = SimpleNamespace(
            function_name=name,
            function_version="$LATEST",
            invoked_function_arn=config["FunctionArn"],
            memory_limit_in_mb=config.get("MemorySize", 128),
            aws_request_id=str(uuid.uuid4()),
            log_group_name=f"/aws/lambda/{name}",
            get_remaining_time_in_millis=lambda: int(config.get("Timeout", 3)) * 1000,
        )
        counter = _CallCounter()
        logs = io.StringIO()
        with environment(env), counter as calls, _captured_logs(logs):
            try:
                result = handler(event, context)
                inv = Invocation(
                    name, rule_name, detail_type, at, len(calls), True, result, calls=list(calls)
                )
            except Exception as exc:  # a handler error is what EventBridge retries; keep it, never crash
                inv = Invocation(
                    name,
                    rule_name,
                    detail_type,
                    at,
                    len(calls),
                    False,
                    error=f"{type(exc).__name__}: {exc}",
                    calls=list(calls),
                )
        inv.logs = logs.getvalue().splitlines()
        self.invocations.append(inv)
        return inv


@contextmanager
def _captured_logs(buffer: io.StringIO) -> Iterator[None]:
    """What a function prints or logs goes to ``buffer`` (its CloudWatch Logs), not our stdout.

    Streams are swapped by assignment, not ``setStream``: that would flush the previous stream,
    which may be a closed capture (e.g. a finished CLI test runner).
    """
    logger = logging.getLogger("mlrollback")
    saved = [(h, h.stream) for h in logger.handlers if isinstance(h, logging.StreamHandler)]
    for h, _ in saved:
        h.stream = buffer
    try:
        with redirect_stdout(buffer):
            yield
    finally:
        for h in logger.handlers:
            if isinstance(h, logging.StreamHandler) and h.stream is buffer:
                # A handler created during this call bound to our buffer: point it at the real stdout.
                h.stream = dict(saved).get(h, sys.__stdout__)


def _resolve_handler(handler: str, function: str) -> Callable[[Any, Any], Any]:
    module_name, _, attr = handler.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)  # type: ignore[no-any-return]
    except (ImportError, AttributeError, ValueError) as exc:
        raise SandboxError(
            f"Lambda function {function}: handler {handler!r} cannot be imported in the sandbox ({exc})"
        ) from None
