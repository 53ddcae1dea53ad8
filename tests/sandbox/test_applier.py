"""The applier: real boto3 calls against the emulator, create-then-update, refusal of unknown types."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_aws as aws
import pytest

from rollback.runtime.errors import SandboxError
from rollback.sandbox.emulator import Emulator
from rollback.sandbox.runner import apply_program


@pytest.fixture
def emulator():
    with Emulator("eu-west-1") as emu:
        yield emu


def _endpoint_program(weight_candidate: float):
    def program() -> None:
        trust = (
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", '
            '"Principal": {"Service": "sagemaker.amazonaws.com"}}]}'
        )
        role = aws.iam.Role("exec", assume_role_policy=trust)
        model = aws.sagemaker.Model(
            "model", execution_role_arn=role.arn, primary_container={"image": "123.dkr.ecr/x:1"}
        )
        variants = [
            {
                "variant_name": "stable",
                "model_name": model.name,
                "initial_instance_count": 1,
                "instance_type": "ml.m5.large",
                "initial_variant_weight": 100 - weight_candidate,
            },
            {
                "variant_name": "candidate",
                "model_name": model.name,
                "initial_instance_count": 1,
                "instance_type": "ml.m5.large",
                "initial_variant_weight": weight_candidate,
            },
        ]
        config = aws.sagemaker.EndpointConfiguration("config", production_variants=variants)
        aws.sagemaker.Endpoint("endpoint", name="scorer-test", endpoint_config_name=config.name)
        aws.ssm.Parameter("plan", name="/t/plan", type="String", value=f'{{"w": {weight_candidate}}}')

    return program


def test_second_up_updates_in_place_instead_of_duplicating(emulator: Emulator, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    first = apply_program(emulator, stack="t", config={}, state_path=state, program=_endpoint_program(0))
    second = apply_program(emulator, stack="t", config={}, state_path=state, program=_endpoint_program(20))

    sm = emulator.client("sagemaker")
    assert len(first.created) == 5 and first.updated == []
    assert second.created == [] and len(second.updated) == 5
    assert [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]] == ["scorer-test"]
    assert len(emulator.client("iam").list_roles()["Roles"]) == 1
    # A changed config is a new (auto-named) config, the old one retained; the endpoint switched to it.
    configs = sm.list_endpoint_configs()["EndpointConfigs"]
    assert len(configs) == 2
    live = sm.describe_endpoint(EndpointName="scorer-test")
    weights = {v["VariantName"]: v["CurrentWeight"] for v in live["ProductionVariants"]}
    assert weights == {"stable": 80.0, "candidate": 20.0}
    value = emulator.client("ssm").get_parameter(Name="/t/plan")["Parameter"]
    assert value["Value"] == '{"w": 20}' and value["Version"] == 2


def test_zero_weight_variant_is_kept_at_zero(emulator: Emulator, tmp_path: Path) -> None:
    apply_program(
        emulator, stack="t", config={}, state_path=tmp_path / "s.json", program=_endpoint_program(0)
    )

    live = emulator.client("sagemaker").describe_endpoint(EndpointName="scorer-test")
    assert {v["VariantName"]: v["CurrentWeight"] for v in live["ProductionVariants"]} == {
        "stable": 100.0,
        "candidate": 0.0,
    }


def test_unknown_resource_type_stops_with_its_name(emulator: Emulator, tmp_path: Path) -> None:
    def program() -> None:
        vpc = aws.ec2.Vpc("network", cidr_block="10.0.0.0/16")
        # Independent resources register concurrently; one that needs the refused one must not apply.
        aws.ssm.Parameter(
            "after", name="/t/after", type="String", value="x", opts=pulumi.ResourceOptions(depends_on=[vpc])
        )

    with pytest.raises(SandboxError, match=r"aws:ec2/vpc:Vpc"):
        apply_program(emulator, stack="t", config={}, state_path=tmp_path / "s.json", program=program)
    # Nothing that depends on the refused resource was applied.
    assert emulator.client("ssm").describe_parameters()["Parameters"] == []


def test_missing_ssm_parameter_is_a_failed_invoke_the_program_can_catch(
    emulator: Emulator, tmp_path: Path
) -> None:
    seen: list[str] = []

    def program() -> None:
        try:
            aws.ssm.get_parameter(name="/t/quarantine")
        except Exception as exc:
            seen.append(str(exc))
        emulator.client("ssm").put_parameter(Name="/t/quarantine", Value="{}", Type="String")
        seen.append(aws.ssm.get_parameter(name="/t/quarantine").value)
        pulumi.export("ok", True)

    apply_program(emulator, stack="t", config={}, state_path=tmp_path / "s.json", program=program)
    assert "ParameterNotFound" in seen[0]
    assert seen[1] == "{}"


def test_bucket_policy_applies_all_but_the_tls_only_deny_the_http_emulator_cannot_meet(
    emulator: Emulator, tmp_path: Path
) -> None:
    import json

    def program() -> None:
        bucket = aws.s3.Bucket("data", bucket="sandbox-data")
        aws.s3.BucketPolicy(
            "data-policy",
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
                        },
                        {
                            "Sid": "DenyDeletes",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:DeleteBucket",
                            "Resource": bucket.arn,
                        },
                    ],
                }
            ),
        )

    apply_program(emulator, stack="t", config={}, state_path=tmp_path / "s.json", program=program)
    s3 = emulator.client("s3")
    applied = json.loads(s3.get_bucket_policy(Bucket="sandbox-data")["Policy"])
    assert [st["Sid"] for st in applied["Statement"]] == ["DenyDeletes"]
    s3.put_object(Bucket="sandbox-data", Key="k", Body=b"x")  # plain HTTP to the emulator still works
