"""`--commit`: a stack revert (or promotion, or finalize) becomes one git commit that says why."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rollback.cli import app
from rollback.runtime import audit, names
from tests.cli.conftest import audit_table, deploy_endpoint

runner = CliRunner()
STACK_FILE = "environments/Pulumi.dev.yaml"


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()


@pytest.fixture
def repo(project: Path) -> Path:
    git(project, "init", "-q", "-b", "main")
    git(project, "config", "user.email", "ci@example.com")
    git(project, "config", "user.name", "CI")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "initial")
    return project


def _audit_ids(aws: dict[str, Any], physical: str) -> list[str]:
    items, _ = audit.query(aws["dynamodb"], names.audit_table_name("dev"), physical, limit=50)
    return [i["at"].rsplit("#", 1)[-1] for i in items if i["action"] == "revert"]


def test_revert_with_commit_makes_one_commit_of_the_stack_file_with_the_reason(
    repo: Path, aws: dict[str, Any]
) -> None:
    audit_table(aws, "dev")
    physical = deploy_endpoint(aws, "dev", weights={"stable": 90, "candidate": 10})
    result = runner.invoke(
        app, ["revert", "-s", "dev", "-e", "fraud-scorer", "--reason", "v2 p99 regression", "--commit"]
    )
    assert result.exit_code == 0, result.output
    message = git(repo, "log", "-1", "--format=%B")
    assert message.splitlines()[0] == "mlrollback revert dev/fraud-scorer: v1+v2 -> v1"
    assert "v2 p99 regression" in message
    assert f"mlrollback-audit: {_audit_ids(aws, physical)[0]}" in message
    assert git(repo, "show", "--name-only", "--format=", "HEAD") == STACK_FILE
    assert git(repo, "status", "--porcelain") == ""


def test_commit_is_refused_before_anything_when_the_stack_file_has_other_edits(
    repo: Path, aws: dict[str, Any]
) -> None:
    audit_table(aws, "dev")
    physical = deploy_endpoint(aws, "dev", weights={"stable": 90, "candidate": 10})
    path = repo / STACK_FILE
    edited = path.read_text() + "# someone's unfinished edit\n"
    path.write_text(edited)
    head = git(repo, "rev-parse", "HEAD")
    result = runner.invoke(app, ["revert", "-s", "dev", "-e", "fraud-scorer", "--commit"])
    assert result.exit_code == 8, result.output
    assert "has uncommitted changes" in result.output
    assert path.read_text() == edited and git(repo, "rev-parse", "HEAD") == head
    assert _audit_ids(aws, physical) == []  # no record of a change that was not made


def test_commit_outside_a_git_work_tree_changes_nothing(project: Path, aws: dict[str, Any]) -> None:
    audit_table(aws, "dev")
    physical = deploy_endpoint(aws, "dev", weights={"stable": 90, "candidate": 10})
    before = (project / STACK_FILE).read_text()
    result = runner.invoke(app, ["revert", "-s", "dev", "-e", "fraud-scorer", "--commit"])
    assert result.exit_code == 1 and "not in a git work tree" in result.output
    assert (project / STACK_FILE).read_text() == before
    assert _audit_ids(aws, physical) == []
