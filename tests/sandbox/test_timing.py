"""The sandbox's timing model: named latencies, their flags, and the pieces that apply them."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rollback.runtime.clock import VirtualClock
from rollback.runtime.errors import ConfigError
from rollback.sandbox import moto_patches
from rollback.sandbox.alarm_evaluator import AlarmEvaluator, evaluation_cadence
from rollback.sandbox.emulator import Emulator
from rollback.sandbox.timing import LATENCIES, TimingModel, markdown_table, parse_overrides

ROOT = Path(__file__).resolve().parents[2]


def test_docs_carry_the_timing_table_as_the_code_defines_it() -> None:
    assert markdown_table() in (ROOT / "docs" / "sandbox.md").read_text()


def test_every_latency_names_a_source_and_says_whether_aws_publishes_it() -> None:
    for lat in LATENCIES:
        assert lat.source and lat.what, lat.name
        assert 0 <= lat.low <= lat.high <= lat.limit
        if not lat.published:
            assert "not published" in lat.source or "Pessimistic" in lat.source, lat.name


def test_overrides_replace_one_range_and_keep_the_others() -> None:
    model = parse_overrides(["updating=120:300", "cold-start=0"])
    assert (model.get("updating").low, model.get("updating").high) == (120.0, 300.0)
    assert (model.get("cold-start").low, model.get("cold-start").high) == (0.0, 0.0)
    assert model.get("metric-ingest") == TimingModel().get("metric-ingest")
    assert parse_overrides(["instant"]).instant


@pytest.mark.parametrize(
    ("item", "words"),
    [
        ("updatng=10", "NAME one of"),
        ("updating", "expected NAME=SECONDS"),
        ("updating=soon", "is not SECONDS or LO:HI"),
        ("updating=-1", "out of range"),
        ("updating=50:10", "out of range"),
        ("updating=100000", "out of range"),
        ("eval-offset=2", "out of range"),
    ],
)
def test_a_bad_override_names_the_flag_and_what_to_give(item: str, words: str) -> None:
    with pytest.raises(ConfigError, match="--latency") as err:
        parse_overrides([item])
    assert words in str(err.value)


def test_a_run_draws_each_latency_once_in_its_range_and_the_same_seed_draws_the_same() -> None:
    model = TimingModel()
    a, b = model.sample(random.Random(5)), model.sample(random.Random(5))
    assert a.values == b.values
    for lat in LATENCIES:
        assert lat.low <= a[lat.name] <= lat.high
    assert model.sample(random.Random(6)).values != a.values
    instant = TimingModel(instant=True).sample(random.Random(5))
    assert instant["updating"] == 0 and instant["metric-ingest"] == 0


def test_cloudwatch_cadence_is_ten_seconds_below_a_minute_and_a_minute_otherwise() -> None:
    assert [evaluation_cadence(p) for p in (10, 20, 30, 60, 300)] == [10, 10, 10, 60, 60]


@pytest.mark.parametrize(("ingest", "expected"), [(4.0, {27: "ALARM"}), (14.0, {})])
def test_honest_evaluation_waits_for_its_phase_and_ignores_data_not_yet_ingested(
    ingest: float, expected: dict[int, str]
) -> None:
    """A 10-second alarm at phase 7 s: the period [10, 20) is judged at 27 s. Its datum, published at
    14 s, is visible from 18 s with 4 s ingestion (ALARM), from 28 s with 14 s (too late: missed)."""
    start = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    clock = VirtualClock(start)
    with Emulator("us-east-1") as emu:
        moto_patches.set_clock(clock)
        try:
            cw = emu.client("cloudwatch")
            cw.put_metric_alarm(
                AlarmName="a",
                Namespace="T",
                MetricName="Errors",
                Statistic="Sum",
                Period=10,
                EvaluationPeriods=1,
                Threshold=0,
                ComparisonOperator="GreaterThanThreshold",
                TreatMissingData="notBreaching",
            )
            evaluator = AlarmEvaluator(
                emu.backend("cloudwatch"),
                clock.now,
                honest=True,
                ingest_seconds=ingest,
                offset_share=lambda _n: 0.7,
            )
            evaluator.tick()
            states: dict[int, str] = {}
            for second in range(1, 30):
                clock.advance(1.0)
                if second == 14:  # published late: the datum belongs to [10, 20)
                    cw.put_metric_data(
                        Namespace="T",
                        MetricData=[
                            {
                                "MetricName": "Errors",
                                "Value": 1.0,
                                "Timestamp": datetime(2026, 1, 5, 12, 0, 12, tzinfo=UTC),
                            }
                        ],
                    )
                for change in evaluator.tick():
                    states[second] = change.new_state
            assert states == expected
        finally:
            moto_patches.set_clock(None)
