"""Lambda entry points: parse the event, route it (alarm routing, the stepper, the drift job), return a dict.

``on_alarm`` is the rollback function (EventBridge "CloudWatch Alarm State Change" events),
``on_schedule`` the rollout stepper and ``on_drift`` the drift job (EventBridge schedules).
Clients and settings are made on the first invocation and reused while the container is warm;
nothing AWS-related happens at import, which keeps the cold start small. Standard library + boto3 only.
"""

from __future__ import annotations

from typing import Any

from rollback.runtime import logs, stepper
from rollback.runtime.aws import DRIFT_LIMITS, LAMBDA_LIMITS, Clients, make_clients
from rollback.runtime.events import parse_alarm_event
from rollback.runtime.retry import RetryPolicy
from rollback.runtime.routing import handle_alarm
from rollback.runtime.settings import Settings

_clients: Clients | None = None
_settings: Settings | None = None

#: Seconds kept back from the function's remaining time: the retry budget ends this long before
#: Lambda would kill the invocation. The budget only bounds the retry loop's sleeps, so the margin
#: must hold the longest single call that may start just before the deadline (timeouts and
#: botocore's own attempts, :data:`rollback.runtime.aws.LAMBDA_LIMITS`), plus a second to raise.
SAFETY_MARGIN_SECONDS = LAMBDA_LIMITS.longest_call_seconds + 1.0


def _context() -> tuple[Clients, Settings]:
    global _clients, _settings
    if _settings is None:
        _settings = Settings.from_env()
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


def _retry(context: Any, policy: RetryPolicy) -> RetryPolicy:
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
    return handle_alarm(
        clients,
        settings,
        alarm,
        actor=_actor(context, "rollback"),
        retry=_retry(context, RetryPolicy()),
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
        retry=_retry(context, RetryPolicy(attempts=3, budget=None)),
    )


def on_drift(event: dict[str, Any] | None, context: Any = None) -> dict[str, Any]:
    """Score input drift of every deployed drift job (EventBridge schedule) and publish DriftScore.

    The jobs come from SSM under ``MLROLLBACK_DRIFT_PREFIX``
    (:func:`rollback.runtime.drift.run_drift_schedule`). Clients are made per run: it runs every
    15 minutes, so a warm container saves nothing worth the state.
    """
    # Imported here: the drift job (PSI, KS, capture parsing) would add ~20 ms to every cold start
    # of the rollback function, which shares this module and never scores drift.
    from rollback.runtime.drift import run_drift_schedule

    logs.configure()
    clients = make_clients(limits=DRIFT_LIMITS)
    return run_drift_schedule(s3=clients.s3, cloudwatch=clients.cloudwatch, ssm=clients.ssm)
