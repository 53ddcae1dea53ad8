from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

import rollback.cli  # noqa: F401  (registers every command module)
from rollback.cli.app import app
from rollback.runtime.capture import capture_line, write_capture_file
from tests.verdicts.conftest import BUCKET, CAPTURE_URI

STACK_FILE = """\
config:
  aws:region: eu-west-1
  mlrollback:environment: test
  mlrollback:artifacts:
    create: {create}
{bucket}  mlrollback:endpoints:
    - name: fraud-scorer
      instanceType: ml.m5.large
      versions:
        v1:
          image: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/fraud:1.0
          modelDataUrl: s3://models/fraud/v1/model.tar.gz
        v2:
          image: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/fraud:2.0
          modelDataUrl: s3://models/fraud/v2/model.tar.gz
      release:
        stable: v1
        shadow: v2
      strategy:
        type: shadow
        shadowPercent: 100
      triggers:
        drift: {{maxScore: 0.2, action: notify, minSamples: 100, windowMinutes: 60}}
"""
UNTIL = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PHYSICAL = "fraud-scorer-test"


def _project(tmp_path: Path, *, own_bucket: bool = True) -> Path:
    (tmp_path / "Pulumi.yaml").write_text("name: mlrollback\nruntime: python\nmain: infra/\n")
    (tmp_path / "environments").mkdir()
    bucket = f"    bucket: {BUCKET}\n" if own_bucket else ""
    text = STACK_FILE.format(create="false" if own_bucket else "true", bucket=bucket)
    (tmp_path / "environments" / "Pulumi.test.yaml").write_text(text)
    return tmp_path


def _shadow_captures(s3: Any, n: int, disagree_every: int = 0) -> None:
    rng = random.Random(4)
    prod, shadow = [], []
    for i in range(n):
        at = UNTIL - timedelta(minutes=50) + timedelta(seconds=i)
        score = round(rng.random(), 4)
        other = 1 - score if disagree_every and i % disagree_every == 0 else score
        common = {"event_id": f"e{i}", "inference_id": f"r{i}", "inference_time": at, "input_data": [score]}
        prod.append(capture_line(**common, output_data={"score": score}))
        shadow.append(capture_line(**common, output_data={"score": other}))
    write_capture_file(s3, CAPTURE_URI, PHYSICAL, "stable", UNTIL - timedelta(minutes=50), prod, "p")
    write_capture_file(s3, CAPTURE_URI, PHYSICAL, "shadow", UNTIL - timedelta(minutes=50), shadow, "s")


def _run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_shadow_report_json_and_check_pass(s3: Any, tmp_path: Path) -> None:
    _shadow_captures(s3, 150)
    root = _project(tmp_path)
    result = _run(
        "shadow-report", "--stack", "test", "--endpoint", "fraud-scorer", "--project-dir", str(root),
        "--since", "1h", "--until", UNTIL.isoformat(), "--json", "--check",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["verdict"] == "pass" and data["pairs"] == 150 and data["endpoint"] == PHYSICAL


def test_shadow_report_check_fails_with_the_gate_exit_code(s3: Any, tmp_path: Path) -> None:
    _shadow_captures(s3, 150, disagree_every=3)
    root = _project(tmp_path)
    result = _run(
        "shadow-report", "-s", "test", "-e", "fraud-scorer", "--project-dir", str(root),
        "--since", "1h", "--until", UNTIL.isoformat(), "--check",
    )  # fmt: skip
    assert result.exit_code == 8
    assert "fail" in result.output and "agreement" in result.output


def test_bad_since_names_the_option(s3: Any, tmp_path: Path) -> None:
    root = _project(tmp_path)
    result = _run(
        "shadow-report", "-s", "test", "-e", "fraud-scorer", "--project-dir", str(root), "--since", "yday"
    )
    assert result.exit_code == 2 and "--since 'yday'" in result.output


def test_created_bucket_needs_an_explicit_capture_uri(s3: Any, tmp_path: Path) -> None:
    root = _project(tmp_path, own_bucket=False)
    result = _run("drift-report", "-s", "test", "-e", "fraud-scorer", "--project-dir", str(root))
    assert result.exit_code == 2 and "--capture-uri" in result.output


def test_ab_report_says_not_enough_data_yet(cloudwatch: Any, tmp_path: Path) -> None:
    root = _project(tmp_path)
    result = _run(
        "ab-report", "-s", "test", "-e", "fraud-scorer", "--project-dir", str(root),
        "--metric", "Conversions", "--json", "--since", "1h", "--until", UNTIL.isoformat(),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["verdict"] == "not-enough-data" and data["control"]["n"] == 0


def _drifted_captures(s3: Any) -> None:
    rng = random.Random(9)
    now = datetime.now(UTC)
    for variant, mean in (("stable", 0.0), ("candidate", 2.0)):
        lines = [
            capture_line(
                event_id=f"{variant}{i}",
                inference_time=now - timedelta(minutes=5),
                input_data=[rng.gauss(mean, 1)],
            )
            for i in range(120)
        ]
        write_capture_file(s3, CAPTURE_URI, PHYSICAL, variant, now - timedelta(minutes=5), lines, variant)


def test_drift_report_runs_the_stacks_own_job(s3: Any, tmp_path: Path) -> None:
    _drifted_captures(s3)
    root = _project(tmp_path)
    result = _run("drift-report", "-s", "test", "-e", "fraud-scorer", "--project-dir", str(root), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # minSamples 100 and maxScore 0.2 come from the stack's triggers.drift, as the scheduled job's do.
    assert data["status"] == "drift" and data["max_score"] == 0.2 and data["score"] > 1


def test_drift_report_options_override_the_stacks_job(s3: Any, tmp_path: Path) -> None:
    _drifted_captures(s3)
    root = _project(tmp_path)
    result = _run(
        "drift-report", "-s", "test", "-e", "fraud-scorer", "--project-dir", str(root),
        "--min-samples", "1000", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "insufficient-data"
