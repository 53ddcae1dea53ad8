"""Shadow verdict: does the shadow variant answer like production, as fast, without more errors?

Inputs:

- data capture of the production variant and the shadow variant (:mod:`rollback.runtime.capture`), paired
  by ``inferenceId`` (set by :class:`rollback.client.SafePredictor`), else by ``eventId``. Only
  sampled requests reach the shadow (``shadowPercent``), so production records without a shadow
  twin are expected and only counted; shadow records without a production twin are suspicious and
  reported;
- per-variant built-in metrics (``AWS/SageMaker`` ``Invocations``, ``Invocation5XXErrors``,
  ``ModelLatency`` in microseconds) for error rates and latency, because capture files carry neither.
  Missing metrics make those checks "unavailable", never a failure.

Agreement: *exact* compares parsed outputs for equality; *within tolerance* compares numbers with
``math.isclose(rel_tol, abs_tol)``, lists element-wise (same length), JSON objects key by key
(same keys), anything else for equality. The verdict is ``pass``, ``fail`` (with reasons) or
``insufficient-data`` (fewer pairs than ``min_pairs``): a gate must treat only ``pass`` as passing.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from rollback.runtime.capture import CaptureRecord, read_captures
from rollback.runtime.errors import DataError
from rollback.runtime.names import SHADOW, STABLE

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_s3 import S3Client
else:
    CloudWatchClient = S3Client = Any

log = logging.getLogger(__name__)

PASS: Final = "pass"
FAIL: Final = "fail"
INSUFFICIENT: Final = "insufficient-data"
_MAX_EXAMPLES: Final = 5


@dataclass(frozen=True)
class ShadowThresholds:
    """What a shadow must meet to pass. Defaults are conservative; the stack config may override."""

    min_agreement: float = 0.95  # share of pairs agreeing within tolerance
    rel_tolerance: float = 0.01
    abs_tolerance: float = 1e-6
    max_error_rate_increase: float = 0.01  # shadow 5xx rate minus production 5xx rate
    max_latency_ratio: float = 1.25  # shadow p99 (or mean) latency / production
    min_pairs: int = 100

    def __post_init__(self) -> None:
        if not 0 <= self.min_agreement <= 1:
            raise ValueError(f"min_agreement must be within 0..1, got {self.min_agreement}")
        if self.rel_tolerance < 0 or self.abs_tolerance < 0:
            raise ValueError("tolerances must be non-negative")
        if self.min_pairs < 1:
            raise ValueError(f"min_pairs must be at least 1, got {self.min_pairs}")


@dataclass(frozen=True)
class VariantHealth:
    """Built-in per-variant metrics over the report window."""

    invocations: float
    errors_5xx: float
    latency_mean_ms: float | None = None
    latency_p99_ms: float | None = None

    @property
    def error_rate(self) -> float | None:
        return self.errors_5xx / self.invocations if self.invocations > 0 else None


@dataclass
class ShadowReport:
    """Everything ``mlrollback shadow-report`` shows; :attr:`passed` is what a gate checks."""

    endpoint: str
    production_variant: str
    shadow_variant: str
    pairs: int
    unpaired_production: int
    unpaired_shadow: int
    exact_agreement: float | None
    tolerant_agreement: float | None
    production_health: VariantHealth | None
    shadow_health: VariantHealth | None
    verdict: str
    reasons: list[str]
    thresholds: ShadowThresholds
    disagreements: list[dict[str, Any]] = field(default_factory=list)
    since: str | None = None
    until: str | None = None

    @property
    def passed(self) -> bool:
        return self.verdict == PASS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"passed": self.passed}


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def outputs_agree(a: Any, b: Any, *, rel_tol: float = 0.0, abs_tol: float = 0.0) -> bool:
    """Structural comparison: numbers within tolerance, lists element-wise, objects key by key."""
    if _is_number(a) and _is_number(b):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(
            outputs_agree(x, y, rel_tol=rel_tol, abs_tol=abs_tol) for x, y in zip(a, b, strict=True)
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(
            outputs_agree(a[k], b[k], rel_tol=rel_tol, abs_tol=abs_tol) for k in a
        )
    if isinstance(a, bool) != isinstance(b, bool):
        return False  # JSON true is not 1
    return a == b


def _output_value(record: CaptureRecord) -> Any:
    if record.output is None:
        raise DataError(
            f"{record.source}: the capture has no endpointOutput; enable CaptureMode Output on the endpoint "
            "config to compare shadow answers"
        )
    try:
        return record.output.value()
    except (ValueError, UnicodeDecodeError):
        return record.output.raw()  # compare bytes when the declared content type does not parse


def compare_captures(
    production: list[CaptureRecord],
    shadow: list[CaptureRecord],
    thresholds: ShadowThresholds | None = None,
    *,
    endpoint: str = "",
    production_health: VariantHealth | None = None,
    shadow_health: VariantHealth | None = None,
) -> ShadowReport:
    """Pair captured requests and judge the shadow against ``thresholds`` (pure: no AWS calls)."""
    t = thresholds or ShadowThresholds()
    prod_by_key = {r.pair_key: r for r in production}
    shadow_by_key = {r.pair_key: r for r in shadow}
    keys = sorted(prod_by_key.keys() & shadow_by_key.keys())
    exact = tolerant = 0
    examples: list[dict[str, Any]] = []
    for key in keys:
        p, s = _output_value(prod_by_key[key]), _output_value(shadow_by_key[key])
        if p == s:
            exact += 1
            tolerant += 1
        elif outputs_agree(p, s, rel_tol=t.rel_tolerance, abs_tol=t.abs_tolerance):
            tolerant += 1
        elif len(examples) < _MAX_EXAMPLES:
            examples.append({"id": key, "production": _short(p), "shadow": _short(s)})
    n = len(keys)
    reasons: list[str] = []
    verdict = PASS
    exact_rate = exact / n if n else None
    tolerant_rate = tolerant / n if n else None
    if n < t.min_pairs:
        verdict = INSUFFICIENT
        reasons.append(
            f"only {n} paired requests, need {t.min_pairs}: wait for more traffic or lower minPairs"
        )
    elif tolerant_rate is not None and tolerant_rate < t.min_agreement:
        verdict = FAIL
        reasons.append(f"agreement {tolerant_rate:.1%} below the required {t.min_agreement:.1%}")

    shadow_only = len(shadow_by_key.keys() - prod_by_key.keys())
    p_rate = production_health.error_rate if production_health else None
    s_rate = shadow_health.error_rate if shadow_health else None
    if p_rate is not None and s_rate is not None:
        if s_rate - p_rate > t.max_error_rate_increase:
            verdict = FAIL if verdict != INSUFFICIENT else verdict
            reasons.append(
                f"shadow 5xx rate {s_rate:.2%} exceeds production {p_rate:.2%} by more than "
                f"{t.max_error_rate_increase:.2%}"
            )
    else:
        reasons.append("error rates unavailable (no AWS/SageMaker invocation metrics in the window)")
    ratio = _latency_ratio(production_health, shadow_health)
    if ratio is None:
        reasons.append("latency comparison unavailable (no ModelLatency metrics in the window)")
    elif ratio > t.max_latency_ratio:
        verdict = FAIL if verdict != INSUFFICIENT else verdict
        reasons.append(f"shadow latency is {ratio:.2f}x production, above {t.max_latency_ratio:.2f}x")
    if verdict == PASS:
        reasons.insert(0, f"{tolerant_rate:.1%} of {n} paired requests agree within tolerance")
    return ShadowReport(
        endpoint=endpoint,
        production_variant=production[0].variant if production else STABLE,
        shadow_variant=shadow[0].variant if shadow else SHADOW,
        pairs=n,
        unpaired_production=len(prod_by_key) - n,
        unpaired_shadow=shadow_only,
        exact_agreement=exact_rate,
        tolerant_agreement=tolerant_rate,
        production_health=production_health,
        shadow_health=shadow_health,
        verdict=verdict,
        reasons=reasons,
        thresholds=t,
        disagreements=examples,
    )


def _latency_ratio(p: VariantHealth | None, s: VariantHealth | None) -> float | None:
    if p is None or s is None:
        return None
    for a, b in ((p.latency_p99_ms, s.latency_p99_ms), (p.latency_mean_ms, s.latency_mean_ms)):
        if a and b is not None and a > 0:
            return b / a
    return None


def _short(value: Any) -> Any:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return text if len(repr(text)) <= 200 else repr(text)[:200] + "..."


def fetch_variant_health(
    cloudwatch: CloudWatchClient, endpoint: str, variant: str, since: datetime, until: datetime
) -> VariantHealth | None:
    """Sum of Invocations/Invocation5XXErrors and mean/p99 ModelLatency (ms) of one variant, or None."""
    dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
    period = max(60, int((until - since).total_seconds()) // 60 * 60)

    def query(qid: str, name: str, stat: str) -> dict[str, Any]:
        metric = {"Namespace": "AWS/SageMaker", "MetricName": name, "Dimensions": dims}
        return {
            "Id": qid,
            "MetricStat": {"Metric": metric, "Period": period, "Stat": stat},
            "ReturnData": True,
        }

    def fetch(queries: list[dict[str, Any]]) -> dict[str, list[float]]:
        response = cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=since, EndTime=until)
        return {
            r["Id"]: [v for v in r.get("Values", []) if v is not None] for r in response["MetricDataResults"]
        }

    values = fetch(
        [
            query("inv", "Invocations", "Sum"),
            query("err", "Invocation5XXErrors", "Sum"),
            query("lat", "ModelLatency", "Average"),
        ]
    )
    try:
        # Percentiles in their own call: emulators (moto) cannot answer them, and a missing p99
        # only downgrades the latency check to means.
        values |= fetch([query("p99", "ModelLatency", "p99")])
    except Exception as exc:
        log.info("p99 ModelLatency unavailable for %s/%s: %s", endpoint, variant, exc)
    invocations = sum(values.get("inv", []))
    if invocations <= 0:
        return None
    lat = values.get("lat") or []
    p99 = values.get("p99") or []
    return VariantHealth(
        invocations=invocations,
        errors_5xx=sum(values.get("err", [])),
        latency_mean_ms=(sum(lat) / len(lat)) / 1000.0 if lat else None,  # ModelLatency is microseconds
        latency_p99_ms=max(p99) / 1000.0 if p99 else None,
    )


def evaluate_shadow(
    s3: S3Client,
    cloudwatch: CloudWatchClient | None,
    *,
    capture_uri: str,
    endpoint: str,
    since: datetime,
    until: datetime,
    production_variant: str = STABLE,
    shadow_variant: str = SHADOW,
    thresholds: ShadowThresholds | None = None,
    max_records: int = 100_000,
) -> ShadowReport:
    """The gate function: read captures and metrics for the window and return the verdict.

    ``endpoint`` is the physical endpoint name; ``capture_uri`` the endpoint config's
    ``DestinationS3Uri``. ``cloudwatch=None`` skips the error-rate and latency checks.
    """
    production = read_captures(
        s3, capture_uri, endpoint, production_variant, since, until, max_records=max_records
    )
    shadow = read_captures(s3, capture_uri, endpoint, shadow_variant, since, until, max_records=max_records)
    p_health = s_health = None
    if cloudwatch is not None:
        p_health = fetch_variant_health(cloudwatch, endpoint, production_variant, since, until)
        s_health = fetch_variant_health(cloudwatch, endpoint, shadow_variant, since, until)
    report = compare_captures(
        production,
        shadow,
        thresholds,
        endpoint=endpoint,
        production_health=p_health,
        shadow_health=s_health,
    )
    report.production_variant, report.shadow_variant = production_variant, shadow_variant
    report.since, report.until = since.isoformat(), until.isoformat()
    return report
