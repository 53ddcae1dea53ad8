"""The sandbox's CloudWatch alarm evaluation: M of N, missing data, metric math, p99, SetAlarmState."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from rollback.runtime.clock import VirtualClock
from rollback.runtime.errors import SandboxError
from rollback.sandbox import moto_patches
from rollback.sandbox.alarm_evaluator import AlarmEvaluator, evaluate_expression, statistic
from rollback.sandbox.emulator import Emulator

NS = "Test/Alarms"
DIMS = [{"Name": "EndpointName", "Value": "e"}]


@dataclass
class Env:
    cw: Any
    clock: VirtualClock
    evaluator: AlarmEvaluator

    def put(self, at: datetime, value: float, name: str = "Errors") -> None:
        datum = {"MetricName": name, "Dimensions": DIMS, "Timestamp": at, "Value": value}
        self.cw.put_metric_data(Namespace=NS, MetricData=[datum])

    def state(self, name: str) -> str:
        return str(self.cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"])

    def tick_to(self, at: datetime) -> list[Any]:
        self.clock.advance((at - self.clock.now()).total_seconds())
        return self.evaluator.tick()


@pytest.fixture
def env() -> Iterator[Env]:
    start = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    clock = VirtualClock(start)
    with Emulator("us-east-1") as emu:
        moto_patches.set_clock(clock)
        try:
            yield Env(emu.client("cloudwatch"), clock, AlarmEvaluator(emu.backend("cloudwatch"), clock.now))
        finally:
            moto_patches.set_clock(None)


def _alarm(env: Env, name: str, **overrides: Any) -> None:
    args: dict[str, Any] = {
        "AlarmName": name,
        "Namespace": NS,
        "MetricName": "Errors",
        "Dimensions": DIMS,
        "Statistic": "Sum",
        "Period": 10,
        "EvaluationPeriods": 3,
        "DatapointsToAlarm": 2,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
        **overrides,
    }
    env.cw.put_metric_alarm(**args)


def _t0(env: Env) -> datetime:
    return env.clock.now()


def test_m_of_n_alarms_on_two_bad_periods_out_of_three_not_on_one(env: Env) -> None:
    _alarm(env, "a")
    t0 = _t0(env)
    env.put(t0 + timedelta(seconds=1), 5)  # period [0, 10): bad
    env.put(t0 + timedelta(seconds=11), 0)  # period [10, 20): good
    env.tick_to(t0 + timedelta(seconds=30))
    assert env.state("a") == "OK"  # 1 of 3 breaching

    env.put(t0 + timedelta(seconds=31), 3)  # period [30, 40): bad, the range is now [10, 40)
    env.tick_to(t0 + timedelta(seconds=40))
    assert env.state("a") == "OK"  # [10,20) good, [20,30) missing, [30,40) bad: 1 of 3

    env.put(t0 + timedelta(seconds=45), 2)
    changes = env.tick_to(t0 + timedelta(seconds=50))
    assert env.state("a") == "ALARM"  # [30,40) and [40,50) bad: 2 of 3
    assert [(c.name, c.new_state) for c in changes] == [("a", "ALARM")]


@pytest.mark.parametrize(
    ("treat", "expected"),
    [("missing", "INSUFFICIENT_DATA"), ("notBreaching", "OK"), ("breaching", "ALARM"), ("ignore", "OK")],
)
def test_missing_data_treatment_with_no_data_at_all(env: Env, treat: str, expected: str) -> None:
    _alarm(env, "m", TreatMissingData=treat)
    env.cw.set_alarm_state(AlarmName="m", StateValue="OK", StateReason="test starts from OK")
    env.evaluator.tick()

    env.tick_to(_t0(env) + timedelta(seconds=40))

    assert env.state("m") == expected  # ignore keeps the OK it had


def test_metric_math_error_rate_and_division_by_zero_is_missing(env: Env) -> None:
    def query(qid: str, metric: str) -> dict[str, Any]:
        metric_id = {"Namespace": NS, "MetricName": metric, "Dimensions": DIMS}
        stat = {"Metric": metric_id, "Period": 10, "Stat": "Sum"}
        return {"Id": qid, "MetricStat": stat, "ReturnData": False}

    queries = [query("e", "Errors"), query("n", "Invocations"), {"Id": "rate", "Expression": "e / n"}]
    env.cw.put_metric_alarm(
        AlarmName="rate",
        Metrics=queries,
        EvaluationPeriods=1,
        Threshold=0.05,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="missing",
    )
    t0 = _t0(env)
    env.put(t0 + timedelta(seconds=1), 0, "Errors")
    env.put(t0 + timedelta(seconds=1), 0, "Invocations")  # 0 / 0: no datapoint
    env.tick_to(t0 + timedelta(seconds=10))
    assert env.state("rate") == "INSUFFICIENT_DATA"

    env.put(t0 + timedelta(seconds=11), 1, "Errors")
    env.put(t0 + timedelta(seconds=11), 10, "Invocations")  # 10 % > 5 %
    env.tick_to(t0 + timedelta(seconds=20))
    assert env.state("rate") == "ALARM"

    env.put(t0 + timedelta(seconds=21), 1, "Errors")
    env.put(t0 + timedelta(seconds=21), 100, "Invocations")  # 1 % <= 5 %
    env.tick_to(t0 + timedelta(seconds=30))
    assert env.state("rate") == "OK"


def test_p99_alarm_sees_the_slowest_percent_of_raw_values(env: Env) -> None:
    env.cw.put_metric_alarm(
        AlarmName="p99",
        Namespace=NS,
        MetricName="Latency",
        Dimensions=DIMS,
        ExtendedStatistic="p99",
        Period=10,
        EvaluationPeriods=1,
        Threshold=500.0,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching",
    )
    t0 = _t0(env)

    def publish(at: datetime, slow: int) -> None:
        datum = {"MetricName": "Latency", "Dimensions": DIMS, "Timestamp": at}
        datum |= {"Values": [1500.0, 40.0], "Counts": [float(slow), float(200 - slow)]}
        env.cw.put_metric_data(Namespace=NS, MetricData=[datum])

    publish(t0 + timedelta(seconds=1), slow=1)  # 0.5 % slow: p99 is 40 ms
    env.tick_to(t0 + timedelta(seconds=10))
    assert env.state("p99") == "OK"

    publish(t0 + timedelta(seconds=11), slow=4)  # 2 % slow: p99 is 1500 ms
    env.tick_to(t0 + timedelta(seconds=20))
    assert env.state("p99") == "ALARM"


def test_set_alarm_state_stands_until_the_next_evaluation(env: Env) -> None:
    _alarm(env, "s", EvaluationPeriods=1, DatapointsToAlarm=1)
    t0 = _t0(env)
    env.tick_to(t0 + timedelta(seconds=10))
    assert env.state("s") == "OK"

    env.cw.set_alarm_state(AlarmName="s", StateValue="ALARM", StateReason="drill: injected")
    changes = env.tick_to(t0 + timedelta(seconds=15))  # same period: no evaluation yet
    assert env.state("s") == "ALARM"
    assert [(c.name, c.old_state, c.new_state, c.reason) for c in changes] == [
        ("s", "OK", "ALARM", "drill: injected")
    ]

    changes = env.tick_to(t0 + timedelta(seconds=20))  # next boundary: the data say OK again
    assert env.state("s") == "OK" and [c.new_state for c in changes] == ["OK"]


def test_a_datapoint_on_the_boundary_belongs_to_the_period_it_starts(env: Env) -> None:
    _alarm(env, "b", EvaluationPeriods=1, DatapointsToAlarm=1, Period=60)
    t0 = _t0(env)  # a whole minute
    env.put(t0 + timedelta(seconds=60), 5)  # first instant of [60, 120)

    env.tick_to(t0 + timedelta(seconds=61))  # evaluates [0, 60): nothing there
    assert env.state("b") == "OK"
    env.tick_to(t0 + timedelta(seconds=119))  # same boundary: not evaluated again
    assert env.state("b") == "OK"
    env.tick_to(t0 + timedelta(seconds=120))  # evaluates [60, 120)
    assert env.state("b") == "ALARM"


def test_statistics_over_raw_and_aggregated_datums() -> None:
    raw = [SimpleNamespace(value=float(v)) for v in range(1, 101)]
    agg = [SimpleNamespace(sample_count=4.0, sum=10.0, min=1.0, max=4.0)]

    assert statistic(raw, "p99") == 99.0 and statistic(raw, "p50") == 50.0
    assert statistic(raw, "Sum") == 5050.0 and statistic(raw, "SampleCount") == 100.0
    assert statistic(raw + agg, "Average") == pytest.approx(5060.0 / 104.0)
    assert statistic(agg, "Minimum") == 1.0 and statistic(agg, "Maximum") == 4.0
    assert statistic(agg, "p99") is None  # no individual values, no percentile
    assert statistic([], "Sum") is None
    with pytest.raises(SandboxError, match="tm90"):
        statistic(raw, "tm90")


def test_metric_math_functions_and_missing_values() -> None:
    values = {"e": 2.0, "n": 0.0, "x": None}

    assert evaluate_expression("e / n", values) is None
    assert evaluate_expression("FILL(x, 0) + e", values) == 2.0
    assert evaluate_expression("IF(e > 1, 10, 20)", values) == 10.0
    assert evaluate_expression("e > 1 AND n > 1", values) == 0.0
    assert evaluate_expression("e > 1 OR n > 1", values) == 1.0
    assert evaluate_expression("MAX(x, e, n)", values) == 2.0
    assert evaluate_expression("-e * 3", values) == -6.0
    with pytest.raises(SandboxError, match="unknown id 'q'"):
        evaluate_expression("q / e", values)


def test_a_state_forced_before_the_first_tick_is_a_transition_not_the_baseline() -> None:
    """`drill` right after `sandbox up`: the daemon's evaluator exists, its first tick has not run."""
    start = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    clock = VirtualClock(start)
    with Emulator("us-east-1") as emu:
        moto_patches.set_clock(clock)
        try:
            cw = emu.client("cloudwatch")
            env = Env(cw, clock, AlarmEvaluator(emu.backend("cloudwatch"), clock.now))
            _alarm(env, "late")  # created after the evaluator: first seen at a tick, no event
            env.tick_to(start + timedelta(seconds=1))
            evaluator = AlarmEvaluator(emu.backend("cloudwatch"), clock.now)  # a daemon starting now
            cw.set_alarm_state(AlarmName="late", StateValue="ALARM", StateReason="drill")
            clock.advance(1)
            changes = evaluator.tick()
        finally:
            moto_patches.set_clock(None)
    assert [(c.name, c.new_state) for c in changes][:1] == [("late", "ALARM")]


def test_a_forced_alarm_overwritten_by_the_same_ticks_evaluation_is_still_delivered(env: Env) -> None:
    _alarm(env, "forced")
    t0 = _t0(env)
    env.tick_to(t0 + timedelta(seconds=30))  # evaluated: OK (no data, not breaching)
    assert env.state("forced") == "OK"
    env.cw.set_alarm_state(AlarmName="forced", StateValue="ALARM", StateReason="drill")

    changes = env.tick_to(t0 + timedelta(seconds=40))  # a boundary: evaluation sets it back to OK

    assert [(c.name, c.old_state, c.new_state) for c in changes] == [
        ("forced", "OK", "ALARM"),
        ("forced", "ALARM", "OK"),
    ]
