"""The mlrollback policies, checked by ``pulumi preview --policy-pack policy/`` in CI.

Production endpoints (a stack listed in the ``productionStacks`` config, default ``prod``) must
have auto-rollback alarms, data capture, at least two instances per variant and an encrypted
endpoint config (a KMS key, except on instances with local NVMe storage, which take none); every
stack must keep its buckets private, encrypt data at rest and grant IAM actions by name (no ``*``).
Properties arrive with the engine's camelCase names.

Each validation is a plain function of ``(args, report_violation)``, so tests build the
validation arguments themselves and call it (see tests/policy).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

ENDPOINT = "aws:sagemaker/endpoint:Endpoint"
ENDPOINT_CONFIG = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
BUCKET = "aws:s3/bucket:Bucket"
BUCKET_V2 = "aws:s3/bucketV2:BucketV2"
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
BUCKET_ACL = "aws:s3/bucketAclV2:BucketAclV2"
BUCKET_SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
BUCKET_SSE_V2 = "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2"
TABLE = "aws:dynamodb/table:Table"
TOPIC = "aws:sns/topic:Topic"
QUEUE = "aws:sqs/queue:Queue"
IAM_POLICY_TYPES = {
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/policy:Policy": "policy",
    "aws:iam/userPolicy:UserPolicy": "policy",
    "aws:iam/groupPolicy:GroupPolicy": "policy",
}
PUBLIC_ACLS = {"public-read", "public-read-write", "authenticated-read"}
PUBLIC_BLOCK_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")

#: Instance families with local NVMe instance storage although their name has no "d" attribute (EC2's
#: naming marks instance store with "d": m5d, c6id, g4dn, p4d, ...). The program has the same rule
#: (infra/limits.py); the pack keeps its own so `pulumi policy publish` ships it alone, and
#: tests/policy/test_self_contained.py holds the two equal on every SageMaker instance type.
_LOCAL_STORAGE_FAMILIES = frozenset(
    {"g5", "g6", "g6e", "gr6", "p5", "p5e", "p5en", "p6-b200", "p6e-gb200", "trn1", "trn1n", "trn2", "dl1"}
)
_FAMILY_RE = re.compile(r"^(?P<series>[a-z]+)(?P<generation>\d+)(?P<attributes>[a-z]*)(-.*)?$")


def has_local_instance_storage(instance_type: str) -> bool:
    """Whether ``ml.<family>.<size>`` has local NVMe storage (which takes no KMS key)."""
    parts = instance_type.split(".")
    if len(parts) != 3:
        return False
    m = _FAMILY_RE.match(parts[1])
    return parts[1] in _LOCAL_STORAGE_FAMILIES or bool(m and "d" in m["attributes"])


PRODUCTION_SCHEMA = PolicyConfigSchema(
    properties={
        "productionStacks": {"type": "array", "items": {"type": "string"}, "default": ["prod"]},
        "minInstances": {"type": "integer", "default": 2, "minimum": 1},
    }
)


def stack_of(urn: str) -> str:
    """Stack name from a URN ``urn:pulumi:<stack>::<project>::<type>::<name>``."""
    parts = urn.split(":", 2)
    return parts[2].split("::", 1)[0] if len(parts) == 3 else ""


def is_production(args: ResourceValidationArgs) -> bool:
    """A resource is production when its stack is listed in the policy config."""
    stacks = args.get_config().get("productionStacks", ["prod"])
    return stack_of(args.urn) in stacks


def _production_only(check: Callable[[ResourceValidationArgs, ReportViolation], None]) -> Any:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if is_production(args):
            check(args, report_violation)

    validate.__name__ = check.__name__
    validate.__doc__ = check.__doc__
    return validate


# -- production endpoints ----------------------------------------------------------------------


def _auto_rollback_alarms(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """A production endpoint update must be guarded by CloudWatch alarms (blue/green auto-rollback)."""
    if args.resource_type != ENDPOINT:
        return
    deployment = args.props.get("deploymentConfig") or {}
    alarms = (deployment.get("autoRollbackConfiguration") or {}).get("alarms") or []
    if not alarms:
        report_violation(
            f"endpoint {args.name}: deploymentConfig.autoRollbackConfiguration.alarms is empty; production "
            "endpoint updates must roll back automatically on the candidate alarms",
            None,
        )


def _data_capture(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Production traffic must be captured: shadow verdicts and drift checks read it."""
    if args.resource_type != ENDPOINT_CONFIG:
        return
    capture = args.props.get("dataCaptureConfig") or {}
    enabled = capture.get("enableCapture", bool(capture))
    if not capture or not enabled or not capture.get("initialSamplingPercentage"):
        report_violation(
            f"endpoint config {args.name}: data capture is off; set dataCapture.samplingPercent > 0 "
            "for production endpoints",
            None,
        )


def _min_instances(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """One instance per variant is one failure away from an outage."""
    if args.resource_type != ENDPOINT_CONFIG:
        return
    minimum = int(args.get_config().get("minInstances", 2))
    for variant in args.props.get("productionVariants") or []:
        count = variant.get("initialInstanceCount")
        if count is None or count < minimum:
            report_violation(
                f"endpoint config {args.name}: variant {variant.get('variantName', '?')} has "
                f"{count if count is not None else 'no'} instance(s); production needs >= {minimum} "
                "(set instanceCount in the stack file)",
                None,
            )


def _endpoint_encryption(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Production model volumes and captured data are encrypted with a customer managed key.

    Exempt: a config with a variant on an instance with local NVMe storage (ml.g5, ml.g4dn, ml.m5d,
    ...). Those disks are encrypted by a hardware module and CreateEndpointConfig fails when a
    KmsKeyId is given, so the program leaves it out for them.
    """
    if args.resource_type != ENDPOINT_CONFIG:
        return
    variants = [
        *(args.props.get("productionVariants") or []),
        *(args.props.get("shadowProductionVariants") or []),
    ]
    if any(
        isinstance(v, Mapping) and has_local_instance_storage(str(v.get("instanceType") or ""))
        for v in variants
    ):
        return
    if not args.props.get("kmsKeyArn"):
        report_violation(
            f"endpoint config {args.name}: kmsKeyArn is not set; production endpoint storage must be "
            "encrypted with the stack's KMS key (with a brought-in bucket, set artifacts.kmsKeyArn)",
            None,
        )


# -- every stack -------------------------------------------------------------------------------


def _statements(document: Any) -> Iterable[Mapping[str, Any]]:
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except json.JSONDecodeError:
            return []
    if not isinstance(document, Mapping):
        return []
    statements = document.get("Statement") or []
    return (
        [statements] if isinstance(statements, Mapping) else [s for s in statements if isinstance(s, Mapping)]
    )


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value] if value is not None else []


def _wildcard_actions(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """IAM grants name each action: a ``*`` in an action grants tomorrow's APIs too."""
    documents: list[Any] = []
    if args.resource_type in IAM_POLICY_TYPES:
        documents.append(args.props.get(IAM_POLICY_TYPES[args.resource_type]))
    elif args.resource_type == "aws:iam/role:Role":
        documents += [
            p.get("policy") for p in args.props.get("inlinePolicies") or [] if isinstance(p, Mapping)
        ]
    for document in documents:
        for statement in _statements(document):
            if statement.get("Effect", "Allow") != "Allow":
                continue
            if "NotAction" in statement:
                report_violation(
                    f"{args.name}: Allow with NotAction grants everything else; list actions", None
                )
            for action in _as_list(statement.get("Action")):
                if isinstance(action, str) and "*" in action:
                    report_violation(
                        f"{args.name}: IAM action {action!r} uses a wildcard; list the actions used",
                        None,
                    )


def _private_buckets(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Model artifacts and captured requests are private data."""
    if args.resource_type == PUBLIC_ACCESS_BLOCK:
        off = [flag for flag in PUBLIC_BLOCK_FLAGS if args.props.get(flag) is not True]
        if off:
            report_violation(f"{args.name}: public access block must set {', '.join(off)} to true", None)
    elif args.resource_type in (BUCKET, BUCKET_V2, BUCKET_ACL):
        acl = args.props.get("acl")
        if acl in PUBLIC_ACLS:
            report_violation(f"{args.name}: bucket ACL {acl!r} makes objects public; remove it", None)
    elif args.resource_type == BUCKET_POLICY:
        for statement in _statements(args.props.get("policy")):
            principal = statement.get("Principal")
            public = principal == "*" or (
                isinstance(principal, Mapping) and "*" in _as_list(principal.get("AWS"))
            )
            if statement.get("Effect", "Allow") == "Allow" and public and not statement.get("Condition"):
                report_violation(f"{args.name}: bucket policy allows Principal '*' without a condition", None)


def _encryption_at_rest(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Audit trail, alerts and dead letters hold operational data: encrypted at rest."""
    props = args.props
    if args.resource_type == TABLE:
        if not (props.get("serverSideEncryption") or {}).get("enabled"):
            report_violation(f"{args.name}: DynamoDB serverSideEncryption.enabled must be true (KMS)", None)
    elif args.resource_type == TOPIC:
        if not props.get("kmsMasterKeyId"):
            report_violation(f"{args.name}: SNS topic needs kmsMasterKeyId", None)
    elif args.resource_type == QUEUE and not (
        props.get("kmsMasterKeyId") or props.get("sqsManagedSseEnabled")
    ):
        report_violation(f"{args.name}: SQS queue needs sqsManagedSseEnabled or kmsMasterKeyId", None)


def _buckets_have_guards(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Every bucket the stack creates has a public access block and default encryption."""
    buckets = [r for r in args.resources if r.resource_type in (BUCKET, BUCKET_V2)]
    guarded: dict[str, set[str]] = {}
    for r in args.resources:
        if r.resource_type in (PUBLIC_ACCESS_BLOCK, BUCKET_SSE, BUCKET_SSE_V2):
            kind = "block" if r.resource_type == PUBLIC_ACCESS_BLOCK else "sse"
            targets = {d.urn for d in r.property_dependencies.get("bucket", [])} | {
                str(r.props.get("bucket", ""))
            }
            for t in targets:
                guarded.setdefault(t, set()).add(kind)
    for bucket in buckets:
        ids = {bucket.urn, str(bucket.props.get("bucket", "")), str(bucket.props.get("id", ""))} - {""}
        have = set().union(*(guarded.get(i, set()) for i in ids))
        for kind, what in (("block", "a BucketPublicAccessBlock"), ("sse", "default encryption (SSE)")):
            if kind not in have:
                report_violation(f"bucket {bucket.name} has no {what}", bucket.urn)


POLICIES = [
    ResourceValidationPolicy(
        name="prod-endpoint-auto-rollback-alarms",
        description="Production endpoints roll back automatically on their alarms.",
        validate=_production_only(_auto_rollback_alarms),
        config_schema=PRODUCTION_SCHEMA,
    ),
    ResourceValidationPolicy(
        name="prod-endpoint-data-capture",
        description="Production endpoints capture request/response data.",
        validate=_production_only(_data_capture),
        config_schema=PRODUCTION_SCHEMA,
    ),
    ResourceValidationPolicy(
        name="prod-endpoint-min-instances",
        description="Production endpoint variants run on at least two instances.",
        validate=_production_only(_min_instances),
        config_schema=PRODUCTION_SCHEMA,
    ),
    ResourceValidationPolicy(
        name="prod-endpoint-encryption",
        description="Production endpoint storage is encrypted with a KMS key.",
        validate=_production_only(_endpoint_encryption),
        config_schema=PRODUCTION_SCHEMA,
    ),
    ResourceValidationPolicy(
        name="no-wildcard-iam-actions",
        description="IAM policies list actions by name.",
        validate=_wildcard_actions,
    ),
    ResourceValidationPolicy(
        name="no-public-buckets",
        description="Buckets block public access and have no public ACL or policy.",
        validate=_private_buckets,
    ),
    ResourceValidationPolicy(
        name="encryption-at-rest",
        description="Audit table, topics and queues are encrypted at rest.",
        validate=_encryption_at_rest,
    ),
    StackValidationPolicy(
        name="buckets-private-and-encrypted",
        description="Every bucket has a public access block and default encryption.",
        validate=_buckets_have_guards,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
]
