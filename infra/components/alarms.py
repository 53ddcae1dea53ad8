"""Alarms: one CloudWatch alarm per endpoint x variant role x KPI.

The alarm *set* depends only on the endpoint's triggers config, never on which versions are
declared: candidate alarms exist even with no candidate. The endpoint's auto-rollback alarm list
is ForceNew in the provider, so a set that changed on a release would replace the endpoint.
The watched version travels in the description marker line (docs/contracts.md), which can change
freely without replacing anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.limits import DRIFT_SCHEDULE_MINUTES, MIN_BAD_REQUESTS
from infra.model import EndpointConfig
from rollback.runtime import names

ROLES: tuple[str, ...] = (names.STABLE, names.CANDIDATE)
BUILTIN_NAMESPACE = "AWS/SageMaker"
#: Drift is scored by a scheduled job (``infra.components.drift``), one datapoint per run: the
#: alarm period is the schedule interval.
DRIFT_PERIOD_SECONDS = DRIFT_SCHEDULE_MINUTES * 60
#: Two periods, one breaching datapoint: schedule jitter can leave one period without a datapoint,
#: which (missing data is not breaching) must not flip a drifting candidate back to OK.
DRIFT_EVALUATION_PERIODS = 2


def marker_line(endpoint: str, role: str, kpi: str, version: str | None) -> str:
    """The machine-readable last line of an alarm description (contract)."""
    return f"mlrollback: endpoint={endpoint} role={role} kpi={kpi} version={version or '-'}"


@dataclass(frozen=True)
class AlarmsArgs:
    """Inputs of :class:`Alarms`.

    ``versions`` maps role -> the version it currently serves (None: role not declared); it only
    feeds descriptions. ``notify_topic_arn`` receives notify-only alarms (drift with action notify).
    """

    endpoint: EndpointConfig
    versions: Mapping[str, str | None]
    notify_topic_arn: pulumi.Input[str] | None = None
    #: The rollback function: alarms whose ALARM drains invoke it directly too (alarm action).
    rollback_function_arn: pulumi.Input[str] | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


def _dims(endpoint: str, role: str) -> dict[str, str]:
    return {"EndpointName": endpoint, "VariantName": role}


def _query(
    mid: str, namespace: str, metric_name: str, dims: dict[str, str], period: int, stat: str
) -> dict[str, Any]:
    return {
        "id": mid,
        "return_data": False,
        "metric": {
            "namespace": namespace,
            "metric_name": metric_name,
            "dimensions": dims,
            "period": period,
            "stat": stat,
        },
    }


def _errors_spec(ep: EndpointConfig, dims: dict[str, str]) -> dict[str, Any]:
    """5xx share of invocations, as metric math over two Sum metrics, guarded by the sample floor.

    A period breaches only with at least ``minSamples`` invocations and ``MIN_BAD_REQUESTS``
    errors in it: one failed request in a quiet period never rolls back, so a single-datapoint
    alarm (``datapointsToAlarm: 1``) can be used on 10-second periods without flapping.
    """
    t = ep.triggers
    custom = t.metrics == "custom"
    errors, invocations = ("Errors", "Invocations") if custom else ("Invocation5XXErrors", "Invocations")
    namespace = names.CUSTOM_METRIC_NAMESPACE if custom else BUILTIN_NAMESPACE
    return {
        "metric_queries": [
            _query("errors", namespace, errors, dims, t.period_seconds, "Sum"),
            _query("invocations", namespace, invocations, dims, t.period_seconds, "Sum"),
            # No invocations -> no datapoint -> missing data, which is not breaching.
            {
                "id": "rate",
                "expression": f"IF(invocations >= {t.min_samples} AND errors >= {MIN_BAD_REQUESTS}, "
                "errors / invocations, 0)",
                "label": "error rate",
                "return_data": True,
            },
        ],
        "threshold": t.error_rate,
        "comparison_operator": "GreaterThanThreshold",
    }


def _latency_spec(ep: EndpointConfig, dims: dict[str, str]) -> dict[str, Any]:
    """p99 latency over the sample floor: the client's metric (ms), or SageMaker's ModelLatency (µs).

    ``slow`` counts the requests above the threshold (trimmed count ``TC(threshold:)``): p99 only
    counts when the period has ``minSamples`` requests and ``MIN_BAD_REQUESTS`` slow ones, so one
    slow request cannot roll back.
    """
    t = ep.triggers
    custom = t.metrics == "custom"
    namespace = names.CUSTOM_METRIC_NAMESPACE if custom else BUILTIN_NAMESPACE
    metric_name = "Latency" if custom else "ModelLatency"
    threshold = t.p99_latency_ms if custom else t.p99_latency_ms * 1000  # ModelLatency is in microseconds
    period = t.period_seconds
    return {
        "metric_queries": [
            _query("p99", namespace, metric_name, dims, period, "p99"),
            _query("n", namespace, metric_name, dims, period, "SampleCount"),
            _query("slow", namespace, metric_name, dims, period, f"TC({threshold:g}:)"),
            {
                "id": "latency",
                "expression": f"IF(n >= {t.min_samples} AND slow >= {MIN_BAD_REQUESTS}, p99, 0)",
                "label": "p99 latency",
                "return_data": True,
            },
        ],
        "threshold": threshold,
        "comparison_operator": "GreaterThanThreshold",
    }


def _quality_spec(ep: EndpointConfig, dims: dict[str, str]) -> dict[str, Any]:
    """The published Quality metric below ``min`` / above ``max`` (both: metric math for the band)."""
    t = ep.triggers
    q = t.quality
    assert q is not None
    ns = names.CUSTOM_METRIC_NAMESPACE
    # Quality comes from a job (one datapoint per window), never per request: sub-minute periods
    # would only ever see missing data.
    qperiod = max(60, t.period_seconds)
    if q.min is not None and q.max is not None:
        return {
            "metric_queries": [
                {
                    "id": "quality",
                    "return_data": False,
                    "metric": {
                        "namespace": ns,
                        "metric_name": "Quality",
                        "dimensions": dims,
                        "period": qperiod,
                        "stat": "Average",
                    },
                },
                {
                    "id": "outside",
                    "expression": f"IF(quality < {q.min} OR quality > {q.max}, 1, 0)",
                    "label": f"{q.metric} outside bounds",
                    "return_data": True,
                },
            ],
            "threshold": 1,
            "comparison_operator": "GreaterThanOrEqualToThreshold",
        }
    below = q.min is not None
    return {
        "namespace": ns,
        "metric_name": "Quality",
        "dimensions": dims,
        "period": qperiod,
        "statistic": "Average",
        "threshold": q.min if below else q.max,
        "comparison_operator": "LessThanThreshold" if below else "GreaterThanThreshold",
    }


def _drift_spec(ep: EndpointConfig, dims: dict[str, str]) -> dict[str, Any]:
    """DriftScore (the drift job's maximum PSI) above ``maxScore`` in one of its periods."""
    d = ep.triggers.drift
    assert d is not None
    return {
        "namespace": names.CUSTOM_METRIC_NAMESPACE,
        "metric_name": "DriftScore",
        "dimensions": dims,
        "period": DRIFT_PERIOD_SECONDS,
        "statistic": "Maximum",
        "threshold": d.max_score,
        "comparison_operator": "GreaterThanThreshold",
        "evaluation_periods": DRIFT_EVALUATION_PERIODS,
        "datapoints_to_alarm": 1,
    }


#: KPI -> its alarm's metric, threshold and comparison. A new KPI alarm is a function here.
KPI_SPECS: dict[str, Callable[[EndpointConfig, dict[str, str]], dict[str, Any]]] = {
    "errors": _errors_spec,
    "latency": _latency_spec,
    "quality": _quality_spec,
    "drift": _drift_spec,
}


def alarm_spec(ep: EndpointConfig, role: str, kpi: str) -> dict[str, Any]:
    """Metric, threshold and comparison of one alarm as MetricAlarm keyword arguments."""
    spec = KPI_SPECS.get(kpi)
    if spec is None:
        raise ValueError(f"unknown KPI {kpi!r}")
    return spec(ep, _dims(ep.physical_name, role))


class Alarms(pulumi.ComponentResource):
    """Per-role, per-KPI alarms of one endpoint; missing data is never a failure."""

    names: list[str]

    def __init__(self, name: str, args: AlarmsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlrollback:alarms:Alarms", name, None, opts)
        ep = args.endpoint
        t = ep.triggers
        self.names = []
        rollback_kpis = set(t.rollback_kpis())
        for role in ROLES:
            for kpi in t.kpis():
                alarm = names.alarm_name(ep.physical_name, role, kpi)
                spec = {
                    "evaluation_periods": t.evaluation_periods,
                    "datapoints_to_alarm": t.datapoints_to_alarm,
                    **alarm_spec(ep, role, kpi),
                }
                action = "drains the candidate" if kpi in rollback_kpis else "notifies only"
                description = (
                    f"{kpi} of variant {role} on endpoint {ep.physical_name}; ALARM {action}.\n"
                    + marker_line(ep.physical_name, role, kpi, args.versions.get(role))
                )
                notify_only = kpi not in rollback_kpis and args.notify_topic_arn is not None
                actions: list[pulumi.Input[str]] | None = None
                if notify_only:
                    actions = [args.notify_topic_arn]  # type: ignore[list-item]
                elif kpi in rollback_kpis and args.rollback_function_arn is not None:
                    actions = [args.rollback_function_arn]
                aws.cloudwatch.MetricAlarm(
                    f"{name}-{role}-{kpi}",
                    name=alarm,
                    alarm_description=description,
                    treat_missing_data="notBreaching",
                    alarm_actions=actions,
                    tags=dict(args.tags),
                    opts=pulumi.ResourceOptions(parent=self),
                    **spec,
                )
                self.names.append(alarm)
        self.register_outputs({"alarmNames": self.names})
