"""The program grants the Lambdas every AWS action the runtime really calls (and the test says which).

The runtime's calls are recorded on moto while it drains and steps; the policies are the ones the
real Pulumi program declares for the dev stack under the mock runtime. A runtime change that adds a
call without the matching IAM grant would pass every moto test and fail in AWS: this catches it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from rollback.runtime import names
from rollback.runtime.aws import SERVICES
from rollback.runtime.capture import capture_line, write_capture_file
from rollback.runtime.clock import VirtualClock
from rollback.runtime.drift import run_drift_schedule
from tests.infra.helpers import endpoint_values, policy_statements, run, stack_values
from tests.rollback.conftest import CallLog, World, alarm_event
from tests.rollback.test_drain import candidate_alarm, handle, stable_alarm
from tests.rollback.test_stepper import run as run_stepper
from tests.rollback.test_stepper import tick

#: DynamoDB authorizes a transaction by the actions of its items; there is no TransactWriteItems action.
_TRANSACT_ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def _service_of() -> dict[str, str]:
    """Operation name -> IAM service prefix, from botocore's models of the runtime's services."""
    out: dict[str, str] = {}
    for service in SERVICES:
        model = boto3.client(service, region_name="eu-west-1").meta.service_model
        prefix = model.signing_name if model.signing_name != "monitoring" else "cloudwatch"
        for op in model.operation_names:
            out.setdefault(op, prefix)
    return out


def _actions(world: World) -> set[str]:
    service = _service_of()
    actions: set[str] = set()
    for op, params in world.log.calls:
        if op == "TransactWriteItems":
            for item in params["TransactItems"]:
                actions.update(f"dynamodb:{_TRANSACT_ITEM_ACTIONS[kind]}" for kind in item)
        else:
            actions.add(f"{service[op]}:{op}")
    return actions


def _ssm_arns(world: World) -> set[tuple[str, str]]:
    """(action, parameter ARN) of every SSM call, so resource scoping is checked too."""
    out: set[tuple[str, str]] = set()
    for op, params in world.log.calls:
        name = params.get("Name") or params.get("Path")
        if op in {"GetParameter", "PutParameter", "DeleteParameter", "GetParametersByPath"}:
            out.add((f"ssm:{op}", f"arn:aws:ssm:eu-west-1:123456789012:parameter{name.rstrip('/')}"))
    return out


Grants = list[tuple[set[str], list[str]]]


def _grants(kind: str) -> Grants:
    program = run(stack_values(endpoint_values("fraud-scorer")))
    grants: Grants = []
    for statement in policy_statements(program, f"mlrollback-dev-{kind}-policy"):
        action, resource = statement["Action"], statement["Resource"]
        grants.append(
            (
                {action} if isinstance(action, str) else set(action),
                [resource] if isinstance(resource, str) else list(resource),
            )
        )
    return grants


def _allowed_actions(grants: Grants) -> set[str]:
    return {a for actions, _ in grants for a in actions}


def _ungranted_ssm(world: World, grants: Grants) -> list[tuple[str, str]]:
    return sorted(
        (action, arn)
        for action, arn in _ssm_arns(world)
        if not any(
            action in actions and any(fnmatchcase(arn, r) for r in resources) for actions, resources in grants
        )
    )


@pytest.fixture(scope="module")
def granted() -> dict[str, Grants]:
    return {kind: _grants(kind) for kind in ("rollback", "stepper")}


def test_rollback_function_may_do_everything_a_drain_and_a_stable_alarm_do(
    world: World, granted: dict[str, Grants]
) -> None:
    event = alarm_event(candidate_alarm(world), world.endpoint, names.CANDIDATE)
    handle(world, event)
    handle(world, event)  # the duplicate path reads the guard item
    handle(world, alarm_event(stable_alarm(world), world.endpoint, names.STABLE))
    used = _actions(world)
    assert {"sagemaker:UpdateEndpointWeightsAndCapacities", "sns:Publish"} <= used  # the drain ran
    missing = used - _allowed_actions(granted["rollback"])
    assert missing == set(), json.dumps(sorted(missing))
    assert _ungranted_ssm(world, granted["rollback"]) == []


def test_stepper_function_may_do_everything_a_rollout_and_its_safety_net_drain_do(
    world: World, vclock: VirtualClock, granted: dict[str, Grants]
) -> None:
    world.put_plan(world.endpoint)
    alarm = candidate_alarm(world)
    world.set_alarm(alarm, "OK")
    tick(world)

    def fire(minute: int) -> None:
        if minute == 7:
            world.set_alarm(alarm, "ALARM")

    run_stepper(world, vclock, minutes=9, per_minute=50, on_minute=fire)
    used: Any = _actions(world)
    assert {"ssm:GetParametersByPath", "sagemaker:UpdateEndpointWeightsAndCapacities"} <= used
    missing = used - _allowed_actions(granted["stepper"])
    assert missing == set(), json.dumps(sorted(missing))
    assert _ungranted_ssm(world, granted["stepper"]) == []


# --- the drift function -------------------------------------------------------------------------

#: IAM action and resource of each S3 operation the drift job makes (ListObjectsV2 is s3:ListBucket).
_S3_ACTIONS = {"ListObjectsV2": "s3:ListBucket", "GetObject": "s3:GetObject"}


def _s3_requests(log: CallLog) -> list[tuple[str, str, str | None]]:
    """(IAM action, resource ARN, listed prefix) of every S3 call the job made (mapped in ``_S3_ACTIONS``)."""
    out = []
    for op, params in log.calls:
        if op not in _S3_ACTIONS:
            continue
        if _S3_ACTIONS[op] == "s3:ListBucket":
            out.append(("s3:ListBucket", f"arn:aws:s3:::{params['Bucket']}", params.get("Prefix", "")))
        else:
            out.append(("s3:GetObject", f"arn:aws:s3:::{params['Bucket']}/{params['Key']}", None))
    return out


def test_drift_function_may_do_everything_a_scheduled_drift_run_does() -> None:
    ep = endpoint_values("fraud-scorer")
    ep["triggers"]["drift"] = {"maxScore": 0.2, "minSamples": 100}
    program = run(stack_values(ep, endpoint_values("other")))
    statements = policy_statements(program, "mlrollback-dev-drift-policy")
    grants: Grants = [({*s["Action"]}, list(s["Resource"])) for s in statements]
    env = program.named("mlrollback-dev-drift-function").inputs["environment"]["variables"]
    jobs = [p.inputs for p in program.of_type("ssm/parameter:Parameter") if "/drift/" in p.inputs["name"]]
    now = datetime.now(UTC)
    with mock_aws():
        raw_s3 = boto3.client("s3", region_name="eu-west-1")
        raw_ssm = boto3.client("ssm", region_name="eu-west-1")
        for job in jobs:
            raw_ssm.put_parameter(Name=job["name"], Value=job["value"], Type="String")
        capture = json.loads(jobs[0]["value"])["captureUri"]
        bucket = capture.removeprefix("s3://").split("/")[0]
        raw_s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        for variant, shift in (("stable", 0.0), ("candidate", 1.5)):
            lines = [
                capture_line(
                    event_id=f"{variant}-{i}",
                    inference_time=now - timedelta(minutes=20, seconds=-i),
                    input_data=f"{shift + (i % 17) / 17:.4f}",
                    input_content_type="text/csv",
                    output_data="0.5",
                    output_content_type="text/csv",
                )
                for i in range(200)
            ]
            write_capture_file(
                raw_s3, capture, "fraud-scorer-dev", variant, now - timedelta(minutes=20), lines, "x"
            )
        log = CallLog()
        clients = {s: boto3.client(s, region_name="eu-west-1") for s in ("s3", "cloudwatch", "ssm")}
        for client in clients.values():
            client.meta.events.register("provide-client-params.*.*", log.hook)

        result = run_drift_schedule(**clients, environ=env, now=now)

    assert [(j["endpoint"], j["status"], j["published"]) for j in result["jobs"]] == [
        ("fraud-scorer-dev", "drift", True)
    ]
    used = {"cloudwatch:PutMetricData", "ssm:GetParametersByPath"} | {a for a, _, _ in _s3_requests(log)}
    assert {op for op, _ in log.calls} <= {"PutMetricData", "GetParametersByPath", *_S3_ACTIONS}, log.ops()
    missing = used - _allowed_actions(grants)
    assert missing == set(), json.dumps(sorted(missing))
    assert _ungranted_ssm(SimpleNamespace(log=log), grants) == []  # type: ignore[arg-type]
    listing = next(s for s in statements if s["Sid"] == "ListCaptures")
    for action, arn, prefix in _s3_requests(log):
        assert any(action in a and any(fnmatchcase(arn, r) for r in res) for a, res in grants), (action, arn)
        if prefix is not None:
            patterns = listing["Condition"]["StringLike"]["s3:prefix"]
            assert any(fnmatchcase(prefix, p) for p in patterns), (prefix, patterns)
