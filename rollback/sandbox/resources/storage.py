"""Appliers of storage and state: KMS keys, S3 buckets and their settings, SSM parameters,
DynamoDB tables, SQS queues.
"""

from __future__ import annotations

import json
from typing import Any

from rollback.sandbox.resources.base import Applier, ApplyContext, Outputs, _tags


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
    "aws:ssm/parameter:Parameter": _ssm_parameter,
    "aws:dynamodb/table:Table": _dynamodb_table,
    "aws:sqs/queue:Queue": _sqs_queue,
    "aws:sqs/queuePolicy:QueuePolicy": _sqs_queue_policy,
}
