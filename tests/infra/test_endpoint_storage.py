"""Endpoint configs and models as AWS accepts and keeps them.

* CreateEndpointConfig fails when KmsKeyId is set and a variant runs on a Nitro instance with local
  (NVMe) storage: those configs carry no ``kmsKeyArn`` (captured data keeps the stack's key).
* Replaced endpoint configs are kept as revert targets, so the models they name are kept too.
"""

from __future__ import annotations

import runpy
from typing import Any

import pulumi
import pytest

from infra.limits import has_local_instance_storage
from infra.testing import PROGRAM, run_program
from tests.infra.helpers import config_map, endpoint_values, run, stack_values

LOCAL_NVME = [
    "ml.g4dn.xlarge",
    "ml.g5.xlarge",
    "ml.g6.2xlarge",
    "ml.g6e.xlarge",
    "ml.p3dn.24xlarge",
    "ml.p4d.24xlarge",
    "ml.p5.48xlarge",
    "ml.m5d.large",
    "ml.c5d.xlarge",
    "ml.r5d.large",
    "ml.c6id.large",
    "ml.m6id.large",
    "ml.r6id.large",
    "ml.trn1.2xlarge",
]
EBS_ONLY = ["ml.t2.medium", "ml.m5.large", "ml.c5.xlarge", "ml.c5n.large", "ml.p3.2xlarge", "ml.inf2.xlarge"]


@pytest.mark.parametrize("instance_type", LOCAL_NVME)
def test_instance_types_with_local_nvme_storage_are_recognised(instance_type: str) -> None:
    assert has_local_instance_storage(instance_type)


@pytest.mark.parametrize("instance_type", EBS_ONLY)
def test_ebs_only_instance_types_are_not_local_storage(instance_type: str) -> None:
    assert not has_local_instance_storage(instance_type)


@pytest.mark.parametrize("instance_type", ["ml.g5.xlarge", "ml.g4dn.xlarge", "ml.m5d.large"])
def test_endpoint_config_on_local_nvme_instances_has_no_kms_key_but_capture_keeps_it(
    instance_type: str,
) -> None:
    r = run(stack_values(endpoint_values(instanceType=instance_type)))
    config = r.named("fraud-scorer-dev-config").inputs
    key_arn = r.named("mlrollback-dev-registry-key").outputs["arn"]
    assert "kmsKeyArn" not in config
    assert config["dataCaptureConfig"]["kmsKeyId"] == key_arn
    assert {v["instanceType"] for v in config["productionVariants"]} == {instance_type}


def test_endpoint_config_on_ebs_instances_encrypts_volumes_with_the_stack_key() -> None:
    r = run(stack_values(endpoint_values(instanceType="ml.m5.large")))
    config = r.named("fraud-scorer-dev-config").inputs
    assert config["kmsKeyArn"] == r.named("mlrollback-dev-registry-key").outputs["arn"]


def test_models_are_retained_on_delete_like_the_endpoint_configs_that_name_them() -> None:
    options: dict[tuple[str, str], Any] = {}

    def record(args: pulumi.ResourceTransformationArgs) -> None:
        options[(args.type_, args.name)] = args.opts

    def program() -> None:
        pulumi.runtime.register_stack_transformation(record)
        runpy.run_path(str(PROGRAM), run_name="__main__")

    run_program(config_map(stack_values()), stack="dev", program=program)
    models = {name: o for (typ, name), o in options.items() if typ == "aws:sagemaker/model:Model"}
    configs = {
        name: o
        for (typ, name), o in options.items()
        if typ == "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
    }
    assert sorted(models) == ["fraud-scorer-dev-model-v1", "fraud-scorer-dev-model-v2"]
    assert all(o.retain_on_delete for o in [*models.values(), *configs.values()])
    endpoint = options[("aws:sagemaker/endpoint:Endpoint", "fraud-scorer-dev-endpoint")]
    assert not endpoint.retain_on_delete
