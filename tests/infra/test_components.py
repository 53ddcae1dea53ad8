"""Per-component behaviour of the program under Pulumi's mock runtime (fresh runtime per test)."""

from __future__ import annotations

import fnmatch
import json

import pytest

from infra.runtime_records import rollout_plan
from infra.validation import validate
from rollback.runtime import names
from rollback.sandbox.alarm_evaluator import evaluate_expression
from tests.infra.helpers import endpoint_values, policy_statements, run, stack_values

STABLE_ALARMS = ["fraud-scorer-dev-stable-errors", "fraud-scorer-dev-stable-latency"]
CANDIDATE_ALARMS = ["fraud-scorer-dev-candidate-errors", "fraud-scorer-dev-candidate-latency"]


def variants(run_, endpoint="fraud-scorer-dev"):
    cfg = run_.named(f"{endpoint}-config").inputs
    return {v["variantName"]: v for v in cfg["productionVariants"]}, cfg


# --- Registry -----------------------------------------------------------------------------------


def test_created_bucket_is_versioned_kms_encrypted_private_and_owner_enforced():
    r = run(stack_values())
    bucket = r.named("mlrollback-dev-registry-artifacts").outputs["bucket"]
    key_arn = r.named("mlrollback-dev-registry-key").outputs["arn"]
    assert r.named("mlrollback-dev-registry-artifacts-versioning").inputs["versioningConfiguration"] == {
        "status": "Enabled"
    }
    rule = r.named("mlrollback-dev-registry-artifacts-encryption").inputs["rules"][0]
    assert rule["applyServerSideEncryptionByDefault"] == {
        "sseAlgorithm": "aws:kms",
        "kmsMasterKeyId": key_arn,
    }
    block = r.named("mlrollback-dev-registry-artifacts-public-access").inputs
    assert all(
        block[k]
        for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    assert block["bucket"] == bucket
    ownership = r.named("mlrollback-dev-registry-artifacts-ownership").inputs
    assert ownership["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    assert r.named("mlrollback-dev-registry-key").inputs["enableKeyRotation"] is True


def test_created_bucket_refuses_requests_without_tls():
    r = run(stack_values())
    artifacts = r.named("mlrollback-dev-registry-artifacts")
    policy = r.named("mlrollback-dev-registry-artifacts-tls-only").inputs
    assert policy["bucket"] == artifacts.outputs["bucket"]
    (statement,) = json.loads(policy["policy"])["Statement"]
    assert statement["Effect"] == "Deny" and statement["Principal"] == "*"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    arn = artifacts.outputs["arn"]
    assert statement["Resource"] == [arn, f"{arn}/*"]


def test_brought_in_bucket_creates_no_bucket_and_receives_data_capture():
    r = run(stack_values(artifacts={"create": False, "bucket": "team-ml-artifacts"}))
    assert r.of_type("s3/bucket:Bucket") == []
    assert r.of_type("kms/key:Key") != []  # the notifications key still exists
    _, cfg = variants(r)
    assert cfg["dataCaptureConfig"]["destinationS3Uri"] == "s3://team-ml-artifacts/data-capture"


def test_one_model_package_group_per_endpoint():
    r = run(stack_values(endpoint_values("a"), endpoint_values("b")))
    groups = sorted(
        g.inputs["modelPackageGroupName"] for g in r.of_type("sagemaker/modelPackageGroup:ModelPackageGroup")
    )
    assert groups == ["a-dev", "b-dev"]
    assert groups == [names.model_package_group_name("dev", e) for e in ("a-dev", "b-dev")]


def test_model_package_group_name_refuses_an_endpoint_of_another_stack():
    with pytest.raises(ValueError, match="does not belong to stack 'dev'"):
        names.model_package_group_name("dev", "a-prod")


# --- Endpoint -----------------------------------------------------------------------------------


def test_variants_are_named_by_role_and_candidate_starts_at_first_step():
    by_role, cfg = variants(run(stack_values()))
    assert set(by_role) == {"stable", "candidate"}
    assert by_role["stable"]["initialVariantWeight"] == 90
    assert by_role["candidate"]["initialVariantWeight"] == 10
    assert by_role["stable"]["modelName"] == "fraud-scorer-dev-model-v1"
    assert by_role["candidate"]["modelName"] == "fraud-scorer-dev-model-v2"
    assert by_role["candidate"]["instanceType"] == "ml.m5.large"
    assert cfg["dataCaptureConfig"]["initialSamplingPercentage"] == 20
    assert "shadowProductionVariants" not in cfg


def test_stable_only_release_declares_one_variant_at_full_weight():
    by_role, _ = variants(run(stack_values(endpoint_values(release={"stable": "v1"}))))
    assert list(by_role) == ["stable"]
    assert by_role["stable"]["initialVariantWeight"] == 100


def test_one_model_per_version_in_use_with_framework_image_resolved_by_the_provider():
    r = run(stack_values())
    models = {m.name: m.inputs["primaryContainer"] for m in r.of_type("sagemaker/model:Model")}
    assert set(models) == {"fraud-scorer-dev-model-v1", "fraud-scorer-dev-model-v2"}
    assert (
        models["fraud-scorer-dev-model-v1"]["image"]
        == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/fraud:1.0"
    )
    v2 = models["fraud-scorer-dev-model-v2"]
    assert v2["image"].endswith(".dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:1.7-1")
    assert v2["modelDataUrl"] == "s3://models-bucket/fraud/v2/model.tar.gz"
    lookups = [i.args for i in r.invokes if i.token.endswith("getPrebuiltEcrImage")]
    assert lookups == [{"repositoryName": "sagemaker-xgboost", "imageTag": "1.7-1", "region": "eu-west-1"}]


def test_unused_catalog_versions_get_no_model():
    ep = endpoint_values(release={"stable": "v1"})
    r = run(stack_values(ep))
    assert [m.name for m in r.of_type("sagemaker/model:Model")] == ["fraud-scorer-dev-model-v1"]


def test_shadow_variant_is_declared_as_shadow_production_variant():
    ep = endpoint_values(
        release={"stable": "v1", "shadow": "v2"}, strategy={"type": "shadow", "shadowPercent": 50}
    )
    by_role, cfg = variants(run(stack_values(ep)))
    assert list(by_role) == ["stable"]
    (shadow,) = cfg["shadowProductionVariants"]
    assert shadow["variantName"] == "shadow"
    assert shadow["initialVariantWeight"] == 50
    assert shadow["modelName"] == "fraud-scorer-dev-model-v2"


def test_endpoint_uses_physical_name_and_retains_replaced_configs():
    r = run(stack_values())
    endpoint = r.named("fraud-scorer-dev-endpoint").inputs
    assert endpoint["name"] == "fraud-scorer-dev"
    config = r.named("fraud-scorer-dev-config")
    assert "name" not in config.inputs  # auto-named: every attribute forces replacement
    assert endpoint["endpointConfigName"] == config.outputs["name"]


@pytest.mark.parametrize(
    ("strategy", "routing"),
    [
        (
            {"type": "canary", "steps": [10, 50, 100], "guardrailWaitSeconds": 120},
            {
                "type": "CANARY",
                "waitIntervalInSeconds": 120,
                "canarySize": {"type": "CAPACITY_PERCENT", "value": 10},
            },
        ),
        (
            {"type": "canary", "steps": [75, 100], "guardrailWaitSeconds": 120},
            {
                "type": "CANARY",
                "waitIntervalInSeconds": 120,
                "canarySize": {"type": "CAPACITY_PERCENT", "value": 50},
            },
        ),
        (
            {"type": "linear", "stepPercent": 25, "guardrailWaitSeconds": 120},
            {
                "type": "LINEAR",
                "waitIntervalInSeconds": 120,
                "linearStepSize": {"type": "CAPACITY_PERCENT", "value": 25},
            },
        ),
        (
            {"type": "blue-green", "guardrailWaitSeconds": 600},
            {"type": "ALL_AT_ONCE", "waitIntervalInSeconds": 600},
        ),
        ({"type": "ab", "guardrailWaitSeconds": 300}, {"type": "ALL_AT_ONCE", "waitIntervalInSeconds": 300}),
        (
            {"type": "all-at-once", "guardrailWaitSeconds": 600},
            {"type": "ALL_AT_ONCE", "waitIntervalInSeconds": 60},
        ),
    ],
)
def test_deployment_config_follows_the_strategy(strategy, routing):
    strategy = {**strategy, "maxExecutionTimeoutSeconds": 2400}
    r = run(stack_values(endpoint_values(strategy=strategy, instanceCount=10)))
    policy = r.named("fraud-scorer-dev-endpoint").inputs["deploymentConfig"]["blueGreenUpdatePolicy"]
    assert policy["trafficRoutingConfiguration"] == routing
    assert policy["maximumExecutionTimeoutInSeconds"] == 2400


@pytest.mark.parametrize(
    ("strategy", "instances", "field"),
    [
        ({"type": "canary", "steps": [5, 100]}, 3, "canarySize"),  # 5 % of 3 = 0.15 instance
        ({"type": "linear", "stepPercent": 10}, 2, "linearStepSize"),  # 10 % of 2 = 0.2 instance
    ],
)
def test_a_batch_smaller_than_one_instance_is_one_instance(strategy, instances, field):
    # SageMaker shifts whole instances; one of two or more is a valid canary and linear step.
    strategy = {**strategy, "guardrailWaitSeconds": 120}
    r = run(stack_values(endpoint_values(strategy=strategy, instanceCount=instances)))
    routing = r.named("fraud-scorer-dev-endpoint").inputs["deploymentConfig"]["blueGreenUpdatePolicy"][
        "trafficRoutingConfiguration"
    ]
    assert routing[field] == {"type": "INSTANCE_COUNT", "value": 1}


@pytest.mark.parametrize("strategy", [{"type": "canary", "steps": [10, 100]}, {"type": "linear"}])
def test_one_instance_fleet_shifts_config_changes_all_at_once(strategy):
    # CanarySize must be <= 50 % and LinearStepSize 10-50 % of the variant's instances.
    strategy = {**strategy, "guardrailWaitSeconds": 120}
    r = run(stack_values(endpoint_values(strategy=strategy, instanceCount=1)))
    policy = r.named("fraud-scorer-dev-endpoint").inputs["deploymentConfig"]["blueGreenUpdatePolicy"]
    assert policy["trafficRoutingConfiguration"] == {"type": "ALL_AT_ONCE", "waitIntervalInSeconds": 120}


def test_auto_rollback_alarms_are_the_errors_and_latency_alarms_of_both_roles():
    r = run(stack_values())
    alarms = r.named("fraud-scorer-dev-endpoint").inputs["deploymentConfig"]["autoRollbackConfiguration"][
        "alarms"
    ]
    assert [a["alarmName"] for a in alarms] == STABLE_ALARMS + CANDIDATE_ALARMS


def test_auto_rollback_alarm_list_does_not_change_when_the_release_changes():
    def alarm_list(release):
        r = run(stack_values(endpoint_values(release=release)))
        return r.named("fraud-scorer-dev-endpoint").inputs["deploymentConfig"]["autoRollbackConfiguration"]

    assert alarm_list({"stable": "v1", "candidate": "v2"}) == alarm_list({"stable": "v2"})


def test_rollout_plan_parameter_holds_the_plan_json():
    values = stack_values()
    r = run(values)
    param = r.named("fraud-scorer-dev-rollout-plan").inputs
    assert param["name"] == "/mlrollback/dev/rollout/fraud-scorer-dev/plan"
    assert param["type"] == "String"
    expected = rollout_plan(validate(values, stack="dev", region="eu-west-1", source="x").endpoints[0])
    assert json.loads(param["value"]) == expected


def test_execution_role_reads_only_the_model_buckets_and_pulls_only_the_images_in_use():
    statements = {
        s["Sid"]: s for s in policy_statements(run(stack_values()), "fraud-scorer-dev-execution-policy")
    }
    assert statements["ReadModelArtifacts"]["Resource"] == ["arn:aws:s3:::models-bucket/*"]
    assert statements["ListModelBuckets"]["Resource"] == ["arn:aws:s3:::models-bucket"]
    assert statements["WriteDataCapture"]["Resource"] == [
        "arn:aws:s3:::mlrollback-dev-registry-artifacts-0000000/data-capture/fraud-scorer-dev/*"
    ]
    pulls = statements["PullImages"]["Resource"]
    assert "arn:aws:ecr:eu-west-1:123456789012:repository/fraud" in pulls
    assert any(p.endswith(":repository/sagemaker-xgboost") for p in pulls)
    for s in statements.values():
        assert all("*" not in a for a in s["Action"])


# --- Alarms -------------------------------------------------------------------------------------


def alarms_by_name(run_):
    return {a.inputs["name"]: a.inputs for a in run_.of_type("cloudwatch/metricAlarm:MetricAlarm")}


def test_candidate_alarms_exist_even_without_a_candidate():
    alarms = alarms_by_name(run(stack_values(endpoint_values(release={"stable": "v1"}))))
    assert sorted(alarms) == sorted(STABLE_ALARMS + CANDIDATE_ALARMS)
    assert alarms["fraud-scorer-dev-candidate-errors"]["alarmDescription"].endswith(
        "mlrollback: endpoint=fraud-scorer-dev role=candidate kpi=errors version=-"
    )


def test_alarm_names_are_stable_when_the_candidate_version_changes_but_markers_follow_it():
    ep1 = endpoint_values()
    ep2 = endpoint_values(release={"stable": "v1", "candidate": "v3"})
    ep2["versions"]["v3"] = {
        "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/fraud:3",
        "modelDataUrl": "s3://models-bucket/fraud/v3/m.tar.gz",
    }
    first, second = alarms_by_name(run(stack_values(ep1))), alarms_by_name(run(stack_values(ep2)))
    assert sorted(first) == sorted(second)
    marker = second["fraud-scorer-dev-candidate-latency"]["alarmDescription"].splitlines()[-1]
    assert marker == "mlrollback: endpoint=fraud-scorer-dev role=candidate kpi=latency version=v3"
    assert first["fraud-scorer-dev-candidate-latency"]["alarmDescription"].endswith("version=v2")


def test_custom_metric_alarms_use_ten_second_metric_math_on_the_custom_namespace():
    alarms = alarms_by_name(run(stack_values()))
    errors = alarms["fraud-scorer-dev-candidate-errors"]
    assert errors["treatMissingData"] == "notBreaching"
    assert (errors["evaluationPeriods"], errors["datapointsToAlarm"]) == (3, 2)
    queries = {q["id"]: q for q in errors["metricQueries"]}
    assert queries["rate"]["returnData"] is True
    rate = queries["rate"]["expression"]
    # The sample guard, evaluated as CloudWatch would (the sandbox's metric-math evaluator):
    assert evaluate_expression(rate, {"errors": 3, "invocations": 20}) == 0.15
    assert evaluate_expression(rate, {"errors": 1, "invocations": 10}) == 0  # one bad request
    assert evaluate_expression(rate, {"errors": 8, "invocations": 9}) == 0  # below minSamples (10)
    assert evaluate_expression(rate, {"errors": None, "invocations": None}) is None  # missing
    metric = queries["errors"]["metric"]
    assert metric["namespace"] == "MLRollback/Endpoints"
    assert metric["metricName"] == "Errors"
    assert metric["period"] == 10
    assert metric["dimensions"] == {"EndpointName": "fraud-scorer-dev", "VariantName": "candidate"}
    assert errors["threshold"] == 0.05
    latency = alarms["fraud-scorer-dev-candidate-latency"]
    lq = {q["id"]: q for q in latency["metricQueries"]}
    assert {
        i: (q["metric"]["metricName"], q["metric"]["stat"], q["metric"]["period"])
        for i, q in lq.items()
        if "metric" in q
    } == {
        "p99": ("Latency", "p99", 10),
        "n": ("Latency", "SampleCount", 10),
        "slow": ("Latency", "TC(1000:)", 10),
    }
    guard = lq["latency"]["expression"]
    assert latency["threshold"] == 1000
    assert evaluate_expression(guard, {"p99": 1500.0, "n": 20, "slow": 1}) == 0  # one slow request
    assert evaluate_expression(guard, {"p99": 1500.0, "n": 20, "slow": 2}) == 1500.0
    assert evaluate_expression(guard, {"p99": 1500.0, "n": 3, "slow": 3}) == 0


def test_builtin_metric_alarms_use_sagemaker_one_minute_metrics_and_microseconds():
    ep = endpoint_values()
    ep["triggers"] = {"metrics": "builtin", "periodSeconds": 60, "p99LatencyMs": 300}
    alarms = alarms_by_name(run(stack_values(ep)))
    queries = {q["id"]: q for q in alarms["fraud-scorer-dev-stable-errors"]["metricQueries"]}
    assert queries["errors"]["metric"]["namespace"] == "AWS/SageMaker"
    assert queries["errors"]["metric"]["metricName"] == "Invocation5XXErrors"
    assert queries["invocations"]["metric"]["period"] == 60
    latency = alarms["fraud-scorer-dev-stable-latency"]
    lq = {q["id"]: q for q in latency["metricQueries"]}
    assert {(q["metric"]["namespace"], q["metric"]["metricName"]) for q in lq.values() if "metric" in q} == {
        ("AWS/SageMaker", "ModelLatency")
    }
    assert lq["slow"]["metric"]["stat"] == "TC(300000:)"  # ModelLatency is in microseconds
    assert latency["threshold"] == 300_000


def test_quality_and_drift_triggers_add_alarms_and_notify_only_drift_stays_out_of_rollbacks():
    ep = endpoint_values()
    ep["triggers"]["quality"] = {"metric": "accuracy", "min": 0.9}
    ep["triggers"]["drift"] = {"maxScore": 0.2, "action": "notify"}
    r = run(stack_values(ep))
    alarms = alarms_by_name(r)
    quality = alarms["fraud-scorer-dev-candidate-quality"]
    assert (quality["metricName"], quality["comparisonOperator"], quality["threshold"]) == (
        "Quality",
        "LessThanThreshold",
        0.9,
    )
    drift = alarms["fraud-scorer-dev-candidate-drift"]
    assert drift["alarmActions"] == [r.named("mlrollback-dev-topic").outputs["arn"]]
    pattern = json.loads(r.named("mlrollback-dev-alarm-rule").inputs["eventPattern"])
    assert "fraud-scorer-dev-candidate-quality" in pattern["detail"]["alarmName"]
    assert "fraud-scorer-dev-candidate-drift" not in pattern["detail"]["alarmName"]
    guard = r.named("fraud-scorer-dev-endpoint").inputs["deploymentConfig"]["autoRollbackConfiguration"][
        "alarms"
    ]
    assert {"alarmName": "fraud-scorer-dev-candidate-drift"} not in guard


def test_quality_with_both_bounds_alarms_outside_the_band():
    ep = endpoint_values()
    ep["triggers"]["quality"] = {"metric": "calibration", "min": 0.8, "max": 1.2}
    quality = alarms_by_name(run(stack_values(ep)))["fraud-scorer-dev-stable-quality"]
    expression = next(q["expression"] for q in quality["metricQueries"] if q["returnData"])
    assert expression == "IF(quality < 0.8 OR quality > 1.2, 1, 0)"


# --- AutoRollback -------------------------------------------------------------------------------


def test_alarm_rule_matches_alarm_state_changes_of_this_stack_to_alarm_only():
    r = run(stack_values())
    rule = r.named("mlrollback-dev-alarm-rule").inputs
    assert rule["name"] == "mlrollback-dev-candidate-alarms"
    pattern = json.loads(rule["eventPattern"])
    assert pattern["source"] == ["aws.cloudwatch"]
    assert pattern["detail-type"] == ["CloudWatch Alarm State Change"]
    assert pattern["detail"]["state"] == {"value": ["ALARM"]}
    assert pattern["detail"]["alarmName"] == sorted(STABLE_ALARMS + CANDIDATE_ALARMS)


def test_alarm_target_retries_into_an_encrypted_dead_letter_queue_scoped_to_the_rule():
    r = run(stack_values())
    target = r.named("mlrollback-dev-alarm-target").inputs
    dlq = r.named("mlrollback-dev-dlq")
    rule_arn = r.named("mlrollback-dev-alarm-rule").outputs["arn"]
    assert target["arn"] == r.named("mlrollback-dev-rollback").outputs["arn"]
    assert target["retryPolicy"]["maximumRetryAttempts"] > 0
    assert target["deadLetterConfig"] == {"arn": dlq.outputs["arn"]}
    assert dlq.inputs["sqsManagedSseEnabled"] is True
    assert dlq.inputs["name"] == "mlrollback-dev-rollback-dlq"
    (statement,) = json.loads(r.named("mlrollback-dev-dlq-policy").inputs["policy"])["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": rule_arn}}


def test_schedule_rule_runs_the_stepper_every_minute_and_permissions_are_scoped_to_rules():
    r = run(stack_values())
    assert r.named("mlrollback-dev-schedule-rule").inputs["scheduleExpression"] == "rate(1 minute)"
    assert r.named("mlrollback-dev-schedule-rule").inputs["name"] == "mlrollback-dev-rollout-stepper"
    assert (
        r.named("mlrollback-dev-schedule-target").inputs["arn"]
        == r.named("mlrollback-dev-stepper").outputs["arn"]
    )
    for kind, fn in (("alarm", "rollback"), ("schedule", "stepper")):
        perm = r.named(f"mlrollback-dev-{kind}-permission").inputs
        assert perm["principal"] == "events.amazonaws.com"
        assert perm["sourceArn"] == r.named(f"mlrollback-dev-{kind}-rule").outputs["arn"]
        assert perm["function"] == f"mlrollback-dev-{fn}"


def test_rollback_alarms_also_invoke_the_rollback_function_directly_scoped_to_the_stack():
    """Two delivery paths per state change (rule and alarm action); the drain's idempotency key
    makes the second a duplicate. The permission admits this account's alarms of this stack only."""
    r = run(stack_values())
    fn_arn = r.named("mlrollback-dev-rollback").outputs["arn"]
    alarms = alarms_by_name(r)
    for name in ("fraud-scorer-dev-candidate-errors", "fraud-scorer-dev-stable-latency"):
        assert alarms[name]["alarmActions"] == [fn_arn]
    perm = r.named("mlrollback-dev-alarm-action-permission").inputs
    assert perm["principal"] == "lambda.alarms.cloudwatch.amazonaws.com"
    assert perm["function"] == "mlrollback-dev-rollback" and perm["action"] == "lambda:InvokeFunction"
    assert perm["sourceAccount"] == "123456789012"
    assert perm["sourceArn"] == "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:*-dev-*"
    assert fnmatch.fnmatchcase(
        "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:fraud-scorer-dev-candidate-errors", perm["sourceArn"]
    )
    assert not fnmatch.fnmatchcase(
        "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:fraud-scorer-prod-candidate-errors",
        perm["sourceArn"],
    )


@pytest.mark.parametrize(("kind", "handler"), [("rollback", "on_alarm"), ("stepper", "on_schedule")])
def test_lambdas_run_the_rollback_package_with_the_contract_environment(kind, handler):
    r = run(stack_values())
    fn = r.named(f"mlrollback-dev-{kind}").inputs
    assert fn["name"] == f"mlrollback-dev-{kind}"
    assert fn["handler"] == f"rollback.runtime.handler.{handler}"
    assert fn["runtime"] == "python3.12"
    assert fn["environment"]["variables"] == {
        "MLROLLBACK_STACK": "dev",
        "MLROLLBACK_AUDIT_TABLE": "mlrollback-dev-audit",
        "MLROLLBACK_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:mlrollback-dev-alerts",
        "MLROLLBACK_QUARANTINE_PREFIX": "/mlrollback/dev/quarantine",
        "MLROLLBACK_ROLLOUT_PREFIX": "/mlrollback/dev/rollout",
    }
    files = set(fn["code"].assets)
    assert "rollback/runtime/names.py" in files
    assert "rollback/runtime/errors.py" in files
    assert not any(f.startswith(("rollback/cli/", "rollback/sandbox/")) or "__pycache__" in f for f in files)


@pytest.mark.parametrize("kind", ["rollback", "stepper"])
def test_lambda_roles_list_actions_and_scope_resources_to_this_stack(kind):
    r = run(stack_values(endpoint_values("a"), endpoint_values("b")))
    statements = {s["Sid"]: s for s in policy_statements(r, f"mlrollback-dev-{kind}-policy")}
    for s in statements.values():
        assert s["Effect"] == "Allow"
        assert all(a != "*" and not a.endswith(":*") for a in s["Action"]), s
    # the one write (weights update) names each endpoint; a same-suffix endpoint is not covered
    assert statements["Endpoints"]["Resource"] == [
        "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/a-dev",
        "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/b-dev",
    ]
    assert statements["EndpointConfigs"]["Resource"] == [
        "arn:aws:sagemaker:eu-west-1:123456789012:endpoint-config/*-dev-config-*"
    ]
    assert statements["Alarms"]["Resource"] == [
        f"arn:aws:cloudwatch:eu-west-1:123456789012:alarm:*-dev-{role}-{kpi}"
        for role in ("candidate", "stable")
        for kpi in ("errors", "latency")
    ]
    assert statements["Audit"]["Resource"] == [r.named("mlrollback-dev-audit").outputs["arn"]]
    assert statements["Notify"]["Resource"] == [r.named("mlrollback-dev-topic").outputs["arn"]]
    log_arn = r.named(f"mlrollback-dev-{kind}-logs").outputs["arn"]
    assert statements["Logs"]["Resource"] == [f"{log_arn}:*"]
    assert statements["Quarantine"]["Resource"] == [
        "arn:aws:ssm:eu-west-1:123456789012:parameter/mlrollback/dev/quarantine/*"
    ]
    wildcard = [s["Sid"] for s in statements.values() if "*" in s["Resource"]]
    assert wildcard == ["Metrics"]  # GetMetricData only: no resource-level permissions exist


def test_audit_table_topic_and_subscriptions_are_encrypted_and_named_by_contract():
    r = run(stack_values(notifications={"emails": ["a@example.com", "b@example.com"]}, production=True))
    table = r.named("mlrollback-dev-audit").inputs
    assert table["name"] == "mlrollback-dev-audit"
    assert (table["hashKey"], table["rangeKey"], table["billingMode"]) == (
        "endpoint",
        "at",
        "PAY_PER_REQUEST",
    )
    assert table["attributes"] == [{"name": "endpoint", "type": "S"}, {"name": "at", "type": "S"}]
    assert table["pointInTimeRecovery"] == {"enabled": True}
    assert table["serverSideEncryption"]["enabled"] is True
    assert table["deletionProtectionEnabled"] is True
    topic = r.named("mlrollback-dev-topic").inputs
    assert topic["name"] == "mlrollback-dev-alerts"
    assert topic["kmsMasterKeyId"] == r.named("mlrollback-dev-key").outputs["arn"]
    subs = sorted(s.inputs["endpoint"] for s in r.of_type("sns/topicSubscription:TopicSubscription"))
    assert subs == ["a@example.com", "b@example.com"]


def test_components_parent_their_children_and_exports_name_everything():
    r = run(stack_values())
    types = {c.typ for c in r.resources if not c.custom}
    assert types == {
        "mlrollback:registry:Registry",
        "mlrollback:endpoint:Endpoint",
        "mlrollback:alarms:Alarms",
        "mlrollback:autorollback:AutoRollback",
    }
    assert r.exports["endpointNames"] == {"fraud-scorer": "fraud-scorer-dev"}
    assert sorted(r.exports["alarmNames"]) == sorted(STABLE_ALARMS + CANDIDATE_ALARMS)
    assert r.exports["functionNames"] == {
        "rollback": "mlrollback-dev-rollback",
        "stepper": "mlrollback-dev-stepper",
    }
    assert r.exports["topicArn"] == "arn:aws:sns:eu-west-1:123456789012:mlrollback-dev-alerts"
    assert r.exports["auditTableName"] == "mlrollback-dev-audit"


def test_many_alarms_are_split_over_rules_that_fit_eventbridge_pattern_limit():
    r = run(stack_values(*(endpoint_values(f"model-{i:02d}") for i in range(30))))
    rules = [
        res
        for res in r.resources
        if res.typ == "aws:cloudwatch/eventRule:EventRule" and "eventPattern" in res.inputs
    ]
    assert len(rules) > 1
    assert {"mlrollback-dev-candidate-alarms", "mlrollback-dev-candidate-alarms-2"} <= {
        rule.inputs["name"] for rule in rules
    }
    routed: list[str] = []
    for rule in rules:
        assert len(rule.inputs["eventPattern"]) <= 2048
        routed += json.loads(rule.inputs["eventPattern"])["detail"]["alarmName"]
    expected = {
        f"model-{i:02d}-dev-{role}-{kpi}"
        for i in range(30)
        for role in ("stable", "candidate")
        for kpi in ("errors", "latency")
    }
    assert sorted(routed) == sorted(expected)  # every alarm once, none twice
    rollback_arn = r.named("mlrollback-dev-rollback").outputs["arn"]
    targets = [res.inputs for res in r.resources if res.typ == "aws:cloudwatch/eventTarget:EventTarget"]
    permissions = [res.inputs for res in r.resources if res.typ == "aws:lambda/permission:Permission"]
    dlq_policy = json.loads(r.named("mlrollback-dev-dlq-policy").inputs["policy"])["Statement"][0]
    for rule in rules:
        assert any(
            t["rule"] == rule.inputs["name"] and t["arn"] == rollback_arn and t["deadLetterConfig"]
            for t in targets
        )
        assert any(p["sourceArn"] == rule.outputs["arn"] for p in permissions)
        assert rule.outputs["arn"] in dlq_policy["Condition"]["ArnEquals"]["aws:SourceArn"]


def test_dotted_version_keys_become_valid_sagemaker_model_names():
    ep = endpoint_values()
    ep["versions"]["2025.07_19"] = dict(ep["versions"]["v1"])
    ep["release"] = {"stable": "2025.07_19"}
    r = run(stack_values(ep))
    assert [m.name for m in r.of_type("sagemaker/model:Model")] == ["fraud-scorer-dev-model-2025-07-19"]


# --- what happens to an event the function fails on (Lambda's asynchronous invocation) ---------


def test_rollback_function_failures_go_to_the_dead_letter_queue_after_lambdas_own_retries():
    r = run(stack_values())
    config = r.named("mlrollback-dev-rollback-invoke-config").inputs
    dlq_arn = r.named("mlrollback-dev-dlq").outputs["arn"]
    assert config["functionName"] == r.named("mlrollback-dev-rollback").outputs["name"]
    assert config["maximumRetryAttempts"] == 2
    assert config["maximumEventAgeInSeconds"] == 3600
    assert config["destinationConfig"] == {"onFailure": {"destination": dlq_arn}}
    assert "onSuccess" not in config["destinationConfig"]
    # Delivery failures still have their own dead-letter config on the EventBridge target.
    assert r.named("mlrollback-dev-alarm-target").inputs["deadLetterConfig"] == {"arn": dlq_arn}


def test_only_the_rollback_role_may_send_to_the_dead_letter_queue_and_only_to_it():
    r = run(stack_values())
    dlq_arn = r.named("mlrollback-dev-dlq").outputs["arn"]
    rollback = {s["Sid"]: s for s in policy_statements(r, "mlrollback-dev-rollback-policy")}
    assert rollback["DeadLetters"]["Action"] == ["sqs:SendMessage"]
    assert rollback["DeadLetters"]["Resource"] == [dlq_arn]
    for kind in ("rollback", "stepper"):
        for s in policy_statements(r, f"mlrollback-dev-{kind}-policy"):
            sqs_actions = [a for a in s["Action"] if a.startswith("sqs:")]
            if sqs_actions:
                assert (kind, sqs_actions, s["Resource"]) == ("rollback", ["sqs:SendMessage"], [dlq_arn])


def test_failed_scheduled_ticks_are_dropped_not_retried_late():
    values = stack_values()
    values["endpoints"][0]["triggers"]["drift"] = {"maxScore": 0.2, "minSamples": 100, "action": "notify"}
    r = run(values)
    stepper = r.named("mlrollback-dev-schedule-invoke-config").inputs
    assert stepper["functionName"] == r.named("mlrollback-dev-stepper").outputs["name"]
    assert stepper["maximumRetryAttempts"] == 0
    # Lambda's minimum age; the next tick comes a minute later anyway.
    assert stepper["maximumEventAgeInSeconds"] == 60
    assert "destinationConfig" not in stepper
    drift = r.named("mlrollback-dev-drift-schedule-invoke-config").inputs
    assert drift["functionName"] == names.drift_function_name("dev")
    assert drift["maximumRetryAttempts"] == 0
    assert drift["maximumEventAgeInSeconds"] == 600
    configs = r.of_type("lambda/functionEventInvokeConfig:FunctionEventInvokeConfig")
    assert sorted(c.name for c in configs) == [
        "mlrollback-dev-drift-schedule-invoke-config",
        "mlrollback-dev-rollback-invoke-config",
        "mlrollback-dev-schedule-invoke-config",
    ]
