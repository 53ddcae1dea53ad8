"""Staging rehearsal against a real stack: force the candidate alarm, time the drain, restore.

The promotion gate (``mlrollback promote``) reads the drill item this writes to the audit trail,
so a version reaches production only after its rollback was seen working in staging.
Called by the ``drill`` command (owned by the sandbox module) for the non-sandbox path.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from rollback import audit, clock, names
from rollback.errors import GateError

Progress = Callable[[str, float], Any]


def _weights(sagemaker: Any, physical: str) -> tuple[str, dict[str, float]]:
    desc = sagemaker.describe_endpoint(EndpointName=physical)
    return desc.get("EndpointStatus", ""), {
        v["VariantName"]: float(v.get("CurrentWeight", 0.0)) for v in desc.get("ProductionVariants") or []
    }


def default_endpoint(stack_cfg: Any) -> str:
    """The endpoint a drill without ``--endpoint`` rehearses: the first one that declares a candidate.

    A drill needs a candidate to drain; the stack's first endpoint may have none while another does.
    """
    for ep in stack_cfg.endpoints:
        if ep.release.candidate:
            return str(ep.name)
    raise GateError(
        f"no endpoint of stack {stack_cfg.stack} declares a candidate; a drill rehearses draining one, "
        "so deploy a candidate first (or pass --endpoint)"
    )


def run_drill(
    clients: Any,
    stack_cfg: Any,
    endpoint: str | None,
    *,
    timeout_seconds: float,
    i_know_this_is_prod: bool,
    progress: Progress | None = None,
    poll_seconds: float = 2.0,
) -> dict[str, Any]:
    """Rehearse a rollback of ``endpoint`` on ``stack_cfg`` (an ``infra.config.StackConfig``).

    ``endpoint`` None means :func:`default_endpoint`. Refuses production stacks unless
    ``i_know_this_is_prod``. Returns a report with ``rolled_back``, ``ttr_seconds`` (alarm forced ->
    candidate weight 0), ``weights_before`` and ``weights_after``; the pre-drill weights are restored
    and the drill's quarantine cleared.
    """
    if stack_cfg.production and not i_know_this_is_prod:
        raise GateError(f"stack {stack_cfg.stack} is production; pass --i-know-this-is-prod to drill it")
    ep = stack_cfg.endpoint(endpoint or default_endpoint(stack_cfg))
    physical, version = ep.physical_name, ep.release.candidate
    _status, before = _weights(clients.sagemaker, physical)
    if not version or before.get(names.CANDIDATE, 0) <= 0:
        raise GateError(
            f"{physical} has no candidate serving traffic; deploy one before rehearsing its rollback"
        )
    alarm = names.alarm_name(physical, names.CANDIDATE, "errors")
    started_at, started = clock.now(), time.monotonic()
    clients.cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="mlrollback drill")
    ttr: float | None = None
    after = before
    try:
        while time.monotonic() - started < timeout_seconds:
            _, after = _weights(clients.sagemaker, physical)
            elapsed = time.monotonic() - started
            if progress is not None:
                progress(f"waiting for the drain of {version}", elapsed)
            if after.get(names.CANDIDATE, 0) == 0:
                ttr = elapsed
                break
            clock.sleep(poll_seconds)
    finally:
        clients.cloudwatch.set_alarm_state(
            AlarmName=alarm, StateValue="OK", StateReason="mlrollback drill over"
        )
    passed = ttr is not None
    if passed:
        _restore(clients, stack_cfg.stack, physical, before, started_at)
    report = {
        "scenario": "fault-injection",
        "stack": stack_cfg.stack,
        "endpoint": physical,
        "version": version,
        "rolled_back": passed,
        "ttr_seconds": round(ttr, 3) if ttr is not None else None,
        "weights_before": before,
        "weights_after": after,
        "restored": passed,
        "expectation_met": passed,
    }
    audit.append(
        clients.dynamodb,
        names.audit_table_name(stack_cfg.stack),
        audit.AuditItem(
            endpoint=physical,
            action="drill",
            actor="cli:drill",
            outcome="done" if passed else "failed",
            version=version,
            alarm=alarm,
            reason="rehearsal: forced candidate alarm",
            detail={"passed": passed, "ttrSeconds": report["ttr_seconds"], "timeoutSeconds": timeout_seconds},
        ),
    )
    return report


def _restore(clients: Any, stack: str, physical: str, before: dict[str, float], started_at: Any) -> None:
    """Put the pre-drill weights back and delete the quarantine record the drill caused."""
    clients.sagemaker.update_endpoint_weights_and_capacities(
        EndpointName=physical,
        DesiredWeightsAndCapacities=[{"VariantName": v, "DesiredWeight": w} for v, w in before.items()],
    )
    name = names.quarantine_parameter(stack, physical)
    with contextlib.suppress(clients.ssm.exceptions.ParameterNotFound):
        clients.ssm.delete_parameter(Name=name)
