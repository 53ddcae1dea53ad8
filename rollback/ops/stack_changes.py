"""Stack-file changes as audited events: record, put in place, commit; the checks revert and promote share.

The order never lets the file and the audit trail disagree (docs/runbook.md): a change is staged
and validated beside the file (:func:`rollback.ops.stackfile.stage`), recorded
(:func:`record_change`), and only then renamed into place (:func:`put_in_place`), which records a
``failed`` item of the same action if the rename fails.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import Any

from rollback.ops.schema_check import check_versions
from rollback.ops.stack_context import StackContext, actor
from rollback.ops.stackfile import Release, StackDocument
from rollback.runtime import audit
from rollback.runtime.errors import ConfigError, ConflictError, GateError, MLRollbackError, NotFoundError


def record_change(
    ctx: StackContext,
    physical: str,
    action: str,
    version: str | None,
    reason: str,
    diff: str,
    *,
    outcome: str = "done",
    **detail: Any,
) -> str:
    """Audit a stack-file change once it is staged and validated, before it is put in place; return its id.

    See :func:`put_in_place` for the order that keeps the trail and the file in agreement.
    """
    item = audit.AuditItem(
        endpoint=physical,
        action=action,
        actor=actor(),
        outcome=outcome,
        reason=reason,
        version=version,
        detail={
            "file": str(ctx.path.relative_to(ctx.root)),
            "diff": diff,
            **detail,
        },  # detail may name the file
    )
    audit.append(ctx.clients.dynamodb, ctx.settings.audit_table, item)
    return item.at.rsplit("#", 1)[-1]


def put_in_place(
    ctx: StackContext, staged: Any, physical: str, action: str, version: str | None, audit_id: str, diff: str
) -> None:
    """Put a staged, recorded change in place (``staged.replace()``).

    :func:`rollback.ops.stackfile.stage` already wrote and validated the new text beside the file, so the
    rename rarely fails; when it does, the trail gets a ``failed`` item of the same action saying the
    recorded change (``audit_id``) did not happen, and the one-line error names the file.
    """
    try:
        staged.replace()
    except MLRollbackError as exc:
        with contextlib.suppress(Exception):  # the error below is what the operator must see
            record_change(
                ctx, physical, action, version,
                f"not done: {staged.path.name} could not be written; the {action} recorded as {audit_id} "
                "did not happen", diff, outcome="failed", recorded=audit_id, error=str(exc),
                file=str(staged.path.relative_to(ctx.root)),
            )  # fmt: skip
        raise


def ensure_not_busy(ctx: StackContext, physical: str) -> None:
    """ConflictError when the endpoint is mid-update (a revert applying, a drain in flight)."""
    try:
        desc = ctx.clients.sagemaker.describe_endpoint(EndpointName=physical)
    except ctx.clients.sagemaker.exceptions.ClientError:
        return  # not deployed yet: nothing to conflict with
    status = desc.get("EndpointStatus")
    if status in ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"):
        raise ConflictError(f"{physical} is {status}; another operation is in progress, retry when InService")


def schema_gate(
    ctx: StackContext, endpoint: str, baseline: str, targets: list[str], skip_unknown: bool
) -> None:
    """GateError (exit 8) when a target's input/output schema differs from ``baseline``'s (or is unknown)."""
    doc = StackDocument.load(ctx.path)
    paths = {v: spec.get("schema") for v, spec in doc.versions(endpoint).items()}
    problems = []
    for target in dict.fromkeys(t for t in targets if t):
        result = check_versions(baseline, target, paths, ctx.root)
        if result.differences or (result.unknown and not skip_unknown):
            problems.append(result.explain())
    if problems:
        raise GateError("\n".join(problems))


def require_catalogued(
    ctx: StackContext, doc: StackDocument, endpoint: str, target: Release, deployment: str | None
) -> None:
    """ConfigError (exit 2) when ``target`` names a version missing from the endpoint's catalog.

    Checked before the schema gate: an unknown version has no schema either, and "declares no
    schema" would send the operator looking in the wrong place. ``deployment`` is the
    ``--to-deployment`` id the release came from (None for ``--to``).
    """
    catalog = doc.versions(endpoint)
    missing = [v for v in dict.fromkeys(target.as_dict().values()) if v is not None and v not in catalog]
    if not missing:
        return
    known = ", ".join(catalog) or "none"
    where = str(ctx.path.relative_to(ctx.root))
    listed = ", ".join(repr(v) for v in missing)
    verb = "is" if len(missing) == 1 else "are"
    if deployment is None:
        raise ConfigError(
            f"{listed} {verb} not in the version catalog of {endpoint} (known: {known}); "
            f"add it under versions in {where} or pick a known version"
        )
    raise ConfigError(
        f"deployment {deployment} recorded a release with {listed}, which {verb} no longer in the version "
        f"catalog of {endpoint} (known: {known}); add it back under versions in {where} or pick "
        "another deployment (or --to a known version)"
    )


def release_matches(item: dict[str, Any], deployment: str) -> bool:
    """``deployment`` is the item's id (after '#'), its idempotency key, or (7+ hex) its recorded commit."""
    if deployment in (str(item.get("at", "")).rsplit("#", 1)[-1], str(item.get("idempotencyKey", ""))):
        return True
    commit = str((item.get("detail") or {}).get("commit") or "")
    return len(deployment) >= 7 and bool(commit) and commit.startswith(deployment)


def find_deployment(ctx: StackContext, physical: str, deployment: str) -> Release:
    """The release recorded by the audit item that ``deployment`` names (see :func:`release_matches`)."""
    cursor = None
    for _ in range(50):
        items, cursor = audit.query(
            ctx.clients.dynamodb, ctx.settings.audit_table, physical, limit=100, cursor=cursor
        )
        for item in items:
            release = (item.get("detail") or {}).get("release")
            if release_matches(item, deployment) and isinstance(release, dict) and release.get("stable"):
                return Release(release["stable"], release.get("candidate"), release.get("shadow"))
        if cursor is None:
            break
    raise NotFoundError(
        f"no audit item with id or commit {deployment!r} and a recorded release on {physical}; "
        f"see the id column of `mlrollback history --stack {ctx.stack} --action deploy`"
    )


def git_head(root: Path) -> str | None:
    """``git rev-parse HEAD`` in ``root``, or None outside a git checkout (or without git)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    head = done.stdout.strip()
    return head if done.returncode == 0 and head else None


def commit_stack_file(ctx: StackContext, subject: str, reason: str, audit_id: str) -> str:
    """``git commit`` the stack file alone, with a message that carries the why and the audit id; the sha."""
    from rollback.ops.stackfile import commit_file

    return commit_file(ctx.root, ctx.path, f"{subject}\n\n{reason}\n\nmlrollback-audit: {audit_id}\n")
