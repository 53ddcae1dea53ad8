"""The committed dev, staging and prod stacks: valid, different where they should be, fully wired."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.config import load_stack_file
from infra.testing import run_stack_file

ENVIRONMENTS = Path(__file__).resolve().parents[2] / "environments"


def stack_run(stack: str):
    return run_stack_file(ENVIRONMENTS / f"Pulumi.{stack}.yaml")


def variants(run_, endpoint):
    config = run_.named(f"{endpoint}-config").inputs
    return {v["variantName"]: v for v in config["productionVariants"]}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_environment_declares_stable_v1_and_candidate_v2_with_full_machinery(stack):
    r = stack_run(stack)
    by_role = variants(r, f"fraud-scorer-{stack}")
    assert by_role["stable"]["modelName"] == f"fraud-scorer-{stack}-model-v1"
    assert by_role["candidate"]["modelName"] == f"fraud-scorer-{stack}-model-v2"
    assert by_role["stable"]["initialVariantWeight"] + by_role["candidate"]["initialVariantWeight"] == 100
    for name in ("rollback", "stepper"):
        assert r.named(f"mlrollback-{stack}-{name}").inputs["name"] == f"mlrollback-{stack}-{name}"
    assert r.named(f"mlrollback-{stack}-audit").inputs["pointInTimeRecovery"] == {"enabled": True}
    pattern = json.loads(r.named(f"mlrollback-{stack}-alarm-rule").inputs["eventPattern"])
    assert f"fraud-scorer-{stack}-candidate-errors" in pattern["detail"]["alarmName"]
    assert r.exports["auditTableName"] == f"mlrollback-{stack}-audit"
    assert r.warnings == []


def test_dev_is_small_fast_and_unrehearsed():
    cfg = load_stack_file(ENVIRONMENTS / "Pulumi.dev.yaml")
    (ep,) = cfg.endpoints
    assert (ep.instance_type, ep.instance_count) == ("ml.t2.medium", 1)
    assert ep.strategy.steps == (10, 50, 100)
    assert ep.triggers.metrics == "custom" and ep.triggers.period_seconds == 10
    assert not cfg.rehearsal.required and not cfg.production
    alarm = stack_run("dev").named("fraud-scorer-dev-candidate-errors").inputs
    assert {q["metric"]["period"] for q in alarm["metricQueries"] if "metric" in q} == {10}


def test_staging_rolls_back_on_ten_second_metrics_and_churn_like_prod_and_prod_requires_its_rehearsal():
    cfg = load_stack_file(ENVIRONMENTS / "Pulumi.staging.yaml")
    prod = load_stack_file(ENVIRONMENTS / "Pulumi.prod.yaml")
    assert cfg.rehearsal.required is False
    assert (prod.rehearsal.required, prod.rehearsal.source, prod.rehearsal.max_age_hours) == (
        True,
        "staging",
        48,
    )
    assert cfg.endpoints[0].instance_type == prod.endpoints[0].instance_type
    fraud, churn = cfg.endpoint("fraud-scorer").triggers, cfg.endpoint("churn-predictor").triggers
    # fraud-scorer: the client-published 10-second metrics, 3 of 6 (drains within ~a minute);
    # churn-predictor: the same 1-minute built-in metrics as prod, so its rehearsal predicts prod.
    assert (fraud.metrics, fraud.period_seconds, fraud.datapoints_to_alarm) == ("custom", 10, 3)
    assert (churn.metrics, churn.period_seconds) == (prod.endpoint("churn-predictor").triggers.metrics, 60)
    run = stack_run("staging")
    latency = run.named("fraud-scorer-staging-stable-latency").inputs
    assert {q["metric"]["namespace"] for q in latency["metricQueries"] if "metric" in q} == {
        "MLRollback/Endpoints"
    }
    churn_latency = run.named("churn-predictor-staging-stable-latency").inputs
    assert {q["metric"]["period"] for q in churn_latency["metricQueries"] if "metric" in q} == {60}
    # Quality comes from a job: its alarm keeps a one-minute period even beside 10-second KPIs.
    quality = run.named("fraud-scorer-staging-candidate-quality").inputs
    assert quality["period"] == 60


def test_prod_is_production_conservative_and_protected():
    cfg = load_stack_file(ENVIRONMENTS / "Pulumi.prod.yaml")
    fraud = cfg.endpoint("fraud-scorer")
    assert cfg.production is True
    assert all(ep.instance_count >= 2 for ep in cfg.endpoints)
    assert fraud.strategy.steps == (5, 10, 25, 50, 100)
    assert (
        fraud.strategy.bake_minutes
        >= load_stack_file(ENVIRONMENTS / "Pulumi.staging.yaml").endpoints[0].strategy.bake_minutes
    )
    r = stack_run("prod")
    assert variants(r, "fraud-scorer-prod")["candidate"]["initialVariantWeight"] == 5
    assert r.named("mlrollback-prod-audit").inputs["deletionProtectionEnabled"] is True
    policy = r.named("fraud-scorer-prod-endpoint").inputs["deploymentConfig"]["blueGreenUpdatePolicy"]
    # 5 % of 3 instances is less than one: the guardrail canary is one whole instance
    assert policy["trafficRoutingConfiguration"]["canarySize"] == {"type": "INSTANCE_COUNT", "value": 1}
    assert policy["trafficRoutingConfiguration"]["waitIntervalInSeconds"] == 900


def test_prod_churn_predictor_runs_its_new_version_in_shadow():
    r = stack_run("prod")
    config = r.named("churn-predictor-prod-config").inputs
    assert [v["variantName"] for v in config["productionVariants"]] == ["stable"]
    assert [v["variantName"] for v in config["shadowProductionVariants"]] == ["shadow"]


def test_staging_runs_the_drift_job_for_its_drift_configured_endpoint():
    cfg = load_stack_file(ENVIRONMENTS / "Pulumi.staging.yaml")
    drifting = [ep.physical_name for ep in cfg.endpoints if ep.triggers.drift is not None]
    assert drifting == ["churn-predictor-staging"]
    r = stack_run("staging")
    fn = r.named("mlrollback-staging-drift-function").inputs
    assert fn["handler"] == "rollback.runtime.handler.on_drift"
    assert fn["environment"]["variables"]["MLROLLBACK_DRIFT_PREFIX"] == "/mlrollback/staging/drift"
    jobs = [
        json.loads(p.inputs["value"])
        for p in r.of_type("ssm/parameter:Parameter")
        if p.inputs["name"].startswith("/mlrollback/staging/drift/")
    ]
    bucket = r.named("mlrollback-staging-registry-artifacts").outputs["bucket"]
    assert [(j["endpoint"], j["captureUri"], j["maxScore"]) for j in jobs] == [
        ("churn-predictor-staging", f"s3://{bucket}/data-capture", 0.2)
    ]
    schedule = r.named("mlrollback-staging-drift-schedule-rule").inputs
    assert schedule["scheduleExpression"] == "rate(15 minutes)"
    assert r.exports["functionNames"]["drift"] == "mlrollback-staging-drift"
