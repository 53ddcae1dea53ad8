"""Appliers of SageMaker: the model package group, models, endpoint configurations and endpoints."""

from __future__ import annotations

from typing import Any

from rollback.sandbox.resources.base import Applier, ApplyContext, Outputs, _tags, pascal


def _model_package_group(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    group = inputs["modelPackageGroupName"]
    sm = ctx.client("sagemaker")
    if not prev:
        args: dict[str, Any] = {"ModelPackageGroupName": group}
        if inputs.get("modelPackageGroupDescription"):
            args["ModelPackageGroupDescription"] = inputs["modelPackageGroupDescription"]
        if inputs.get("tags"):
            args["Tags"] = _tags(inputs)
        sm.create_model_package_group(**args)
    return group, {"arn": ctx.arn("sagemaker", f"model-package-group/{group.lower()}")}


def _sagemaker_model(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    # Every attribute of a model forces replacement in the provider: new inputs, new model.
    model = inputs.get("name") or ctx.autoname(name, inputs)
    if prev and prev["id"] == model:
        return model, {"name": model, "arn": prev["outputs"]["arn"]}
    args: dict[str, Any] = {"ModelName": model, "ExecutionRoleArn": inputs["executionRoleArn"]}
    if inputs.get("primaryContainer"):
        args["PrimaryContainer"] = pascal(inputs["primaryContainer"])
    if inputs.get("containers"):
        args["Containers"] = pascal(inputs["containers"])
    if inputs.get("tags"):
        args["Tags"] = _tags(inputs)
    arn = ctx.client("sagemaker").create_model(**args)["ModelArn"]
    return model, {"name": model, "arn": arn}


def _endpoint_configuration(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    # Auto-named and replaced on any change; the old config stays (retain_on_delete).
    config = inputs.get("name") or ctx.autoname(name, inputs)
    if prev and prev["id"] == config:
        return config, {"name": config, "arn": prev["outputs"]["arn"]}
    args: dict[str, Any] = {
        "EndpointConfigName": config,
        "ProductionVariants": pascal(inputs["productionVariants"]),
    }
    if inputs.get("shadowProductionVariants"):
        args["ShadowProductionVariants"] = pascal(inputs["shadowProductionVariants"])
    if inputs.get("dataCaptureConfig"):
        args["DataCaptureConfig"] = pascal(inputs["dataCaptureConfig"])
    if inputs.get("kmsKeyArn"):
        args["KmsKeyId"] = inputs["kmsKeyArn"]
    if inputs.get("tags"):
        args["Tags"] = _tags(inputs)
    arn = ctx.client("sagemaker").create_endpoint_config(**args)["EndpointConfigArn"]
    return config, {"name": config, "arn": arn}


def _sagemaker_endpoint(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    sm = ctx.client("sagemaker")
    endpoint = inputs.get("name") or (prev["id"] if prev else ctx.autoname(name))
    deployment = pascal(inputs["deploymentConfig"]) if inputs.get("deploymentConfig") else None
    if prev and prev["outputs"].get("endpointConfigName") == inputs["endpointConfigName"]:
        return endpoint, {"name": endpoint, "arn": prev["outputs"]["arn"]}
    if prev:
        # What the provider sends on update: the config name and the deployment config, nothing else,
        # so live weights are reset to the new config's declared ones.
        args: dict[str, Any] = {"EndpointName": endpoint, "EndpointConfigName": inputs["endpointConfigName"]}
        if deployment:
            args["DeploymentConfig"] = deployment
        arn = sm.update_endpoint(**args)["EndpointArn"]
    else:
        args = {"EndpointName": endpoint, "EndpointConfigName": inputs["endpointConfigName"]}
        if deployment:
            args["DeploymentConfig"] = deployment
        if inputs.get("tags"):
            args["Tags"] = _tags(inputs)
        arn = sm.create_endpoint(**args)["EndpointArn"]
    return endpoint, {"name": endpoint, "arn": arn}


APPLIERS: dict[str, Applier] = {
    "aws:sagemaker/modelPackageGroup:ModelPackageGroup": _model_package_group,
    "aws:sagemaker/model:Model": _sagemaker_model,
    "aws:sagemaker/endpointConfiguration:EndpointConfiguration": _endpoint_configuration,
    "aws:sagemaker/endpoint:Endpoint": _sagemaker_endpoint,
}
