"""The rehearsal gate: has this exact version been rehearsed where it came from?

One function decides it, for every way a version can reach a stack with ``rehearsal.required``:
``mlrollback promote`` (before it writes) and ``mlrollback preflight`` (before every ``pulumi up``,
whoever edited the stack file). The evidence is read from the source stack (``rehearsal.from``)
and the target's own audit trail (docs/runbook.md, "The rehearsal gate"):

* a passing ``drill`` item of the version in the source's audit trail whose artifact digest
  (:func:`artifact_digest`) is the one the target declares, no older than ``maxAgeHours`` at the
  moment the version entered the target (its first ``promote`` or ``deploy`` item there), or now
  when it has not entered yet: a rollout that takes longer than the window is not blocked, a
  hand-typed version never has an entry and needs a fresh drill;
* a healthy source: no alarm of the endpoint in ALARM, the version not quarantined there, and
  its rollout there finished (``ready-to-finalize``) or the version serving as stable.

A stable that the target already serves, or served as stable before (a ``deploy`` item records
it), is a rollback, not a new version: it needs no rehearsal, so a revert is never held up.
Only drills in the source's audit trail count: on AWS, ``mlrollback drill --stack <source>``; on a
running sandbox, the same drill records into the sandbox's trail and counts for sandbox
promotions only. The self-contained simulation (``drill --sandbox``) writes no trail anywhere.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rollback.runtime import audit, clock

#: Pages of 100 audit items read from a trail when looking for a version's entry or drills.
LOOKBACK_PAGES = 20


def artifact_digest(spec: Any) -> str:
    """``sha256:<hex>`` identifying the artifact an ``infra.model.VersionSpec`` runs.

    Over the image (or framework and its version) and the model: its declared ``modelDigest``
    when given, else its ``modelDataUrl``. So a model copied into per-stack buckets is one artifact
    only when both catalogs declare the same ``modelDigest``; with images pinned by digest
    (``@sha256:``) the whole identity is of bytes, with a mutable tag it is of a reference.
    """
    fields = {
        "image": spec.image,
        "framework": spec.framework,
        "frameworkVersion": spec.framework_version,
        "model": spec.model_digest or spec.model_data_url,
    }
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """When and how a version entered a stack (a ``promote`` or ``deploy`` audit item)."""

    at: datetime
    how: str  # "promote 01J..." / "deploy 01J..."


def _items(clients: Any, table: str, physical: str, since: datetime | None = None) -> list[dict[str, Any]]:
    """Up to :data:`LOOKBACK_PAGES` pages of ``physical``'s audit items, newest first.

    A table that does not exist (the stack was never deployed) holds nothing.
    """
    from botocore.exceptions import ClientError

    out: list[dict[str, Any]] = []
    cursor = None
    for _ in range(LOOKBACK_PAGES):
        try:
            items, cursor = audit.query(
                clients.dynamodb, table, physical, limit=100, cursor=cursor, since=since
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return out
            raise
        out += items
        if cursor is None:
            break
    return out


def _at(item: dict[str, Any]) -> datetime | None:
    try:
        return clock.parse_iso(str(item.get("at", "")).split("#", 1)[0])
    except ValueError:
        return None


def _release(item: dict[str, Any]) -> dict[str, Any]:
    release = (item.get("detail") or {}).get("release")
    return release if isinstance(release, dict) else {}


def entered(items: list[dict[str, Any]], version: str) -> Entry | None:
    """The oldest ``promote`` (done) of ``version`` or ``deploy`` declaring it, in the target's ``items``."""
    first: Entry | None = None
    for item in items:
        action = item.get("action")
        promoted = (
            action == "promote" and item.get("outcome", "done") == "done" and item.get("version") == version
        )
        deployed = action == "deploy" and version in (
            _release(item).get("stable"),
            _release(item).get("candidate"),
        )
        at = _at(item)
        if (promoted or deployed) and at is not None and (first is None or at < first.at):
            item_id = str(item.get("at", "")).rsplit("#", 1)[-1]
            first = Entry(at, f"{action} {item_id}")
    return first


def served_as_stable(items: list[dict[str, Any]], version: str) -> Entry | None:
    """The newest ``deploy`` item of the target whose release had ``version`` as stable."""
    for item in items:
        if item.get("action") == "deploy" and _release(item).get("stable") == version:
            at = _at(item)
            if at is not None:
                return Entry(at, "deploy " + str(item.get("at", "")).rsplit("#", 1)[-1])
    return None


def source_health(src: Any, endpoint: str, version: str) -> list[str]:
    """Why the source does not vouch for ``version`` now (alarms, quarantine, rollout); [] if it does."""
    from rollback.ops.status import endpoint_status
    from rollback.runtime.errors import NotFoundError

    failed: list[str] = []
    sep = src.endpoint(endpoint)
    try:
        st = endpoint_status(src.clients, src.settings, sep.physical_name)
    except NotFoundError:
        return [f"{src.stack}: {sep.physical_name} is not deployed there, so {version} was not rehearsed"]
    alarming = [a["name"] for a in st["alarms"] if a.get("state") == "ALARM"]
    if alarming:
        failed.append(f"{src.stack}: alarms in ALARM on {sep.physical_name}: {', '.join(alarming)}")
    q = st.get("quarantine")
    if q and q.get("version") == version:
        failed.append(f"{src.stack}: {version} is quarantined ({q.get('reason')})")
    plan, progress = st.get("plan") or {}, st.get("progress") or {}
    if plan.get("stable") == version:
        return failed  # serving as stable there (finalized, or the stable of a newer rollout)
    if plan.get("candidate") == version:
        if progress.get("state") != "ready-to-finalize":
            failed.append(
                f"{src.stack}: rollout of {version} is not finished "
                f"(state {progress.get('state') or 'none'}); wait for ready-to-finalize"
            )
        return failed
    failed.append(f"{src.stack}: {version} is not deployed there (neither a finished candidate nor stable)")
    return failed


def drill_evidence(
    src: Any, endpoint: str, version: str, digest: str, max_age_hours: float, entry: Entry | None = None
) -> list[str]:
    """[] when a passing drill of ``version`` with ``digest`` lies in the ``max_age_hours`` before ``entry``.

    ``entry`` None (the version has not entered the target) means before now. The failure says
    what was found and what to run.
    """
    until = entry.at if entry else clock.now()
    since = until - timedelta(hours=max_age_hours)
    sep = src.endpoint(endpoint)
    drills = [
        i
        for i in _items(src.clients, src.settings.audit_table, sep.physical_name, since=since)
        if i.get("action") == "drill" and i.get("version") == version and (_at(i) or until) <= until
    ]
    detail = [i.get("detail") or {} for i in drills if i.get("outcome") == "done"]
    passing = [d for d in detail if d.get("passed", True)]
    if any(d.get("artifact") == digest for d in passing):
        return []
    when = f"it entered ({entry.how} at {clock.iso(entry.at)[:19]})" if entry else "now"
    window = f"in the {max_age_hours:g} h before {when}"
    run = f"run `mlrollback drill --stack {src.stack} --endpoint {endpoint}`"
    if passing and not any(d.get("artifact") for d in passing):
        return [
            f"{src.stack}: the passing drills of {version} {window} recorded no artifact digest "
            f"(an mlrollback older than the rehearsal gate ran them); {run}"
        ]
    if passing:
        seen = ", ".join(sorted({str(d.get("artifact"))[:19] for d in passing}))
        return [
            f"{src.stack}: the passing drills of {version} {window} rehearsed another artifact ({seen}, "
            f"not {digest[:19]}): the two stacks' catalogs differ for {version}; promote it again from "
            f"{src.stack}, or {run}"
        ]
    return [f"{src.stack}: no passing drill of {version} {window}; {run}"]


def evidence(
    src: Any,
    endpoint: str,
    version: str,
    digest: str,
    max_age_hours: float,
    target_items: list[dict[str, Any]],
) -> list[str]:
    """Every reason ``version`` (declaring ``digest`` in the target) lacks rehearsal evidence; [] if none."""
    return source_health(src, endpoint, version) + drill_evidence(
        src, endpoint, version, digest, max_age_hours, entered(target_items, version)
    )


def target_items(dst: Any, endpoint: str) -> list[dict[str, Any]]:
    """The target endpoint's audit items that record versions entering it (none before its first deploy)."""
    return [
        i
        for i in _items(dst.clients, dst.settings.audit_table, dst.endpoint(endpoint).physical_name)
        if i.get("action") in ("promote", "deploy")
    ]


def live_plan(ctx: Any, endpoint: str) -> dict[str, Any] | None:
    """The endpoint's live rollout plan record (what the last ``pulumi up`` deployed), or None."""
    from rollback.runtime import names, records

    physical = ctx.endpoint(endpoint).physical_name
    text = records.get_text(ctx.clients.ssm, names.rollout_plan_parameter(ctx.stack, physical))
    try:
        plan = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    return plan if isinstance(plan, dict) else None


@dataclass(frozen=True)
class GateResult:
    """What the rehearsal gate found for one endpoint of a target stack."""

    endpoint: str
    failed: tuple[str, ...]
    notes: tuple[str, ...]


def check_declared(
    dst: Any,
    src: Any,
    endpoint: str,
    live_plan: dict[str, Any] | None,
    quarantined: str | None,
    *,
    deployed: bool = True,
) -> GateResult:
    """The gate for what ``dst``'s stack file declares on ``endpoint`` (``preflight``).

    ``live_plan`` is the target's live rollout plan; ``quarantined`` the version of its quarantine
    record, held at weight 0 by the program and so not gated. On an endpoint not ``deployed`` yet
    the stable has nothing to roll back to and no users: it needs the source's health only (it
    serves there as stable, or finished its rollout), not a drill, which rehearses a candidate.
    """
    from rollback.runtime.errors import MLRollbackError

    ep = dst.endpoint(endpoint)
    reh = dst.cfg.rehearsal
    try:
        src.endpoint(endpoint)
    except MLRollbackError:
        return GateResult(
            endpoint,
            (
                f"{src.stack} declares no endpoint {endpoint}, so nothing of it was rehearsed there; add it "
                f"to {src.stack}'s stack file and drill it, or set rehearsal.required: false for {dst.stack}",
            ),
            (),
        )
    items = target_items(dst, endpoint)
    failed: list[str] = []
    notes: list[str] = []
    live_stable = (live_plan or {}).get("stable")
    for role, version in (("candidate", ep.release.candidate), ("stable", ep.release.stable)):
        if version is None:
            continue
        if role == "candidate" and version == quarantined:
            notes.append(f"candidate {version} is quarantined and held at weight 0: no rehearsal needed")
            continue
        if role == "stable":
            if version == live_stable:
                continue
            if not deployed:
                failed += [f"stable {version}: {w}" for w in source_health(src, endpoint, version)]
                continue
            before = served_as_stable(items, version)
            if before is not None:
                notes.append(
                    f"stable {version} served as stable here before ({before.how} at "
                    f"{clock.iso(before.at)[:19]}): a rollback needs no rehearsal"
                )
                continue
        digest = artifact_digest(ep.versions[version])
        why = evidence(src, endpoint, version, digest, float(reh.max_age_hours), items)
        failed += [f"{role} {version}: {w}" for w in why]
    return GateResult(endpoint, tuple(failed), tuple(notes))
