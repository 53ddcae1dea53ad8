"""Verdict commands: ``shadow-report``, ``ab-report``, ``drift-report``.

Thin: resolve the stack's endpoint and capture location, call :mod:`rollback.verdicts` /
:mod:`rollback.runtime.drift`, render. ``--check`` turns a non-passing verdict into exit status 8 (the
gate exit code), so CI can branch on it.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from infra.runtime_records import capture_uri as default_capture_uri
from rollback.cli.app import app, cli_errors, console, print_json
from rollback.ops.stack_context import clients_for, find_project_root, load_stack
from rollback.runtime import names
from rollback.runtime.errors import ConfigError, GateError

StackOpt = Annotated[str, typer.Option("--stack", "-s", help="Stack name: environments/Pulumi.<stack>.yaml.")]
EndpointOpt = Annotated[
    str, typer.Option("--endpoint", "-e", help="Logical endpoint name from the stack file.")
]
SinceOpt = Annotated[
    str,
    typer.Option("--since", help="Window start: a duration back from --until (30m, 6h, 2d) or ISO-8601 UTC."),
]
UntilOpt = Annotated[str | None, typer.Option("--until", help="Window end, ISO-8601 UTC (default: now).")]
CaptureOpt = Annotated[
    str | None,
    typer.Option(
        "--capture-uri",
        help="Data-capture DestinationS3Uri (default: s3://<artifacts.bucket>/data-capture when the stack "
        "brings its own bucket; otherwise see `pulumi stack output`).",
    ),
]
ProjectOpt = Annotated[
    Path | None,
    typer.Option("--project-dir", help="Project root (default: nearest Pulumi.yaml above the cwd)."),
]
SandboxOpt = Annotated[bool, typer.Option("--sandbox", help="Talk to the local sandbox.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of tables.")]
CheckOpt = Annotated[bool, typer.Option("--check", help="Exit 8 unless the verdict passes (for CI gates).")]

_DURATION = re.compile(r"^(\d+)([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_window(since: str, until: str | None) -> tuple[datetime, datetime]:
    """``--since``/``--until`` to an aware UTC window; ConfigError naming the option when bad."""
    try:
        end = datetime.fromisoformat(until.replace("Z", "+00:00")) if until else datetime.now(UTC)
    except ValueError:
        raise ConfigError(f"--until {until!r} is not an ISO-8601 time like 2026-03-01T10:00:00Z") from None
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    match = _DURATION.match(since.strip())
    if match:
        start = end - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    else:
        try:
            start = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(
                f"--since {since!r} is neither a duration (30m, 6h, 2d) nor an ISO-8601 time"
            ) from None
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
    if start >= end:
        raise ConfigError(f"--since {since!r} is not before --until ({end.isoformat()})")
    return start.astimezone(UTC), end.astimezone(UTC)


def _resolve(
    stack: str, endpoint: str, capture_uri: str | None, project_dir: Path | None
) -> tuple[Any, Any, str]:
    root = find_project_root(project_dir)
    cfg = load_stack(root, stack)
    ep = cfg.endpoint(endpoint)
    if capture_uri is None:
        if not cfg.artifacts.bucket:
            raise ConfigError(
                f"{cfg.source}: the stack creates its artifacts bucket, so its name is only known after "
                "deployment; pass --capture-uri s3://<bucket>/data-capture (from `pulumi stack output`)"
            )
        capture_uri = default_capture_uri(cfg.artifacts.bucket)
    return root, cfg, ep.physical_name


@app.command("shadow-report", rich_help_panel="Verdicts")
def shadow_report(
    stack: StackOpt,
    endpoint: EndpointOpt,
    since: SinceOpt = "24h",
    until: UntilOpt = None,
    capture_uri: CaptureOpt = None,
    production_variant: Annotated[str, typer.Option(help="Production variant name.")] = names.STABLE,
    shadow_variant: Annotated[str, typer.Option(help="Shadow variant name.")] = names.SHADOW,
    min_agreement: Annotated[float, typer.Option(help="Required agreement within tolerance (0..1).")] = 0.95,
    rel_tolerance: Annotated[float, typer.Option(help="Relative tolerance for numbers.")] = 0.01,
    min_pairs: Annotated[int, typer.Option(help="Paired requests needed for a verdict.")] = 100,
    project_dir: ProjectOpt = None,
    sandbox: SandboxOpt = False,
    json_out: JsonOpt = False,
    check: CheckOpt = False,
) -> None:
    """Compare the shadow variant's captured answers, errors and latency with production.

    Exit 8 with --check when the verdict is not pass (CI gates on it).

    Examples:

      mlrollback shadow-report --stack prod --endpoint churn-predictor --since 24h

      mlrollback shadow-report -s prod -e churn-predictor --min-agreement 0.98 --json --check
    """
    from rollback.verdicts.shadow import ShadowThresholds, evaluate_shadow

    with cli_errors():
        start, end = parse_window(since, until)
        root, cfg, physical = _resolve(stack, endpoint, capture_uri, project_dir)
        uri = capture_uri or default_capture_uri(cfg.artifacts.bucket)
        clients = clients_for(root, cfg.region, sandbox=sandbox)
        try:
            thresholds = ShadowThresholds(
                min_agreement=min_agreement, rel_tolerance=rel_tolerance, min_pairs=min_pairs
            )
        except ValueError as exc:
            raise ConfigError(f"shadow-report: {exc}") from None
        report = evaluate_shadow(
            clients.s3,
            clients.cloudwatch,
            capture_uri=uri,
            endpoint=physical,
            since=start,
            until=end,
            production_variant=production_variant,
            shadow_variant=shadow_variant,
            thresholds=thresholds,
        )
        if json_out:
            print_json(report.to_dict())
        else:
            _render_shadow(report)
        if check and not report.passed:
            raise GateError(f"shadow verdict for {physical} is {report.verdict}: {'; '.join(report.reasons)}")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _render_shadow(report: Any) -> None:
    color = {"pass": "green", "fail": "red"}.get(report.verdict, "yellow")
    console.print(f"[bold]{report.endpoint}[/]: shadow verdict [bold {color}]{report.verdict}[/]")
    table = Table("measure", "value")
    table.add_row("paired requests", str(report.pairs))
    table.add_row("production without shadow twin", str(report.unpaired_production))
    table.add_row("shadow without production twin", str(report.unpaired_shadow))
    table.add_row("exact agreement", _pct(report.exact_agreement))
    table.add_row("agreement within tolerance", _pct(report.tolerant_agreement))
    for label, health in (("production", report.production_health), ("shadow", report.shadow_health)):
        if health is not None:
            lat = "-" if health.latency_mean_ms is None else f"{health.latency_mean_ms:.1f} ms"
            table.add_row(f"{label} 5xx rate / mean latency", f"{_pct(health.error_rate)} / {lat}")
    console.print(table)
    for reason in report.reasons:
        console.print(f"- {escape(str(reason))}", highlight=False)
    for example in report.disagreements:
        console.print(
            f"  disagree {escape(str(example['id']))}: production={escape(str(example['production']))} "
            f"shadow={escape(str(example['shadow']))}",
            highlight=False,
        )


@app.command("ab-report", rich_help_panel="Verdicts")
def ab_report(
    stack: StackOpt,
    endpoint: EndpointOpt,
    metric: Annotated[
        str, typer.Option(help="Custom metric (MLRollback/Endpoints) to compare, e.g. Conversions.")
    ],
    kind: Annotated[
        str, typer.Option(help="proportion (successes/trials) or continuous (mean).")
    ] = "proportion",
    mde: Annotated[float, typer.Option(help="Minimum detectable effect, absolute (0.01 = 1 point).")] = 0.01,
    alpha: Annotated[float, typer.Option(help="False-positive rate.")] = 0.05,
    power: Annotated[float, typer.Option(help="Power for the sample-size plan.")] = 0.8,
    trials_metric: Annotated[str, typer.Option(help="Denominator metric for proportions.")] = "Invocations",
    lower_is_better: Annotated[bool, typer.Option(help="A lower metric value is an improvement.")] = False,
    since: SinceOpt = "7d",
    until: UntilOpt = None,
    project_dir: ProjectOpt = None,
    sandbox: SandboxOpt = False,
    json_out: JsonOpt = False,
    check: CheckOpt = False,
) -> None:
    """Two-proportion z-test or Welch t-test of candidate vs stable, with an always-valid p-value.

    Says "not enough data yet" until both arms reach the planned sample size.

    Examples:

      mlrollback ab-report --stack prod --endpoint ranker --metric Conversions --mde 0.005

      mlrollback ab-report -s prod -e ranker --metric OrderValue --kind continuous --since 14d --json
    """
    from rollback.verdicts.ab import ab_verdict, fetch_arms

    with cli_errors():
        start, end = parse_window(since, until)
        root = find_project_root(project_dir)
        cfg = load_stack(root, stack)
        physical = cfg.endpoint(endpoint).physical_name
        clients = clients_for(root, cfg.region, sandbox=sandbox)
        try:
            control, treatment = fetch_arms(
                clients.cloudwatch, physical, metric, kind, start, end, trials_metric=trials_metric
            )
            report = ab_verdict(
                control,
                treatment,
                kind=kind,
                mde=mde,
                alpha=alpha,
                power=power,
                higher_is_better=not lower_is_better,
            )
        except ValueError as exc:
            raise ConfigError(f"ab-report: {exc}") from None
        if json_out:
            print_json(report.to_dict() | {"endpoint": physical, "metric": metric})
        else:
            color = {"candidate-better": "green", "candidate-worse": "red"}.get(report.verdict, "yellow")
            console.print(f"[bold]{physical}[/] {metric}: [bold {color}]{report.verdict}[/]")
            table = Table("arm", "n", "rate / mean")
            for arm in (control, treatment):
                value = arm.rate if kind == "proportion" else arm.mean
                table.add_row(arm.variant, f"{arm.n:g}", "-" if value is None else f"{value:.4g}")
            console.print(table)
            console.print(f"required per arm: {report.required_per_arm or '-'}")
            for reason in report.reasons:
                console.print(f"- {escape(str(reason))}", highlight=False)
        if check and report.verdict != "candidate-better":
            raise GateError(f"A/B verdict for {physical} is {report.verdict}")


@app.command("drift-report", rich_help_panel="Verdicts")
def drift_report(
    stack: StackOpt,
    endpoint: EndpointOpt,
    baseline_uri: Annotated[
        str | None, typer.Option(help="Training sample s3://.../x.csv|.jsonl (default: stable's captures).")
    ] = None,
    window_minutes: Annotated[
        int | None, typer.Option(help="Candidate inputs from the last N minutes (default: the stack's job).")
    ] = None,
    min_samples: Annotated[
        int | None, typer.Option(help="Inputs needed on each side (default: the stack's job, else 500).")
    ] = None,
    capture_uri: CaptureOpt = None,
    publish: Annotated[bool, typer.Option(help="Also publish DriftScore, like the scheduled job.")] = False,
    project_dir: ProjectOpt = None,
    sandbox: SandboxOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """PSI and KS per feature of the candidate's recent inputs against a baseline (what the job computes).

    With `triggers.drift` in the stack, the job is the scheduled drift function's own (window, minimum
    samples, baseline); the options override it.

    Examples:

      mlrollback drift-report --stack staging --endpoint churn-predictor

      mlrollback drift-report -s dev -e fraud-scorer --baseline-uri s3://ml-data/fraud/train.csv --json
    """
    from infra.runtime_records import drift_job
    from rollback.runtime.drift import DriftJob, run_drift_job
    from rollback.runtime.metrics import MetricsPublisher

    with cli_errors():
        root, cfg, physical = _resolve(stack, endpoint, capture_uri, project_dir)
        uri = capture_uri or default_capture_uri(cfg.artifacts.bucket)
        clients = clients_for(root, cfg.region, sandbox=sandbox)
        ep = cfg.endpoint(endpoint)
        if ep.triggers.drift is not None:
            # The very job the scheduled function runs for this endpoint; flags override it.
            job = DriftJob.from_dict(drift_job(ep, uri))
            overrides = {
                "baseline_uri": baseline_uri,
                "window_minutes": window_minutes,
                "min_samples": min_samples,
            }
            job = dataclasses.replace(job, **{k: v for k, v in overrides.items() if v is not None})
        else:
            job = DriftJob(
                endpoint=physical,
                capture_uri=uri,
                baseline_uri=baseline_uri,
                window_minutes=window_minutes or 60,
                min_samples=min_samples or 500,
                max_score=None,
            )
        publisher = MetricsPublisher(clients.cloudwatch) if publish else None
        report = run_drift_job(job, s3=clients.s3, publisher=publisher, now=datetime.now(UTC))
        if json_out:
            print_json(report.to_dict())
            return
        console.print(
            f"[bold]{physical}[/] {report.variant}: {report.status} — {escape(str(report.message))}"
        )
        table = Table("feature", "PSI", "KS D", "KS p", "n baseline", "n current")
        for f in report.features:
            table.add_row(
                f.feature,
                f"{f.psi:.4f}",
                f"{f.ks_statistic:.3f}",
                f"{f.ks_p_value:.3g}",
                str(f.baseline_n),
                str(f.current_n),
            )
        console.print(table)
