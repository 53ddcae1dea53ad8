"""The scheduled drift job in the program: exists only with drift, jobs in SSM, least privilege."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase

import boto3
import pytest
from moto import mock_aws

from infra.components.autorollback import INLINE_POLICY_LIMIT
from infra.components.drift import MAX_LISTED_CAPTURE_FOLDERS
from infra.limits import DRIFT_SCHEDULE_MINUTES
from infra.testing import RecordingMocks, run_program
from rollback.runtime import names
from rollback.runtime.drift import ENV_DRIFT_JOBS, DriftJob, jobs_from_parameters
from rollback.runtime.errors import ConfigError
from tests.infra.helpers import config_map, endpoint_values, policy_statements, run, stack_values

BUCKET = "mlrollback-dev-registry-artifacts-0000000"  # the mock's name for the created bucket
DRIFT_TYPES = ("lambda/function:Function", "cloudwatch/eventRule:EventRule", "lambda/permission:Permission")


def drifting(name: str = "fraud-scorer", **drift) -> dict:
    """A fresh endpoint mapping with ``triggers.drift`` set to ``drift`` (maxScore 0.2 by default)."""
    ep = endpoint_values(name)
    ep["triggers"]["drift"] = {"maxScore": 0.2, **drift}
    return ep


def drift_function(run_):
    return run_.named("mlrollback-dev-drift-function")


def job_parameters(run_) -> list:
    """The drift job parameters the program declared, in parameter-name order."""
    prefix = names.drift_prefix("dev") + "/"
    found = [p for p in run_.of_type("ssm/parameter:Parameter") if p.inputs["name"].startswith(prefix)]
    return sorted(found, key=lambda p: p.inputs["name"])


def jobs_of(run_) -> list[dict]:
    return [json.loads(p.inputs["value"]) for p in job_parameters(run_)]


def statements_by_sid(run_) -> dict[str, dict]:
    return {s["Sid"]: s for s in policy_statements(run_, "mlrollback-dev-drift-policy")}


def rejected(values: dict) -> str:
    """Run the program on ``values``; assert ConfigError and that nothing was registered."""
    mocks = RecordingMocks()
    with pytest.raises(ConfigError) as info:
        run_program(config_map(values), stack="dev", mocks=mocks)
    assert mocks.resources == [], [r.name for r in mocks.resources]
    return str(info.value)


# --- existence ----------------------------------------------------------------------------------


def test_no_drift_trigger_means_no_drift_function_schedule_or_permission():
    r = run(stack_values(endpoint_values("a"), endpoint_values("b")))
    functions = [f.inputs["name"] for f in r.of_type("lambda/function:Function")]
    assert sorted(functions) == ["mlrollback-dev-rollback", "mlrollback-dev-stepper"]  # order is async
    rules = [x.inputs["name"] for x in r.of_type("cloudwatch/eventRule:EventRule")]
    assert names.drift_schedule_rule_name("dev") not in rules
    assert not [p for p in r.of_type("lambda/permission:Permission") if "drift" in p.name]
    assert "drift" not in r.exports["functionNames"]


def test_one_drifting_endpoint_creates_one_drift_function_and_exports_its_name():
    r = run(stack_values(endpoint_values("a"), drifting("b", action="notify")))
    for typ in DRIFT_TYPES:
        assert len([x for x in r.of_type(typ) if "drift" in x.name]) == 1, typ
    assert r.exports["functionNames"]["drift"] == "mlrollback-dev-drift"
    assert names.drift_function_name("dev") == "mlrollback-dev-drift"


# --- function and its environment ---------------------------------------------------------------


def test_drift_function_runs_the_drift_handler_from_the_lambda_archive_with_room_for_the_job():
    fn = drift_function(run(stack_values(drifting()))).inputs
    assert fn["name"] == "mlrollback-dev-drift"
    assert fn["handler"] == "rollback.runtime.handler.on_drift"
    assert (fn["runtime"], fn["timeout"], fn["memorySize"]) == ("python3.12", 300, 512)
    files = set(fn["code"].assets)
    assert {
        "rollback/runtime/drift.py",
        "rollback/runtime/capture.py",
        "rollback/runtime/metrics.py",
    } <= files
    assert not any(f.startswith(("rollback/cli/", "rollback/sandbox/")) for f in files)
    assert fn["loggingConfig"]["logGroup"] == "/aws/lambda/mlrollback-dev-drift"


def test_drift_environment_is_the_contract_environment_plus_the_job_prefix_and_one_parameter_per_job():
    values = stack_values(
        endpoint_values("plain"),
        drifting("fraud", action="notify", minSamples=800, windowMinutes=30, baselineWindowMinutes=720),
        drifting(
            "churn",
            maxScore=0.3,
            baselineUri="s3://training-data/churn/sample.csv",
            baselineSkipColumns=1,
        ),
    )
    r = run(values)
    variables = drift_function(r).inputs["environment"]["variables"]
    rollback_env = r.named("mlrollback-dev-rollback").inputs["environment"]["variables"]
    assert {k: v for k, v in variables.items() if k != names.ENV_DRIFT_PREFIX} == rollback_env
    assert variables[names.ENV_DRIFT_PREFIX] == "/mlrollback/dev/drift" == names.drift_prefix("dev")
    assert ENV_DRIFT_JOBS not in variables
    params = job_parameters(r)
    assert [p.inputs["name"] for p in params] == [
        "/mlrollback/dev/drift/churn-dev",
        "/mlrollback/dev/drift/fraud-dev",
    ]
    assert all((p.inputs["type"], p.inputs["tier"]) == ("String", "Standard") for p in params)
    capture = f"s3://{BUCKET}/data-capture"
    assert jobs_of(r) == [
        {
            "endpoint": "churn-dev",
            "captureUri": capture,
            "variant": "candidate",
            "maxScore": 0.3,
            "minSamples": 500,
            "windowMinutes": 60,
            "baselineUri": "s3://training-data/churn/sample.csv",
            "baselineSkipColumns": 1,
        },
        {
            "endpoint": "fraud-dev",
            "captureUri": capture,
            "variant": "candidate",
            "maxScore": 0.2,
            "minSamples": 800,
            "windowMinutes": 30,
            "baselineWindowMinutes": 720,
        },
    ]
    # The capture URI is where the endpoints really write their captures.
    config = r.named("fraud-dev-config").inputs["dataCaptureConfig"]
    assert config["destinationS3Uri"] == capture


def test_drift_job_parameters_are_accepted_by_the_jobs_own_loader():
    values = stack_values(
        drifting("fraud"), drifting("churn", baselineUri="s3://training-data/churn/sample.jsonl")
    )
    r = run(values)
    prefix = drift_function(r).inputs["environment"]["variables"][names.ENV_DRIFT_PREFIX]
    with mock_aws():
        ssm = boto3.client("ssm", region_name="eu-west-1")
        for param in r.of_type("ssm/parameter:Parameter"):  # rollout plans too: they must not be read as jobs
            ssm.put_parameter(Name=param.inputs["name"], Value=param.inputs["value"], Type="String")

        loaded = jobs_from_parameters(ssm, prefix)

    assert loaded.invalid == []
    assert [(j.endpoint, j.variant, j.baseline_uri, j.max_score) for j in loaded.jobs] == [
        ("churn-dev", "candidate", "s3://training-data/churn/sample.jsonl", 0.2),
        ("fraud-dev", "candidate", None, 0.2),
    ]
    assert (
        isinstance(loaded.jobs[0], DriftJob) and loaded.jobs[0].capture_uri == f"s3://{BUCKET}/data-capture"
    )


def test_brought_in_bucket_is_the_capture_bucket_of_the_jobs():
    r = run(stack_values(drifting(), artifacts={"create": False, "bucket": "team-ml-artifacts"}))
    assert [j["captureUri"] for j in jobs_of(r)] == ["s3://team-ml-artifacts/data-capture"]


# --- IAM ----------------------------------------------------------------------------------------


def test_drift_role_lists_actions_and_reads_only_its_endpoints_capture_prefixes():
    r = run(stack_values(drifting("a"), endpoint_values("b"), drifting("c")))
    statements = statements_by_sid(r)
    for s in statements.values():
        assert s["Effect"] == "Allow"
        assert all("*" not in a for a in s["Action"]), s
    bucket_arn = f"arn:aws:s3:::{BUCKET}"
    listing = statements["ListCaptures"]
    assert (listing["Action"], listing["Resource"]) == (["s3:ListBucket"], [bucket_arn])
    assert listing["Condition"] == {
        "StringLike": {"s3:prefix": ["data-capture/a-dev/*", "data-capture/c-dev/*"]}
    }
    reading = statements["ReadCaptures"]
    assert (reading["Action"], reading["Resource"]) == (
        ["s3:GetObject"],
        [f"{bucket_arn}/data-capture/a-dev/*", f"{bucket_arn}/data-capture/c-dev/*"],
    )
    s3_resources = [
        res for s in statements.values() if s["Action"][0].startswith("s3:") for res in s["Resource"]
    ]
    assert all(res == bucket_arn or res.startswith(f"{bucket_arn}/data-capture/") for res in s3_resources)
    assert "ReadBaselines" not in statements  # no baselineUri configured


def test_drift_role_publishes_only_to_the_custom_namespace_and_decrypts_only_the_bucket_key():
    r = run(stack_values(drifting()))
    statements = statements_by_sid(r)
    wildcard = [sid for sid, s in statements.items() if "*" in s["Resource"]]
    assert wildcard == ["PublishDriftScore"]  # PutMetricData has no resource-level permissions
    metrics = statements["PublishDriftScore"]
    assert metrics["Action"] == ["cloudwatch:PutMetricData"]
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "MLRollback/Endpoints"}}
    key = statements["CaptureKey"]
    assert (key["Action"], key["Resource"]) == (
        ["kms:Decrypt"],
        [r.named("mlrollback-dev-registry-key").outputs["arn"]],
    )
    logs = statements["Logs"]
    assert logs["Resource"] == [r.named("mlrollback-dev-drift-logs").outputs["arn"] + ":*"]
    actions = {a for s in statements.values() for a in s["Action"]}
    assert not any(a.startswith(("sagemaker:", "dynamodb:", "sns:", "s3:Put")) for a in actions)
    assert {a for a in actions if a.startswith("ssm:")} == {"ssm:GetParametersByPath"}


def test_drift_role_lists_only_its_own_stacks_job_path():
    jobs = statements_by_sid(run(stack_values(drifting())))["ReadDriftJobs"]
    assert jobs["Action"] == ["ssm:GetParametersByPath"]
    # The path itself (what GetParametersByPath is authorized on), not a wildcard beneath or beside it.
    assert jobs["Resource"] == ["arn:aws:ssm:eu-west-1:123456789012:parameter/mlrollback/dev/drift"]


def test_drift_role_reads_exactly_the_configured_baseline_objects():
    r = run(
        stack_values(
            drifting("a", baselineUri="s3://training-data/a/sample.csv"),
            drifting("b", baselineUri="s3://training-data/b/sample.jsonl"),
        )
    )
    baselines = statements_by_sid(r)["ReadBaselines"]
    assert (baselines["Action"], baselines["Resource"]) == (
        ["s3:GetObject"],
        ["arn:aws:s3:::training-data/a/sample.csv", "arn:aws:s3:::training-data/b/sample.jsonl"],
    )


def test_brought_in_bucket_scopes_the_drift_role_to_that_bucket_without_a_key_grant():
    r = run(stack_values(drifting(), artifacts={"create": False, "bucket": "team-ml-artifacts"}))
    statements = statements_by_sid(r)
    assert statements["ListCaptures"]["Resource"] == ["arn:aws:s3:::team-ml-artifacts"]
    assert statements["ReadCaptures"]["Resource"] == [
        "arn:aws:s3:::team-ml-artifacts/data-capture/fraud-scorer-dev/*"
    ]
    assert "CaptureKey" not in statements


# --- schedule -----------------------------------------------------------------------------------


def test_schedule_rule_runs_the_drift_function_every_fifteen_minutes_and_only_it_may_invoke():
    r = run(stack_values(drifting()))
    rule = r.named("mlrollback-dev-drift-schedule-rule")
    assert rule.inputs["name"] == "mlrollback-dev-drift-schedule" == names.drift_schedule_rule_name("dev")
    assert rule.inputs["scheduleExpression"] == "rate(15 minutes)"
    target = r.named("mlrollback-dev-drift-schedule-target").inputs
    assert target["rule"] == "mlrollback-dev-drift-schedule"
    assert target["arn"] == drift_function(r).outputs["arn"]
    permission = r.named("mlrollback-dev-drift-schedule-permission").inputs
    assert permission["action"] == "lambda:InvokeFunction"
    assert permission["principal"] == "events.amazonaws.com"
    assert permission["function"] == "mlrollback-dev-drift"
    assert permission["sourceArn"] == rule.outputs["arn"]


# --- alarm --------------------------------------------------------------------------------------


def drift_alarm(run_, role="candidate"):
    return run_.named(f"fraud-scorer-dev-{role}-drift").inputs


def test_drift_alarm_watches_the_published_score_once_per_job_run_and_never_on_missing_data():
    alarm = drift_alarm(run(stack_values(drifting())))
    assert (alarm["namespace"], alarm["metricName"], alarm["statistic"]) == (
        "MLRollback/Endpoints",
        "DriftScore",
        "Maximum",
    )
    assert alarm["dimensions"] == {"EndpointName": "fraud-scorer-dev", "VariantName": "candidate"}
    assert alarm["period"] == DRIFT_SCHEDULE_MINUTES * 60 == 900
    assert (alarm["evaluationPeriods"], alarm["datapointsToAlarm"]) == (2, 1)
    assert (alarm["threshold"], alarm["comparisonOperator"]) == (0.2, "GreaterThanThreshold")
    assert alarm["treatMissingData"] == "notBreaching"


def test_rollback_drift_alarm_drains_through_the_alarm_rule_and_notify_goes_to_sns_only():
    rollback = run(stack_values(drifting(action="rollback")))
    pattern = json.loads(rollback.named("mlrollback-dev-alarm-rule").inputs["eventPattern"])
    assert "fraud-scorer-dev-candidate-drift" in pattern["detail"]["alarmName"]
    # A rollback drift alarm invokes the rollback function itself too (beside the rule), never SNS.
    assert drift_alarm(rollback)["alarmActions"] == [rollback.named("mlrollback-dev-rollback").outputs["arn"]]
    notify = run(stack_values(drifting(action="notify")))
    pattern = json.loads(notify.named("mlrollback-dev-alarm-rule").inputs["eventPattern"])
    assert "fraud-scorer-dev-candidate-drift" not in pattern["detail"]["alarmName"]
    assert drift_alarm(notify)["alarmActions"] == [notify.named("mlrollback-dev-topic").outputs["arn"]]


# --- config -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("drift", "capture", "fragment"),
    [
        ({"windowMinutes": 5}, 20, "triggers.drift.windowMinutes: 5 is out of range; use 15-1440"),
        ({"minSamples": 0}, 20, "triggers.drift.minSamples: 0 is out of range"),
        ({"baselineUri": "training.csv"}, 20, "triggers.drift.baselineUri: 'training.csv' is not an S3 URI"),
        (
            {"baselineUri": "s3://b-1/x.parquet"},
            20,
            "of a .csv, .jsonl or .json (JSON lines) training sample",
        ),
        ({"baselineSkipColumns": 1}, 20, "triggers.drift.baselineSkipColumns: only applies to a baselineUri"),
        (
            {"baselineUri": "s3://b-1/x.csv", "baselineWindowMinutes": 60},
            20,
            "triggers.drift.baselineWindowMinutes: only applies without baselineUri",
        ),
        ({"bins": 5}, 20, "triggers.drift.bins: unknown key"),
        ({}, 0, "dataCapture.samplingPercent: is 0 but triggers.drift needs captured inputs"),
    ],
)
def test_bad_drift_settings_are_rejected_before_anything_is_registered(drift, capture, fragment):
    ep = drifting(**drift)
    ep["dataCapture"] = {"samplingPercent": capture}
    message = rejected(stack_values(ep))
    assert "mlrollback:endpoints[0]." in message
    assert fragment in message


def many_drifting(count: int) -> dict:
    uri = "s3://training-data/" + "x" * 120 + "/sample.csv"
    return stack_values(*[drifting(f"model-{i:02d}", baselineUri=uri) for i in range(count)])


def test_forty_drifting_endpoints_build_one_function_and_forty_job_parameters():
    # Far past the ~15 that Lambda's 4 KB environment held when the jobs were an environment variable.
    r = run(many_drifting(40))
    functions = [f for f in r.of_type("lambda/function:Function") if "drift" in f.name]
    assert [f.inputs["name"] for f in functions] == ["mlrollback-dev-drift"]
    variables = functions[0].inputs["environment"]["variables"]
    assert len(json.dumps(variables)) < 1024  # no longer grows with the endpoints
    params = job_parameters(r)
    assert [p.inputs["name"] for p in params] == [
        f"/mlrollback/dev/drift/model-{i:02d}-dev" for i in range(40)
    ]
    assert max(len(p.inputs["value"].encode()) for p in params) <= 4096  # Standard tier
    assert [j["endpoint"] for j in jobs_of(r)] == [f"model-{i:02d}-dev" for i in range(40)]


def _drift_policy_size(run_) -> int:
    """Characters IAM counts for the drift role's inline policy (whitespace not counted)."""
    return len(
        json.dumps(
            json.loads(run_.named("mlrollback-dev-drift-policy").inputs["policy"]), separators=(",", ":")
        )
    )


def test_a_large_drifting_stack_reads_its_capture_folders_by_stack_pattern_and_fits_iam_quota():
    count = 100
    r = run(stack_values(*[drifting(f"model-{i:03d}-with-a-long-name") for i in range(count)]))
    statements = statements_by_sid(r)
    assert count > MAX_LISTED_CAPTURE_FOLDERS
    assert _drift_policy_size(r) < INLINE_POLICY_LIMIT
    bucket_arn = f"arn:aws:s3:::{BUCKET}"
    assert statements["ReadCaptures"]["Resource"] == [f"{bucket_arn}/data-capture/*-dev/*"]
    assert statements["ListCaptures"]["Condition"] == {"StringLike": {"s3:prefix": ["data-capture/*-dev/*"]}}
    own = f"{bucket_arn}/data-capture/model-042-with-a-long-name-dev/candidate/2026/11/25/10/x.jsonl"
    other = f"{bucket_arn}/data-capture/model-042-with-a-long-name-prod/candidate/x.jsonl"
    assert fnmatchcase(own, statements["ReadCaptures"]["Resource"][0])
    assert not fnmatchcase(other, statements["ReadCaptures"]["Resource"][0])
