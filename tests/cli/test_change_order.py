"""Check, then write, then apply, then record: a failed or interrupted change leaves the old state.

Covers the gates that ran after the write (revert to a quarantined version) and the apply step that
failed or was interrupted after the file was rewritten and recorded as done.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rollback.cli import app
from rollback.ops import pulumi_cli as pulumi_ops
from rollback.runtime import audit, names
from rollback.runtime.errors import MLRollbackError
from tests.cli.conftest import audit_table, deploy_endpoint, record_drill

runner = CliRunner()
DEV = "environments/Pulumi.dev.yaml"
PROD = "environments/Pulumi.prod.yaml"


def _run(*args: str) -> Any:
    return runner.invoke(app, list(args), terminal_width=400)


def _flat(result: Any) -> str:
    return " ".join(result.output.split())


def _items(aws: dict[str, Any], stack: str, physical: str) -> list[dict[str, Any]]:
    items, _ = audit.query(aws["dynamodb"], names.audit_table_name(stack), physical, limit=50)
    return items


def _pulumi_up(monkeypatch: pytest.MonkeyPatch, outcome: BaseException | None) -> list[str]:
    """The Pulumi CLI binary stands in (not installable here): `up` succeeds or raises ``outcome``."""
    ran: list[str] = []

    def up(root: Path, stack: str, on_output: Any = None) -> dict[str, Any]:
        ran.append((root / f"environments/Pulumi.{stack}.yaml").read_text())  # what it deployed
        if outcome is not None:
            raise outcome
        return {"result": "succeeded", "changes": {"update": 1}}

    monkeypatch.setattr(pulumi_ops, "pulumi_available", lambda: True)
    monkeypatch.setattr(pulumi_ops, "up", up)
    return ran


def test_revert_to_a_quarantined_version_is_refused_with_preflights_words(
    project: Path, aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    audit_table(aws, "dev")
    deploy_endpoint(aws, "dev", weights={"stable": 100, "candidate": 0}, quarantine="v2")
    ran = _pulumi_up(monkeypatch, None)
    before = (project / DEV).read_bytes()

    revert = _run("revert", "--stack", "dev", "--endpoint", "fraud-scorer", "--to", "v2", "--apply")

    assert revert.exit_code == 8, revert.output
    assert "release.stable is v2, which was rolled back" in _flat(revert)
    assert "pulumi up would send it all traffic" in _flat(revert)
    assert "mlrollback clear-quarantine --endpoint fraud-scorer" in _flat(revert)
    assert (project / DEV).read_bytes() == before and ran == []
    assert [i for i in _items(aws, "dev", "fraud-scorer-dev") if i["action"] == "revert"] == []


def test_after_clear_quarantine_the_same_revert_goes_through(
    project: Path, aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    audit_table(aws, "dev")
    deploy_endpoint(aws, "dev", weights={"stable": 100, "candidate": 0}, quarantine="v2")
    _pulumi_up(monkeypatch, None)
    assert _run("clear-quarantine", "-s", "dev", "-e", "fraud-scorer", "-r", "fixed", "--yes").exit_code == 0

    revert = _run("revert", "--stack", "dev", "--endpoint", "fraud-scorer", "--to", "v2", "--apply")

    assert revert.exit_code == 0, revert.output


def _promotable(project: Path, aws: dict[str, Any]) -> None:
    """Staging finished and drilled v2; prod serves v1 alone, its file declares no candidate."""
    from rollback.ops.stackfile import Release, StackDocument

    audit_table(aws, "staging")
    deploy_endpoint(
        aws,
        "staging",
        weights={"stable": 0, "candidate": 100},
        steps=[10, 25, 50, 100],
        progress={"stepIndex": 3, "state": "ready-to-finalize"},
    )
    record_drill(aws, project, "staging", "v2")
    audit_table(aws, "prod")
    deploy_endpoint(aws, "prod", weights={"stable": 100}, candidate=None)
    doc = StackDocument.load(project / PROD)
    doc.set_release("fraud-scorer", Release("v1", None))
    (project / PROD).write_text(doc.render())


def test_a_promote_whose_apply_fails_restores_the_file_and_records_failed_not_done(
    project: Path, aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _promotable(project, aws)
    ran = _pulumi_up(monkeypatch, MLRollbackError("pulumi up failed for stack prod: boom"))
    before = (project / PROD).read_bytes()

    result = _run("promote", "--from", "staging", "--to", "prod", "--endpoint", "fraud-scorer", "--apply")

    assert result.exit_code == 1, result.output
    assert "candidate: v2" in ran[0]  # the apply saw the new text
    assert "pulumi up failed for stack prod: boom" in _flat(result)
    assert "environments/Pulumi.prod.yaml is back to its previous text" in _flat(result)
    assert (project / PROD).read_bytes() == before
    promotes = [i for i in _items(aws, "prod", "fraud-scorer-prod") if i["action"] == "promote"]
    assert [p["outcome"] for p in promotes] == ["failed"]
    assert "boom" in promotes[0]["detail"]["error"]


def test_ctrl_c_during_the_apply_of_a_revert_leaves_the_old_file_and_a_failed_record(
    project: Path, aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    audit_table(aws, "dev")
    deploy_endpoint(aws, "dev", weights={"stable": 90, "candidate": 10})
    _pulumi_up(monkeypatch, KeyboardInterrupt())
    before = (project / DEV).read_bytes()

    result = _run("revert", "--stack", "dev", "--endpoint", "fraud-scorer", "--apply")

    assert result.exit_code == 130, result.output
    assert "interrupted during the apply" in _flat(result) and "Traceback" not in result.output
    assert (project / DEV).read_bytes() == before
    reverts = [i for i in _items(aws, "dev", "fraud-scorer-dev") if i["action"] == "revert"]
    assert [r["outcome"] for r in reverts] == ["failed"]


def test_a_successful_apply_is_recorded_done_once_after_it_ran(
    project: Path, aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    audit_table(aws, "dev")
    deploy_endpoint(aws, "dev", weights={"stable": 90, "candidate": 10})
    ran = _pulumi_up(monkeypatch, None)

    result = _run("revert", "--stack", "dev", "--endpoint", "fraud-scorer", "--apply")

    assert result.exit_code == 0, result.output
    assert "candidate: v2" not in ran[0]
    reverts = [i for i in _items(aws, "dev", "fraud-scorer-dev") if i["action"] == "revert"]
    assert [r["outcome"] for r in reverts] == ["done"]
