from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from scipy import stats

from rollback.runtime import clock, drift, handler, names
from rollback.runtime.capture import capture_line, write_capture_file
from rollback.runtime.errors import ConfigError
from rollback.runtime.metrics import MetricsPublisher
from tests.verdicts.conftest import BUCKET, CAPTURE_URI

ENDPOINT = "fraud-scorer-dev"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_psi_of_identical_distributions_is_zero() -> None:
    rng = random.Random(1)
    sample = [rng.gauss(0, 1) for _ in range(1000)]
    assert drift.psi(sample, list(sample)) == pytest.approx(0.0, abs=1e-12)


def test_psi_matches_the_formula_on_a_hand_computed_case() -> None:
    # two bins split at the baseline median: baseline 50/50, current 80/20
    baseline = [0.0] * 50 + [1.0] * 50
    current = [0.0] * 80 + [1.0] * 20
    expected = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    assert drift.psi(baseline, current, bins=2) == pytest.approx(expected)


def test_psi_grows_with_the_shift_and_ranks_drift() -> None:
    rng = random.Random(2)
    base = [rng.gauss(0, 1) for _ in range(2000)]
    small = drift.psi(base, [rng.gauss(0.1, 1) for _ in range(2000)])
    large = drift.psi(base, [rng.gauss(1.0, 1) for _ in range(2000)])
    assert small < 0.1 < 0.25 < large


@pytest.mark.parametrize(
    ("shift", "n", "m"), [(0.0, 200, 300), (0.3, 150, 150), (1.0, 80, 120), (0.1, 1000, 700)]
)
def test_ks_matches_scipy(shift: float, n: int, m: int) -> None:
    rng = random.Random(int(shift * 10) + n)
    a = [rng.gauss(0, 1) for _ in range(n)]
    b = [rng.gauss(shift, 1) for _ in range(m)]
    d, p = drift.ks_2samp(a, b)
    ref = stats.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(ref.statistic, abs=1e-12)
    assert p == pytest.approx(ref.pvalue, abs=0.02)


def test_ks_handles_ties() -> None:
    a = [1, 1, 2, 2, 3, 3]
    b = [1, 2, 2, 2, 3, 4, 4]
    assert drift.ks_2samp(a, b)[0] == pytest.approx(stats.ks_2samp(a, b).statistic)


def test_feature_rows_from_csv_json_objects_and_batches() -> None:
    assert drift.rows_from_value([1.0, 2.0, "x"]) == [{"f0": 1.0, "f1": 2.0}]
    assert drift.rows_from_value({"amount": 3, "country": "FR", "flag": True}) == [{"amount": 3.0}]
    assert drift.rows_from_value({"instances": [[1, 2], [3, 4]]}, names=["a", "b"]) == [
        {"a": 1.0, "b": 2.0},
        {"a": 3.0, "b": 4.0},
    ]


def _write_inputs(s3: Any, variant: str, values: list[list[float]], content_type: str = "text/csv") -> None:
    lines = []
    for i, row in enumerate(values):
        data = ",".join(str(v) for v in row) if content_type == "text/csv" else row
        lines.append(
            capture_line(
                event_id=f"{variant}-{i}",
                inference_time=NOW - timedelta(minutes=30, seconds=-i),
                input_data=data,
                input_content_type=content_type,
                output_data="0.5",
                output_content_type="text/csv",
            )
        )
    write_capture_file(s3, CAPTURE_URI, ENDPOINT, variant, NOW - timedelta(minutes=30), lines, variant)


@pytest.fixture
def virtual_now() -> Iterator[None]:
    previous = clock.use(clock.VirtualClock(NOW))
    yield
    clock.use(previous)


def test_scheduled_job_publishes_max_psi_from_a_training_baseline(
    s3: Any, cloudwatch: Any, monkeypatch: pytest.MonkeyPatch, virtual_now: None
) -> None:
    rng = random.Random(5)
    header = "label,amount,age\n"
    rows = "".join(
        f"{rng.randint(0, 1)},{rng.gauss(100, 10):.3f},{rng.gauss(40, 5):.3f}\n" for _ in range(500)
    )
    s3.put_object(Bucket=BUCKET, Key="baselines/fraud.csv", Body=(header + rows).encode())
    # the candidate sees much larger amounts, same ages
    _write_inputs(s3, "candidate", [[rng.gauss(130, 10), rng.gauss(40, 5)] for _ in range(300)])
    job = {
        "endpoint": ENDPOINT,
        "captureUri": CAPTURE_URI,
        "baselineUri": f"s3://{BUCKET}/baselines/fraud.csv",
        "baselineSkipColumns": 1,
        "maxScore": 0.2,
        "minSamples": 200,
    }
    monkeypatch.setenv(drift.ENV_DRIFT_JOBS, json.dumps([job]))

    result = handler.on_drift({"source": "aws.events"}, None)

    (report,) = result["jobs"]
    assert report["status"] == "drift" and report["score_feature"] == "amount" and report["published"]
    by_name = {f["feature"]: f for f in report["features"]}
    assert by_name["amount"]["psi"] > 1 and by_name["age"]["psi"] < 0.1
    assert by_name["amount"]["ks_p_value"] < 1e-6 and by_name["age"]["ks_p_value"] > 0.01
    published = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "d",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "MLRollback/Endpoints",
                        "MetricName": "DriftScore",
                        "Dimensions": [
                            {"Name": "EndpointName", "Value": ENDPOINT},
                            {"Name": "VariantName", "Value": "candidate"},
                        ],
                    },
                    "Period": 60,
                    "Stat": "Maximum",
                },
            }
        ],
        StartTime=NOW - timedelta(minutes=5),
        EndTime=NOW + timedelta(minutes=5),
    )
    assert published["MetricDataResults"][0]["Values"] == [pytest.approx(report["score"])]


def test_stable_captures_as_baseline_and_no_drift(s3: Any, cloudwatch: Any) -> None:
    rng = random.Random(6)
    _write_inputs(s3, "stable", [[rng.gauss(0, 1)] for _ in range(1000)], content_type="application/json")
    _write_inputs(s3, "candidate", [[rng.gauss(0, 1)] for _ in range(1000)], content_type="application/json")
    job = drift.DriftJob(endpoint=ENDPOINT, capture_uri=CAPTURE_URI, max_score=0.2)

    report = drift.run_drift_job(job, s3=s3, publisher=MetricsPublisher(cloudwatch), now=NOW)

    assert report.status == "ok" and report.score is not None and report.score < 0.1 and report.published
    assert report.noise_floor == pytest.approx(9 * 2 / 1000)


def test_too_few_samples_publish_nothing(s3: Any, cloudwatch: Any) -> None:
    _write_inputs(s3, "stable", [[1.0]] * 200)
    _write_inputs(s3, "candidate", [[5.0]] * 10)
    publisher = MetricsPublisher(cloudwatch)
    job = drift.DriftJob(endpoint=ENDPOINT, capture_uri=CAPTURE_URI, min_samples=50)  # 10 < 50

    report = drift.run_drift_job(job, s3=s3, publisher=publisher, now=NOW)

    assert report.status == "insufficient-data" and not report.published
    assert publisher.stats.calls == 0 and "missing data is not drift" in report.message


def test_bad_job_configuration_names_the_key() -> None:
    with pytest.raises(
        ConfigError, match=r"MLROLLBACK_DRIFT_JOBS\[0\]: drift job key 'captureUri' is required"
    ):
        drift.load_jobs({drift.ENV_DRIFT_JOBS: json.dumps([{"endpoint": "e"}])})
    with pytest.raises(ConfigError, match="unknown drift job key"):
        drift.load_jobs(
            {drift.ENV_DRIFT_JOBS: json.dumps([{"endpoint": "e", "captureUri": "s3://b/p", "x": 1}])}
        )
    with pytest.raises(ConfigError, match="window_minutes must be a positive integer"):
        drift.load_jobs(
            {
                drift.ENV_DRIFT_JOBS: json.dumps(
                    [{"endpoint": "e", "captureUri": "s3://b/p", "windowMinutes": 0}]
                )
            }
        )
    with pytest.raises(ConfigError, match=r"neither MLROLLBACK_DRIFT_PREFIX .* nor MLROLLBACK_DRIFT_JOBS"):
        drift.load_jobs({})


def test_one_failing_job_does_not_stop_the_others(
    s3: Any, cloudwatch: Any, monkeypatch: pytest.MonkeyPatch, virtual_now: None
) -> None:
    rng = random.Random(8)
    _write_inputs(s3, "stable", [[rng.gauss(0, 1)] for _ in range(200)])
    _write_inputs(s3, "candidate", [[rng.gauss(0, 1)] for _ in range(200)])
    jobs = [
        {"endpoint": ENDPOINT, "captureUri": CAPTURE_URI, "baselineUri": f"s3://{BUCKET}/missing.csv"},
        {"endpoint": ENDPOINT, "captureUri": CAPTURE_URI, "minSamples": 100},
    ]
    monkeypatch.setenv(drift.ENV_DRIFT_JOBS, json.dumps(jobs))

    result = handler.on_drift({}, None)

    assert [j["status"] for j in result["jobs"]] == ["error", "ok"]
    assert "NoSuchKey" in result["jobs"][0]["message"]


# --- jobs from SSM parameters (what the stack deploys) -------------------------------------------

PREFIX = "/mlrollback/dev/drift"


def _job(endpoint: str, **extra: Any) -> dict[str, Any]:
    return {"endpoint": endpoint, "captureUri": CAPTURE_URI, "minSamples": 100, **extra}


@pytest.fixture
def ssm(aws: None) -> Any:
    return boto3.client("ssm", region_name="eu-west-1")


def _put_job(ssm: Any, endpoint: str, value: Any) -> None:
    text = value if isinstance(value, str) else json.dumps(value)
    ssm.put_parameter(Name=names.drift_job_parameter("dev", endpoint), Value=text, Type="String")


def test_deployed_jobs_are_read_from_every_page_of_the_prefix_and_not_from_below_it(ssm: Any) -> None:
    for i in range(23):  # GetParametersByPath returns at most 10 per page
        _put_job(ssm, f"model-{i:02d}-dev", _job(f"model-{i:02d}-dev"))
    ssm.put_parameter(Name=f"{PREFIX}/model-00-dev/notes", Value="{}", Type="String")  # not a job
    ssm.put_parameter(Name="/mlrollback/dev/rollout/model-00-dev/plan", Value="{}", Type="String")

    loaded = drift.load_jobs({names.ENV_DRIFT_PREFIX: PREFIX}, ssm)

    assert [j.endpoint for j in loaded.jobs] == [f"model-{i:02d}-dev" for i in range(23)]
    assert loaded.invalid == [] and loaded.source == f"SSM path {PREFIX}"
    assert names.drift_prefix("dev") == PREFIX
    assert names.drift_job_parameter("dev", "a-dev") == f"{PREFIX}/a-dev"


def test_an_invalid_job_parameter_is_reported_and_the_other_jobs_still_run(
    s3: Any, cloudwatch: Any, ssm: Any, monkeypatch: pytest.MonkeyPatch, virtual_now: None
) -> None:
    rng = random.Random(9)
    _write_inputs(s3, "stable", [[rng.gauss(0, 1)] for _ in range(200)])
    _write_inputs(s3, "candidate", [[rng.gauss(0, 1)] for _ in range(200)])
    _put_job(ssm, ENDPOINT, _job(ENDPOINT))
    _put_job(ssm, "broken-json-dev", "{not json")
    _put_job(ssm, "missing-key-dev", {"endpoint": "missing-key-dev"})
    _put_job(ssm, "copied-dev", _job(ENDPOINT))  # a copy naming another endpoint
    monkeypatch.delenv(drift.ENV_DRIFT_JOBS, raising=False)
    monkeypatch.setenv(names.ENV_DRIFT_PREFIX, PREFIX)

    result = handler.on_drift({"source": "aws.events"}, None)

    by_endpoint = {j["endpoint"]: j for j in result["jobs"]}
    assert by_endpoint[ENDPOINT]["status"] == "ok" and by_endpoint[ENDPOINT]["published"]
    assert {e: j["status"] for e, j in by_endpoint.items() if e != ENDPOINT} == {
        "broken-json-dev": "error",
        "missing-key-dev": "error",
        "copied-dev": "error",
    }
    assert (
        f"{PREFIX}/broken-json-dev: SSM parameter {PREFIX}/broken-json-dev: not valid JSON"
        in (by_endpoint["broken-json-dev"]["message"])
    )
    assert "drift job key 'captureUri' is required" in by_endpoint["missing-key-dev"]["message"]
    assert (
        f"names endpoint {ENDPOINT!r} but the parameter is for 'copied-dev'"
        in (by_endpoint["copied-dev"]["message"])
    )


def test_explicit_jobs_win_over_the_deployed_prefix(ssm: Any) -> None:
    _put_job(ssm, "deployed-dev", _job("deployed-dev"))
    env = {names.ENV_DRIFT_PREFIX: PREFIX, drift.ENV_DRIFT_JOBS: json.dumps([_job("hand-run-dev")])}

    loaded = drift.load_jobs(env, ssm)

    assert [j.endpoint for j in loaded.jobs] == ["hand-run-dev"]
    assert loaded.source == drift.ENV_DRIFT_JOBS


def test_a_prefix_without_any_job_is_a_deployment_error_not_a_silent_empty_run(ssm: Any) -> None:
    with pytest.raises(ConfigError, match=f"no drift job parameter under {PREFIX}.*run `pulumi up`"):
        drift.load_jobs({names.ENV_DRIFT_PREFIX: PREFIX}, ssm)


def test_drift_and_capture_stay_on_the_lambda_import_path() -> None:
    import subprocess
    import sys

    code = (
        "import sys, rollback.runtime.drift, rollback.runtime.capture, rollback.runtime.metrics\n"
        "import rollback.client\n"
        "import rollback.verdicts.shadow\n"
        "heavy = ('scipy', 'numpy', 'typer', 'rich', 'pulumi', 'moto')\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in heavy]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
