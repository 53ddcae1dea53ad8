"""Registry: the artifacts + data-capture bucket and one model package group per endpoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from rollback.runtime import names


@dataclass(frozen=True)
class RegistryArgs:
    """Inputs of :class:`Registry`.

    ``existing_bucket`` set means "bring your own": nothing is created for the bucket and its
    encryption stays the owner's business (the bucket's default encryption applies).
    ``existing_kms_key_arn`` is that bucket's customer managed key, if the owner names one: the
    endpoints then encrypt their storage and data capture with it, as with a created bucket.
    """

    stack: str
    partition: str
    endpoint_names: Sequence[str]
    existing_bucket: str | None = None
    existing_kms_key_arn: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


class Registry(pulumi.ComponentResource):
    """Artifacts bucket (versioned, SSE-KMS, private, owner-enforced) and model package groups."""

    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    kms_key_arn: pulumi.Output[str] | None

    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlrollback:registry:Registry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if args.existing_bucket:
            self.bucket_name = pulumi.Output.from_input(args.existing_bucket)
            self.bucket_arn = pulumi.Output.from_input(f"arn:{args.partition}:s3:::{args.existing_bucket}")
            self.kms_key_arn = (
                pulumi.Output.from_input(args.existing_kms_key_arn) if args.existing_kms_key_arn else None
            )
        else:
            bucket, key = self._artifacts_bucket(name, dict(args.tags))
            self.bucket_name = bucket.bucket
            self.bucket_arn = bucket.arn
            self.kms_key_arn = key.arn
        self.model_package_groups: dict[str, pulumi.Output[str]] = {}
        for endpoint in args.endpoint_names:
            group = aws.sagemaker.ModelPackageGroup(
                f"{name}-{endpoint}-models",
                model_package_group_name=names.model_package_group_name(args.stack, endpoint),
                model_package_group_description=f"Model versions served by endpoint {endpoint}",
                tags=dict(args.tags),
                opts=child,
            )
            self.model_package_groups[endpoint] = group.model_package_group_name
        self.register_outputs({"bucketName": self.bucket_name, "bucketArn": self.bucket_arn})

    def _artifacts_bucket(self, name: str, tags: dict[str, str]) -> tuple[aws.s3.Bucket, aws.kms.Key]:
        """The artifacts bucket: its own key, owner-enforced, no public access, TLS only, versioned."""
        child = pulumi.ResourceOptions(parent=self)
        key = aws.kms.Key(
            f"{name}-key",
            description=f"{name}: model artifacts and data capture",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=tags,
            opts=child,
        )
        # Auto-named: bucket names are global, a fixed name would collide across accounts.
        bucket = aws.s3.Bucket(f"{name}-artifacts", force_destroy=False, tags=tags, opts=child)
        aws.s3.BucketOwnershipControls(
            f"{name}-artifacts-ownership",
            bucket=bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child,
        )
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-artifacts-public-access",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        # Model artifacts and captured requests never travel in clear text. The public access
        # block is created first: S3 refuses policies while it evaluates a missing block.
        aws.s3.BucketPolicy(
            f"{name}-artifacts-tls-only",
            bucket=bucket.id,
            policy=pulumi.Output.json_dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "DenyInsecureTransport",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [bucket.arn, pulumi.Output.concat(bucket.arn, "/*")],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    ],
                }
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_access]),
        )
        # Versioned so an overwritten model.tar.gz can still be restored for a rollback.
        aws.s3.BucketVersioning(
            f"{name}-artifacts-versioning",
            bucket=bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-artifacts-encryption",
            bucket=bucket.id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {
                        "sse_algorithm": "aws:kms",
                        "kms_master_key_id": key.arn,
                    },
                    "bucket_key_enabled": True,
                }
            ],
            opts=child,
        )
        return bucket, key
