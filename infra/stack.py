"""Build the whole stack from a validated :class:`~infra.model.StackConfig`.

Kept apart from ``__main__`` so tests, the benchmark and the sandbox can call :func:`build_stack`
inside a mock runtime. Config is already validated here: no resource is registered for a bad config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.alarms import Alarms, AlarmsArgs
from infra.components.autorollback import AutoRollback, AutoRollbackArgs
from infra.components.drift import DriftJob, DriftJobArgs
from infra.components.endpoint import AwsScope, Endpoint, EndpointArgs, ImageRef
from infra.components.registry import Registry, RegistryArgs
from infra.limits import ECR_REPOSITORY_RE
from infra.model import EndpointConfig, StackConfig
from infra.runtime_records import declared_weights, drift_endpoints
from rollback.runtime import names
from rollback.runtime.errors import ConfigError


@dataclass(frozen=True)
class Quarantine:
    """What the program learned from an endpoint's quarantine record."""

    quarantined: bool
    record: dict[str, Any] | None
    reason: str


def read_quarantine(stack: str, ep: EndpointConfig) -> Quarantine:
    """Look up the endpoint's quarantine record and decide whether its candidate is quarantined.

    A failed invoke (parameter not found) means no record. A record that is not valid JSON is
    treated as quarantining the declared candidate: failing safe beats re-promoting a bad model.
    """
    parameter = names.quarantine_parameter(stack, ep.physical_name)
    try:
        value = aws.ssm.get_parameter(name=parameter).value
    except Exception:
        return Quarantine(False, None, "no record")
    clear = f"clear it with `mlrollback clear-quarantine --stack {stack} --endpoint {ep.name}`"
    try:
        record = json.loads(value)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        if ep.release.candidate:
            pulumi.log.warn(
                f"{ep.physical_name}: quarantine record {parameter} is not valid JSON ({exc}); "
                f"declaring candidate {ep.release.candidate} at weight 0 to be safe. Fix or delete the "
                f"parameter, or {clear}."
            )
        return Quarantine(bool(ep.release.candidate), None, "invalid record")
    version = record.get("version")
    if ep.release.candidate and version == ep.release.candidate:
        pulumi.log.warn(
            f"{ep.physical_name}: candidate {version} was rolled back ({record.get('kind', 'auto')}, "
            f"alarm {record.get('alarm', '-')}, at {record.get('at', '-')}); declaring it at weight 0 and "
            f"stable {ep.release.stable} at 100. Fix the model and release a new candidate version, "
            f"or {clear}."
        )
        return Quarantine(True, record, "candidate quarantined")
    return Quarantine(False, record, "record for another version")


def resolve_image(cfg: StackConfig, ep: EndpointConfig, version: str, scope: AwsScope) -> ImageRef:
    """Image URI of a catalog version; ``framework`` images via the provider's prebuilt-image lookup."""
    spec = ep.versions[version]
    if spec.image:
        uri = spec.image
    else:
        uri = aws.sagemaker.get_prebuilt_ecr_image(
            repository_name=spec.repository, image_tag=spec.framework_version, region=cfg.region
        ).registry_path
    m = ECR_REPOSITORY_RE.match(uri)
    if not m:
        # Validation admits ECR images only (SageMaker pulls from nowhere else without VPC image
        # access); a prebuilt-image lookup answering something else is a provider surprise.
        raise ConfigError(
            f"{cfg.source}: endpoint {ep.name!r} version {version!r}: image {uri!r} is not in Amazon ECR; "
            "SageMaker can only pull ECR images here"
        )
    repo_arn = f"arn:{scope.partition}:ecr:{m['region']}:{m['account']}:repository/{m['repo']}"
    return ImageRef(uri=uri, repository_arn=repo_arn)


def _images(cfg: StackConfig, scope: AwsScope) -> dict[str, dict[str, ImageRef]]:
    """Endpoint -> version -> resolved image, each distinct image looked up once."""
    cache: dict[tuple[str | None, str | None, str | None], ImageRef] = {}
    images: dict[str, dict[str, ImageRef]] = {}
    for ep in cfg.endpoints:
        images[ep.name] = {}
        for version in ep.versions_in_use():
            spec = ep.versions[version]
            key = (spec.image, spec.repository, spec.framework_version)
            if key not in cache:
                cache[key] = resolve_image(cfg, ep, version, scope)
            images[ep.name][version] = cache[key]
    return images


def build_stack(cfg: StackConfig) -> dict[str, Any]:
    """Declare every resource of the stack and return the exports (name -> value/Output)."""
    identity = aws.get_caller_identity()
    partition = aws.get_partition().partition
    scope = AwsScope(partition=partition, region=cfg.region, account=identity.account_id)
    # Every (synchronous) invoke happens before the first resource is registered: a sync invoke
    # pumps the event loop, and with registrations pending that made the program quadratic.
    quarantines = {ep.name: read_quarantine(cfg.stack, ep) for ep in cfg.endpoints}
    images = _images(cfg, scope)
    tags = {"mlrollback:stack": cfg.stack, "mlrollback:environment": cfg.environment}
    registry = Registry(
        f"mlrollback-{cfg.stack}-registry",
        RegistryArgs(
            stack=cfg.stack,
            partition=partition,
            endpoint_names=[ep.physical_name for ep in cfg.endpoints],
            existing_bucket=None if cfg.artifacts.create else cfg.artifacts.bucket,
            existing_kms_key_arn=cfg.artifacts.kms_key_arn,
            tags=tags,
        ),
    )
    watched = [a for ep in cfg.endpoints for a in ep.alarm_names()]
    auto = AutoRollback(
        f"mlrollback-{cfg.stack}",
        AutoRollbackArgs(
            stack=cfg.stack,
            scope=scope,
            rule_alarms=[a for ep in cfg.endpoints for a in ep.rollback_alarm_names()],
            watched_alarms=watched,
            emails=cfg.emails,
            production=cfg.production,
            tags=tags,
        ),
    )
    functions = _functions(cfg, scope, registry, auto, tags)
    endpoint_names: dict[str, pulumi.Output[str]] = {}
    for ep in cfg.endpoints:
        endpoint_names[ep.name] = _endpoint(
            cfg, ep, scope, registry, auto, images[ep.name], quarantines[ep.name].quarantined, tags
        ).endpoint_name
    return {
        "endpointNames": endpoint_names,
        "alarmNames": watched,
        "functionNames": functions,
        "topicArn": auto.topic_arn,
        "auditTableName": auto.table_name,
        "artifactsBucket": registry.bucket_name,
        "quarantinedEndpoints": [
            ep.physical_name for ep in cfg.endpoints if quarantines[ep.name].quarantined
        ],
    }


def _functions(
    cfg: StackConfig, scope: AwsScope, registry: Registry, auto: AutoRollback, tags: dict[str, str]
) -> dict[str, pulumi.Output[str]]:
    """The stack's function names; the drift job only when an endpoint configures drift."""
    functions: dict[str, pulumi.Output[str]] = {
        "rollback": auto.rollback_function_name,
        "stepper": auto.stepper_function_name,
    }
    drifting = drift_endpoints(cfg.endpoints)
    if drifting:  # no drift configured: no function, schedule or permission to pay for
        drift = DriftJob(
            f"mlrollback-{cfg.stack}-drift",
            DriftJobArgs(
                stack=cfg.stack,
                scope=scope,
                endpoints=drifting,
                bucket_name=registry.bucket_name,
                bucket_arn=registry.bucket_arn,
                kms_key_arn=registry.kms_key_arn,
                environment=auto.environment,
                tags=tags,
            ),
        )
        functions["drift"] = drift.function_name
    return functions


def _endpoint(
    cfg: StackConfig,
    ep: EndpointConfig,
    scope: AwsScope,
    registry: Registry,
    auto: AutoRollback,
    images: dict[str, ImageRef],
    quarantined: bool,
    tags: dict[str, str],
) -> Endpoint:
    """One endpoint and its alarms (a quarantined candidate declared at weight 0)."""
    versions = {
        names.STABLE: ep.release.stable,
        names.CANDIDATE: ep.release.candidate,
        names.SHADOW: ep.release.shadow,
    }
    alarms = Alarms(
        ep.physical_name,
        AlarmsArgs(
            endpoint=ep,
            versions=versions,
            notify_topic_arn=auto.topic_arn,
            rollback_function_arn=auto.rollback_function_arn,
            tags=tags,
        ),
    )
    return Endpoint(
        ep.physical_name,
        EndpointArgs(
            stack=cfg.stack,
            endpoint=ep,
            scope=scope,
            weights=declared_weights(ep, quarantined=quarantined),
            images=images,
            bucket_name=registry.bucket_name,
            bucket_arn=registry.bucket_arn,
            kms_key_arn=registry.kms_key_arn,
            guardrail_alarms=ep.guardrail_alarm_names(),
            tags=tags,
        ),
        # SageMaker checks that auto-rollback alarms exist when the endpoint is updated.
        opts=pulumi.ResourceOptions(depends_on=[alarms]),
    )
