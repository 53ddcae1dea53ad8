"""Simulated models behind the endpoint, weighted routing, and the metrics AWS would publish.

:class:`SimulatedCloud` is what stands behind ``InvokeEndpoint`` in the sandbox (moto_patches
routes the HTTP API here too): it reads the endpoint's live variant weights from the emulator,
picks a variant by weight (or the ``TargetVariant``), and asks that variant's
:class:`ModelBehaviour` whether the prediction fails and how long it takes. Each prediction is
recorded as the built-in ``AWS/SageMaker`` per-variant metrics (``Invocations``,
``Invocation5XXErrors``, ``ModelLatency`` in microseconds), aggregated per minute and written into
the emulator's CloudWatch once the minute is over, as SageMaker itself publishes them.

The fast custom metrics (``MLRollback/Endpoints``) are the client's job, as in production: the
drill sends its predictions through :class:`rollback.client.SafePredictor`, whose
:class:`~rollback.runtime.metrics.MetricsPublisher` (on the virtual clock) counts every attempt per
variant. :class:`SandboxRuntime` is the ``sagemaker-runtime`` client the drill gives it: most calls
are served by :meth:`SimulatedCloud.route` in-process (thousands per drill), the ones marked
:meth:`~SandboxRuntime.use_http_once` go through the real InvokeEndpoint HTTP API of the
emulator; both answer with the same shapes (``InvokedProductionVariant``, and on failure a
``ModelError`` whose ``x-Amzn-Invoked-Production-Variant`` header names the failing variant).
The background sandbox (:mod:`~rollback.sandbox.daemon`) is called by plain boto3 clients that
publish nothing, so there the cloud is given a publisher and counts the custom metrics itself.
"""

from __future__ import annotations

import io
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError, ReadTimeoutError

from rollback.runtime.metrics import MetricsPublisher
from rollback.sandbox.emulator import FAKE_CREDENTIALS, Emulator
from rollback.sandbox.moto_patches import InvokeOutcome, settle

BUILTIN_NAMESPACE = "AWS/SageMaker"


@dataclass
class ModelBehaviour:
    """How a simulated variant answers: share of 5xx errors and latency (median, jitter) in ms."""

    error_rate: float = 0.0
    latency_ms: float = 40.0
    jitter_ms: float = 10.0
    #: The next this-many requests fail slowly (``blip_latency_ms``) whatever ``error_rate`` says.
    blips: int = 0
    blip_latency_ms: float = 1500.0
    #: False: errors come back without the variant header (a proxy stripped it, say).
    error_header: bool = True


@dataclass
class _Minute:
    count: int = 0
    errors: int = 0
    latencies_us: Counter[float] = field(default_factory=Counter)


class SimulatedCloud:
    """Routes predictions by live weight to simulated variants and records their metrics.

    ``publisher`` (default none) also counts the custom metrics of every prediction; only for
    callers that do not publish their own (the background sandbox's plain boto3 callers).
    """

    def __init__(
        self,
        emulator: Emulator,
        now: Callable[[], datetime],
        seed: int = 7,
        publisher: MetricsPublisher | None = None,
        builtin_lag_seconds: float = 0.0,
    ) -> None:
        self._emu = emulator
        #: Timing model: seconds after its minute ends before SageMaker's per-minute datum is published.
        self.builtin_lag_seconds = builtin_lag_seconds
        self._now = now
        self.rng = random.Random(seed)
        self.behaviours: dict[tuple[str, str], ModelBehaviour] = {}
        self.publisher = publisher
        self._minutes: dict[tuple[str, str, int], _Minute] = {}
        #: The outcome of the latest routed prediction (the HTTP path reads its simulated latency).
        self.last_outcome: InvokeOutcome | None = None

    def behave(self, endpoint: str, variant: str, behaviour: ModelBehaviour) -> None:
        """Set how ``variant`` of ``endpoint`` answers from now on."""
        self.behaviours[(endpoint, variant)] = behaviour

    def weights(self, endpoint: str) -> dict[str, float]:
        """Live variant weights (``CurrentWeight``) of ``endpoint`` in the emulator."""
        backend = self._emu.backend("sagemaker")
        ep = backend.endpoints.get(endpoint)
        if ep is None:
            raise LookupError(f"Endpoint {endpoint} of account {self._emu.arn('sagemaker', '')} not found.")
        settle(ep)  # an Updating window that has passed is applied before routing by it
        return {v["VariantName"]: float(v.get("CurrentWeight", 0.0)) for v in ep.production_variants}

    def route(self, endpoint: str, target_variant: str | None = None, body: bytes = b"") -> InvokeOutcome:
        """Serve one prediction: pick a variant, simulate it, record metrics, return the outcome."""
        weights = self.weights(endpoint)
        if target_variant:
            if target_variant not in weights:
                raise LookupError(f"Variant {target_variant} not found on endpoint {endpoint}.")
            variant = target_variant
        else:
            total = sum(weights.values())
            if total <= 0:
                raise LookupError(f"Endpoint {endpoint} has no variant with a positive weight.")
            pick = self.rng.random() * total
            variant = next(iter(weights))
            for name, weight in weights.items():
                if pick < weight:
                    variant = name
                    break
                pick -= weight
        behaviour = self.behaviours.get((endpoint, variant), ModelBehaviour())
        ok = self.rng.random() >= behaviour.error_rate
        latency = max(1.0, self.rng.gauss(behaviour.latency_ms, behaviour.jitter_ms))
        if behaviour.blips > 0:
            behaviour.blips -= 1
            ok, latency = False, behaviour.blip_latency_ms
        self.record(endpoint, variant, latency, ok)
        body_out = '{"score": 0.12}' if ok else "model server error"
        self.last_outcome = InvokeOutcome(
            variant=variant, ok=ok, latency_ms=latency, body=body_out, header=behaviour.error_header
        )
        return self.last_outcome

    def record(self, endpoint: str, variant: str, latency_ms: float, ok: bool) -> None:
        """Record one invocation in the built-in metrics (and the custom ones, given a publisher)."""
        now = self._now()
        if self.publisher is not None:
            self.publisher.record_invocation(endpoint, variant, latency_ms, not ok, at=now)
        minute = int(now.timestamp() // 60) * 60
        bucket = self._minutes.setdefault((endpoint, variant, minute), _Minute())
        bucket.count += 1
        bucket.errors += 0 if ok else 1
        bucket.latencies_us[round(latency_ms) * 1000.0] += 1

    def flush(self) -> None:
        """Publish the built-in metrics of finished minutes (and the custom ones, given a publisher)."""
        if self.publisher is not None:
            self.publisher.flush()
        now = self._now().timestamp()
        done = sorted(k for k in self._minutes if k[2] + 60 + self.builtin_lag_seconds <= now)
        if not done:
            return
        data: list[dict[str, Any]] = []
        for key in done:
            endpoint, variant, minute = key
            bucket = self._minutes.pop(key)
            stamp = datetime.fromtimestamp(minute, tz=UTC)
            dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
            base = {"Dimensions": dims, "Timestamp": stamp}
            data.append({**base, "MetricName": "Invocations", "Value": float(bucket.count), "Unit": "None"})
            data.append(
                {**base, "MetricName": "Invocation5XXErrors", "Value": float(bucket.errors), "Unit": "None"}
            )
            data.append({**base, "MetricName": "Invocation4XXErrors", "Value": 0.0, "Unit": "None"})
            values = sorted(bucket.latencies_us)
            data.append(
                {
                    **base,
                    "MetricName": "ModelLatency",
                    "Values": values,
                    "Counts": [float(bucket.latencies_us[v]) for v in values],
                    "Unit": "Microseconds",
                }
            )
        # SageMaker publishes these itself (an AWS/ namespace a client could not write to).
        self._emu.backend("cloudwatch").put_metric_data(BUILTIN_NAMESPACE, data)


class SimulatedTime:
    """The prediction client's clock in the drill: set to each prediction's start, moved by latencies.

    :class:`~rollback.client.SafePredictor` measures attempt latency, its failover deadline and its
    breaker's window with its ``clock``; given this one, it sees each variant's simulated latency
    (the slow bad canary is slow to it too). The drill sets ``seconds`` to each prediction's own
    start on the virtual time line (spread over the second), so callers are concurrent: one hung
    call does not delay the next caller, and a failure is known to the breaker only from the
    moment its attempt ended.
    """

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds

    def spend(self, latency_ms: float) -> None:
        """One call took ``latency_ms`` of simulated time."""
        self.seconds += latency_ms / 1000.0

    def background(self, job: Callable[[], None]) -> None:
        """Run ``job`` as if on another thread: the time it spends is not the caller's."""
        saved = self.seconds
        try:
            job()
        finally:
            self.seconds = saved


class SandboxRuntime:
    """A ``sagemaker-runtime`` client for :class:`~rollback.client.SafePredictor` in the drill.

    ``invoke_endpoint`` answers like botocore does: a response dict with a readable ``Body`` and
    ``InvokedProductionVariant``, or a modeled ``ModelError`` (HTTP 424) carrying the failing
    variant in the ``x-amzn-invoked-production-variant`` header, or a ``ValidationError`` for an
    unknown endpoint/variant. In-process by default (speed); after :meth:`use_http_once`, the next
    call goes through the emulator's real HTTP API (same router behind it, see moto_patches).
    """

    def __init__(
        self, emulator: Emulator, cloud: SimulatedCloud, time: SimulatedTime, read_timeout: float = 60.0
    ) -> None:
        import boto3

        self._cloud = cloud
        self._time = time
        #: botocore's read timeout: a variant slower than this raises ReadTimeoutError after it.
        self.read_timeout = read_timeout
        self._url = emulator.endpoint_url
        # No botocore retries: the predictor's single failover is the only retry, as make_runtime sets.
        self._http = boto3.client(
            "sagemaker-runtime",
            region_name=emulator.region,
            endpoint_url=emulator.endpoint_url,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
        )
        self.exceptions = self._http.exceptions
        self._http_next = False
        self.http_calls = 0
        self.local_calls = 0

    def use_http_once(self) -> None:
        """Send the next call through the real InvokeEndpoint HTTP API."""
        self._http_next = True

    def invoke_endpoint(self, **params: Any) -> dict[str, Any]:
        """InvokeEndpoint (``EndpointName``, ``Body``, optional ``TargetVariant``; the rest ignored)."""
        if self._http_next:
            self._http_next = False
            self.http_calls += 1
            self._cloud.last_outcome = None
            try:
                response = dict(self._http.invoke_endpoint(**params))
            except ClientError:
                self._timed_out(self._cloud.last_outcome)
                raise
            self._timed_out(self._cloud.last_outcome)
            return response
        self.local_calls += 1
        endpoint = str(params["EndpointName"])
        try:
            outcome = self._cloud.route(endpoint, params.get("TargetVariant"), bytes(params.get("Body", b"")))
        except LookupError as exc:
            raise self._error("ValidationError", str(exc), 400, {}) from None
        self._timed_out(outcome)
        header = (
            {"x-amzn-invoked-production-variant": outcome.variant} if outcome.ok or outcome.header else {}
        )
        if not outcome.ok:
            raise self._error(
                "ModelError",
                f'Received server error (500) from primary with message "{outcome.body}"',
                424,
                header,
            )
        return {
            "Body": io.BytesIO(outcome.body.encode()),
            "ContentType": "application/json",
            "InvokedProductionVariant": outcome.variant,
            "ResponseMetadata": {"HTTPStatusCode": 200, "HTTPHeaders": header},
        }

    def _timed_out(self, outcome: InvokeOutcome | None) -> None:
        """Spend the call's simulated latency, or raise ReadTimeoutError once the read timeout passes."""
        if outcome is None:
            return
        if outcome.latency_ms > self.read_timeout * 1000.0:
            self._time.spend(self.read_timeout * 1000.0)
            raise ReadTimeoutError(endpoint_url=self._url)
        self._time.spend(outcome.latency_ms)

    def _error(self, code: str, message: str, status: int, headers: dict[str, str]) -> Exception:
        response: dict[str, Any] = {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {
                "HTTPStatusCode": status,
                "HTTPHeaders": {**headers, "x-amzn-errortype": code},
            },
        }
        cls = getattr(self._http.exceptions, code, None) or self._http.exceptions.ClientError
        return cls(response, "InvokeEndpoint")  # type: ignore[no-any-return]
