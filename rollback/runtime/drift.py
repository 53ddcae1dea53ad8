"""Input drift of a candidate: PSI and Kolmogorov-Smirnov per numeric feature, as a custom metric.

A scheduled Lambda (:func:`rollback.runtime.handler.on_drift` -> :func:`run_drift_schedule`)
compares, per endpoint, the candidate's recently captured inputs with a baseline — a training
sample in S3 (CSV or JSON lines) or the stable
variant's captured inputs over a longer window — and publishes ``DriftScore`` (namespace
``MLRollback/Endpoints``, dimensions EndpointName/VariantName, unit None, 1-second resolution).
**DriftScore is the maximum PSI across features**: one drifting feature is enough to matter, and
PSI has stable rule-of-thumb thresholds (< 0.1 stable, 0.1-0.25 moderate, > 0.25 major) that a
single alarm threshold (``triggers.drift.maxScore``) can use. KS is reported beside it.

Statistics (hand-written: this module runs in Lambda, standard library + boto3 only):

- **PSI** = sum over bins of (c - b) * ln(c / b), with b, c the baseline and current shares of each
  bin. Bins are baseline deciles (``bins`` quantile cut points, duplicates removed), open-ended at
  both sides so every current value lands in a bin; empty shares are floored at ``1e-4`` so the
  log stays finite. Identical distributions give 0.
- **KS**: D = sup |F_baseline(x) - F_current(x)| over the pooled sample; two-sided asymptotic
  p-value from the Kolmogorov distribution, Q(l) = 2 sum_{k>=1} (-1)^(k-1) exp(-2 k^2 l^2) with
  l = (sqrt(e) + 0.12 + 0.11 / sqrt(e)) D and e = n m / (n + m) (Stephens' small-sample
  correction, as in Numerical Recipes). Good for n, m of a few dozen and up; ties are handled by
  stepping both empirical CDFs past equal values together.

Sample noise: two samples of the *same* distribution still have PSI about (bins - 1)(1/n + 1/m)
on average (0.18 for 100 vs 100 inputs in 10 bins, 0.036 for 500 vs 500), so ``minSamples``
defaults to 500 and every report carries that ``noise_floor`` next to the score; keep ``maxScore``
well above it.

Missing data is not drift: fewer than ``minSamples`` current inputs publish nothing (the alarm
treats missing data as not breaching) and report ``insufficient-data``.

Jobs: one SSM String parameter per drifting endpoint under ``MLROLLBACK_DRIFT_PREFIX`` (written by
``pulumi up``; any number of endpoints), or an explicit JSON list in ``MLROLLBACK_DRIFT_JOBS``,
which wins when set (hand-runs, tests).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from rollback.runtime import clock
from rollback.runtime.capture import iter_values, parse_s3_uri, read_captures
from rollback.runtime.errors import ConfigError, DataError, MLRollbackError
from rollback.runtime.metrics import DRIFT_SCORE, MetricsPublisher
from rollback.runtime.names import CANDIDATE, ENV_DRIFT_PREFIX, STABLE

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

log = logging.getLogger(__name__)

#: Optional explicit jobs (JSON list, see :class:`DriftJob.from_dict`) for a hand-run or a test; when
#: set it wins over the deployed jobs under ``MLROLLBACK_DRIFT_PREFIX`` (``names.ENV_DRIFT_PREFIX``).
ENV_DRIFT_JOBS: Final = "MLROLLBACK_DRIFT_JOBS"

PSI_FLOOR: Final = 1e-4
OK: Final = "ok"
DRIFT: Final = "drift"
INSUFFICIENT: Final = "insufficient-data"
ERROR: Final = "error"


# -- statistics ------------------------------------------------------------------------------------


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of an already sorted sequence."""
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def psi(baseline: Sequence[float], current: Sequence[float], bins: int = 10) -> float:
    """Population stability index of ``current`` against ``baseline`` (baseline-quantile bins)."""
    if not baseline or not current:
        raise ValueError("PSI needs non-empty baseline and current samples")
    if bins < 2:
        raise ValueError(f"PSI needs at least 2 bins, got {bins}")
    ordered = sorted(baseline)
    cuts = sorted({_quantile(ordered, i / bins) for i in range(1, bins)})
    base_counts = [0] * (len(cuts) + 1)
    cur_counts = [0] * (len(cuts) + 1)
    for x in baseline:
        base_counts[bisect_right(cuts, x)] += 1
    for x in current:
        cur_counts[bisect_right(cuts, x)] += 1
    total = 0.0
    for b, c in zip(base_counts, cur_counts, strict=True):
        pb = max(b / len(baseline), PSI_FLOOR)
        pc = max(c / len(current), PSI_FLOOR)
        total += (pc - pb) * math.log(pc / pb)
    return total


def kolmogorov_sf(lam: float) -> float:
    """P(K > lam) for the Kolmogorov distribution (the asymptotic KS null distribution)."""
    if lam < 0.2:
        return 1.0  # the series converges slowly here, and the value is 1 to 1e-7
    total = 0.0
    for k in range(1, 101):
        term = math.exp(-2.0 * k * k * lam * lam)
        total += term if k % 2 else -term
        if term < 1e-12:
            break
    return min(1.0, max(0.0, 2.0 * total))


def ks_2samp(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic D and its asymptotic two-sided p-value."""
    if not a or not b:
        raise ValueError("KS needs two non-empty samples")
    xs, ys = sorted(a), sorted(b)
    n, m = len(xs), len(ys)
    i = j = 0
    d = 0.0
    while i < n and j < m:
        value = min(xs[i], ys[j])
        while i < n and xs[i] == value:
            i += 1
        while j < m and ys[j] == value:
            j += 1
        d = max(d, abs(i / n - j / m))
    en = n * m / (n + m)
    lam = (math.sqrt(en) + 0.12 + 0.11 / math.sqrt(en)) * d
    return d, kolmogorov_sf(lam)


# -- features --------------------------------------------------------------------------------------


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def rows_from_value(value: Any, names: Sequence[str] | None = None) -> list[dict[str, float]]:
    """Numeric feature rows of one request payload.

    A CSV row or a JSON list of numbers is one row with features ``f0, f1, ...`` (or ``names`` by
    position); a JSON object of scalars is one row keyed by name; a list of rows, or an object with
    ``instances``/``inputs``/``features``/``data``, gives several rows. Non-numeric cells are ignored.
    """
    if isinstance(value, dict):
        for key in ("instances", "inputs", "features", "data"):
            if key in value and isinstance(value[key], list):
                return rows_from_value(value[key], names)
        return [{str(k): float(v) for k, v in value.items() if _is_number(v)}]
    if isinstance(value, list):
        if value and all(isinstance(v, (list, dict)) for v in value):
            return [row for v in value for row in rows_from_value(v, names)]
        return [
            {
                (names[i] if names and i < len(names) else f"f{i}"): float(v)
                for i, v in enumerate(value)
                if _is_number(v)
            }
        ]
    return []


def columns(rows: Iterable[Mapping[str, float]]) -> dict[str, list[float]]:
    """Rows to per-feature value lists."""
    out: dict[str, list[float]] = {}
    for row in rows:
        for name, v in row.items():
            out.setdefault(name, []).append(v)
    return out


def _is_header(row: Sequence[str]) -> bool:
    def numeric(cell: str) -> bool:
        try:
            float(cell)
        except ValueError:
            return False
        return True

    return any(cell.strip() and not numeric(cell) for cell in row)


def load_baseline(
    s3: S3Client, uri: str, *, skip_columns: int = 0
) -> tuple[list[dict[str, float]], list[str] | None]:
    """Rows of a training sample in S3 and its CSV header (if any).

    ``.csv`` (with or without a header row; ``skip_columns`` drops leading columns such as a
    label-first XGBoost layout), or JSON lines (``.jsonl``/``.json``, one object or list per line).
    """
    bucket, key = parse_s3_uri(uri)
    try:
        text = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{uri}: baseline is not UTF-8 text; use CSV or JSON lines") from None
    if key.endswith(".csv"):
        reader = [r for r in csv.reader(io.StringIO(text)) if r]
        if not reader:
            raise DataError(f"{uri}: the baseline CSV is empty")
        names = None
        if _is_header(reader[0]):
            names = [c.strip() for c in reader[0]][skip_columns:]
            reader = reader[1:]
        rows = []
        for row in reader:
            cells: list[Any] = []
            for c in row[skip_columns:]:
                try:
                    cells.append(float(c))
                except ValueError:
                    cells.append(c)
            rows.extend(rows_from_value(cells, names))
        return rows, names
    if key.endswith((".jsonl", ".json")):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.extend(rows_from_value(json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DataError(f"{uri}:{number}: not JSON ({exc.msg}); baselines are JSON lines") from None
        return rows, None
    raise DataError(f"{uri}: unknown baseline format; use a .csv, .jsonl or .json (JSON lines) object")


# -- the job ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    psi: float
    ks_statistic: float
    ks_p_value: float
    baseline_n: int
    current_n: int


@dataclass
class DriftReport:
    """Result of one drift computation; ``score`` is the max PSI across features."""

    endpoint: str
    variant: str
    baseline: str
    status: str
    score: float | None = None
    score_feature: str | None = None
    max_score: float | None = None
    current_samples: int = 0
    features: list[FeatureDrift] = field(default_factory=list)
    published: bool = False
    message: str = ""
    noise_floor: float | None = None  # expected PSI with no drift at these sample sizes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compute_drift(
    baseline_rows: Sequence[Mapping[str, float]],
    current_rows: Sequence[Mapping[str, float]],
    *,
    bins: int = 10,
    min_samples: int = 2,
) -> list[FeatureDrift]:
    """PSI and KS for every numeric feature present in both samples with enough values."""
    base, cur = columns(baseline_rows), columns(current_rows)
    out = []
    for name in sorted(base.keys() & cur.keys()):
        b, c = base[name], cur[name]
        if len(b) < min_samples or len(c) < min_samples:
            continue
        d, p = ks_2samp(b, c)
        out.append(FeatureDrift(name, psi(b, c, bins), d, p, len(b), len(c)))
    return out


@dataclass(frozen=True)
class DriftJob:
    """One endpoint's drift job, as the program writes it to ``names.drift_job_parameter`` (JSON)."""

    endpoint: str  # physical endpoint name
    capture_uri: str  # the endpoint config's DestinationS3Uri
    variant: str = CANDIDATE
    baseline_uri: str | None = None  # training sample; None: the baseline variant's captures
    baseline_variant: str = STABLE
    window_minutes: int = 60
    baseline_window_minutes: int = 24 * 60
    min_samples: int = 500
    bins: int = 10
    max_score: float | None = None
    baseline_skip_columns: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = ENV_DRIFT_JOBS) -> DriftJob:
        """Validate one camelCase job object; :class:`ConfigError` names the key and the fix."""
        keys = {
            "endpoint": "endpoint",
            "captureUri": "capture_uri",
            "variant": "variant",
            "baselineUri": "baseline_uri",
            "baselineVariant": "baseline_variant",
            "windowMinutes": "window_minutes",
            "baselineWindowMinutes": "baseline_window_minutes",
            "minSamples": "min_samples",
            "bins": "bins",
            "maxScore": "max_score",
            "baselineSkipColumns": "baseline_skip_columns",
        }
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: each drift job must be a JSON object, got {data!r:.60}")
        unknown = set(data) - set(keys)
        if unknown:
            raise ConfigError(f"{where}: unknown drift job key(s) {sorted(unknown)}; expected {sorted(keys)}")
        for required in ("endpoint", "captureUri"):
            if not data.get(required):
                raise ConfigError(f"{where}: drift job key {required!r} is required")
        job = cls(**{keys[k]: v for k, v in data.items()})
        for name in ("window_minutes", "baseline_window_minutes", "min_samples", "bins"):
            value = getattr(job, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(
                    f"{where}: drift job {job.endpoint}: {name} must be a positive integer, got {value!r}"
                )
        if job.bins < 2:
            raise ConfigError(f"{where}: drift job {job.endpoint}: bins must be at least 2")
        parse_s3_uri(job.capture_uri)
        if job.baseline_uri:
            parse_s3_uri(job.baseline_uri)
        return job


def run_drift_job(
    job: DriftJob, *, s3: S3Client, publisher: MetricsPublisher | None, now: datetime
) -> DriftReport:
    """Compute drift for one job at ``now`` and publish DriftScore (when enough samples)."""
    since = now - timedelta(minutes=job.window_minutes)
    current = read_captures(s3, job.capture_uri, job.endpoint, job.variant, since, now, max_records=50_000)
    names: list[str] | None = None
    if job.baseline_uri:
        baseline_rows, names = load_baseline(s3, job.baseline_uri, skip_columns=job.baseline_skip_columns)
        baseline_desc = job.baseline_uri
    else:
        b_since = now - timedelta(minutes=job.baseline_window_minutes)
        base_records = read_captures(
            s3, job.capture_uri, job.endpoint, job.baseline_variant, b_since, now, max_records=50_000
        )
        baseline_rows = [row for v in iter_values(base_records) for row in rows_from_value(v)]
        baseline_desc = f"variant {job.baseline_variant} captures, last {job.baseline_window_minutes} min"
    current_rows = [row for v in iter_values(current) for row in rows_from_value(v, names)]
    report = DriftReport(
        job.endpoint,
        job.variant,
        baseline_desc,
        INSUFFICIENT,
        max_score=job.max_score,
        current_samples=len(current_rows),
    )
    if len(current_rows) < job.min_samples or len(baseline_rows) < job.min_samples:
        report.message = (
            f"{len(current_rows)} current and {len(baseline_rows)} baseline rows; "
            f"need {job.min_samples} of each (nothing published: missing data is not drift)"
        )
        return report
    report.features = compute_drift(baseline_rows, current_rows, bins=job.bins)
    if not report.features:
        report.message = "no numeric feature is present in both the baseline and the current inputs"
        return report
    top = max(report.features, key=lambda f: f.psi)
    report.score, report.score_feature = top.psi, top.feature
    report.noise_floor = (job.bins - 1) * (1 / top.baseline_n + 1 / top.current_n)
    report.status = DRIFT if job.max_score is not None and top.psi > job.max_score else OK
    report.message = f"max PSI {top.psi:.4f} on feature {top.feature} over {len(current_rows)} inputs"
    if publisher is not None:
        publisher.record_value(job.endpoint, job.variant, DRIFT_SCORE, top.psi, "None", at=now)
        stats = publisher.flush()
        report.published = stats.datums_failed == 0
    return report


@dataclass(frozen=True)
class InvalidJob:
    """A drift job parameter that failed validation: reported and logged, never run."""

    source: str  # the SSM parameter name
    endpoint: str  # the physical endpoint the parameter is named after
    message: str

    def report(self) -> DriftReport:
        """The job's line in the schedule's result, so a broken record is visible next to the others."""
        return DriftReport(self.endpoint, CANDIDATE, "", ERROR, message=f"{self.source}: {self.message}")


@dataclass(frozen=True)
class LoadedJobs:
    """The jobs to run, the parameters that were invalid, and where they came from (for the log)."""

    jobs: list[DriftJob]
    invalid: list[InvalidJob] = field(default_factory=list)
    source: str = ""


def jobs_from_json(raw: str, where: str = ENV_DRIFT_JOBS) -> list[DriftJob]:
    """Jobs from a JSON list (``MLROLLBACK_DRIFT_JOBS``); strict: any bad job raises ConfigError.

    Explicit jobs are typed by a person (a hand-run, a test), so a mistake fails loudly at once.
    """
    try:
        items = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where} is not valid JSON ({exc.msg})") from None
    if not isinstance(items, list):
        raise ConfigError(f"{where} must be a JSON list of drift jobs")
    return [DriftJob.from_dict(item, f"{where}[{i}]") for i, item in enumerate(items)]


def _job_from_parameter(name: str, value: str) -> DriftJob:
    where = f"SSM parameter {name}"
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not valid JSON ({exc.msg}); redeploy with `pulumi up`") from None
    job = DriftJob.from_dict(data, where)
    expected = name.rsplit("/", 1)[-1]
    if job.endpoint != expected:
        # A copied or hand-edited record would otherwise score one endpoint twice and another never.
        raise ConfigError(
            f"{where}: the job names endpoint {job.endpoint!r} but the parameter is for {expected!r}; "
            "redeploy with `pulumi up` to rewrite it"
        )
    return job


def jobs_from_parameters(ssm: Any, prefix: str) -> LoadedJobs:
    """One job per parameter directly under ``prefix`` (GetParametersByPath, every page).

    A parameter that fails validation becomes an :class:`InvalidJob` and the others still run:
    one broken record must not stop drift detection on every other endpoint.
    """
    path = prefix.rstrip("/")
    kwargs: dict[str, Any] = {"Path": path, "Recursive": False, "MaxResults": 10}
    params: dict[str, str] = {}
    while True:
        page = ssm.get_parameters_by_path(**kwargs)
        for p in page.get("Parameters", []):
            params[p["Name"]] = p["Value"]
        token = page.get("NextToken")
        if not token:
            break
        kwargs["NextToken"] = token
    loaded = LoadedJobs(jobs=[], source=f"SSM path {path}")
    for name in sorted(params):
        try:
            loaded.jobs.append(_job_from_parameter(name, params[name]))
        except (MLRollbackError, ValueError, TypeError) as exc:
            log.error("drift job parameter %s is invalid and was skipped: %s", name, exc)
            loaded.invalid.append(InvalidJob(name, name.rsplit("/", 1)[-1], str(exc)))
    return loaded


def load_jobs(environ: Mapping[str, str] | None = None, ssm: Any = None) -> LoadedJobs:
    """The jobs: ``MLROLLBACK_DRIFT_JOBS`` when set, else the parameters under ``MLROLLBACK_DRIFT_PREFIX``.

    Explicit jobs win so a hand-run or a test can score exactly the jobs it names without touching
    the deployed records. ``ssm`` is needed only for the prefix. Neither variable set, or a prefix
    with neither a job nor an invalid record under it, is a broken deployment: ConfigError, so the
    invocation fails visibly instead of silently scoring nothing.
    """
    env = os.environ if environ is None else environ
    raw = env.get(ENV_DRIFT_JOBS)
    if raw:
        return LoadedJobs(jobs=jobs_from_json(raw), source=ENV_DRIFT_JOBS)
    prefix = env.get(ENV_DRIFT_PREFIX)
    if not prefix:
        raise ConfigError(
            f"neither {ENV_DRIFT_PREFIX} (the SSM path of the deployed jobs, set by the stack) nor "
            f"{ENV_DRIFT_JOBS} (a JSON list of jobs, for a hand-run) is set on the drift function"
        )
    if ssm is None:
        raise ValueError(f"{ENV_DRIFT_PREFIX} is set: pass an SSM client to read the jobs")
    loaded = jobs_from_parameters(ssm, prefix)
    if not loaded.jobs and not loaded.invalid:
        raise ConfigError(
            f"no drift job parameter under {prefix} ({ENV_DRIFT_PREFIX}); the stack writes one per "
            "endpoint with triggers.drift: run `pulumi up`"
        )
    return loaded


def run_drift_schedule(
    *,
    s3: S3Client,
    cloudwatch: Any,
    ssm: Any,
    environ: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Run every job, publish DriftScore, and report one line per job (invalid records included).

    One job's failure is logged and reported, and does not stop the others; the run itself fails
    only on a configuration error (so a broken deployment is visible at once).
    """
    loaded = load_jobs(environ, ssm)
    at = clock.now() if now is None else now
    publisher = MetricsPublisher(cloudwatch, clock=lambda: clock.now().timestamp())
    results = [bad.report().to_dict() for bad in loaded.invalid]
    for job in loaded.jobs:
        try:
            report = run_drift_job(job, s3=s3, publisher=publisher, now=at)
        except (MLRollbackError, ValueError) as exc:
            log.error("drift job for %s failed: %s", job.endpoint, exc)
            report = DriftReport(
                job.endpoint, job.variant, job.baseline_uri or job.baseline_variant, ERROR, message=str(exc)
            )
        except Exception as exc:  # AWS errors: report and keep going with the next endpoint
            log.exception("drift job for %s failed", job.endpoint)
            report = DriftReport(
                job.endpoint, job.variant, job.baseline_uri or job.baseline_variant, ERROR, message=repr(exc)
            )
        log.info("drift %s/%s: %s %s", job.endpoint, job.variant, report.status, report.message)
        results.append(report.to_dict())
    return {"at": at.isoformat(), "source": loaded.source, "jobs": results}
