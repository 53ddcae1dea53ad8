"""Preflight drift guard: would ``pulumi up`` undo what the runtime did to a live endpoint?

The provider never reads live variant weights, and any new endpoint config resets them to the
declared ones (docs/architecture.md, "Facts about the provider"). So before every ``pulumi up`` CI compares,
per endpoint, the live state (weights, rollout plan and progress, quarantine record) with what the
stack file declares, and refuses when the update would:

* undo a drain (the candidate is at 0 live, the stack would give it traffic again), unless the
  audit trail shows an operator cleared that version's quarantine after the drain (a deliberate
  re-release, runbook step 4),
* re-promote a quarantined version (as stable; as candidate the program keeps it at 0 itself),
* reset live weights in the middle of a progressive rollout.

It also warns (without failing) when the update changes the endpoint's set of variant names, e.g.
``[stable]`` -> ``[stable, candidate]`` when a release starts: SageMaker's deployment guardrails
require a blue/green update to keep the variant names, so such an update may be refused or run
without the declared canary/linear bake (docs/config.md, "Open risk").

:func:`check_endpoint` is pure (no I/O) so every rule is unit-tested on plain values;
:func:`gather_live` reads the live side with injected boto3 clients.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from rollback.runtime import names

Severity = Literal["error", "warning", "info"]
_BUSY = {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"}


@dataclass(frozen=True)
class Declared:
    """What the stack file declares for one endpoint (after the program's own quarantine rule)."""

    endpoint: str  # logical name
    physical: str
    stable: str
    candidate: str | None
    shadow: str | None
    strategy: str
    steps: tuple[float, ...]  # candidate percents, as in the rollout plan
    keep_variant_names: bool = False  # strategy.keepVariantNames: an idle candidate without a release

    @property
    def variants(self) -> frozenset[str]:
        """Variant names the program declares: ``stable``, plus ``candidate`` / ``shadow`` when set."""
        roles = {names.STABLE}
        if self.candidate is not None or self.keep_variant_names:
            roles.add(names.CANDIDATE)
        if self.shadow is not None:
            roles.add(names.SHADOW)
        return frozenset(roles)

    @property
    def plan_fields(self) -> dict[str, Any]:
        """Rollout-plan fields whose change gives a new endpoint config (bake times etc. do not)."""
        return {
            "stable": self.stable,
            "candidate": self.candidate,
            "strategy": self.strategy,
            "steps": [float(s) for s in self.steps],
        }


@dataclass(frozen=True)
class Live:
    """What runs in AWS for one endpoint; ``exists`` False when it was never deployed."""

    physical: str
    exists: bool
    status: str | None = None
    weights: dict[str, float] = field(default_factory=dict)  # role -> percent of traffic, live
    plan: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None
    quarantine: dict[str, Any] | None = None
    variants: frozenset[str] | None = None  # production and shadow variant names; None = not read
    #: The newest ``clear-quarantine`` audit item of the live candidate version with no drain of that
    #: version after it: the operator released the drained version again on purpose (runbook step 4).
    released: dict[str, Any] | None = None


@dataclass(frozen=True)
class Finding:
    """One preflight result; ``error`` findings make the command exit non-zero."""

    endpoint: str
    severity: Severity
    code: str
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "endpoint": self.endpoint,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "fix": self.fix,
        }


def declared_candidate_percent(declared: Declared, quarantine: dict[str, Any] | None) -> float:
    """Candidate share the program declares: the first rollout step, 0 while quarantined."""
    if declared.candidate is None:
        return 0.0
    if quarantine is not None and quarantine.get("version") == declared.candidate:
        return 0.0
    return float(declared.steps[0]) if declared.steps else 100.0


def _plan_changes(declared: Declared, live_plan: dict[str, Any] | None) -> bool:
    if live_plan is None:
        return True
    live = {
        "stable": live_plan.get("stable"),
        "candidate": live_plan.get("candidate"),
        "strategy": live_plan.get("strategy"),
        "steps": [float(s) for s in live_plan.get("steps") or []],
    }
    return live != declared.plan_fields


def check_endpoint(declared: Declared, live: Live) -> list[Finding]:
    """Every reason (and note) for this endpoint; see the module docstring for the rules."""
    ep = declared.endpoint
    if not live.exists:
        return [
            Finding(
                ep, "info", "new-endpoint", f"{declared.physical} does not exist yet; pulumi up creates it"
            )
        ]
    out = [finding for rule in RULES for finding in rule(declared, live)]
    if not out:
        out.append(Finding(ep, "info", "ok", f"{declared.physical}: pulumi up keeps the live traffic split"))
    return out


def _busy(declared: Declared, live: Live) -> list[Finding]:
    """An update now would conflict with one in flight."""
    ep = declared.endpoint
    out: list[Finding] = []
    if live.status in _BUSY:
        out.append(
            Finding(
                ep,
                "error",
                "endpoint-busy",
                f"{declared.physical} is {live.status}; an update now would conflict with it",
                "wait until `mlrollback status` shows InService, then run preflight again",
            )
        )
    return out


def _quarantined_versions(declared: Declared, live: Live) -> list[Finding]:
    """The stack declares a version that was rolled back (stable, shadow or candidate)."""
    ep = declared.endpoint
    out: list[Finding] = []
    q = live.quarantine
    qv = q.get("version") if q else None
    refusal = quarantined_stable(ep, declared.stable, q)
    if refusal is not None:
        out.append(refusal)
    if qv is not None and qv == declared.shadow:
        out.append(
            Finding(
                ep,
                "warning",
                "quarantined-shadow",
                f"release.shadow is {qv}, which was rolled back; it would receive copied traffic again",
                "pick another shadow version or clear the quarantine if that is intended",
            )
        )
    if qv is not None and qv == declared.candidate:
        out.append(
            Finding(
                ep,
                "info",
                "candidate-held-at-zero",
                f"candidate {qv} is quarantined: the program declares it at weight 0 (the drain is kept)",
                f"replace the candidate or `mlrollback revert --endpoint {ep}` to drop it",
            )
        )
    return out


def quarantined_stable(endpoint: str, stable: str, quarantine: dict[str, Any] | None) -> Finding | None:
    """The error for a stable that is the quarantined version (preflight, and revert before it writes)."""
    qv = quarantine.get("version") if quarantine else None
    if quarantine is None or qv is None or qv != stable:
        return None
    return Finding(
        endpoint,
        "error",
        "re-promotes-quarantined",
        f"release.stable is {qv}, which was rolled back at {quarantine.get('at', '?')} "
        f"({quarantine.get('reason', 'no reason')}); pulumi up would send it all traffic",
        f"set release.stable of {endpoint} to a healthy version (`mlrollback revert --endpoint {endpoint} "
        f"--to <version>`), or, if {qv} was fixed under the same name, "
        f"`mlrollback clear-quarantine --endpoint {endpoint}` after review",
    )


def _live_split(declared: Declared, live: Live) -> list[Finding]:
    """The update would undo a drain or reset a rollout mid-way (or re-release a cleared candidate)."""
    ep = declared.endpoint
    out: list[Finding] = []
    live_candidate = live.weights.get(names.CANDIDATE)
    live_version = (live.plan or {}).get("candidate", declared.candidate)
    target = declared_candidate_percent(declared, live.quarantine)
    drained = live_candidate == 0 and live.weights.get(names.STABLE, 0) > 0
    released = live.released if (live.released or {}).get("version") == declared.candidate else None
    if drained and declared.candidate is not None and declared.candidate == live_version and target > 0:
        if released is not None:
            out.append(
                Finding(
                    ep,
                    "info",
                    "re-releases-cleared",
                    f"candidate {declared.candidate} is drained live, and its quarantine was cleared at "
                    f"{released.get('at', '?')[:19]} by {released.get('actor', '?')} "
                    f"({released.get('reason') or 'no reason'}); pulumi up gives it {target:g}% again "
                    "and the rollout restarts",
                )
            )
        else:
            out.append(
                Finding(
                    ep,
                    "error",
                    "undoes-drain",
                    f"candidate {declared.candidate} is drained live (weight 0) but the stack declares it "
                    f"at {target:g}% and no quarantine record keeps it there; pulumi up would undo the "
                    "rollback",
                    f"drop or replace the candidate (`mlrollback revert --endpoint {ep}`); if the quarantine "
                    "record was deleted by hand but the drain stands, put the record back; to release "
                    f"{declared.candidate} again on purpose, record that decision with `mlrollback "
                    f"clear-quarantine --endpoint {ep} --reason ...` while its record exists (preflight "
                    "then lets pulumi up run)",
                )
            )
    elif live_candidate is not None and live_candidate > 0 and _plan_changes(declared, live.plan):
        state = (live.progress or {}).get("state")
        finalizing = (
            state == "ready-to-finalize" and declared.stable == live_version and declared.candidate is None
        )
        if abs(live_candidate - target) > 0.5 and not finalizing:
            step = (live.progress or {}).get("stepIndex")
            total = len((live.plan or {}).get("steps") or [])
            where = f" (rollout step {step + 1} of {total}, {state})" if isinstance(step, int) else ""
            out.append(
                Finding(
                    ep,
                    "error",
                    "resets-rollout",
                    f"the release or strategy changed while {live_version} serves {live_candidate:g}% "
                    f"live{where}; "
                    f"pulumi up would reset the candidate to {target:g}%",
                    "let the rollout finish and `mlrollback finalize` it, or drain it first with "
                    f"`mlrollback rollback --endpoint {ep}`, then change the release",
                )
            )
    return out


def _variant_set(declared: Declared, live: Live) -> list[Finding]:
    """The update changes the variant names SageMaker's guardrails want kept."""
    ep = declared.endpoint
    out: list[Finding] = []
    if live.variants is not None and live.variants != declared.variants:
        before, after = ", ".join(sorted(live.variants)), ", ".join(sorted(declared.variants))
        out.append(
            Finding(
                ep,
                "warning",
                "variant-set-changes",
                f"pulumi up changes the variants of {declared.physical} from [{before}] to [{after}]; "
                "SageMaker's deployment guardrails require a blue/green update to keep the variant "
                "names, so this update may be refused or run without its declared bake",
                "watch the update with `mlrollback status`; to keep the names on every later update, "
                f"set strategy.keepVariantNames: true on endpoint {ep} in the stack file (an idle "
                "candidate; docs/config.md)",
            )
        )
    return out


#: The preflight rules, in the order their findings are reported. A new rule is a function here.
RULES: tuple[Callable[[Declared, Live], list[Finding]], ...] = (
    _busy,
    _quarantined_versions,
    _live_split,
    _variant_set,
)


def _get_json_parameter(ssm: Any, name: str) -> dict[str, Any] | None:
    try:
        value = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        return None
    try:
        data = json.loads(value)
    except json.JSONDecodeError:
        # Fail safe: an unreadable record still means "something was rolled back here".
        return {"version": None, "invalid": value}
    return data if isinstance(data, dict) else {"invalid": value}


def live_weights(description: dict[str, Any]) -> dict[str, float]:
    """Role -> live traffic percent from a DescribeEndpoint response (shadow variants excluded)."""
    variants = description.get("ProductionVariants") or []
    raw = {v["VariantName"]: float(v.get("CurrentWeight", v.get("DesiredWeight", 0.0))) for v in variants}
    total = sum(raw.values())
    return {role: (w * 100.0 / total if total else 0.0) for role, w in raw.items()}


#: How many of an endpoint's newest audit items preflight reads to find a clear-quarantine.
RELEASE_LOOKBACK = 50


def release_after_drain(items: list[dict[str, Any]], version: str) -> dict[str, Any] | None:
    """The newest ``clear-quarantine`` of ``version`` in ``items`` (newest first), if no drain came later.

    Pure, on audit items as :func:`rollback.runtime.audit.query` returns them.
    """
    for item in items:
        if item.get("version") != version:
            continue
        if item.get("action") == "drain" and item.get("outcome", "done") == "done":
            return None
        if item.get("action") == "clear-quarantine":
            return item
    return None


def gather_live(
    sagemaker: Any,
    ssm: Any,
    stack: str,
    physical: str,
    *,
    dynamodb: Any = None,
    audit_table: str | None = None,
) -> Live:
    """Read one endpoint's live state: DescribeEndpoint plus its three SSM records.

    With ``dynamodb`` and ``audit_table``, a drained candidate without a quarantine record also
    costs one query of the newest :data:`RELEASE_LOOKBACK` audit items, to see whether an operator
    cleared its quarantine after the drain (:attr:`Live.released`).
    """
    try:
        desc = sagemaker.describe_endpoint(EndpointName=physical)
    except sagemaker.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
            return Live(physical, exists=False)
        raise
    variants = [v["VariantName"] for v in desc.get("ProductionVariants") or []]
    variants += [v["VariantName"] for v in desc.get("ShadowProductionVariants") or []]
    weights = live_weights(desc)
    plan = _get_json_parameter(ssm, names.rollout_plan_parameter(stack, physical))
    quarantine = _get_json_parameter(ssm, names.quarantine_parameter(stack, physical))
    released = None
    version = (plan or {}).get("candidate")
    if (
        dynamodb is not None
        and audit_table
        and quarantine is None
        and version
        and weights.get(names.CANDIDATE) == 0
    ):
        from rollback.runtime import audit

        try:
            items, _ = audit.query(dynamodb, audit_table, physical, limit=RELEASE_LOOKBACK)
        except dynamodb.exceptions.ClientError:
            items = []  # unreadable trail: no proof of a release, so the drain is guarded as before
        released = release_after_drain(items, str(version))
    return Live(
        physical,
        exists=True,
        status=desc.get("EndpointStatus"),
        weights=weights,
        variants=frozenset(variants),
        plan=plan,
        progress=_get_json_parameter(ssm, names.rollout_progress_parameter(stack, physical)),
        quarantine=quarantine,
        released=released,
    )
