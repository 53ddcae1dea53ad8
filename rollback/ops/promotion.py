"""Promotion gates: may a version of the source stack become the target stack's candidate?

Every gate that fails is one sentence (the CLI lists them all, exit 8); notes are for the operator.
The gates read the source's live state and audit trail (alarms, rollout, quarantine, a passing
drill within ``rehearsal.maxAgeHours``), the target's quarantine record and, when asked, a shadow
verdict on the captures of the period the version last served as shadow (docs/runbook.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from rollback.ops.schema_check import check_versions
from rollback.ops.stack_changes import record_change, schema_gate
from rollback.ops.stack_context import StackContext
from rollback.ops.stackfile import Release, StackDocument
from rollback.runtime import clock, names, records
from rollback.runtime.errors import ConfigError, GateError


def target_state(dst: StackContext, endpoint: str) -> tuple[bool, dict[str, Any] | None]:
    """(is the target endpoint deployed, its quarantine record or None).

    Read without the endpoint's status: a target that was never deployed (prod's first `pulumi up`
    comes after the promotion in CI) has nothing live to protect, which is not an error.
    """
    from botocore.exceptions import ClientError

    physical = dst.endpoint(endpoint).physical_name
    try:
        dst.clients.sagemaker.describe_endpoint(EndpointName=physical)
        deployed = True
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("ValidationException", "ResourceNotFound"):
            raise
        deployed = False
    text = records.get_text(dst.clients.ssm, dst.settings.quarantine_parameter(physical))
    if text is None:
        return deployed, None
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        record = None
    if not isinstance(record, dict):  # fail safe: an unreadable record still says something was rolled back
        record = {"version": None, "reason": f"unreadable quarantine record: {text}"}
    return deployed, record


def max_age_hours(src: StackContext, dst: StackContext, given: float | None) -> float:
    """How old the drill may be: ``--max-age-hours``, else the target's ``rehearsal.maxAgeHours`` when the
    target requires a rehearsal, else the source's."""
    if given is not None:
        return given
    owner = dst if dst.cfg.rehearsal.required else src
    return float(owner.cfg.rehearsal.max_age_hours)


def gates(
    src: StackContext, dst: StackContext, endpoint: str, version: str, max_age_hours: float
) -> tuple[list[str], list[str]]:
    """(every promotion gate that fails, one sentence each; notes for the operator). No failure: promote.

    The rehearsal evidence is :mod:`rollback.ops.rehearsal_gate`'s, the same that ``preflight``
    reads: the digest is of the artifact the target will declare (the source's catalog entry, which
    promote copies), and the drill must be fresh now or when the version entered the target.
    """
    from rollback.ops import rehearsal_gate

    # What would run in the target is what must have been rehearsed: promote keeps a version the
    # target's catalog already holds (promoted before, or typed in by hand), else copies the source's.
    spec = dst.endpoint(endpoint).versions.get(version) or src.endpoint(endpoint).versions.get(version)
    if spec is None:
        known = ", ".join(src.endpoint(endpoint).versions) or "none"
        return [f"{src.stack}: {version} is not in the version catalog of {endpoint} (known: {known})"], []
    digest = rehearsal_gate.artifact_digest(spec)
    failed = rehearsal_gate.evidence(
        src, endpoint, version, digest, max_age_hours, rehearsal_gate.target_items(dst, endpoint)
    )
    notes: list[str] = []
    dep = dst.endpoint(endpoint)
    deployed, dst_q = target_state(dst, endpoint)
    if dst_q and dst_q.get("version") in (version, None):
        failed.append(f"{dst.stack}: {version} is quarantined there ({dst_q.get('reason')})")
    if not deployed:
        notes.append(
            f"{dep.physical_name} is not deployed yet: nothing live to protect there; "
            f"`pulumi up --stack {dst.stack}` creates it"
        )
    return failed, notes


def shadow_gate(
    src: StackContext, endpoint: str, version: str, capture_uri: str | None, max_age_hours: float
) -> tuple[list[str], dict[str, Any] | None]:
    """The shadow-verdict gate: (failed gates, verdict summary for the audit item or None).

    The window is when ``version`` last served as the source's shadow variant, taken from the
    deploy records (``record-deploy``), so the captures judged are that version's answers only.
    """
    from infra.runtime_records import capture_uri as default_capture_uri
    from rollback.ops.deploy_records import deploy_records, shadow_window
    from rollback.runtime.capture import MAX_WINDOW
    from rollback.verdicts.shadow import ShadowThresholds, evaluate_shadow

    sep = src.endpoint(endpoint)
    if capture_uri is None:
        if not src.cfg.artifacts.bucket:
            raise ConfigError(
                f"{src.cfg.source}: the stack creates its artifacts bucket, so the data-capture location is "
                "only known after deployment; pass --capture-uri s3://<bucket>/data-capture "
                "(from `pulumi stack output`)"
            )
        capture_uri = default_capture_uri(src.cfg.artifacts.bucket)
    now = clock.now()
    deploys = deploy_records(src.clients.dynamodb, src.settings.audit_table, sep.physical_name)
    window = shadow_window(deploys, version, now)
    if window is None:
        return [
            f"{src.stack}: no recorded deploy of {version} as shadow on {sep.physical_name}, so there is no "
            f"shadow verdict; deploy it with strategy shadow, run `mlrollback record-deploy --stack "
            f"{src.stack}` after `pulumi up`, and let it see traffic"
        ], None
    since, until = window
    if until < now - timedelta(hours=max_age_hours):
        return [
            f"{src.stack}: {version} last served as shadow until {clock.iso(until)}, more than "
            f"{max_age_hours:g} h ago; run it as shadow again for a fresh verdict"
        ], None
    since = max(since, until - MAX_WINDOW)
    if until <= since:
        return [f"{src.stack}: {version} never served as shadow (replaced at once); nothing to judge"], None
    gate = src.cfg.rehearsal.shadow_verdict
    report = evaluate_shadow(
        src.clients.s3,
        src.clients.cloudwatch,
        capture_uri=capture_uri,
        endpoint=sep.physical_name,
        since=since,
        until=until,
        thresholds=ShadowThresholds(min_agreement=gate.min_agreement, min_pairs=gate.min_pairs),
    )
    summary = {
        "verdict": report.verdict,
        "pairs": report.pairs,
        "tolerantAgreement": report.tolerant_agreement,
        "since": clock.iso(since),
        "until": clock.iso(until),
    }
    if report.passed:
        return [], summary
    why = "; ".join(report.reasons) or "no reason given"
    return [
        f"{src.stack}: shadow verdict of {version} on {sep.physical_name} "
        f"({clock.iso(since)} .. {clock.iso(until)}) is {report.verdict}: {why}; "
        f"see `mlrollback shadow-report --stack {src.stack} --endpoint {endpoint}`"
    ], summary


def record_promotion(
    src: StackContext,
    dst: StackContext,
    endpoint: str,
    version: str,
    reason: str,
    diff: str,
    detail: dict[str, Any],
    note: Callable[[str], None],
    *,
    outcome: str = "done",
) -> tuple[StackContext, str, str]:
    """Record the promotion in the target's audit trail: (context, physical endpoint, item id) used.

    A target stack that was never deployed has no audit table yet (CI's first `pulumi up` of prod
    runs after the promotion); then the item goes to the source's trail, on the source endpoint,
    naming the target, so the change is still recorded before it is made.
    """
    from botocore.exceptions import ClientError

    physical = names.endpoint_name(dst.stack, endpoint)
    try:
        return (
            dst,
            physical,
            record_change(dst, physical, "promote", version, reason, diff, outcome=outcome, **detail),
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
    source_physical = src.endpoint(endpoint).physical_name
    note(
        f"{dst.stack}'s audit table {dst.settings.audit_table} does not exist yet (stack not "
        f"deployed); the promotion is recorded in {src.stack}'s audit trail on {source_physical}"
    )
    audit_id = record_change(
        src, source_physical, "promote", version, f"{reason} to {dst.stack} ({physical})", diff,
        outcome=outcome, **detail, file=str(dst.path.relative_to(dst.root)), target=physical,
        targetStack=dst.stack,
    )  # fmt: skip
    return src, source_physical, audit_id


def check(
    src: StackContext,
    dst: StackContext,
    endpoint: str,
    version: str,
    max_age_hours: float,
    *,
    require_shadow_verdict: bool,
    capture_uri: str | None,
) -> tuple[list[str], dict[str, Any] | None]:
    """Every gate at once: GateError listing each failure, else (notes, shadow verdict summary or None).

    The shadow verdict is a gate when asked for or when the source's
    ``rehearsal.shadowVerdict.required`` says so.
    """
    failed, notes = gates(src, dst, endpoint, version, max_age_hours)
    shadow: dict[str, Any] | None = None
    if require_shadow_verdict or src.cfg.rehearsal.shadow_verdict.required:
        shadow_failed, shadow = shadow_gate(src, endpoint, version, capture_uri, max_age_hours)
        failed += shadow_failed
    if failed:
        raise GateError("promotion refused:\n" + "\n".join(f"  - {f}" for f in failed))
    return notes, shadow


def promoted_document(
    src: StackContext, dst: StackContext, endpoint: str, version: str, *, skip_schema_check: bool
) -> tuple[StackDocument, Release, Release]:
    """The target's stack document with ``version`` copied from the source's catalog as candidate.

    Returns (document, release before, release after). GateError when ``version``'s schema is not
    compatible with the target's stable (or unknown, unless ``skip_schema_check``).
    """
    doc = StackDocument.load(dst.path)
    current = doc.release(endpoint)
    doc.add_version(endpoint, version, StackDocument.load(src.path).versions(endpoint)[version])
    schema_gate(dst, endpoint, current.stable, [], skip_schema_check)  # the target file is readable
    paths = {v: s.get("schema") for v, s in doc.versions(endpoint).items()}
    result = check_versions(current.stable, version, paths, dst.root)
    if result.differences or (result.unknown and not skip_schema_check):
        raise GateError(result.explain())
    target = Release(current.stable, version, current.shadow)
    doc.set_release(endpoint, target)
    return doc, current, target
