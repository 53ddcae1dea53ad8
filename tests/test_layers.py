"""The folder is the boundary: which layer may import which (docs/architecture.md, import rules).

Imports are read from the source (function-level ones included), so a lazy import that crosses a
boundary fails here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("runtime", "ops", "cli", "sandbox", "verdicts", "client")

#: layer -> the other layers it may import. Nothing imports the CLI; only the CLI imports the sandbox.
ALLOWED: dict[str, set[str]] = {
    "runtime": set(),
    "client": {"runtime"},
    "verdicts": {"runtime"},
    "infra": {"runtime"},
    "policy": set(),  # published alone: stdlib + pulumi_policy only
    "ops": {"runtime", "infra", "verdicts"},
    "sandbox": {"runtime", "ops", "client", "infra", "verdicts"},
    "cli": {"runtime", "ops", "infra", "verdicts", "sandbox", "client"},
    "package": set(),
}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] in ("infra", "policy"):
        return parts[0]
    if parts[0] != "rollback":
        return None
    if len(parts) == 1 or parts[1] == "__init__":
        return "package"
    return parts[1] if parts[1] in LAYERS else f"unknown:{parts[1]}"


def imports_of(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "rollback":
                found += [(node.lineno, f"rollback.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def sources(root: Path) -> list[Path]:
    return sorted(
        p
        for folder in ("rollback", "infra", "policy")
        for p in (root / folder).rglob("*.py")
        if "__pycache__" not in p.parts
    )


def crossings(root: Path) -> list[str]:
    """``file:line: <layer> imports <module> (<layer>)`` for every import its folder may not make."""
    found = []
    for path in sources(root):
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        own = layer_of(module)
        for line, target in imports_of(path):
            other = layer_of(target)
            if other is None or other == own:
                continue
            if own not in ALLOWED or other not in ALLOWED[own]:
                found.append(f"{path.relative_to(root).as_posix()}:{line}: {own} imports {target} ({other})")
    return found


def test_every_rollback_module_lives_in_a_layer_folder() -> None:
    loose = [
        p.relative_to(ROOT).as_posix() for p in (ROOT / "rollback").glob("*.py") if p.name != "__init__.py"
    ]
    folders = sorted(p.name for p in (ROOT / "rollback").iterdir() if p.is_dir() and p.name != "__pycache__")

    assert loose == []
    assert folders == sorted(LAYERS)


def test_no_module_imports_a_layer_its_folder_may_not() -> None:
    assert crossings(ROOT) == []


def test_a_lazy_import_across_a_boundary_is_found(tmp_path: Path) -> None:
    for folder in ("rollback/runtime", "rollback/ops", "rollback/cli"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "rollback/runtime/drain.py").write_text(
        "from rollback.runtime import names\n\ndef f():\n    from rollback.ops.status import history\n"
    )
    (tmp_path / "rollback/ops/status.py").write_text(
        "import rollback.cli.app\nfrom rollback import runtime\n"
    )
    (tmp_path / "rollback/cli/app.py").write_text("from rollback.ops import status\nimport typer\n")

    assert crossings(tmp_path) == [
        "rollback/ops/status.py:1: ops imports rollback.cli.app (cli)",
        "rollback/runtime/drain.py:4: runtime imports rollback.ops.status (ops)",
    ]
