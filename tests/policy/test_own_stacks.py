"""The policy pack accepts the project's own three stacks, and catches a weakened production stack.

The resources are what the real program registers under the mock runtime (inputs + the outputs a
provider would compute), handed to every policy as `pulumi preview --policy-pack` would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
)

from infra.testing import ProgramRun, run_stack_file
from policy.policies import POLICIES

REPO = Path(__file__).resolve().parents[2]
CONFIG = {"productionStacks": ["prod"], "minInstances": 2}


def _opts() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def _props(res: Any) -> dict[str, Any]:
    return {**res.inputs, **res.outputs, "id": res.id}


def violations(run: ProgramRun, stack: str) -> list[str]:
    found: list[str] = []
    resources = []
    for res in run.custom_resources:
        urn = f"urn:pulumi:{stack}::mlrollback::{res.typ}::{res.name}"
        resources.append(PolicyResource(res.typ, _props(res), urn, res.name, _opts(), None, None, [], {}))
        for policy in POLICIES:
            if isinstance(policy, ResourceValidationPolicy):
                args = ResourceValidationArgs(res.typ, _props(res), urn, res.name, _opts(), None, CONFIG)
                policy.validate(
                    args, lambda msg, urn=None, p=policy, r=res: found.append(f"{p.name}: {r.name}: {msg}")
                )
    for policy in POLICIES:
        if not isinstance(policy, ResourceValidationPolicy):
            policy.validate(
                StackValidationArgs(resources, CONFIG),
                lambda msg, urn=None, p=policy: found.append(f"{p.name}: {msg}"),
            )
    return found


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_the_policy_pack_accepts_our_own_stacks(stack: str) -> None:
    run = run_stack_file(REPO / "environments" / f"Pulumi.{stack}.yaml")
    assert violations(run, stack) == []


def test_a_production_stack_cut_to_one_instance_is_refused(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "environments" / "Pulumi.prod.yaml").read_text())
    data["config"]["mlrollback:endpoints"][0]["instanceCount"] = 1
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(yaml.safe_dump(data))
    found = violations(run_stack_file(path), "prod")
    assert found and all(v.startswith("prod-endpoint-min-instances") for v in found), found


def test_a_production_stack_on_local_nvme_instances_passes_without_an_endpoint_config_key(
    tmp_path: Path,
) -> None:
    data = yaml.safe_load((REPO / "environments" / "Pulumi.prod.yaml").read_text())
    for ep in data["config"]["mlrollback:endpoints"]:
        ep["instanceType"] = "ml.g5.xlarge"
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(yaml.safe_dump(data))
    run = run_stack_file(path)
    configs = run.of_type("sagemaker/endpointConfiguration:EndpointConfiguration")
    assert configs and all("kmsKeyArn" not in c.inputs for c in configs)
    assert violations(run, "prod") == []
