"""artifacts.kmsKeyArn: a brought-in bucket's customer managed key encrypts endpoint storage and capture."""

from __future__ import annotations

from pathlib import Path

import yaml

from infra.testing import run_stack_file
from tests.infra.helpers import policy_statements, run, stack_values
from tests.infra.test_components import variants
from tests.infra.test_config import rejected
from tests.policy.test_own_stacks import REPO, violations

KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
BYO = {"create": False, "bucket": "team-ml-artifacts"}


def test_the_key_encrypts_endpoint_storage_and_data_capture() -> None:
    r = run(stack_values(artifacts={**BYO, "kmsKeyArn": KEY}))
    _, cfg = variants(r)
    assert cfg["kmsKeyArn"] == KEY
    assert cfg["dataCaptureConfig"]["kmsKeyId"] == KEY


def test_the_execution_role_may_use_only_that_key() -> None:
    r = run(stack_values(artifacts={**BYO, "kmsKeyArn": KEY}))
    grants = [
        s
        for s in policy_statements(r, "fraud-scorer-dev-execution-policy")
        if s["Action"][0].startswith("kms:")
    ]
    assert grants and all(s["Resource"] == [KEY] for s in grants)


def test_without_a_key_a_brought_in_bucket_sets_no_endpoint_key() -> None:
    _, cfg = variants(run(stack_values(artifacts=BYO)))
    assert "kmsKeyArn" not in cfg and "kmsKeyId" not in cfg["dataCaptureConfig"]


def test_a_key_with_a_created_bucket_or_an_alias_is_a_config_error() -> None:
    message = rejected(stack_values(artifacts={"create": True, "kmsKeyArn": KEY}))
    assert "mlrollback:artifacts.kmsKeyArn: only with create: false" in message
    alias = "arn:aws:kms:eu-west-1:123456789012:alias/ml"
    message = rejected(stack_values(artifacts={**BYO, "kmsKeyArn": alias}))
    assert f"mlrollback:artifacts.kmsKeyArn: {alias!r} is not a KMS key ARN" in message


def test_production_with_a_brought_in_bucket_passes_the_encryption_policy_only_with_its_key(
    tmp_path: Path,
) -> None:
    data = yaml.safe_load((REPO / "environments" / "Pulumi.prod.yaml").read_text())
    data["config"]["mlrollback:artifacts"] = dict(BYO)
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(yaml.safe_dump(data))
    without = violations(run_stack_file(path), "prod")
    assert without and all(v.startswith("prod-endpoint-encryption") for v in without), without

    data["config"]["mlrollback:artifacts"]["kmsKeyArn"] = KEY
    path.write_text(yaml.safe_dump(data))
    assert violations(run_stack_file(path), "prod") == []


def test_a_key_from_another_region_is_a_config_error() -> None:
    other = KEY.replace("eu-west-1", "us-east-1")
    message = rejected(stack_values(artifacts={**BYO, "kmsKeyArn": other}))
    assert (
        "mlrollback:artifacts.kmsKeyArn: the key is in us-east-1 but the stack deploys to eu-west-1; "
        "use a key (or a multi-Region replica key) in eu-west-1"
    ) in message
