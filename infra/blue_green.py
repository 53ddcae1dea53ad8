"""Strategy arithmetic for SageMaker blue/green deployment policies: waits, canary and linear sizes.

The program declares these on the endpoint (``deployment_config``); the validator checks that the
whole guardrail time fits the provider's limits (:mod:`infra.limits`).
"""

from __future__ import annotations

import math

from infra.limits import ALL_AT_ONCE_MAX_WAIT_SECONDS, TERMINATION_WAIT_SECONDS
from infra.model import Strategy


def guardrail_total_seconds(strategy: Strategy) -> int:
    """Seconds a SageMaker blue/green update of this strategy waits in total (bakes + termination)."""
    wait = blue_green_wait_seconds(strategy)
    if strategy.type == "canary":
        shifts = 2  # canary, then the rest
    elif strategy.type == "linear":
        shifts = math.ceil(100 / linear_step_percent(strategy))
    else:
        shifts = 1
    return wait * shifts + TERMINATION_WAIT_SECONDS


def blue_green_wait_seconds(strategy: Strategy) -> int:
    """Bake between blue/green traffic shifts; all-at-once is capped short on purpose."""
    if strategy.type == "all-at-once":
        return min(strategy.guardrail_wait_seconds, ALL_AT_ONCE_MAX_WAIT_SECONDS)
    return strategy.guardrail_wait_seconds


def canary_size_percent(strategy: Strategy) -> int:
    """Blue/green canary size: the first step, capped at SageMaker's 50 % of the fleet."""
    return max(1, min(strategy.candidate_steps()[0] if strategy.steps else 10, 50))


def linear_step_percent(strategy: Strategy) -> int:
    """Blue/green linear step size, clamped to SageMaker's accepted 10-50 % of the fleet."""
    return max(10, min(strategy.step_percent, 50))
