"""A project copy with the dev/staging/prod stack files, and a moto account holding deployed endpoints."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from rollback.runtime import names

REPO = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throwaway project root (Pulumi.yaml, environments/, schemas/) as the cwd."""
    shutil.copy(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copytree(REPO / "environments", tmp_path / "environments")
    shutil.copytree(REPO / "schemas", tmp_path / "schemas")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Fake credentials and a started moto mock; yields boto3 clients in the stacks' region."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "USER": "alice",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("GITHUB_ACTOR", raising=False)
    with mock_aws():
        yield {
            s: boto3.client(s, region_name=REGION)
            for s in ("sagemaker", "ssm", "dynamodb", "cloudwatch", "sns")
        }


def audit_table(aws: dict[str, Any], stack: str, *, topic: bool = True) -> str:
    """The stack's audit table and (unless ``topic=False``) alerts topic, as `pulumi up` leaves them."""
    if topic:
        aws["sns"].create_topic(Name=names.topic_name(stack))
    table = names.audit_table_name(stack)
    aws["dynamodb"].create_table(
        TableName=table,
        KeySchema=[
            {"AttributeName": "endpoint", "KeyType": "HASH"},
            {"AttributeName": "at", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "endpoint", "AttributeType": "S"},
            {"AttributeName": "at", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return table


def deploy_endpoint(
    aws: dict[str, Any],
    stack: str,
    endpoint: str = "fraud-scorer",
    *,
    weights: dict[str, float],
    stable: str = "v1",
    candidate: str | None = "v2",
    steps: list[int] | None = None,
    strategy: str = "canary",
    progress: dict[str, Any] | None = None,
    quarantine: str | None = None,
    alarm_states: dict[str, str] | None = None,
) -> str:
    """Create what `pulumi up` + the runtime would leave: endpoint, plan, progress, quarantine, alarms."""
    sm = aws["sagemaker"]
    physical = names.endpoint_name(stack, endpoint)
    role = "arn:aws:iam::123456789012:role/sm"
    variants = []
    for variant, weight in weights.items():
        model = f"{physical}-{variant}"
        sm.create_model(ModelName=model, ExecutionRoleArn=role, PrimaryContainer={"Image": "img:1"})
        variants.append(
            {
                "VariantName": variant,
                "ModelName": model,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": weight,
            }
        )
    sm.create_endpoint_config(EndpointConfigName=f"{physical}-cfg", ProductionVariants=variants)
    sm.create_endpoint(EndpointName=physical, EndpointConfigName=f"{physical}-cfg")
    plan = {
        "endpoint": physical,
        "stable": stable,
        "candidate": candidate,
        "strategy": strategy,
        "steps": (steps if steps is not None else [10, 50, 100]) if candidate else [],
        "bakeSeconds": 60,
        "planId": "abc123abc123",
    }
    ssm = aws["ssm"]
    ssm.put_parameter(
        Name=names.rollout_plan_parameter(stack, physical), Value=json.dumps(plan), Type="String"
    )
    if progress is not None:
        value = {
            "planId": "abc123abc123",
            "stepStartedAt": "2026-01-01T00:00:00.000Z",
            "reason": "",
            **progress,
        }
        ssm.put_parameter(
            Name=names.rollout_progress_parameter(stack, physical), Value=json.dumps(value), Type="String"
        )
    if quarantine is not None:
        record = {
            "endpoint": physical,
            "version": quarantine,
            "variant": "candidate",
            "alarm": f"{physical}-candidate-errors",
            "reason": "Threshold Crossed",
            "at": "2026-01-01T00:00:00.000Z",
            "by": "lambda",
            "kind": "auto",
        }
        ssm.put_parameter(
            Name=names.quarantine_parameter(stack, physical), Value=json.dumps(record), Type="String"
        )
    for alarm_role in ("stable", "candidate"):
        for kpi in ("errors", "latency"):
            name = names.alarm_name(physical, alarm_role, kpi)
            aws["cloudwatch"].put_metric_alarm(
                AlarmName=name,
                AlarmDescription=f"mlrollback: endpoint={physical} role={alarm_role} kpi={kpi} version=-",
                MetricName="Errors",
                Namespace=names.CUSTOM_METRIC_NAMESPACE,
                Statistic="Sum",
                Period=10,
                EvaluationPeriods=3,
                Threshold=1,
                ComparisonOperator="GreaterThanThreshold",
            )
            state = (alarm_states or {}).get(name)
            if state:
                aws["cloudwatch"].set_alarm_state(AlarmName=name, StateValue=state, StateReason="test")
    return physical


def record_drill(
    aws: dict[str, Any],
    project: Path,
    stack: str,
    version: str,
    endpoint: str = "fraud-scorer",
    **detail: Any,
) -> dict[str, Any]:
    """A passing ``drill`` item of ``version`` in ``stack``'s trail, as `mlrollback drill` records it.

    Its artifact digest is that of ``version`` in the project's stack file (``detail`` overrides).
    """
    from infra.config import load_stack_file
    from rollback.ops.rehearsal_gate import artifact_digest
    from rollback.runtime import audit

    cfg = load_stack_file(project / "environments" / f"Pulumi.{stack}.yaml")
    ep = cfg.endpoint(endpoint)
    item = audit.AuditItem(
        endpoint=ep.physical_name,
        action="drill",
        actor="cli:ci",
        version=version,
        detail={"passed": True, "artifact": artifact_digest(ep.versions[version]), **detail},
    )
    audit.append(aws["dynamodb"], names.audit_table_name(stack), item)
    return item.detail


def promoted_before(
    aws: dict[str, Any],
    project: Path,
    version: str,
    *,
    hours_ago: float = 0.0,
    endpoint: str = "fraud-scorer",
) -> None:
    """Leave prod as an earlier `mlrollback promote` of ``version`` from staging did.

    Prod's stack file gets staging's catalog entry of ``version`` as candidate (what promote
    writes), and prod's trail a ``promote`` item ``hours_ago`` (prod's audit table must exist).
    """
    from datetime import timedelta

    from rollback.ops.stackfile import Release, StackDocument
    from rollback.runtime import audit, clock

    staging = StackDocument.load(project / "environments/Pulumi.staging.yaml")
    path = project / "environments/Pulumi.prod.yaml"
    doc = StackDocument.load(path)
    doc.add_version(endpoint, version, staging.versions(endpoint)[version])
    current = doc.release(endpoint)
    doc.set_release(endpoint, Release(current.stable, version, current.shadow))
    path.write_text(doc.render())
    previous = clock.use(clock.VirtualClock(clock.now() - timedelta(hours=hours_ago)))
    try:
        item = audit.AuditItem(
            endpoint=names.endpoint_name("prod", endpoint),
            action="promote",
            actor="cli:ci",
            version=version,
            detail={"source": "staging"},
        )
        audit.append(aws["dynamodb"], names.audit_table_name("prod"), item)
    finally:
        clock.use(previous)
