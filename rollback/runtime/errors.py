"""One exception hierarchy for the whole ``rollback`` package.

Each class has a distinct ``exit_code`` that the CLI turns into the process exit status, so
CI can branch on what went wrong. Standard library only: on the Lambda import path.
"""

from __future__ import annotations


class MLRollbackError(Exception):
    """Base of every error this package raises on purpose; the CLI prints its message."""

    exit_code: int = 1


class ConfigError(MLRollbackError):
    """Stack configuration is invalid; the message names the file, the key and what to do."""

    exit_code = 2


class NotFoundError(MLRollbackError):
    """A stack, endpoint, variant or record that was asked for does not exist."""

    exit_code = 3


class ConflictError(MLRollbackError):
    """Another operation is in progress on the same endpoint (e.g. the endpoint is Updating)."""

    exit_code = 4


class CredentialsError(MLRollbackError):
    """No AWS credentials could be found in the standard chain."""

    exit_code = 5


class EventError(MLRollbackError):
    """An incoming Lambda event is malformed or not for this stack; nothing was changed."""

    exit_code = 6


class RetryExhaustedError(MLRollbackError):
    """AWS kept refusing (throttling, endpoint busy) after bounded retries.

    Raised from a Lambda handler so Lambda retries the event twice, then sends it to the dead-letter queue.
    """

    exit_code = 7


class GateError(MLRollbackError):
    """A safety gate refused the operation (preflight, promotion, drill on production)."""

    exit_code = 8


class UnsafeOperationError(MLRollbackError):
    """The operation would drain all traffic or drain the stable variant."""

    exit_code = 9


class PredictionError(MLRollbackError):
    """A prediction failed on every variant tried and no fallback default was configured.

    Raised by :class:`rollback.client.SafePredictor`; ``__cause__`` is the last AWS error.
    """

    exit_code = 10


class DataError(MLRollbackError):
    """Captured or baseline data is malformed; the message names the S3 object, the line and the fix."""

    exit_code = 11


class SandboxError(MLRollbackError):
    """The local sandbox cannot do what was asked (e.g. a resource type it has no applier for).

    The message names the resource type, alarm or file involved and what to do about it.
    """

    exit_code = 12


class FollowUpError(MLRollbackError):
    """The drain itself was done and recorded, but a follow-up (quarantine record, notification) failed.

    The unfinished follow-ups are kept on the audit guard item; the next delivery of the same event
    (Lambda's retry of the failed invocation) or a retried command with the same idempotency key
    finishes them.
    """

    exit_code = 13


class Interrupted(MLRollbackError):
    """Ctrl-C (SIGINT) stopped a command; the message says what state it left (exit 130, as shells do)."""

    exit_code = 130
