"""Audit trail on moto: idempotent appends and newest-first paging."""

from __future__ import annotations

import pytest

from rollback.runtime import audit
from rollback.runtime.clock import VirtualClock
from tests.rollback.conftest import World


def item(endpoint: str, n: int, key: str | None = None) -> audit.AuditItem:
    return audit.AuditItem(
        endpoint=endpoint,
        action="step",
        actor="cli:test",
        reason=f"step {n}",
        weights_before={"stable": 90.0, "candidate": 10.0},
        weights_after={"stable": 75.5, "candidate": 24.5},
        idempotency_key=key,
        detail={"n": n, "flags": [True, None]},
    )


def test_append_with_the_same_key_writes_one_item(world: World) -> None:
    ddb, table = world.raw["dynamodb"], world.settings.audit_table

    results = [audit.append(ddb, table, item("e-dev", i, key="same")) for i in range(3)]

    assert results == [True, False, False]
    records, _ = audit.query(ddb, table, "e-dev")
    assert len(records) == 1 and records[0]["reason"] == "step 0"
    assert records[0]["weightsAfter"] == {"stable": 75.5, "candidate": 24.5}
    assert records[0]["detail"] == {"n": 0, "flags": [True, None]}


def test_query_pages_newest_first_with_a_cursor(world: World, vclock: VirtualClock) -> None:
    ddb, table = world.raw["dynamodb"], world.settings.audit_table
    for i in range(7):
        audit.append(ddb, table, item("e-dev", i))
        vclock.advance(1)
    audit.append(ddb, table, item("other-dev", 99))

    pages, cursor = [], None
    while True:
        records, cursor = audit.query(ddb, table, "e-dev", limit=3, cursor=cursor)
        pages.append([r["detail"]["n"] for r in records])
        if cursor is None:
            break

    assert [n for page in pages for n in page] == [6, 5, 4, 3, 2, 1, 0]
    assert all(len(page) <= 3 for page in pages)


def test_guard_items_never_show_up_in_an_endpoint_history(world: World) -> None:
    ddb, table = world.raw["dynamodb"], world.settings.audit_table
    audit.append(ddb, table, item("e-dev", 1, key="k1"))

    records, _ = audit.query(ddb, table, "e-dev")

    assert [r["idempotencyKey"] for r in records] == ["k1"]
    assert audit.get_guard(ddb, table, "k1")["auditEndpoint"] == "e-dev"


def test_bad_cursor_and_limit_are_clear_errors(world: World) -> None:
    ddb, table = world.raw["dynamodb"], world.settings.audit_table
    with pytest.raises(ValueError, match="invalid audit cursor"):
        audit.query(ddb, table, "e-dev", cursor="not-a-cursor")
    with pytest.raises(ValueError, match="limit must be >= 1"):
        audit.query(ddb, table, "e-dev", limit=0)


def test_unknown_action_is_rejected_before_any_write() -> None:
    with pytest.raises(ValueError, match="audit action 'explode'"):
        audit.AuditItem(endpoint="e-dev", action="explode", actor="cli:x")
