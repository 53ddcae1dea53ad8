"""Validation of the sections of an endpoint: a catalogued version, the strategy, the triggers
(quality and drift included) and the shadow-verdict gate. Each returns its typed record and adds its
problems to the run's :class:`~infra.config_reader.Problems` (:mod:`infra.validation` calls them).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

from infra.config_reader import Problems, Reader, is_int, is_number, read_percent
from infra.limits import (
    DEFAULT_MIN_SAMPLES,
    DRIFT_ACTIONS,
    DRIFT_BASELINE_WINDOW_RANGE,
    DRIFT_MAX_SAMPLES,
    DRIFT_WINDOW_RANGE,
    ECR_IMAGE_RE,
    FRAMEWORK_REPOSITORIES,
    MAX_EXECUTION_TIMEOUT_RANGE,
    METRIC_SOURCES,
    MIN_BAD_REQUESTS,
    STRATEGIES,
    WAIT_INTERVAL_RANGE,
)
from infra.model import (
    DriftTrigger,
    QualityTrigger,
    ShadowVerdictGate,
    Strategy,
    Triggers,
    VersionSpec,
)

_S3_URI_RE = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/\S+$")


_VERSION_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")


#: ``versions.<v>.modelDigest``: the SHA-256 of the model archive, lower-case hex.
_MODEL_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def parse_version(key: str, raw: Any, vkey: str, problems: Problems, root: Path | None) -> VersionSpec:
    r = Reader(raw, vkey, problems)
    r.unknown({"image", "framework", "frameworkVersion", "modelDataUrl", "modelDigest", "schema"})
    if not _VERSION_KEY_RE.match(key):
        problems.add(
            vkey,
            "version keys must be 1-32 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    image = r.str_("image")
    framework = r.str_("framework")
    framework_version = r.str_("frameworkVersion")
    if "frameworkVersion" in r.data and is_number(r.data["frameworkVersion"]):
        problems.add(r.k("frameworkVersion"), 'quote it as a string (e.g. "1.7-1"), YAML read a number')
    if image and framework:
        problems.add(vkey, "set either image or framework + frameworkVersion, not both")
    elif not image and not framework:
        problems.add(vkey, "set image (an ECR image URI) or framework + frameworkVersion")
    if image and not ECR_IMAGE_RE.match(image):
        problems.add(
            r.k("image"),
            f"{image!r} is not an Amazon ECR image URI like "
            "<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag> (or @sha256:<digest>); SageMaker pulls "
            "only from ECR unless the model is set up for VPC image access, which this program does not do: "
            "push the image to ECR, or use framework + frameworkVersion",
        )
    if framework:
        if framework not in FRAMEWORK_REPOSITORIES:
            known = ", ".join(sorted(FRAMEWORK_REPOSITORIES))
            problems.add(r.k("framework"), f"unknown framework {framework!r} (known: {known}); or use image")
        if not framework_version:
            problems.add(r.k("frameworkVersion"), 'is required with framework (the image tag, e.g. "1.7-1")')
    url = r.str_("modelDataUrl", required=True)
    if url and not _S3_URI_RE.match(url):
        problems.add(r.k("modelDataUrl"), f"{url!r} is not an S3 URI like s3://bucket/path/model.tar.gz")
    digest = r.str_("modelDigest")
    if digest and not _MODEL_DIGEST_RE.match(digest):
        problems.add(
            r.k("modelDigest"),
            f"{digest!r} is not sha256:<64 hex digits>; use the SHA-256 of model.tar.gz "
            "(`sha256sum model.tar.gz`)",
        )
        digest = None
    schema = r.str_("schema")
    if schema and root is not None and not (root / schema).is_file():
        problems.add(r.k("schema"), f"file {schema!r} not found under the project root {root}; fix the path")
    return VersionSpec(
        key=key,
        model_data_url=url or "",
        image=image,
        framework=framework,
        framework_version=framework_version,
        schema=schema,
        model_digest=digest,
    )


def parse_strategy(raw: Any, key: str, problems: Problems) -> Strategy:
    r = Reader(raw, key, problems)
    r.unknown(
        {
            "type",
            "steps",
            "stepPercent",
            "candidatePercent",
            "shadowPercent",
            "bakeMinutes",
            "minRequestsPerStep",
            "guardrailWaitSeconds",
            "maxExecutionTimeoutSeconds",
            "keepVariantNames",
        }
    )
    stype = r.str_("type", "canary") or "canary"
    if stype not in STRATEGIES:
        problems.add(r.k("type"), f"unknown strategy {stype!r}; use one of {', '.join(STRATEGIES)}")
    steps_raw = r.data.get("steps", [10, 25, 50, 100])
    steps: tuple[int, ...] = (10, 25, 50, 100)
    if not isinstance(steps_raw, list) or not steps_raw or not all(is_int(s) for s in steps_raw):
        problems.add(r.k("steps"), f"must be a non-empty list of integer percents, got {steps_raw!r}")
    else:
        steps = tuple(steps_raw)
        bad = [s for s in steps if not 0 < s <= 100]
        if bad:
            problems.add(r.k("steps"), f"{bad} outside (0, 100]; every step is a candidate percent")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            problems.add(r.k("steps"), f"{list(steps)} must be strictly increasing (e.g. [10, 25, 50, 100])")
    guardrail_wait = r.int_("guardrailWaitSeconds", 300, *WAIT_INTERVAL_RANGE)
    max_exec = r.int_("maxExecutionTimeoutSeconds", 1800)
    lo, hi = MAX_EXECUTION_TIMEOUT_RANGE
    if is_int(r.data.get("maxExecutionTimeoutSeconds", 1800)) and not lo <= max_exec <= hi:
        problems.add(
            r.k("maxExecutionTimeoutSeconds"),
            f"{max_exec} is outside what the provider accepts ({lo}-{hi} seconds); pick a value in range",
        )
    bake = r.num("bakeMinutes", 5)
    if bake is not None and bake <= 0:
        problems.add(r.k("bakeMinutes"), f"{bake} must be > 0 minutes")
    return Strategy(
        type=stype,
        steps=steps,
        step_percent=read_percent(r, "stepPercent", 20),
        candidate_percent=read_percent(r, "candidatePercent", 50),
        shadow_percent=read_percent(r, "shadowPercent", 100),
        bake_minutes=bake if bake is not None else 5,
        min_requests_per_step=r.int_("minRequestsPerStep", 100, 0),
        guardrail_wait_seconds=guardrail_wait,
        max_execution_timeout_seconds=max_exec,
        keep_variant_names=r.bool_("keepVariantNames", False),
    )


def parse_triggers(raw: Any, key: str, problems: Problems) -> Triggers:
    r = Reader(raw, key, problems)
    r.unknown(
        {
            "metrics",
            "periodSeconds",
            "evaluationPeriods",
            "datapointsToAlarm",
            "errorRate",
            "p99LatencyMs",
            "minSamples",
            "quality",
            "drift",
        }
    )
    metrics = r.str_("metrics", "custom") or "custom"
    if metrics not in METRIC_SOURCES:
        problems.add(r.k("metrics"), f"unknown metrics source {metrics!r}; use custom or builtin")
    period = r.int_("periodSeconds", 10 if metrics == "custom" else 60)
    if metrics == "builtin" and (period < 60 or period % 60):
        problems.add(
            r.k("periodSeconds"),
            f"{period} s: built-in AWS/SageMaker metrics are 1-minute; "
            "use a multiple of 60 (or metrics: custom)",
        )
    elif metrics == "custom" and period not in (10, 20, 30) and (period < 60 or period % 60):
        problems.add(r.k("periodSeconds"), f"{period} s: CloudWatch accepts 10, 20, 30 or a multiple of 60")
    evaluation = r.int_("evaluationPeriods", 6, 1)
    datapoints = r.int_("datapointsToAlarm", 3, 1)
    if datapoints > evaluation:
        problems.add(
            r.k("datapointsToAlarm"),
            f"{datapoints} exceeds evaluationPeriods {evaluation}; M of N needs M <= N",
        )
    if period * evaluation > 86400:
        problems.add(r.k("evaluationPeriods"), "periodSeconds x evaluationPeriods must be <= 86400 (one day)")
    error_rate = r.num("errorRate", 0.05)
    if error_rate is not None and not 0 < error_rate <= 1:
        problems.add(r.k("errorRate"), f"{error_rate} must be a share in (0, 1] (0.05 = 5 % of invocations)")
    latency = r.num("p99LatencyMs", 1000)
    if latency is not None and latency <= 0:
        problems.add(r.k("p99LatencyMs"), f"{latency} must be > 0 milliseconds")
    min_samples = r.int_("minSamples", DEFAULT_MIN_SAMPLES, MIN_BAD_REQUESTS)

    quality = None
    if r.data.get("quality") is not None:
        q = Reader(r.data["quality"], r.k("quality"), problems)
        q.unknown({"metric", "min", "max"})
        qmin, qmax = q.num("min", None), q.num("max", None)
        if qmin is None and qmax is None:
            problems.add(q.key, "set min and/or max for the quality metric")
        if qmin is not None and qmax is not None and qmin >= qmax:
            problems.add(q.key, f"min {qmin} must be below max {qmax}")
        quality = QualityTrigger(metric=q.str_("metric", "quality") or "quality", min=qmin, max=qmax)

    drift = parse_drift(r.data["drift"], r.k("drift"), problems) if r.data.get("drift") is not None else None

    return Triggers(
        metrics=metrics,
        period_seconds=period,
        evaluation_periods=evaluation,
        datapoints_to_alarm=datapoints,
        error_rate=error_rate if error_rate is not None else 0.05,
        p99_latency_ms=latency if latency is not None else 1000,
        min_samples=min_samples if min_samples is not None else DEFAULT_MIN_SAMPLES,
        quality=quality,
        drift=drift,
    )


def parse_shadow_gate(raw: Any, key: str, problems: Problems) -> ShadowVerdictGate:
    if raw is None:
        return ShadowVerdictGate()
    g = Reader(raw, key, problems)
    g.unknown({"required", "minAgreement", "minPairs"})
    agreement = g.num("minAgreement", 0.95)
    if agreement is not None and not 0 < agreement <= 1:
        problems.add(g.k("minAgreement"), f"{agreement} must be a share in (0, 1], e.g. 0.95")
    return ShadowVerdictGate(
        required=g.bool_("required", False),
        min_agreement=agreement if agreement is not None else 0.95,
        min_pairs=g.int_("minPairs", 100, 1),
    )


def parse_drift(raw: Any, key: str, problems: Problems) -> DriftTrigger:
    d = Reader(raw, key, problems)
    d.unknown(
        {
            "maxScore",
            "action",
            "baselineUri",
            "baselineSkipColumns",
            "minSamples",
            "windowMinutes",
            "baselineWindowMinutes",
        }
    )
    score = d.num("maxScore", None)
    if score is None:
        problems.add(d.k("maxScore"), "is required with drift (e.g. 0.2 for PSI)")
    elif score <= 0:
        problems.add(d.k("maxScore"), f"{score} must be > 0")
    action = d.str_("action", "rollback") or "rollback"
    if action not in DRIFT_ACTIONS:
        problems.add(d.k("action"), f"unknown action {action!r}; use rollback or notify")
    baseline = d.str_("baselineUri")
    if baseline and not (_S3_URI_RE.match(baseline) and baseline.endswith((".csv", ".jsonl", ".json"))):
        problems.add(
            d.k("baselineUri"),
            f"{baseline!r} is not an S3 URI of a .csv, .jsonl or .json (JSON lines) training sample",
        )
    skip = d.int_("baselineSkipColumns", 0, 0)
    if skip and not baseline:
        problems.add(
            d.k("baselineSkipColumns"), "only applies to a baselineUri CSV; add baselineUri or remove it"
        )
    min_samples = d.int_("minSamples", 500, 1, DRIFT_MAX_SAMPLES)
    window = d.int_("windowMinutes", 60, *DRIFT_WINDOW_RANGE)
    baseline_window = d.int_("baselineWindowMinutes", 24 * 60, *DRIFT_BASELINE_WINDOW_RANGE)
    if baseline and "baselineWindowMinutes" in d.data:
        problems.add(
            d.k("baselineWindowMinutes"),
            "only applies without baselineUri (stable captures as the baseline); remove one of them",
        )
    return DriftTrigger(
        max_score=score or 0.0,
        action=action,
        baseline_uri=baseline,
        baseline_skip_columns=skip,
        min_samples=min_samples,
        window_minutes=window,
        baseline_window_minutes=baseline_window,
    )
