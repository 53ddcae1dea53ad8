"""The library applications import: safe predictions with one failover to ``stable``.

Standard library + boto3 only (it uses :mod:`rollback.runtime.metrics` to publish the per-variant
KPIs the candidate alarms watch). See :mod:`rollback.client.predictor`.
"""

from __future__ import annotations

from rollback.client.predictor import (
    FAILOVER_ERROR_CODES,
    NO_BREAKER,
    NO_METRICS,
    UNKNOWN_VARIANT,
    Attempt,
    BreakerPolicy,
    Prediction,
    PredictorStats,
    SafePredictor,
    make_runtime,
)

__all__ = [
    "FAILOVER_ERROR_CODES",
    "NO_BREAKER",
    "NO_METRICS",
    "UNKNOWN_VARIANT",
    "Attempt",
    "BreakerPolicy",
    "Prediction",
    "PredictorStats",
    "SafePredictor",
    "make_runtime",
]
