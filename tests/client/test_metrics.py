from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from rollback.runtime import metrics
from rollback.runtime.metrics import BackgroundPublisher, MetricsPublisher, batch_datums

T0 = 1_790_000_000.0  # a fixed epoch second, so buckets are deterministic


def _sum(cloudwatch: Any, name: str, variant: str, stat: str = "Sum", endpoint: str = "ep-dev") -> float:
    start = datetime.fromtimestamp(T0, tz=UTC) - timedelta(minutes=5)
    result = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "m",
                "MetricStat": {
                    "Metric": {
                        "Namespace": metrics.CUSTOM_METRIC_NAMESPACE,
                        "MetricName": name,
                        "Dimensions": [
                            {"Name": "EndpointName", "Value": endpoint},
                            {"Name": "VariantName", "Value": variant},
                        ],
                    },
                    "Period": 3600,
                    "Stat": stat,
                },
            }
        ],
        StartTime=start,
        EndTime=start + timedelta(hours=1),
    )
    return sum(result["MetricDataResults"][0]["Values"])


def test_invocations_errors_and_latency_reach_cloudwatch_per_variant(cloudwatch: Any) -> None:
    pub = MetricsPublisher(cloudwatch, clock=lambda: T0)
    for i in range(10):
        pub.record_invocation("ep-dev", "candidate", latency_ms=20 + i, error=i < 3)
    pub.record_invocation("ep-dev", "stable", latency_ms=5, error=False)
    stats = pub.flush()

    assert stats.failed_calls == 0 and stats.calls == 1
    assert _sum(cloudwatch, "Invocations", "candidate") == 10
    assert _sum(cloudwatch, "Errors", "candidate") == 3
    assert _sum(cloudwatch, "Errors", "stable") == 0  # zero errors are published, not omitted
    assert _sum(cloudwatch, "Latency", "candidate", "SampleCount") == 10
    assert _sum(cloudwatch, "Latency", "candidate", "Maximum") == 29


def test_datums_are_one_second_resolution_and_bucketed_by_second(put_calls: list, cloudwatch: Any) -> None:
    pub = MetricsPublisher(cloudwatch)
    pub.record_invocation("ep-dev", "candidate", 10, False, at=T0 + 0.2)
    pub.record_invocation("ep-dev", "candidate", 10, True, at=T0 + 0.9)
    pub.record_invocation("ep-dev", "candidate", 10, False, at=datetime.fromtimestamp(T0 + 1.1, tz=UTC))
    pub.flush()

    datums = [d for batch in put_calls for d in batch]
    assert all(d["StorageResolution"] == 1 for d in datums)
    invocations = sorted(
        (d["Timestamp"], d["StatisticValues"]["Sum"]) for d in datums if d["MetricName"] == "Invocations"
    )
    assert [n for _, n in invocations] == [2, 1]
    assert invocations[1][0] - invocations[0][0] == timedelta(seconds=1)
    errors = [d for d in datums if d["MetricName"] == "Errors"]
    first = min(errors, key=lambda d: d["Timestamp"])["StatisticValues"]
    assert first == {"SampleCount": 2.0, "Sum": 1.0, "Minimum": 0.0, "Maximum": 1.0}


def test_flush_splits_into_calls_of_at_most_1000_metrics(put_calls: list, cloudwatch: Any) -> None:
    pub = MetricsPublisher(cloudwatch, clock=lambda: T0)
    for i in range(1200):  # 1200 series x (Invocations, Errors, Latency) = 3600 datums
        pub.record_invocation(f"ep-{i}", "stable", 12.5, False)
    stats = pub.flush()

    assert [len(c) for c in put_calls] == [1000, 1000, 1000, 600]
    assert stats.datums_sent == 3600 and stats.calls == 4
    assert pub.pending() == 0


def test_more_than_150_distinct_latencies_in_a_second_are_split_across_datums(
    put_calls: list, cloudwatch: Any
) -> None:
    pub = MetricsPublisher(cloudwatch, clock=lambda: T0)
    for i in range(400):
        pub.record_invocation("ep-dev", "candidate", latency_ms=i, error=False)
    pub.flush()

    latency = [d for batch in put_calls for d in batch if d["MetricName"] == "Latency"]
    assert [len(d["Values"]) for d in latency] == [150, 150, 100]
    assert sum(sum(d["Counts"]) for d in latency) == 400
    assert _sum(cloudwatch, "Latency", "candidate", "SampleCount") == 400


def test_batches_also_respect_the_request_size_limit() -> None:
    datum = {"MetricName": "Latency", "Values": list(range(150)), "Counts": [1.0] * 150}
    batches = batch_datums([datum] * 300)
    per_datum = 600 + 64 * 150
    assert all(len(b) * per_datum <= metrics.MAX_REQUEST_BYTES for b in batches)
    assert sum(len(b) for b in batches) == 300
    with pytest.raises(ValueError, match="max_datums"):
        batch_datums([datum], max_datums=1001)


def test_publishing_failure_is_counted_not_raised() -> None:
    cw = boto3.client("cloudwatch", region_name="eu-west-1")
    with Stubber(cw) as stub:
        stub.add_client_error("put_metric_data", "Throttling", "Rate exceeded", 400)
        pub = MetricsPublisher(cw, clock=lambda: T0)
        pub.record_invocation("ep-dev", "candidate", 10, False)
        stats = pub.flush()
    assert stats.failed_calls == 1 and stats.datums_failed == 3 and stats.datums_sent == 0
    assert pub.pending() == 0


def test_quality_and_drift_values_are_published_with_their_unit(put_calls: list, cloudwatch: Any) -> None:
    pub = MetricsPublisher(cloudwatch, clock=lambda: T0)
    pub.record_value("ep-dev", "candidate", "DriftScore", 0.31)
    pub.record_observation("ep-dev", "candidate", "Revenue", 3.0)
    pub.flush()

    datums = {d["MetricName"]: d for batch in put_calls for d in batch}
    assert datums["DriftScore"]["Values"] == [0.31] and datums["DriftScore"]["Unit"] == "None"
    assert datums["RevenueSumOfSquares"]["Values"] == [9.0]
    with pytest.raises(ValueError, match="finite"):
        pub.record_value("ep-dev", "candidate", "Quality", float("nan"))


def test_naive_timestamps_are_refused_with_a_clear_error(cloudwatch: Any) -> None:
    pub = MetricsPublisher(cloudwatch)
    with pytest.raises(ValueError, match="timezone"):
        pub.record_invocation("ep-dev", "stable", 1, False, at=datetime(2026, 1, 1))


def test_background_publisher_flushes_on_close(cloudwatch: Any) -> None:
    bg = BackgroundPublisher(MetricsPublisher(cloudwatch, clock=lambda: T0), flush_interval=60)
    for _ in range(25):
        bg.record_invocation("ep-dev", "candidate", 8, False)
    bg.close()

    assert bg.stats.datums_sent == 3
    assert _sum(cloudwatch, "Invocations", "candidate") == 25
    bg.record_invocation("ep-dev", "candidate", 8, False)  # after close: dropped, not raised
    assert bg.stats.dropped == 1


def test_background_publisher_flushes_periodically_without_close(cloudwatch: Any) -> None:
    bg = BackgroundPublisher(MetricsPublisher(cloudwatch, clock=lambda: T0), flush_interval=0.05)
    try:
        bg.record_invocation("ep-dev", "stable", 3, False)
        deadline = time.monotonic() + 5
        while bg.stats.datums_sent == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bg.stats.datums_sent == 3  # Invocations, Errors and Latency of one second
    finally:
        bg.close()


def test_full_queue_drops_and_counts_instead_of_blocking() -> None:
    class SlowCloudWatch:
        def put_metric_data(self, **_: Any) -> None:
            time.sleep(0.2)

    bg = BackgroundPublisher(MetricsPublisher(SlowCloudWatch()), max_queue=5, flush_interval=0.01)
    try:
        started = time.perf_counter()
        for _ in range(500):
            bg.record_invocation("ep-dev", "stable", 3, False)
        # Blocking on the full queue would wait out ~0.2 s per flush for ~100 s; a loaded CI
        # machine still records 500 in well under 5 s when nothing blocks.
        assert time.perf_counter() - started < 5
        assert bg.stats.dropped > 0
    finally:
        bg.close()
