"""The rehearsal gate: prod takes no candidate or new stable without a passing staging drill of it.

Preflight (before every `pulumi up`) and promote read the same evidence, however the prod file got
what it declares: promoted, or typed in by hand.
"""

from __future__ import annotations

import shlex
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from rollback.cli import app
from rollback.ops.stackfile import Release, StackDocument
from rollback.runtime import audit, clock, names
from tests.cli.conftest import audit_table, deploy_endpoint, promoted_before, record_drill

runner = CliRunner()
WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"
PROD = "environments/Pulumi.prod.yaml"


def _run(*args: str) -> Any:
    return runner.invoke(app, list(args), terminal_width=400)


def _flat(result: Any) -> str:
    return " ".join(result.output.split())


def _staging_finished(aws: dict[str, Any]) -> str:
    """Staging's rollout of v2 finished (ready-to-finalize), no alarm, no drill yet."""
    audit_table(aws, "staging")
    return deploy_endpoint(
        aws,
        "staging",
        weights={"stable": 0, "candidate": 100},
        steps=[10, 25, 50, 100],
        progress={"stepIndex": 3, "state": "ready-to-finalize"},
    )


def _prod_live(aws: dict[str, Any], **kwargs: Any) -> None:
    audit_table(aws, "prod")
    deploy_endpoint(aws, "prod", **{"weights": {"stable": 100}, "candidate": None, **kwargs})
    # churn-predictor is deployed too, serving what the file declares (shadow, no candidate)
    deploy_endpoint(
        aws, "prod", "churn-predictor", weights={"stable": 100}, stable="2025-06-01", candidate=None
    )


def _at(hours_ago: float) -> clock.VirtualClock:
    return clock.VirtualClock(clock.now() - timedelta(hours=hours_ago))


def test_a_candidate_typed_into_the_prod_file_is_refused_by_preflight_and_promote(
    project: Path, aws: dict[str, Any]
) -> None:
    # the shipped prod file declares candidate v2; nobody drilled it in staging
    _staging_finished(aws)
    _prod_live(aws)
    before = (project / PROD).read_text()

    pre = _run("preflight", "--stack", "prod")
    promote = _run("promote", "--from", "staging", "--to", "prod", "--endpoint", "fraud-scorer")

    assert pre.exit_code == 8, pre.output
    assert "not-rehearsed" not in pre.output  # people read the sentence, the code is for --json
    assert "candidate v2: staging: no passing drill of v2 in the 48 h before now" in _flat(pre)
    assert "fix: promote it with `mlrollback promote --from staging --to prod" in _flat(pre)
    assert promote.exit_code == 8, promote.output
    assert "no passing drill of v2" in _flat(promote) and "nothing to promote" not in promote.output
    assert (project / PROD).read_text() == before


def test_a_drill_of_another_artifact_is_no_evidence(project: Path, aws: dict[str, Any]) -> None:
    _staging_finished(aws)
    record_drill(aws, project, "staging", "v2")
    _prod_live(aws)
    path = project / PROD
    path.write_text(path.read_text().replace("sha256:f0ab", "sha256:0000", 1))  # prod's v2 is another model

    pre = _run("preflight", "--stack", "prod", "--json")

    assert pre.exit_code == 8
    assert "rehearsed another artifact" in pre.stdout and "catalogs differ for v2" in pre.stdout


def test_a_fresh_drill_of_the_same_artifact_lets_preflight_pass(project: Path, aws: dict[str, Any]) -> None:
    _staging_finished(aws)
    record_drill(aws, project, "staging", "v2")  # same modelDigest in both catalogs: one artifact
    _prod_live(aws)

    pre = _run("preflight", "--stack", "prod")

    assert pre.exit_code == 0, pre.output


def test_the_drill_must_have_been_fresh_when_the_candidate_entered_prod(
    project: Path, aws: dict[str, Any]
) -> None:
    _staging_finished(aws)
    previous = clock.use(_at(73))
    try:
        record_drill(aws, project, "staging", "v2")
    finally:
        clock.use(previous)
    _prod_live(aws, weights={"stable": 95, "candidate": 5}, candidate="v2", steps=[5, 10, 25, 50, 100])

    stale = _run("preflight", "--stack", "prod")
    promoted_before(aws, project, "v2", hours_ago=72)  # promoted an hour after the drill, long ago
    entered = _run("preflight", "--stack", "prod")
    promoted_before(aws, project, "v2", hours_ago=100)  # a promote before any drill does not help
    early = _run("preflight", "--stack", "prod")

    assert stale.exit_code == 8 and "in the 48 h before now" in _flat(stale)
    assert entered.exit_code == 0, entered.output
    assert early.exit_code == 8 and "before it entered (promote" in _flat(early)


def test_a_stable_served_before_is_a_rollback_and_needs_no_rehearsal(
    project: Path, aws: dict[str, Any]
) -> None:
    _staging_finished(aws)
    _prod_live(aws, stable="v2")  # prod serves v2 as stable now; the file goes back to v1
    item = audit.AuditItem(
        endpoint="fraud-scorer-prod",
        action="deploy",
        actor="cli:ci",
        detail={"release": {"stable": "v1", "candidate": None, "shadow": None}},
    )
    previous = clock.use(_at(500))
    try:
        audit.append(aws["dynamodb"], names.audit_table_name("prod"), item)
    finally:
        clock.use(previous)
    doc = StackDocument.load(project / PROD)
    doc.set_release("fraud-scorer", Release("v1", None))
    (project / PROD).write_text(doc.render())

    pre = _run("preflight", "--stack", "prod")

    assert pre.exit_code == 0, pre.output
    assert "stable v1 served as stable here before" in _flat(pre)


def test_a_new_stable_never_served_in_prod_needs_the_same_evidence(
    project: Path, aws: dict[str, Any]
) -> None:
    _staging_finished(aws)
    _prod_live(aws)  # prod serves v1; the file makes v2 stable without it ever being a candidate
    doc = StackDocument.load(project / PROD)
    doc.set_release("fraud-scorer", Release("v2", None))
    (project / PROD).write_text(doc.render())

    pre = _run("preflight", "--stack", "prod")

    assert pre.exit_code == 8
    assert "stable v2: staging: no passing drill of v2" in _flat(pre)


def test_a_prod_never_deployed_needs_a_healthy_source_for_its_stable_only(
    project: Path, aws: dict[str, Any]
) -> None:
    _staging_finished(aws)
    record_drill(aws, project, "staging", "v2")
    pre = _run("preflight", "--stack", "prod", "--json")  # no prod endpoint, table or trail at all

    assert pre.exit_code == 8, pre.output  # churn-predictor's stable is not served by staging
    assert "fraud-scorer" in pre.stdout
    findings = yaml.safe_load(pre.stdout)["findings"]
    errors = [(f["endpoint"], f["message"]) for f in findings if f["severity"] == "error"]
    assert all(endpoint == "churn-predictor" for endpoint, _ in errors), errors
    assert any("churn-predictor-staging is not deployed there" in message for _, message in errors)


def test_the_deploy_workflow_stops_before_pulumi_up_on_an_unrehearsed_prod_candidate(
    project: Path, aws: dict[str, Any]
) -> None:
    """Run promote-prod's mlrollback steps in order, as CI would, on the shipped prod file."""
    _staging_finished(aws)
    _prod_live(aws)
    job = yaml.safe_load((WORKFLOWS / "deploy.yml").read_text())["jobs"]["promote-prod"]
    env = job.get("env", {}) | yaml.safe_load((WORKFLOWS / "deploy.yml").read_text()).get("env", {})
    failed_at = None
    for step in job["steps"]:
        if step.get("with", {}).get("command") == "up":
            break
        run = step.get("run", "")
        if "bin/mlrollback " not in run:
            continue
        args = shlex.split(run.split("bin/mlrollback ", 1)[1].replace('"$ENDPOINT"', env["ENDPOINT"]))
        result = _run(*args)
        if result.exit_code != 0:
            failed_at = (step["name"], result.exit_code)
            break
    assert failed_at is not None, "the job would have run pulumi up on an unrehearsed candidate"
    assert failed_at[1] == 8
