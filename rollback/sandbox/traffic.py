"""Simulated models behind the endpoint, weighted routing, and the metrics AWS would publish.

:class:`SimulatedCloud` is what stands behind ``InvokeEndpoint`` in the sandbox (moto_patches
routes the HTTP API here too): it reads the endpoint's live variant weights from the emulator,
picks a variant by weight (or the ``TargetVariant``), and asks that variant's
:class:`ModelBehaviour` whether the prediction fails and how long it takes. Each prediction is
recorded as metrics:

- the fast custom metrics (``MLRollback/Endpoints``, 1-second resolution) through the project's
  own :class:`rollback.metrics.MetricsPublisher` with the virtual clock, as the client library does;
- the built-in ``AWS/SageMaker`` per-variant metrics (``Invocations``, ``Invocation5XXErrors``,
  ``ModelLatency`` in microseconds), aggregated per minute and written into the emulator's
  CloudWatch once the minute is over, as SageMaker itself publishes them.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rollback.metrics import MetricsPublisher
from rollback.sandbox.emulator import Emulator
from rollback.sandbox.moto_patches import InvokeOutcome

BUILTIN_NAMESPACE = "AWS/SageMaker"


@dataclass
class ModelBehaviour:
    """How a simulated variant answers: share of 5xx errors and latency (median, jitter) in ms."""

    error_rate: float = 0.0
    latency_ms: float = 40.0
    jitter_ms: float = 10.0


@dataclass
class _Minute:
    count: int = 0
    errors: int = 0
    latencies_us: Counter[float] = field(default_factory=Counter)


class SimulatedCloud:
    """Routes predictions by live weight to simulated variants and records their metrics."""

    def __init__(self, emulator: Emulator, now: Callable[[], datetime], seed: int = 7) -> None:
        self._emu = emulator
        self._now = now
        self.rng = random.Random(seed)
        self.behaviours: dict[tuple[str, str], ModelBehaviour] = {}
        self.publisher = MetricsPublisher(emulator.client("cloudwatch"), clock=lambda: now().timestamp())
        self._minutes: dict[tuple[str, str, int], _Minute] = {}

    def behave(self, endpoint: str, variant: str, behaviour: ModelBehaviour) -> None:
        """Set how ``variant`` of ``endpoint`` answers from now on."""
        self.behaviours[(endpoint, variant)] = behaviour

    def weights(self, endpoint: str) -> dict[str, float]:
        """Live variant weights (``CurrentWeight``) of ``endpoint`` in the emulator."""
        backend = self._emu.backend("sagemaker")
        ep = backend.endpoints.get(endpoint)
        if ep is None:
            raise LookupError(f"Endpoint {endpoint} of account {self._emu.arn('sagemaker', '')} not found.")
        return {v["VariantName"]: float(v.get("CurrentWeight", 0.0)) for v in ep.production_variants}

    def route(self, endpoint: str, target_variant: str | None = None, body: bytes = b"") -> InvokeOutcome:
        """Serve one prediction: pick a variant, simulate it, record metrics, return the outcome."""
        weights = self.weights(endpoint)
        if target_variant:
            if target_variant not in weights:
                raise LookupError(f"Variant {target_variant} not found on endpoint {endpoint}.")
            variant = target_variant
        else:
            total = sum(weights.values())
            if total <= 0:
                raise LookupError(f"Endpoint {endpoint} has no variant with a positive weight.")
            pick = self.rng.random() * total
            variant = next(iter(weights))
            for name, weight in weights.items():
                if pick < weight:
                    variant = name
                    break
                pick -= weight
        behaviour = self.behaviours.get((endpoint, variant), ModelBehaviour())
        ok = self.rng.random() >= behaviour.error_rate
        latency = max(1.0, self.rng.gauss(behaviour.latency_ms, behaviour.jitter_ms))
        self.record(endpoint, variant, latency, ok)
        body_out = '{"score": 0.12}' if ok else "model server error"
        return InvokeOutcome(variant=variant, ok=ok, latency_ms=latency, body=body_out)

    def record(self, endpoint: str, variant: str, latency_ms: float, ok: bool) -> None:
        """Record one invocation in both metric families."""
        now = self._now()
        self.publisher.record_invocation(endpoint, variant, latency_ms, not ok, at=now)
        minute = int(now.timestamp() // 60) * 60
        bucket = self._minutes.setdefault((endpoint, variant, minute), _Minute())
        bucket.count += 1
        bucket.errors += 0 if ok else 1
        bucket.latencies_us[round(latency_ms) * 1000.0] += 1

    def flush(self) -> None:
        """Publish the custom metrics recorded so far, and the built-in ones of finished minutes."""
        self.publisher.flush()
        current = int(self._now().timestamp() // 60) * 60
        done = sorted(k for k in self._minutes if k[2] < current)
        if not done:
            return
        data: list[dict[str, Any]] = []
        for key in done:
            endpoint, variant, minute = key
            bucket = self._minutes.pop(key)
            stamp = datetime.fromtimestamp(minute, tz=UTC)
            dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
            base = {"Dimensions": dims, "Timestamp": stamp}
            data.append({**base, "MetricName": "Invocations", "Value": float(bucket.count), "Unit": "None"})
            data.append(
                {**base, "MetricName": "Invocation5XXErrors", "Value": float(bucket.errors), "Unit": "None"}
            )
            data.append({**base, "MetricName": "Invocation4XXErrors", "Value": 0.0, "Unit": "None"})
            values = sorted(bucket.latencies_us)
            data.append(
                {
                    **base,
                    "MetricName": "ModelLatency",
                    "Values": values,
                    "Counts": [float(bucket.latencies_us[v]) for v in values],
                    "Unit": "Microseconds",
                }
            )
        # SageMaker publishes these itself (an AWS/ namespace a client could not write to).
        self._emu.backend("cloudwatch").put_metric_data(BUILTIN_NAMESPACE, data)
