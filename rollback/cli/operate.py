"""Operate live endpoints: status, history, manual rollback, preflight, finalize, clear-quarantine.

Thin: parse options, call :mod:`rollback.ops.status` / :mod:`rollback.ops.preflight` /
:mod:`rollback.ops.stackfile`, render (rich for people, ``--json`` for machines).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from rollback.cli.app import (
    CommitOpt,
    EndpointOpt,
    JsonOpt,
    MaybeEndpointOpt,
    ProjectOpt,
    SandboxOpt,
    StackOpt,
    YesOpt,
    app,
    cli_errors,
    commit_change,
    console,
    print_json,
)
from rollback.ops import preflight
from rollback.ops.stack_changes import land, record_change
from rollback.ops.stack_context import StackContext, actor
from rollback.runtime import audit, clock, names
from rollback.runtime.errors import ConfigError, GateError


def _history(ctx: StackContext, physical: str, limit: int, action: str | None) -> list[dict[str, Any]]:
    """Newest ``limit`` audit items of ``physical`` (only ``action`` ones, paging on when filtering)."""
    rows: list[dict[str, Any]] = []
    cursor = None
    for _ in range(50):  # bounded: at most 50 pages of 100 when a filter skips most items
        items, cursor = audit.query(
            ctx.clients.dynamodb,
            ctx.settings.audit_table,
            physical,
            limit=limit if action is None else 100,
            cursor=cursor,
        )
        rows += [i for i in items if action is None or i.get("action") == action]
        if action is None or len(rows) >= limit or cursor is None:
            break
    return rows[:limit]


def _pct(weights: dict[str, Any] | None, role: str) -> str:
    value = (weights or {}).get(role)
    return "-" if value is None else f"{float(value):g}%"


def _desired(variant: dict[str, Any] | None, variants: list[dict[str, Any]]) -> str:
    """Desired share in percent (differs from live while SageMaker applies a weights update)."""
    total = sum(float(v.get("desiredWeight") or 0) for v in variants)
    if not variant or variant.get("desiredWeight") is None or total <= 0:
        return "-"
    return f"{100 * float(variant['desiredWeight']) / total:g}%"


def _instances(variant: dict[str, Any] | None) -> str:
    if not variant or variant.get("currentInstanceCount") is None:
        return "-"
    current, desired = variant["currentInstanceCount"], variant.get("desiredInstanceCount")
    return str(current) if desired in (None, current) else f"{current} -> {desired}"


def rollout_line(plan: dict[str, Any], progress: dict[str, Any], now: datetime) -> str:
    """One line a person reads: which step of how many, at what share, how far into the bake."""
    steps = plan.get("steps") or []
    if not plan.get("candidate") or not steps:
        return ""
    if not progress:
        return f"{plan.get('strategy')} {steps}: not started (the stepper starts it on its next tick)"
    index = int(progress.get("stepIndex", 0))
    state = progress.get("state", "?")
    share = steps[min(index, len(steps) - 1)]
    line = f"{plan.get('strategy')} step {index + 1} of {len(steps)} ({share}%), {state}"
    started = progress.get("stepStartedAt")
    bake = plan.get("bakeSeconds")
    if state == "baking" and started and bake:
        elapsed = max(0, int((now - clock.parse_iso(started)).total_seconds()))
        line += f" {min(elapsed, int(bake))} s of {int(bake)} s"
    if progress.get("reason"):
        line += f": {progress['reason']}"
    return line


@app.command(rich_help_panel="Operate")
def status(
    stack: StackOpt,
    endpoint: MaybeEndpointOpt = None,
    project_dir: ProjectOpt = None,
    sandbox: SandboxOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Show variants, versions, live weights, alarms, rollout progress and quarantine per endpoint.

    Examples:

      mlrollback status --stack dev

      mlrollback status --stack prod --endpoint fraud-scorer --json
    """
    from rollback.ops.status import endpoint_status

    with cli_errors():
        ctx = StackContext(stack, project_dir, sandbox)
        out = []
        for ep in ctx.endpoints(endpoint):
            st = endpoint_status(ctx.clients, ctx.settings, ep.physical_name)
            items, _ = audit.query(ctx.clients.dynamodb, ctx.settings.audit_table, ep.physical_name, limit=3)
            st["declared"] = {"stable": ep.release.stable, "candidate": ep.release.candidate}
            st["recent"] = items
            out.append(st)
        if json_out:
            print_json({"stack": stack, "endpoints": out})
            return
        for st in out:
            plan = st.get("plan") or {}
            table = Table(title=f"{st['endpoint']} ({st['status']})", title_justify="left")
            for col in ("variant", "version", "live", "desired", "instances"):
                table.add_column(col)
            table.add_column("alarms", no_wrap=True)
            variants = {v["name"]: v for v in st.get("variants") or []}
            for role in (names.STABLE, names.CANDIDATE):
                if role not in (st.get("percents") or {}):
                    continue
                alarms = (
                    ", ".join(f"{a['kpi']}={a['state']}" for a in st["alarms"] if a["role"] == role) or "-"
                )
                table.add_row(
                    role,
                    _version(plan, role),
                    _pct(st.get("percents"), role),
                    _desired(variants.get(role), st.get("variants") or []),
                    _instances(variants.get(role)),
                    alarms,
                )
            console.print(table)
            line = rollout_line(plan, st.get("progress") or {}, clock.now())
            if line:
                console.print(f"  rollout: {line}", highlight=False, soft_wrap=True)
            if st.get("quarantine"):
                q = st["quarantine"]
                console.print(
                    f"  [red]quarantined[/]: {escape(str(q.get('version')))} at {q.get('at')} by "
                    f"{escape(str(q.get('by')))}: {escape(str(q.get('reason')))}"
                )
            for item in st["recent"]:
                console.print(
                    f"  {item.get('at', '')[:19]} {item.get('action')} {item.get('version') or ''} "
                    f"{item.get('outcome')} {escape(str(item.get('actor')))}",
                    highlight=False,
                )


@app.command(rich_help_panel="Operate")
def history(
    stack: StackOpt,
    endpoint: MaybeEndpointOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Items per endpoint.")] = 20,
    action: Annotated[
        str | None,
        typer.Option("--action", "-a", help=f"Only items of this action ({', '.join(audit.ACTIONS)})."),
    ] = None,
    project_dir: ProjectOpt = None,
    sandbox: SandboxOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """The audit trail, newest first: deploys, steps, drains, reverts, promotions, drills.

    The id column is what `revert --to-deployment` takes (for deploy, revert and promote items).

    Examples:

      mlrollback history --stack prod --endpoint fraud-scorer --limit 50

      mlrollback history --stack prod --action deploy
    """
    with cli_errors():
        if action is not None and action not in audit.ACTIONS:
            raise ConfigError(f"--action {action!r} is not one of: {', '.join(audit.ACTIONS)}")
        ctx = StackContext(stack, project_dir, sandbox)
        rows: list[dict[str, Any]] = []
        for ep in ctx.endpoints(endpoint):
            rows += _history(ctx, ep.physical_name, limit, action)
        rows.sort(key=lambda r: r.get("at", ""), reverse=True)
        if json_out:
            print_json(rows)
            return
        endpoints = sorted({r.get("endpoint", "") for r in rows})
        title = f"history of {stack}" + (f" ({endpoints[0]})" if len(endpoints) == 1 else "")
        table = Table(
            title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True
        )
        table.add_column("at (UTC)", no_wrap=True)
        # ids are copied into `revert --to-deployment`: never wrap or cut them
        table.add_column("id", no_wrap=True, min_width=12)
        if len(endpoints) > 1:
            table.add_column("endpoint", no_wrap=True, overflow="ellipsis", max_width=24)
        for col in ("action", "version"):
            table.add_column(col, no_wrap=True)
        table.add_column("actor", no_wrap=True, overflow="ellipsis", max_width=20)
        table.add_column("reason", ratio=1, min_width=16)
        for r in rows:
            at = str(r.get("at", ""))
            cells = [at[5:10] + " " + at[11:19], at.rsplit("#", 1)[-1]]
            if len(endpoints) > 1:
                cells.append(r.get("endpoint", ""))
            outcome = r.get("outcome", "done")
            cells += [
                r.get("action", "") + ("" if outcome == "done" else f" ({outcome})"),
                str(r.get("version") or ""),
                escape(str(r.get("actor", ""))),
                escape(str(r.get("reason") or "")),
            ]
            table.add_row(*cells)
        console.print(table)


def _version(plan: dict[str, Any], role: str) -> str:
    """The version a variant serves per the plan; an idle candidate serves the stable version."""
    if plan.get(role):
        return str(plan[role])
    if role == names.CANDIDATE and plan.get(names.STABLE):
        return f"{plan[names.STABLE]} (idle)"
    return "?"


@app.command(rich_help_panel="Operate")
def rollback(
    stack: StackOpt,
    endpoint: EndpointOpt,
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why; goes to the audit trail and the alert.")
    ],
    yes: YesOpt = False,
    project_dir: ProjectOpt = None,
    sandbox: SandboxOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Drain the candidate now (weight 0, stable takes all): the same code as the alarm Lambda.

    Records who and why, writes the quarantine record so `pulumi up` keeps it drained.

    Examples:

      mlrollback rollback --stack prod --endpoint fraud-scorer --reason "p99 doubled after 14:00" --yes
    """
    from rollback.runtime.drain import drain as drain_now

    with cli_errors():
        # A usage error (exit 2), checked before anything is read: an empty why is not a refused gate.
        if not reason.strip():
            raise ConfigError(
                "--reason is empty; say why the candidate is drained (it goes into the audit trail and "
                'the notification), e.g. --reason "p99 doubled after 14:00"'
            )
        ctx = StackContext(stack, project_dir, sandbox)
        ep = ctx.endpoint(endpoint)
        if not yes and not typer.confirm(f"Drain the candidate of {ep.physical_name} now?"):
            raise typer.Abort()
        result = drain_now(
            ctx.clients, ctx.settings, ep.physical_name, actor=actor(), reason=reason, kind="manual"
        )
        if json_out:
            print_json(result)
        else:
            why = escape(str(result.get("reason", "")))
            console.print(f"{ep.physical_name}: {result.get('action', 'drain')} - {why}", highlight=False)


@app.command(rich_help_panel="Guard")
def preflight_cmd(
    stack: StackOpt,
    project_dir: ProjectOpt = None,
    sandbox: SandboxOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Fail (exit 8) when `pulumi up` would undo a drain or a rollback; says what to change.

    Checks each live endpoint against the stack file and the records: a drained candidate declared
    with traffic again, a quarantined version declared as stable, live weights that a new endpoint
    config would reset mid-rollout, an endpoint that is Updating. CI runs it before every `pulumi up`.

    Examples:

      mlrollback preflight --stack prod && pulumi up --stack prod --yes
    """
    with cli_errors():
        ctx = StackContext(stack, project_dir, sandbox)
        findings: list[preflight.Finding] = []
        for ep in ctx.cfg.endpoints:
            declared = preflight.Declared(
                endpoint=ep.name,
                physical=ep.physical_name,
                stable=ep.release.stable,
                candidate=ep.release.candidate,
                shadow=ep.release.shadow,
                strategy=ep.strategy.type,
                steps=tuple(float(s) for s in ep.strategy.candidate_steps()) if ep.release.candidate else (),
                keep_variant_names=ep.strategy.keep_variant_names,
            )
            live = preflight.gather_live(
                ctx.clients.sagemaker,
                ctx.clients.ssm,
                stack,
                ep.physical_name,
                dynamodb=ctx.clients.dynamodb,
                audit_table=ctx.settings.audit_table,
            )
            findings += preflight.check_endpoint(declared, live)
            findings += _rehearsal_findings(ctx, ep.name, live, project_dir, sandbox)
        errors = [f for f in findings if f.severity == "error"]
        if json_out:
            print_json({"stack": stack, "ok": not errors, "findings": [f.as_dict() for f in findings]})
        else:
            colour = {"error": "red", "warning": "yellow", "info": "green"}
            for f in findings:
                console.print(
                    f"[{colour[f.severity]}]{f.severity}[/] {escape(f.endpoint)}: {escape(f.message)}",
                    highlight=False,
                )
                if f.fix and f.severity != "info":
                    console.print(f"    fix: {escape(f.fix)}", highlight=False, soft_wrap=True)
        if errors:
            raise GateError(
                f"preflight failed for stack {stack}: {len(errors)} problem(s); pulumi up is not safe"
            )


app.registered_commands[-1].name = "preflight"


def _rehearsal_findings(
    ctx: StackContext, endpoint: str, live: preflight.Live, project_dir: Path | None, sandbox: bool
) -> list[preflight.Finding]:
    """The rehearsal gate's findings for one endpoint of a stack with ``rehearsal.required`` (else none)."""
    from rollback.ops import rehearsal_gate

    reh = ctx.cfg.rehearsal
    if not reh.required or reh.source is None:
        return []
    src = StackContext(reh.source, project_dir, sandbox)
    quarantined = (live.quarantine or {}).get("version")
    result = rehearsal_gate.check_declared(ctx, src, endpoint, live.plan, quarantined, deployed=live.exists)
    fix = (
        f"promote it with `mlrollback promote --from {src.stack} --to {ctx.stack} --endpoint {endpoint}` "
        f"after a passing `mlrollback drill --stack {src.stack} --endpoint {endpoint}`, or take it out of "
        f"the stack file (`mlrollback revert --stack {ctx.stack} --endpoint {endpoint}`)"
    )
    return [preflight.Finding(endpoint, "error", "not-rehearsed", why, fix) for why in result.failed] + [
        preflight.Finding(endpoint, "info", "rehearsal", note) for note in result.notes
    ]


@app.command(rich_help_panel="Change")
def finalize(
    stack: StackOpt,
    endpoint: EndpointOpt,
    commit: CommitOpt = False,
    project_dir: ProjectOpt = None,
    sandbox: SandboxOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """When the rollout is ready-to-finalize, make the candidate the stable version in the stack file.

    A reviewable change: commit it and apply it with `pulumi up`.

    Examples:

      mlrollback finalize --stack staging --endpoint fraud-scorer && git diff

      mlrollback finalize --stack staging --endpoint fraud-scorer --commit
    """
    from rollback.ops.stackfile import Release, StackDocument, require_clean
    from rollback.ops.status import endpoint_status

    with cli_errors():
        ctx = StackContext(stack, project_dir, sandbox)
        ep = ctx.endpoint(endpoint)
        candidate = ep.release.candidate
        if candidate is None:
            raise GateError(f"{ep.name} has no candidate in {ctx.path.name}; nothing to finalize")
        st = endpoint_status(ctx.clients, ctx.settings, ep.physical_name)
        state = (st.get("progress") or {}).get("state")
        live_candidate = (st.get("plan") or {}).get("candidate")
        if st.get("quarantine") and st["quarantine"].get("version") == candidate:
            raise GateError(f"{candidate} is quarantined on {ep.physical_name}; it cannot become stable")
        if state != "ready-to-finalize" or live_candidate != candidate:
            raise GateError(
                f"rollout of {candidate} on {ep.physical_name} is not finished (state {state or 'none'}, "
                f"live candidate {live_candidate or 'none'}); wait until `mlrollback status` says "
                "ready-to-finalize"
            )
        if commit:
            require_clean(ctx.root, ctx.path)
        doc = StackDocument.load(ctx.path)
        before = doc.release(ep.name)
        doc.set_release(ep.name, Release(candidate, None, before.shadow))
        where = str(ctx.path.relative_to(ctx.root))
        diff = doc.diff(where)
        reason = f"{candidate} becomes stable"
        hint = (
            f"finalize only edits the release lines; change the rest of endpoint {ep.name} in {where} by "
            "hand (e.g. strategy.type) so it accepts the new release, then run finalize again"
        )
        audit_id, _ = land(
            ctx,
            doc.render(),
            hint,
            "finalize",
            lambda outcome, extra: (ctx, ep.physical_name, record_change(
                ctx, ep.physical_name, "finalize", candidate, reason, diff, outcome=outcome, **extra
            )),
        )  # fmt: skip
        sha = commit_change(
            ctx,
            commit,
            f"mlrollback finalize {stack}/{ep.name}: {candidate} is stable",
            reason,
            audit_id,
            json_out=json_out,
        )
        if json_out:
            print_json({"endpoint": ep.physical_name, "stable": candidate, "diff": diff, "commit": sha})
        else:
            sys.stdout.write(diff)
            console.print(f"{ctx.path.name}: {candidate} is now stable; commit and run `pulumi up`")


@app.command("clear-quarantine", rich_help_panel="Change")
def clear_quarantine(
    stack: StackOpt,
    endpoint: EndpointOpt,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why the version may serve again.")] = "",
    yes: YesOpt = False,
    project_dir: ProjectOpt = None,
    sandbox: SandboxOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Delete the quarantine record, so the next `pulumi up` may give the candidate traffic again.

    Examples:

      mlrollback clear-quarantine --stack dev --endpoint fraud-scorer --reason "fixed in image 2.0.1" --yes
    """
    from rollback.ops.status import clear_quarantine as clear_record

    with cli_errors():
        ctx = StackContext(stack, project_dir, sandbox)
        ep = ctx.endpoint(endpoint)
        if not yes and not typer.confirm(f"Clear the quarantine of {ep.physical_name}?"):
            raise typer.Abort()
        result = clear_record(
            ctx.clients, ctx.settings, ep.physical_name, actor=actor(), reason=reason or "cleared by operator"
        )
        if json_out:
            print_json(result)
        else:
            console.print(
                f"{ep.physical_name}: quarantine cleared; run `mlrollback preflight --stack {stack}`"
            )
