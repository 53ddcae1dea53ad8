"""CloudWatch alarm evaluation from metric data, which moto does not do.

The evaluator reads the alarms and the metric data stored in moto's in-process CloudWatch
backend (whoever published them: sandbox traffic, the prediction client, AWS-style built-in
metrics) and applies CloudWatch's documented rules at each alarm's period boundary:

- the last ``EvaluationPeriods`` complete periods form the evaluation range; the alarm goes to
  ``ALARM`` when at least ``DatapointsToAlarm`` (default: all) of them breach;
- statistics ``Sum``, ``Average``, ``SampleCount``, ``Minimum``, ``Maximum``, extended
  percentiles ``pNN`` and trimmed counts ``TC(a:b)`` (values in ``(a, b]``), both from individual
  values, on single-metric and metric-math alarms (``m_errors / m_invocations``; division by zero
  is a missing datapoint, as in CloudWatch);
- ``TreatMissingData``: ``notBreaching`` / ``breaching`` count a missing period as good / bad,
  ``ignore`` keeps the current state when there is not enough data, ``missing`` (the default)
  goes to ``INSUFFICIENT_DATA`` when every period is missing;
- a state set by ``SetAlarmState`` stands until the next evaluation, as in CloudWatch.

Every state transition (the evaluator's own and ``SetAlarmState``'s) is returned from
:meth:`AlarmEvaluator.tick` as an :class:`AlarmChange`, which :mod:`rollback.sandbox.events`
turns into an EventBridge "CloudWatch Alarm State Change" event.
"""

from __future__ import annotations

import ast
import bisect
import json
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rollback.runtime.errors import SandboxError

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": operator.gt,
    "GreaterThanOrEqualToThreshold": operator.ge,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}
_COMPARE_WORDS = {
    "GreaterThanThreshold": "greater than",
    "GreaterThanOrEqualToThreshold": "greater than or equal to",
    "LessThanThreshold": "less than",
    "LessThanOrEqualToThreshold": "less than or equal to",
}


def _epoch(at: datetime) -> float:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.timestamp()


def _series_key(namespace: str, name: str, dimensions: Any) -> tuple[str, str, frozenset[tuple[str, str]]]:
    dims = frozenset((d.name, d.value) for d in dimensions)
    return namespace, name, dims


@dataclass
class _Series:
    times: list[float] = field(default_factory=list)
    datums: list[Any] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)

    def add(self, at: float, datum: Any, arrived: float) -> None:
        at_end = not self.times or at >= self.times[-1]
        i = len(self.times) if at_end else bisect.bisect_right(self.times, at)
        self.times.insert(i, at)
        self.datums.insert(i, datum)
        self.arrivals.insert(i, arrived)

    def window(self, start: float, end: float, visible_at: float | None = None) -> list[Any]:
        lo = bisect.bisect_left(self.times, start)
        hi = bisect.bisect_left(self.times, end)
        if visible_at is None:
            return self.datums[lo:hi]
        return [d for d, a in zip(self.datums[lo:hi], self.arrivals[lo:hi], strict=True) if a <= visible_at]


class MetricIndex:
    """Incremental index over moto's metric data list: new datums are read once, by series.

    Each datum remembers when the index first saw it (``now()`` at :meth:`refresh`, the virtual
    time it was published); :meth:`window` with ``visible_at`` leaves out datums that arrived
    later, which is how the ingestion delay of the timing model is applied.
    """

    def __init__(self, backend: Any, now: Callable[[], float] | None = None) -> None:
        self._backend = backend
        self._now = now
        self._offset = 0
        self._series: dict[tuple[str, str, frozenset[tuple[str, str]]], _Series] = {}

    def refresh(self) -> None:
        """Index the datums published since the last refresh."""
        data = self._backend.metric_data
        arrived = self._now() if self._now is not None else 0.0
        for datum in data[self._offset :]:
            key = _series_key(datum.namespace, datum.name, datum.dimensions)
            self._series.setdefault(key, _Series()).add(_epoch(datum.timestamp), datum, arrived)
        self._offset = len(data)

    def window(
        self,
        namespace: str,
        name: str,
        dimensions: Any,
        start: float,
        end: float,
        visible_at: float | None = None,
    ) -> list[Any]:
        """Datums of one series with ``start <= timestamp < end`` (epoch s) that arrived by ``visible_at``."""
        series = self._series.get(_series_key(namespace, name, dimensions))
        return series.window(start, end, visible_at) if series else []


_TRIMMED_COUNT = re.compile(r"^TC\(([-0-9.]*):([-0-9.]*)\)$")


def statistic(datums: list[Any], stat: str) -> float | None:
    """One CloudWatch statistic over raw (``MetricDatum``) and aggregated datums; None when empty."""
    if not datums:
        return None
    count = total = 0.0
    lo, hi = math.inf, -math.inf
    values: list[float] = []
    for d in datums:
        if hasattr(d, "sample_count"):
            count += float(d.sample_count)
            total += float(d.sum)
            lo, hi = min(lo, float(d.min)), max(hi, float(d.max))
        else:
            v = float(d.value)
            count += 1
            total += v
            lo, hi = min(lo, v), max(hi, v)
            values.append(v)
    if stat == "Sum":
        return total
    if stat == "SampleCount":
        return count
    if stat == "Average":
        return total / count if count else None
    if stat == "Minimum":
        return lo
    if stat == "Maximum":
        return hi
    trimmed = _TRIMMED_COUNT.match(stat)
    if trimmed:
        # TC(a:b): how many values lie in (a, b]; a missing bound is open (CloudWatch statistics).
        if not values and count:
            return None
        low = float(trimmed.group(1)) if trimmed.group(1) else -math.inf
        high = float(trimmed.group(2)) if trimmed.group(2) else math.inf
        return float(sum(1 for v in values if low < v <= high))
    if stat.startswith("p"):
        if not values:
            # Percentiles need the individual values; aggregated-only data has none.
            return None
        q = float(stat[1:])
        values.sort()
        rank = max(0, math.ceil(q / 100.0 * len(values)) - 1)
        return values[rank]
    raise SandboxError(f"alarm statistic {stat!r} is not supported by the sandbox evaluator")


_MATH_BINOPS: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_MATH_CMP: dict[type, Callable[[float, float], bool]] = {
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


def evaluate_expression(expression: str, values: dict[str, float | None]) -> float | None:
    """Evaluate a CloudWatch metric-math expression for one period; None is a missing datapoint.

    Supports what alarms on rates need: query ids, numbers, ``+ - * /``, parentheses,
    comparisons, ``FILL(m, v)``, ``IF(cond, a, b)``, ``MAX``/``MIN``/``ABS``. Division by zero
    gives a missing datapoint, as CloudWatch drops such values.
    """
    python_form = re.sub(r"\bAND\b", " and ", re.sub(r"\bOR\b", " or ", expression))
    try:
        tree = ast.parse(python_form, mode="eval")
    except SyntaxError as exc:
        raise SandboxError(f"metric math expression {expression!r} is not understood: {exc.msg}") from None

    def ev(node: ast.AST) -> float | None:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in values:
                raise SandboxError(f"metric math expression {expression!r} uses unknown id {node.id!r}")
            return values[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = ev(node.operand)
            return None if inner is None else -inner
        if isinstance(node, ast.BinOp) and type(node.op) in _MATH_BINOPS:
            left, right = ev(node.left), ev(node.right)
            if left is None or right is None:
                return None
            if isinstance(node.op, ast.Div) and right == 0:
                return None
            return _MATH_BINOPS[type(node.op)](left, right)
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _MATH_CMP:
            left, right = ev(node.left), ev(node.comparators[0])
            if left is None or right is None:
                return None
            return 1.0 if _MATH_CMP[type(node.ops[0])](left, right) else 0.0
        if isinstance(node, ast.BoolOp):
            parts = [ev(v) for v in node.values]
            if any(p is None for p in parts):
                return None
            hit = any(parts) if isinstance(node.op, ast.Or) else all(parts)
            return 1.0 if hit else 0.0
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            fn = node.func.id.upper()
            args = node.args
            if fn == "FILL" and len(args) == 2:
                first = ev(args[0])
                return ev(args[1]) if first is None else first
            if fn == "IF" and len(args) == 3:
                cond = ev(args[0])
                if cond is None:
                    return None
                return ev(args[1]) if cond else ev(args[2])
            if fn in {"MAX", "MIN"} and args:
                got = [v for v in (ev(a) for a in args) if v is not None]
                return (max if fn == "MAX" else min)(got) if got else None
            if fn == "ABS" and len(args) == 1:
                inner = ev(args[0])
                return None if inner is None else abs(inner)
        raise SandboxError(
            f"metric math expression {expression!r}: {ast.dump(node)[:60]} is not supported by the sandbox"
        )

    return ev(tree)


@dataclass(frozen=True)
class AlarmChange:
    """One alarm state transition, with what an EventBridge event needs to describe it."""

    name: str
    arn: str
    old_state: str
    new_state: str
    old_reason: str
    reason: str
    reason_data: str
    at: datetime
    old_at: datetime
    configuration: dict[str, Any]


def alarm_period(alarm: Any) -> int:
    """The evaluation period (seconds) of a single-metric or metric-math alarm."""
    if alarm.period:
        return int(alarm.period)
    for query in alarm.metric_data_queries:
        if query.metric_stat is not None and query.metric_stat.period:
            return int(query.metric_stat.period)
        if query.period:
            return int(query.period)
    raise SandboxError(f"alarm {alarm.name!r} has no period; the sandbox cannot evaluate it")


def alarm_configuration(alarm: Any) -> dict[str, Any]:
    """The ``detail.configuration`` block of an alarm state-change event (AWS's documented shape)."""
    metrics: list[dict[str, Any]] = []
    if alarm.metric_data_queries:
        for query in alarm.metric_data_queries:
            item: dict[str, Any] = {"id": query.id, "returnData": _explicit_true(query.return_data)}
            if query.expression:
                item["expression"] = query.expression
                if query.label:
                    item["label"] = query.label
            if query.metric_stat is not None:
                ms = query.metric_stat
                item["metricStat"] = {
                    "metric": {
                        "namespace": ms.metric.namespace,
                        "name": ms.metric.metric_name,
                        "dimensions": {d.name: d.value for d in ms.metric.dimensions},
                    },
                    "period": int(ms.period),
                    "stat": ms.stat,
                }
            metrics.append(item)
    else:
        metrics.append(
            {
                "id": "m1",
                "returnData": True,
                "metricStat": {
                    "metric": {
                        "namespace": alarm.namespace,
                        "name": alarm.metric_name,
                        "dimensions": {d.name: d.value for d in alarm.dimensions},
                    },
                    "period": int(alarm.period),
                    "stat": alarm.extended_statistic or alarm.statistic,
                },
            }
        )
    return {"description": alarm.description or "", "metrics": metrics}


def evaluation_cadence(period: int) -> int:
    """How often CloudWatch evaluates an alarm: every 10 s below a minute, else every minute."""
    return 10 if period < 60 else 60


class AlarmEvaluator:
    """Evaluates every metric alarm of a CloudWatch backend, by default at its period boundaries.

    ``now`` returns the (virtual) current time. Call :meth:`tick` after each time step; it
    returns the state transitions since the previous call, in alarm-name order.

    The timing model (``honest=True``): each alarm is evaluated on CloudWatch's cadence
    (:func:`evaluation_cadence`) at its own phase, a share of the cadence drawn by
    ``offset_share(alarm_name)``, not at period ends; each evaluation looks at the latest complete
    periods and sees only datums that arrived at least ``ingest_seconds`` before it.
    """

    def __init__(
        self,
        backend: Any,
        now: Callable[[], datetime],
        *,
        honest: bool = False,
        ingest_seconds: float = 0.0,
        offset_share: Callable[[str], float] | None = None,
    ) -> None:
        self._backend = backend
        self._now = now
        self._index = MetricIndex(backend, lambda: _epoch(now()))
        self._honest = honest
        self._ingest = float(ingest_seconds)
        self._offset_share = offset_share or (lambda _name: 0.0)
        self._offsets: dict[str, float] = {}
        self._evaluated: dict[str, int] = {}
        self._known: dict[str, tuple[str, Any, str, Any]] = {}
        self.evaluations = 0
        # The states as they are now are the baseline: a SetAlarmState that lands before the first
        # tick (a drill started right after `sandbox up`) is a transition, not the starting state.
        for name, alarm in backend.alarms.items():
            if not getattr(alarm, "rule", None):
                self._known[name] = self._state(alarm)

    @staticmethod
    def _state(alarm: Any) -> tuple[str, Any, str, Any]:
        return (alarm.state_value, alarm.state_updated_timestamp, alarm.state_reason, alarm)

    def _observe(self, name: str, alarm: Any) -> AlarmChange | None:
        """The transition since the alarm was last seen (None for none, or an alarm seen first now)."""
        seen = self._state(alarm)
        before = self._known.get(name)
        self._known[name] = seen
        if before is None or before[0] == seen[0]:
            return None
        return AlarmChange(
            name=name,
            arn=alarm.alarm_arn,
            old_state=before[0],
            new_state=seen[0],
            old_reason=before[2],
            reason=alarm.state_reason,
            reason_data=alarm.state_reason_data or "{}",
            at=_aware(alarm.state_updated_timestamp),
            old_at=_aware(before[1]),
            configuration=alarm_configuration(alarm),
        )

    def tick(self) -> list[AlarmChange]:
        """Evaluate alarms whose period just completed; report every transition since last call.

        A state set from outside (SetAlarmState) since the last call is reported before the
        evaluation that may overwrite it, as CloudWatch emits its event when the state is set.
        """
        self._index.refresh()
        now = _epoch(self._now())
        changes: list[AlarmChange] = []
        for name in sorted(self._backend.alarms):
            alarm = self._backend.alarms[name]
            if getattr(alarm, "rule", None):
                continue  # composite alarms are not used by the product
            outside = self._observe(name, alarm)
            if outside is not None:
                changes.append(outside)
            period = alarm_period(alarm)
            boundary = int(now // period) * period
            slot = boundary
            if self._honest:
                cadence = evaluation_cadence(period)
                if name not in self._offsets:
                    self._offsets[name] = min(max(self._offset_share(name), 0.0), 1.0) * cadence
                slot = int((now - self._offsets[name]) // cadence)
            if self._evaluated.get(name) != slot:
                self._evaluated[name] = slot
                self._evaluate(alarm, boundary, period)
                evaluated = self._observe(name, alarm)
                if evaluated is not None:
                    changes.append(evaluated)
        return changes

    def datapoints(self, alarm: Any, end: int, period: int) -> list[float | None]:
        """The alarm's values for its evaluation range ending at ``end`` (oldest first)."""
        n = int(alarm.evaluation_periods or 1)
        points: list[float | None] = []
        for k in range(n, 0, -1):
            start = end - k * period
            points.append(self._period_value(alarm, start, start + period))
        return points

    def _period_value(self, alarm: Any, start: float, end: float) -> float | None:
        visible = _epoch(self._now()) - self._ingest if self._honest else None
        if not alarm.metric_data_queries:
            datums = self._index.window(
                alarm.namespace, alarm.metric_name, alarm.dimensions, start, end, visible
            )
            return statistic(datums, alarm.extended_statistic or alarm.statistic)
        values: dict[str, float | None] = {}
        for query in alarm.metric_data_queries:
            if query.metric_stat is not None:
                ms = query.metric_stat
                datums = self._index.window(
                    ms.metric.namespace, ms.metric.metric_name, ms.metric.dimensions, start, end, visible
                )
                values[query.id] = statistic(datums, ms.stat)
        returned: list[str] = []
        last_expression = None
        for query in alarm.metric_data_queries:
            if query.expression:
                values[query.id] = evaluate_expression(query.expression, values)
                last_expression = query.id
            if _explicit_true(query.return_data):
                returned.append(query.id)
        chosen = returned[-1] if returned else last_expression
        return values.get(chosen) if chosen else None

    def _evaluate(self, alarm: Any, end: int, period: int) -> None:
        self.evaluations += 1
        points = self.datapoints(alarm, end, period)
        compare = _COMPARE.get(alarm.comparison_operator)
        if compare is None:
            raise SandboxError(
                f"alarm {alarm.name!r}: comparison {alarm.comparison_operator!r} is not supported"
            )
        threshold = float(alarm.threshold)
        treat = alarm.treat_missing_data or "missing"
        n = len(points)
        m = int(alarm.datapoints_to_alarm or n)
        present = [p for p in points if p is not None]
        breaching = sum(1 for p in present if compare(p, threshold))
        missing = n - len(present)
        if treat == "breaching":
            breaching += missing
        if breaching >= m:
            state = "ALARM"
        elif treat in ("notBreaching", "breaching") or (present and len(present) >= m):
            state = "OK"
        elif not present:
            state = alarm.state_value if treat == "ignore" else "INSUFFICIENT_DATA"
        else:
            state = alarm.state_value if treat == "ignore" else "OK"
        if state == alarm.state_value:
            return
        words = _COMPARE_WORDS[alarm.comparison_operator]
        stamp = datetime.fromtimestamp(end, tz=UTC)
        shown = ", ".join(
            f"{p:.4g} ({datetime.fromtimestamp(end - (n - i) * period, tz=UTC):%d/%m/%y %H:%M:%S})"
            for i, p in enumerate(points)
            if p is not None
        )
        if state == "INSUFFICIENT_DATA":
            reason = f"Insufficient Data: {n} datapoints were unknown."
        else:
            reason = (
                f"Threshold Crossed: {breaching} out of the last {n} datapoints [{shown}] "
                f"{'were' if state == 'ALARM' else 'were not'} {words} the threshold ({threshold:g}) "
                f"(minimum {m} datapoints for {alarm.state_value} -> {state} transition)."
            )
        reason_data = json.dumps(
            {
                "version": "1.0",
                "queryDate": stamp.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
                "startDate": datetime.fromtimestamp(end - n * period, tz=UTC).strftime(
                    "%Y-%m-%dT%H:%M:%S.000+0000"
                ),
                "period": period,
                "recentDatapoints": [p for p in points if p is not None],
                "threshold": threshold,
                "evaluatedDatapoints": [
                    {
                        "timestamp": datetime.fromtimestamp(end - (n - i) * period, tz=UTC).strftime(
                            "%Y-%m-%dT%H:%M:%S.000+0000"
                        ),
                        **({"value": p} if p is not None else {}),
                    }
                    for i, p in enumerate(points)
                ],
            }
        )
        alarm.update_state(reason, reason_data, state)


def _explicit_true(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() == "true"
    return value is True


def _aware(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
