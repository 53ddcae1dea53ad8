"""Safe predictions: what applications call instead of ``sagemaker-runtime`` InvokeEndpoint.

A bad canary's errors reach clients in every rollout tool we know of until the alarm fires and the
traffic is drained. :class:`SafePredictor` closes that gap on the client side:

1. it calls InvokeEndpoint as usual (SageMaker picks the variant by weight);
2. on a ModelError, a 5xx, or a timeout/connection failure from a variant other than ``stable`` it
   retries **once** on ``stable`` (``TargetVariant="stable"``), unless the call was marked
   non-idempotent or the deadline has passed;
3. if that fails too (or was not allowed) it returns an optional default (a constant or a callable),
   else raises :class:`~rollback.runtime.errors.PredictionError`;
4. every attempt is counted per variant in the fast custom metrics (``Invocations``, ``Errors``,
   ``Latency``; :mod:`rollback.runtime.metrics`) so the candidate alarms still see the candidate's errors
   that the failover hid from the caller.

Which variant answered comes from the ``x-Amzn-Invoked-Production-Variant`` response header
(``InvokedProductionVariant``); for errors, from the same header on the error response when
SageMaker sends it, otherwise the variant is recorded as ``unknown`` (and the retry on ``stable``
still happens, since the failing variant might have been the candidate).

Added latency is bounded: at most one extra call, started only while less than
``deadline_seconds`` have passed since the prediction began, and each call is bounded by the
runtime client's read timeout (:func:`make_runtime` sets one, ``attempt_timeout_seconds``, and
turns botocore's own retries off), so a hung variant costs a caller one timeout, not a hang.

The circuit breaker (:class:`BreakerPolicy`) stops paying even that: after
``failures_to_open`` failures of a variant other than ``stable`` within ``window_seconds``
(errors without a variant header count: SageMaker routed the call, and this framework's
variants are ``stable`` and ``candidate``), every prediction is pinned to ``stable``
(``TargetVariant``) for ``open_seconds``, then one weight-routed prediction probes again. While
pinned, the candidate keeps receiving the share of traffic it was seen to get, as *mirrored*
copies (``TargetVariant="candidate"``, idempotent calls only) sent off the caller's path, whose
answers nobody sees: its alarms keep their data (a starved alarm would see no errors and never
roll back) and callers pay nothing for them.

Standard library + boto3 only: applications import it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from rollback.runtime.errors import PredictionError
from rollback.runtime.metrics import BackgroundPublisher, MetricsPublisher, MetricsSink
from rollback.runtime.names import CANDIDATE, STABLE

if TYPE_CHECKING:
    from mypy_boto3_sagemaker_runtime import SageMakerRuntimeClient
else:
    SageMakerRuntimeClient = Any

log = logging.getLogger(__name__)

UNKNOWN_VARIANT: Final = "unknown"

#: Error codes worth one retry on stable: the variant (not the request) failed.
FAILOVER_ERROR_CODES: Final = frozenset(
    {
        "ModelError",
        "InternalFailure",
        "ServiceUnavailable",
        "InternalDependencyException",
        "ModelNotReadyException",
    }
)
_TRANSPORT_ERRORS: Final = (
    ReadTimeoutError,
    ConnectTimeoutError,
    ConnectionClosedError,
    EndpointConnectionError,
)
_VARIANT_HEADER: Final = "x-amzn-invoked-production-variant"  # botocore lower-cases header names

#: Pass as ``metrics`` to publish nowhere (tests, or an app that publishes its own metrics).
NO_METRICS: Final = None


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


#: ``metrics=DEFAULT`` makes a :class:`~rollback.runtime.metrics.BackgroundPublisher` with the default client.
DEFAULT: Final = _Default()
_NO_FALLBACK: Final = object()


@dataclass(frozen=True)
class BreakerPolicy:
    """When the client stops sending weight-routed predictions to the endpoint and pins ``stable``.

    Defaults: two candidate failures (or timeouts) within 5 s open it, about a second into a bad
    canary at a few requests per second; it stays open 30 s, then probes.
    """

    failures_to_open: int = 2
    window_seconds: float = 5.0
    open_seconds: float = 30.0
    mirror: bool = True

    def __post_init__(self) -> None:
        if self.failures_to_open < 1:
            raise ValueError(f"failures_to_open must be >= 1, got {self.failures_to_open}")
        if self.window_seconds <= 0 or self.open_seconds <= 0:
            raise ValueError("window_seconds and open_seconds must be positive")


#: ``breaker=NO_BREAKER`` keeps every prediction weight-routed (the failover still applies).
NO_BREAKER: Final = None


class _Breaker:
    """The breaker's state: recent non-stable failures, the routed share it saw, open when.

    Times are when an outcome was *known* (an attempt's end): a breaker cannot be open before the
    failure that opened it was seen, so a prediction that started earlier (another thread's, or
    the sandbox's, whose predictions are stamped with their own start times) is not pinned by it.
    """

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self.failures: list[float] = []
        self.open_since: float | None = None
        self.open_until: float | None = None
        self.opened = 0
        #: Weight-routed attempts of the last window: (time, answered by or failed on another variant).
        self.recent: deque[tuple[float, bool]] = deque()
        self.share = 0.0  # the off-stable share of routed attempts when the breaker opened

    def is_open(self, now: float) -> bool:
        return (
            self.open_until is not None
            and self.open_since is not None
            and self.open_since <= now < self.open_until
        )

    def half_open(self, now: float) -> bool:
        return self.open_until is not None and now >= self.open_until

    def saw_routed(self, variant: str, stable: str, now: float) -> None:
        self.recent.append((now, variant != stable))
        while self.recent and now - self.recent[0][0] >= self.policy.window_seconds:
            self.recent.popleft()

    def _share(self) -> float:
        """Off-stable share of the routed attempts since the first off-stable one in the window.

        Counting from there, not from the window's start: right after a release the window still
        holds seconds in which the candidate had no weight, which would understate its share.
        """
        flags = [elsewhere for _t, elsewhere in self.recent]
        if True not in flags:
            return 0.0
        since = flags[flags.index(True) :]
        return sum(since) / len(since)

    def failed(self, now: float) -> bool:
        """A non-stable failure known at ``now``; True when it opened (or re-opened) the breaker."""
        window = self.policy.window_seconds
        self.failures = [t for t in self.failures if abs(now - t) < window] + [now]
        needed = 1 if self.half_open(now) else self.policy.failures_to_open  # half-open: the probe failed
        if len(self.failures) < needed:
            return False
        if self.open_until is None or self.half_open(now):  # closed or probing: it opens now
            self.opened += 1
            self.share = self._share()
            self.open_since = now
        self.open_until = max(self.open_until or now, now + self.policy.open_seconds)
        self.failures = []
        return True

    def succeeded_off_stable(self, now: float) -> None:
        """A weight-routed success on another variant: a half-open breaker closes."""
        if self.half_open(now):
            self.open_since = self.open_until = None
            self.failures = []


def _background_runner() -> Callable[[Callable[[], None]], None]:
    """Run mirrored calls on one daemon thread, off every caller's path; drop them when it lags."""
    import queue

    pending: queue.Queue[Callable[[], None]] = queue.Queue(maxsize=256)

    def worker() -> None:
        while True:
            job = pending.get()
            try:
                job()
            except Exception as exc:  # a mirror must never fail anything
                log.debug("mirrored call failed: %s", exc)

    threading.Thread(target=worker, name="mlrollback-mirror", daemon=True).start()

    def submit(job: Callable[[], None]) -> None:
        try:
            pending.put_nowait(job)
        except queue.Full:
            log.debug("mirror queue full; mirrored call dropped")

    return submit


@dataclass(frozen=True)
class Attempt:
    """One InvokeEndpoint call made for a prediction."""

    target_variant: str | None  # the TargetVariant sent, None when SageMaker routed by weight
    variant: str  # who answered or failed, ``unknown`` when SageMaker did not say
    ok: bool
    latency_ms: float
    error_code: str | None = None


@dataclass(frozen=True)
class Prediction:
    """What :meth:`SafePredictor.predict` returns."""

    body: bytes
    content_type: str | None
    variant: str | None  # the variant that served the body; None when it came from the fallback
    failed_over: bool  # the first attempt failed and stable was tried
    from_fallback: bool
    attempts: tuple[Attempt, ...]
    latency_ms: float
    inference_id: str | None = None


@dataclass
class PredictorStats:
    """Counters over the predictor's lifetime (the sandbox drill reports them)."""

    predictions: int = 0
    first_attempt_failures: int = 0  # predictions that would have failed without the client
    failovers: int = 0  # retries sent to stable
    failover_successes: int = 0
    fallbacks: int = 0  # answered by the default
    failed: int = 0  # raised to the caller
    non_idempotent_not_retried: int = 0
    errors_by_variant: dict[str, int] = field(default_factory=dict)
    pinned: int = 0  # predictions the open breaker sent straight to stable
    breaker_opened: int = 0
    mirrored: int = 0  # copies sent to the candidate while pinned (answers seen by nobody)

    def as_dict(self) -> dict[str, Any]:
        return {
            "predictions": self.predictions,
            "predictions_failed": self.failed,
            "predictions_failed_without_failover": self.first_attempt_failures,
            "failovers": self.failovers,
            "failover_successes": self.failover_successes,
            "fallbacks": self.fallbacks,
            "non_idempotent_not_retried": self.non_idempotent_not_retried,
            "errors_by_variant": dict(self.errors_by_variant),
            "pinned": self.pinned,
            "breaker_opened": self.breaker_opened,
            "mirrored": self.mirrored,
        }


def make_runtime(
    region: str | None = None, *, read_timeout: float = 5.0, connect_timeout: float = 1.0
) -> SageMakerRuntimeClient:
    """The one factory for the default ``sagemaker-runtime`` client.

    Honours the standard AWS chain (``AWS_PROFILE``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``). Botocore
    retries are off: the predictor's single failover is the retry, so latency stays bounded.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        read_timeout=read_timeout,
        connect_timeout=connect_timeout,
        retries={"total_max_attempts": 1, "mode": "standard"},
    )
    return boto3.client("sagemaker-runtime", region_name=region, config=config)


def _variant_of_error(exc: Exception, target: str | None = None) -> str:
    """Who failed: the variant header, else the ``TargetVariant`` sent (SageMaker serves a targeted
    call only from that variant), else ``unknown`` (a weight-routed call: it cannot be known)."""
    if isinstance(exc, ClientError):
        headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}
        variant = headers.get(_VARIANT_HEADER)
        if variant:
            return str(variant)
    return target or UNKNOWN_VARIANT


def _error_code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__


def _is_variant_failure(exc: Exception) -> bool:
    """True for failures of the serving variant (retry elsewhere), False for bad requests."""
    if isinstance(exc, _TRANSPORT_ERRORS):
        return True
    if isinstance(exc, ClientError):
        if _error_code(exc) in FAILOVER_ERROR_CODES:
            return True
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return int(status) >= 500
    return False


class SafePredictor:
    """InvokeEndpoint with one failover to ``stable``, an optional default, and per-variant metrics.

    ``endpoint_name`` is the physical endpoint name (``rollback.runtime.names.endpoint_name``). ``runtime``
    is a ``sagemaker-runtime`` client (default: :func:`make_runtime`). ``metrics`` is a
    :class:`~rollback.runtime.metrics.MetricsSink` (``DEFAULT``: a background publisher with the default
    CloudWatch client; ``None``: no metrics). ``fallback`` is returned when no variant could answer:
    bytes/str, or a callable taking the request body. ``attempt_timeout_seconds`` (default half
    of ``deadline_seconds``) is the read timeout of the default runtime client; give an injected
    runtime the same. ``breaker`` (:class:`BreakerPolicy`, ``NO_BREAKER`` for none) pins
    predictions to ``stable`` after repeated failures elsewhere; ``background`` runs its mirrored
    calls (default: one daemon thread). Thread-safe: one instance per process is enough.
    """

    def __init__(
        self,
        endpoint_name: str,
        *,
        runtime: SageMakerRuntimeClient | None = None,
        metrics: MetricsSink | _Default | None = DEFAULT,
        fallback: Any = _NO_FALLBACK,
        deadline_seconds: float = 2.0,
        attempt_timeout_seconds: float | None = None,
        stable_variant: str = STABLE,
        auto_inference_id: bool = True,
        clock: Callable[[], float] = time.perf_counter,
        breaker: BreakerPolicy | None = BreakerPolicy(),
        mirror_variant: str = CANDIDATE,
        background: Callable[[Callable[[], None]], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not endpoint_name:
            raise ValueError("endpoint_name is required (the physical SageMaker endpoint name)")
        if deadline_seconds <= 0:
            raise ValueError(f"deadline_seconds must be positive, got {deadline_seconds}")
        if attempt_timeout_seconds is None:
            # Half the deadline: a hung first attempt still leaves time for the failover to stable.
            attempt_timeout_seconds = deadline_seconds / 2
        if not 0 < attempt_timeout_seconds < deadline_seconds:
            raise ValueError(
                f"attempt_timeout_seconds must be positive and below deadline_seconds ({deadline_seconds}), "
                f"got {attempt_timeout_seconds}: a hung first attempt must leave time for the failover"
            )
        self.endpoint_name = endpoint_name
        self.attempt_timeout_seconds = attempt_timeout_seconds
        self._runtime = runtime if runtime is not None else make_runtime(read_timeout=attempt_timeout_seconds)
        self._breaker = _Breaker(breaker) if breaker is not None else None
        self.mirror_variant = mirror_variant
        self._background = background
        self._rng = rng or random.Random()
        self._owns_metrics = isinstance(metrics, _Default)
        self.metrics: MetricsSink | None = (
            BackgroundPublisher(MetricsPublisher()) if isinstance(metrics, _Default) else metrics
        )
        self._fallback = fallback
        self.deadline_seconds = deadline_seconds
        self.stable_variant = stable_variant
        self._auto_inference_id = auto_inference_id
        self._clock = clock
        self._lock = threading.Lock()
        self.stats = PredictorStats()

    # -- public -----------------------------------------------------------------------------------

    def predict(
        self,
        body: bytes | str,
        *,
        content_type: str = "application/json",
        accept: str | None = None,
        idempotent: bool = True,
        target_variant: str | None = None,
        inference_id: str | None = None,
        custom_attributes: str | None = None,
    ) -> Prediction:
        """Get a prediction, failing over to ``stable`` and then to the fallback when needed.

        ``idempotent=False`` marks a call that must never be sent twice (it may have side
        effects in the model container): a failure then goes straight to the fallback.
        Raises :class:`~rollback.runtime.errors.PredictionError` when nothing could answer, and lets
        request errors (``ValidationError``: bad body, unknown endpoint) through unchanged.
        """
        payload = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        if inference_id is None and self._auto_inference_id:
            inference_id = uuid.uuid4().hex
        started = self._clock()
        attempts: list[Attempt] = []
        params: dict[str, Any] = {
            "EndpointName": self.endpoint_name,
            "Body": payload,
            "ContentType": content_type,
        }
        if accept:
            params["Accept"] = accept
        if inference_id:
            params["InferenceId"] = inference_id
        if custom_attributes:
            params["CustomAttributes"] = custom_attributes

        pinned = target_variant is None and self._pinned()
        first_target = self.stable_variant if pinned else target_variant
        if pinned:
            self._mirror(params, idempotent)
        try:
            first = self._attempt(params, first_target, attempts, raise_request_errors=True)
        except ClientError:
            with self._lock:
                self.stats.predictions += 1
                self.stats.failed += 1
            raise
        routed = first_target is None
        if isinstance(first, dict):
            with self._lock:
                self.stats.predictions += 1
                if routed:
                    self._breaker_saw(first["variant"], ok=True)
            return self._result(first, attempts, started, inference_id, failed_over=False)

        error = first
        failed_variant = attempts[-1].variant
        if routed:
            with self._lock:
                self._breaker_saw(failed_variant, ok=False)
        retry_allowed = (
            idempotent
            and first_target != self.stable_variant
            and failed_variant != self.stable_variant
            and (self._clock() - started) < self.deadline_seconds
        )
        with self._lock:
            self.stats.predictions += 1
            self.stats.first_attempt_failures += 1
            if not idempotent:
                self.stats.non_idempotent_not_retried += 1
        if retry_allowed:
            with self._lock:
                self.stats.failovers += 1
            second = self._attempt(params, self.stable_variant, attempts, raise_request_errors=False)
            if isinstance(second, dict):
                with self._lock:
                    self.stats.failover_successes += 1
                return self._result(second, attempts, started, inference_id, failed_over=True)
            error = second
        return self._fall_back(payload, error, attempts, started, inference_id, failed_over=retry_allowed)

    @property
    def breaker_open(self) -> bool:
        """True while predictions are pinned to ``stable``."""
        return self._breaker is not None and self._breaker.is_open(self._clock())

    def close(self) -> None:
        """Flush and stop the metrics publisher this predictor created (not an injected one)."""
        if self._owns_metrics and isinstance(self.metrics, BackgroundPublisher):
            self.metrics.close()

    def __enter__(self) -> SafePredictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------------

    def _pinned(self) -> bool:
        if self._breaker is None:
            return False
        with self._lock:
            pinned = self._breaker.is_open(self._clock())
            if pinned:
                self.stats.pinned += 1
            return pinned

    def _breaker_saw(self, variant: str, *, ok: bool) -> None:
        """Feed one weight-routed outcome to the breaker (called under the lock)."""
        breaker = self._breaker
        if breaker is None:
            return
        now = self._clock()
        breaker.saw_routed(variant, self.stable_variant, now)
        if variant == self.stable_variant:
            return
        if ok:
            breaker.succeeded_off_stable(now)
            return
        opened_before = breaker.opened
        if breaker.failed(now) and breaker.opened > opened_before:
            self.stats.breaker_opened += 1
            log.warning(
                "circuit breaker open for %s: %s failed %d times within %g s; pinning predictions "
                "to %s for %g s",
                self.endpoint_name,
                variant,
                breaker.policy.failures_to_open,
                breaker.policy.window_seconds,
                self.stable_variant,
                breaker.policy.open_seconds,
            )

    def _mirror(self, params: dict[str, Any], idempotent: bool) -> None:
        """While pinned: send the candidate its observed share as copies nobody waits for."""
        breaker = self._breaker
        if breaker is None or not breaker.policy.mirror or not idempotent:
            return
        if self._rng.random() >= breaker.share:
            return
        with self._lock:
            self.stats.mirrored += 1
        mirrored = dict(params, TargetVariant=self.mirror_variant)
        mirrored.pop("InferenceId", None)  # a copy must not be joined with the caller's answer

        def send() -> None:
            self._mirror_call(mirrored)

        if self._background is None:
            self._background = _background_runner()
        self._background(send)

    def _mirror_call(self, call: dict[str, Any]) -> None:
        """One mirrored call: recorded in the metrics (the candidate's alarms), seen by no caller."""
        t0 = self._clock()
        target = call["TargetVariant"]
        try:
            self._runtime.invoke_endpoint(**call)["Body"].read()
        except ClientError as exc:
            variant, failed = _variant_of_error(exc, target), exc
        except _TRANSPORT_ERRORS as exc:
            variant, failed = target, exc
        else:
            variant, failed = target, None
        latency_ms = (self._clock() - t0) * 1000.0
        now = self._clock()
        if failed is not None and self._breaker is not None:
            with self._lock:
                if self._breaker.is_open(now):  # still bad: stay pinned
                    self._breaker.open_until = now + self._breaker.policy.open_seconds
        if self.metrics is not None:
            try:
                self.metrics.record_invocation(self.endpoint_name, variant, latency_ms, failed is not None)
            except Exception as metrics_exc:  # metrics must never fail anything
                log.warning("could not record metrics for %s: %s", self.endpoint_name, metrics_exc)

    def _attempt(
        self,
        params: dict[str, Any],
        target: str | None,
        attempts: list[Attempt],
        *,
        raise_request_errors: bool,
    ) -> dict[str, Any] | Exception:
        """One call; returns the parsed response or the variant failure (request errors may raise)."""
        call = dict(params)
        if target:
            call["TargetVariant"] = target
        t0 = self._clock()
        try:
            response = self._runtime.invoke_endpoint(**call)
            data = response["Body"].read()
        except ClientError as exc:
            self._record(attempts, target, _variant_of_error(exc, target), t0, exc)
            if raise_request_errors and not _is_variant_failure(exc):
                raise
            return exc
        except _TRANSPORT_ERRORS as exc:
            self._record(attempts, target, target or UNKNOWN_VARIANT, t0, exc)
            return exc
        variant = response.get("InvokedProductionVariant") or target or UNKNOWN_VARIANT
        self._record(attempts, target, variant, t0, None)
        return {"body": data, "content_type": response.get("ContentType"), "variant": variant}

    def _record(
        self, attempts: list[Attempt], target: str | None, variant: str, t0: float, exc: Exception | None
    ) -> None:
        latency_ms = (self._clock() - t0) * 1000.0
        code = _error_code(exc) if exc is not None else None
        attempts.append(Attempt(target, variant, exc is None, latency_ms, code))
        if exc is not None:
            with self._lock:
                self.stats.errors_by_variant[variant] = self.stats.errors_by_variant.get(variant, 0) + 1
            log.info("InvokeEndpoint %s on variant %s failed: %s", self.endpoint_name, variant, code)
        if self.metrics is not None:
            try:
                self.metrics.record_invocation(self.endpoint_name, variant, latency_ms, exc is not None)
            except Exception as metrics_exc:  # metrics must never fail a prediction
                log.warning("could not record metrics for %s: %s", self.endpoint_name, metrics_exc)

    def _result(
        self,
        ok: dict[str, Any],
        attempts: list[Attempt],
        started: float,
        inference_id: str | None,
        *,
        failed_over: bool,
    ) -> Prediction:
        return Prediction(
            body=ok["body"],
            content_type=ok["content_type"],
            variant=ok["variant"],
            failed_over=failed_over,
            from_fallback=False,
            attempts=tuple(attempts),
            latency_ms=(self._clock() - started) * 1000.0,
            inference_id=inference_id,
        )

    def _fall_back(
        self,
        payload: bytes,
        error: Exception,
        attempts: list[Attempt],
        started: float,
        inference_id: str | None,
        *,
        failed_over: bool,
    ) -> Prediction:
        tried = ", ".join(f"{a.variant}: {a.error_code}" for a in attempts)
        if self._fallback is _NO_FALLBACK:
            with self._lock:
                self.stats.failed += 1
            raise PredictionError(
                f"prediction on endpoint {self.endpoint_name} failed ({tried}) and no fallback is "
                "configured; pass fallback= to SafePredictor to return a default instead"
            ) from error
        try:
            value = self._fallback(payload) if callable(self._fallback) else self._fallback
        except Exception as exc:
            with self._lock:
                self.stats.failed += 1
            raise PredictionError(
                f"prediction on endpoint {self.endpoint_name} failed ({tried}) and the fallback raised: {exc}"
            ) from exc
        body = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        with self._lock:
            self.stats.fallbacks += 1
        return Prediction(
            body=body,
            content_type=None,
            variant=None,
            failed_over=failed_over,
            from_fallback=True,
            attempts=tuple(attempts),
            latency_ms=(self._clock() - started) * 1000.0,
            inference_id=inference_id,
        )
