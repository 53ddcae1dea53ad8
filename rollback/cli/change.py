"""Stack changes as commits: ``revert`` (roll a stack back to a version) and ``promote`` (staging -> prod).

Both rewrite ``environments/Pulumi.<stack>.yaml`` (comment-preserving). The order never lets the
file and the audit trail disagree: every gate and everything ``--apply`` needs is checked first,
then the new text is validated as the Pulumi program would, put in place, applied, and only then
recorded (``rollback.ops.stack_changes.land``); a failed apply or Ctrl-C puts the old text back.
They print the diff (``--json``: only JSON on
stdout, human lines on stderr), and with ``--apply`` run ``pulumi up`` (Automation API) or the
sandbox applier.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from rollback.cli.app import (
    CommitOpt,
    EndpointOpt,
    JsonOpt,
    ProjectOpt,
    SandboxOpt,
    StackOpt,
    commit_change,
    console,
    human,
    print_json,
)
from rollback.cli.app import app as cli_app
from rollback.cli.app import cli_errors as errors
from rollback.ops import promotion
from rollback.ops.stack_changes import (
    Recorder,
    ensure_not_busy,
    find_deployment,
    git_head,
    land,
    record_change,
    require_catalogued,
    schema_gate,
)
from rollback.ops.stack_context import StackContext, actor
from rollback.ops.stackfile import Release, StackDocument, require_clean
from rollback.runtime import names
from rollback.runtime.errors import ConfigError, GateError, MLRollbackError

ApplyOpt = Annotated[bool, typer.Option("--apply", help="Then run `pulumi up` (or the sandbox applier).")]
SkipSchemaOpt = Annotated[
    bool, typer.Option("--skip-schema-check", help="Do not refuse when a version declares no schema.")
]

T = TypeVar("T")


def ready_to_apply(ctx: StackContext, physical: str) -> None:
    """Everything ``--apply`` needs, checked before anything is written, recorded or committed.

    The endpoint must not be mid-update (ConflictError, exit 4) and the engine must exist: the
    Pulumi CLI, or with ``--sandbox`` the sandbox applier. Refusing after the write would leave a
    changed, recorded file that a retry reports as "nothing to do" and never applies.
    """
    ensure_not_busy(ctx, physical)
    if ctx.sandbox:
        import rollback.sandbox as sandbox

        if getattr(sandbox, "apply_stack", None) is None:
            raise MLRollbackError(
                "this sandbox has no applier (rollback.sandbox.apply_stack); run `mlrollback sandbox up`"
            )
        return
    from rollback.ops import pulumi_cli

    if not pulumi_cli.pulumi_available():
        raise MLRollbackError(f"--apply: {pulumi_cli.INSTALL_HINT}; nothing was changed")


def _apply(ctx: StackContext, physical: str, json_out: bool = False) -> dict[str, Any]:
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
            return _interruptible(lambda: applier(ctx.root, ctx.stack))
        from rollback.ops import pulumi_cli

        out = human(json_out)
        return pulumi_cli.up(
            ctx.root, ctx.stack, on_output=lambda line: out.print(line, markup=False, end="")
        )


def _interruptible(work: Callable[[], T]) -> T:
    """Run ``work`` on a worker thread; a Ctrl-C reaches this (main) thread, never the work.

    The sandbox's apply runs the program in Pulumi's mock runtime, an asyncio loop: a
    KeyboardInterrupt raised inside one of its tasks can leave the others waiting forever (the
    command hung instead of exiting 130). Here the interrupt is raised while waiting, the caller
    restores the stack file, and the abandoned apply ends with the process.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the waiting thread as it is
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="mlrollback-apply", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.1)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


def _land(
    ctx: StackContext,
    physical: str,
    doc: StackDocument,
    hint: str,
    record: Recorder,
    change: tuple[str, str | None, str],
    git: tuple[bool, str, str],
    *,
    apply: bool,
    json_out: bool,
) -> tuple[str | None, Any]:
    """Land a changed stack document (:func:`rollback.ops.stack_changes.land`), then commit as asked.

    Returns (commit sha or None, what the apply did or None). ``change`` is (action, version, diff);
    ``git`` is (--commit, subject, reason). The commit comes last: it names the ``done`` item's id.
    """
    action = change[0]
    commit, subject, reason = git
    audit_id, applied = land(
        ctx, doc.render(), hint, action, record, (lambda: _apply(ctx, physical, json_out)) if apply else None
    )
    sha = commit_change(ctx, commit, subject, reason, audit_id, json_out=json_out)
    return sha, applied


def _unchanged(
    ctx: StackContext, physical: str, message: str, *, apply: bool, json_out: bool, **fields: Any
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
        ctx = StackContext(stack, project_dir, sandbox)
        ep = ctx.endpoint(endpoint)
        doc = StackDocument.load(ctx.path)
        current = doc.release(ep.name)
        if to_deployment:
            target = find_deployment(ctx, ep.physical_name, to_deployment)
        elif to:
            target = Release(to, None, current.shadow if current.shadow != to else None)
        else:
            target = Release(current.stable, None, current.shadow)
        require_catalogued(ctx, doc, ep.name, target, to_deployment)
        _refuse_quarantined(ctx, ep.name, target)
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
        schema_gate(ctx, ep.name, current.stable, [target.stable, target.candidate or ""], skip_schema_check)
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
        sha, applied = _land(
            ctx,
            ep.physical_name,
            doc,
            hint,
            lambda outcome, extra: (ctx, ep.physical_name, record_change(
                ctx, ep.physical_name, "revert", target.stable, reason, diff, outcome=outcome,
                release=target.as_dict(), previous=current.as_dict(), **extra,
            )),
            ("revert", target.stable, diff),
            (commit, f"mlrollback revert {stack}/{ep.name}: {_show(current)} -> {_show(target)}", reason),
            apply=apply,
            json_out=json_out,
        )  # fmt: skip
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


def _refuse_quarantined(ctx: StackContext, endpoint: str, target: Release) -> None:
    """GateError (exit 8) when ``target`` gives all traffic to the quarantined version, as preflight would.

    Checked before anything is written: clearing the quarantine (`clear-quarantine`, audited) is
    the deliberate way to serve that version again.
    """
    from rollback.ops.preflight import quarantined_stable

    _, record = promotion.target_state(ctx, endpoint)
    refusal = quarantined_stable(endpoint, target.stable, record)
    if refusal is not None:
        raise GateError(f"revert refused: {refusal.message}; nothing was changed. Fix: {refusal.fix}")


def _show(release: Release) -> str:
    """``v1`` or ``v1+v2`` (stable + candidate), for commit subjects."""
    return release.stable + (f"+{release.candidate}" if release.candidate else "")


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
        typer.Option(
            "--max-age-hours",
            help="Oldest acceptable drill, in hours (default: the target's rehearsal.maxAgeHours when it "
            "requires a rehearsal, else the source's).",
        ),
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
        src = StackContext(from_stack, project_dir, sandbox)
        dst = StackContext(to_stack, project_dir, sandbox)
        sep = src.endpoint(endpoint)
        dst.endpoint(endpoint)  # an endpoint the target does not declare fails before any gate
        version = version or sep.release.candidate or sep.release.stable
        physical = names.endpoint_name(to_stack, endpoint)
        current = StackDocument.load(dst.path).release(endpoint)
        if version in (current.stable, current.candidate) and _served_before(dst, endpoint, version):
            _unchanged(
                dst,
                physical,
                f"{to_stack} already serves {version} on {endpoint} as stable; nothing to promote",
                apply=apply,
                json_out=json_out,
                version=version,
                notes=[],
            )
            return
        # A version already in the target file (promoted before, or typed in by hand) is checked like
        # a new one; its drill had to be fresh when it entered the target (rollback/ops/rehearsal_gate.py).
        notes, shadow = promotion.check(
            src,
            dst,
            endpoint,
            version,
            promotion.max_age_hours(src, dst, max_age_hours),
            require_shadow_verdict=require_shadow_verdict,
            capture_uri=capture_uri,
        )
        if version in (current.stable, current.candidate):
            _unchanged(
                dst,
                physical,
                f"{to_stack} already declares {version} on {endpoint} and its gates pass; nothing to promote",
                apply=apply,
                json_out=json_out,
                version=version,
                notes=notes,
            )
            return
        out = human(json_out)
        for note in notes:
            out.print(f"note: {note}", highlight=False)
        if commit:
            require_clean(dst.root, dst.path)
        if apply:
            ready_to_apply(dst, physical)
        _write_promotion(
            src, dst, endpoint, version, shadow, notes,
            commit=commit, apply=apply, skip_schema_check=skip_schema_check, json_out=json_out,
        )  # fmt: skip


def _served_before(dst: StackContext, endpoint: str, version: str) -> bool:
    """``version`` is the target's live stable, or a deploy there recorded it as stable: a rollback."""
    from rollback.ops import rehearsal_gate

    plan = rehearsal_gate.live_plan(dst, endpoint)
    if (plan or {}).get("stable") == version:
        return True
    return rehearsal_gate.served_as_stable(rehearsal_gate.target_items(dst, endpoint), version) is not None


def _write_promotion(
    src: StackContext,
    dst: StackContext,
    endpoint: str,
    version: str,
    shadow: dict[str, Any] | None,
    notes: list[str],
    *,
    commit: bool,
    apply: bool,
    skip_schema_check: bool,
    json_out: bool,
) -> None:
    """The promotion's change of the target stack file: landed, recorded, reported."""
    from_stack, to_stack = src.stack, dst.stack
    physical = names.endpoint_name(to_stack, endpoint)
    out = human(json_out)
    doc, current, target = promotion.promoted_document(
        src, dst, endpoint, version, skip_schema_check=skip_schema_check
    )
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
    sha, applied = _land(
        dst,
        physical,
        doc,
        hint,
        lambda outcome, extra: promotion.record_promotion(
            src,
            dst,
            endpoint,
            version,
            reason,
            diff,
            {**detail, **extra},
            lambda n: out.print(f"note: {n}", highlight=False),
            outcome=outcome,
        ),
        ("promote", version, diff),
        (commit, f"mlrollback promote {from_stack} -> {to_stack}/{endpoint}: {version}", reason),
        apply=apply,
        json_out=json_out,
    )
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
    console.print(f"{version} is the candidate of {physical}; commit and run `pulumi up --stack {to_stack}`")


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
        ctx = StackContext(stack, project_dir, sandbox)
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
