"""The deployed drift function finds its jobs: the real program applied to the emulator, then invoked.

This is the path a real account takes: ``pulumi up`` writes one SSM parameter per drifting endpoint
and sets ``MLROLLBACK_DRIFT_PREFIX`` on the function; the scheduled invocation lists the parameters
with the function's own environment. No ``MLROLLBACK_DRIFT_JOBS`` anywhere.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from infra.runtime_records import capture_uri
from rollback.runtime import names
from rollback.runtime.capture import capture_line, write_capture_file
from rollback.runtime.drift import ENV_DRIFT_JOBS
from rollback.sandbox.emulator import Emulator
from rollback.sandbox.eventbus import EventBus, scheduled_event
from rollback.sandbox.runner import apply_program
from tests.infra.helpers import config_map, endpoint_values, stack_values

REGION = "eu-west-1"


@pytest.fixture
def emulator():
    with Emulator(REGION) as emu:
        yield emu


def _drifting(name: str) -> dict:
    ep = endpoint_values(name)
    ep["triggers"]["drift"] = {"maxScore": 0.2, "minSamples": 100, "action": "notify"}
    return ep


def _captures(emu: Emulator, bucket: str, endpoint: str, variant: str, now: datetime, shift: float) -> None:
    rng = random.Random(f"{endpoint}-{variant}")
    at = now - timedelta(minutes=20)
    lines = [
        capture_line(
            event_id=f"{variant}-{i}",
            inference_time=at + timedelta(seconds=i),
            input_data=f"{rng.gauss(shift, 1):.4f}",
            input_content_type="text/csv",
            output_data="0.5",
            output_content_type="text/csv",
        )
        for i in range(300)
    ]
    write_capture_file(emu.client("s3"), capture_uri(bucket), endpoint, variant, at, lines, variant)


def test_deployed_drift_function_reads_its_jobs_from_ssm_and_scores_each_endpoint(
    emulator: Emulator, tmp_path: Path
) -> None:
    values = stack_values(_drifting("fraud"), endpoint_values("plain"), _drifting("churn"))
    apply_program(emulator, stack="dev", config=config_map(values), state_path=tmp_path / "state.json")
    lam = emulator.client("lambda")
    function = lam.get_function_configuration(FunctionName=names.drift_function_name("dev"))
    variables = function["Environment"]["Variables"]
    assert variables[names.ENV_DRIFT_PREFIX] == names.drift_prefix("dev")
    assert ENV_DRIFT_JOBS not in variables
    stored = emulator.client("ssm").get_parameters_by_path(Path=names.drift_prefix("dev"))["Parameters"]
    assert sorted(p["Name"] for p in stored) == [
        names.drift_job_parameter("dev", "churn-dev"),
        names.drift_job_parameter("dev", "fraud-dev"),
    ]
    # Data for fraud only: its candidate drifted; churn has no captures (missing data is not drift).
    now = datetime.now(UTC)
    buckets = [b["Name"] for b in emulator.client("s3").list_buckets()["Buckets"] if "artifacts" in b["Name"]]
    (bucket,) = buckets
    _captures(emulator, bucket, "fraud-dev", "stable", now, 0.0)
    _captures(emulator, bucket, "fraud-dev", "candidate", now, 2.0)
    bus = EventBus(emulator, lambda: now)

    invocation = bus.invoke(function["FunctionArn"], scheduled_event("arn:rule", now, REGION))

    assert invocation.ok, invocation.error
    assert invocation.result["source"] == f"SSM path {names.drift_prefix('dev')}"
    reports = {j["endpoint"]: j for j in invocation.result["jobs"]}
    assert sorted(reports) == ["churn-dev", "fraud-dev"]
    assert reports["churn-dev"]["status"] == "insufficient-data"
    assert reports["fraud-dev"]["status"] == "drift" and reports["fraud-dev"]["published"]
    # Two jobs fit one page; the function never reads a parameter one by one.
    assert [c for c in invocation.calls if c.startswith("ssm:")] == ["ssm:GetParametersByPath"]
