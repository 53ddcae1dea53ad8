"""Names that carry meaning, shared by the Pulumi program, the Lambda runtime, the CLI and the sandbox.

Every physical name that more than one part of the project must agree on is built here and
nowhere else. Standard library only: this module is on the Lambda import path.

Contract (see docs/contracts.md): changing any of these names is a breaking change for
deployed stacks, because alarms, parameters and tables are found by these names.
"""

from __future__ import annotations

import re
from typing import Final, Literal

#: Production-variant names are roles, not versions. Which version plays a role is config.
STABLE: Final = "stable"
CANDIDATE: Final = "candidate"
SHADOW: Final = "shadow"
Role = Literal["stable", "candidate", "shadow"]
ROLES: Final[tuple[str, ...]] = (STABLE, CANDIDATE, SHADOW)

#: The KPIs a rollback trigger can watch. Alarm names end with one of these.
KPIS: Final[tuple[str, ...]] = ("errors", "latency", "quality", "drift")

#: Namespace of the fast (1-second resolution) custom metrics published by the client
#: library and the sandbox traffic, per EndpointName and VariantName dimensions.
CUSTOM_METRIC_NAMESPACE: Final = "MLRollback/Endpoints"

#: Environment variables the program sets on the Lambda functions (contract).
ENV_STACK: Final = "MLROLLBACK_STACK"
ENV_AUDIT_TABLE: Final = "MLROLLBACK_AUDIT_TABLE"
ENV_TOPIC_ARN: Final = "MLROLLBACK_TOPIC_ARN"
ENV_QUARANTINE_PREFIX: Final = "MLROLLBACK_QUARANTINE_PREFIX"
ENV_ROLLOUT_PREFIX: Final = "MLROLLBACK_ROLLOUT_PREFIX"
#: Set on the drift function only: the SSM path holding one drift job per drifting endpoint.
ENV_DRIFT_PREFIX: Final = "MLROLLBACK_DRIFT_PREFIX"

_STACK_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,19}$")
_ENDPOINT_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def check_stack(stack: str) -> str:
    """Return ``stack`` if it is a valid stack name for physical names, else raise ValueError."""
    if not _STACK_RE.match(stack):
        raise ValueError(
            f"stack name {stack!r} must be 1-20 lowercase letters, digits or '-', "
            "starting with a letter or digit"
        )
    return stack


def endpoint_name(stack: str, endpoint: str) -> str:
    """Physical SageMaker endpoint name for the logical endpoint ``endpoint`` of ``stack``."""
    name = f"{endpoint}-{stack}"
    if not _ENDPOINT_RE.match(name):
        raise ValueError(
            f"endpoint name {name!r} (endpoint {endpoint!r} + stack {stack!r}) is not a valid SageMaker "
            "endpoint name: at most 63 letters, digits and '-', not starting or ending with '-'"
        )
    return name


def alarm_name(endpoint_physical: str, role: str, kpi: str) -> str:
    """CloudWatch alarm name for one endpoint, variant role and KPI.

    Stable across model versions on purpose: the endpoint's auto-rollback alarm list is
    ForceNew in the provider, so a name that changed with the version would replace the endpoint.
    """
    if role not in ROLES:
        raise ValueError(f"unknown variant role {role!r}; expected one of {', '.join(ROLES)}")
    if kpi not in KPIS:
        raise ValueError(f"unknown KPI {kpi!r}; expected one of {', '.join(KPIS)}")
    return f"{endpoint_physical}-{role}-{kpi}"


def parse_alarm_name(name: str) -> tuple[str, str, str] | None:
    """Split an alarm name made by :func:`alarm_name` into (endpoint, role, kpi), or None."""
    parts = name.rsplit("-", 2)
    if len(parts) != 3 or parts[1] not in ROLES or parts[2] not in KPIS:
        return None
    return parts[0], parts[1], parts[2]


def audit_table_name(stack: str) -> str:
    """DynamoDB audit table of a stack (partition key ``endpoint``, sort key ``at``)."""
    return f"mlrollback-{stack}-audit"


def topic_name(stack: str) -> str:
    """SNS topic that receives one message per rollback of the stack."""
    return f"mlrollback-{stack}-alerts"


def rollback_function_name(stack: str) -> str:
    """Lambda function that drains a failing candidate (``rollback.runtime.handler.on_alarm``)."""
    return f"mlrollback-{stack}-rollback"


def stepper_function_name(stack: str) -> str:
    """Lambda function that advances progressive rollouts (``rollback.runtime.handler.on_schedule``)."""
    return f"mlrollback-{stack}-stepper"


def alarm_rule_name(stack: str, part: int = 1) -> str:
    """EventBridge rule routing the stack's alarm ALARM transitions to the rollback Lambda.

    A stack with many alarms needs several rules (an event pattern holds at most 2048
    characters by default); ``part`` 2, 3, ... name the extra ones.
    """
    if part < 1:
        raise ValueError(f"rule part must be 1 or more, got {part}")
    base = f"mlrollback-{stack}-candidate-alarms"
    return base if part == 1 else f"{base}-{part}"


def schedule_rule_name(stack: str) -> str:
    """EventBridge rule that invokes the rollout stepper on a schedule."""
    return f"mlrollback-{stack}-rollout-stepper"


def drift_function_name(stack: str) -> str:
    """Lambda function that scores input drift of candidates (``rollback.runtime.handler.on_drift``)."""
    return f"mlrollback-{stack}-drift"


def drift_schedule_rule_name(stack: str) -> str:
    """EventBridge rule that invokes the drift job on a schedule."""
    return f"mlrollback-{stack}-drift-schedule"


def model_package_group_name(stack: str, endpoint_physical: str) -> str:
    """SageMaker model package group holding the model versions served by one endpoint.

    The physical endpoint name already carries the stack, so the group is named after it (the
    name deployed stacks already use); ``stack`` is checked so a foreign endpoint is caught early.
    """
    if not endpoint_physical.endswith(f"-{stack}"):
        raise ValueError(f"endpoint {endpoint_physical!r} does not belong to stack {stack!r}")
    return endpoint_physical


def dead_letter_queue_name(stack: str) -> str:
    """SQS queue that keeps alarm events the rollback Lambda could not handle."""
    return f"mlrollback-{stack}-rollback-dlq"


def quarantine_prefix(stack: str) -> str:
    """SSM parameter path under which quarantine records of a stack live."""
    return f"/mlrollback/{stack}/quarantine"


def quarantine_parameter(stack: str, endpoint_physical: str) -> str:
    """SSM parameter holding the quarantine record of one endpoint (JSON, see docs/contracts.md)."""
    return f"{quarantine_prefix(stack)}/{endpoint_physical}"


def rollout_prefix(stack: str) -> str:
    """SSM parameter path under which rollout plans (written by the program) live."""
    return f"/mlrollback/{stack}/rollout"


def rollout_plan_parameter(stack: str, endpoint_physical: str) -> str:
    """SSM parameter holding the rollout plan of one endpoint (JSON, written by ``pulumi up``)."""
    return f"{rollout_prefix(stack)}/{endpoint_physical}/plan"


def rollout_progress_parameter(stack: str, endpoint_physical: str) -> str:
    """SSM parameter holding the stepper's progress for one endpoint (JSON, written by the runtime)."""
    return f"{rollout_prefix(stack)}/{endpoint_physical}/progress"


def drift_prefix(stack: str) -> str:
    """SSM parameter path under which the drift jobs (written by the program) live.

    Parameters rather than the function's environment: Lambda caps an environment at 4 KB, which
    would cap the number of drifting endpoints; a path holds any number of jobs.
    """
    return f"/mlrollback/{stack}/drift"


def drift_job_parameter(stack: str, endpoint_physical: str) -> str:
    """SSM parameter holding the drift job of one endpoint (JSON, written by ``pulumi up``)."""
    return f"{drift_prefix(stack)}/{endpoint_physical}"
