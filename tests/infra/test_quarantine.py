"""The program reads the quarantine record so `pulumi up` never silently re-promotes a drained candidate."""

from __future__ import annotations

import json

from tests.infra.helpers import run, stack_values

PARAMETER = "/mlrollback/dev/quarantine/fraud-scorer-dev"


def weights(run_):
    variants = run_.named("fraud-scorer-dev-config").inputs["productionVariants"]
    return {v["variantName"]: v["initialVariantWeight"] for v in variants}


def record(version: str) -> str:
    return json.dumps(
        {
            "endpoint": "fraud-scorer-dev",
            "version": version,
            "variant": "candidate",
            "alarm": "fraud-scorer-dev-candidate-errors",
            "reason": "Threshold Crossed",
            "at": "2026-11-25T19:49:31.123Z",
            "by": "lambda",
            "kind": "auto",
        }
    )


def test_missing_quarantine_record_keeps_the_declared_weights():
    r = run(stack_values())
    assert weights(r) == {"stable": 90, "candidate": 10}
    assert r.warnings == []
    lookups = [i.args["name"] for i in r.invokes if i.token == "aws:ssm/getParameter:getParameter"]
    assert lookups == [PARAMETER]


def test_quarantined_candidate_is_declared_at_zero_with_a_warning_saying_how_to_clear_it():
    r = run(stack_values(), ssm={PARAMETER: record("v2")})
    assert weights(r) == {"stable": 100, "candidate": 0}
    (warning,) = r.warnings
    assert "candidate v2 was rolled back" in warning
    assert "mlrollback clear-quarantine --stack dev --endpoint fraud-scorer" in warning
    assert r.exports["quarantinedEndpoints"] == ["fraud-scorer-dev"]


def test_record_for_another_version_does_not_hold_back_a_new_candidate():
    r = run(stack_values(), ssm={PARAMETER: record("v0")})
    assert weights(r) == {"stable": 90, "candidate": 10}
    assert r.warnings == []


def test_unreadable_record_fails_safe_to_zero_weight_with_a_warning():
    r = run(stack_values(), ssm={PARAMETER: "{not json"})
    assert weights(r) == {"stable": 100, "candidate": 0}
    (warning,) = r.warnings
    assert "not valid JSON" in warning


def test_quarantine_does_not_change_the_rollout_plan_or_alarms():
    clean = run(stack_values())
    held = run(stack_values(), ssm={PARAMETER: record("v2")})
    plan = "fraud-scorer-dev-rollout-plan"
    assert clean.named(plan).inputs["value"] == held.named(plan).inputs["value"]
    endpoint = "fraud-scorer-dev-endpoint"
    assert clean.named(endpoint).inputs["deploymentConfig"] == held.named(endpoint).inputs["deploymentConfig"]
