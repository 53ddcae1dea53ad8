"""Endpoint: models, an auto-named endpoint configuration, the endpoint and its rollout plan."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.blue_green import blue_green_wait_seconds, canary_size_percent, linear_step_percent
from infra.components.iam import assume_role_policy, policy_document, statement
from infra.limits import (
    DATA_CAPTURE_PREFIX,
    EXECUTION_ROLE_SUFFIX,
    TERMINATION_WAIT_SECONDS,
    has_local_instance_storage,
    model_name_part,
)
from infra.model import EndpointConfig
from infra.runtime_records import rollout_plan
from rollback.runtime import names


@dataclass(frozen=True)
class AwsScope:
    """Where this stack lives; every ARN in an IAM policy is built from it."""

    partition: str
    region: str
    account: str

    def arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        """``arn:<partition>:<service>:<region>:<account>:<resource>``."""
        return (
            f"arn:{self.partition}:{service}:{self.region if region else ''}:"
            f"{self.account if account else ''}:{resource}"
        )


@dataclass(frozen=True)
class ImageRef:
    """A resolved container image and the ECR repository ARN that the role may pull from."""

    uri: str
    repository_arn: str


@dataclass(frozen=True)
class EndpointArgs:
    """Inputs of :class:`Endpoint`.

    ``weights`` are the declared production-variant percents by role (already 0 for a
    quarantined candidate); ``guardrail_alarms`` the auto-rollback alarm names (ForceNew in the
    provider: must depend on the physical name only, see ``EndpointConfig.guardrail_alarm_names``);
    ``images`` maps every version in use to its resolved image.
    """

    stack: str
    endpoint: EndpointConfig
    scope: AwsScope
    weights: Mapping[str, int]
    images: Mapping[str, ImageRef]
    bucket_name: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    guardrail_alarms: Sequence[str]
    kms_key_arn: pulumi.Input[str] | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


def _batch(percent: int, instances: int) -> dict[str, Any]:
    """A blue/green batch of ``percent`` % of ``instances``, or one instance when that is less than one.

    SageMaker shifts whole instances: 5 % of 3 instances is no instance at all. One instance of two
    or more is a valid canary (<= 50 %) and linear step (10-50 % up to ten instances).
    """
    if percent * instances < 100:
        return {"type": "INSTANCE_COUNT", "value": 1}
    return {"type": "CAPACITY_PERCENT", "value": percent}


def deployment_config(ep: EndpointConfig, alarms: Sequence[str]) -> dict[str, Any]:
    """SageMaker blue/green update policy for config changes, derived from the strategy.

    This guards *config* changes made by ``pulumi up`` (new image, instance type, revert); the
    progressive candidate rollout itself is driven by the stepper Lambda through the weights API.
    """
    s = ep.strategy
    wait = blue_green_wait_seconds(s)
    routing: dict[str, Any]
    if s.type in ("canary", "linear") and ep.instance_count < 2:
        # SageMaker sizes a canary at <= 50 % and a linear step at 10-50 % of the variant's
        # instances: a one-instance fleet has no such batch, so it shifts all at once after the bake.
        routing = {"type": "ALL_AT_ONCE", "wait_interval_in_seconds": wait}
    elif s.type == "canary":
        routing = {
            "type": "CANARY",
            "wait_interval_in_seconds": wait,
            "canary_size": _batch(canary_size_percent(s), ep.instance_count),
        }
    elif s.type == "linear":
        routing = {
            "type": "LINEAR",
            "wait_interval_in_seconds": wait,
            "linear_step_size": _batch(linear_step_percent(s), ep.instance_count),
        }
    else:  # blue-green, ab, shadow bake; all-at-once bakes briefly (capped in config)
        routing = {"type": "ALL_AT_ONCE", "wait_interval_in_seconds": wait}
    return {
        "blue_green_update_policy": {
            "traffic_routing_configuration": routing,
            "maximum_execution_timeout_in_seconds": s.max_execution_timeout_seconds,
            "termination_wait_in_seconds": TERMINATION_WAIT_SECONDS,
        },
        "auto_rollback_configuration": {"alarms": [{"alarm_name": a} for a in alarms]},
    }


def _bucket_of(s3_uri: str) -> str:
    return s3_uri.removeprefix("s3://").split("/", 1)[0]


def execution_role_statements(args: EndpointArgs) -> list[dict[str, Any]]:
    """The execution role may read the model artifacts (wherever they live), write data capture to
    the artifacts bucket, pull the images in use and write its own logs."""
    ep, scope = args.endpoint, args.scope
    model_buckets = sorted({_bucket_of(ep.versions[v].model_data_url) for v in ep.versions_in_use()})
    bucket_arn = pulumi.Output.from_input(args.bucket_arn)
    statements: list[dict[str, Any]] = [
        statement(
            "ReadModelArtifacts",
            ["s3:GetObject"],
            [f"arn:{scope.partition}:s3:::{b}/*" for b in model_buckets],
        ),
        statement(
            "ListModelBuckets",
            ["s3:ListBucket"],
            [f"arn:{scope.partition}:s3:::{b}" for b in model_buckets],
        ),
        statement(
            "WriteDataCapture",
            ["s3:PutObject"],
            [pulumi.Output.concat(bucket_arn, f"/{DATA_CAPTURE_PREFIX}/{ep.physical_name}/*")],
        ),
        statement(
            "PullImages",
            ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            sorted({args.images[v].repository_arn for v in ep.versions_in_use()}),
        ),
        # GetAuthorizationToken has no resource-level permissions in IAM: "*" is the only form.
        statement("EcrLogin", ["ecr:GetAuthorizationToken"], ["*"]),
        statement(
            "Logs",
            [
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "logs:DescribeLogStreams",
            ],
            [scope.arn("logs", f"log-group:/aws/sagemaker/Endpoints/{ep.physical_name}:*")],
        ),
        # PutMetricData has no resource-level permissions; the condition pins the namespace.
        statement(
            "Metrics",
            ["cloudwatch:PutMetricData"],
            ["*"],
            Condition={"StringEquals": {"cloudwatch:namespace": "AWS/SageMaker"}},
        ),
    ]
    if args.kms_key_arn is not None:
        statements.append(
            statement("ArtifactsKey", ["kms:Decrypt", "kms:GenerateDataKey"], [args.kms_key_arn])
        )
    return statements


def _variants(
    args: EndpointArgs, models: Mapping[str, aws.sagemaker.Model]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """(production variants, shadow variants or None): role-named, at the declared weights."""
    ep = args.endpoint

    def variant(role_name: str, version: str, weight: float) -> dict[str, Any]:
        return {
            "variant_name": role_name,
            "model_name": models[version].name,
            "initial_instance_count": ep.instance_count,
            "instance_type": ep.instance_type,
            "initial_variant_weight": weight,
        }

    production = [variant(names.STABLE, ep.release.stable, args.weights.get(names.STABLE, 100))]
    if ep.release.candidate:
        production.append(
            variant(names.CANDIDATE, ep.release.candidate, args.weights.get(names.CANDIDATE, 0))
        )
    elif ep.strategy.keep_variant_names:
        # Idle candidate: the stable model at weight 0 keeps the variant names of every update
        # equal, which SageMaker's blue/green guardrails require (docs/config.md).
        production.append(variant(names.CANDIDATE, ep.release.stable, 0))
    shadow = (
        [variant(names.SHADOW, ep.release.shadow, ep.strategy.shadow_percent)] if ep.release.shadow else None
    )
    return production, shadow


def _data_capture(args: EndpointArgs) -> dict[str, Any]:
    ep = args.endpoint
    capture: dict[str, Any] = {
        "enable_capture": ep.data_capture_percent > 0,
        "initial_sampling_percentage": ep.data_capture_percent,
        "destination_s3_uri": pulumi.Output.concat("s3://", args.bucket_name, f"/{DATA_CAPTURE_PREFIX}"),
        "capture_options": [{"capture_mode": "Input"}, {"capture_mode": "Output"}],
    }
    if args.kms_key_arn is not None:
        capture["kms_key_id"] = args.kms_key_arn
    return capture


class Endpoint(pulumi.ComponentResource):
    """One SageMaker real-time endpoint with role-named variants and its rollout plan."""

    endpoint_name: pulumi.Output[str]
    endpoint_config_name: pulumi.Output[str]

    def __init__(self, name: str, args: EndpointArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlrollback:endpoint:Endpoint", name, None, opts)
        self._name, self._args = name, args
        ep = args.endpoint
        self._tags = {**args.tags, **ep.tags, "mlrollback:endpoint": ep.physical_name}
        child = pulumi.ResourceOptions(parent=self)
        models = self._models(self._execution_role())
        production, shadow = _variants(args, models)
        # Instances with local NVMe storage encrypt it in hardware and CreateEndpointConfig refuses a
        # KmsKeyId for them; captured data is still written with the stack's key (kms_key_id, _data_capture).
        volume_key = None if has_local_instance_storage(ep.instance_type) else args.kms_key_arn
        # Auto-named: every attribute of an endpoint configuration forces replacement, so each
        # change is a new config. retain_on_delete keeps the replaced ones (and their models, above):
        # they are the exact, known-good targets of a stack revert (and of SageMaker's own blue/green
        # rollback).
        endpoint_config = aws.sagemaker.EndpointConfiguration(
            f"{name}-config",
            production_variants=production,
            shadow_production_variants=shadow,
            data_capture_config=_data_capture(args),
            kms_key_arn=volume_key,
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )
        endpoint = aws.sagemaker.Endpoint(
            f"{name}-endpoint",
            name=ep.physical_name,
            endpoint_config_name=endpoint_config.name,
            deployment_config=deployment_config(ep, args.guardrail_alarms),
            tags=self._tags,
            opts=child,
        )
        plan = rollout_plan(ep)
        aws.ssm.Parameter(
            f"{name}-rollout-plan",
            name=names.rollout_plan_parameter(args.stack, ep.physical_name),
            type="String",
            value=json.dumps(plan, sort_keys=True),
            description=f"Rollout plan of {ep.physical_name} (written by pulumi up, read by the stepper)",
            tags=self._tags,
            opts=child,
        )
        self.endpoint_name = endpoint.name
        self.endpoint_config_name = endpoint_config.name
        self.plan_id = plan["planId"]
        self.register_outputs(
            {"endpointName": self.endpoint_name, "endpointConfigName": self.endpoint_config_name}
        )

    def _execution_role(self) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
        name, ep, child = self._name, self._args.endpoint, pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}{EXECUTION_ROLE_SUFFIX}",
            assume_role_policy=assume_role_policy("sagemaker.amazonaws.com"),
            description=f"SageMaker execution role of endpoint {ep.physical_name}",
            tags=self._tags,
            opts=child,
        )
        policy = aws.iam.RolePolicy(
            f"{name}-execution-policy",
            role=role.id,
            policy=policy_document(execution_role_statements(self._args)),
            opts=child,
        )
        return role, policy

    def _models(
        self, role_and_policy: tuple[aws.iam.Role, aws.iam.RolePolicy]
    ) -> dict[str, aws.sagemaker.Model]:
        """One model per version in use. Retained on delete like the endpoint configs: a kept config is
        only a revert target if the models it names still exist (models cost nothing while unused)."""
        role, role_policy = role_and_policy
        ep = self._args.endpoint
        models: dict[str, aws.sagemaker.Model] = {}
        for version in ep.versions_in_use():
            spec = ep.versions[version]
            models[version] = aws.sagemaker.Model(
                f"{self._name}-model-{model_name_part(version)}",
                execution_role_arn=role.arn,
                primary_container={
                    "image": self._args.images[version].uri,
                    "model_data_url": spec.model_data_url,
                    "environment": {"MLROLLBACK_MODEL_VERSION": version},
                },
                tags={**self._tags, "mlrollback:version": version},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy], retain_on_delete=True),
            )
        return models
