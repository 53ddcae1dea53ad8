"""The program grants the Lambdas every AWS action the runtime really calls (and the test says which).

The runtime's calls are recorded on moto while it drains and steps; the policies are the ones the
real Pulumi program declares for the dev stack under the mock runtime. A runtime change that adds a
call without the matching IAM grant would pass every moto test and fail in AWS: this catches it.
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from typing import Any

import boto3
import pytest

from rollback import names
from rollback.aws import SERVICES
from rollback.clock import VirtualClock
from tests.infra.helpers import endpoint_values, policy_statements, run, stack_values
from tests.rollback.conftest import World, alarm_event
from tests.rollback.test_drain import candidate_alarm, handle, stable_alarm
from tests.rollback.test_stepper import run as run_stepper
from tests.rollback.test_stepper import tick

#: DynamoDB authorizes a transaction by the actions of its items; there is no TransactWriteItems action.
_TRANSACT_ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def _service_of() -> dict[str, str]:
    """Operation name -> IAM service prefix, from botocore's models of the runtime's services."""
    out: dict[str, str] = {}
    for service in SERVICES:
        model = boto3.client(service, region_name="eu-west-1").meta.service_model
        prefix = model.signing_name if model.signing_name != "monitoring" else "cloudwatch"
        for op in model.operation_names:
            out.setdefault(op, prefix)
    return out


def _actions(world: World) -> set[str]:
    service = _service_of()
    actions: set[str] = set()
    for op, params in world.log.calls:
        if op == "TransactWriteItems":
            for item in params["TransactItems"]:
                actions.update(f"dynamodb:{_TRANSACT_ITEM_ACTIONS[kind]}" for kind in item)
        else:
            actions.add(f"{service[op]}:{op}")
    return actions


def _ssm_arns(world: World) -> set[tuple[str, str]]:
    """(action, parameter ARN) of every SSM call, so resource scoping is checked too."""
    out: set[tuple[str, str]] = set()
    for op, params in world.log.calls:
        name = params.get("Name") or params.get("Path")
        if op in {"GetParameter", "PutParameter", "DeleteParameter", "GetParametersByPath"}:
            out.add((f"ssm:{op}", f"arn:aws:ssm:eu-west-1:123456789012:parameter{name.rstrip('/')}"))
    return out


Grants = list[tuple[set[str], list[str]]]


def _grants(kind: str) -> Grants:
    program = run(stack_values(endpoint_values("fraud-scorer")))
    grants: Grants = []
    for statement in policy_statements(program, f"mlrollback-dev-{kind}-policy"):
        action, resource = statement["Action"], statement["Resource"]
        grants.append(
            (
                {action} if isinstance(action, str) else set(action),
                [resource] if isinstance(resource, str) else list(resource),
            )
        )
    return grants


def _allowed_actions(grants: Grants) -> set[str]:
    return {a for actions, _ in grants for a in actions}


def _ungranted_ssm(world: World, grants: Grants) -> list[tuple[str, str]]:
    return sorted(
        (action, arn)
        for action, arn in _ssm_arns(world)
        if not any(
            action in actions and any(fnmatchcase(arn, r) for r in resources) for actions, resources in grants
        )
    )


@pytest.fixture(scope="module")
def granted() -> dict[str, Grants]:
    return {kind: _grants(kind) for kind in ("rollback", "stepper")}


def test_rollback_function_may_do_everything_a_drain_and_a_stable_alarm_do(
    world: World, granted: dict[str, Grants]
) -> None:
    event = alarm_event(candidate_alarm(world), world.endpoint, names.CANDIDATE)
    handle(world, event)
    handle(world, event)  # the duplicate path reads the guard item
    handle(world, alarm_event(stable_alarm(world), world.endpoint, names.STABLE))
    used = _actions(world)
    assert {"sagemaker:UpdateEndpointWeightsAndCapacities", "sns:Publish"} <= used  # the drain ran
    missing = used - _allowed_actions(granted["rollback"])
    assert missing == set(), json.dumps(sorted(missing))
    assert _ungranted_ssm(world, granted["rollback"]) == []


def test_stepper_function_may_do_everything_a_rollout_and_its_safety_net_drain_do(
    world: World, vclock: VirtualClock, granted: dict[str, Grants]
) -> None:
    world.put_plan(world.endpoint)
    alarm = candidate_alarm(world)
    world.set_alarm(alarm, "OK")
    tick(world)

    def fire(minute: int) -> None:
        if minute == 7:
            world.set_alarm(alarm, "ALARM")

    run_stepper(world, vclock, minutes=9, per_minute=50, on_minute=fire)
    used: Any = _actions(world)
    assert {"ssm:GetParametersByPath", "sagemaker:UpdateEndpointWeightsAndCapacities"} <= used
    missing = used - _allowed_actions(granted["stepper"])
    assert missing == set(), json.dumps(sorted(missing))
    assert _ungranted_ssm(world, granted["stepper"]) == []
