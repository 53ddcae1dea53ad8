"""One retry loop for every AWS call the runtime makes: bounded full-jitter backoff in one time budget.

Which errors are retried (throttling, transient service errors, a busy endpoint, a transaction
conflict) is decided here alone; sleeps go through :mod:`rollback.runtime.clock` so the sandbox
and the tests run them on virtual time. See docs/runtime.md (retry budget).

Standard library only: on the Lambda import path.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from rollback.runtime import clock
from rollback.runtime.errors import RetryExhaustedError
from rollback.runtime.logs import log

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


def is_retryable(exc: BaseException) -> bool:
    """Throttling, transient service errors, and "endpoint is being updated" validation errors."""
    code = error_code(exc)
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
                    f"{op} kept failing with {error_code(exc)} after {retry.attempts} attempts; "
                    "raising so Lambda retries the invocation (then the dead-letter queue keeps the event)"
                ) from exc
            try:
                retry.wait(op, attempt, error_code(exc))
            except RetryExhaustedError as spent:
                raise spent from exc
    raise AssertionError("unreachable")  # pragma: no cover
