"""Records the program derives from the config for the runtime: the rollout plan, declared weights,
the Lambda environment and the drift jobs (docs/contracts.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from infra.limits import DATA_CAPTURE_PREFIX
from infra.model import EndpointConfig
from rollback.runtime import names


def rollout_plan(ep: EndpointConfig) -> dict[str, Any]:
    """The rollout plan the program writes to SSM and the stepper follows.

    ``planId`` hashes every other field, so any change to the plan restarts the stepper's progress.
    """
    candidate = ep.release.candidate
    steps = list(ep.strategy.candidate_steps()) if candidate else []
    plan: dict[str, Any] = {
        "endpoint": ep.physical_name,
        "stable": ep.release.stable,
        "candidate": candidate,
        "strategy": ep.strategy.type,
        "steps": steps,
        "bakeSeconds": round(ep.strategy.bake_minutes * 60),
        "minRequestsPerStep": ep.strategy.min_requests_per_step,
        "metrics": ep.triggers.metrics,
        "candidateAlarms": ep.rollback_alarm_names((names.CANDIDATE,)),
    }
    canonical = json.dumps(plan, sort_keys=True, separators=(",", ":"))
    plan["planId"] = hashlib.sha256(canonical.encode()).hexdigest()[:12]
    return plan


def declared_weights(ep: EndpointConfig, *, quarantined: bool = False) -> dict[str, int]:
    """Production-variant weights (percent) by role the program declares for ``ep``.

    The candidate starts at the first step of its plan; a quarantined candidate is declared at 0
    so ``pulumi up`` never silently re-promotes a rolled-back version.
    """
    if not ep.release.candidate:
        # An idle candidate (strategy.keepVariantNames) serves the stable version and no traffic.
        idle = {names.CANDIDATE: 0} if ep.strategy.keep_variant_names else {}
        return {names.STABLE: 100, **idle}
    first = ep.strategy.candidate_steps()[0]
    cand = 0 if quarantined else first
    return {names.STABLE: 100 - cand, names.CANDIDATE: cand}


def lambda_environment(stack: str, audit_table: Any, topic_arn: Any) -> dict[str, Any]:
    """The contract environment every mlrollback Lambda gets (values may be Pulumi Outputs)."""
    return {
        names.ENV_STACK: stack,
        names.ENV_AUDIT_TABLE: audit_table,
        names.ENV_TOPIC_ARN: topic_arn,
        names.ENV_QUARANTINE_PREFIX: names.quarantine_prefix(stack),
        names.ENV_ROLLOUT_PREFIX: names.rollout_prefix(stack),
    }


def capture_uri(bucket: str) -> str:
    """The endpoints' data-capture ``DestinationS3Uri`` in the artifacts bucket ``bucket``."""
    return f"s3://{bucket}/{DATA_CAPTURE_PREFIX}"


def drift_job(ep: EndpointConfig, capture: str) -> dict[str, Any]:
    """One drift job (keys as ``rollback.runtime.drift.DriftJob.from_dict`` parses them).

    The job scores the candidate: that is the variant whose drift alarm can drain it.
    """
    d = ep.triggers.drift
    if d is None:
        raise ValueError(f"endpoint {ep.name!r} has no triggers.drift")
    job: dict[str, Any] = {
        "endpoint": ep.physical_name,
        "captureUri": capture,
        "variant": names.CANDIDATE,
        "maxScore": d.max_score,
        "minSamples": d.min_samples,
        "windowMinutes": d.window_minutes,
    }
    if d.baseline_uri:
        job["baselineUri"] = d.baseline_uri
        if d.baseline_skip_columns:
            job["baselineSkipColumns"] = d.baseline_skip_columns
    else:
        job["baselineWindowMinutes"] = d.baseline_window_minutes
    return job


def drift_endpoints(endpoints: Sequence[EndpointConfig]) -> list[EndpointConfig]:
    """Endpoints that configure ``triggers.drift`` (the drift function exists only if there is one)."""
    return [ep for ep in endpoints if ep.triggers.drift is not None]


def drift_job_json(ep: EndpointConfig, bucket: str) -> str:
    """Value of the endpoint's drift job parameter (``names.drift_job_parameter``) for a bucket.

    An S3 key is at most 1,024 bytes, so even with a long baseline URI the job fits the Standard tier
    (4 KB) and needs no Advanced-tier parameter (which costs money).
    """
    return json.dumps(drift_job(ep, capture_uri(bucket)), sort_keys=True)
