"""The A/B statistics, on scipy where scipy has it (CLI only, never the Lambda path).

- Two-proportion z-test (pooled standard error under H0, unpooled for the confidence interval):
  conversion-style metrics, successes out of trials per arm. Normal approximation: needs at least
  about 5 successes and 5 failures per arm (:func:`proportions_usable`).
- Welch's t-test from summary statistics (``scipy.stats.ttest_ind_from_stats`` with
  ``equal_var=False``): continuous metrics with unequal variances and sample sizes.
- Minimum sample size per arm for a two-sided test at ``alpha`` with ``power``: proportions with
  the classic normal-approximation formula without continuity correction (Fleiss), means with
  ``2 (z_{1-a/2} + z_{1-b})^2 sd^2 / mde^2``.
- Sequential testing: people look at an A/B report many times, and a fixed-horizon p-value checked
  at every look inflates the false-positive rate far above ``alpha``. We use the mixture sequential
  probability ratio test (mSPRT, Johari, Pekelis & Walsh 2017, "Always valid inference") with a
  normal mixing distribution N(0, tau^2): its p-value is valid at *any* number of looks, needs no
  plan of when to look and no memory of earlier looks (an O'Brien-Fleming alpha-spending plan needs
  both, which an ad-hoc CLI report cannot guarantee). The price is some power compared with a
  single look at the planned sample size. For an estimated effect ``d`` with variance ``V``::

      Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2))),   p = min(1, 1/Lambda)

  We set ``tau`` to the minimum detectable effect: the mixture then puts its weight on effects of
  the size the experiment was designed to find.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats


@dataclass(frozen=True)
class Comparison:
    """A two-sided test of treatment (B) against control (A); ``effect`` is B minus A."""

    statistic: float
    p_value: float
    effect: float
    ci_low: float
    ci_high: float
    df: float | None = None


def _check_probability(name: str, value: float) -> None:
    if not 0 < value < 1:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value}")


def two_proportion_ztest(
    successes_a: float, trials_a: float, successes_b: float, trials_b: float, alpha: float = 0.05
) -> Comparison:
    """Pooled two-proportion z-test of p_B - p_A, with an unpooled (Wald) confidence interval."""
    for name, s, n in (("A", successes_a, trials_a), ("B", successes_b, trials_b)):
        if n <= 0 or not 0 <= s <= n:
            raise ValueError(f"arm {name}: need 0 <= successes <= trials and trials > 0, got {s}/{n}")
    p_a, p_b = successes_a / trials_a, successes_b / trials_b
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b))
    effect = p_b - p_a
    z = effect / se0 if se0 > 0 else 0.0
    p_value = 2 * stats.norm.sf(abs(z))
    se = math.sqrt(p_a * (1 - p_a) / trials_a + p_b * (1 - p_b) / trials_b)
    half = stats.norm.ppf(1 - alpha / 2) * se
    return Comparison(float(z), float(p_value), effect, float(effect - half), float(effect + half))


def welch_ttest(
    mean_a: float, var_a: float, n_a: float, mean_b: float, var_b: float, n_b: float, alpha: float = 0.05
) -> Comparison:
    """Welch's unequal-variance t-test of mean_B - mean_A from summary statistics."""
    if n_a < 2 or n_b < 2:
        raise ValueError(f"Welch's test needs at least 2 observations per arm, got {n_a} and {n_b}")
    if var_a < 0 or var_b < 0:
        raise ValueError("variances must be non-negative")
    result = stats.ttest_ind_from_stats(
        mean_b, math.sqrt(var_b), n_b, mean_a, math.sqrt(var_a), n_a, equal_var=False
    )
    se2_a, se2_b = var_a / n_a, var_b / n_b
    se = math.sqrt(se2_a + se2_b)
    df = (se2_a + se2_b) ** 2 / (se2_a**2 / (n_a - 1) + se2_b**2 / (n_b - 1)) if se > 0 else math.inf
    effect = mean_b - mean_a
    half = stats.t.ppf(1 - alpha / 2, df) * se
    return Comparison(
        float(result.statistic),
        float(result.pvalue),
        effect,
        float(effect - half),
        float(effect + half),
        float(df),
    )


def sample_size_proportions(baseline: float, mde: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Per-arm sample size to detect an absolute change ``mde`` from ``baseline`` (two-sided)."""
    _check_probability("baseline rate", baseline)
    _check_probability("alpha", alpha)
    _check_probability("power", power)
    p2 = baseline + mde
    if mde == 0 or not 0 < p2 < 1:
        raise ValueError(f"baseline + mde must be a rate in (0, 1) different from baseline, got {p2}")
    z_a, z_b = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    p_bar = (baseline + p2) / 2
    numerator = z_a * math.sqrt(2 * p_bar * (1 - p_bar)) + z_b * math.sqrt(
        baseline * (1 - baseline) + p2 * (1 - p2)
    )
    return math.ceil(numerator**2 / mde**2)


def sample_size_means(sd: float, mde: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Per-arm sample size to detect a mean difference ``mde`` with standard deviation ``sd``."""
    _check_probability("alpha", alpha)
    _check_probability("power", power)
    if sd <= 0 or mde == 0:
        raise ValueError(f"need sd > 0 and mde != 0, got sd={sd}, mde={mde}")
    z_a, z_b = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    return math.ceil(2 * (z_a + z_b) ** 2 * sd**2 / mde**2)


def msprt_p_value(effect: float, variance: float, tau: float) -> float:
    """Always-valid p-value of the normal-mixture SPRT for H0: effect = 0 (see module docstring)."""
    if variance <= 0:
        return 1.0 if effect == 0 else 0.0
    if tau <= 0:
        raise ValueError(f"tau (mixture scale, the minimum detectable effect) must be positive, got {tau}")
    tau2 = tau * tau
    log_lambda = 0.5 * math.log(variance / (variance + tau2)) + tau2 * effect**2 / (
        2 * variance * (variance + tau2)
    )
    return 1.0 if log_lambda <= 0 else min(1.0, math.exp(-log_lambda))


def mean_variance_from_sums(n: float, total: float, sum_squares: float) -> tuple[float, float]:
    """Mean and unbiased sample variance from SampleCount, Sum and the sum of squares.

    Uses (sum_sq - total^2 / n) / (n - 1), clamped at 0 against rounding: exact for integers,
    and accurate enough for metrics whose mean is not huge compared with their spread.
    """
    if n < 2:
        raise ValueError(f"need at least 2 observations for a variance, got {n}")
    mean = total / n
    return mean, max(0.0, (sum_squares - total * total / n) / (n - 1))


def proportions_usable(successes: float, trials: float) -> bool:
    """The normal approximation needs at least 5 successes and 5 failures."""
    return successes >= 5 and trials - successes >= 5
