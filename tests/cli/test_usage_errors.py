"""Usage errors exit 2 with one line naming the argument, before anything is drained or written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from rollback.cli import app
from rollback.ops.stackfile import Release, StackDocument
from rollback.runtime import audit, names
from tests.cli.conftest import audit_table, deploy_endpoint

runner = CliRunner()


def _flat(result: Any) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def _live_weights(aws: dict[str, Any], physical: str) -> dict[str, float]:
    desc = aws["sagemaker"].describe_endpoint(EndpointName=physical)
    return {v["VariantName"]: v["CurrentWeight"] for v in desc["ProductionVariants"]}


def _audit_items(aws: dict[str, Any], stack: str, physical: str) -> list[dict[str, Any]]:
    return audit.query(aws["dynamodb"], names.audit_table_name(stack), physical, limit=50)[0]


def test_rollback_with_an_empty_reason_is_a_usage_error_naming_reason_and_drains_nothing(
    project: Path, aws: dict[str, Any]
) -> None:
    audit_table(aws, "dev")
    physical = deploy_endpoint(aws, "dev", weights={"stable": 90, "candidate": 10})
    for reason in ("", "   "):
        result = runner.invoke(
            app, ["rollback", "-s", "dev", "-e", "fraud-scorer", "--reason", reason, "--yes"]
        )
        assert result.exit_code == 2, result.output
        assert "--reason is empty" in _flat(result)
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert _live_weights(aws, physical) == {"stable": 90.0, "candidate": 10.0}
    assert _audit_items(aws, "dev", physical) == []


def test_revert_to_a_version_missing_from_the_catalog_exits_2_and_lists_the_known_ones(
    project: Path, aws: dict[str, Any]
) -> None:
    audit_table(aws, "dev")
    physical = deploy_endpoint(aws, "dev", weights={"stable": 90, "candidate": 10})
    path = project / "environments/Pulumi.dev.yaml"
    before = path.read_text()
    result = runner.invoke(app, ["revert", "-s", "dev", "-e", "fraud-scorer", "--to", "v9"])
    assert result.exit_code == 2, result.output
    message = _flat(result)
    assert (
        "'v9' is not in the version catalog of fraud-scorer (known: v1, v2); add it under versions in "
        "environments/Pulumi.dev.yaml or pick a known version"
    ) in message
    assert "schema" not in message
    assert path.read_text() == before
    assert _audit_items(aws, "dev", physical) == []


def test_revert_to_a_deployment_whose_version_left_the_catalog_exits_2_and_writes_nothing(
    project: Path, aws: dict[str, Any]
) -> None:
    table = audit_table(aws, "dev")
    physical = deploy_endpoint(aws, "dev", weights={"stable": 90, "candidate": 10})
    item = audit.AuditItem(
        endpoint=physical,
        action="deploy",
        actor="cli:bob",
        detail={"release": {"stable": "v0", "candidate": "v1"}},
    )
    audit.append(aws["dynamodb"], table, item)
    deployment = item.at.rsplit("#", 1)[-1]
    path = project / "environments/Pulumi.dev.yaml"
    before = path.read_text()
    result = runner.invoke(app, ["revert", "-s", "dev", "-e", "fraud-scorer", "--to-deployment", deployment])
    assert result.exit_code == 2, result.output
    message = _flat(result)
    assert f"deployment {deployment} recorded a release with 'v0'" in message
    assert "no longer in the version catalog of fraud-scorer (known: v1, v2)" in message
    assert "environments/Pulumi.dev.yaml" in message
    assert path.read_text() == before
    assert [i["action"] for i in _audit_items(aws, "dev", physical)] == ["deploy"]


def test_revert_to_a_catalogued_version_still_passes_the_catalog_check(
    project: Path, aws: dict[str, Any]
) -> None:
    audit_table(aws, "dev")
    deploy_endpoint(aws, "dev", weights={"stable": 90, "candidate": 10})
    result = runner.invoke(app, ["revert", "-s", "dev", "-e", "fraud-scorer", "--to", "v1"])
    assert result.exit_code == 0, result.output
    assert StackDocument.load(project / "environments/Pulumi.dev.yaml").release("fraud-scorer") == Release(
        "v1"
    )


def test_revert_to_a_version_and_a_deployment_at_once_is_a_usage_error(project: Path, aws: dict) -> None:
    before = (project / "environments/Pulumi.dev.yaml").read_text()
    result = CliRunner().invoke(
        app, ["revert", "-s", "dev", "-e", "fraud-scorer", "--to", "v1", "--to-deployment", "abc"]
    )
    assert result.exit_code == 2 and "either --to or --to-deployment" in result.output
    assert (project / "environments/Pulumi.dev.yaml").read_text() == before
