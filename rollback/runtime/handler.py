"""Lambda entry points: parse the event, call the controller, return a dict.

``on_alarm`` is the rollback function (EventBridge "CloudWatch Alarm State Change" events),
``on_schedule`` the rollout stepper (EventBridge schedule). Clients and settings are made on
the first invocation and reused while the container is warm; nothing AWS-related happens at
import, which keeps the cold start small. Standard library + boto3 only.
"""

from __future__ import annotations

from typing import Any

from rollback.runtime import controller, logs, stepper
from rollback.runtime.aws import LAMBDA_LIMITS, Clients, make_clients
from rollback.runtime.events import parse_alarm_event

_clients: Clients | None = None
_settings: controller.Settings | None = None

#: Seconds kept back from the function's remaining time: the retry budget ends this long before
#: Lambda would kill the invocation. The budget only bounds the controller's sleeps, so the margin
#: must hold the longest single call that may start just before the deadline (timeouts and
#: botocore's own attempts, :data:`rollback.runtime.aws.LAMBDA_LIMITS`), plus a second to raise.
SAFETY_MARGIN_SECONDS = LAMBDA_LIMITS.longest_call_seconds + 1.0


def _context() -> tuple[Clients, controller.Settings]:
    global _clients, _settings
    if _settings is None:
        _settings = controller.Settings.from_env()
    if _clients is None:
        _clients = make_clients(limits=LAMBDA_LIMITS)
    return _clients, _settings


def reset() -> None:
    """Forget cached clients and settings (the sandbox calls this after changing the environment)."""
    global _clients, _settings
    _clients = _settings = None


def _actor(context: Any, default: str) -> str:
    name = getattr(context, "function_name", None)
    return f"lambda:{name or default}"


def _retry(context: Any, policy: controller.RetryPolicy) -> controller.RetryPolicy:
    """``policy`` bounded by this invocation's remaining time (minus the margin) and its own budget."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    seconds = remaining() / 1000.0 - SAFETY_MARGIN_SECONDS if callable(remaining) else None
    return policy.bounded(seconds)


def on_alarm(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Drain a failing candidate (or report a failing stable) for one alarm state change.

    Raises EventError for a malformed event (nothing changed) and RetryExhaustedError when AWS
    kept refusing or the invocation's retry budget (remaining time minus
    :data:`SAFETY_MARGIN_SECONDS`) is spent, so Lambda retries the invocation twice and then sends
    the event to the dead-letter queue, instead of timing out in the middle of a drain.
    """
    logs.configure()
    alarm = parse_alarm_event(event)
    clients, settings = _context()
    return controller.handle_alarm(
        clients,
        settings,
        alarm,
        actor=_actor(context, "rollback"),
        retry=_retry(context, controller.RetryPolicy()),
    )


def on_schedule(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Advance progressive rollouts by one tick (the event content is not needed)."""
    logs.configure()
    clients, settings = _context()
    return stepper.step(
        clients,
        settings,
        actor=_actor(context, "stepper"),
        # One tick walks every endpoint: bounded by the function's own time, not the drain budget.
        retry=_retry(context, controller.RetryPolicy(attempts=3, budget=None)),
    )
