"""Deploy records: one ``deploy`` audit item per endpoint after each ``pulumi up``.

The audit trail must say what the stack declared at each deployment, so that ``mlrollback revert
--to-deployment <id>`` can put a known-good release back and the history shows every rollout next
to the drains it caused. The Pulumi engine does not write these items itself (the program only
declares resources), so CI calls ``mlrollback record-deploy`` right after ``pulumi up``.

Writes are idempotent per stack + commit + endpoint: a re-run CI job finds the item it wrote the
first time and returns it instead of adding a second one. Without a commit (outside a git
checkout) every call records a new item, because nothing identifies "the same" deployment.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rollback.runtime import audit, clock, names


def deploy_key(stack: str, commit: str, physical: str) -> str:
    """Idempotency key of the deploy record of ``physical`` at ``commit`` (also a deployment id)."""
    return f"deploy:{stack}:{commit}:{physical}"


def _summary(release: dict[str, str | None], strategy: str) -> str:
    parts = [f"stable {release['stable']}"]
    parts += [f"{role} {release[role]}" for role in (names.CANDIDATE, names.SHADOW) if release.get(role)]
    return f"deployed {', '.join(parts)} ({strategy})"


def record_deploys(
    clients: Any, stack_cfg: Any, *, actor: str, commit: str | None = None
) -> list[dict[str, Any]]:
    """Write one ``deploy`` audit item per endpoint of ``stack_cfg``; return one summary per endpoint.

    ``stack_cfg`` is an ``infra.model.StackConfig``; ``clients.dynamodb`` writes to the stack's audit
    table. Each summary has ``endpoint``, ``id`` (what ``revert --to-deployment`` takes; the key and
    the commit work too), ``at``, ``idempotencyKey``, ``release``, ``strategy``, ``commit`` and
    ``recorded`` (False: an earlier run with the same commit recorded it; ``id``/``at`` are that item's).
    """
    table = names.audit_table_name(stack_cfg.stack)
    out: list[dict[str, Any]] = []
    for ep in stack_cfg.endpoints:
        release = {
            names.STABLE: ep.release.stable,
            names.CANDIDATE: ep.release.candidate,
            names.SHADOW: ep.release.shadow,
        }
        rolled_out = ep.release.candidate or ep.release.shadow or ep.release.stable
        variant = (
            names.CANDIDATE if ep.release.candidate else names.SHADOW if ep.release.shadow else names.STABLE
        )
        key = deploy_key(stack_cfg.stack, commit, ep.physical_name) if commit else None
        item = audit.AuditItem(
            endpoint=ep.physical_name,
            action="deploy",
            actor=actor,
            variant=variant,
            version=rolled_out,
            reason=_summary(release, ep.strategy.type),
            idempotency_key=key,
            detail={
                "release": release,
                "strategy": ep.strategy.type,
                "commit": commit,
                "stack": stack_cfg.stack,
            },
        )
        recorded = audit.append(clients.dynamodb, table, item)
        at = item.at
        if not recorded and key is not None:
            guard = audit.get_guard(clients.dynamodb, table, key) or {}
            at = str(guard.get("auditAt") or at)
        out.append(
            {
                "endpoint": ep.physical_name,
                "id": at.rsplit("#", 1)[-1],
                "at": at,
                "idempotencyKey": key,
                "release": release,
                "strategy": ep.strategy.type,
                "commit": commit,
                "recorded": recorded,
            }
        )
    return out


def deploy_records(
    dynamodb: Any, table: str, physical: str, *, max_items: int = 1000
) -> list[dict[str, Any]]:
    """The ``deploy`` audit items of ``physical``, newest first (at most ``max_items`` audit items read)."""
    out: list[dict[str, Any]] = []
    cursor = None
    read = 0
    while read < max_items:
        items, cursor = audit.query(dynamodb, table, physical, limit=100, cursor=cursor)
        read += len(items)
        out += [i for i in items if i.get("action") == "deploy"]
        if cursor is None:
            break
    return out


def _at(item: dict[str, Any]) -> datetime:
    return clock.parse_iso(str(item["at"]).split("#", 1)[0])


def shadow_window(
    deploys: list[dict[str, Any]], version: str, now: datetime
) -> tuple[datetime, datetime] | None:
    """When ``version`` last served as the shadow variant, from deploy records (newest first).

    The window starts at the oldest of the newest run of consecutive deploys declaring ``version``
    as shadow, and ends at the next deploy that declared something else (or ``now`` if none did).
    Captures of the ``shadow`` variant in that window are answers of ``version`` and nothing else.
    None when no deploy record declares ``version`` as shadow.
    """

    def is_shadow(item: dict[str, Any]) -> bool:
        return ((item.get("detail") or {}).get("release") or {}).get(names.SHADOW) == version

    newest = next((i for i, item in enumerate(deploys) if is_shadow(item)), None)
    if newest is None:
        return None
    end = _at(deploys[newest - 1]) if newest > 0 else now
    oldest = newest
    while oldest + 1 < len(deploys) and is_shadow(deploys[oldest + 1]):
        oldest += 1
    return _at(deploys[oldest]), end
