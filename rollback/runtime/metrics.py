"""Batched publisher of the fast custom metrics (namespace ``MLRollback/Endpoints``).

The 10-second candidate alarms of the stack only see data if someone publishes per-variant
``Invocations``, ``Errors`` and ``Latency`` at 1-second resolution. The prediction client
(:mod:`rollback.client`), the sandbox traffic and the drift job all publish through this module, so
the metric shapes are defined once:

- ``Invocations`` (Count): ``StatisticValues`` with ``SampleCount = Sum = n`` per second, so both the
  ``Sum`` and ``SampleCount`` statistics count requests;
- ``Errors`` (Count): ``StatisticValues`` with ``SampleCount = n`` invocations and ``Sum = errors``,
  so ``Sum`` is the error count and ``Average`` the error rate of that second; published even when
  zero, so error-rate alarms have a denominator;
- ``Latency`` (Milliseconds): ``Values``/``Counts`` (at most 150 distinct values per datum, as
  CloudWatch allows), so percentile statistics such as p99 work;
- anything else (``Quality``, ``DriftScore``, A/B observations): ``Values``/``Counts`` with the unit
  given by the caller.

Two ways to use it:

- :class:`MetricsPublisher` is synchronous and deterministic: ``record_*`` only aggregates in memory
  (timestamps from the caller or from an injected clock), ``flush()`` sends. The sandbox uses it with
  its virtual clock and flushes when it wants.
- :class:`BackgroundPublisher` wraps one for request paths: ``record_invocation`` is a non-blocking
  put on a bounded queue (a full queue drops and counts, never blocks a prediction); a daemon thread
  aggregates and flushes every ``flush_interval`` seconds, and on :meth:`~BackgroundPublisher.close`
  or interpreter exit.

A failed ``PutMetricData`` is logged and counted in :attr:`MetricsPublisher.stats`, never raised to
the caller: metrics are best-effort, and alarms treat missing data as not breaching.

Standard library + boto3 only: the drift job imports this on the Lambda path.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import queue
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

from rollback.runtime.names import CUSTOM_METRIC_NAMESPACE

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
else:
    CloudWatchClient = Any

log = logging.getLogger(__name__)

#: CloudWatch limits for one PutMetricData call (API reference, PutMetricData).
MAX_DATUMS_PER_CALL: Final = 1000
MAX_REQUEST_BYTES: Final = 1_000_000
MAX_VALUES_PER_DATUM: Final = 150

INVOCATIONS: Final = "Invocations"
ERRORS: Final = "Errors"
LATENCY: Final = "Latency"
QUALITY: Final = "Quality"
DRIFT_SCORE: Final = "DriftScore"

#: Suffix of the companion metric that carries sums of squares of an observation metric, so a
#: Welch test can get a variance from CloudWatch, which has no variance statistic.
SQUARES_SUFFIX: Final = "SumOfSquares"

# A generous per-datum size estimate for the 1 MB request limit: the wire encoding differs between
# botocore versions (query string or CBOR), so the estimate is deliberately pessimistic.
_DATUM_OVERHEAD_BYTES: Final = 600
_BYTES_PER_VALUE: Final = 64

Timestamp = datetime | float | int | None


class MetricsSink(Protocol):
    """What the prediction client needs from a publisher (both publishers implement it)."""

    def record_invocation(
        self, endpoint: str, variant: str, latency_ms: float, error: bool, at: Timestamp = None
    ) -> None: ...


@dataclass
class PublishStats:
    """Counters a caller can read (and the benchmark prints) to see what happened to its metrics."""

    calls: int = 0
    datums_sent: int = 0
    failed_calls: int = 0
    datums_failed: int = 0
    dropped: int = 0  # records a full queue refused (BackgroundPublisher only)


@dataclass
class _InvocationBucket:
    count: int = 0
    errors: int = 0
    latencies: Counter[float] | None = None


def _epoch_second(at: Timestamp, clock: Callable[[], float]) -> int:
    """The whole UTC second a record belongs to (1-second resolution buckets)."""
    if at is None:
        return math.floor(clock())
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ValueError(f"metric timestamp {at!r} has no timezone; pass an aware UTC datetime")
        return math.floor(at.timestamp())
    return math.floor(float(at))


def _dimensions(endpoint: str, variant: str) -> list[dict[str, str]]:
    return [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]


def _value_datums(
    name: str, unit: str, endpoint: str, variant: str, second: int, values: Counter[float]
) -> list[dict[str, Any]]:
    """Values/Counts datums, split so that none carries more than 150 distinct values."""
    items = sorted(values.items())
    out = []
    for start in range(0, len(items), MAX_VALUES_PER_DATUM):
        chunk = items[start : start + MAX_VALUES_PER_DATUM]
        out.append(
            {
                "MetricName": name,
                "Dimensions": _dimensions(endpoint, variant),
                "Timestamp": datetime.fromtimestamp(second, tz=UTC),
                "Values": [v for v, _ in chunk],
                "Counts": [float(c) for _, c in chunk],
                "Unit": unit,
                "StorageResolution": 1,
            }
        )
    return out


def _estimate_bytes(datum: dict[str, Any]) -> int:
    return _DATUM_OVERHEAD_BYTES + _BYTES_PER_VALUE * len(datum.get("Values", ()))


def batch_datums(
    datums: Iterable[dict[str, Any]],
    max_datums: int = MAX_DATUMS_PER_CALL,
    max_bytes: int = MAX_REQUEST_BYTES,
) -> list[list[dict[str, Any]]]:
    """Split datums into PutMetricData-sized batches (count and estimated request size)."""
    if not 1 <= max_datums <= MAX_DATUMS_PER_CALL:
        raise ValueError(f"max_datums must be within 1..{MAX_DATUMS_PER_CALL}, got {max_datums}")
    batches: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for datum in datums:
        cost = _estimate_bytes(datum)
        if current and (len(current) >= max_datums or size + cost > max_bytes):
            batches.append(current)
            current, size = [], 0
        current.append(datum)
        size += cost
    if current:
        batches.append(current)
    return batches


class MetricsPublisher:
    """Aggregates per-second custom metrics in memory and sends them in batches on :meth:`flush`.

    Thread-safe. ``cloudwatch`` is a boto3 CloudWatch client (made by :func:`make_cloudwatch` when
    omitted); ``clock`` returns epoch seconds and stamps records recorded without ``at`` (the
    sandbox passes its virtual clock).
    """

    def __init__(
        self,
        cloudwatch: CloudWatchClient | None = None,
        *,
        namespace: str = CUSTOM_METRIC_NAMESPACE,
        clock: Callable[[], float] = time.time,
        max_datums_per_call: int = MAX_DATUMS_PER_CALL,
        latency_decimals: int = 1,
    ) -> None:
        if not 1 <= max_datums_per_call <= MAX_DATUMS_PER_CALL:
            raise ValueError(
                f"max_datums_per_call must be within 1..{MAX_DATUMS_PER_CALL}, got {max_datums_per_call}"
            )
        self._cloudwatch = cloudwatch
        self.namespace = namespace
        self._clock = clock
        self._max_datums = max_datums_per_call
        # Rounding latencies keeps the number of distinct values (hence datums) small under load.
        self._latency_decimals = latency_decimals
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._invocations: dict[tuple[str, str, int], _InvocationBucket] = {}
        self._values: dict[tuple[str, str, str, str, int], Counter[float]] = {}
        self.stats = PublishStats()

    @property
    def cloudwatch(self) -> CloudWatchClient:
        if self._cloudwatch is None:
            self._cloudwatch = make_cloudwatch()
        return self._cloudwatch

    def record_invocation(
        self, endpoint: str, variant: str, latency_ms: float, error: bool, at: Timestamp = None
    ) -> None:
        """Count one invocation of ``variant`` (its latency, and whether it failed)."""
        second = _epoch_second(at, self._clock)
        latency = round(float(latency_ms), self._latency_decimals)
        with self._lock:
            bucket = self._invocations.get((endpoint, variant, second))
            if bucket is None:
                bucket = self._invocations[(endpoint, variant, second)] = _InvocationBucket()
            bucket.count += 1
            bucket.errors += 1 if error else 0
            if math.isfinite(latency) and latency >= 0:
                if bucket.latencies is None:
                    bucket.latencies = Counter()
                bucket.latencies[latency] += 1

    def record_value(
        self,
        endpoint: str,
        variant: str,
        metric: str,
        value: float,
        unit: str = "None",
        at: Timestamp = None,
    ) -> None:
        """Record one observation of any other metric (``Quality``, ``DriftScore``, A/B metrics)."""
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"metric {metric} value must be finite (CloudWatch rejects NaN/Inf): {value}")
        second = _epoch_second(at, self._clock)
        with self._lock:
            key = (endpoint, variant, metric, unit, second)
            self._values.setdefault(key, Counter())[value] += 1

    def record_observation(
        self, endpoint: str, variant: str, metric: str, value: float, at: Timestamp = None
    ) -> None:
        """Record a continuous A/B observation and its square (``<metric>SumOfSquares``).

        CloudWatch returns SampleCount and Sum but no variance; the companion metric's Sum gives
        the sum of squares, from which :mod:`rollback.verdicts.ab` computes the sample variance.
        """
        self.record_value(endpoint, variant, metric, value, "None", at)
        self.record_value(endpoint, variant, metric + SQUARES_SUFFIX, float(value) ** 2, "None", at)

    def pending(self) -> int:
        """Number of (series, second) aggregates waiting for the next flush."""
        with self._lock:
            return len(self._invocations) + len(self._values)

    def _take_datums(self) -> list[dict[str, Any]]:
        with self._lock:
            invocations, self._invocations = self._invocations, {}
            values, self._values = self._values, {}
        datums: list[dict[str, Any]] = []
        for (endpoint, variant, second), bucket in sorted(invocations.items()):
            stamp = datetime.fromtimestamp(second, tz=UTC)
            dims = _dimensions(endpoint, variant)
            n, e = float(bucket.count), float(bucket.errors)
            datums.append(
                {
                    "MetricName": INVOCATIONS,
                    "Dimensions": dims,
                    "Timestamp": stamp,
                    "StatisticValues": {"SampleCount": n, "Sum": n, "Minimum": 1.0, "Maximum": 1.0},
                    "Unit": "Count",
                    "StorageResolution": 1,
                }
            )
            datums.append(
                {
                    "MetricName": ERRORS,
                    "Dimensions": dims,
                    "Timestamp": stamp,
                    "StatisticValues": {
                        "SampleCount": n,
                        "Sum": e,
                        "Minimum": 1.0 if e == n else 0.0,
                        "Maximum": 1.0 if e > 0 else 0.0,
                    },
                    "Unit": "Count",
                    "StorageResolution": 1,
                }
            )
            if bucket.latencies:
                datums.extend(
                    _value_datums(LATENCY, "Milliseconds", endpoint, variant, second, bucket.latencies)
                )
        for (endpoint, variant, metric, unit, second), counts in sorted(values.items()):
            datums.extend(_value_datums(metric, unit, endpoint, variant, second, counts))
        return datums

    def flush(self) -> PublishStats:
        """Send everything recorded so far; return the cumulative :attr:`stats`.

        Never raises for AWS errors: a failed batch is logged and counted in ``datums_failed``
        and dropped (re-sending late 1-second data would not help a 10-second alarm).
        """
        with self._flush_lock:
            datums = self._take_datums()
            for batch in batch_datums(datums, self._max_datums):
                try:
                    self.cloudwatch.put_metric_data(Namespace=self.namespace, MetricData=batch)
                except Exception as exc:  # any failure: publishing must never break the caller
                    self.stats.failed_calls += 1
                    self.stats.datums_failed += len(batch)
                    log.warning(
                        "PutMetricData to %s failed for %d datums (dropped): %s",
                        self.namespace,
                        len(batch),
                        exc,
                    )
                else:
                    self.stats.calls += 1
                    self.stats.datums_sent += len(batch)
            return self.stats


_STOP = object()


class BackgroundPublisher:
    """Publishes off the request path: bounded queue in, one daemon thread out to CloudWatch.

    ``record_invocation`` never blocks and never raises for a full queue (the record is dropped and
    counted in ``stats.dropped``). The thread flushes every ``flush_interval`` seconds; ``close()``
    (also registered with :mod:`atexit`) drains the queue and flushes once more.
    """

    def __init__(
        self,
        publisher: MetricsPublisher | None = None,
        *,
        max_queue: int = 10_000,
        flush_interval: float = 1.0,
        register_atexit: bool = True,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        if flush_interval <= 0:
            raise ValueError(f"flush_interval must be positive, got {flush_interval}")
        self.publisher = publisher if publisher is not None else MetricsPublisher()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._interval = flush_interval
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="mlrollback-metrics", daemon=True)
        self._thread.start()
        if register_atexit:
            ref = weakref.ref(self)
            self._atexit = lambda: (p := ref()) is not None and p.close()
            atexit.register(self._atexit)

    @property
    def stats(self) -> PublishStats:
        return self.publisher.stats

    def record_invocation(
        self, endpoint: str, variant: str, latency_ms: float, error: bool, at: Timestamp = None
    ) -> None:
        """Queue one invocation record; stamped now (wall clock) unless ``at`` is given."""
        if at is None:
            at = self.publisher._clock()
        self._put(("inv", endpoint, variant, latency_ms, error, at))

    def record_value(
        self, endpoint: str, variant: str, metric: str, value: float, unit: str = "None", at: Timestamp = None
    ) -> None:
        """Queue one observation of another metric (see :meth:`MetricsPublisher.record_value`)."""
        if at is None:
            at = self.publisher._clock()
        self._put(("val", endpoint, variant, metric, value, unit, at))

    def _put(self, item: tuple[Any, ...]) -> None:
        if self._closed:
            self.publisher.stats.dropped += 1
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.publisher.stats.dropped += 1

    def _handle(self, item: Any) -> bool:
        """Record one queued item into the publisher's aggregates; True for the stop marker."""
        if item is _STOP:
            return True
        try:
            if item[0] == "inv":
                self.publisher.record_invocation(*item[1:])
            else:
                self.publisher.record_value(*item[1:])
        except Exception as exc:  # a bad record must not kill the publishing thread
            self.publisher.stats.dropped += 1
            log.warning("dropping unpublishable metric record %r: %s", item, exc)
        return False

    def _drain(self) -> bool:
        """Move every queued record into the aggregates; True when the stop marker was seen."""
        stop = False
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return stop
            stop = self._handle(item) or stop

    def _run(self) -> None:
        next_flush = time.monotonic() + self._interval
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, next_flush - time.monotonic()))
            except queue.Empty:
                stop = False
            else:
                stop = self._handle(item)
            stop = self._drain() or stop
            if stop or time.monotonic() >= next_flush:
                self.publisher.flush()
                next_flush = time.monotonic() + self._interval
            if stop:
                return

    def flush(self) -> PublishStats:
        """Hand everything queued so far to CloudWatch now, from the calling thread."""
        self._drain()
        return self.publisher.flush()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread after a final drain and flush. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(queue.Full):  # the thread still stops at join's timeout
            self._queue.put(_STOP, timeout=timeout)
        self._thread.join(timeout)
        self._drain()
        self.publisher.flush()
        if getattr(self, "_atexit", None) is not None:
            atexit.unregister(self._atexit)

    def __enter__(self) -> BackgroundPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_cloudwatch(region: str | None = None) -> CloudWatchClient:
    """The one factory for the default CloudWatch client (standard AWS chain, AWS_ENDPOINT_URL)."""
    import boto3

    return boto3.client("cloudwatch", region_name=region)
