"""The rollout stepper: advance every endpoint's candidate one planned step per bake period.

One tick costs, for N endpoints with plans: ceil(2N/10) GetParametersByPath pages for plans
and progress, one more page set for quarantine records, one batched DescribeAlarms per 100
alarms of active rollouts (checked every tick, so a firing alarm halts even mid-bake), and, only
for endpoints whose bake period is over, one GetMetricData per distinct bake window (up to 500
endpoints each). Writes happen only when something changes, so an idle
tick writes nothing. Standard library + boto3 only: on the Lambda import path.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from typing import Any

from rollback.runtime import clock, decisions, names, records
from rollback.runtime.aws import Clients
from rollback.runtime.endpoint import describe_endpoint
from rollback.runtime.errors import ConfigError
from rollback.runtime.followups import (
    drain_markers,
    finish_cut_off_drain,
    resume_followups,
)
from rollback.runtime.logs import log
from rollback.runtime.records import Progress, Quarantine, RolloutPlan
from rollback.runtime.retry import RetryPolicy, call
from rollback.runtime.settings import Settings
from rollback.runtime.step_actions import PlannedEndpoint, apply_decision

BUILTIN_NAMESPACE = "AWS/SageMaker"
_ALARMS_PER_CALL = 100
_QUERIES_PER_CALL = 500


def _alarms(clients: Clients, alarm_names: list[str], retry: RetryPolicy) -> dict[str, dict[str, Any]]:
    """Name -> MetricAlarm for ``alarm_names`` in as few DescribeAlarms calls as possible."""
    found: dict[str, dict[str, Any]] = {}
    unique = sorted(set(alarm_names))
    for i in range(0, len(unique), _ALARMS_PER_CALL):
        kwargs: dict[str, Any] = {
            "AlarmNames": unique[i : i + _ALARMS_PER_CALL],
            "AlarmTypes": ["MetricAlarm"],
        }
        while True:
            page = call("DescribeAlarms", clients.cloudwatch.describe_alarms, retry, **kwargs)
            for alarm in page.get("MetricAlarms", []):
                found[alarm["AlarmName"]] = alarm
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
    return found


def _request_counts(
    clients: Clients, windows: dict[str, tuple[RolloutPlan, datetime, datetime]], retry: RetryPolicy
) -> dict[str, float]:
    """Endpoint -> candidate invocations (Sum) in its window, one GetMetricData per distinct window."""
    by_window: dict[tuple[datetime, datetime], list[tuple[str, RolloutPlan]]] = {}
    for endpoint, (plan, start, end) in windows.items():
        by_window.setdefault((start, end), []).append((endpoint, plan))
    counts = dict.fromkeys(windows, 0.0)
    for (start, end), members in by_window.items():
        seconds = max(1.0, (end - start).total_seconds())
        period = max(60, math.ceil(seconds / 60) * 60)
        for i in range(0, len(members), _QUERIES_PER_CALL):
            chunk = members[i : i + _QUERIES_PER_CALL]
            ids = {f"m{j}": endpoint for j, (endpoint, _plan) in enumerate(chunk)}
            queries = [
                {
                    "Id": f"m{j}",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": names.CUSTOM_METRIC_NAMESPACE
                            if plan.metrics == "custom"
                            else BUILTIN_NAMESPACE,
                            "MetricName": "Invocations",
                            "Dimensions": [
                                {"Name": "EndpointName", "Value": endpoint},
                                {"Name": "VariantName", "Value": names.CANDIDATE},
                            ],
                        },
                        "Period": period,
                        "Stat": "Sum",
                    },
                    "ReturnData": True,
                }
                for j, (endpoint, plan) in enumerate(chunk)
            ]
            kwargs: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": start, "EndTime": end}
            while True:
                page = call("GetMetricData", clients.cloudwatch.get_metric_data, retry, **kwargs)
                for result in page.get("MetricDataResults", []):
                    counts[ids[result["Id"]]] += float(sum(result.get("Values", [])))
                if not page.get("NextToken"):
                    break
                kwargs["NextToken"] = page["NextToken"]
    return counts


def _read(settings: Settings, params: dict[str, str], quarantines: dict[str, str], only: str | None):
    endpoints: list[PlannedEndpoint] = []
    errors: dict[str, dict[str, Any]] = {}
    prefix = settings.rollout_prefix + "/"
    for name in sorted(params):
        if not (name.startswith(prefix) and name.endswith("/plan")):
            continue
        endpoint = name[len(prefix) : -len("/plan")]
        if only is not None and endpoint != only:
            continue
        try:
            plan = RolloutPlan.parse(name, params[name])
        except ConfigError as exc:
            errors[endpoint] = {"action": "error", "reason": str(exc)}
            continue
        progress = None
        progress_name = settings.progress_parameter(endpoint)
        if progress_name in params:
            try:
                progress = Progress.parse(progress_name, params[progress_name])
            except ConfigError as exc:
                log(
                    logging.WARNING,
                    "unreadable progress record; restarting the plan",
                    endpoint=endpoint,
                    error=str(exc),
                )
        quarantine = None
        q_name = settings.quarantine_parameter(endpoint)
        if q_name in quarantines:
            try:
                quarantine = Quarantine.parse(q_name, quarantines[q_name])
            except ConfigError as exc:
                # An unreadable quarantine record still means someone stopped this candidate.
                log(
                    logging.WARNING,
                    "unreadable quarantine record; treating as quarantined",
                    endpoint=endpoint,
                )
                quarantine = Quarantine(
                    endpoint, str(plan.candidate), names.CANDIDATE, None, str(exc), "", "", "auto"
                )
        endpoints.append(PlannedEndpoint(endpoint, plan, progress, quarantine))
    return endpoints, errors


def _resume_owed(
    clients: Clients, settings: Settings, quarantines: dict[str, str], only: str | None, retry: RetryPolicy
) -> dict[str, dict[str, Any]]:
    """Send the messages quarantine records still owe (``pending``): endpoint -> what happened.

    A drain the stepper started (safety net, quarantine enforcement) whose Publish failed has no
    alarm event that would be delivered again, so the tick that finds the record finishes it.
    Only records with ``pending`` cost calls (GetItem, Publish, PutParameter).
    """
    out: dict[str, dict[str, Any]] = {}
    prefix = settings.quarantine_prefix + "/"
    for name, text in sorted(quarantines.items()):
        endpoint = name[len(prefix) :] if name.startswith(prefix) else None
        if endpoint is None or (only is not None and endpoint != only):
            continue
        try:
            record = Quarantine.parse(name, text)
        except ConfigError:
            continue  # reported by _read as "treating as quarantined"
        if "notify" not in record.pending:
            continue
        try:
            out[endpoint] = resume_followups(clients, settings, record, retry)
        except Exception as exc:  # the next tick tries again
            log(logging.ERROR, "could not send an owed message", endpoint=endpoint, error=str(exc))
            out[endpoint] = {"action": "error", "reason": f"{type(exc).__name__}: {exc}"}
    return out


def _finish_cut_off(
    clients: Clients, settings: Settings, endpoints: list[PlannedEndpoint], retry: RetryPolicy
) -> dict[str, dict[str, Any]]:
    """Finish drains of a released candidate cut off after their commit (no quarantine record yet).

    One BatchGetItem per 100 endpoints with a candidate and no quarantine record (their drain
    markers). A drain the stepper started and was killed after its commit has no event that would
    be delivered again, and a delivery that found it in progress answered ``duplicate``.
    """
    out: dict[str, dict[str, Any]] = {}
    candidates = {
        ep.name: ep.plan.candidate for ep in endpoints if ep.plan.candidate and ep.quarantine is None
    }
    try:
        markers = drain_markers(clients, settings, candidates, retry)
    except Exception as exc:  # the next tick tries again
        log(logging.ERROR, "could not read drain markers", error=str(exc))
        return {}
    for ep in endpoints:
        if ep.name not in markers:
            continue
        try:
            done = finish_cut_off_drain(
                clients, settings, ep.name, candidates[ep.name], markers[ep.name], retry
            )
        except Exception as exc:  # the next tick tries again
            log(logging.ERROR, "could not finish a cut-off drain", endpoint=ep.name, error=str(exc))
            done = {"action": "error", "reason": f"{type(exc).__name__}: {exc}"}
        if done is not None:
            out[ep.name] = done
    return out


def step(
    clients: Clients,
    settings: Settings,
    *,
    actor: str,
    endpoint: str | None = None,
    retry: RetryPolicy | None = None,
) -> dict[str, Any]:
    """One stepper tick over every endpoint with a plan (or just ``endpoint``).

    Per-endpoint failures are reported in the result (``action: error``) and logged; they never
    stop the other endpoints. The returned dict maps endpoint -> what happened and why.
    """
    retry = (retry or RetryPolicy(attempts=3)).bounded()
    now = clock.now()
    only = settings.physical(endpoint) if endpoint else None
    params = call(
        "GetParametersByPath",
        records.get_parameters_by_path,
        retry,
        ssm=clients.ssm,
        path=settings.rollout_prefix,
    )
    quarantines = call(
        "GetParametersByPath",
        records.get_parameters_by_path,
        retry,
        ssm=clients.ssm,
        path=settings.quarantine_prefix,
    )
    endpoints, results = _read(settings, params, quarantines, only)

    chosen = {
        ep.name: decisions.decide_step(ep.plan, ep.progress, now, quarantined=ep.quarantined)
        for ep in endpoints
    }
    active = [ep for ep in endpoints if chosen[ep.name].action == "evaluate"]
    alarms = _alarms(clients, [a for ep in active for a in ep.plan.candidate_alarms], retry) if active else {}
    states = {name: alarm.get("StateValue", "") for name, alarm in alarms.items()}
    for ep in active:
        chosen[ep.name] = decisions.decide_step(ep.plan, ep.progress, now, alarm_states=states)
    baked = [ep for ep in active if chosen[ep.name].action == "evaluate"]
    counts: dict[str, float] = {}
    if baked:
        windows = {}
        for ep in baked:
            assert ep.progress is not None
            start, end = decisions.bake_window(ep.plan, ep.progress, now)
            windows[ep.name] = (ep.plan, start, end)
        counts = _request_counts(clients, windows, retry)

    owed = _resume_owed(clients, settings, quarantines, only, retry)
    owed.update(_finish_cut_off(clients, settings, endpoints, retry))
    for ep in endpoints:
        decision = chosen[ep.name]
        live = None
        extra: dict[str, Any] = {}
        try:
            if ep in baked:
                requests = counts.get(ep.name, 0.0)
                extra["requests"] = requests
                decision = decisions.decide_step(
                    ep.plan, ep.progress, now, alarm_states=states, requests=requests
                )
                if decision.action in ("advance", "finalize"):
                    state = describe_endpoint(clients, ep.name, retry, wait_ready=False)
                    if state.status != "InService":
                        decision = decisions.StepDecision(
                            "hold", f"endpoint is {state.status}; waiting for InService", decision.step_index
                        )
                    else:
                        live = state.weights
                        decision = decisions.decide_step(
                            ep.plan,
                            ep.progress,
                            now,
                            alarm_states=states,
                            requests=requests,
                            live_weights=live,
                        )
            results[ep.name] = {
                **apply_decision(clients, settings, ep, decision, now, actor, retry, alarms, live),
                **extra,
            }
        except Exception as exc:  # one endpoint's failure must not stop the others
            log(logging.ERROR, "stepper failed for endpoint", endpoint=ep.name, error=str(exc))
            results[ep.name] = {"action": "error", "reason": f"{type(exc).__name__}: {exc}"}
        log(logging.INFO, "stepper", endpoint=ep.name, **results[ep.name])
    for name, resumed in owed.items():
        results.setdefault(name, {"action": "none", "reason": "no rollout plan"})["followUps"] = resumed
    return {"stack": settings.stack, "at": clock.iso(now), "endpoints": results}
