from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rollback.runtime.metrics import MetricsPublisher
from rollback.verdicts.ab import Arm, ab_verdict, fetch_arms

ENDPOINT = "ranker-dev"
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def _publish_conversions(cloudwatch: Any, variant: str, trials: int, rate: float, seed: int) -> None:
    rng = random.Random(seed)
    pub = MetricsPublisher(cloudwatch)
    for i in range(trials):
        at = T0 + timedelta(seconds=i % 600)
        pub.record_invocation(ENDPOINT, variant, 10.0, False, at=at)
        if rng.random() < rate:
            pub.record_value(ENDPOINT, variant, "Conversions", 1.0, "Count", at=at)
    pub.flush()


def test_conversion_arms_come_from_cloudwatch_and_a_clear_winner_is_called(cloudwatch: Any) -> None:
    _publish_conversions(cloudwatch, "stable", 4000, 0.10, seed=1)
    _publish_conversions(cloudwatch, "candidate", 4000, 0.16, seed=2)

    control, treatment = fetch_arms(
        cloudwatch, ENDPOINT, "Conversions", "proportion", T0, T0 + timedelta(hours=1)
    )
    report = ab_verdict(control, treatment, kind="proportion", mde=0.02)

    assert control.n == 4000 and treatment.n == 4000
    assert 0.08 < control.rate < 0.12 and 0.14 < treatment.rate < 0.18  # type: ignore[operator]
    assert report.verdict == "candidate-better"
    assert report.sequential_p_value is not None and report.sequential_p_value < 0.05
    assert report.required_per_arm is not None and report.required_per_arm > 1000


def test_continuous_arms_use_sum_of_squares_for_the_variance(cloudwatch: Any) -> None:
    rng = random.Random(3)
    pub = MetricsPublisher(cloudwatch)
    samples = {
        "stable": [rng.gauss(50, 10) for _ in range(400)],
        "candidate": [rng.gauss(47, 10) for _ in range(400)],
    }
    for variant, values in samples.items():
        for i, x in enumerate(values):
            pub.record_observation(ENDPOINT, variant, "Revenue", round(x, 2), at=T0 + timedelta(seconds=i))
    pub.flush()

    control, treatment = fetch_arms(
        cloudwatch, ENDPOINT, "Revenue", "continuous", T0, T0 + timedelta(hours=1)
    )

    import statistics

    expected = [round(x, 2) for x in samples["stable"]]
    assert control.n == 400
    assert control.mean == pytest.approx(statistics.mean(expected))
    assert control.variance == pytest.approx(statistics.variance(expected), rel=1e-6)
    report = ab_verdict(control, treatment, kind="continuous", mde=2.0)
    assert report.verdict == "candidate-worse"  # higher revenue is better, the candidate earns less


def test_small_samples_say_not_enough_data_yet() -> None:
    report = ab_verdict(
        Arm("stable", 20, successes=2), Arm("candidate", 20, successes=5), kind="proportion", mde=0.02
    )
    assert report.verdict == "not-enough-data" and report.fixed_horizon is None
    assert report.reasons[0].startswith("not enough data yet")


def test_inconclusive_before_the_planned_sample_is_not_enough_data_after_it_no_difference() -> None:
    early = ab_verdict(
        Arm("stable", 1000, successes=100), Arm("candidate", 1000, successes=104), kind="proportion", mde=0.02
    )
    assert early.verdict == "not-enough-data" and "3841 needed" in early.reasons[0]
    late = ab_verdict(
        Arm("stable", 5000, successes=500), Arm("candidate", 5000, successes=505), kind="proportion", mde=0.02
    )
    assert late.verdict == "no-significant-difference"


def test_lower_is_better_flips_the_direction() -> None:
    control = Arm("stable", 500, mean=100.0, variance=100.0)
    treatment = Arm("candidate", 500, mean=90.0, variance=100.0)
    assert ab_verdict(control, treatment, kind="continuous", mde=5, higher_is_better=False).verdict == (
        "candidate-better"
    )


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        ab_verdict(Arm("a", 1), Arm("b", 1), kind="ratio", mde=0.1)
    with pytest.raises(ValueError, match="mde"):
        ab_verdict(Arm("a", 1, successes=0), Arm("b", 1, successes=0), kind="proportion", mde=0)
