"""Run the real Pulumi program under the mock runtime and apply every resource to the emulator.

There is no Pulumi engine or provider plugin on these machines. :func:`apply_program` runs
``infra/__main__.py`` with ``pulumi.runtime.set_mocks`` (fresh event loop, the stack's config),
and :class:`SandboxMocks` turns each registered custom resource into boto3 calls against the
emulator, so every payload is checked against the AWS API model by botocore and moto.

- Create or update: a state file maps ``type::name`` to the physical id and outputs, so a second
  run updates in place instead of duplicating (as ``pulumi up`` would). Types whose attributes all
  force replacement in the provider (SageMaker models and endpoint configurations) get a new
  physical name when their inputs change; the previous one is kept (they are retained on delete).
- Mocks return ``{**inputs, ...computed}`` with camelCase keys, like the engine's outputs.
- Provider invokes are answered from the emulator (``ssm.getParameter`` reads the real SSM, so a
  quarantine record written by the rollback Lambda is seen by the next run).
- A type without an applier stops the run with :class:`~rollback.runtime.errors.SandboxError` naming it;
  nothing after it is applied. Component resources are not applied (they are only grouping).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import runpy
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollback.runtime.errors import SandboxError
from rollback.sandbox.emulator import ACCOUNT_ID, Emulator

Outputs = dict[str, Any]
Applier = Callable[["ApplyContext", str, dict[str, Any], "dict[str, Any] | None"], tuple[str, Outputs]]


_SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


def unsecret(value: Any) -> Any:
    """Unwrap Pulumi secret envelopes (``{<sig key>: <secret sig>, "value": ...}``) recursively.

    Inputs the provider schema marks secret (e.g. ``ssm.Parameter.value``) reach the mocks wrapped;
    AWS gets the plain value.
    """
    if isinstance(value, dict):
        if value.get(_SECRET_SIG_KEY) == _SECRET_SIG:
            return unsecret(value.get("value"))
        return {k: unsecret(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unsecret(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    """Integral floats (how the mock runtime delivers every number) back to int for botocore."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def pascal(value: Any) -> Any:
    """camelCase input keys (Pulumi) to PascalCase API keys (AWS), recursively."""
    if isinstance(value, list):
        return [pascal(v) for v in value]
    if isinstance(value, dict):
        return {(k[:1].upper() + k[1:]): pascal(v) for k, v in value.items()}
    return _plain(value)


def _tags(inputs: dict[str, Any]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": str(v)} for k, v in sorted((inputs.get("tags") or {}).items())]


def _digest(value: Any, n: int = 7) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:n]


@dataclass
class ApplyContext:
    """What appliers share: the emulator, the stack, and the names they made."""

    emulator: Emulator
    stack: str
    project: str = "mlrollback"

    def client(self, service: str) -> Any:
        return self.emulator.client(service)

    def autoname(self, logical: str, inputs: dict[str, Any] | None = None, max_len: int = 63) -> str:
        """Pulumi-style ``<logical>-<7 hex>``; keyed on ``inputs`` for replace-on-change types."""
        suffix = _digest([self.stack, logical, inputs] if inputs is not None else [self.stack, logical])
        base = re.sub(r"[^A-Za-z0-9-]", "-", logical)[: max_len - 8].strip("-")
        return f"{base}-{suffix}"

    def arn(self, service: str, resource: str, *, region: bool = True) -> str:
        return self.emulator.arn(service, resource, region=region)


# --------------------------------------------------------------------------------------------
# Appliers: (ctx, logical name, inputs, previous state or None) -> (physical id, computed outputs)
# --------------------------------------------------------------------------------------------


def _kms_key(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    kms = ctx.client("kms")
    if prev:
        key_id = prev["id"]
        if inputs.get("policy"):
            kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=inputs["policy"])
    else:
        args: dict[str, Any] = {
            "Description": inputs.get("description", ""),
            "Tags": [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in _tags(inputs)],
        }
        if inputs.get("policy"):
            args["Policy"] = inputs["policy"]
        key_id = kms.create_key(**args)["KeyMetadata"]["KeyId"]
    if inputs.get("enableKeyRotation"):
        kms.enable_key_rotation(KeyId=key_id)
    return key_id, {"keyId": key_id, "arn": ctx.arn("kms", f"key/{key_id}")}


def _s3_bucket(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    s3 = ctx.client("s3")
    bucket = inputs.get("bucket") or (prev["id"] if prev else ctx.autoname(name).lower())
    if not prev:
        args: dict[str, Any] = {"Bucket": bucket}
        if ctx.emulator.region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": ctx.emulator.region}
        s3.create_bucket(**args)
    if inputs.get("tags"):
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": _tags(inputs)})
    return bucket, {
        "bucket": bucket,
        "arn": f"arn:aws:s3:::{bucket}",
        "bucketDomainName": f"{bucket}.s3.amazonaws.com",
        "bucketRegionalDomainName": f"{bucket}.s3.{ctx.emulator.region}.amazonaws.com",
        "region": ctx.emulator.region,
    }


def _s3_ownership(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    rule = inputs["rule"]
    ctx.client("s3").put_bucket_ownership_controls(
        Bucket=inputs["bucket"], OwnershipControls={"Rules": [{"ObjectOwnership": rule["objectOwnership"]}]}
    )
    return inputs["bucket"], {}


def _s3_public_access(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    config = {
        "BlockPublicAcls": bool(inputs.get("blockPublicAcls", False)),
        "BlockPublicPolicy": bool(inputs.get("blockPublicPolicy", False)),
        "IgnorePublicAcls": bool(inputs.get("ignorePublicAcls", False)),
        "RestrictPublicBuckets": bool(inputs.get("restrictPublicBuckets", False)),
    }
    ctx.client("s3").put_public_access_block(Bucket=inputs["bucket"], PublicAccessBlockConfiguration=config)
    return inputs["bucket"], {}


def _requires_tls(statement: dict[str, Any]) -> bool:
    condition = statement.get("Condition") or {}
    return statement.get("Effect") == "Deny" and str(
        (condition.get("Bool") or {}).get("aws:SecureTransport", "")
    ).lower() in ("false", "0")


def _s3_policy(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    policy = inputs["policy"]
    document = json.loads(policy) if isinstance(policy, str) else dict(policy)
    # The emulator serves plain HTTP on loopback, and moto enforces aws:SecureTransport: a TLS-only
    # statement would refuse every sandbox request to the bucket. It is checked by the program's
    # tests and the policy pack instead; everything else in the policy is applied as declared.
    kept = [st for st in document.get("Statement", []) if not _requires_tls(st)]
    s3 = ctx.client("s3")
    if kept:
        s3.put_bucket_policy(Bucket=inputs["bucket"], Policy=json.dumps({**document, "Statement": kept}))
    else:
        s3.delete_bucket_policy(Bucket=inputs["bucket"])
    return inputs["bucket"], {}


def _s3_versioning(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    conf = inputs["versioningConfiguration"]
    ctx.client("s3").put_bucket_versioning(
        Bucket=inputs["bucket"], VersioningConfiguration={"Status": conf["status"]}
    )
    return inputs["bucket"], {}


def _s3_encryption(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    rules = []
    for rule in inputs.get("rules", []):
        default = rule.get("applyServerSideEncryptionByDefault", {})
        item: dict[str, Any] = {
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": default["sseAlgorithm"]}
        }
        if default.get("kmsMasterKeyId"):
            item["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] = default["kmsMasterKeyId"]
        if "bucketKeyEnabled" in rule:
            item["BucketKeyEnabled"] = bool(rule["bucketKeyEnabled"])
        rules.append(item)
    ctx.client("s3").put_bucket_encryption(
        Bucket=inputs["bucket"], ServerSideEncryptionConfiguration={"Rules": rules}
    )
    return inputs["bucket"], {}


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


def _iam_role(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    iam = ctx.client("iam")
    role = inputs.get("name") or (prev["id"] if prev else ctx.autoname(name))
    policy = inputs["assumeRolePolicy"]
    policy = policy if isinstance(policy, str) else json.dumps(policy)
    if prev:
        iam.update_assume_role_policy(RoleName=role, PolicyDocument=policy)
        if inputs.get("description"):
            iam.update_role(RoleName=role, Description=inputs["description"])
        arn = iam.get_role(RoleName=role)["Role"]["Arn"]
    else:
        args: dict[str, Any] = {"RoleName": role, "AssumeRolePolicyDocument": policy}
        if inputs.get("description"):
            args["Description"] = inputs["description"]
        if inputs.get("tags"):
            args["Tags"] = _tags(inputs)
        arn = iam.create_role(**args)["Role"]["Arn"]
    return role, {"name": role, "arn": arn, "uniqueId": _digest(arn, 20).upper()}


def _iam_role_policy(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    policy_name = inputs.get("name") or (prev["outputs"]["name"] if prev else ctx.autoname(name, max_len=128))
    document = inputs["policy"] if isinstance(inputs["policy"], str) else json.dumps(inputs["policy"])
    ctx.client("iam").put_role_policy(
        RoleName=inputs["role"], PolicyName=policy_name, PolicyDocument=document
    )
    return f"{inputs['role']}:{policy_name}", {"name": policy_name}


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


def _ssm_parameter(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    ssm = ctx.client("ssm")
    param = inputs.get("name") or (prev["id"] if prev else f"/{ctx.autoname(name)}")
    args: dict[str, Any] = {
        "Name": param,
        "Value": str(inputs["value"]),
        "Type": inputs.get("type", "String"),
    }
    if inputs.get("description"):
        args["Description"] = inputs["description"]
    if prev:
        args["Overwrite"] = True
    elif inputs.get("tags"):
        args["Tags"] = _tags(inputs)
    version = ssm.put_parameter(**args)["Version"]
    return param, {"name": param, "arn": ctx.arn("ssm", f"parameter{param}"), "version": version}


def _metric_alarm(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    alarm = inputs.get("name") or (prev["id"] if prev else ctx.autoname(name, max_len=255))
    outputs = {
        "name": alarm,
        "arn": ctx.arn("cloudwatch", f"alarm:{alarm}"),
        "inputsDigest": _digest(inputs, 16),
    }
    if prev and prev["outputs"].get("inputsDigest") == outputs["inputsDigest"]:
        return alarm, outputs  # unchanged: re-putting would reset the alarm's state
    args: dict[str, Any] = {
        "AlarmName": alarm,
        "ComparisonOperator": inputs["comparisonOperator"],
        "EvaluationPeriods": int(inputs["evaluationPeriods"]),
        "ActionsEnabled": bool(inputs.get("actionsEnabled", True)),
    }
    if "threshold" in inputs:
        args["Threshold"] = float(inputs["threshold"])
    simple = {
        "alarmDescription": "AlarmDescription",
        "treatMissingData": "TreatMissingData",
        "namespace": "Namespace",
        "metricName": "MetricName",
        "statistic": "Statistic",
        "extendedStatistic": "ExtendedStatistic",
        "unit": "Unit",
        "thresholdMetricId": "ThresholdMetricId",
    }
    for key, api in simple.items():
        if inputs.get(key) is not None:
            args[api] = inputs[key]
    for key, api in (("datapointsToAlarm", "DatapointsToAlarm"), ("period", "Period")):
        if inputs.get(key) is not None:
            args[api] = int(inputs[key])
    for key, api in (("alarmActions", "AlarmActions"), ("okActions", "OKActions")):
        if inputs.get(key):
            args[api] = list(inputs[key])
    if inputs.get("dimensions"):
        args["Dimensions"] = [{"Name": k, "Value": str(v)} for k, v in sorted(inputs["dimensions"].items())]
    if inputs.get("metricQueries"):
        metrics = []
        for query in inputs["metricQueries"]:
            item: dict[str, Any] = {"Id": query["id"], "ReturnData": bool(query.get("returnData", False))}
            if query.get("expression"):
                item["Expression"] = query["expression"]
            if query.get("label"):
                item["Label"] = query["label"]
            metric = query.get("metric")
            if metric:
                stat: dict[str, Any] = {
                    "Metric": {
                        "Namespace": metric["namespace"],
                        "MetricName": metric["metricName"],
                        "Dimensions": [
                            {"Name": k, "Value": str(v)}
                            for k, v in sorted((metric.get("dimensions") or {}).items())
                        ],
                    },
                    "Period": int(metric["period"]),
                    "Stat": metric["stat"],
                }
                if metric.get("unit"):
                    stat["Unit"] = metric["unit"]
                item["MetricStat"] = stat
            metrics.append(item)
        args["Metrics"] = metrics
    if inputs.get("tags") and not prev:
        args["Tags"] = _tags(inputs)
    ctx.client("cloudwatch").put_metric_alarm(**args)
    return alarm, outputs


def _log_group(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    logs = ctx.client("logs")
    group = inputs.get("name") or (prev["id"] if prev else ctx.autoname(name))
    if not prev:
        args: dict[str, Any] = {"logGroupName": group}
        if inputs.get("tags"):
            args["tags"] = {k: str(v) for k, v in inputs["tags"].items()}
        logs.create_log_group(**args)
    if inputs.get("retentionInDays"):
        logs.put_retention_policy(logGroupName=group, retentionInDays=int(inputs["retentionInDays"]))
    return group, {"name": group, "arn": ctx.arn("logs", f"log-group:{group}")}


def _sns_topic(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    topic = inputs.get("name") or (prev["outputs"]["name"] if prev else ctx.autoname(name, max_len=256))
    attributes = {}
    if inputs.get("kmsMasterKeyId"):
        attributes["KmsMasterKeyId"] = inputs["kmsMasterKeyId"]
    args: dict[str, Any] = {"Name": topic, "Attributes": attributes}
    if inputs.get("tags"):
        args["Tags"] = _tags(inputs)
    arn = ctx.client("sns").create_topic(**args)["TopicArn"]
    return arn, {"name": topic, "arn": arn}


def _sns_subscription(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    if prev:
        return prev["id"], prev["outputs"]
    arn = ctx.client("sns").subscribe(
        TopicArn=inputs["topic"],
        Protocol=inputs["protocol"],
        Endpoint=inputs["endpoint"],
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]
    return arn, {"arn": arn}


def _dynamodb_table(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    ddb = ctx.client("dynamodb")
    table = inputs.get("name") or (prev["id"] if prev else ctx.autoname(name, max_len=255))
    if not prev:
        keys = [{"AttributeName": inputs["hashKey"], "KeyType": "HASH"}]
        if inputs.get("rangeKey"):
            keys.append({"AttributeName": inputs["rangeKey"], "KeyType": "RANGE"})
        args: dict[str, Any] = {
            "TableName": table,
            "AttributeDefinitions": [
                {"AttributeName": a["name"], "AttributeType": a["type"]} for a in inputs.get("attributes", [])
            ],
            "KeySchema": keys,
            "BillingMode": inputs.get("billingMode", "PROVISIONED"),
        }
        sse = inputs.get("serverSideEncryption") or {}
        if sse.get("enabled"):
            args["SSESpecification"] = {"Enabled": True, "SSEType": "KMS"}
            if sse.get("kmsKeyArn"):
                args["SSESpecification"]["KMSMasterKeyId"] = sse["kmsKeyArn"]
        if "deletionProtectionEnabled" in inputs:
            args["DeletionProtectionEnabled"] = bool(inputs["deletionProtectionEnabled"])
        if inputs.get("tags"):
            args["Tags"] = _tags(inputs)
        ddb.create_table(**args)
    if (inputs.get("pointInTimeRecovery") or {}).get("enabled"):
        ddb.update_continuous_backups(
            TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
    return table, {"name": table, "arn": ctx.arn("dynamodb", f"table/{table}")}


def _sqs_queue(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    sqs = ctx.client("sqs")
    queue = inputs.get("name") or (prev["outputs"]["name"] if prev else ctx.autoname(name, max_len=80))
    attributes: dict[str, str] = {}
    if inputs.get("sqsManagedSseEnabled") is not None:
        attributes["SqsManagedSseEnabled"] = "true" if inputs["sqsManagedSseEnabled"] else "false"
    if inputs.get("kmsMasterKeyId"):
        attributes["KmsMasterKeyId"] = inputs["kmsMasterKeyId"]
    for key, api in (
        ("messageRetentionSeconds", "MessageRetentionPeriod"),
        ("visibilityTimeoutSeconds", "VisibilityTimeout"),
        ("delaySeconds", "DelaySeconds"),
    ):
        if inputs.get(key) is not None:
            attributes[api] = str(int(inputs[key]))
    if prev:
        url = prev["id"]
        if attributes:
            sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    else:
        args: dict[str, Any] = {"QueueName": queue, "Attributes": attributes}
        if inputs.get("tags"):
            args["tags"] = {k: str(v) for k, v in inputs["tags"].items()}
        url = sqs.create_queue(**args)["QueueUrl"]
    return url, {"name": queue, "url": url, "arn": ctx.arn("sqs", queue)}


def _sqs_queue_policy(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    policy = inputs["policy"] if isinstance(inputs["policy"], str) else json.dumps(inputs["policy"])
    ctx.client("sqs").set_queue_attributes(QueueUrl=inputs["queueUrl"], Attributes={"Policy": policy})
    return inputs["queueUrl"], {}


def _archive_zip(code: Any) -> bytes:
    """Zip a Pulumi archive (AssetArchive of FileAsset/StringAsset, or FileArchive of a directory)."""
    import pulumi

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if isinstance(code, pulumi.AssetArchive):
            for path, asset in sorted(code.assets.items()):
                if isinstance(asset, pulumi.FileAsset):
                    zf.write(asset.path, path)
                elif isinstance(asset, pulumi.StringAsset):
                    zf.writestr(path, asset.text)
                else:
                    raise SandboxError(f"Lambda code entry {path!r}: {type(asset).__name__} is not supported")
        elif isinstance(code, pulumi.FileArchive) and Path(code.path).is_dir():
            root = Path(code.path)
            for file in sorted(root.rglob("*")):
                if file.is_file():
                    zf.write(file, file.relative_to(root).as_posix())
        else:
            raise SandboxError(f"Lambda code of type {type(code).__name__} is not supported by the sandbox")
    return buf.getvalue()


def _lambda_function(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    lam = ctx.client("lambda")
    function = inputs.get("name") or (prev["id"] if prev else ctx.autoname(name, max_len=64))
    zipped = _archive_zip(inputs["code"])
    code_digest = hashlib.sha256(zipped).hexdigest()
    config: dict[str, Any] = {
        "Role": inputs["role"],
        "Handler": inputs["handler"],
        "Runtime": inputs["runtime"],
        "Timeout": int(inputs.get("timeout", 3)),
        "MemorySize": int(inputs.get("memorySize", 128)),
        "Environment": {
            "Variables": {
                k: str(v) for k, v in (inputs.get("environment") or {}).get("variables", {}).items()
            }
        },
    }
    if inputs.get("loggingConfig"):
        config["LoggingConfig"] = pascal(inputs["loggingConfig"])
    if prev:
        lam.update_function_configuration(FunctionName=function, **config)
        if prev["outputs"].get("codeSha256") != code_digest:
            lam.update_function_code(FunctionName=function, ZipFile=zipped)
        arn = prev["outputs"]["arn"]
    else:
        args: dict[str, Any] = {"FunctionName": function, "Code": {"ZipFile": zipped}, **config}
        if inputs.get("tags"):
            args["Tags"] = {k: str(v) for k, v in inputs["tags"].items()}
        arn = lam.create_function(**args)["FunctionArn"]
    return function, {
        "name": function,
        "arn": arn,
        "invokeArn": (
            f"arn:aws:apigateway:{ctx.emulator.region}:lambda:path/2015-03-31/functions/{arn}/invocations"
        ),
        "qualifiedArn": f"{arn}:$LATEST",
        "version": "$LATEST",
        "codeSha256": code_digest,
        "code": None,  # the archive object itself is not an output worth keeping in the state file
    }


def _lambda_permission(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    lam = ctx.client("lambda")
    sid = inputs.get("statementId") or (
        prev["outputs"]["statementId"] if prev else ctx.autoname(name, max_len=100)
    )
    if prev:
        with contextlib.suppress(lam.exceptions.ResourceNotFoundException):
            lam.remove_permission(FunctionName=inputs["function"], StatementId=sid)
    args: dict[str, Any] = {
        "FunctionName": inputs["function"],
        "StatementId": sid,
        "Action": inputs["action"],
        "Principal": inputs["principal"],
    }
    if inputs.get("sourceArn"):
        args["SourceArn"] = inputs["sourceArn"]
    lam.add_permission(**args)
    return sid, {"statementId": sid}


def _function_event_invoke_config(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    """Lambda's asynchronous invocation config (retries, max event age, on-failure destination).

    moto stores it; the sandbox bus reads it back to retry a failing function and send the
    on-failure record. moto's put appends instead of replacing (and reads the first), so an update
    deletes the old config first, as the provider's update replaces it whole.
    """
    lam = ctx.client("lambda")
    function = inputs["functionName"]
    args: dict[str, Any] = {"FunctionName": function}
    if inputs.get("qualifier"):
        args["Qualifier"] = inputs["qualifier"]
    for key, api in (
        ("maximumRetryAttempts", "MaximumRetryAttempts"),
        ("maximumEventAgeInSeconds", "MaximumEventAgeInSeconds"),
    ):
        if inputs.get(key) is not None:
            args[api] = int(inputs[key])
    destinations = pascal(inputs.get("destinationConfig") or {})
    for kind, target in destinations.items():
        arn = (target or {}).get("Destination", "")
        if ":sqs:" not in arn:
            raise SandboxError(
                f"resource {name!r}: destinationConfig.{kind[:1].lower() + kind[1:]} {arn!r} is not an SQS "
                "queue; the sandbox only delivers Lambda destinations to SQS"
            )
    if destinations:
        args["DestinationConfig"] = destinations
    with contextlib.suppress(lam.exceptions.ResourceNotFoundException):
        lam.delete_function_event_invoke_config(
            FunctionName=function, **({"Qualifier": args["Qualifier"]} if "Qualifier" in args else {})
        )
    lam.put_function_event_invoke_config(**args)
    physical = f"{function}:{args['Qualifier']}" if "Qualifier" in args else function
    return physical, {"functionName": function}


def _event_rule(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    rule = inputs.get("name") or (prev["id"] if prev else ctx.autoname(name, max_len=64))
    args: dict[str, Any] = {"Name": rule, "State": inputs.get("state", "ENABLED")}
    for key, api in (
        ("eventPattern", "EventPattern"),
        ("scheduleExpression", "ScheduleExpression"),
        ("description", "Description"),
    ):
        if inputs.get(key):
            args[api] = inputs[key]
    if inputs.get("tags") and not prev:
        args["Tags"] = _tags(inputs)
    arn = ctx.client("events").put_rule(**args)["RuleArn"]
    return rule, {"name": rule, "arn": arn}


def _event_target(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    target_id = inputs.get("targetId") or (
        prev["outputs"]["targetId"] if prev else ctx.autoname(name, max_len=64)
    )
    target: dict[str, Any] = {"Id": target_id, "Arn": inputs["arn"]}
    if inputs.get("retryPolicy"):
        target["RetryPolicy"] = pascal(inputs["retryPolicy"])
    if inputs.get("deadLetterConfig"):
        target["DeadLetterConfig"] = pascal(inputs["deadLetterConfig"])
    if inputs.get("input"):
        target["Input"] = inputs["input"]
    ctx.client("events").put_targets(Rule=inputs["rule"], Targets=[target])
    return f"{inputs['rule']}-{target_id}", {"targetId": target_id}


APPLIERS: dict[str, Applier] = {
    "aws:kms/key:Key": _kms_key,
    "aws:s3/bucket:Bucket": _s3_bucket,
    "aws:s3/bucketV2:BucketV2": _s3_bucket,
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": _s3_ownership,
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": _s3_public_access,
    "aws:s3/bucketPolicy:BucketPolicy": _s3_policy,
    "aws:s3/bucketVersioning:BucketVersioning": _s3_versioning,
    "aws:s3/bucketVersioningV2:BucketVersioningV2": _s3_versioning,
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": _s3_encryption,
    "aws:sagemaker/modelPackageGroup:ModelPackageGroup": _model_package_group,
    "aws:iam/role:Role": _iam_role,
    "aws:iam/rolePolicy:RolePolicy": _iam_role_policy,
    "aws:sagemaker/model:Model": _sagemaker_model,
    "aws:sagemaker/endpointConfiguration:EndpointConfiguration": _endpoint_configuration,
    "aws:sagemaker/endpoint:Endpoint": _sagemaker_endpoint,
    "aws:ssm/parameter:Parameter": _ssm_parameter,
    "aws:cloudwatch/metricAlarm:MetricAlarm": _metric_alarm,
    "aws:cloudwatch/logGroup:LogGroup": _log_group,
    "aws:sns/topic:Topic": _sns_topic,
    "aws:sns/topicSubscription:TopicSubscription": _sns_subscription,
    "aws:dynamodb/table:Table": _dynamodb_table,
    "aws:sqs/queue:Queue": _sqs_queue,
    "aws:sqs/queuePolicy:QueuePolicy": _sqs_queue_policy,
    "aws:lambda/function:Function": _lambda_function,
    "aws:lambda/permission:Permission": _lambda_permission,
    "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig": _function_event_invoke_config,
    "aws:cloudwatch/eventRule:EventRule": _event_rule,
    "aws:cloudwatch/eventTarget:EventTarget": _event_target,
}


@dataclass
class ApplyResult:
    """What one program run did: resources created / updated / unchanged, and the warnings logged."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    invokes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class SandboxMocks:
    """Pulumi mocks that apply each custom resource to the emulator (see module docstring)."""

    def __init__(self, ctx: ApplyContext, state: dict[str, Any], result: ApplyResult) -> None:
        self.ctx = ctx
        self.state = state
        self.result = result
        self.error: BaseException | None = None

    def new_resource(self, args: Any) -> tuple[str | None, dict[str, Any]]:
        if not args.custom or args.typ.startswith("pulumi:providers:"):
            return f"{args.name}-id", dict(args.inputs)
        key = f"{args.typ}::{args.name}"
        if self.error is not None:
            return f"{args.name}-failed", dict(args.inputs)  # stop applying after the first failure
        applier = APPLIERS.get(args.typ)
        try:
            if applier is None:
                raise SandboxError(
                    f"the sandbox has no applier for resource type {args.typ!r} (resource {args.name!r}); "
                    "add one in rollback/sandbox/applier.py or remove the resource from the program"
                )
            prev = self.state.get(key)
            physical_id, computed = applier(self.ctx, args.name, unsecret(dict(args.inputs)), prev)
        except BaseException as exc:  # recorded and re-raised by apply_program after the run
            if not isinstance(exc, SandboxError):
                exc = SandboxError(f"applying {args.typ} {args.name!r} to the sandbox failed: {exc}")
            self.error = exc
            return f"{args.name}-failed", dict(args.inputs)
        computed = {k: v for k, v in computed.items() if v is not None}
        self.state[key] = {"id": physical_id, "outputs": _jsonable(computed)}
        (self.result.updated if prev else self.result.created).append(key)
        self.result.resources[key] = {"id": physical_id, **computed}
        return physical_id, {**args.inputs, "id": physical_id, **computed}

    def call(self, args: Any) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self.result.invokes.append(args.token)
        region = self.ctx.emulator.region
        token = args.token
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT_ID,
                "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/sandbox",
                "userId": "AIDASANDBOX",
                "id": ACCOUNT_ID,
            }, []
        if token == "aws:index/getRegion:getRegion":
            return {
                "name": region,
                "region": region,
                "id": region,
                "endpoint": f"ec2.{region}.amazonaws.com",
                "description": region,
            }, []
        if token == "aws:index/getPartition:getPartition":
            return {
                "partition": "aws",
                "id": "aws",
                "dnsSuffix": "amazonaws.com",
                "reverseDnsPrefix": "com.amazonaws",
            }, []
        if token == "aws:ssm/getParameter:getParameter":
            ssm = self.ctx.client("ssm")
            try:
                p = ssm.get_parameter(
                    Name=args.args["name"], WithDecryption=bool(args.args.get("withDecryption"))
                )
            except ssm.exceptions.ParameterNotFound:
                return {}, [("name", f"couldn't find resource: ParameterNotFound: {args.args['name']}")]
            param = p["Parameter"]
            return {
                "name": param["Name"],
                "value": param["Value"],
                "insecureValue": param["Value"],
                "type": param["Type"],
                "version": param["Version"],
                "arn": param["ARN"],
                "id": param["Name"],
                "withDecryption": bool(args.args.get("withDecryption")),
            }, []
        if token == "aws:sagemaker/getPrebuiltEcrImage:getPrebuiltEcrImage":
            registry = "141502667606" if region == "eu-west-1" else "683313688378"
            repo = args.args["repositoryName"]
            tag = args.args.get("imageTag", "latest")
            return {
                "registryId": registry,
                "registryPath": f"{registry}.dkr.ecr.{region}.amazonaws.com/{repo}:{tag}",
                "repositoryName": repo,
                "imageTag": tag,
                "region": region,
                "id": registry,
            }, []
        self.error = self.error or SandboxError(
            f"the sandbox cannot answer provider function {token!r}; add it to SandboxMocks.call in "
            "rollback/sandbox/applier.py"
        )
        return {}, [("token", f"{token} is not supported by the sandbox")]


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def load_state(path: Path) -> dict[str, Any]:
    """The applier state (``type::name`` -> id/outputs) of a sandbox, empty if none yet."""
    if not path.exists():
        return {}
    try:
        return dict(json.loads(path.read_text()).get("resources", {}))
    except (OSError, ValueError) as exc:
        raise SandboxError(
            f"{path}: sandbox state file is unreadable ({exc}); delete it and run again"
        ) from None


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write the state atomically, so an interrupted run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"resources": state}, indent=1, sort_keys=True))
    os.replace(tmp, path)


class _MocksAdapter:
    """Built lazily (pulumi is imported only when a program runs): ``mocks`` as a pulumi Mocks."""

    @staticmethod
    def wrap(mocks: Any) -> Any:
        import pulumi

        class Adapter(pulumi.runtime.Mocks):
            def new_resource(self, args: Any) -> tuple[str | None, dict[str, Any]]:
                return mocks.new_resource(args)  # type: ignore[no-any-return]

            def call(self, args: Any) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
                return mocks.call(args)  # type: ignore[no-any-return]

        return Adapter()


def run_program(
    program: Callable[[], Any],
    mocks: Any,
    *,
    stack: str,
    config: dict[str, str],
) -> list[str]:
    """Run ``program`` in a fresh Pulumi mock runtime answered by ``mocks``; return its warnings."""
    from infra.mock_runtime import run_in_mock_runtime

    return run_in_mock_runtime(program, _MocksAdapter.wrap(mocks), stack=stack, config=config).warnings


def apply_program(
    emulator: Emulator,
    *,
    stack: str,
    config: dict[str, str],
    state_path: Path,
    program_path: Path | None = None,
    program: Callable[[], Any] | None = None,
) -> ApplyResult:
    """Run the Pulumi program for ``stack`` with ``config`` and apply it to ``emulator``.

    ``program_path`` (default: ``infra/__main__.py`` of this project) is run with ``runpy``;
    tests may pass a ``program`` callable instead. The state file is saved even when a resource
    fails, so what was applied is remembered; the failure is raised as :class:`SandboxError`.
    """
    if program is None:
        path = program_path or project_root() / "infra" / "__main__.py"
        if not path.exists():
            raise SandboxError(
                f"{path}: the Pulumi program is missing; the sandbox runs the real infra/ program"
            )
        root = str(path.parent.parent)

        def program() -> None:
            if root not in sys.path:
                sys.path.insert(0, root)
            runpy.run_path(str(path), run_name="__main__")

    state = load_state(state_path)
    result = ApplyResult()
    mocks = SandboxMocks(ApplyContext(emulator, stack), state, result)
    error: BaseException | None = None
    try:
        result.warnings.extend(run_program(program, mocks, stack=stack, config=config))
    except Exception as exc:  # the program itself failed (e.g. ConfigError): report it as is
        error = exc
    finally:
        save_state(state_path, state)
    if mocks.error is not None:
        raise mocks.error
    if error is not None:
        raise error
    return result


def project_root() -> Path:
    """The directory holding ``Pulumi.yaml`` above this package (this checkout), else the cwd."""
    from infra.config import find_project_root

    return find_project_root(Path(__file__).resolve().parent) or Path.cwd()
