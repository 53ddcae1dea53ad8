"""The rollback and stepper roles fit IAM's inline-policy quota at any stack size, scoped to the stack.

IAM caps the inline policies of one role at 10,240 characters together, whitespace not counted.
Listing every endpoint and alarm ARN passed that at about ten endpoints with quality + drift; the
roles now grant one ARN pattern per name shape of the stack.
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from typing import Any

import pytest

from infra.components.autorollback import INLINE_POLICY_LIMIT, MAX_LISTED_ENDPOINTS
from infra.testing import ProgramRun
from tests.infra.helpers import endpoint_values, run, stack_values

KINDS = ("rollback", "stepper")


def _inline_size(r: ProgramRun, role_logical_name: str) -> int:
    """Characters IAM counts for a role's inline policies: every policy of the role, no whitespace."""
    role_id = r.named(role_logical_name).id
    return sum(
        len(json.dumps(json.loads(p.inputs["policy"]), separators=(",", ":")))
        for p in r.of_type("iam/rolePolicy:RolePolicy")
        if p.inputs["role"] == role_id
    )


def _busy_endpoints(count: int, stack: str) -> list[dict[str, Any]]:
    """``count`` endpoints with every trigger, named as long as validation allows (41-char physical)."""
    width = 41 - len(f"-{stack}")
    eps = []
    for i in range(count):
        ep = endpoint_values(name=f"endpoint-{i:03d}-".ljust(width, "x"))
        ep["triggers"]["quality"] = {"metric": "acc", "min": 0.9}
        ep["triggers"]["drift"] = {"maxScore": 0.2}
        eps.append(ep)
    return eps


@pytest.fixture(scope="module")
def hundred() -> ProgramRun:
    return run(stack_values(*_busy_endpoints(100, "prod")), stack="prod")


@pytest.mark.parametrize("kind", KINDS)
def test_lambda_role_policies_of_a_hundred_endpoint_stack_stay_under_the_inline_quota(
    hundred: ProgramRun, kind: str
) -> None:
    assert len(hundred.of_type("sagemaker/endpoint:Endpoint")) == 100
    size = _inline_size(hundred, f"mlrollback-prod-{kind}-role")
    assert size < INLINE_POLICY_LIMIT, size
    assert INLINE_POLICY_LIMIT == 10_240


@pytest.mark.parametrize("kind", KINDS)
def test_lambda_role_policy_size_is_bounded_whatever_the_endpoint_count(
    hundred: ProgramRun, kind: str
) -> None:
    # Endpoints are listed by ARN up to MAX_LISTED_ENDPOINTS, then one pattern: the largest policy is
    # the one at the listing limit, and past it the size does not grow.
    role = f"mlrollback-prod-{kind}-role"
    at_limit = run(stack_values(*_busy_endpoints(MAX_LISTED_ENDPOINTS, "prod")), stack="prod")
    assert _inline_size(at_limit, role) < INLINE_POLICY_LIMIT
    past = run(stack_values(*_busy_endpoints(MAX_LISTED_ENDPOINTS + 1, "prod")), stack="prod")
    assert _inline_size(past, role) == _inline_size(hundred, role)


@pytest.mark.parametrize("kind", KINDS)
def test_a_small_stack_cannot_reweight_an_endpoint_that_merely_ends_in_its_stack_name(kind: str) -> None:
    r = run(stack_values(*_busy_endpoints(3, "prod")), stack="prod")
    policy = json.loads(r.named(f"mlrollback-prod-{kind}-policy").inputs["policy"])
    (endpoints,) = [s["Resource"] for s in policy["Statement"] if s["Sid"] == "Endpoints"]
    foreign = "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/recommender-prod"
    assert not any(fnmatchcase(foreign, p) for p in endpoints)
    own = [e.outputs["arn"] for e in r.of_type("sagemaker/endpoint:Endpoint")]
    assert all(any(fnmatchcase(arn, p) for p in endpoints) for arn in own)


def _grants(r: ProgramRun, kind: str, sid: str) -> list[str]:
    policy = json.loads(r.named(f"mlrollback-prod-{kind}-policy").inputs["policy"])
    (statement,) = [s for s in policy["Statement"] if s["Sid"] == sid]
    return statement["Resource"]


@pytest.mark.parametrize("kind", KINDS)
def test_lambda_role_patterns_cover_every_endpoint_config_and_alarm_of_the_stack(
    hundred: ProgramRun, kind: str
) -> None:
    checks = {
        "Endpoints": [e.outputs["arn"] for e in hundred.of_type("sagemaker/endpoint:Endpoint")],
        "EndpointConfigs": [
            c.outputs["arn"] for c in hundred.of_type("sagemaker/endpointConfiguration:EndpointConfiguration")
        ],
        "Alarms": [a.outputs["arn"] for a in hundred.of_type("cloudwatch/metricAlarm:MetricAlarm")],
    }
    assert len(checks["Alarms"]) == 800
    for sid, arns in checks.items():
        patterns = _grants(hundred, kind, sid)
        uncovered = [arn for arn in arns if not any(fnmatchcase(arn, p) for p in patterns)]
        assert uncovered == [], (sid, uncovered[:3])


def test_lambda_role_patterns_match_no_resource_named_for_another_stack() -> None:
    r = run(stack_values(endpoint_values("fraud-scorer")))
    account = "arn:aws:sagemaker:eu-west-1:123456789012"
    foreign = {
        "Endpoints": [f"{account}:endpoint/fraud-scorer-prod", f"{account}:endpoint/dev-scorer-staging"],
        "EndpointConfigs": [f"{account}:endpoint-config/fraud-scorer-prod-config-1234567"],
        "Alarms": [
            "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:fraud-scorer-prod-candidate-errors",
            "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:fraud-scorer-dev-candidate-quality",
            "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:billing-dev-high",
            "arn:aws:cloudwatch:eu-west-2:123456789012:alarm:fraud-scorer-dev-candidate-errors",
        ],
    }
    for kind in KINDS:
        policy = json.loads(r.named(f"mlrollback-dev-{kind}-policy").inputs["policy"])
        grants = {s["Sid"]: s["Resource"] for s in policy["Statement"]}
        for sid, arns in foreign.items():
            matched = [a for a in arns if any(fnmatchcase(a, p) for p in grants[sid])]
            assert matched == [], (kind, sid, matched)
        # The dev stack's own resources are covered.
        assert any(fnmatchcase(f"{account}:endpoint/fraud-scorer-dev", p) for p in grants["Endpoints"])
