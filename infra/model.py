"""The typed, validated stack config (docs/config.md): what :mod:`infra.validation` builds."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from infra.limits import DEFAULT_MIN_SAMPLES, FRAMEWORK_REPOSITORIES, GUARDRAIL_KPIS, GUARDRAIL_ROLES
from rollback.runtime import names
from rollback.runtime.errors import ConfigError


@dataclass(frozen=True)
class VersionSpec:
    """One entry of an endpoint's version catalog: what to run for a model version."""

    key: str
    model_data_url: str
    image: str | None = None
    framework: str | None = None
    framework_version: str | None = None
    schema: str | None = None
    #: ``modelDigest``: SHA-256 of model.tar.gz, so the same model kept in per-stack buckets is one
    #: artifact to the rehearsal gate (rollback/ops/rehearsal_gate.py).
    model_digest: str | None = None

    @property
    def repository(self) -> str | None:
        """Prebuilt ECR repository for ``framework`` (None when an explicit image is given)."""
        return FRAMEWORK_REPOSITORIES.get(self.framework) if self.framework else None


@dataclass(frozen=True)
class Release:
    """Which catalog version plays which variant role."""

    stable: str
    candidate: str | None = None
    shadow: str | None = None


@dataclass(frozen=True)
class Strategy:
    """How a candidate is rolled out (stepper) and how config changes are guarded (blue/green)."""

    type: str = "canary"
    steps: tuple[int, ...] = (10, 25, 50, 100)
    step_percent: int = 20
    candidate_percent: int = 50
    shadow_percent: int = 100
    bake_minutes: float = 5
    min_requests_per_step: int = 100
    guardrail_wait_seconds: int = 300
    max_execution_timeout_seconds: int = 1800
    #: Declare the candidate variant even without a release (serving the stable version at weight
    #: 0), so every update keeps the variant names SageMaker's guardrails require. Costs the idle
    #: candidate's instances.
    keep_variant_names: bool = False

    def candidate_steps(self) -> tuple[int, ...]:
        """Candidate percents the rollout walks through, first one declared by the program."""
        if self.type == "canary":
            return self.steps
        if self.type == "linear":
            count = math.ceil(100 / self.step_percent)
            return tuple(min(100, self.step_percent * i) for i in range(1, count + 1))
        if self.type == "ab":
            return (self.candidate_percent,)
        if self.type in ("blue-green", "all-at-once"):
            return (100,)
        return ()  # shadow: no candidate variant; the shadow copy is not a traffic step


@dataclass(frozen=True)
class QualityTrigger:
    """Custom quality metric bounds; breaching either bound triggers a rollback."""

    metric: str
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class DriftTrigger:
    """Input drift score threshold, what breaching it does, and how the scheduled job measures it.

    ``baseline_uri`` is a training sample (CSV or JSON lines); without it the job compares the
    candidate with the stable variant's captures of the last ``baseline_window_minutes``.
    """

    max_score: float
    action: str = "rollback"
    baseline_uri: str | None = None
    baseline_skip_columns: int = 0
    min_samples: int = 500
    window_minutes: int = 60
    baseline_window_minutes: int = 24 * 60


@dataclass(frozen=True)
class Triggers:
    """Rollback triggers: what is watched, on which metrics, with which M-of-N evaluation."""

    metrics: str = "custom"
    period_seconds: int = 10
    evaluation_periods: int = 6
    datapoints_to_alarm: int = 3
    error_rate: float = 0.05
    p99_latency_ms: float = 1000
    #: A period with fewer requests than this never breaches the errors or latency alarm.
    min_samples: int = DEFAULT_MIN_SAMPLES
    quality: QualityTrigger | None = None
    drift: DriftTrigger | None = None

    def kpis(self) -> tuple[str, ...]:
        """KPIs that get an alarm per role; depends on triggers only (alarm names never churn).

        Always starts with the guardrail KPIs, so the guardrail alarms always exist.
        """
        kpis = list(GUARDRAIL_KPIS)
        if self.quality is not None:
            kpis.append("quality")
        if self.drift is not None:
            kpis.append("drift")
        return tuple(kpis)

    def rollback_kpis(self) -> tuple[str, ...]:
        """KPIs whose ALARM drains the candidate (a ``notify`` drift alarm only notifies)."""
        return tuple(
            k for k in self.kpis() if not (k == "drift" and self.drift and self.drift.action != "rollback")
        )


@dataclass(frozen=True)
class EndpointConfig:
    """One SageMaker real-time endpoint and everything needed to roll it out and back."""

    name: str
    physical_name: str
    instance_type: str
    instance_count: int
    versions: Mapping[str, VersionSpec]
    release: Release
    strategy: Strategy
    triggers: Triggers
    data_capture_percent: int = 20
    tags: Mapping[str, str] = field(default_factory=dict)

    def versions_in_use(self) -> tuple[str, ...]:
        """Catalog keys that the release declares, in role order, without duplicates."""
        keys = [self.release.stable, self.release.candidate, self.release.shadow]
        return tuple(dict.fromkeys(k for k in keys if k))

    def production_roles(self) -> tuple[str, ...]:
        """Production variant names declared: ``stable``, and ``candidate`` when released or kept idle."""
        if self.release.candidate or self.strategy.keep_variant_names:
            return (names.STABLE, names.CANDIDATE)
        return (names.STABLE,)

    def alarm_names(self, roles: tuple[str, ...] = (names.STABLE, names.CANDIDATE)) -> list[str]:
        """Alarm names of this endpoint for ``roles`` x every KPI, stable across releases."""
        return [names.alarm_name(self.physical_name, r, k) for r in roles for k in self.triggers.kpis()]

    def rollback_alarm_names(self, roles: tuple[str, ...] = (names.STABLE, names.CANDIDATE)) -> list[str]:
        """Alarm names whose ALARM state drains the candidate (the EventBridge rule, the rollout plan)."""
        return [
            names.alarm_name(self.physical_name, r, k) for r in roles for k in self.triggers.rollback_kpis()
        ]

    def guardrail_alarm_names(self) -> list[str]:
        """The endpoint's blue/green auto-rollback alarms: errors + latency of stable and candidate.

        ``deployment_config.auto_rollback_configuration`` is ForceNew in the provider, so this list
        depends on the physical name only: optional triggers (quality, drift, drift.action) must not
        change it, or changing them would replace the explicitly named endpoint (delete, then create).
        Those alarms exist for every endpoint (candidate ones too, without a candidate).
        """
        return [names.alarm_name(self.physical_name, r, k) for r in GUARDRAIL_ROLES for k in GUARDRAIL_KPIS]


@dataclass(frozen=True)
class Artifacts:
    """Artifacts + data-capture bucket: created by the stack, or brought in by name."""

    create: bool = True
    bucket: str | None = None
    #: Customer managed key of a brought-in bucket: endpoint storage and data capture use it.
    kms_key_arn: str | None = None


@dataclass(frozen=True)
class ShadowVerdictGate:
    """Promotion out of this stack also needs a passing shadow verdict (``mlrollback promote``)."""

    required: bool = False
    min_agreement: float = 0.95
    min_pairs: int = 100


@dataclass(frozen=True)
class Rehearsal:
    """The rehearsal gate of a stack: versions entering it need a passing drill in ``source``.

    ``required`` makes ``preflight`` and ``promote`` refuse a newly declared candidate or stable
    without a passing drill of that exact artifact in stack ``source`` no older than
    ``max_age_hours`` when it entered (rollback/ops/rehearsal_gate.py).
    """

    required: bool = False
    max_age_hours: int = 72
    source: str | None = None  # `rehearsal.from`: the stack whose drills count
    shadow_verdict: ShadowVerdictGate = ShadowVerdictGate()


@dataclass(frozen=True)
class StackConfig:
    """The whole validated config of one stack."""

    stack: str
    source: str
    region: str
    environment: str
    production: bool
    artifacts: Artifacts
    emails: tuple[str, ...]
    rehearsal: Rehearsal
    endpoints: tuple[EndpointConfig, ...]
    project_root: str | None = None

    def endpoint(self, name: str) -> EndpointConfig:
        """The endpoint with logical or physical ``name``; ConfigError naming the known ones."""
        for ep in self.endpoints:
            if name in (ep.name, ep.physical_name):
                return ep
        known = ", ".join(ep.name for ep in self.endpoints)
        raise ConfigError(f"{self.source}: no endpoint {name!r} in this stack (known: {known})")
