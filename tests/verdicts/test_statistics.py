from __future__ import annotations

import statistics

import numpy as np
import pytest
from scipy.stats import chi2_contingency

from rollback.verdicts import statistics as st

# Welch's t-test example from the Wikipedia article (example 1): t = -2.46, df = 24.99, p = 0.021.
A1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
A2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]


def test_welch_matches_the_textbook_example() -> None:
    result = st.welch_ttest(
        statistics.mean(A2), statistics.variance(A2), 15, statistics.mean(A1), statistics.variance(A1), 15
    )
    assert result.statistic == pytest.approx(-2.46, abs=0.005)
    assert result.df == pytest.approx(24.99, abs=0.005)
    assert result.p_value == pytest.approx(0.021, abs=0.0005)
    assert result.ci_low < result.effect < result.ci_high < 0


def test_two_proportion_z_squared_is_the_uncorrected_chi_square() -> None:
    result = st.two_proportion_ztest(100, 1000, 130, 1000)
    chi2, p, *_ = chi2_contingency([[100, 900], [130, 870]], correction=False)
    assert result.statistic**2 == pytest.approx(chi2)
    assert result.p_value == pytest.approx(p)
    assert result.effect == pytest.approx(0.03) and result.ci_low > 0  # significant at 5 %


def test_sample_sizes_match_the_classic_formulas() -> None:
    # 10 % -> 12 %: Fleiss without continuity correction gives 3841 per arm at alpha .05, power .8
    assert st.sample_size_proportions(0.10, 0.02) == 3841
    # effect size 0.5 sd: the well-known 63 per group (normal approximation)
    assert st.sample_size_means(sd=1.0, mde=0.5) == 63
    # four times the effect needs about a sixteenth of the sample
    assert st.sample_size_means(1.0, 2.0) == pytest.approx(63 / 16, abs=1)


def test_power_analysis_rejects_impossible_inputs() -> None:
    with pytest.raises(ValueError, match="baseline rate"):
        st.sample_size_proportions(1.2, 0.01)
    with pytest.raises(ValueError, match="baseline \\+ mde"):
        st.sample_size_proportions(0.99, 0.05)
    with pytest.raises(ValueError, match="power"):
        st.sample_size_means(1.0, 0.5, power=1.0)


def test_variance_from_cloudwatch_sums_is_the_sample_variance() -> None:
    mean, var = st.mean_variance_from_sums(len(A1), sum(A1), sum(x * x for x in A1))
    assert mean == pytest.approx(statistics.mean(A1)) and var == pytest.approx(statistics.variance(A1))


def test_msprt_keeps_false_positives_under_alpha_when_peeking_but_naive_testing_does_not() -> None:
    rng = np.random.default_rng(7)
    sims, looks, per_look, alpha, tau = 300, 20, 50, 0.05, 0.2
    naive = sequential = 0
    for _ in range(sims):
        a = rng.normal(0, 1, looks * per_look)
        b = rng.normal(0, 1, looks * per_look)  # no real difference
        naive_hit = seq_hit = False
        for k in range(1, looks + 1):
            n = k * per_look
            xa, xb = a[:n], b[:n]
            result = st.welch_ttest(xa.mean(), xa.var(ddof=1), n, xb.mean(), xb.var(ddof=1), n)
            naive_hit |= result.p_value < alpha
            variance = xa.var(ddof=1) / n + xb.var(ddof=1) / n
            seq_hit |= st.msprt_p_value(result.effect, variance, tau) < alpha
        naive += naive_hit
        sequential += seq_hit
    assert naive / sims > 0.12  # peeking 20 times inflates 5 % to well above it
    assert sequential / sims <= 0.06


def test_msprt_detects_a_large_effect_and_ignores_none() -> None:
    assert st.msprt_p_value(0.5, 0.01, tau=0.2) < 1e-3
    assert st.msprt_p_value(0.0, 0.01, tau=0.2) == 1.0
