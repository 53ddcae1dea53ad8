"""The endpoint's blue/green auto-rollback (guardrail) alarm list never changes with the triggers.

``deployment_config.auto_rollback_configuration`` is ForceNew in the provider: a changed list would
replace the explicitly named endpoint (delete, then create: an outage). So the list is always the
errors + latency alarms of stable and candidate, while the EventBridge rule keeps draining on every
rollback KPI (quality, drift with action rollback).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra.helpers import endpoint_values, run, stack_values

GUARDRAILS = {
    "fraud-scorer-dev-stable-errors",
    "fraud-scorer-dev-stable-latency",
    "fraud-scorer-dev-candidate-errors",
    "fraud-scorer-dev-candidate-latency",
}


def _with_triggers(**triggers: Any) -> dict[str, Any]:
    ep = endpoint_values()
    ep["triggers"].update(triggers)
    return ep


VARIATIONS = {
    "errors and latency only": lambda: endpoint_values(),
    "quality added": lambda: _with_triggers(quality={"metric": "acc", "min": 0.9}),
    "drift notify": lambda: _with_triggers(drift={"maxScore": 0.2, "action": "notify"}),
    "drift rollback": lambda: _with_triggers(drift={"maxScore": 0.2, "action": "rollback"}),
    "quality and drift": lambda: _with_triggers(
        quality={"metric": "acc", "min": 0.9, "max": 1.0}, drift={"maxScore": 0.3}
    ),
    "builtin metrics": lambda: _with_triggers(metrics="builtin", periodSeconds=60),
    "other thresholds": lambda: _with_triggers(errorRate=0.2, p99LatencyMs=50, minSamples=50),
    "no candidate": lambda: endpoint_values(release={"stable": "v1"}),
    "idle candidate": lambda: endpoint_values(
        release={"stable": "v1"},
        strategy={"type": "canary", "steps": [10, 100], "guardrailWaitSeconds": 60, "keepVariantNames": True},
    ),
}


def _guardrails(ep: dict[str, Any]) -> tuple[set[str], set[str], Any]:
    r = run(stack_values(ep))
    config = r.named("fraud-scorer-dev-endpoint").inputs["deploymentConfig"]["autoRollbackConfiguration"]
    declared = {a.inputs["name"] for a in r.of_type("cloudwatch/metricAlarm:MetricAlarm")}
    return {a["alarmName"] for a in config["alarms"]}, declared, r


@pytest.mark.parametrize("variation", sorted(VARIATIONS))
def test_guardrail_list_is_errors_and_latency_of_both_roles_whatever_the_triggers(variation: str) -> None:
    guardrails, declared, _ = _guardrails(VARIATIONS[variation]())
    assert guardrails == GUARDRAILS
    # SageMaker checks the alarms exist when the endpoint is updated: the stack always declares them.
    assert guardrails <= declared


def test_switching_drift_to_rollback_or_adding_quality_keeps_the_guardrail_list_identical() -> None:
    lists = [_guardrails(VARIATIONS[v]())[0] for v in ("errors and latency only", "quality added")]
    lists += [_guardrails(VARIATIONS[v]())[0] for v in ("drift notify", "drift rollback")]
    assert all(x == lists[0] for x in lists), lists


def test_the_alarm_rule_still_drains_on_quality_and_rollback_drift_alarms() -> None:
    ep = _with_triggers(quality={"metric": "acc", "min": 0.9}, drift={"maxScore": 0.2, "action": "rollback"})
    guardrails, _, r = _guardrails(ep)
    pattern = json.loads(r.named("mlrollback-dev-alarm-rule").inputs["eventPattern"])
    drained = set(pattern["detail"]["alarmName"])
    assert {
        "fraud-scorer-dev-candidate-quality",
        "fraud-scorer-dev-candidate-drift",
        "fraud-scorer-dev-stable-quality",
    } <= drained
    assert drained >= GUARDRAILS
    assert "fraud-scorer-dev-candidate-quality" not in guardrails
    plan = json.loads(r.named("fraud-scorer-dev-rollout-plan").inputs["value"])
    assert "fraud-scorer-dev-candidate-quality" in plan["candidateAlarms"]
