"""revert, promote and finalize never leave the stack file and the audit trail disagreeing.

Each change is validated as the Pulumi program would validate it, everything ``--apply`` needs is
checked, the change is recorded, and only then renamed into place; ``--json`` keeps stdout JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sagemaker.models import sagemaker_backends
from typer.testing import CliRunner

from infra.config import load_stack_file
from rollback.cli import app
from rollback.ops import pulumi_cli as pulumi_ops
from rollback.ops.stackfile import Release, StackDocument
from rollback.runtime import audit, names
from tests.cli.conftest import REGION, audit_table, deploy_endpoint, promoted_before, record_drill

runner = CliRunner()


def _run(*args: str) -> Any:
    return runner.invoke(app, list(args))


def _items(aws: dict[str, Any], stack: str, physical: str, action: str) -> list[dict[str, Any]]:
    items, _ = audit.query(aws["dynamodb"], names.audit_table_name(stack), physical, limit=50)
    return [i for i in items if i["action"] == action]


def _drilled(aws: dict[str, Any], physical: str, version: str) -> None:
    """A passing drill of ``version`` in staging's trail, as `mlrollback drill` leaves it."""
    record_drill(aws, Path.cwd(), "staging", version, endpoint=physical.removesuffix("-staging"))


def _prod_without_candidate(project: Path) -> None:
    """Prod serves v1 only (the committed file already has v2 as candidate), so v2 is new there."""
    path = project / "environments/Pulumi.prod.yaml"
    doc = StackDocument.load(path)
    doc.set_release("fraud-scorer", Release("v1", None))
    path.write_text(doc.render())


def _finished_staging(aws: dict[str, Any]) -> str:
    """Staging's fraud-scorer rollout of v2 finished and drilled: what promote needs."""
    audit_table(aws, "staging")
    physical = deploy_endpoint(
        aws,
        "staging",
        weights={"stable": 0, "candidate": 100},
        steps=[10, 25, 50, 100],
        progress={"stepIndex": 3, "state": "ready-to-finalize"},
    )
    _drilled(aws, physical, "v2")
    return physical


@contextlib.contextmanager
def _immutable(path: Path) -> Iterator[None]:
    """``chattr +i``: read-only even for root (a plain chmod does not stop root); skip where unsupported."""
    try:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True, check=False)
    except OSError:
        pytest.skip("chattr is not available")
    if done.returncode != 0:
        pytest.skip(f"cannot make {path} immutable here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.fixture
def pulumi_cli(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stands in for the Pulumi CLI binary (not installable here); records the stacks `up` ran for."""
    ran: list[str] = []

    def up(root: Path, stack: str, on_output: Any = None) -> dict[str, Any]:
        if on_output is not None:
            on_output("Updating (dev)\n")
        ran.append(stack)
        return {"result": "succeeded", "changes": {"update": 1}}

    monkeypatch.setattr(pulumi_ops, "pulumi_available", lambda: True)
    monkeypatch.setattr(pulumi_ops, "up", up)
    return ran


# -- the program must accept what is written (finding 1) ------------------------------------------


def test_promote_into_an_endpoint_with_strategy_shadow_is_refused_before_anything_is_recorded(
    project: Path, aws: dict[str, Any]
) -> None:
    audit_table(aws, "staging")
    audit_table(aws, "prod")
    physical = deploy_endpoint(
        aws,
        "staging",
        "churn-predictor",
        weights={"stable": 0, "candidate": 100},
        stable="2025-06-01",
        candidate="2025-07-19",
        steps=[25, 50, 75, 100],
        strategy="linear",
        progress={"stepIndex": 3, "state": "ready-to-finalize"},
    )
    _drilled(aws, physical, "2025-07-19")
    prod_file = project / "environments/Pulumi.prod.yaml"
    before = prod_file.read_bytes()

    result = _run("promote", "--from", "staging", "--to", "prod", "--endpoint", "churn-predictor")

    assert result.exit_code == 2, result.output
    assert "mlrollback:endpoints[1].release.candidate: strategy shadow" in result.stderr
    assert "nothing was written or recorded" in result.stderr and "strategy.type" in result.stderr
    assert prod_file.read_bytes() == before
    assert _items(aws, "prod", "churn-predictor-prod", "promote") == []
    assert not list(prod_file.parent.glob(".*.tmp"))  # no temporary file left behind
    assert _run("status", "--stack", "prod", "--endpoint", "churn-predictor").exit_code != 2


def test_revert_to_the_shadow_version_under_strategy_shadow_is_refused_and_the_file_stays_valid(
    project: Path, aws: dict[str, Any]
) -> None:
    audit_table(aws, "prod")
    deploy_endpoint(
        aws, "prod", "churn-predictor", weights={"stable": 100}, stable="2025-06-01", candidate=None
    )
    prod_file = project / "environments/Pulumi.prod.yaml"
    before = prod_file.read_bytes()

    result = _run("revert", "--stack", "prod", "--endpoint", "churn-predictor", "--to", "2025-07-19")

    assert result.exit_code == 2, result.output
    assert "strategy shadow needs release.shadow" in result.stderr
    assert "revert only edits the release lines of churn-predictor" in result.stderr
    assert prod_file.read_bytes() == before
    load_stack_file(prod_file, "prod")  # what every later command on prod reads first
    assert _items(aws, "prod", "churn-predictor-prod", "revert") == []


# -- a failed write is one line and is not recorded as done (finding 3) ----------------------------


def test_revert_into_a_read_only_directory_is_one_error_line_and_records_nothing(
    project: Path, aws: dict[str, Any]
) -> None:
    audit_table(aws, "dev")
    deploy_endpoint(aws, "dev", weights={"stable": 100, "candidate": 0}, quarantine="v2")
    env = project / "environments"
    before = (env / "Pulumi.dev.yaml").read_bytes()

    with _immutable(env):
        result = _run("revert", "--stack", "dev", "--endpoint", "fraud-scorer", "--reason", "ro")

    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.stderr.startswith("error: cannot write ") and "Pulumi.dev.yaml" in result.stderr
    assert (env / "Pulumi.dev.yaml").read_bytes() == before
    assert _items(aws, "dev", "fraud-scorer-dev", "revert") == []


def test_finalize_onto_a_read_only_stack_file_is_refused_and_records_nothing(
    project: Path, aws: dict[str, Any]
) -> None:
    physical = _finished_staging(aws)
    path = project / "environments/Pulumi.staging.yaml"
    before = path.read_bytes()

    with _immutable(path):
        result = _run("finalize", "--stack", "staging", "--endpoint", "fraud-scorer")

    assert result.exit_code == 1, result.output
    assert "the file is read-only" in result.stderr and "nothing was changed or recorded" in result.stderr
    assert path.read_bytes() == before
    assert _items(aws, "staging", physical, "finalize") == []


def test_promote_into_a_read_only_directory_records_nothing(project: Path, aws: dict[str, Any]) -> None:
    _prod_without_candidate(project)
    _finished_staging(aws)
    audit_table(aws, "prod")
    deploy_endpoint(aws, "prod", weights={"stable": 100}, candidate=None)
    env = project / "environments"

    with _immutable(env):
        result = _run("promote", "--from", "staging", "--to", "prod", "--endpoint", "fraud-scorer")

    assert result.exit_code == 1, result.output
    assert "cannot write" in result.stderr and "Pulumi.prod.yaml" in result.stderr
    assert _items(aws, "prod", "fraud-scorer-prod", "promote") == []


def test_a_rename_that_fails_leaves_the_file_as_it_was_and_records_nothing(
    project: Path, aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    audit_table(aws, "dev")
    deploy_endpoint(aws, "dev", weights={"stable": 100, "candidate": 0}, quarantine="v2")
    path = project / "environments/Pulumi.dev.yaml"
    before = path.read_bytes()

    def refuse(src: Any, dst: Any) -> None:  # the file system, not mlrollback, refuses the rename
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "replace", refuse)
    result = _run("revert", "--stack", "dev", "--endpoint", "fraud-scorer")
    monkeypatch.undo()

    assert result.exit_code == 1, result.output
    assert "cannot write" in result.stderr and "Read-only file system" in result.stderr
    assert path.read_bytes() == before and not list(path.parent.glob(".*.tmp"))
    assert _items(aws, "dev", "fraud-scorer-dev", "revert") == []  # nothing happened, nothing recorded


# -- --apply checks its needs before writing (finding 4) -------------------------------------------


def test_revert_apply_on_an_updating_endpoint_changes_nothing_and_the_retry_applies(
    project: Path, aws: dict[str, Any], pulumi_cli: list[str]
) -> None:
    audit_table(aws, "dev")
    deploy_endpoint(aws, "dev", weights={"stable": 100, "candidate": 0}, quarantine="v2")
    endpoint = sagemaker_backends[DEFAULT_ACCOUNT_ID][REGION].endpoints["fraud-scorer-dev"]
    path = project / "environments/Pulumi.dev.yaml"
    before = path.read_bytes()

    endpoint.endpoint_status = "Updating"
    busy = _run("revert", "--stack", "dev", "--endpoint", "fraud-scorer", "--apply")
    assert busy.exit_code == 4, busy.output
    assert path.read_bytes() == before and _items(aws, "dev", "fraud-scorer-dev", "revert") == []

    endpoint.endpoint_status = "InService"
    retry = _run("revert", "--stack", "dev", "--endpoint", "fraud-scorer", "--apply")
    assert retry.exit_code == 0, retry.output
    assert pulumi_cli == ["dev"]
    assert "candidate: null" in path.read_text()


def test_revert_apply_without_the_pulumi_cli_is_refused_before_anything_is_written(
    project: Path, aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pulumi_ops, "pulumi_available", lambda: False)  # the binary, not mlrollback
    audit_table(aws, "dev")
    deploy_endpoint(aws, "dev", weights={"stable": 100, "candidate": 0}, quarantine="v2")
    path = project / "environments/Pulumi.dev.yaml"
    before = path.read_bytes()

    result = _run("revert", "--stack", "dev", "--endpoint", "fraud-scorer", "--apply")

    assert result.exit_code == 1, result.output
    assert "Pulumi CLI is not installed" in result.stderr and "nothing was changed" in result.stderr
    assert path.read_bytes() == before and _items(aws, "dev", "fraud-scorer-dev", "revert") == []


def test_revert_apply_when_the_file_already_declares_the_target_still_applies_it(
    project: Path, aws: dict[str, Any], pulumi_cli: list[str]
) -> None:
    """The retry after a failed `pulumi up`: the file is already reverted, the endpoint is not."""
    audit_table(aws, "dev")
    deploy_endpoint(aws, "dev", weights={"stable": 100, "candidate": 0}, quarantine="v2")
    assert _run("revert", "--stack", "dev", "--endpoint", "fraud-scorer").exit_code == 0

    again = _run("revert", "--stack", "dev", "--endpoint", "fraud-scorer", "--apply", "--json")

    assert again.exit_code == 0, again.output
    out = json.loads(again.stdout)
    assert out["changed"] is False and out["applied"]["result"] == "succeeded"
    assert pulumi_cli == ["dev"]
    assert len(_items(aws, "dev", "fraud-scorer-dev", "revert")) == 1  # nothing new was recorded


# -- --json is JSON only on stdout (finding 5) ------------------------------------------------------


def _git_project(project: Path) -> None:
    for args in (["init", "-q"], ["config", "user.name", "t"], ["config", "user.email", "t@t"]):
        subprocess.run(["git", *args], cwd=project, check=True)
    subprocess.run(["git", "add", "."], cwd=project, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=project, check=True)


def test_revert_with_commit_and_json_prints_only_json_on_stdout(project: Path, aws: dict[str, Any]) -> None:
    _git_project(project)
    audit_table(aws, "dev")
    deploy_endpoint(aws, "dev", weights={"stable": 100, "candidate": 0}, quarantine="v2")

    result = _run("revert", "--stack", "dev", "--endpoint", "fraud-scorer", "--commit", "--json")

    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["changed"] is True and out["commit"]
    assert f"committed {out['commit'][:12]}" in result.stderr


def test_revert_and_promote_with_nothing_to_do_print_changed_false_as_json(
    project: Path, aws: dict[str, Any]
) -> None:
    audit_table(aws, "dev")
    deploy_endpoint(aws, "dev", weights={"stable": 100, "candidate": 0}, quarantine="v2")
    assert _run("revert", "--stack", "dev", "--endpoint", "fraud-scorer").exit_code == 0
    _finished_staging(aws)
    audit_table(aws, "prod")
    deploy_endpoint(aws, "prod", weights={"stable": 90, "candidate": 10})  # prod already has v2
    promoted_before(aws, project, "v2")

    revert = _run("revert", "--stack", "dev", "--endpoint", "fraud-scorer", "--json")
    promote = _run("promote", "--from", "staging", "--to", "prod", "--endpoint", "fraud-scorer", "--json")

    assert revert.exit_code == 0 and promote.exit_code == 0, revert.output + promote.output
    reverted, promoted = json.loads(revert.stdout), json.loads(promote.stdout)
    assert reverted["changed"] is False and "nothing to revert" in reverted["message"]
    assert promoted["changed"] is False and promoted["version"] == "v2"
    assert "nothing to promote" in promoted["message"]


def test_apply_output_goes_to_stderr_under_json(
    project: Path, aws: dict[str, Any], pulumi_cli: list[str]
) -> None:
    audit_table(aws, "dev")
    deploy_endpoint(aws, "dev", weights={"stable": 100, "candidate": 0}, quarantine="v2")

    result = _run("revert", "--stack", "dev", "--endpoint", "fraud-scorer", "--apply", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["applied"]["result"] == "succeeded"
    assert "Updating (dev)" in result.stderr and "Updating" not in result.stdout


# -- promotion into a target that is not deployed yet (finding 6) ----------------------------------


def test_first_promotion_to_a_prod_never_deployed_is_done_and_recorded_in_the_source_trail(
    project: Path, aws: dict[str, Any]
) -> None:
    _prod_without_candidate(project)
    source = _finished_staging(aws)  # prod: no endpoint, no audit table (its first `pulumi up` is next)

    result = _run("promote", "--from", "staging", "--to", "prod", "--endpoint", "fraud-scorer", "--json")

    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["changed"] is True and "fraud-scorer-prod is not deployed yet" in out["notes"][0]
    assert "recorded in staging's audit trail" in result.stderr
    (item,) = _items(aws, "staging", source, "promote")
    assert item["detail"]["target"] == "fraud-scorer-prod" and item["detail"]["targetStack"] == "prod"
    assert item["detail"]["file"] == "environments/Pulumi.prod.yaml"
    rel = load_stack_file(project / "environments/Pulumi.prod.yaml", "prod").endpoint("fraud-scorer").release
    assert rel.candidate == "v2"


def test_promotion_to_a_new_endpoint_of_a_deployed_prod_is_recorded_in_prods_trail(
    project: Path, aws: dict[str, Any]
) -> None:
    _prod_without_candidate(project)
    _finished_staging(aws)
    audit_table(aws, "prod")  # prod is deployed, but not this endpoint

    result = _run("promote", "--from", "staging", "--to", "prod", "--endpoint", "fraud-scorer")

    assert result.exit_code == 0, result.output
    assert "not deployed yet: nothing live to protect" in result.stdout
    assert [i["version"] for i in _items(aws, "prod", "fraud-scorer-prod", "promote")] == ["v2"]


def test_promotion_to_an_undeployed_target_still_refuses_a_version_quarantined_there(
    project: Path, aws: dict[str, Any]
) -> None:
    _prod_without_candidate(project)
    _finished_staging(aws)
    record = {"endpoint": "fraud-scorer-prod", "version": "v2", "reason": "p99", "kind": "manual"}
    aws["ssm"].put_parameter(
        Name=names.quarantine_parameter("prod", "fraud-scorer-prod"), Value=json.dumps(record), Type="String"
    )

    result = _run("promote", "--from", "staging", "--to", "prod", "--endpoint", "fraud-scorer")

    assert result.exit_code == 8, result.output
    assert "prod: v2 is quarantined there (p99)" in result.stderr
