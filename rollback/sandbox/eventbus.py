"""EventBridge delivery in the sandbox: alarm state changes and schedules to Lambda handlers.

moto stores rules and targets but does not deliver CloudWatch alarm events, and it would run
Lambda functions in Docker. The sandbox does both itself, as AWS would:

- an alarm transition becomes a real-shaped "CloudWatch Alarm State Change" event, matched
  against each enabled rule's event pattern (:func:`matches`, the pattern features EventBridge
  documents: exact values, ``prefix``, ``anything-but``, ``exists``, ``numeric``);
- a ``rate(...)`` schedule rule fires its targets every period of the virtual clock;
- a Lambda target is called in-process: its deployed ``Handler`` string is resolved by import and
  called with the deployed environment variables (plus the emulator's endpoint and fake
  credentials), only if the function's resource policy lets ``events.amazonaws.com`` invoke it
  from that rule.

Failures follow AWS's two layers (EventBridge invokes Lambda *asynchronously*):

- **delivery** (EventBridge -> Lambda): the target's ``RetryPolicy`` and ``DeadLetterConfig``.
  In-process delivery has no network or throttling, so the only delivery failures here are the
  ones AWS never retries (no permission for the rule, no such function): the event goes straight
  to the target's dead-letter queue (body = the event, ``ERROR_CODE``/``ERROR_MESSAGE``/
  ``RULE_ARN``/``TARGET_ARN`` message attributes);
- **function errors** (the handler raised): Lambda's asynchronous invocation config of the
  function (``PutFunctionEventInvokeConfig``; without one, 2 retries and 6 hours). Retries come
  1 then 2 minutes of (virtual) time later, from :meth:`EventBus.run_schedules`; after the last
  one, or once the event is older than its maximum age, the on-failure destination (SQS) gets
  Lambda's on-failure record (``requestContext.condition`` ``RetriesExhausted`` or
  ``EventAgeExceeded``, ``requestPayload`` = the event, ``responsePayload`` = the error). Without
  a destination the event is discarded, as in AWS, and listed in :attr:`EventBus.discarded`.
"""

from __future__ import annotations

import fnmatch
import importlib
import io
import itertools
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

from rollback.runtime.errors import SandboxError
from rollback.sandbox.alarm_evaluator import AlarmChange
from rollback.sandbox.emulator import ACCOUNT_ID, Emulator, environment

#: The service principal CloudWatch alarms invoke Lambda actions as.
ALARM_ACTION_PRINCIPAL = "lambda.alarms.cloudwatch.amazonaws.com"
_RATE_RE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_LAST_ENV: dict[str, dict[str, str]] = {}
_UNIT_SECONDS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}
#: Lambda's documented waits before the retries of a failed asynchronous invocation: 1, then 2 minutes.
ASYNC_RETRY_DELAYS_SECONDS = (60, 120)
#: Lambda's defaults when a function has no asynchronous invocation config.
DEFAULT_ASYNC_RETRY_ATTEMPTS = 2
DEFAULT_MAX_EVENT_AGE_SECONDS = 6 * 3600


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


def alarm_data(change: AlarmChange) -> dict[str, Any]:
    """The state change itself: EventBridge's ``detail`` and an alarm action's ``alarmData`` alike."""
    return {
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
    }


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
        "detail": alarm_data(change),
    }


def alarm_action_payload(change: AlarmChange, region: str) -> dict[str, Any]:
    """What CloudWatch sends a Lambda alarm action (documented shape: ``alarmData``, no detail-type)."""
    return {
        "source": "aws.cloudwatch",
        "alarmArn": change.arn,
        "accountId": ACCOUNT_ID,
        "time": _aws_time(change.at),
        "region": region,
        "alarmData": alarm_data(change),
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
    #: The exception's class name and message (what Lambda puts in its error response payload).
    error_type: str | None = None
    error_message: str | None = None


@dataclass
class _AsyncEvent:
    """An event Lambda accepted for asynchronous invocation: its attempts and its next retry time."""

    function_arn: str
    event: Any
    rule: dict[str, Any] | None
    accepted_at: datetime
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    attempts: int = 0
    due: float = 0.0
    last: Invocation | None = None


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

    def __init__(
        self,
        emulator: Emulator,
        now: Callable[[], datetime],
        delivery_delay: float | None = None,
        action_delay: float | None = None,
        cold_start: float = 0.0,
    ) -> None:
        self._emu = emulator
        self._now = now
        #: Timing model: seconds from an event to its handler running through a rule
        #: (``delivery_delay``) or an alarm's own action (``action_delay``), plus ``cold_start`` when
        #: no execution environment of the function is warm when the event arrives. None: at once.
        self._delivery_delay = delivery_delay
        self._action_delay = action_delay
        self._cold_start = cold_start
        self._queued: list[tuple[float, int, _AsyncEvent]] = []
        self._warm_from: dict[str, float] = {}
        self._seq = itertools.count()
        self._next_fire: dict[str, float] = {}
        self.invocations: list[Invocation] = []
        #: Events sent to a dead-letter queue: ``source`` "eventbridge" (delivery) or "lambda" (on-failure).
        self.dead_letters: list[dict[str, Any]] = []
        #: Events Lambda dropped after its retries because the function has no on-failure destination.
        self.discarded: list[dict[str, Any]] = []
        self._retries: list[_AsyncEvent] = []
        self._rule_cache: list[dict[str, Any]] | None = None
        self._target_cache: dict[str, list[dict[str, Any]]] = {}
        self._invoke_configs: dict[str, dict[str, Any]] = {}

    def invalidate(self) -> None:
        """Forget cached rules, targets and invoke configs (call after the program was applied again)."""
        self._rule_cache = None
        self._target_cache.clear()
        self._invoke_configs.clear()

    @property
    def pending_retries(self) -> int:
        """Failed asynchronous invocations Lambda will still retry."""
        return len(self._retries)

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
        """Turn alarm transitions into events and deliver them: to matching rules, and to the Lambda
        functions an alarm names in its own ``AlarmActions`` (on transitions into ALARM)."""
        done: list[Invocation] = []
        for change in changes:
            done.extend(self.publish(alarm_event(change, self._emu.region)))
            if change.new_state == "ALARM":
                done.extend(self._alarm_actions(change))
        return done

    def _alarm_actions(self, change: AlarmChange) -> list[Invocation]:
        """CloudWatch's Lambda alarm action: an asynchronous invoke with the alarm's own payload.

        Only with a function policy that lets ``lambda.alarms.cloudwatch.amazonaws.com`` invoke it
        for this alarm; CloudWatch retries delivery until Lambda accepts it, so there is no delivery
        dead letter, and Lambda's own retries apply to function errors.
        """
        alarm = self._emu.backend("cloudwatch").alarms.get(change.name)
        done: list[Invocation] = []
        for arn in getattr(alarm, "alarm_actions", None) or []:
            if ":lambda:" not in arn:
                continue  # SNS actions (notify-only alarms) are not the sandbox's to deliver
            name = _function_name(arn)
            if not self._function_exists(name) or not self._allowed(name, change.arn, ALARM_ACTION_PRINCIPAL):
                inv = Invocation(
                    name,
                    "alarm-action",
                    "CloudWatch Alarm Action",
                    self._now(),
                    0,
                    False,
                    error=f"AccessDeniedException: no lambda permission for {ALARM_ACTION_PRINCIPAL}",
                    error_type="AccessDeniedException",
                )
                self.invocations.append(inv)
                done.append(inv)
                continue
            pending = _AsyncEvent(arn, alarm_action_payload(change, self._emu.region), None, self._now())
            if self._action_delay is not None:
                self._queue(name, pending, self._action_delay)
                continue
            done.append(self._attempt(pending))
        return done

    def _queue(self, function: str, pending: _AsyncEvent, delay: float) -> None:
        """Run ``pending`` when it arrives, after a cold start unless an environment is warm by then."""
        arrives = self._now().timestamp() + max(0.0, delay)
        warm_from = self._warm_from.get(function)
        starts = arrives if warm_from is not None and warm_from <= arrives else arrives + self._cold_start
        self._warm_from[function] = min(starts, warm_from) if warm_from is not None else starts
        self._queued.append((starts, next(self._seq), pending))

    def run_schedules(self) -> list[Invocation]:
        """Run Lambda's due retries, then fire schedule rules whose time has come (first one period in)."""
        now = self._now()
        done: list[Invocation] = self._run_due_retries(now)
        done.extend(self.run_queued())
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

    @property
    def queued(self) -> int:
        """Events accepted for delivery whose handler has not run yet (timing model)."""
        return len(self._queued)

    def run_queued(self) -> list[Invocation]:
        """Run the handlers of delivered events whose delivery delay has passed, oldest first."""
        now = self._now().timestamp()
        due = sorted((q for q in self._queued if q[0] <= now), key=lambda q: (q[0], q[1]))
        if not due:
            return []
        self._queued = [q for q in self._queued if q[0] > now]
        return [self._attempt(pending) for _due, _n, pending in due]

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
            name = _function_name(arn)
            # Delivery: the only failures in-process are the ones EventBridge does not retry.
            if not self._function_exists(name):
                code, message = "ResourceNotFoundException", f"Function not found: {arn}"
            elif not self._allowed(name, rule["Arn"]):
                code, message = "AccessDeniedException", "no lambda permission for events.amazonaws.com"
            else:
                pending = _AsyncEvent(arn, payload, rule, self._now())
                if self._delivery_delay is not None:
                    self._queue(name, pending, self._delivery_delay)
                    continue
                done.append(self._attempt(pending))
                continue
            inv = Invocation(
                name,
                rule["Name"],
                _detail_type(payload),
                self._now(),
                0,
                False,
                error=f"{code}: {message}",
                error_type=code,
                error_message=message,
            )
            self.invocations.append(inv)
            self._delivery_dead_letter(target, rule, payload, code, message)
            done.append(inv)
        return done

    def _delivery_dead_letter(
        self, target: dict[str, Any], rule: dict[str, Any], event: Any, code: str, message: str
    ) -> None:
        """What EventBridge does with an event it could not deliver: the event itself to the target DLQ."""
        dlq = target.get("DeadLetterConfig", {}).get("Arn")
        record = {
            "source": "eventbridge",
            "queue": dlq,
            "rule": rule["Name"],
            "target": target["Arn"],
            "error": f"{code}: {message}",
            "event": event,
        }
        if not dlq:
            self.discarded.append(record)
            return
        self.dead_letters.append(record)
        attributes = {
            "RULE_ARN": rule["Arn"],
            "TARGET_ARN": target["Arn"],
            "ERROR_CODE": code,
            "ERROR_MESSAGE": message,
        }
        self._send_to_queue(
            dlq,
            json.dumps(event),
            {k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
        )

    def _attempt(self, pending: _AsyncEvent) -> Invocation:
        """One asynchronous invocation by Lambda; on error, schedule its retry or give the event up."""
        inv = self._run(pending.function_arn, pending.event, pending.rule)
        pending.attempts += 1
        pending.last = inv
        if inv.ok:
            return inv
        config = self._invoke_config(_function_name(pending.function_arn))
        retries = int(config.get("MaximumRetryAttempts", DEFAULT_ASYNC_RETRY_ATTEMPTS))
        if pending.attempts <= retries:
            delay = ASYNC_RETRY_DELAYS_SECONDS[min(pending.attempts, len(ASYNC_RETRY_DELAYS_SECONDS)) - 1]
            pending.due = self._now().timestamp() + delay
            self._retries.append(pending)
        else:
            self._on_failure(pending, "RetriesExhausted", config)
        return inv

    def _run_due_retries(self, now: datetime) -> list[Invocation]:
        due = [p for p in self._retries if p.due <= now.timestamp()]
        self._retries = [p for p in self._retries if p.due > now.timestamp()]
        done: list[Invocation] = []
        for pending in sorted(due, key=lambda p: p.due):
            config = self._invoke_config(_function_name(pending.function_arn))
            max_age = int(config.get("MaximumEventAgeInSeconds", DEFAULT_MAX_EVENT_AGE_SECONDS))
            if (now - pending.accepted_at).total_seconds() > max_age:
                self._on_failure(pending, "EventAgeExceeded", config)
                continue
            done.append(self._attempt(pending))
        return done

    def _on_failure(self, pending: _AsyncEvent, condition: str, config: dict[str, Any]) -> None:
        """Lambda gives an event up: its on-failure record to the destination, or the event is discarded."""
        last = pending.last
        record = {
            "version": "1.0",
            "timestamp": _aws_time(self._now()).replace("+0000", "Z"),
            "requestContext": {
                "requestId": pending.request_id,
                "functionArn": f"{pending.function_arn}:$LATEST",
                "condition": condition,
                "approximateInvokeCount": pending.attempts,
            },
            "requestPayload": pending.event,
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "responsePayload": {
                "errorMessage": last.error_message if last else None,
                "errorType": last.error_type if last else None,
            },
        }
        destination = (config.get("DestinationConfig") or {}).get("OnFailure", {}).get("Destination")
        summary = {
            "source": "lambda",
            "queue": destination,
            "rule": pending.rule["Name"] if pending.rule else "",
            "function": pending.function_arn,
            "condition": condition,
            "attempts": pending.attempts,
            "error": last.error if last else None,
            "event": pending.event,
        }
        if not destination:
            self.discarded.append(summary)
            return
        if ":sqs:" not in destination:
            raise SandboxError(
                f"function {pending.function_arn}: on-failure destination {destination} is not an SQS "
                "queue; the sandbox only delivers Lambda destinations to SQS"
            )
        self.dead_letters.append(summary)
        self._send_to_queue(destination, json.dumps(record))

    def _send_to_queue(self, queue_arn: str, body: str, attributes: dict[str, Any] | None = None) -> None:
        sqs = self._emu.client("sqs")
        url = sqs.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[-1])["QueueUrl"]
        sqs.send_message(
            QueueUrl=url, MessageBody=body, **({"MessageAttributes": attributes} if attributes else {})
        )

    def _invoke_config(self, function: str) -> dict[str, Any]:
        """The function's asynchronous invocation config ({} when none: Lambda's defaults apply)."""
        if function not in self._invoke_configs:
            lam = self._emu.client("lambda")
            try:
                self._invoke_configs[function] = lam.get_function_event_invoke_config(FunctionName=function)
            except lam.exceptions.ResourceNotFoundException:
                self._invoke_configs[function] = {}
        return self._invoke_configs[function]

    def _function_exists(self, function: str) -> bool:
        lam = self._emu.client("lambda")
        try:
            lam.get_function_configuration(FunctionName=function)
        except lam.exceptions.ResourceNotFoundException:
            return False
        return True

    def _allowed(
        self, function: str, source_arn: str | None, principal: str = "events.amazonaws.com"
    ) -> bool:
        """Does the function's resource policy let ``principal`` invoke it from ``source_arn``?

        ``AWS:SourceArn`` is matched as IAM's ArnLike does (``*`` and ``?`` wildcards).
        """
        if source_arn is None:
            return True
        try:
            policy = json.loads(self._emu.client("lambda").get_policy(FunctionName=function)["Policy"])
        except Exception:
            return False
        for statement in policy.get("Statement", []):
            given = statement.get("Principal", {})
            service = given.get("Service") if isinstance(given, dict) else given
            if service != principal:
                continue
            source = statement.get("Condition", {}).get("ArnLike", {}).get("AWS:SourceArn")
            if source is None or fnmatch.fnmatchcase(source_arn, source):
                return True
        return False

    def invoke(self, function_arn: str, event: Any, rule: dict[str, Any] | None = None) -> Invocation:
        """Call a deployed function's handler in-process with its environment, once; never raises.

        A direct (synchronous) invocation: no Lambda retries, no destination. With ``rule``, the
        function's resource policy must let that rule invoke it.
        """
        name = _function_name(function_arn)
        if not self._allowed(name, rule["Arn"] if rule else None):
            inv = Invocation(
                name,
                rule["Name"] if rule else "",
                _detail_type(event),
                self._now(),
                0,
                False,
                error="AccessDenied: no lambda permission",
                error_type="AccessDeniedException",
                error_message="no lambda permission",
            )
            self.invocations.append(inv)
            return inv
        return self._run(function_arn, event, rule)

    def _run(self, function_arn: str, event: Any, rule: dict[str, Any] | None) -> Invocation:
        """Run the handler in-process with the function's environment; record and return the outcome."""
        lam = self._emu.client("lambda")
        name = _function_name(function_arn)
        config = lam.get_function_configuration(FunctionName=name)
        detail_type = _detail_type(event)
        at = self._now()
        rule_name = rule["Name"] if rule else ("alarm-action" if _is_alarm_action(event) else "")
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
            except Exception as exc:  # a handler error is what Lambda retries; keep it, never crash
                inv = Invocation(
                    name,
                    rule_name,
                    detail_type,
                    at,
                    len(calls),
                    False,
                    error=f"{type(exc).__name__}: {exc}",
                    calls=list(calls),
                    error_type=type(exc).__name__,
                    error_message=str(exc),
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


def _function_name(function_arn: str) -> str:
    return function_arn.split(":function:")[-1].split(":")[0]


def _is_alarm_action(event: Any) -> bool:
    return isinstance(event, dict) and "alarmData" in event


def _detail_type(event: Any) -> str:
    return event.get("detail-type", "") if isinstance(event, dict) else ""


def _resolve_handler(handler: str, function: str) -> Callable[[Any, Any], Any]:
    module_name, _, attr = handler.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)  # type: ignore[no-any-return]
    except (ImportError, AttributeError, ValueError) as exc:
        raise SandboxError(
            f"Lambda function {function}: handler {handler!r} cannot be imported in the sandbox ({exc})"
        ) from None
