"""Stack changes as commits: ``revert`` (roll a stack back to a version) and ``promote`` (staging -> prod).

Both rewrite ``environments/Pulumi.<stack>.yaml`` (comment-preserving). The order never lets the
file and the audit trail disagree: everything ``--apply`` needs is checked first, the new text is
written beside the file and validated as the Pulumi program would (``rollback.ops.stackfile.stage``), the
change is recorded, and only then renamed into place. They print the diff (``--json``: only JSON on
stdout, human lines on stderr), and with ``--apply`` run ``pulumi up`` (Automation API) or the
sandbox applier.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from rollback.cli.app import actor, console, print_json
from rollback.cli.app import app as cli_app
from rollback.cli.app import cli_errors as errors
from rollback.cli.operate import (
    CommitOpt,
    Context,
    EndpointOpt,
    JsonOpt,
    ProjectOpt,
    SandboxOpt,
    StackOpt,
    _record,
    commit_change,
    ensure_not_busy,
    human,
    publish,
    ready_to_apply,
)
from rollback.ops.schema_check import check_versions
from rollback.ops.stackfile import Release, StackDocument, require_clean, stage
from rollback.runtime import audit, clock, names, records
from rollback.runtime.errors import ConfigError, GateError, MLRollbackError, NotFoundError

ApplyOpt = Annotated[bool, typer.Option("--apply", help="Then run `pulumi up` (or the sandbox applier).")]
SkipSchemaOpt = Annotated[
    bool, typer.Option("--skip-schema-check", help="Do not refuse when a version declares no schema.")
]


def _schema_gate(ctx: Context, endpoint: str, baseline: str, targets: list[str], skip_unknown: bool) -> None:
    doc = StackDocument.load(ctx.path)
    paths = {v: spec.get("schema") for v, spec in doc.versions(endpoint).items()}
    problems = []
    for target in dict.fromkeys(t for t in targets if t):
        result = check_versions(baseline, target, paths, ctx.root)
        if result.differences or (result.unknown and not skip_unknown):
            problems.append(result.explain())
    if problems:
        raise GateError("\n".join(problems))


def _require_catalogued(
    ctx: Context, doc: StackDocument, endpoint: str, target: Release, deployment: str | None
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


def _apply(ctx: Context, physical: str, json_out: bool = False) -> dict[str, Any]:
    """Run ``pulumi up`` (or the sandbox applier); under ``--json`` its output goes to stderr."""
    ensure_not_busy(ctx, physical)  # checked before the write too; the endpoint may have moved since
    quiet = contextlib.redirect_stdout(sys.stderr) if json_out else contextlib.nullcontext()
    with quiet:
        if ctx.sandbox:
            import rollback.sandbox as sandbox

            applier = getattr(sandbox, "apply_stack", None)
            if applier is None:
                raise MLRollbackError(
                    "this sandbox has no applier (rollback.sandbox.apply_stack); run `mlrollback sandbox up`"
                )
            return applier(ctx.root, ctx.stack)
        from rollback.ops import pulumi_cli

        out = human(json_out)
        return pulumi_cli.up(
            ctx.root, ctx.stack, on_output=lambda line: out.print(line, markup=False, end="")
        )


def _unchanged(
    ctx: Context, physical: str, message: str, *, apply: bool, json_out: bool, **fields: Any
) -> None:
    """Nothing to change in the stack file: say so (``{"changed": false, ...}`` under ``--json``).

    With ``--apply`` the file's release is still applied: a retry after a failed ``pulumi up`` finds
    the file already changed, and must converge the endpoint rather than report "nothing to do".
    """
    if apply:
        ready_to_apply(ctx, physical)
        message += "; applying what the stack file declares"
    human(json_out).print(message, highlight=False)
    applied = _apply(ctx, physical, json_out) if apply else None
    if json_out:
        print_json({"changed": False, "endpoint": physical, "message": message, "applied": applied, **fields})


def _matches(item: dict[str, Any], deployment: str) -> bool:
    """``deployment`` is the item's id (after '#'), its idempotency key, or (7+ hex) its recorded commit."""
    if deployment in (str(item.get("at", "")).rsplit("#", 1)[-1], str(item.get("idempotencyKey", ""))):
        return True
    commit = str((item.get("detail") or {}).get("commit") or "")
    return len(deployment) >= 7 and bool(commit) and commit.startswith(deployment)


def _find_deployment(ctx: Context, physical: str, deployment: str) -> Release:
    """The release recorded by the audit item that ``deployment`` names (see :func:`_matches`)."""
    cursor = None
    for _ in range(50):
        items, cursor = audit.query(
            ctx.clients.dynamodb, ctx.settings.audit_table, physical, limit=100, cursor=cursor
        )
        for item in items:
            release = (item.get("detail") or {}).get("release")
            if _matches(item, deployment) and isinstance(release, dict) and release.get("stable"):
                return Release(release["stable"], release.get("candidate"), release.get("shadow"))
        if cursor is None:
            break
    raise NotFoundError(
        f"no audit item with id or commit {deployment!r} and a recorded release on {physical}; "
        f"see the id column of `mlrollback history --stack {ctx.stack} --action deploy`"
    )


@cli_app.command(rich_help_panel="Change")
def revert(
    stack: StackOpt,
    endpoint: EndpointOpt,
    to: Annotated[
        str | None, typer.Option("--to", help="Serve this catalog version as stable, no candidate.")
    ] = None,
    to_deployment: Annotated[
        str | None,
        typer.Option("--to-deployment", help="Restore the release recorded by this audit item id."),
    ] = None,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why, for the audit trail.")] = "stack revert",
    commit: CommitOpt = False,
    apply: ApplyOpt = False,
    skip_schema_check: SkipSchemaOpt = False,
    project_dir: ProjectOpt = None,
    sandbox: SandboxOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Roll the stack back as a reviewable change to environments/Pulumi.<stack>.yaml.

    Without --to/--to-deployment the candidate is dropped (stable keeps serving). Refuses a
    target whose input/output schema is not compatible with what clients use today.

    Examples:

      mlrollback revert --stack prod --endpoint fraud-scorer            # drop the candidate

      mlrollback revert --stack prod --endpoint fraud-scorer --to v1 --apply

      mlrollback revert --stack prod --endpoint fraud-scorer --to-deployment 01J9...

      mlrollback revert --stack prod --endpoint fraud-scorer --reason "v2 p99 regression" --commit
    """
    with errors():
        if to and to_deployment:
            raise ConfigError("give either --to or --to-deployment, not both")
        ctx = Context(stack, project_dir, sandbox)
        ep = ctx.endpoint(endpoint)
        doc = StackDocument.load(ctx.path)
        current = doc.release(ep.name)
        if to_deployment:
            target = _find_deployment(ctx, ep.physical_name, to_deployment)
        elif to:
            target = Release(to, None, current.shadow if current.shadow != to else None)
        else:
            target = Release(current.stable, None, current.shadow)
        _require_catalogued(ctx, doc, ep.name, target, to_deployment)
        if target == current:
            _unchanged(
                ctx,
                ep.physical_name,
                f"{ep.name} already serves {current.stable} with no other change; nothing to revert",
                apply=apply,
                json_out=json_out,
                release=target.as_dict(),
            )
            return
        _schema_gate(ctx, ep.name, current.stable, [target.stable, target.candidate or ""], skip_schema_check)
        if commit:
            require_clean(ctx.root, ctx.path)
        if apply:
            ready_to_apply(ctx, ep.physical_name)
        doc.set_release(ep.name, target)
        where = str(ctx.path.relative_to(ctx.root))
        diff = doc.diff(where)
        hint = (
            f"revert only edits the release lines of {ep.name}; change the rest of the endpoint in {where} "
            "by hand (e.g. strategy.type) so it accepts that release, or pick another target"
        )
        with stage(ctx.path, doc.render(), stack=ctx.stack, hint=hint) as staged:
            audit_id = _record(
                ctx, ep.physical_name, "revert", target.stable, reason, diff,
                release=target.as_dict(), previous=current.as_dict(),
            )  # fmt: skip
            publish(ctx, staged, ep.physical_name, "revert", target.stable, audit_id, diff)
        sha = commit_change(
            ctx,
            commit,
            f"mlrollback revert {stack}/{ep.name}: {_show(current)} -> {_show(target)}",
            reason,
            audit_id,
            json_out=json_out,
        )
        applied = _apply(ctx, ep.physical_name, json_out) if apply else None
        if json_out:
            print_json(
                {
                    "changed": True,
                    "endpoint": ep.physical_name,
                    "release": target.as_dict(),
                    "diff": diff,
                    "commit": sha,
                    "applied": applied,
                }
            )
            return
        sys.stdout.write(diff)
        if not apply and not commit:
            console.print(f"review, commit and run `pulumi up --stack {stack}` (or rerun with --apply)")


def _show(release: Release) -> str:
    """``v1`` or ``v1+v2`` (stable + candidate), for commit subjects."""
    return release.stable + (f"+{release.candidate}" if release.candidate else "")


def _target_state(dst: Context, endpoint: str) -> tuple[bool, dict[str, Any] | None]:
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


def _gates(
    src: Context, dst: Context, endpoint: str, version: str, max_age_hours: float
) -> tuple[list[str], list[str]]:
    """(every promotion gate that fails, one sentence each; notes for the operator). No failure: promote."""
    from rollback.ops.status import endpoint_status

    failed: list[str] = []
    notes: list[str] = []
    sep = src.endpoint(endpoint)
    st = endpoint_status(src.clients, src.settings, sep.physical_name)
    alarming = [a["name"] for a in st["alarms"] if a.get("state") == "ALARM"]
    if alarming:
        failed.append(f"{src.stack}: alarms in ALARM on {sep.physical_name}: {', '.join(alarming)}")
    q = st.get("quarantine")
    if q and q.get("version") == version:
        failed.append(f"{src.stack}: {version} is quarantined ({q.get('reason')})")
    plan, progress = st.get("plan") or {}, st.get("progress") or {}
    if sep.release.candidate == version:
        if plan.get("candidate") != version or progress.get("state") != "ready-to-finalize":
            failed.append(
                f"{src.stack}: rollout of {version} is not finished "
                f"(state {progress.get('state') or 'none'}); "
                "wait for ready-to-finalize"
            )
    elif not (sep.release.stable == version and plan.get("stable") == version and not plan.get("candidate")):
        failed.append(
            f"{src.stack}: {version} is not deployed there (neither a finished candidate nor stable)"
        )
    since = clock.now() - timedelta(hours=max_age_hours)
    items, _ = audit.query(
        src.clients.dynamodb, src.settings.audit_table, sep.physical_name, limit=200, since=since
    )
    drills = [i for i in items if i.get("action") == "drill" and i.get("version") == version]
    if not any(i.get("outcome") == "done" and (i.get("detail") or {}).get("passed", True) for i in drills):
        failed.append(
            f"{src.stack}: no passing drill of {version} in the last {max_age_hours:g} h; "
            f"run `mlrollback drill --stack {src.stack}`"
        )
    dep = dst.endpoint(endpoint)
    deployed, dst_q = _target_state(dst, endpoint)
    if dst_q and dst_q.get("version") in (version, None):
        failed.append(f"{dst.stack}: {version} is quarantined there ({dst_q.get('reason')})")
    if not deployed:
        notes.append(
            f"{dep.physical_name} is not deployed yet: nothing live to protect there; "
            f"`pulumi up --stack {dst.stack}` creates it"
        )
    return failed, notes


def _shadow_gate(
    src: Context, endpoint: str, version: str, capture_uri: str | None, max_age_hours: float
) -> tuple[list[str], dict[str, Any] | None]:
    """The shadow-verdict gate: (failed gates, verdict summary for the audit item or None).

    The window is when ``version`` last served as the source's shadow variant, taken from the
    deploy records (``record-deploy``), so the captures judged are that version's answers only.
    """
    from infra.config import capture_uri as default_capture_uri
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


@cli_app.command(rich_help_panel="Change")
def promote(
    from_stack: Annotated[str, typer.Option("--from", help="Source stack, e.g. staging.")],
    to_stack: Annotated[str, typer.Option("--to", help="Target stack, e.g. prod.")],
    endpoint: EndpointOpt,
    version: Annotated[
        str | None,
        typer.Option("--version", help="Version to promote (default: the source's candidate, else stable)."),
    ] = None,
    max_age_hours: Annotated[
        float | None,
        typer.Option("--max-age-hours", help="Newest acceptable drill (default: rehearsal.maxAgeHours)."),
    ] = None,
    require_shadow_verdict: Annotated[
        bool,
        typer.Option(
            "--require-shadow-verdict",
            help="Also require a passing shadow verdict of the version in the source stack, judged on the "
            "captures of the last period it served as shadow (from `record-deploy` items), no older "
            "than --max-age-hours.",
        ),
    ] = False,
    capture_uri: Annotated[
        str | None,
        typer.Option(
            "--capture-uri",
            help="Source data-capture DestinationS3Uri for the shadow verdict (default: "
            "s3://<artifacts.bucket>/data-capture when the source brings its own bucket).",
        ),
    ] = None,
    commit: CommitOpt = False,
    apply: ApplyOpt = False,
    skip_schema_check: SkipSchemaOpt = False,
    project_dir: ProjectOpt = None,
    sandbox: SandboxOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Copy the source's healthy, rehearsed version into the target stack's release as candidate.

    Gates (all failures are listed at once, exit 8): no source alarm in ALARM, the source rollout
    finished, a passing drill of that version in the source audit trail within --max-age-hours,
    not quarantined, schema-compatible with the target's stable; with --require-shadow-verdict
    (or the source's `rehearsal.shadowVerdict.required`), a passing shadow verdict too.
    The target keeps its own strategy.

    Examples:

      mlrollback promote --from staging --to prod --endpoint fraud-scorer

      mlrollback promote --from staging --to prod --endpoint fraud-scorer --require-shadow-verdict
      --capture-uri s3://my-artifacts/data-capture

      mlrollback promote --from staging --to prod --endpoint fraud-scorer --apply --json
    """
    with errors():
        src = Context(from_stack, project_dir, sandbox)
        dst = Context(to_stack, project_dir, sandbox)
        sep = src.endpoint(endpoint)
        dst.endpoint(endpoint)  # an endpoint the target does not declare fails before any gate
        version = version or sep.release.candidate or sep.release.stable
        age = max_age_hours if max_age_hours is not None else float(src.cfg.rehearsal.max_age_hours)
        physical = names.endpoint_name(to_stack, endpoint)
        doc = StackDocument.load(dst.path)
        current = doc.release(endpoint)
        if version in (current.stable, current.candidate):
            # Promoted before (its gates passed then): not a new promotion, so no gate applies now.
            # After a finalize the source has no candidate left to drill, and CI must stay green.
            _unchanged(
                dst,
                physical,
                f"{to_stack} already serves {version} on {endpoint}; nothing to promote",
                apply=apply,
                json_out=json_out,
                version=version,
                notes=[],
            )
            return
        failed, notes = _gates(src, dst, endpoint, version, age)
        shadow: dict[str, Any] | None = None
        if require_shadow_verdict or src.cfg.rehearsal.shadow_verdict.required:
            shadow_failed, shadow = _shadow_gate(src, endpoint, version, capture_uri, age)
            failed += shadow_failed
        if failed:
            raise GateError("promotion refused:\n" + "\n".join(f"  - {f}" for f in failed))
        out = human(json_out)
        for note in notes:
            out.print(f"note: {note}", highlight=False)
        if commit:
            require_clean(dst.root, dst.path)
        if apply:
            ready_to_apply(dst, physical)
        source_doc = StackDocument.load(src.path)
        doc.add_version(endpoint, version, source_doc.versions(endpoint)[version])
        _schema_gate(dst, endpoint, current.stable, [], skip_schema_check)  # target file readable
        paths = {v: s.get("schema") for v, s in doc.versions(endpoint).items()}
        result = check_versions(current.stable, version, paths, dst.root)
        if result.differences or (result.unknown and not skip_schema_check):
            raise GateError(result.explain())
        target = Release(current.stable, version, current.shadow)
        doc.set_release(endpoint, target)
        where = str(dst.path.relative_to(dst.root))
        diff = doc.diff(where)
        reason = f"promoted from {from_stack}"
        hint = (
            f"promote keeps {to_stack}'s own strategy and shadow; change endpoint {endpoint} in {where} so "
            "it accepts a candidate (e.g. strategy.type canary, or drop release.shadow), commit, then "
            "promote again"
        )
        detail: dict[str, Any] = {
            "release": target.as_dict(),
            "previous": current.as_dict(),
            "source": from_stack,
            **({"shadowVerdict": shadow} if shadow else {}),
        }
        with stage(dst.path, doc.render(), stack=dst.stack, hint=hint) as staged:
            trail, trail_physical, audit_id = _record_promotion(
                src, dst, endpoint, version, reason, diff, detail, out
            )
            publish(trail, staged, trail_physical, "promote", version, audit_id, diff)
        sha = commit_change(
            dst,
            commit,
            f"mlrollback promote {from_stack} -> {to_stack}/{endpoint}: {version}",
            reason,
            audit_id,
            json_out=json_out,
        )
        applied = _apply(dst, physical, json_out) if apply else None
        if json_out:
            print_json(
                {
                    "changed": True,
                    "endpoint": physical,
                    "version": version,
                    "diff": diff,
                    "commit": sha,
                    "applied": applied,
                    "notes": notes,
                }
            )
            return
        sys.stdout.write(diff)
        console.print(
            f"{version} is the candidate of {physical}; commit and run `pulumi up --stack {to_stack}`"
        )


def _record_promotion(
    src: Context,
    dst: Context,
    endpoint: str,
    version: str,
    reason: str,
    diff: str,
    detail: dict[str, Any],
    out: Any,
) -> tuple[Context, str, str]:
    """Record the promotion in the target's audit trail: (context, physical endpoint, item id) used.

    A target stack that was never deployed has no audit table yet (CI's first `pulumi up` of prod
    runs after the promotion); then the item goes to the source's trail, on the source endpoint,
    naming the target, so the change is still recorded before it is made.
    """
    from botocore.exceptions import ClientError

    physical = names.endpoint_name(dst.stack, endpoint)
    try:
        return dst, physical, _record(dst, physical, "promote", version, reason, diff, **detail)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
    source_physical = src.endpoint(endpoint).physical_name
    out.print(
        f"note: {dst.stack}'s audit table {dst.settings.audit_table} does not exist yet (stack not "
        f"deployed); the promotion is recorded in {src.stack}'s audit trail on {source_physical}",
        highlight=False,
    )
    audit_id = _record(
        src, source_physical, "promote", version, f"{reason} to {dst.stack} ({physical})", diff,
        **detail, file=str(dst.path.relative_to(dst.root)), target=physical, targetStack=dst.stack,
    )  # fmt: skip
    return src, source_physical, audit_id


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


@cli_app.command("record-deploy", rich_help_panel="Change")
def record_deploy(
    stack: StackOpt,
    commit: Annotated[
        str | None,
        typer.Option(
            "--commit",
            help="Git commit that was deployed (default: `git rev-parse HEAD` of the project, if a repo).",
        ),
    ] = None,
    project_dir: ProjectOpt = None,
    sandbox: SandboxOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Record what the stack file declares as one `deploy` audit item per endpoint (after `pulumi up`).

    CI runs it right after every `pulumi up`. With a commit (given or found by git) a re-run
    records nothing new; the printed id is what `revert --to-deployment` takes (the commit works too).

    Examples:

      pulumi up --stack staging --yes && mlrollback record-deploy --stack staging

      mlrollback record-deploy --stack prod --commit "$GITHUB_SHA" --json
    """
    from rollback.ops.deploy_records import record_deploys

    with errors():
        ctx = Context(stack, project_dir, sandbox)
        sha = commit.strip() if commit else git_head(ctx.root)
        if commit is not None and not sha:
            raise ConfigError("--commit is empty; pass the deployed commit SHA or leave --commit out")
        records = record_deploys(ctx.clients, ctx.cfg, actor=actor(), commit=sha)
        if json_out:
            print_json({"stack": stack, "commit": sha, "deployments": records})
            return
        for r in records:
            state = "recorded" if r["recorded"] else "already recorded"
            release = ", ".join(f"{k} {v}" for k, v in r["release"].items() if v)
            console.print(
                f"{r['endpoint']}: {state} deploy {r['id']} ({release}, {r['strategy']})", highlight=False
            )
        if sha is None:
            console.print("no git commit found (not a repository?): pass --commit to make re-runs idempotent")
