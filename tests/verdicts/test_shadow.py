from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rollback.runtime.capture import capture_line, write_capture_file
from rollback.verdicts.shadow import (
    ShadowThresholds,
    VariantHealth,
    compare_captures,
    evaluate_shadow,
    outputs_agree,
)
from tests.verdicts.conftest import CAPTURE_URI

ENDPOINT = "fraud-scorer-dev"
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def _write_traffic(
    s3: Any, n: int, *, shadow_share: float, disagree_every: int = 0, noise: float = 0.0, seed: int = 1
) -> None:
    """Production captures for n requests; the sampled share also reaches the shadow variant."""
    rng = random.Random(seed)
    prod, shadow = [], []
    for i in range(n):
        at = T0 + timedelta(seconds=10 * i)
        features = [rng.random(), rng.random()]
        score = round(sum(features) / 2, 6)
        common = {
            "event_id": f"evt-{i}",
            "inference_id": f"req-{i}",
            "inference_time": at,
            "input_data": features,
        }
        prod.append(capture_line(**common, output_data={"score": score, "label": [1, 0]}))
        if rng.random() < shadow_share:
            shadow_score = score * (1 + noise)
            if disagree_every and i % disagree_every == 0:
                shadow_score = 1 - score
            # the shadow's own capture has its own eventId; the inferenceId is what pairs them
            twin = common | {"event_id": f"shadow-evt-{i}"}
            shadow.append(capture_line(**twin, output_data={"score": shadow_score, "label": [1, 0]}))
    write_capture_file(s3, CAPTURE_URI, ENDPOINT, "stable", T0, prod, "prod")
    write_capture_file(s3, CAPTURE_URI, ENDPOINT, "shadow", T0, shadow, "shadow")


def _put_health(cloudwatch: Any, variant: str, invocations: int, errors: int, latency_us: float) -> None:
    dims = [{"Name": "EndpointName", "Value": ENDPOINT}, {"Name": "VariantName", "Value": variant}]
    at = T0 + timedelta(minutes=5)
    cloudwatch.put_metric_data(
        Namespace="AWS/SageMaker",
        MetricData=[
            {"MetricName": "Invocations", "Dimensions": dims, "Timestamp": at, "Value": invocations},
            {"MetricName": "Invocation5XXErrors", "Dimensions": dims, "Timestamp": at, "Value": errors},
            {"MetricName": "ModelLatency", "Dimensions": dims, "Timestamp": at, "Value": latency_us},
        ],
    )


def test_agreeing_shadow_passes_within_tolerance_but_not_exactly(s3: Any, cloudwatch: Any) -> None:
    _write_traffic(s3, 300, shadow_share=0.6, noise=0.001)
    _put_health(cloudwatch, "stable", 300, 1, 20_000)
    _put_health(cloudwatch, "shadow", 180, 1, 21_000)

    report = evaluate_shadow(
        s3, cloudwatch, capture_uri=CAPTURE_URI, endpoint=ENDPOINT, since=T0, until=T0 + timedelta(hours=1)
    )

    assert report.verdict == "pass" and report.passed
    assert report.pairs > 150 and report.unpaired_production == 300 - report.pairs
    assert report.unpaired_shadow == 0
    assert report.tolerant_agreement == 1.0 and report.exact_agreement is not None
    assert report.exact_agreement < 0.1  # scores moved by 0.1 %: equal within tolerance only
    assert report.shadow_health is not None and report.shadow_health.latency_mean_ms == pytest.approx(21.0)
    assert report.to_dict()["passed"] is True


def test_disagreeing_shadow_fails_with_examples(s3: Any) -> None:
    _write_traffic(s3, 300, shadow_share=1.0, disagree_every=5)
    report = evaluate_shadow(
        s3, None, capture_uri=CAPTURE_URI, endpoint=ENDPOINT, since=T0, until=T0 + timedelta(hours=1)
    )
    assert report.verdict == "fail"
    assert report.tolerant_agreement == pytest.approx(0.8, abs=0.01)
    assert any("agreement 80.0%" in r for r in report.reasons)
    assert len(report.disagreements) == 5 and report.disagreements[0]["id"].startswith("req-")


def test_too_few_pairs_is_insufficient_data_not_a_pass(s3: Any) -> None:
    _write_traffic(s3, 50, shadow_share=1.0)
    report = evaluate_shadow(
        s3, None, capture_uri=CAPTURE_URI, endpoint=ENDPOINT, since=T0, until=T0 + timedelta(hours=1)
    )
    assert report.verdict == "insufficient-data" and not report.passed
    assert "only 50 paired requests, need 100" in report.reasons[0]


def test_more_shadow_errors_or_slower_shadow_fails(s3: Any, cloudwatch: Any) -> None:
    _write_traffic(s3, 200, shadow_share=1.0)
    _put_health(cloudwatch, "stable", 200, 0, 20_000)
    _put_health(cloudwatch, "shadow", 200, 10, 40_000)
    report = evaluate_shadow(
        s3, cloudwatch, capture_uri=CAPTURE_URI, endpoint=ENDPOINT, since=T0, until=T0 + timedelta(hours=1)
    )
    assert report.verdict == "fail"
    text = " ".join(report.reasons)
    assert "shadow 5xx rate 5.00% exceeds production 0.00%" in text and "2.00x production" in text


def test_error_rate_increase_threshold_is_configurable() -> None:
    health_p, health_s = VariantHealth(1000, 0), VariantHealth(1000, 30)
    lenient = ShadowThresholds(max_error_rate_increase=0.05, min_pairs=1)
    report = compare_captures([], [], lenient, production_health=health_p, shadow_health=health_s)
    assert report.verdict == "insufficient-data"  # no pairs at all: never a pass
    assert not any("5xx" in r for r in report.reasons)


@pytest.mark.parametrize(
    ("a", "b", "agree"),
    [
        (0.5, 0.5049, True),
        (0.5, 0.52, False),
        ([1.0, 2.0], [1.0, 2.01], True),
        ([1.0, 2.0], [1.0], False),
        ({"p": [0.1, 0.9], "label": "fraud"}, {"p": [0.1, 0.9001], "label": "fraud"}, True),
        ({"p": 0.1, "label": "fraud"}, {"p": 0.1, "label": "ok"}, False),
        ({"p": 0.1}, {"p": 0.1, "extra": 1}, False),
        (True, 1, False),
    ],
)
def test_outputs_agree_element_wise_within_tolerance(a: Any, b: Any, agree: bool) -> None:
    assert outputs_agree(a, b, rel_tol=0.01) is agree


def test_thresholds_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="min_agreement"):
        ShadowThresholds(min_agreement=1.5)
