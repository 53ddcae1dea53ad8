"""Schema compatibility: the target must accept what clients send and return what they read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rollback.ops.schema_check import check_versions, compare
from rollback.runtime.errors import ConfigError


def _schema(
    required_in: list[str], props_in: dict[str, Any], required_out: list[str], props_out: dict[str, Any]
) -> dict[str, Any]:
    return {
        "input": {"type": "object", "properties": props_in, "required": required_in},
        "output": {"type": "object", "properties": props_out, "required": required_out},
    }


def test_identical_schemas_are_compatible() -> None:
    s = _schema(["amount"], {"amount": {"type": "number"}}, ["score"], {"score": {"type": "number"}})
    assert compare(s, json.loads(json.dumps(s))) == []


def test_target_requiring_a_field_clients_need_not_send_is_incompatible() -> None:
    base = _schema(["amount"], {"amount": {"type": "number"}, "country": {"type": "string"}}, [], {})
    target = _schema(
        ["amount", "country"], {"amount": {"type": "number"}, "country": {"type": "string"}}, [], {}
    )
    assert [str(d) for d in compare(base, target)] == [
        "input.country: required by the target, but clients do not have to send it today"
    ]


def test_target_dropping_an_output_field_clients_read_is_incompatible() -> None:
    base = _schema([], {}, ["score", "reason"], {"score": {"type": "number"}, "reason": {"type": "string"}})
    target = _schema([], {}, ["score"], {"score": {"type": "number"}})
    assert [str(d) for d in compare(base, target)] == [
        "output.reason: clients rely on it today, missing from the target"
    ]


def test_number_input_accepts_integers_but_not_the_reverse() -> None:
    ints = _schema([], {"n": {"type": "integer"}}, [], {})
    nums = _schema([], {"n": {"type": "number"}}, [], {})
    assert compare(ints, nums) == []
    assert [str(d) for d in compare(nums, ints)] == ["input.n: clients send number, target accepts integer"]


def test_nested_output_type_change_is_reported_with_its_path() -> None:
    base = _schema(
        [],
        {},
        [],
        {"explain": {"type": "array", "items": {"type": "object", "properties": {"w": {"type": "number"}}}}},
    )
    target = _schema(
        [],
        {},
        [],
        {"explain": {"type": "array", "items": {"type": "object", "properties": {"w": {"type": "string"}}}}},
    )
    assert [str(d) for d in compare(base, target)] == [
        "output.explain[].w: clients expect number, target returns string"
    ]


def test_closed_target_rejecting_fields_clients_send_is_incompatible() -> None:
    base = _schema([], {"a": {"type": "string"}, "b": {"type": "string"}}, [], {})
    target = {
        "input": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False},
        "output": base["output"],
    }
    assert [str(d) for d in compare(base, target)] == [
        "input.b: clients may send it, the target rejects unknown fields"
    ]


def test_check_versions_reads_schema_files_relative_to_the_project(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas/v1.json").write_text(
        json.dumps(_schema([], {}, ["score"], {"score": {"type": "number"}}))
    )
    (tmp_path / "schemas/v0.json").write_text(json.dumps(_schema([], {}, [], {})))
    result = check_versions("v1", "v0", {"v1": "schemas/v1.json", "v0": "schemas/v0.json"}, tmp_path)
    assert not result.compatible
    assert "v0 is not schema-compatible with v1" in result.explain()
    assert "output.score" in result.explain()


def test_one_sided_schema_is_unknown_not_silently_compatible(tmp_path: Path) -> None:
    (tmp_path / "v1.json").write_text(json.dumps(_schema([], {}, [], {})))
    result = check_versions("v1", "v0", {"v1": "v1.json", "v0": None}, tmp_path)
    assert not result.compatible
    assert "version v0 declares no schema" in result.explain()
    assert check_versions("v1", "v0", {"v1": None, "v0": None}, tmp_path).compatible


def test_malformed_schema_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "ok.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"bad.json: not valid JSON"):
        check_versions("a", "b", {"a": "bad.json", "b": "ok.json"}, tmp_path)


def _csv(*features: tuple[str, str, bool]) -> dict[str, Any]:
    return {
        "input": {
            "contentType": "text/csv",
            "features": [{"name": n, "type": t, "optional": o} for n, t, o in features],
        },
        "output": {"contentType": "application/json", "fields": [{"name": "score", "type": "number"}]},
    }


def test_csv_target_with_an_extra_optional_trailing_column_is_compatible() -> None:
    base = _csv(("amount", "number", False))
    assert compare(base, _csv(("amount", "number", False), ("device", "integer", True))) == []


def test_csv_columns_are_positional_and_a_reorder_is_incompatible() -> None:
    base = _csv(("amount", "number", False), ("hour", "integer", False))
    target = _csv(("hour", "integer", False), ("amount", "number", False))
    assert [str(d) for d in compare(base, target)] == [
        "input.column[1]: clients send amount, the target expects hour",
        "input.column[2]: clients send hour, the target expects amount",
    ]


def test_fewer_csv_columns_or_another_content_type_is_incompatible() -> None:
    base = _csv(("amount", "number", False), ("device", "integer", True))
    target = _csv(("amount", "number", False))
    target["output"]["contentType"] = "text/csv"
    assert [str(d) for d in compare(base, target)] == [
        "input.column[2]: clients may send device, the target has 1 columns",
        "output.contentType: clients expect application/json, the target uses text/csv",
    ]
