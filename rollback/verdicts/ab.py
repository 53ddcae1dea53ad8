"""A/B verdict for a weighted ``ab`` release: is the candidate better, worse, or do we not know yet?

Data (per variant, namespace ``MLRollback/Endpoints``, dimensions EndpointName/VariantName, summed
over the window with GetMetricData):

- **proportion** metrics (conversions): successes = ``Sum`` of the metric (e.g. ``Conversions``,
  published by the application through :meth:`rollback.runtime.metrics.MetricsPublisher.record_value`),
  trials = ``Sum`` of ``Invocations`` (published by :class:`rollback.client.SafePredictor`) or of
  another metric given as ``trials_metric``;
- **continuous** metrics (revenue, basket size): n = ``SampleCount`` and total = ``Sum`` of the
  metric, sum of squares = ``Sum`` of ``<metric>SumOfSquares``. CloudWatch has no variance
  statistic, so :meth:`~rollback.runtime.metrics.MetricsPublisher.record_observation` publishes the square
  of each observation as a companion metric; the variance follows exactly from the three sums.

The decision uses the always-valid mSPRT p-value (:mod:`rollback.verdicts.statistics`), so the
report can be run at any time, any number of times; fixed-horizon p-values are shown for reference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from rollback.runtime.metrics import INVOCATIONS, SQUARES_SUFFIX
from rollback.runtime.names import CANDIDATE, CUSTOM_METRIC_NAMESPACE, STABLE
from rollback.verdicts import statistics as st

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
else:
    CloudWatchClient = Any

PROPORTION: Final = "proportion"
CONTINUOUS: Final = "continuous"
NOT_ENOUGH_DATA: Final = "not-enough-data"
CANDIDATE_BETTER: Final = "candidate-better"
CANDIDATE_WORSE: Final = "candidate-worse"
NO_DIFFERENCE: Final = "no-significant-difference"

#: Below this many observations per arm the normal approximations are not trusted at all.
MIN_PER_ARM: Final = 30


@dataclass(frozen=True)
class Arm:
    """One variant's data: ``successes`` for proportions, ``mean``/``variance`` for continuous."""

    variant: str
    n: float
    successes: float | None = None
    mean: float | None = None
    variance: float | None = None

    @property
    def rate(self) -> float | None:
        return self.successes / self.n if self.successes is not None and self.n > 0 else None


@dataclass
class ABReport:
    """What ``mlrollback ab-report`` shows."""

    kind: str
    control: Arm
    treatment: Arm
    verdict: str
    reasons: list[str]
    alpha: float
    power: float
    mde: float
    required_per_arm: int | None
    fixed_horizon: dict[str, Any] | None = None
    sequential_p_value: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _direction(effect: float, higher_is_better: bool) -> str:
    better = effect > 0 if higher_is_better else effect < 0
    return CANDIDATE_BETTER if better else CANDIDATE_WORSE


def ab_verdict(
    control: Arm,
    treatment: Arm,
    *,
    kind: str,
    mde: float,
    alpha: float = 0.05,
    power: float = 0.8,
    higher_is_better: bool = True,
    baseline: float | None = None,
    sd: float | None = None,
) -> ABReport:
    """Judge ``treatment`` (candidate) against ``control`` (stable).

    ``mde`` is the minimum detectable effect in absolute units (a rate difference for proportions).
    ``baseline`` (proportions) and ``sd`` (continuous) feed the power analysis; by default they are
    estimated from the control arm.
    """
    if kind not in (PROPORTION, CONTINUOUS):
        raise ValueError(f"kind must be {PROPORTION!r} or {CONTINUOUS!r}, got {kind!r}")
    if mde <= 0:
        raise ValueError(f"mde (minimum detectable effect) must be positive, got {mde}")
    reasons: list[str] = []
    report = ABReport(kind, control, treatment, NOT_ENOUGH_DATA, reasons, alpha, power, mde, None)
    n_min = min(control.n, treatment.n)

    if kind == PROPORTION:
        if control.successes is None or treatment.successes is None:
            raise ValueError("proportion arms need successes")
        base = baseline if baseline is not None else control.rate
        if base is not None and 0 < base < 1 and 0 < base + mde < 1:
            report.required_per_arm = st.sample_size_proportions(base, mde, alpha, power)
        usable = (
            n_min >= MIN_PER_ARM
            and st.proportions_usable(control.successes, control.n)
            and st.proportions_usable(treatment.successes, treatment.n)
        )
        if not usable:
            reasons.append(
                f"not enough data yet: need >= {MIN_PER_ARM} trials and >= 5 successes and failures per arm "
                f"(stable {control.successes:g}/{control.n:g}, "
                f"candidate {treatment.successes:g}/{treatment.n:g})"
            )
            return report
        test = st.two_proportion_ztest(control.successes, control.n, treatment.successes, treatment.n, alpha)
        p_a, p_b = control.successes / control.n, treatment.successes / treatment.n
        variance = p_a * (1 - p_a) / control.n + p_b * (1 - p_b) / treatment.n
    else:
        if None in (control.mean, control.variance, treatment.mean, treatment.variance):
            raise ValueError("continuous arms need mean and variance")
        assert control.mean is not None and control.variance is not None
        assert treatment.mean is not None and treatment.variance is not None
        spread = sd if sd is not None else control.variance**0.5
        if spread > 0:
            report.required_per_arm = st.sample_size_means(spread, mde, alpha, power)
        if n_min < MIN_PER_ARM:
            reasons.append(
                f"not enough data yet: need >= {MIN_PER_ARM} observations per arm "
                f"(stable {control.n:g}, candidate {treatment.n:g})"
            )
            return report
        test = st.welch_ttest(
            control.mean, control.variance, control.n, treatment.mean, treatment.variance, treatment.n, alpha
        )
        variance = control.variance / control.n + treatment.variance / treatment.n

    report.fixed_horizon = asdict(test)
    report.sequential_p_value = st.msprt_p_value(test.effect, variance, tau=mde)
    effect_text = f"effect {test.effect:+.4g} (95% CI {test.ci_low:+.4g} .. {test.ci_high:+.4g})"
    if report.sequential_p_value < alpha:
        report.verdict = _direction(test.effect, higher_is_better)
        reasons.append(
            f"{report.verdict}: {effect_text}, always-valid p = {report.sequential_p_value:.4g} < {alpha}"
        )
    elif report.required_per_arm is not None and n_min >= report.required_per_arm:
        report.verdict = NO_DIFFERENCE
        reasons.append(
            f"no significant difference after {n_min:g} per arm (planned {report.required_per_arm}): "
            f"{effect_text}, always-valid p = {report.sequential_p_value:.4g}"
        )
    else:
        need = f"{report.required_per_arm}" if report.required_per_arm else "more"
        reasons.append(
            f"not enough data yet: {n_min:g} per arm of {need} needed to detect {mde:g}; "
            f"so far {effect_text}, always-valid p = {report.sequential_p_value:.4g}"
        )
    return report


def _sum_query(qid: str, endpoint: str, variant: str, metric: str, stat: str, period: int) -> dict[str, Any]:
    dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
    return {
        "Id": qid,
        "MetricStat": {
            "Metric": {"Namespace": CUSTOM_METRIC_NAMESPACE, "MetricName": metric, "Dimensions": dims},
            "Period": period,
            "Stat": stat,
        },
        "ReturnData": True,
    }


def fetch_sums(
    cloudwatch: CloudWatchClient,
    endpoint: str,
    wanted: list[tuple[str, str, str]],
    since: datetime,
    until: datetime,
) -> list[float]:
    """Totals over [since, until) for (variant, metric, stat) triples, in order (0 when no data)."""
    period = max(60, -(-int((until - since).total_seconds()) // 60) * 60)
    queries = [_sum_query(f"q{i}", endpoint, v, m, s, period) for i, (v, m, s) in enumerate(wanted)]
    totals = dict.fromkeys((q["Id"] for q in queries), 0.0)
    kwargs: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": since, "EndTime": until}
    while True:
        response = cloudwatch.get_metric_data(**kwargs)
        for result in response["MetricDataResults"]:
            totals[result["Id"]] += sum(v for v in result.get("Values", []) if v is not None)
        token = response.get("NextToken")
        if not token:
            return [totals[q["Id"]] for q in queries]
        kwargs["NextToken"] = token


def fetch_arms(
    cloudwatch: CloudWatchClient,
    endpoint: str,
    metric: str,
    kind: str,
    since: datetime,
    until: datetime,
    *,
    control: str = STABLE,
    treatment: str = CANDIDATE,
    trials_metric: str = INVOCATIONS,
) -> tuple[Arm, Arm]:
    """Read both arms from CloudWatch (see the module docstring for which metrics)."""
    arms = []
    for variant in (control, treatment):
        if kind == PROPORTION:
            successes, trials = fetch_sums(
                cloudwatch,
                endpoint,
                [(variant, metric, "Sum"), (variant, trials_metric, "Sum")],
                since,
                until,
            )
            arms.append(Arm(variant, trials, successes=successes))
        elif kind == CONTINUOUS:
            n, total, squares = fetch_sums(
                cloudwatch,
                endpoint,
                [
                    (variant, metric, "SampleCount"),
                    (variant, metric, "Sum"),
                    (variant, metric + SQUARES_SUFFIX, "Sum"),
                ],
                since,
                until,
            )
            if n >= 2:
                mean, var = st.mean_variance_from_sums(n, total, squares)
                arms.append(Arm(variant, n, mean=mean, variance=var))
            else:
                arms.append(Arm(variant, n, mean=0.0, variance=0.0))
        else:
            raise ValueError(f"kind must be {PROPORTION!r} or {CONTINUOUS!r}, got {kind!r}")
    return arms[0], arms[1]
