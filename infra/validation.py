"""The one validator of a stack's ``mlrollback:*`` config, shared by every entry point.

It collects *every* problem before raising one :class:`rollback.runtime.errors.ConfigError` with one
line per problem (file, key, what to do), and runs before any resource is registered, so a bad
config never leaves a half-applied stack. The schema is documented in docs/config.md.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infra.blue_green import guardrail_total_seconds
from infra.limits import (
    DRIFT_ACTIONS,
    DRIFT_BASELINE_WINDOW_RANGE,
    DRIFT_MAX_SAMPLES,
    DRIFT_WINDOW_RANGE,
    ECR_IMAGE_RE,
    EXECUTION_ROLE_SUFFIX,
    FRAMEWORK_REPOSITORIES,
    GUARDRAIL_BUDGET_SECONDS,
    MAX_EXECUTION_TIMEOUT_RANGE,
    METRIC_SOURCES,
    PROJECT,
    STRATEGIES,
    WAIT_INTERVAL_RANGE,
    model_name_part,
)
from infra.model import (
    Artifacts,
    DriftTrigger,
    EndpointConfig,
    QualityTrigger,
    Rehearsal,
    Release,
    ShadowVerdictGate,
    StackConfig,
    Strategy,
    Triggers,
    VersionSpec,
)
from rollback.runtime import names
from rollback.runtime.errors import ConfigError

_S3_URI_RE = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/\S+$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_KMS_KEY_ARN_RE = re.compile(r"^arn:aws[a-z-]*:kms:(?P<region>[a-z0-9-]+):\d{12}:key/[A-Za-z0-9-]+$")
_INSTANCE_RE = re.compile(r"^ml\.[a-z0-9-]+\.[a-z0-9]+$")
_VERSION_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class _Problems:
    """Collects problems as (key, message) so every mistake is reported in one go."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.items.append(f"{self.source}: {key}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            count = len(self.items)
            head = f"{count} problem{'s' if count > 1 else ''} in the stack config:"
            raise ConfigError("\n".join([head, *self.items]))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Reader:
    """Typed getters over one mapping that record a problem instead of raising."""

    def __init__(self, data: Any, key: str, problems: _Problems) -> None:
        self.key = key
        self.problems = problems
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            problems.add(key, f"must be a mapping, got {type(data).__name__}")
            data = {}
        self.data = data

    def k(self, name: str) -> str:
        return f"{self.key}.{name}"

    def unknown(self, allowed: set[str]) -> None:
        for name in self.data:
            if name not in allowed:
                self.problems.add(
                    self.k(str(name)), f"unknown key; expected one of {', '.join(sorted(allowed))}"
                )

    def str_(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.data.get(name)
        if value is None:
            if required:
                self.problems.add(self.k(name), "is required; add it")
            return default
        if not isinstance(value, str) or not value.strip():
            self.problems.add(self.k(name), f"must be a non-empty string, got {value!r}")
            return default
        return value

    def int_(self, name: str, default: int, lo: int | None = None, hi: int | None = None) -> int:
        value = self.data.get(name, default)
        if not _is_int(value):
            self.problems.add(self.k(name), f"must be an integer, got {value!r}")
            return default
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            self.problems.add(self.k(name), f"{value} is out of range; use {_range(lo, hi)}")
        return value

    def num(self, name: str, default: float | None) -> float | None:
        value = self.data.get(name, default)
        if value is None:
            return None
        if not _is_number(value):
            self.problems.add(self.k(name), f"must be a number, got {value!r}")
            return default
        return value

    def bool_(self, name: str, default: bool) -> bool:
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            self.problems.add(self.k(name), f"must be true or false, got {value!r}")
            return default
        return value


def _range(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f"{lo}-{hi}"
    return f">= {lo}" if lo is not None else f"<= {hi}"


def _percent(r: _Reader, name: str, default: int, *, lo_open: bool = True) -> int:
    value = r.data.get(name, default)
    if not _is_int(value):
        r.problems.add(r.k(name), f"must be an integer percent, got {value!r}")
        return default
    if not (0 < value <= 100 if lo_open else 0 <= value <= 100):
        bound = "(0, 100]" if lo_open else "[0, 100]"
        r.problems.add(r.k(name), f"{value} is out of range; a percent in {bound}")
    return value


#: SageMaker model and endpoint-configuration names: at most 63 letters, digits and hyphens.
_SAGEMAKER_NAME_MAX = 63


#: Pulumi's auto-naming appends "-" and 7 random characters to the logical name.
_AUTONAME_SUFFIX = 8


#: IAM role names: at most 64 characters (the provider refuses a longer auto-name before any call).
_IAM_ROLE_NAME_MAX = 64


def _check_generated_names(
    physical: str, versions: Mapping[str, Any], name_key: str, versions_key: str, problems: _Problems
) -> None:
    """Auto-generated names must be valid SageMaker and IAM names, or `pulumi up` fails mid-way."""
    role_len = len(f"{physical}{EXECUTION_ROLE_SUFFIX}") + _AUTONAME_SUFFIX
    if role_len > _IAM_ROLE_NAME_MAX:
        longest = _IAM_ROLE_NAME_MAX - _AUTONAME_SUFFIX - len(EXECUTION_ROLE_SUFFIX)
        problems.add(
            name_key,
            f"the endpoint's execution role name '{physical}{EXECUTION_ROLE_SUFFIX}-xxxxxxx' would be "
            f"{role_len} characters and IAM allows {_IAM_ROLE_NAME_MAX}; shorten the endpoint name so that "
            f"'{physical}' (name + '-' + stack) is at most {longest} characters",
        )
    config_len = len(f"{physical}-config") + _AUTONAME_SUFFIX
    if config_len > _SAGEMAKER_NAME_MAX:
        longest = _SAGEMAKER_NAME_MAX - _AUTONAME_SUFFIX - len("-config")
        problems.add(
            name_key,
            f"the endpoint configuration name '{physical}-config-xxxxxxx' would be {config_len} characters "
            f"and SageMaker allows {_SAGEMAKER_NAME_MAX}; shorten the endpoint name so that "
            f"'{physical}' (name + '-' + stack) is at most {longest} characters",
        )
    seen: dict[str, str] = {}
    for version in versions:
        part = model_name_part(version)
        if part in seen:
            problems.add(
                f"{versions_key}.{version}",
                f"version keys {seen[part]!r} and {version!r} give the same SageMaker model name "
                f"part {part!r} ('.' and '_' become '-'); rename one",
            )
        seen.setdefault(part, version)
        model_len = len(f"{physical}-model-{part}") + _AUTONAME_SUFFIX
        if model_len > _SAGEMAKER_NAME_MAX:
            problems.add(
                f"{versions_key}.{version}",
                f"the model name '{physical}-model-{part}-xxxxxxx' would be {model_len} characters and "
                f"SageMaker allows {_SAGEMAKER_NAME_MAX}; use a shorter version key or endpoint name",
            )


def _parse_version(key: str, raw: Any, vkey: str, problems: _Problems, root: Path | None) -> VersionSpec:
    r = _Reader(raw, vkey, problems)
    r.unknown({"image", "framework", "frameworkVersion", "modelDataUrl", "schema"})
    if not _VERSION_KEY_RE.match(key):
        problems.add(
            vkey,
            "version keys must be 1-32 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    image = r.str_("image")
    framework = r.str_("framework")
    framework_version = r.str_("frameworkVersion")
    if "frameworkVersion" in r.data and _is_number(r.data["frameworkVersion"]):
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
    )


def _parse_strategy(raw: Any, key: str, problems: _Problems) -> Strategy:
    r = _Reader(raw, key, problems)
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
    if not isinstance(steps_raw, list) or not steps_raw or not all(_is_int(s) for s in steps_raw):
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
    if _is_int(r.data.get("maxExecutionTimeoutSeconds", 1800)) and not lo <= max_exec <= hi:
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
        step_percent=_percent(r, "stepPercent", 20),
        candidate_percent=_percent(r, "candidatePercent", 50),
        shadow_percent=_percent(r, "shadowPercent", 100),
        bake_minutes=bake if bake is not None else 5,
        min_requests_per_step=r.int_("minRequestsPerStep", 100, 0),
        guardrail_wait_seconds=guardrail_wait,
        max_execution_timeout_seconds=max_exec,
        keep_variant_names=r.bool_("keepVariantNames", False),
    )


def _parse_triggers(raw: Any, key: str, problems: _Problems) -> Triggers:
    r = _Reader(raw, key, problems)
    r.unknown(
        {
            "metrics",
            "periodSeconds",
            "evaluationPeriods",
            "datapointsToAlarm",
            "errorRate",
            "p99LatencyMs",
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

    quality = None
    if r.data.get("quality") is not None:
        q = _Reader(r.data["quality"], r.k("quality"), problems)
        q.unknown({"metric", "min", "max"})
        qmin, qmax = q.num("min", None), q.num("max", None)
        if qmin is None and qmax is None:
            problems.add(q.key, "set min and/or max for the quality metric")
        if qmin is not None and qmax is not None and qmin >= qmax:
            problems.add(q.key, f"min {qmin} must be below max {qmax}")
        quality = QualityTrigger(metric=q.str_("metric", "quality") or "quality", min=qmin, max=qmax)

    drift = _parse_drift(r.data["drift"], r.k("drift"), problems) if r.data.get("drift") is not None else None

    return Triggers(
        metrics=metrics,
        period_seconds=period,
        evaluation_periods=evaluation,
        datapoints_to_alarm=datapoints,
        error_rate=error_rate if error_rate is not None else 0.05,
        p99_latency_ms=latency if latency is not None else 1000,
        quality=quality,
        drift=drift,
    )


def _parse_shadow_gate(raw: Any, key: str, problems: _Problems) -> ShadowVerdictGate:
    if raw is None:
        return ShadowVerdictGate()
    g = _Reader(raw, key, problems)
    g.unknown({"required", "minAgreement", "minPairs"})
    agreement = g.num("minAgreement", 0.95)
    if agreement is not None and not 0 < agreement <= 1:
        problems.add(g.k("minAgreement"), f"{agreement} must be a share in (0, 1], e.g. 0.95")
    return ShadowVerdictGate(
        required=g.bool_("required", False),
        min_agreement=agreement if agreement is not None else 0.95,
        min_pairs=g.int_("minPairs", 100, 1),
    )


def _parse_drift(raw: Any, key: str, problems: _Problems) -> DriftTrigger:
    d = _Reader(raw, key, problems)
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


def _parse_endpoint(
    raw: Any, key: str, stack: str, problems: _Problems, root: Path | None
) -> EndpointConfig | None:
    r = _Reader(raw, key, problems)
    r.unknown(
        {
            "name",
            "instanceType",
            "instanceCount",
            "versions",
            "release",
            "strategy",
            "triggers",
            "dataCapture",
            "tags",
        }
    )
    name = r.str_("name", required=True) or ""
    physical = ""
    if name:
        try:
            physical = names.endpoint_name(stack, name)
        except ValueError as exc:
            problems.add(r.k("name"), f"{exc}; shorten or rename it")
    instance_type = r.str_("instanceType", required=True) or ""
    if instance_type and not _INSTANCE_RE.match(instance_type):
        problems.add(
            r.k("instanceType"), f"{instance_type!r} is not a SageMaker instance type like ml.m5.large"
        )
    instance_count = r.int_("instanceCount", 1, 1)

    versions: dict[str, VersionSpec] = {}
    vraw = r.data.get("versions")
    if not isinstance(vraw, Mapping) or not vraw:
        problems.add(
            r.k("versions"), "must be a non-empty mapping of version key -> {image|framework, modelDataUrl}"
        )
    else:
        for vk, vv in vraw.items():
            versions[str(vk)] = _parse_version(str(vk), vv, f"{r.k('versions')}.{vk}", problems, root)
    known = ", ".join(versions) or "none"
    if physical:
        _check_generated_names(physical, versions, r.k("name"), r.k("versions"), problems)

    rel = _Reader(r.data.get("release"), r.k("release"), problems)
    rel.unknown({"stable", "candidate", "shadow"})
    stable = rel.str_("stable", required=True) or ""
    candidate = rel.str_("candidate")
    shadow = rel.str_("shadow")
    for role, version in (("stable", stable), ("candidate", candidate), ("shadow", shadow)):
        if version and versions and version not in versions:
            problems.add(
                rel.k(role),
                f"{version!r} is not in the version catalog (known: {known}); "
                "add it under versions or fix the release",
            )
    if candidate and candidate == stable:
        problems.add(
            rel.k("candidate"), f"{candidate!r} equals stable; a candidate must be a different version"
        )
    if shadow and shadow == stable:
        problems.add(rel.k("shadow"), f"{shadow!r} equals stable; a shadow must be a different version")

    strategy = _parse_strategy(r.data.get("strategy"), r.k("strategy"), problems)
    skey = r.k("strategy")
    if strategy.type == "shadow":
        if not shadow:
            problems.add(f"{skey}.type", "strategy shadow needs release.shadow; add the shadow version")
        if candidate:
            problems.add(
                rel.k("candidate"),
                "strategy shadow serves one production variant "
                "(SageMaker allows one production + one shadow); "
                "remove the candidate or use canary/linear/ab",
            )
    elif shadow:
        problems.add(rel.k("shadow"), f"a shadow version needs strategy.type: shadow (got {strategy.type!r})")
    if strategy.keep_variant_names and (shadow or strategy.type == "shadow"):
        problems.add(
            f"{skey}.keepVariantNames",
            "an idle candidate would be a second production variant, but SageMaker allows only one "
            "production variant next to a shadow variant; remove keepVariantNames (or set it to false) "
            "for strategy shadow",
        )
    if strategy.type in STRATEGIES:
        total = guardrail_total_seconds(strategy)
        budget = min(GUARDRAIL_BUDGET_SECONDS, strategy.max_execution_timeout_seconds)
        if total > budget:
            problems.add(
                f"{skey}.guardrailWaitSeconds",
                f"the blue/green update would wait {total} s in total, more than {budget} s "
                f"(min of maxExecutionTimeoutSeconds and {GUARDRAIL_BUDGET_SECONDS} s under the provider's "
                "60-minute waiter); lower guardrailWaitSeconds",
            )

    triggers = _parse_triggers(r.data.get("triggers"), r.k("triggers"), problems)

    dc = _Reader(r.data.get("dataCapture"), r.k("dataCapture"), problems)
    dc.unknown({"samplingPercent"})
    capture = _percent(dc, "samplingPercent", 20, lo_open=False)
    if triggers.drift is not None and capture == 0:
        problems.add(
            dc.k("samplingPercent"),
            "is 0 but triggers.drift needs captured inputs; set a share > 0 or remove triggers.drift",
        )

    tags_raw = r.data.get("tags") or {}
    tags: dict[str, str] = {}
    if not isinstance(tags_raw, Mapping):
        problems.add(r.k("tags"), "must be a mapping of tag key -> string value")
    else:
        for tk, tv in tags_raw.items():
            if not isinstance(tv, str | int | float) or isinstance(tv, bool):
                problems.add(f"{r.k('tags')}.{tk}", f"tag values must be strings, got {tv!r}")
            else:
                tags[str(tk)] = str(tv)

    return EndpointConfig(
        name=name,
        physical_name=physical,
        instance_type=instance_type,
        instance_count=instance_count,
        versions=versions,
        release=Release(stable=stable, candidate=candidate, shadow=shadow),
        strategy=strategy,
        triggers=triggers,
        data_capture_percent=capture,
        tags=tags,
    )


def validate(
    values: Mapping[str, Any],
    *,
    stack: str,
    region: str | None,
    source: str,
    project_root: Path | None = None,
) -> StackConfig:
    """Build a :class:`StackConfig` from raw ``mlrollback:`` values, or raise ConfigError (every problem).

    ``values`` maps keys without the ``mlrollback:`` prefix to already-decoded YAML/JSON values.
    """
    p = f"{PROJECT}:"
    problems = _Problems(source)
    try:
        names.check_stack(stack)
    except ValueError as exc:
        problems.add("stack", f"{exc}; rename the stack file")
    if not region:
        problems.add("aws:region", "is required; set it (e.g. aws:region: eu-west-1)")

    allowed = {"environment", "production", "artifacts", "notifications", "rehearsal", "endpoints"}
    for key in values:
        if key not in allowed:
            problems.add(f"{p}{key}", f"unknown key; expected one of {', '.join(sorted(allowed))}")

    top = _Reader(values, PROJECT, problems)
    environment = values.get("environment", stack)
    if not isinstance(environment, str):
        problems.add(f"{p}environment", f"must be a string, got {environment!r}")
        environment = stack
    production = values.get("production", False)
    if not isinstance(production, bool):
        problems.add(f"{p}production", f"must be true or false, got {production!r}")
        production = False
    del top

    art = _Reader(values.get("artifacts"), f"{p}artifacts", problems)
    art.unknown({"create", "bucket", "kmsKeyArn"})
    create = art.bool_("create", True)
    bucket = art.str_("bucket")
    kms_key_arn = art.str_("kmsKeyArn")
    if kms_key_arn and create:
        problems.add(
            art.k("kmsKeyArn"), "only with create: false (a created bucket gets its own key); remove it"
        )
    elif kms_key_arn and not _KMS_KEY_ARN_RE.match(kms_key_arn):
        problems.add(
            art.k("kmsKeyArn"),
            f"{kms_key_arn!r} is not a KMS key ARN; use arn:aws:kms:<region>:<account>:key/<key id> "
            "(not an alias: IAM grants need the key ARN)",
        )
    elif kms_key_arn and region and (key_region := _KMS_KEY_ARN_RE.match(kms_key_arn)["region"]) != region:
        # KMS keys are regional: CreateEndpointConfig and data capture would fail mid-`pulumi up`.
        problems.add(
            art.k("kmsKeyArn"),
            f"the key is in {key_region} but the stack deploys to {region}; use a key (or a multi-Region "
            f"replica key) in {region}",
        )
    if not create and not bucket:
        problems.add(art.k("bucket"), "is required when create is false; name your existing bucket")
    if create and bucket:
        problems.add(art.k("bucket"), "only with create: false (a created bucket is auto-named); remove it")
    if bucket and not _BUCKET_RE.match(bucket):
        problems.add(art.k("bucket"), f"{bucket!r} is not a valid S3 bucket name")

    notif = _Reader(values.get("notifications"), f"{p}notifications", problems)
    notif.unknown({"emails"})
    emails_raw = notif.data.get("emails") or []
    emails: list[str] = []
    if not isinstance(emails_raw, list):
        problems.add(notif.k("emails"), "must be a list of e-mail addresses")
    else:
        for i, e in enumerate(emails_raw):
            if not isinstance(e, str) or not _EMAIL_RE.match(e):
                problems.add(f"{notif.k('emails')}[{i}]", f"{e!r} is not an e-mail address")
            else:
                emails.append(e)

    reh = _Reader(values.get("rehearsal"), f"{p}rehearsal", problems)
    reh.unknown({"required", "maxAgeHours", "shadowVerdict"})
    rehearsal = Rehearsal(
        required=reh.bool_("required", False),
        max_age_hours=reh.int_("maxAgeHours", 72, 1),
        shadow_verdict=_parse_shadow_gate(reh.data.get("shadowVerdict"), reh.k("shadowVerdict"), problems),
    )

    endpoints: list[EndpointConfig] = []
    eps_raw = values.get("endpoints")
    if not isinstance(eps_raw, list) or not eps_raw:
        problems.add(f"{p}endpoints", "must be a non-empty list of endpoints; declare at least one")
    else:
        seen: dict[str, int] = {}
        for i, raw in enumerate(eps_raw):
            ep = _parse_endpoint(raw, f"{p}endpoints[{i}]", stack, problems, project_root)
            if ep is None or not ep.name:
                continue
            if ep.name in seen:
                problems.add(
                    f"{p}endpoints[{i}].name",
                    f"duplicate endpoint name {ep.name!r} (also endpoints[{seen[ep.name]}]); "
                    "names must be unique",
                )
            else:
                seen[ep.name] = i
            endpoints.append(ep)

    problems.raise_if_any()
    return StackConfig(
        stack=stack,
        source=source,
        region=region or "",
        environment=environment,
        production=production,
        artifacts=Artifacts(create=create, bucket=bucket, kms_key_arn=kms_key_arn if not create else None),
        emails=tuple(emails),
        rehearsal=rehearsal,
        endpoints=tuple(endpoints),
        project_root=str(project_root) if project_root else None,
    )
