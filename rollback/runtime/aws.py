"""One factory for the AWS clients the runtime and the CLI use.

Clients are created lazily, on first use, because each boto3 client costs milliseconds of
Lambda cold start and most invocations need only some of them (a duplicate alarm event needs
SageMaker and DynamoDB only). Region, credentials and endpoint come from boto3's own chain
(``AWS_PROFILE``, ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``), so the same code
works against AWS and the sandbox's moto server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SERVICES: tuple[str, ...] = ("sagemaker", "cloudwatch", "dynamodb", "ssm", "sns", "s3")

#: Adaptive client-side rate limiting plus a few quick retries for transient errors; the
#: runtime adds its own bounded backoff (rollback.runtime.retry) for conditions botocore does not
#: retry (an endpoint that is Updating).
_RETRY_MODE = "adaptive"


@dataclass(frozen=True)
class CallLimits:
    """How long one AWS call may take: connect and read timeouts, botocore attempts in total."""

    connect_timeout: float
    read_timeout: float
    max_attempts: int  # botocore's total_max_attempts: the first try included

    @property
    def longest_call_seconds(self) -> float:
        """Upper bound of one call with botocore's own retries (plus one second of its backoff each)."""
        return self.max_attempts * (self.connect_timeout + self.read_timeout + 1.0)


#: The CLI: patient, a person is waiting and can press Ctrl-C.
CLI_LIMITS = CallLimits(connect_timeout=5, read_timeout=20, max_attempts=4)

#: The Lambda functions: every call the runtime makes answers in well under a second, and the
#: invocation's retry budget must know the longest single call (handler.SAFETY_MARGIN_SECONDS),
#: so a hung connection costs seconds, not most of the function's timeout.
LAMBDA_LIMITS = CallLimits(connect_timeout=2, read_timeout=5, max_attempts=2)

#: The drift function: it reads capture files from S3 (large objects), once every 15 minutes,
#: with no other deadline than its own timeout.
DRIFT_LIMITS = CallLimits(connect_timeout=5, read_timeout=20, max_attempts=3)


class Clients:
    """The AWS clients of one caller, injected into every runtime function.

    Pass ready clients (``Clients(sagemaker=..., dynamodb=...)``) in tests; any client not given
    is made on first access by ``factory(service_name)``.
    """

    sagemaker: Any
    cloudwatch: Any
    dynamodb: Any
    ssm: Any
    sns: Any
    s3: Any

    def __init__(self, factory: Callable[[str], Any] | None = None, **clients: Any) -> None:
        unknown = set(clients) - set(SERVICES)
        if unknown:
            raise TypeError(f"unknown client(s) {sorted(unknown)}; expected some of {SERVICES}")
        self._factory = factory
        for name, client in clients.items():
            setattr(self, name, client)

    def __getattr__(self, name: str) -> Any:
        # Only reached when the attribute is not set yet: create, cache, return.
        if name not in SERVICES:
            raise AttributeError(name)
        if self._factory is None:
            raise AttributeError(f"no {name} client was given and no factory to make one")
        client = self._factory(name)
        setattr(self, name, client)
        return client


def make_clients(
    region: str | None = None, profile: str | None = None, limits: CallLimits = CLI_LIMITS
) -> Clients:
    """Clients for ``region`` (default: boto3's chain) with adaptive retries and ``limits``."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(profile_name=profile, region_name=region)
    config = Config(
        retries={"mode": _RETRY_MODE, "total_max_attempts": limits.max_attempts},
        connect_timeout=limits.connect_timeout,
        read_timeout=limits.read_timeout,
    )

    def factory(service: str) -> Any:
        return session.client(service, config=config)

    return Clients(factory=factory)
