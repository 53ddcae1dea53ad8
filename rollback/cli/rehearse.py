"""``mlrollback drill`` (``--sandbox`` or real AWS) and ``mlrollback sandbox up|status|down``.

Thin: parse, call :mod:`rollback.sandbox` (or :func:`rollback.ops.rehearsal.run_drill` against AWS),
render. ``--json`` prints only the JSON report on stdout; exit code 0 when the scenario's
expectation held (or, with ``--skip-if-no-candidate``, when there was nothing to rehearse), 1
otherwise; package errors keep their codes (unknown stack 3, unknown scenario 2, ...).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table

from rollback.cli.app import app, cli_errors, console, err_console, print_json
from rollback.ops.stack_context import find_project_root
from rollback.runtime.errors import ConfigError, MLRollbackError, NotFoundError, SandboxError

sandbox_app = typer.Typer(
    help="A local AWS emulator with the stack deployed, kept running in the background "
    "(point boto3, the AWS CLI or `mlrollback ... --sandbox` at it).",
    no_args_is_help=True,
)
app.add_typer(sandbox_app, name="sandbox")

_SCENARIO_HELP = (
    "bad-canary | hung-canary | no-variant-header | step-during-update | healthy | fault-injection "
    "| no-traffic | flapping (docs/sandbox.md, scenarios)"
)


_EXPECTED = {
    "bad-canary": "the candidate is rolled back and callers see no failed prediction",
    "fault-injection": "the forced alarm rolls the candidate back",
    "healthy": "the rollout walks every step to ready-to-finalize",
    "no-traffic": "the rollout pauses for lack of traffic and nothing is rolled back",
    "flapping": "isolated bad datapoints never roll back",
    "hung-canary": "the hung candidate is rolled back and callers see no failed prediction",
    "no-variant-header": "errors without a variant header still roll the candidate back; callers see none",
    "step-during-update": "a drain meeting a canary step's Updating window still lands; callers see nothing",
}


def _count(n: Any, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _weights(w: dict[str, Any] | None) -> str:
    return " / ".join(f"{role} {float(v):g}%" for role, v in (w or {}).items())


def _summary(report: dict[str, Any]) -> Table:
    """What happened, in the order it happened, for a person (``--json`` has every field)."""
    table = Table(
        title=f"drill {report['scenario']} on {report['stack']} ({report.get('endpoint')}, "
        f"{report.get('strategy')}, {report.get('metrics')} metrics)",
        title_justify="left",
        show_header=False,
        box=None,
        pad_edge=False,
    )
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    real = "audit_id" in report  # the drill against a deployed stack (AWS or a running sandbox)
    table.add_row("before" if real else "released", _weights(report.get("weights_before")))
    alarms = [e for e in report.get("alarm_events") or [] if e.get("state") == "ALARM"]
    if real:
        table.add_row("alarm", f"forced into ALARM at 0 s: {report.get('alarm_forced')}")
    elif alarms:
        first = min(a["t"] for a in alarms)
        fired = ", ".join(sorted({a["alarm"] for a in alarms if a["t"] == first}))
        table.add_row("alarm", f"{first:g} s after the release: {fired}")
    if report.get("rolled_back"):
        origin = (
            "the injected fault" if report["scenario"] == "fault-injection" else "the first failed prediction"
        )
        table.add_row(
            "rolled back",
            f"{report.get('ttr_seconds'):g} s after {origin} (time to rollback); "
            f"now {_weights(report.get('weights_after'))}",
        )
    elif real:
        table.add_row(
            "not rolled back",
            f"the candidate still served after {report.get('timeout_seconds'):g} s; "
            f"now {_weights(report.get('weights_after'))}",
        )
    else:
        outcome = "promoted" if report.get("rollout_state") == "ready-to-finalize" else "not rolled back"
        table.add_row(
            outcome, f"rollout {report.get('rollout_state')}; {_weights(report.get('weights_after'))}"
        )
    if real:
        table.add_row("callers saw", "not measured: this drill forces the alarm and sends no predictions")
        table.add_row(
            "records",
            f"drill recorded as audit item {report.get('audit_id')} in {report['stack']}'s trail "
            f"(rehearsal evidence for {report.get('version')}, artifact {str(report.get('artifact'))[:19]})",
        )
    else:
        failed, total = report.get("predictions_failed"), report.get("predictions_total")
        without = report.get("predictions_failed_without_failover")
        callers = f"{failed} failed of {total} predictions"
        if without is not None and report.get("failover"):
            callers += f" ({without} would have failed without failover to stable)"
        table.add_row("callers saw", callers)
        quarantine = report.get("quarantine")
        records = [
            _count(report.get("audit_items"), "audit item"),
            _count(report.get("notifications"), "notification"),
        ]
        if quarantine:
            records.insert(0, f"{quarantine.get('version')} quarantined")
        table.add_row("records", ", ".join(records) + " (in the simulation only: no rehearsal evidence)")
    for note in report.get("notes") or []:
        table.add_row("note", str(note))
    times = report.get("times") or {}
    if times.get("drain_accepted_seconds") is not None:
        origin = "from the forced alarm, polled" if real else "simulated, from the first bad prediction"
        table.add_row(
            "times",
            f"detected {_secs(times.get('detected_seconds'))}, drain accepted "
            f"{_secs(times.get('drain_accepted_seconds'))}, traffic moved "
            f"{_secs(times.get('traffic_moved_seconds'))} ({origin})",
        )
    timing = report.get("timing") or {}
    if timing:
        table.add_row(
            "timing model",
            f"{timing.get('model')} (seed {report.get('seed')}; docs/sandbox.md lists each latency)",
        )
    table.add_row("wall time", f"{report.get('wall_seconds')} s")
    return table


def _secs(value: Any) -> str:
    return "-" if value is None else f"{float(value):g} s"


def _runs_summary(report: dict[str, Any]) -> Table:
    """p50/p95/max of the four times over the seeded runs."""
    table = Table(
        title=f"drill {report['scenario']} on {report['stack']} ({report.get('endpoint')}, "
        f"{report.get('metrics')} metrics): {report['runs']} runs, seeds {report['seed']}.."
        f"{report['seed'] + report['runs'] - 1}, {report['timing']['model']} timing model",
        title_justify="left",
    )
    table.add_column("from the first bad prediction")
    for column in ("p50", "p95", "max", "runs"):
        table.add_column(column, justify="right")
    words = {
        "detected_seconds": "detected (alarm in ALARM), s",
        "drain_accepted_seconds": "drain accepted (weights call), s",
        "traffic_moved_seconds": "traffic moved (no request to candidate), s",
        "exposure_failed_predictions": "failed predictions callers saw",
        "exposure_failed_without_failover": "... without failover (plain calls)",
    }
    for name, label in words.items():
        d = report["summary"][name]
        table.add_row(label, *(_num(d[k]) for k in ("p50", "p95", "max")), str(d["runs"]))
    table.caption = (
        f"rolled back in {report['rolled_back_runs']} of {report['runs']} runs; expectation met in "
        f"{report['expectation_met_runs']}; wall {report['wall_seconds']} s"
    )
    return table


def _num(value: Any) -> str:
    return "-" if value is None else f"{float(value):g}"


@app.command()
def drill(
    stack: Annotated[
        str, typer.Option("--stack", "-s", help="Stack: environments/Pulumi.<stack>.yaml")
    ] = "dev",
    sandbox: Annotated[
        bool, typer.Option("--sandbox", help="Run on the embedded local AWS emulator")
    ] = False,
    scenario: Annotated[str, typer.Option("--scenario", help=_SCENARIO_HELP)] = "bad-canary",
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="Logical endpoint (default: first)")
    ] = None,
    report_dir: Annotated[
        Path | None, typer.Option("--report", help="Write report.json + drill.png here")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the JSON report")] = False,
    no_failover: Annotated[
        bool,
        typer.Option(
            "--no-failover",
            help="Sandbox: send plain calls (no retry on stable), to see what callers would lose",
        ),
    ] = False,
    project_dir: Annotated[Path | None, typer.Option("--project-dir", help="Project root")] = None,
    i_know_this_is_prod: Annotated[
        bool,
        typer.Option(
            "--i-know-this-is-prod",
            help="Allow a real drill on a stack marked production (it really drains the candidate there)",
        ),
    ] = False,
    skip_if_no_candidate: Annotated[
        bool,
        typer.Option(
            "--skip-if-no-candidate",
            help="Exit 0 with one line (JSON: skipped true) when the stack file declares no candidate "
            "to rehearse (e.g. right after finalize); CI's drill step uses it",
        ),
    ] = False,
    runs: Annotated[
        int,
        typer.Option(
            "--runs",
            help="Sandbox: run this many seeded drills and report p50/p95/max of the four times",
        ),
    ] = 1,
    seed: Annotated[
        int,
        typer.Option(
            "--seed", help="Sandbox: seed of the first run (release phase, latencies, traffic); runs add 1"
        ),
    ] = 1,
    latency: Annotated[
        list[str] | None,
        typer.Option(
            "--latency",
            help="Sandbox: change one latency of the timing model, NAME=SECONDS or NAME=LO:HI "
            "(repeatable; names in docs/sandbox.md), or 'instant' for none",
        ),
    ] = None,
    no_breaker: Annotated[
        bool,
        typer.Option(
            "--no-breaker",
            help="Sandbox: the client without its circuit breaker (every prediction weight-routed)",
        ),
    ] = False,
) -> None:
    """Rehearse a rollback and measure time-to-rollback.

    Examples:

      mlrollback drill --stack dev --sandbox                      # bad canary, local emulator

      mlrollback drill --stack dev --sandbox --scenario healthy --report reports/

      mlrollback drill --stack dev --sandbox --no-failover        # plain calls: callers see errors

      mlrollback drill --stack dev --sandbox --runs 20 --seed 1   # p50/p95/max over 20 seeded runs

      mlrollback drill --stack dev --sandbox --latency updating=300   # a slower Updating window

      mlrollback drill --stack staging                            # real AWS (fault injection)

      mlrollback drill --stack staging --skip-if-no-candidate     # CI: nothing released, nothing to do
    """
    with cli_errors():
        root = find_project_root(project_dir)
        if no_failover and not sandbox:
            raise ConfigError("--no-failover only applies to the sandbox drill; add --sandbox or drop it")
        sandbox_only = {"--runs": runs != 1, "--seed": seed != 1, "--latency": bool(latency)}
        sandbox_only["--no-breaker"] = no_breaker
        used = [flag for flag, given in sandbox_only.items() if given]
        if used and not sandbox:
            raise ConfigError(
                f"{', '.join(used)} only apply to the sandbox drill; add --sandbox or drop them"
            )
        timing = None
        if sandbox:
            from rollback.sandbox.drills import check_runs
            from rollback.sandbox.simulation import SCENARIOS
            from rollback.sandbox.timing import parse_overrides

            check_runs(runs, seed)  # bad flags: one line, exit 2, nothing started
            if scenario not in SCENARIOS:
                raise ConfigError(
                    f"--scenario {scenario!r}: unknown scenario; choose one of {', '.join(SCENARIOS)}"
                )
            timing = parse_overrides(latency or [])
            if report_dir is not None:
                _check_report_dir(report_dir)
        if skip_if_no_candidate:
            skipped = _nothing_to_rehearse(root, stack, endpoint)
            if skipped is not None:
                if as_json:
                    print_json({"skipped": True, "stack": stack, "endpoint": endpoint, "reason": skipped})
                else:
                    console.print(f"drill skipped: {skipped}", highlight=False)
                return
        if not sandbox:
            try:
                from rollback.ops import rehearsal as aws_drill
            except ModuleNotFoundError:
                raise MLRollbackError(
                    "the real-AWS drill (rollback/ops/rehearsal.py) is not available in this installation; "
                    "run the local one with --sandbox"
                ) from None
            from rollback.ops.stack_context import clients_for, load_stack

            cfg = load_stack(root, stack)
            clients = clients_for(root, cfg.region, sandbox=False)
            if as_json:
                report = aws_drill.run_drill(
                    clients, cfg, endpoint, timeout_seconds=900, i_know_this_is_prod=i_know_this_is_prod
                )
            else:
                with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=err_console) as bar:
                    task = bar.add_task(f"drill on {stack}", total=None)
                    report = aws_drill.run_drill(
                        clients,
                        cfg,
                        endpoint,
                        timeout_seconds=900,
                        i_know_this_is_prod=i_know_this_is_prod,
                        progress=lambda text, elapsed: bar.update(
                            task, description=f"{elapsed:5.0f} s  {text}"
                        ),
                    )
        elif runs > 1:
            from rollback.sandbox.drills import run_drills

            options = {
                "project_dir": root,
                "endpoint": endpoint,
                "failover": not no_failover,
                "breaker": not no_breaker,
            }
            if as_json:
                report = run_drills(stack, scenario, runs=runs, seed=seed, timing=timing, **options)
            else:
                with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=err_console) as bar:
                    task = bar.add_task(f"drill {scenario} on {stack}: {runs} runs", total=None)

                    def show_run(i: int, n: int, last: dict[str, Any] | None) -> None:
                        done = (
                            ""
                            if last is None
                            else f" (last: drain accepted {_secs(last.get('drain_accepted_seconds'))})"
                        )
                        bar.update(
                            task, description=f"drill {scenario} on {stack}: run {min(i + 1, n)} of {n}{done}"
                        )

                    report = run_drills(
                        stack, scenario, runs=runs, seed=seed, timing=timing, progress=show_run, **options
                    )
        else:
            from rollback.sandbox.simulation import run_drill

            options = {
                "project_dir": root,
                "endpoint": endpoint,
                "failover": not no_failover,
                "breaker": not no_breaker,
                "seed": seed,
                "timing": timing,
            }
            if as_json:
                report = run_drill(stack, scenario, **options)
            else:
                with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=err_console) as bar:
                    task = bar.add_task(f"drill {scenario} on {stack}", total=None)

                    def show(stage: str, data: dict[str, Any]) -> None:
                        text = data.get("message") or ", ".join(f"{k}={v}" for k, v in data.items())
                        bar.update(task, description=f"{stage}: {text}")

                    report = run_drill(stack, scenario, progress=show, **options)
        if report_dir is not None:
            from rollback.sandbox.report import write_report

            json_path, png_path = write_report(report, report_dir)
            if not as_json:
                console.print(f"report: {json_path}  picture: {png_path}")
        if as_json:
            print_json(
                {k: v for k, v in report.items() if k != "first"}
                if "runs" in report and "first" in report
                else report
            )
        elif "summary" in report:
            console.print(_runs_summary(report))
        else:
            console.print(_summary(report))
            verdict = (
                "[green]expectation met[/]"
                if report.get("expectation_met")
                else "[red]expectation NOT met[/]"
            )
            console.print(f"{verdict}: {_EXPECTED.get(report['scenario'], 'the scenario expectation')}")
        if not report.get("expectation_met"):
            raise typer.Exit(1)


def _check_report_dir(path: Path) -> None:
    """``--report`` must be a directory that exists or can be made: checked before the drill runs."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--report {path}: exists and is not a directory; give a directory for report.json")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise ConfigError(f"--report {path}: {probe} is not a writable directory; give one you can write to")


def _nothing_to_rehearse(root: Path, stack: str, endpoint: str | None) -> str | None:
    """Why there is nothing to drill (no declared candidate), or None when there is something."""
    from rollback.ops.stack_context import load_stack

    cfg = load_stack(root, stack)
    if endpoint is not None:
        ep = next((e for e in cfg.endpoints if endpoint in (e.name, e.physical_name)), None)
        if ep is None:
            known = ", ".join(e.name for e in cfg.endpoints)
            raise NotFoundError(f"no endpoint {endpoint!r} in stack {stack} (known: {known})")
        if ep.release.candidate is None:
            return f"{ep.name} declares no candidate in stack {stack}; nothing to rehearse"
        return None
    if not any(e.release.candidate for e in cfg.endpoints):
        return f"no endpoint of stack {stack} declares a candidate; nothing to rehearse"
    return None


@sandbox_app.command("up")
def sandbox_up(
    stack: Annotated[str, typer.Option("--stack", "-s", help="Stack to deploy into the emulator")] = "dev",
    project_dir: Annotated[Path | None, typer.Option("--project-dir", help="Project root")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Start the emulator in the background with the stack deployed.

    Then: export AWS_ENDPOINT_URL=$(cat .mlrollback/sandbox/endpoint_url) and use boto3 / aws CLI,
    or `mlrollback status --stack dev --sandbox`.
    """
    from rollback.sandbox.daemon import start_background

    root = find_project_root(project_dir)
    info = start_background(root, stack)
    if as_json:
        print_json(info)
    else:
        console.print(f"sandbox for [bold]{stack}[/] running at {info['endpoint_url']} (pid {info['pid']})")
        # Plain stdout, never wrapped: the line is meant to be copied into a shell.
        sys.stdout.write(
            f"export AWS_ENDPOINT_URL={info['endpoint_url']} AWS_ACCESS_KEY_ID=testing "
            f"AWS_SECRET_ACCESS_KEY=testing AWS_REGION={info['region']} AWS_DEFAULT_REGION={info['region']}\n"
        )


@sandbox_app.command("status")
def sandbox_status(
    project_dir: Annotated[Path | None, typer.Option("--project-dir", help="Project root")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Is a background sandbox running here, and where. Exit 3 when none is."""
    from rollback.sandbox.daemon import pid_alive, read_info
    from rollback.sandbox.emulator import ping

    root = find_project_root(project_dir)
    info = read_info(root)
    running = bool(info) and pid_alive(int(info["pid"])) and ping(str(info["endpoint_url"]))
    status = {"running": running, **(info or {})}
    if as_json:
        print_json(status)
    elif running:
        console.print(f"running: stack {info['stack']} at {info['endpoint_url']} (pid {info['pid']})")  # type: ignore[index]
    else:
        console.print("no sandbox running (start one with `mlrollback sandbox up --stack dev`)")
    if not running:
        raise SystemExit(3)


@sandbox_app.command("down")
def sandbox_down(
    project_dir: Annotated[Path | None, typer.Option("--project-dir", help="Project root")] = None,
) -> None:
    """Stop the background sandbox and forget its state."""
    from rollback.sandbox.daemon import stop_background

    root = find_project_root(project_dir)
    info = stop_background(root)
    if info is None:
        console.print("no sandbox was running")
    else:
        console.print(f"stopped sandbox for {info.get('stack')} (pid {info['pid']})")


__all__ = ["SandboxError", "drill", "sandbox_app"]
