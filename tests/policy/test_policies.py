"""Each policy of the pack, called with validation arguments built here (no Pulumi engine)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)

from policy.policies import POLICIES

BY_NAME = {p.name: p for p in POLICIES}


def _opts() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def _args(
    type_: str, props: dict[str, Any], *, stack: str = "prod", config: dict[str, Any] | None = None
) -> ResourceValidationArgs:
    name = "res"
    urn = f"urn:pulumi:{stack}::mlrollback::{type_}::{name}"
    return ResourceValidationArgs(
        type_, props, urn, name, _opts(), None, config or {"productionStacks": ["prod"]}
    )


def _violations(policy: str, args: ResourceValidationArgs | StackValidationArgs) -> list[str]:
    found: list[str] = []
    BY_NAME[policy].validate(args, lambda message, urn=None: found.append(message))
    return found


ENDPOINT = "aws:sagemaker/endpoint:Endpoint"
CONFIG = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"


def _good_config(count: int = 2) -> dict[str, Any]:
    return {
        "productionVariants": [
            {"variantName": "stable", "initialInstanceCount": count, "initialVariantWeight": 90},
            {"variantName": "candidate", "initialInstanceCount": count, "initialVariantWeight": 10},
        ],
        "dataCaptureConfig": {
            "enableCapture": True,
            "initialSamplingPercentage": 20,
            "destinationS3Uri": "s3://b/c",
        },
        "kmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:key/abc",
    }


def test_prod_endpoint_without_auto_rollback_alarms_is_refused() -> None:
    bare = _args(ENDPOINT, {"endpointConfigName": "cfg", "deploymentConfig": {"blueGreenUpdatePolicy": {}}})
    assert _violations("prod-endpoint-auto-rollback-alarms", bare) == [
        "endpoint res: deploymentConfig.autoRollbackConfiguration.alarms is empty; production endpoint "
        "updates must roll back automatically on the candidate alarms"
    ]
    guarded = _args(
        ENDPOINT, {"deploymentConfig": {"autoRollbackConfiguration": {"alarms": [{"alarmName": "a"}]}}}
    )
    assert _violations("prod-endpoint-auto-rollback-alarms", guarded) == []


def test_endpoint_rules_do_not_apply_to_non_production_stacks() -> None:
    dev = _args(ENDPOINT, {"endpointConfigName": "cfg"}, stack="dev")
    assert _violations("prod-endpoint-auto-rollback-alarms", dev) == []
    assert _violations("prod-endpoint-min-instances", _args(CONFIG, _good_config(1), stack="dev")) == []


def test_production_stacks_come_from_policy_config() -> None:
    staging = _args(
        CONFIG, _good_config(1), stack="staging", config={"productionStacks": ["prod", "staging"]}
    )
    assert len(_violations("prod-endpoint-min-instances", staging)) == 2


def test_prod_endpoint_config_without_data_capture_is_refused() -> None:
    props = _good_config()
    props["dataCaptureConfig"] = {"enableCapture": False, "initialSamplingPercentage": 20}
    assert _violations("prod-endpoint-data-capture", _args(CONFIG, props)) == [
        "endpoint config res: data capture is off; set dataCapture.samplingPercent > 0 "
        "for production endpoints"
    ]
    del props["dataCaptureConfig"]
    assert len(_violations("prod-endpoint-data-capture", _args(CONFIG, props))) == 1
    assert _violations("prod-endpoint-data-capture", _args(CONFIG, _good_config())) == []


def test_prod_variant_with_one_instance_is_refused_per_variant() -> None:
    props = _good_config()
    props["productionVariants"][1]["initialInstanceCount"] = 1
    assert _violations("prod-endpoint-min-instances", _args(CONFIG, props)) == [
        "endpoint config res: variant candidate has 1 instance(s); production needs >= 2 "
        "(set instanceCount in the stack file)"
    ]


def test_prod_endpoint_config_without_kms_key_is_refused() -> None:
    props = _good_config()
    del props["kmsKeyArn"]
    assert len(_violations("prod-endpoint-encryption", _args(CONFIG, props))) == 1
    assert _violations("prod-endpoint-encryption", _args(CONFIG, _good_config())) == []


@pytest.mark.parametrize(
    "instance_type", ["ml.g5.xlarge", "ml.g4dn.2xlarge", "ml.p4d.24xlarge", "ml.c6id.large"]
)
def test_prod_endpoint_config_on_local_nvme_instances_needs_no_kms_key(instance_type: str) -> None:
    """CreateEndpointConfig fails with a KmsKeyId on these: their local disks are encrypted in hardware."""
    props = _good_config()
    del props["kmsKeyArn"]
    for variant in props["productionVariants"]:
        variant["instanceType"] = instance_type
    assert _violations("prod-endpoint-encryption", _args(CONFIG, props)) == []


def test_prod_endpoint_config_on_ebs_instances_without_kms_key_is_still_refused() -> None:
    props = _good_config()
    del props["kmsKeyArn"]
    for variant in props["productionVariants"]:
        variant["instanceType"] = "ml.m5.xlarge"
    props["shadowProductionVariants"] = [{"variantName": "shadow", "instanceType": "ml.c5.large"}]
    assert _violations("prod-endpoint-encryption", _args(CONFIG, props)) == [
        "endpoint config res: kmsKeyArn is not set; production endpoint storage must be encrypted with the "
        "stack's KMS key (with a brought-in bucket, set artifacts.kmsKeyArn)"
    ]


@pytest.mark.parametrize("action", ["*", "sagemaker:*", "ssm:Get*"])
def test_wildcard_iam_actions_are_refused(action: str) -> None:
    doc = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["dynamodb:PutItem", action], "Resource": "*"}],
    }
    found = _violations(
        "no-wildcard-iam-actions",
        _args("aws:iam/rolePolicy:RolePolicy", {"policy": json.dumps(doc)}, stack="dev"),
    )
    assert found == [f"res: IAM action {action!r} uses a wildcard; list the actions used"]


def test_named_actions_and_wildcard_denies_pass_and_inline_role_policies_are_checked() -> None:
    doc = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sagemaker:UpdateEndpointWeightsAndCapacities",
                "Resource": "arn:x",
            },
            {"Effect": "Deny", "Action": "*", "Resource": "*"},
        ]
    }
    assert (
        _violations("no-wildcard-iam-actions", _args("aws:iam/rolePolicy:RolePolicy", {"policy": doc})) == []
    )
    role = {
        "inlinePolicies": [
            {"name": "p", "policy": json.dumps({"Statement": {"Effect": "Allow", "Action": "s3:*"}})}
        ]
    }
    assert len(_violations("no-wildcard-iam-actions", _args("aws:iam/role:Role", role))) == 1


def test_public_access_block_must_block_everything() -> None:
    props = {
        "bucket": "b",
        "blockPublicAcls": True,
        "blockPublicPolicy": False,
        "ignorePublicAcls": True,
        "restrictPublicBuckets": True,
    }
    assert _violations(
        "no-public-buckets", _args("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", props)
    ) == ["res: public access block must set blockPublicPolicy to true"]


def test_public_acl_and_anonymous_bucket_policy_are_refused() -> None:
    assert len(_violations("no-public-buckets", _args("aws:s3/bucket:Bucket", {"acl": "public-read"}))) == 1
    assert _violations("no-public-buckets", _args("aws:s3/bucket:Bucket", {"acl": "private"})) == []
    policy = {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::b/*",
            }
        ]
    }
    assert (
        len(
            _violations(
                "no-public-buckets", _args("aws:s3/bucketPolicy:BucketPolicy", {"policy": json.dumps(policy)})
            )
        )
        == 1
    )
    policy["Statement"][0]["Condition"] = {"StringEquals": {"aws:PrincipalOrgID": "o-1"}}
    assert (
        _violations(
            "no-public-buckets", _args("aws:s3/bucketPolicy:BucketPolicy", {"policy": json.dumps(policy)})
        )
        == []
    )


@pytest.mark.parametrize(
    ("type_", "bad", "good"),
    [
        ("aws:dynamodb/table:Table", {}, {"serverSideEncryption": {"enabled": True}}),
        ("aws:sns/topic:Topic", {}, {"kmsMasterKeyId": "arn:k"}),
        ("aws:sqs/queue:Queue", {"sqsManagedSseEnabled": False}, {"sqsManagedSseEnabled": True}),
    ],
)
def test_audit_table_topic_and_queue_must_be_encrypted(
    type_: str, bad: dict[str, Any], good: dict[str, Any]
) -> None:
    assert len(_violations("encryption-at-rest", _args(type_, bad, stack="dev"))) == 1
    assert _violations("encryption-at-rest", _args(type_, good, stack="dev")) == []


def _resource(
    type_: str, name: str, props: dict[str, Any], deps: dict[str, list[PolicyResource]] | None = None
) -> PolicyResource:
    urn = f"urn:pulumi:dev::mlrollback::{type_}::{name}"
    return PolicyResource(type_, props, urn, name, _opts(), None, None, [], deps or {})


def test_stack_policy_flags_a_bucket_without_block_or_encryption() -> None:
    bucket = _resource("aws:s3/bucket:Bucket", "artifacts", {"bucket": "artifacts-123"})
    block = _resource(
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "artifacts-pab",
        {"bucket": "artifacts-123"},
        {"bucket": [bucket]},
    )
    found = _violations("buckets-private-and-encrypted", StackValidationArgs([bucket, block]))
    assert found == ["bucket artifacts has no default encryption (SSE)"]
    sse = _resource(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "artifacts-sse",
        {"bucket": "artifacts-123"},
        {"bucket": [bucket]},
    )
    assert _violations("buckets-private-and-encrypted", StackValidationArgs([bucket, block, sse])) == []
