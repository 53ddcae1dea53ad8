"""DriftJob: the scheduled Lambda that scores candidates' input drift and publishes ``DriftScore``.

EventBridge schedule -> ``rollback.runtime.handler.on_drift`` (same code archive as the rollback
function). Each endpoint with ``triggers.drift`` gets one SSM String parameter holding its job
(``names.drift_job_parameter``); the function reads them all under ``MLROLLBACK_DRIFT_PREFIX``.
Parameters, not the environment: Lambda's 4 KB environment would cap the drifting endpoints at
about fifteen. The score
feeds the candidate drift alarm (``infra.components.alarms``): with ``action: rollback`` that alarm
is in the rollback rule and drains the candidate, with ``notify`` it only publishes to SNS.

The function has its own role: it lists its job parameters, reads captures and baselines and
publishes one metric, and needs none of the rollback function's SageMaker, DynamoDB or SSM write rights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.autorollback import (
    LAMBDA_RUNTIME,
    LOG_RETENTION_DAYS,
    invoke_on_schedule,
)
from infra.components.endpoint import AwsScope
from infra.components.iam import assume_role_policy, policy_document, statement
from infra.lambda_archive import lambda_code
from infra.limits import DATA_CAPTURE_PREFIX, DRIFT_SCHEDULE_MINUTES
from infra.model import EndpointConfig
from infra.runtime_records import drift_job_json
from rollback.runtime import names

DRIFT_HANDLER = "rollback.runtime.handler.on_drift"

#: Drifting endpoints whose capture folders the drift role lists one by one (about 120 policy
#: characters each); a larger stack gets one ``*-<stack>`` folder pattern instead.
MAX_LISTED_CAPTURE_FOLDERS = 20
DRIFT_TIMEOUT_SECONDS = 300
DRIFT_MEMORY_MB = 512


def schedule_expression() -> str:
    """``rate(15 minutes)``: the cadence the drift alarm's period is built on."""
    return f"rate({DRIFT_SCHEDULE_MINUTES} minutes)"


def _s3_object_arn(partition: str, uri: str) -> str:
    return f"arn:{partition}:s3:::{uri.removeprefix('s3://')}"


@dataclass(frozen=True)
class DriftJobArgs:
    """Inputs of :class:`DriftJob`.

    ``endpoints`` are the endpoints with ``triggers.drift`` (at least one); ``environment`` is the
    contract environment of every mlrollback Lambda (``infra.runtime_records.lambda_environment``).
    ``kms_key_arn`` is the artifacts bucket key (None for a brought-in bucket).
    """

    stack: str
    scope: AwsScope
    endpoints: Sequence[EndpointConfig]
    bucket_name: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    environment: Mapping[str, pulumi.Input[str]]
    kms_key_arn: pulumi.Input[str] | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


def drift_role_statements(args: DriftJobArgs, log_group_arn: pulumi.Input[str]) -> list[dict[str, Any]]:
    """The drift role reads its endpoints' captures and baselines, publishes DriftScore, lists its jobs."""
    stack, scope, prefix = args.stack, args.scope, DATA_CAPTURE_PREFIX
    endpoints = sorted(ep.physical_name for ep in args.endpoints)
    bucket_arn = pulumi.Output.from_input(args.bucket_arn)
    # One capture folder per drifting endpoint while the list stays short; past that, the folders
    # of this stack's endpoints by name pattern, so the role's inline policy stays under IAM's
    # 10,240-character quota however many endpoints drift.
    folders = endpoints if len(endpoints) <= MAX_LISTED_CAPTURE_FOLDERS else [f"*-{stack}"]
    statements: list[dict[str, Any]] = [
        # ListBucket is granted on the bucket, so the prefix condition is what keeps the job
        # inside the capture folders of its own endpoints.
        statement(
            "ListCaptures",
            ["s3:ListBucket"],
            [bucket_arn],
            Condition={"StringLike": {"s3:prefix": [f"{prefix}/{ep}/*" for ep in folders]}},
        ),
        statement(
            "ReadCaptures",
            ["s3:GetObject"],
            [pulumi.Output.concat(bucket_arn, f"/{prefix}/{ep}/*") for ep in folders],
        ),
    ]
    baselines = sorted(
        {
            _s3_object_arn(scope.partition, ep.triggers.drift.baseline_uri)
            for ep in args.endpoints
            if ep.triggers.drift is not None and ep.triggers.drift.baseline_uri
        }
    )
    if baselines:
        statements.append(statement("ReadBaselines", ["s3:GetObject"], baselines))
    statements.append(
        # PutMetricData has no resource-level permissions; the condition pins the namespace.
        statement(
            "PublishDriftScore",
            ["cloudwatch:PutMetricData"],
            ["*"],
            Condition={"StringEquals": {"cloudwatch:namespace": names.CUSTOM_METRIC_NAMESPACE}},
        )
    )
    statements.append(
        # The path ARN, nothing under or beside it: the job lists its own stack's jobs only.
        statement(
            "ReadDriftJobs",
            ["ssm:GetParametersByPath"],
            [scope.arn("ssm", f"parameter{names.drift_prefix(stack)}")],
        )
    )
    if args.kms_key_arn is not None:
        # Captures (and baselines kept in the artifacts bucket) are SSE-KMS with the bucket key.
        statements.append(statement("CaptureKey", ["kms:Decrypt"], [args.kms_key_arn]))
    statements.append(
        statement(
            "Logs",
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [pulumi.Output.concat(log_group_arn, ":*")],
        )
    )
    return statements


class DriftJob(pulumi.ComponentResource):
    """Drift Lambda, its least-privilege role and log group, and the schedule that runs it."""

    function_name: pulumi.Output[str]

    def __init__(self, name: str, args: DriftJobArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlrollback:drift:DriftJob", name, None, opts)
        if not args.endpoints:
            raise ValueError("DriftJob needs at least one endpoint with triggers.drift")
        self._name, self._args = name, args
        self._child = pulumi.ResourceOptions(parent=self)
        stack, tags = args.stack, dict(args.tags)
        function_name = names.drift_function_name(stack)
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/aws/lambda/{function_name}",
            retention_in_days=LOG_RETENTION_DAYS,
            tags=tags,
            opts=self._child,
        )
        role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=assume_role_policy("lambda.amazonaws.com"),
            description=f"mlrollback {stack}: drift Lambda",
            tags=tags,
            opts=self._child,
        )
        policy = aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=policy_document(drift_role_statements(args, log_group.arn)),
            opts=self._child,
        )
        function = aws.lambda_.Function(
            f"{name}-function",
            name=function_name,
            role=role.arn,
            runtime=LAMBDA_RUNTIME,
            handler=DRIFT_HANDLER,
            code=lambda_code(),
            timeout=DRIFT_TIMEOUT_SECONDS,
            memory_size=DRIFT_MEMORY_MB,
            environment={
                "variables": {**args.environment, names.ENV_DRIFT_PREFIX: names.drift_prefix(stack)}
            },
            logging_config={"log_format": "JSON", "log_group": log_group.name},
            tags=tags,
            # After its jobs: the first scheduled run finds every one of them.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy, log_group, *self._jobs()]),
        )
        invoke_on_schedule(
            f"{name}-schedule",
            rule_name=names.drift_schedule_rule_name(stack),
            description=f"Score input drift of mlrollback {stack} candidates",
            expression=schedule_expression(),
            function=function,
            # The alarm looks at two periods; a late retry would only score a window the next run
            # covers anyway.
            max_event_age_seconds=600,
            tags=tags,
            opts=self._child,
        )
        self.function_name = function.name
        self.register_outputs({"functionName": self.function_name})

    def _jobs(self) -> list[aws.ssm.Parameter]:
        """One SSM parameter per drifting endpoint: the job the function runs (docs/contracts.md)."""
        args = self._args
        bucket_name = pulumi.Output.from_input(args.bucket_name)
        return [
            aws.ssm.Parameter(
                f"{self._name}-job-{ep.name}",
                name=names.drift_job_parameter(args.stack, ep.physical_name),
                type="String",
                tier="Standard",
                value=bucket_name.apply(lambda bucket, ep=ep: drift_job_json(ep, bucket)),
                description=f"Drift job of {ep.physical_name} (written by pulumi up, read by the drift job)",
                tags=dict(args.tags),
                opts=self._child,
            )
            for ep in sorted(args.endpoints, key=lambda e: e.physical_name)
        ]
