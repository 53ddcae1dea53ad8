"""Staging rehearsal against a real stack: force the candidate alarm, time the drain, restore.

The promotion gate (``mlrollback promote``) reads the drill item this writes to the audit trail,
so a version reaches production only after its rollback was seen working in staging.
Called by the ``drill`` command (owned by the sandbox module) for the non-sandbox path.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from rollback.ops.rehearsal_gate import artifact_digest
from rollback.runtime import audit, clock, names, records
from rollback.runtime.endpoint import describe_endpoint
from rollback.runtime.errors import ConflictError, GateError, MLRollbackError
from rollback.runtime.retry import RetryPolicy, call

Progress = Callable[[str, float], Any]

#: How long the restore waits for the drained endpoint to leave ``Updating``: full-jitter backoff
#: of at most 2, 4, 8, 16, then 30 s per attempt, 15 attempts: at most 330 s, about half on average.
#: A weights update on a real endpoint usually settles within a few minutes.
RESTORE_RETRY = RetryPolicy(attempts=15, base=2.0, cap=30.0)


#: How long a drill waits for the endpoint to be InService before it starts (a deploy or a rollout
#: step in flight, e.g. right after `pulumi up` or `sandbox up`), polling every few seconds.
READY_WAIT_SECONDS = 300.0
_UPDATING = ("Creating", "Updating", "SystemUpdating")


def _weights(sagemaker: Any, physical: str) -> tuple[str, dict[str, float]]:
    status, current, _desired = _weights_both(sagemaker, physical)
    return status, current


def _weights_both(sagemaker: Any, physical: str) -> tuple[str, dict[str, float], dict[str, float]]:
    """(status, CurrentWeight per variant, DesiredWeight per variant): an update in flight differs."""
    desc = sagemaker.describe_endpoint(EndpointName=physical)
    variants = desc.get("ProductionVariants") or []
    current = {v["VariantName"]: float(v.get("CurrentWeight", 0.0)) for v in variants}
    desired = {v["VariantName"]: float(v.get("DesiredWeight", v.get("CurrentWeight", 0.0))) for v in variants}
    return desc.get("EndpointStatus", ""), current, desired


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
    restore_retry: RetryPolicy | None = None,
    ready_wait_seconds: float = READY_WAIT_SECONDS,
) -> dict[str, Any]:
    """Rehearse a rollback of ``endpoint`` on ``stack_cfg`` (an ``infra.model.StackConfig``).

    ``endpoint`` None means :func:`default_endpoint`. Refuses production stacks unless
    ``i_know_this_is_prod``. Returns a report with ``rolled_back``, ``ttr_seconds`` (alarm forced ->
    candidate weight 0), ``weights_before``, ``weights_after``, ``restored``, ``progress_reset`` and
    ``notes`` (what the restore did, in words). After a seen drain the restore waits for the endpoint
    to be InService (``restore_retry``, default :data:`RESTORE_RETRY`), puts the pre-drill weights
    back, clears the drill's quarantine and puts the pre-drill rollout progress record back as it
    was (``progress_restored``), so a stepper tick during the drill neither leaves the rollout
    ``halted`` nor loses a finished rollout's ``ready-to-finalize`` (which ``promote`` and
    ``finalize`` need). A step that was baking restarts its bake: the drain hid the candidate
    during part of it. Without a pre-drill record, one written during the drill is deleted
    (``progress_reset``).

    Every drill writes one ``drill`` audit item. When the restore cannot finish, that item has
    outcome ``failed`` and says what was left behind, then the error is raised with the same words.
    """
    if stack_cfg.production and not i_know_this_is_prod:
        raise GateError(f"stack {stack_cfg.stack} is production; pass --i-know-this-is-prod to drill it")
    ep = stack_cfg.endpoint(endpoint or default_endpoint(stack_cfg))
    physical, version = ep.physical_name, ep.release.candidate
    pre_progress, before = _ready_to_drill(
        clients, stack_cfg.stack, physical, version, progress, ready_wait_seconds, poll_seconds
    )
    alarm = names.alarm_name(physical, names.CANDIDATE, "errors")
    started = time.monotonic()
    ttr, after, accepted = _force_and_time(
        clients, alarm, physical, version, timeout_seconds, poll_seconds, progress
    )
    after = after or before  # no poll at all (a zero timeout): nothing moved that we saw
    restored: dict[str, Any] | None = None
    failure: Exception | None = None
    left: dict[str, Any] = {}
    if ttr is not None:
        try:
            restored = _restore(
                clients,
                stack_cfg.stack,
                physical,
                before,
                pre_progress,
                restore_retry or RESTORE_RETRY,
                progress,
                started,
            )
        except Exception as exc:  # recorded in the drill item below, then raised again in words
            failure = exc
            left = _left_behind(clients, stack_cfg.stack, physical)
    report = {
        "scenario": "fault-injection",
        "stack": stack_cfg.stack,
        "endpoint": physical,
        "version": version,
        "rolled_back": ttr is not None,
        "ttr_seconds": round(ttr, 3) if ttr is not None else None,
        # The sandbox's four times, as a real account shows them (from the forced state; no
        # prediction is sent, so exposure is not measured here; poll-quantized).
        "times": {
            "detected_seconds": 0.0,
            "drain_accepted_seconds": round(accepted, 3) if accepted is not None else None,
            "traffic_moved_seconds": round(ttr, 3) if ttr is not None else None,
            "exposure_failed_predictions": None,
            "exposure_failed_without_failover": None,
        },
        "weights_before": before,
        "weights_after": after,
        "restored": restored is not None,
        "progress_reset": bool((restored or {}).get("progress_reset")),
        "progress_restored": bool((restored or {}).get("progress_restored")),
        "notes": (restored or {}).get("notes", [])
        + (
            []
            if ttr is not None
            else [
                f"waited {timeout_seconds:g} s for the candidate's weight to reach 0 after forcing {alarm} "
                "into ALARM; nothing drained it: check that the alarm's EventBridge rule targets the "
                "rollback function and read that function's logs"
            ]
        ),
        "expectation_met": ttr is not None and failure is None,
        "artifact": artifact_digest(ep.versions[version]) if version in ep.versions else None,
        "strategy": ep.strategy.type,
        "metrics": ep.triggers.metrics,
        "alarm_forced": alarm,
        "timeout_seconds": timeout_seconds,
    }
    message = ""
    if failure is not None:
        message = _restore_failure_message(stack_cfg.stack, ep.name, physical, version, before, left, failure)
        report["left"] = left
        report["error"] = message
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    report["audit_id"] = _record_drill(clients, stack_cfg.stack, report, alarm, timeout_seconds, failure)
    if failure is not None:
        cls = type(failure) if isinstance(failure, MLRollbackError) else MLRollbackError
        raise cls(message) from failure
    return report


def _ready_to_drill(
    clients: Any,
    stack: str,
    physical: str,
    version: str | None,
    progress: Progress | None = None,
    wait_seconds: float = READY_WAIT_SECONDS,
    poll_seconds: float = 2.0,
) -> tuple[str | None, dict[str, float]]:
    """(the rollout progress record before the drill, the live weights), or why a drill cannot start.

    An endpoint that is Creating or Updating is waited for, at most ``wait_seconds``, saying so.
    """
    progress_name = names.rollout_progress_parameter(stack, physical)
    started = time.monotonic()
    while True:
        # Read before the alarm is forced: the stepper may rewrite it (halted) while the drill runs.
        pre_progress = records.get_text(clients.ssm, progress_name)
        try:
            status, before = _weights(clients.sagemaker, physical)
        except clients.sagemaker.exceptions.ClientError as exc:
            if "Could not find endpoint" not in str(exc):
                raise
            raise GateError(f"{physical} is not deployed; run `pulumi up` for the stack first") from None
        waited = time.monotonic() - started
        if status not in _UPDATING or waited >= wait_seconds:
            break
        if progress is not None:
            progress(
                f"waiting for {physical} to be InService (it is {status}) before forcing the alarm", waited
            )
        clock.sleep(poll_seconds)
    if status != "InService":
        # Mid-update, CurrentWeight can still show the previous step while the stepper's progress
        # record already names the next one: restoring that pair would stall the rollout.
        raise ConflictError(
            f"{physical} is {status or 'not InService'} (a rollout step or deploy is in flight"
            + (f"; waited {wait_seconds:g} s" if status in _UPDATING else "")
            + "); retry when `mlrollback status` shows InService"
        )
    if records.get_text(clients.ssm, progress_name) != pre_progress:
        raise ConflictError(f"the rollout of {physical} moved while the drill started; retry the drill")
    if not version or before.get(names.CANDIDATE, 0) <= 0:
        raise GateError(
            f"{physical} has no candidate serving traffic; deploy one before rehearsing its rollback"
        )
    return pre_progress, before


def _force_and_time(
    clients: Any,
    alarm: str,
    physical: str,
    version: str | None,
    timeout_seconds: float,
    poll_seconds: float,
    progress: Progress | None,
) -> tuple[float | None, dict[str, float], float | None]:
    """Force ``alarm`` into ALARM and poll until the candidate is at weight 0.

    Returns (seconds until its ``CurrentWeight`` is 0, i.e. traffic moved, or None; the weights;
    seconds until its ``DesiredWeight`` was first seen 0, i.e. the drain accepted, or None). Both
    are poll-quantized. The alarm is set back to OK whatever happens.
    """
    started = time.monotonic()
    accepted: float | None = None
    clients.cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="mlrollback drill")
    try:
        after: dict[str, float] = {}
        while time.monotonic() - started < timeout_seconds:
            _, after, desired = _weights_both(clients.sagemaker, physical)
            elapsed = time.monotonic() - started
            if accepted is None and desired.get(names.CANDIDATE, 0) == 0:
                accepted = elapsed
            if progress is not None:
                progress(f"waiting for the drain of {version}", elapsed)
            if after.get(names.CANDIDATE, 0) == 0:
                return elapsed, after, accepted if accepted is not None else elapsed
            clock.sleep(poll_seconds)
        return None, after, accepted
    finally:
        clients.cloudwatch.set_alarm_state(
            AlarmName=alarm, StateValue="OK", StateReason="mlrollback drill over"
        )


def _record_drill(
    clients: Any,
    stack: str,
    report: dict[str, Any],
    alarm: str,
    timeout_seconds: float,
    failure: Exception | None,
) -> str:
    """The drill's one audit item, read by the rehearsal gate (``failed`` when the restore failed): its id."""
    passed = bool(report["rolled_back"])
    detail: dict[str, Any] = {
        "passed": passed,
        "ttrSeconds": report["ttr_seconds"],
        "timeoutSeconds": timeout_seconds,
        "restored": report["restored"],
        "progressReset": report["progress_reset"],
        "progressRestored": report["progress_restored"],
        "artifact": report.get("artifact"),  # what the rehearsal gate compares (rehearsal_gate.py)
    }
    if failure is not None:
        detail.update({"restoreError": str(failure), "left": report["left"]})
    item = audit.AuditItem(
        endpoint=report["endpoint"],
        action="drill",
        actor="cli:drill",
        outcome="done" if passed and failure is None else "failed",
        version=report["version"],
        alarm=alarm,
        reason="rehearsal: forced candidate alarm"
        + ("" if failure is None else "; restore failed, the drain and its quarantine were left in place"),
        detail=detail,
    )
    call(
        "PutItem",
        audit.append,
        RetryPolicy(attempts=3),
        dynamodb=clients.dynamodb,
        table=names.audit_table_name(stack),
        item=item,
    )
    return item.at.rsplit("#", 1)[-1]


def _delete_parameter(clients: Any, name: str, retry: RetryPolicy) -> bool:
    """Delete SSM parameter ``name``; False when it did not exist."""
    try:
        call("DeleteParameter", clients.ssm.delete_parameter, retry, Name=name)
    except clients.ssm.exceptions.ParameterNotFound:
        return False
    return True


def _clear_drill_quarantine(clients: Any, stack: str, physical: str, retry: RetryPolicy) -> bool:
    """Delete the quarantine record the drill's drain wrote, its drain marked complete first; False if none.

    Deleting the record alone reads to the runtime as a drain cut off before its last follow-up:
    a minute later the stepper would write the record again and drain the restored candidate.
    """
    from rollback.ops.status import settle_guards
    from rollback.runtime.records import Quarantine
    from rollback.runtime.settings import Settings

    name = names.quarantine_parameter(stack, physical)
    text = call("GetParameter", records.get_text, retry, ssm=clients.ssm, name=name)
    if text is None:
        return False
    try:
        record = Quarantine.parse(name, text)
    except MLRollbackError:
        record = None  # not the runtime's JSON: nothing to settle, the record still goes
    if record is not None:
        settle_guards(clients, Settings.for_stack(stack), record, retry)
    return _delete_parameter(clients, name, retry)


def _restore(
    clients: Any,
    stack: str,
    physical: str,
    before: dict[str, float],
    pre_progress: str | None,
    retry: RetryPolicy,
    progress: Progress | None,
    started: float,
) -> dict[str, Any]:
    """Put the pre-drill weights back, delete the drill's quarantine record, put the rollout back.

    SageMaker keeps the endpoint ``Updating`` for a while after the drain, and answers a weights
    update meanwhile with "Cannot update in-progress endpoint": the runtime's helpers wait for
    InService and retry that answer with bounded backoff on :mod:`rollback.runtime.clock`. Weights go
    first: the quarantine is only cleared once the candidate serves again, so a failure never
    leaves a drained candidate without the record that keeps `pulumi up` from undoing the drain.
    The rollout progress goes last, back to ``pre_progress`` (see :func:`run_drill`).
    """

    def say(text: str) -> None:
        if progress is not None:
            progress(text, time.monotonic() - started)

    say(f"waiting for {physical} to be InService before restoring the pre-drill weights")
    describe_endpoint(clients, physical, retry, wait_ready=True)
    call(
        "UpdateEndpointWeightsAndCapacities",
        clients.sagemaker.update_endpoint_weights_and_capacities,
        retry,
        EndpointName=physical,
        DesiredWeightsAndCapacities=[{"VariantName": v, "DesiredWeight": w} for v, w in before.items()],
    )
    notes = [f"pre-drill weights restored: {_show(before)}"]
    say(notes[-1])
    if _clear_drill_quarantine(clients, stack, physical, retry):
        notes.append("the drill's quarantine record was cleared (its drain marked complete)")
    progress_name = names.rollout_progress_parameter(stack, physical)
    now = call("GetParameter", records.get_text, retry, ssm=clients.ssm, name=progress_name)
    reset = restored = False
    if pre_progress is None:
        reset = now is not None and _delete_parameter(clients, progress_name, retry)
        if reset:
            notes.append(
                f"rollout progress written during the drill removed (it said {_progress_words(now or '')}): "
                "the rollout starts at its first step on the stepper's next tick"
            )
    else:
        text, rebake = _resumed(pre_progress)
        if now != text:
            call(
                "PutParameter",
                records.put_text,
                retry,
                ssm=clients.ssm,
                name=progress_name,
                value=text,
                description="mlrollback rollout progress (owned by the stepper Lambda)",
            )
            restored = True
        words = _progress_words(pre_progress)
        if restored:
            notes.append(
                f"rollout progress restored to its pre-drill state ({words})"
                + (" and the step's bake restarts now" if rebake else "")
                + (
                    f"; during the drill it said {_progress_words(now)}"
                    if now and now != pre_progress
                    else ""
                )
            )
        else:
            notes.append(f"rollout progress kept as before the drill ({words})")
    say(notes[-1])
    return {"notes": notes, "progress_reset": reset, "progress_restored": restored}


def _resumed(pre_progress: str) -> tuple[str, bool]:
    """The progress record to put back: the pre-drill text, with a baking step's bake restarted now.

    Returns (text, whether the bake was restarted). Text that is not the JSON the stepper writes
    goes back unchanged.
    """
    try:
        data = json.loads(pre_progress)
    except json.JSONDecodeError:
        return pre_progress, False
    if not isinstance(data, dict) or data.get("state") != "baking":
        return pre_progress, False
    return json.dumps({**data, "stepStartedAt": clock.iso(clock.now())}, sort_keys=True), True


def _left_behind(clients: Any, stack: str, physical: str) -> dict[str, Any]:
    """What a failed restore left in place, each fact read best-effort (``unknown`` when unreadable)."""
    left: dict[str, Any] = {}
    try:
        status, weights = _weights(clients.sagemaker, physical)
        left["status"], left["weights"] = status, weights
    except Exception:
        left["status"], left["weights"] = "unknown", "unknown"
    for key, name in (
        ("quarantine", names.quarantine_parameter(stack, physical)),
        ("progress", names.rollout_progress_parameter(stack, physical)),
    ):
        try:
            text = records.get_text(clients.ssm, name)
            left[key] = None if text is None else {"parameter": name, "value": text}
        except Exception:
            left[key] = "unknown"
    return left


def _restore_failure_message(
    stack: str,
    endpoint: str,
    physical: str,
    version: str,
    before: dict[str, float],
    left: dict[str, Any],
    failure: Exception,
) -> str:
    """One paragraph: the rollback worked, the restore did not, what is left, what to do."""
    weights = left.get("weights")
    live = _show(weights) if isinstance(weights, dict) else "unknown"
    quarantine = left.get("quarantine")
    kept = (
        f"quarantine record {quarantine['parameter']} kept (so `pulumi up` does not undo the drain)"
        if isinstance(quarantine, dict)
        else "no quarantine record"
        if quarantine is None
        else "quarantine record unknown"
    )
    desired = " ".join(f"VariantName={v},DesiredWeight={w:g}" for v, w in before.items())
    return (
        f"the drill drained {version} on {physical}, but restoring the pre-drill weights failed: {failure}. "
        f"Left behind: live weights {live} (status {left.get('status')}; before the drill {_show(before)}), "
        f"{kept}, rollout progress untouched. When the endpoint is InService, run `aws sagemaker "
        f"update-endpoint-weights-and-capacities --endpoint-name {physical} "
        f"--desired-weights-and-capacities {desired}`, then `mlrollback clear-quarantine --stack {stack} "
        f"--endpoint {endpoint}`; the drill is recorded as failed"
    )


def _show(weights: dict[str, float]) -> str:
    return " / ".join(f"{role} {float(w):g}" for role, w in weights.items())


def _progress_words(text: str) -> str:
    """``halted at step 2`` (1-based) from a progress record; the raw text when it is not our JSON."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return text
    if not isinstance(data, dict):
        return text
    index = data.get("stepIndex")
    if not isinstance(index, int):
        return str(data.get("state", "?"))
    return f"{data.get('state', '?')} at step {index + 1}"  # people count from 1; stepIndex from 0
