"""Stack-file changes as audited events: check, write, apply, record; the checks revert and promote share.

The order never lets the file and the audit trail disagree (docs/runbook.md): every gate runs
first; :func:`land` stages and validates the new text beside the file
(:func:`rollback.ops.stackfile.stage`), puts it in place, applies it when asked, and only then
records ``done`` (:func:`record_change`). A failed apply or a Ctrl-C puts the previous text back,
and an apply that had started is recorded as ``failed`` with its error.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rollback.ops.schema_check import check_versions
from rollback.ops.stack_context import StackContext, actor
from rollback.ops.stackfile import Release, StackDocument, restore_file, stage
from rollback.runtime import audit
from rollback.runtime.errors import (
    ConfigError,
    ConflictError,
    GateError,
    Interrupted,
    MLRollbackError,
    NotFoundError,
)


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
    """Audit a stack-file change (``done`` once it is in place and applied, or ``failed``); return its id.

    See :func:`land` for the order that keeps the trail and the file in agreement.
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


#: ``record(outcome, extra detail)`` -> (the context whose trail got the item, its endpoint, item id).
Recorder = Callable[[str, dict[str, Any]], tuple[StackContext, str, str]]


def land(
    ctx: StackContext,
    text: str,
    hint: str,
    action: str,
    record: Recorder,
    apply: Callable[[], Any] | None = None,
) -> tuple[str, Any]:
    """Write ``text`` to the stack file, run ``apply`` if given, record ``done``: (item id, apply result).

    Every gate has run before this. Any failure or Ctrl-C before the ``done`` record puts the
    previous bytes back (line endings and mode kept); if ``apply`` had started, a ``failed`` item
    with the error is recorded (best effort). Ctrl-C becomes :class:`Interrupted` (exit 130) saying
    what state is left; an apply's package error keeps its class and exit code, with the same words.
    """
    where = str(ctx.path.relative_to(ctx.root))
    previous = ctx.path.read_bytes()
    replaced = applying = False
    applied: Any = None
    with stage(ctx.path, text, stack=ctx.stack, hint=hint) as staged:
        try:
            staged.replace()
            replaced = True
            if apply is not None:
                applying = True
                applied = apply()
            _, _, audit_id = record("done", {})
        except BaseException as exc:
            if replaced:
                restore_file(ctx.path, previous)
            failed_id = None
            if applying:
                with contextlib.suppress(Exception):  # the error below is what the operator must see
                    _, _, failed_id = record("failed", {"error": str(exc) or type(exc).__name__})
            said = f"; recorded as failed ({failed_id})" if failed_id else ""
            if isinstance(exc, KeyboardInterrupt):
                during = " during the apply" if applying else ""
                check = f"; check `mlrollback status --stack {ctx.stack}` before retrying" if applying else ""
                raise Interrupted(
                    f"interrupted{during}: {where} is back to its previous text and the {action} did not "
                    f"happen{said}{check}"
                ) from None
            if applying and isinstance(exc, MLRollbackError):
                raise type(exc)(f"{exc}; {where} is back to its previous text{said}") from None
            raise
    return audit_id, applied


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
