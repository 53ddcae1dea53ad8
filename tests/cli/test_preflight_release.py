"""Preflight after `clear-quarantine` (runbook step 4): a deliberate re-release passes, a drain guards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from rollback.cli import app
from rollback.ops import preflight
from rollback.runtime import audit, names
from tests.cli.conftest import audit_table, deploy_endpoint

runner = CliRunner()


def _run(*args: str) -> Any:
    return runner.invoke(app, list(args))


def _drained_and_quarantined(aws: dict[str, Any]) -> str:
    """Dev's candidate v2 drained by the Lambda: weight 0, quarantine record, halted rollout."""
    audit_table(aws, "dev")
    return deploy_endpoint(
        aws,
        "dev",
        weights={"stable": 100, "candidate": 0},
        quarantine="v2",
        progress={"stepIndex": 0, "state": "halted"},
    )


def _drain_item(aws: dict[str, Any], physical: str, version: str) -> None:
    item = audit.AuditItem(endpoint=physical, action="drain", actor="lambda:rollback", version=version)
    audit.append(aws["dynamodb"], names.audit_table_name("dev"), item)


def test_clear_quarantine_as_the_runbook_says_then_preflight_lets_pulumi_up_run(
    project: Path, aws: dict[str, Any]
) -> None:
    physical = _drained_and_quarantined(aws)
    _drain_item(aws, physical, "v2")
    assert _run("preflight", "--stack", "dev").exit_code == 0  # the record holds v2 at 0

    cleared = _run("clear-quarantine", "-s", "dev", "-e", "fraud-scorer", "-r", "fixed in 2.0.1", "--yes")
    assert cleared.exit_code == 0, cleared.output
    after = _run("preflight", "--stack", "dev", "--json")

    assert after.exit_code == 0, after.stdout
    assert "re-releases-cleared" in after.stdout and "fixed in 2.0.1" in after.stdout


def test_a_drain_after_the_clear_keeps_preflight_refusing(project: Path, aws: dict[str, Any]) -> None:
    physical = _drained_and_quarantined(aws)
    assert _run("clear-quarantine", "-s", "dev", "-e", "fraud-scorer", "-r", "fixed", "--yes").exit_code == 0
    _drain_item(aws, physical, "v2")  # drained again, and its new record was lost

    result = _run("preflight", "--stack", "dev", "--json")

    assert result.exit_code == 8, result.stdout
    assert '"code": "undoes-drain"' in result.stdout


def test_a_quarantine_record_deleted_by_hand_is_not_a_release_and_the_hint_says_what_to_do(
    project: Path, aws: dict[str, Any]
) -> None:
    physical = _drained_and_quarantined(aws)
    _drain_item(aws, physical, "v2")
    aws["ssm"].delete_parameter(Name=names.quarantine_parameter("dev", physical))

    result = _run("preflight", "--stack", "dev", "--json")

    assert result.exit_code == 8
    assert '"code": "undoes-drain"' in result.stdout
    assert "put the record back" in result.stdout and "mlrollback clear-quarantine" in result.stdout
    assert "restore its quarantine record; only if" not in result.stdout  # the old, misleading hint


def test_a_clear_of_another_version_does_not_release_the_drained_candidate() -> None:
    items = [  # newest first, as audit.query returns them
        {"action": "clear-quarantine", "version": "v3"},
        {"action": "drain", "version": "v2", "outcome": "done"},
    ]
    assert preflight.release_after_drain(items, "v2") is None
    assert preflight.release_after_drain(items, "v3") == items[0]
    assert preflight.release_after_drain([{"action": "clear-quarantine", "version": "v2"}], "v2") is not None
