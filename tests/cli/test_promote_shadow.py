"""`promote --require-shadow-verdict`: the shadow verdict of the version's shadow period gates promotion."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from infra.config import load_stack_file
from rollback.cli import app
from rollback.ops.deploy_records import record_deploys
from rollback.ops.stackfile import Release, StackDocument
from rollback.runtime import audit, clock, names
from rollback.runtime.aws import Clients
from rollback.runtime.capture import capture_line, write_capture_file
from tests.cli.conftest import REGION, audit_table, deploy_endpoint, record_drill

runner = CliRunner()
BUCKET = "staging-artifacts"
URI = f"s3://{BUCKET}/data-capture"
PHYSICAL = "fraud-scorer-staging"
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)  # v2 deployed as shadow
T1 = T0 + timedelta(hours=6)  # v2 becomes the canary candidate


@pytest.fixture
def virtual_clock() -> Iterator[clock.VirtualClock]:
    vc = clock.VirtualClock(T0)
    previous = clock.use(vc)
    try:
        yield vc
    finally:
        clock.use(previous)


def _as_shadow(text: str) -> str:
    """The staging stack file with v2 as shadow of v1 (strategy shadow) instead of canary candidate."""
    text = text.replace("        candidate: v2\n", "        shadow: v2\n", 1)
    # an idle candidate would be a second production variant next to the shadow: not allowed there
    text = text.replace("        keepVariantNames: true\n", "", 1)
    return text.replace(
        "        type: canary\n        steps: [10, 25, 50, 100]\n", "        type: shadow\n", 1
    )


def _deploy_history(project: Path, aws: dict[str, Any], vc: clock.VirtualClock) -> None:
    """Deploy records as CI leaves them: v2 as shadow at T0, v2 as canary candidate at T1; now T1 + 1 h."""
    path = project / "environments/Pulumi.staging.yaml"
    canary = path.read_text()
    clients = Clients(dynamodb=aws["dynamodb"])
    path.write_text(_as_shadow(canary))
    record_deploys(clients, load_stack_file(path, "staging"), actor="cli:ci", commit="a" * 40)
    path.write_text(canary)
    vc.advance((T1 - T0).total_seconds())
    record_deploys(clients, load_stack_file(path, "staging"), actor="cli:ci", commit="b" * 40)
    vc.advance(3600)


def _captures(s3: Any, start: datetime, count: int, *, shadow_score: float, name: str) -> None:
    """``count`` paired requests from ``start``, one per minute; production answers 0.5."""
    for variant, score in ((names.STABLE, 0.5), (names.SHADOW, shadow_score)):
        lines = [
            capture_line(
                event_id=f"{variant}-{name}-{i}",
                inference_id=f"{name}-{i}",
                inference_time=start + timedelta(minutes=i),
                input_data={"amount": i},
                output_data={"score": score},
            )
            for i in range(count)
        ]
        write_capture_file(s3, URI, PHYSICAL, variant, start, lines, name)


def _staging_ready_with_drill(aws: dict[str, Any]) -> None:
    audit_table(aws, "staging")
    audit_table(aws, "prod")
    deploy_endpoint(
        aws,
        "staging",
        weights={"stable": 0, "candidate": 100},
        steps=[10, 25, 50, 100],
        progress={"stepIndex": 3, "state": "ready-to-finalize"},
    )
    deploy_endpoint(aws, "prod", weights={"stable": 100}, candidate=None)
    record_drill(aws, Path.cwd(), "staging", "v2")


@pytest.fixture
def staging(project: Path, aws: dict[str, Any], virtual_clock: clock.VirtualClock) -> Any:
    prod = project / "environments/Pulumi.prod.yaml"
    doc = StackDocument.load(prod)
    doc.set_release("fraud-scorer", Release("v1", None))
    prod.write_text(doc.render())
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    _staging_ready_with_drill(aws)
    _deploy_history(project, aws, virtual_clock)
    return s3


def _promote(*extra: str) -> Any:
    args = ["promote", "--from", "staging", "--to", "prod", "--endpoint", "fraud-scorer"]
    return runner.invoke(app, [*args, "--require-shadow-verdict", "--capture-uri", URI, *extra])


def test_promotion_passes_on_a_passing_shadow_verdict_and_records_it(
    project: Path, aws: dict[str, Any], staging: Any
) -> None:
    _captures(staging, T0 + timedelta(minutes=5), 150, shadow_score=0.5, name="agree")
    result = _promote()
    assert result.exit_code == 0, result.output
    doc = StackDocument.load(project / "environments/Pulumi.prod.yaml")
    assert doc.release("fraud-scorer") == Release("v1", "v2")
    items, _ = audit.query(aws["dynamodb"], names.audit_table_name("prod"), "fraud-scorer-prod")
    verdict = items[0]["detail"]["shadowVerdict"]
    assert verdict["verdict"] == "pass" and verdict["pairs"] == 150
    assert verdict["since"] == "2026-03-01T08:00:00.000Z" and verdict["until"] == "2026-03-01T14:00:00.000Z"


def test_a_failing_shadow_verdict_refuses_with_its_reasons_and_changes_nothing(
    project: Path, aws: dict[str, Any], staging: Any
) -> None:
    _captures(staging, T0 + timedelta(minutes=5), 150, shadow_score=0.9, name="disagree")
    prod = project / "environments/Pulumi.prod.yaml"
    before = prod.read_text()
    result = _promote()
    text = " ".join(result.output.split())
    assert result.exit_code == 8, result.output
    assert (
        "shadow verdict of v2 on fraud-scorer-staging (2026-03-01T08:00:00.000Z .. 2026-03-01T14:00:00.000Z)"
        in text
    )
    assert "is fail: agreement 0.0% below the required 95.0%" in text
    assert prod.read_text() == before
    assert audit.query(aws["dynamodb"], names.audit_table_name("prod"), "fraud-scorer-prod")[0] == []


def test_captures_outside_the_shadow_period_are_not_judged(
    project: Path, aws: dict[str, Any], staging: Any
) -> None:
    # After T1 the shadow variant directory holds nothing of v2's: disagreeing answers there must not count.
    _captures(staging, T0 + timedelta(minutes=5), 150, shadow_score=0.5, name="agree")
    _captures(staging, T1 + timedelta(minutes=5), 50, shadow_score=0.9, name="later")
    assert _promote().exit_code == 0


def test_too_few_pairs_is_not_a_pass(project: Path, aws: dict[str, Any], staging: Any) -> None:
    _captures(staging, T0 + timedelta(minutes=5), 20, shadow_score=0.5, name="few")
    result = _promote()
    assert result.exit_code == 8
    assert "is insufficient-data" in " ".join(result.output.split())


def test_a_version_never_recorded_as_shadow_has_no_verdict(
    project: Path, aws: dict[str, Any], staging: Any
) -> None:
    # prod must not serve v1 already: promoting a version the target serves is a no-op without gates
    prod = project / "environments/Pulumi.prod.yaml"
    doc = StackDocument.load(prod)
    doc.set_release("fraud-scorer", Release("v2", None))
    prod.write_text(doc.render())
    result = _promote("--version", "v1")
    text = " ".join(result.output.split())
    assert result.exit_code == 8
    assert "no recorded deploy of v1 as shadow on fraud-scorer-staging" in text
    assert "mlrollback record-deploy --stack staging" in text


def test_a_stale_shadow_period_is_refused(
    project: Path, aws: dict[str, Any], staging: Any, virtual_clock: clock.VirtualClock
) -> None:
    _captures(staging, T0 + timedelta(minutes=5), 150, shadow_score=0.5, name="agree")
    result = _promote("--max-age-hours", "0.5")
    assert result.exit_code == 8
    assert "v2 last served as shadow until 2026-03-01T14:00:00.000Z, more than 0.5 h ago" in " ".join(
        result.output.split()
    )


def test_without_a_capture_location_the_error_names_the_option(
    project: Path, aws: dict[str, Any], staging: Any
) -> None:
    args = ["promote", "--from", "staging", "--to", "prod", "--endpoint", "fraud-scorer"]
    result = runner.invoke(app, [*args, "--require-shadow-verdict"])
    assert result.exit_code == 2
    assert "pass --capture-uri s3://<bucket>/data-capture" in " ".join(result.output.split())


def test_without_the_flag_captures_are_not_read(project: Path, aws: dict[str, Any], staging: Any) -> None:
    _captures(staging, T0 + timedelta(minutes=5), 150, shadow_score=0.9, name="disagree")
    args = ["promote", "--from", "staging", "--to", "prod", "--endpoint", "fraud-scorer", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["version"] == "v2"


def test_the_source_stack_can_require_the_shadow_verdict_and_set_its_thresholds(
    project: Path, aws: dict[str, Any], staging: Any
) -> None:
    path = project / "environments/Pulumi.staging.yaml"
    text = path.read_text()
    assert "  mlrollback:rehearsal:\n" in text
    path.write_text(
        text.replace(
            "  mlrollback:rehearsal:\n",
            "  mlrollback:rehearsal:\n    shadowVerdict: {required: true, minPairs: 200}\n",
            1,
        )
    )
    _captures(staging, T0 + timedelta(minutes=5), 150, shadow_score=0.5, name="agree")
    args = ["promote", "--from", "staging", "--to", "prod", "--endpoint", "fraud-scorer"]
    result = runner.invoke(app, [*args, "--capture-uri", URI])  # no --require-shadow-verdict
    assert result.exit_code == 8, result.output
    assert "shadow verdict of v2" in " ".join(result.output.split())
    assert "insufficient-data" in result.output
