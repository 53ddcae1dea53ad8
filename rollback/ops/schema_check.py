"""Input/output schema compatibility between model versions.

A stack revert or a promotion swaps the model that answers live clients. Clients were written
against the version that serves most traffic today (the stable one), so the new version must
accept every request those clients may send and return every field they may read. This module
decides that from the versions' schema files, without I/O beyond reading them.

A schema file (``versions.<v>.schema`` in stack config, relative to the project root) is JSON::

    {"input":  {"type": "object", "properties": {...}, "required": [...]},
     "output": {"type": "object", "properties": {...}, "required": [...]}}

or, as the example files in ``schemas/`` are written, a feature/field list::

    {"input":  {"contentType": "text/csv", "features": [{"name": "amount", "type": "number"},
                                                        {"name": "x", "type": "integer", "optional": true}]},
     "output": {"contentType": "application/json", "fields": [{"name": "score", "type": "number"}]}}

CSV features are positional (column order matters); JSON features and output fields are named.
The JSON Schema form is a small subset of JSON Schema: ``type`` (string or list), ``properties``,
``required``, ``additionalProperties`` and ``items``, nested to any depth. Anything else is
ignored (never guessed at), so the check can miss an incompatibility hidden in, say, ``pattern``,
but never invents one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollback.runtime.errors import ConfigError

#: JSON Schema types, widest first where one accepts another ("number" accepts "integer").
_ACCEPTS: dict[str, set[str]] = {"number": {"number", "integer"}}


@dataclass(frozen=True)
class Difference:
    """One reason the target version cannot replace the baseline without breaking clients."""

    where: str  # "input" or "output" plus a JSON path, e.g. "input.amount"
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


def load_schema(path: Path) -> dict[str, Any]:
    """Read a schema file; a missing or malformed file is a ConfigError naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: schema file not found; fix versions.<v>.schema in the stack file"
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or not ({"input", "output"} & data.keys()):
        raise ConfigError(f"{path}: a schema file needs an 'input' and/or 'output' object")
    return data


def _types(node: dict[str, Any]) -> set[str] | None:
    """Declared types of a schema node, or None when any type is allowed."""
    declared = node.get("type")
    if declared is None:
        return None
    return {declared} if isinstance(declared, str) else set(declared)


def _accepted(types: set[str] | None) -> set[str] | None:
    if types is None:
        return None
    out: set[str] = set()
    for t in types:
        out |= _ACCEPTS.get(t, {t})
    return out


def _covers(wide: set[str] | None, narrow: set[str] | None) -> bool:
    """True when every value of a ``narrow`` type is accepted by ``wide``."""
    if wide is None:
        return True
    if narrow is None:
        return False
    return narrow <= (_accepted(wide) or set())


def _fmt(types: set[str] | None) -> str:
    return "any" if types is None else "|".join(sorted(types))


def _compare_input(sent: dict[str, Any], accepts: dict[str, Any], path: str, out: list[Difference]) -> None:
    """``sent`` describes what clients send today; ``accepts`` what the target accepts."""
    if not _covers(_types(accepts), _types(sent)):
        got, want = _fmt(_types(sent)), _fmt(_types(accepts))
        out.append(Difference(path, f"clients send {got}, target accepts {want}"))
        return
    sent_props = sent.get("properties", {})
    target_props = accepts.get("properties", {})
    sent_required = set(sent.get("required", []))
    for name in sorted(set(accepts.get("required", [])) - sent_required):
        out.append(
            Difference(f"{path}.{name}", "required by the target, but clients do not have to send it today")
        )
    if accepts.get("additionalProperties") is False:
        for name in sorted(set(sent_props) - set(target_props)):
            out.append(Difference(f"{path}.{name}", "clients may send it, the target rejects unknown fields"))
    for name in sorted(set(sent_props) & set(target_props)):
        _compare_input(sent_props[name], target_props[name], f"{path}.{name}", out)
    if "items" in sent and "items" in accepts:
        _compare_input(sent["items"], accepts["items"], f"{path}[]", out)


def _compare_output(read: dict[str, Any], returns: dict[str, Any], path: str, out: list[Difference]) -> None:
    """``read`` describes what clients get today; ``returns`` what the target returns."""
    if not _covers(_types(read), _types(returns)):
        out.append(
            Difference(path, f"clients expect {_fmt(_types(read))}, target returns {_fmt(_types(returns))}")
        )
        return
    read_props = read.get("properties", {})
    target_props = returns.get("properties", {})
    target_required = set(returns.get("required", []))
    for name in sorted(set(read.get("required", [])) - target_required):
        why = "missing from the target" if name not in target_props else "optional in the target"
        out.append(Difference(f"{path}.{name}", f"clients rely on it today, {why}"))
    for name in sorted(set(read_props) & set(target_props)):
        _compare_output(read_props[name], target_props[name], f"{path}.{name}", out)
    if "items" in read and "items" in returns:
        _compare_output(read["items"], returns["items"], f"{path}[]", out)


def _as_object(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A feature/field list as the equivalent JSON Schema object node."""
    return {
        "type": "object",
        "properties": {f["name"]: {k: v for k, v in f.items() if k == "type"} for f in items},
        "required": [f["name"] for f in items if not f.get("optional")],
    }


def _compare_columns(
    sent: list[dict[str, Any]], accepts: list[dict[str, Any]], out: list[Difference]
) -> None:
    for i in range(max(len(sent), len(accepts))):
        where = f"input.column[{i + 1}]"
        if i >= len(accepts):
            out.append(
                Difference(
                    where, f"clients may send {sent[i]['name']}, the target has {len(accepts)} columns"
                )
            )
            continue
        if i >= len(sent):
            if not accepts[i].get("optional"):
                out.append(
                    Difference(where, f"the target requires {accepts[i]['name']}, clients do not send it")
                )
            continue
        if sent[i]["name"] != accepts[i]["name"]:
            out.append(
                Difference(where, f"clients send {sent[i]['name']}, the target expects {accepts[i]['name']}")
            )
        elif not _covers(_types(accepts[i]), _types(sent[i])):
            got, want = _fmt(_types(sent[i])), _fmt(_types(accepts[i]))
            out.append(Difference(where, f"{sent[i]['name']}: clients send {got}, target accepts {want}"))
        elif sent[i].get("optional") and not accepts[i].get("optional"):
            out.append(
                Difference(where, f"{sent[i]['name']}: required by the target, optional for clients today")
            )


def _content_type(half: str, base: dict[str, Any], target: dict[str, Any], out: list[Difference]) -> None:
    a, b = base.get("contentType"), target.get("contentType")
    if a and b and a != b:
        verb = "send" if half == "input" else "expect"
        out.append(Difference(f"{half}.contentType", f"clients {verb} {a}, the target uses {b}"))


def compare(baseline: dict[str, Any], target: dict[str, Any]) -> list[Difference]:
    """Differences that would break clients of ``baseline`` if ``target`` served them instead.

    Inputs are contravariant (the target must accept at least what clients send), outputs are
    covariant (the target must return at least what clients read). An empty list means compatible.
    """
    out: list[Difference] = []
    base_in, target_in = baseline.get("input"), target.get("input") or {}
    if base_in is not None:
        _content_type("input", base_in, target_in, out)
        if "features" in base_in and "features" in target_in and base_in.get("contentType") == "text/csv":
            _compare_columns(base_in["features"], target_in["features"], out)
        else:
            sent = _as_object(base_in["features"]) if "features" in base_in else base_in
            accepts = _as_object(target_in["features"]) if "features" in target_in else target_in
            _compare_input(sent, accepts, "input", out)
    base_out, target_out = baseline.get("output"), target.get("output") or {}
    if base_out is not None:
        _content_type("output", base_out, target_out, out)
        read = _as_object(base_out["fields"]) if "fields" in base_out else base_out
        returns = _as_object(target_out["fields"]) if "fields" in target_out else target_out
        _compare_output(read, returns, "output", out)
    return out


@dataclass(frozen=True)
class Compatibility:
    """Result of checking a target version against the version clients use today."""

    baseline: str
    target: str
    differences: tuple[Difference, ...]
    unknown: str | None = None  # why the check could not be made (a schema is not declared)

    @property
    def compatible(self) -> bool:
        return not self.differences and self.unknown is None

    def explain(self) -> str:
        """Human lines for an error message or a report."""
        if self.unknown:
            return self.unknown
        if not self.differences:
            return f"{self.target} is schema-compatible with {self.baseline}"
        lines = [f"{self.target} is not schema-compatible with {self.baseline} (what clients use today):"]
        lines += [f"  - {d}" for d in self.differences]
        return "\n".join(lines)


def check_versions(
    baseline: str,
    target: str,
    schema_paths: dict[str, str | None],
    project_root: Path,
) -> Compatibility:
    """Check ``target`` against ``baseline`` given each version's declared schema path (or None).

    Identical versions are trivially compatible. When neither declares a schema there is nothing
    to compare and the check passes; when only one does, the answer is unknown (refused by
    callers unless the operator says otherwise), because a silent pass would hide a real risk.
    """
    if baseline == target:
        return Compatibility(baseline, target, ())
    base_path, target_path = schema_paths.get(baseline), schema_paths.get(target)
    if base_path is None and target_path is None:
        return Compatibility(baseline, target, ())
    if base_path is None or target_path is None:
        missing = baseline if base_path is None else target
        return Compatibility(
            baseline,
            target,
            (),
            unknown=(
                f"cannot check schema compatibility of {target} with {baseline}: version {missing} declares "
                "no schema; add versions.<v>.schema to the stack file, or pass --skip-schema-check"
            ),
        )
    base = load_schema(project_root / base_path)
    tgt = load_schema(project_root / target_path)
    return Compatibility(baseline, target, tuple(compare(base, tgt)))
