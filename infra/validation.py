"""The one validator of a stack's ``mlrollback:*`` config, shared by every entry point.

It collects *every* problem before raising one :class:`rollback.runtime.errors.ConfigError` with one
line per problem (file, key, what to do), and runs before any resource is registered, so a bad
config never leaves a half-applied stack. The schema is documented in docs/config.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infra.blue_green import guardrail_total_seconds
from infra.config_reader import Problems, Reader, read_percent
from infra.config_sections import parse_shadow_gate, parse_strategy, parse_triggers, parse_version
from infra.limits import (
    EXECUTION_ROLE_SUFFIX,
    GUARDRAIL_BUDGET_SECONDS,
    PROJECT,
    STRATEGIES,
    model_name_part,
)
from infra.model import (
    Artifacts,
    EndpointConfig,
    Rehearsal,
    Release,
    StackConfig,
    Strategy,
    VersionSpec,
)
from rollback.runtime import names

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_KMS_KEY_ARN_RE = re.compile(r"^arn:aws[a-z-]*:kms:(?P<region>[a-z0-9-]+):\d{12}:key/[A-Za-z0-9-]+$")
_INSTANCE_RE = re.compile(r"^ml\.[a-z0-9-]+\.[a-z0-9]+$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


#: SageMaker model and endpoint-configuration names: at most 63 letters, digits and hyphens.
_SAGEMAKER_NAME_MAX = 63


#: Pulumi's auto-naming appends "-" and 7 random characters to the logical name.
_AUTONAME_SUFFIX = 8


#: IAM role names: at most 64 characters (the provider refuses a longer auto-name before any call).
_IAM_ROLE_NAME_MAX = 64


def _check_generated_names(
    physical: str, versions: Mapping[str, Any], name_key: str, versions_key: str, problems: Problems
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


def _parse_endpoint(
    raw: Any, key: str, stack: str, problems: Problems, root: Path | None
) -> EndpointConfig | None:
    r = Reader(raw, key, problems)
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
    versions = _parse_catalog(r, problems, root)
    if physical:
        _check_generated_names(physical, versions, r.k("name"), r.k("versions"), problems)
    release, rel = _parse_release(r, versions, problems)
    strategy = parse_strategy(r.data.get("strategy"), r.k("strategy"), problems)
    _check_strategy_fits(strategy, release, r.k("strategy"), rel, problems)
    triggers = parse_triggers(r.data.get("triggers"), r.k("triggers"), problems)
    dc = Reader(r.data.get("dataCapture"), r.k("dataCapture"), problems)
    dc.unknown({"samplingPercent"})
    capture = read_percent(dc, "samplingPercent", 20, lo_open=False)
    if triggers.drift is not None and capture == 0:
        problems.add(
            dc.k("samplingPercent"),
            "is 0 but triggers.drift needs captured inputs; set a share > 0 or remove triggers.drift",
        )
    return EndpointConfig(
        name=name,
        physical_name=physical,
        instance_type=instance_type,
        instance_count=instance_count,
        versions=versions,
        release=release,
        strategy=strategy,
        triggers=triggers,
        data_capture_percent=capture,
        tags=_parse_tags(r, problems),
    )


def _parse_catalog(r: Reader, problems: Problems, root: Path | None) -> dict[str, VersionSpec]:
    """The endpoint's version catalog (``versions``)."""
    versions: dict[str, VersionSpec] = {}
    vraw = r.data.get("versions")
    if not isinstance(vraw, Mapping) or not vraw:
        problems.add(
            r.k("versions"), "must be a non-empty mapping of version key -> {image|framework, modelDataUrl}"
        )
        return versions
    for vk, vv in vraw.items():
        versions[str(vk)] = parse_version(str(vk), vv, f"{r.k('versions')}.{vk}", problems, root)
    return versions


def _parse_release(
    r: Reader, versions: Mapping[str, VersionSpec], problems: Problems
) -> tuple[Release, Reader]:
    """The release (stable, candidate, shadow), each from the catalog; its reader, for later keys."""
    known = ", ".join(versions) or "none"
    rel = Reader(r.data.get("release"), r.k("release"), problems)
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
    return Release(stable=stable, candidate=candidate, shadow=shadow), rel


def _check_strategy_fits(
    strategy: Strategy, release: Release, skey: str, rel: Reader, problems: Problems
) -> None:
    """The strategy must suit the release (shadow needs a shadow and no candidate) and its blue/green
    waits must fit the provider's time limits."""
    shadow, candidate = release.shadow, release.candidate
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


def _parse_tags(r: Reader, problems: Problems) -> dict[str, str]:
    tags_raw = r.data.get("tags") or {}
    tags: dict[str, str] = {}
    if not isinstance(tags_raw, Mapping):
        problems.add(r.k("tags"), "must be a mapping of tag key -> string value")
        return tags
    for tk, tv in tags_raw.items():
        if not isinstance(tv, str | int | float) or isinstance(tv, bool):
            problems.add(f"{r.k('tags')}.{tk}", f"tag values must be strings, got {tv!r}")
        else:
            tags[str(tk)] = str(tv)
    return tags


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
    problems = Problems(source)
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
    environment = values.get("environment", stack)
    if not isinstance(environment, str):
        problems.add(f"{p}environment", f"must be a string, got {environment!r}")
        environment = stack
    production = values.get("production", False)
    if not isinstance(production, bool):
        problems.add(f"{p}production", f"must be true or false, got {production!r}")
        production = False
    artifacts = _parse_artifacts(values.get("artifacts"), region, problems)
    emails = _parse_emails(values.get("notifications"), problems)
    reh = Reader(values.get("rehearsal"), f"{p}rehearsal", problems)
    reh.unknown({"required", "from", "maxAgeHours", "shadowVerdict"})
    rehearsal = Rehearsal(
        required=reh.bool_("required", False),
        max_age_hours=reh.int_("maxAgeHours", 72, 1),
        source=_parse_rehearsal_source(reh, stack, problems),
        shadow_verdict=parse_shadow_gate(reh.data.get("shadowVerdict"), reh.k("shadowVerdict"), problems),
    )
    endpoints = _parse_endpoints(values.get("endpoints"), stack, problems, project_root)
    problems.raise_if_any()
    return StackConfig(
        stack=stack,
        source=source,
        region=region or "",
        environment=environment,
        production=production,
        artifacts=artifacts,
        emails=emails,
        rehearsal=rehearsal,
        endpoints=endpoints,
        project_root=str(project_root) if project_root else None,
    )


def _parse_artifacts(raw: Any, region: str | None, problems: Problems) -> Artifacts:
    """``artifacts``: a created bucket, or a brought-in one with (optionally) its regional KMS key."""
    art = Reader(raw, f"{PROJECT}:artifacts", problems)
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
    return Artifacts(create=create, bucket=bucket, kms_key_arn=kms_key_arn if not create else None)


def _parse_emails(raw: Any, problems: Problems) -> tuple[str, ...]:
    """``notifications.emails``: the addresses subscribed to the stack's topic."""
    notif = Reader(raw, f"{PROJECT}:notifications", problems)
    notif.unknown({"emails"})
    emails_raw = notif.data.get("emails") or []
    if not isinstance(emails_raw, list):
        problems.add(notif.k("emails"), "must be a list of e-mail addresses")
        return ()
    emails: list[str] = []
    for i, e in enumerate(emails_raw):
        if not isinstance(e, str) or not _EMAIL_RE.match(e):
            problems.add(f"{notif.k('emails')}[{i}]", f"{e!r} is not an e-mail address")
        else:
            emails.append(e)
    return tuple(emails)


def _parse_rehearsal_source(reh: Reader, stack: str, problems: Problems) -> str | None:
    """``rehearsal.from``: the stack whose drills count; required with ``rehearsal.required: true``."""
    source = reh.str_("from")
    if source is None:
        if reh.data.get("required") is True:
            problems.add(
                reh.k("from"),
                "is required with required: true; name the stack whose drills count (e.g. from: staging)",
            )
        return None
    try:
        names.check_stack(source)
    except ValueError as exc:
        problems.add(reh.k("from"), f"{exc}")
        return None
    if source == stack:
        problems.add(reh.k("from"), f"is this stack ({stack}); name the stack that rehearses before it")
        return None
    return source


def _parse_endpoints(
    raw: Any, stack: str, problems: Problems, project_root: Path | None
) -> tuple[EndpointConfig, ...]:
    """``endpoints``: a non-empty list with unique names."""
    p = f"{PROJECT}:"
    if not isinstance(raw, list) or not raw:
        problems.add(f"{p}endpoints", "must be a non-empty list of endpoints; declare at least one")
        return ()
    endpoints: list[EndpointConfig] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        ep = _parse_endpoint(item, f"{p}endpoints[{i}]", stack, problems, project_root)
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
    return tuple(endpoints)
