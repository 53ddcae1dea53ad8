"""Typed, validated stack config: the only module that calls ``pulumi.Config``.

Two entry points share one validator:

* :func:`load_stack_file` reads ``environments/Pulumi.<stack>.yaml`` with no Pulumi runtime at all,
  so the CLI and the sandbox see exactly the config the program sees;
* :func:`from_pulumi` reads the same keys through ``pulumi.Config`` inside ``pulumi up``.

Both go through :func:`infra.validation.validate`. The rest of the config lives beside this file:
:mod:`infra.limits`, :mod:`infra.model`, :mod:`infra.validation`, :mod:`infra.blue_green` and
:mod:`infra.runtime_records` (docs/architecture.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from infra.limits import PROJECT
from infra.model import StackConfig
from infra.validation import validate
from rollback.runtime.errors import ConfigError


def find_project_root(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` holding ``Pulumi.yaml``."""
    for d in [start, *start.parents]:
        if (d / "Pulumi.yaml").is_file():
            return d
    return None


def stack_from_path(path: Path) -> str:
    """Stack name from a ``Pulumi.<stack>.yaml`` file name."""
    m = re.match(r"^Pulumi\.(.+)\.ya?ml$", path.name)
    if not m:
        raise ConfigError(f"{path}: not a stack file; expected a name like Pulumi.<stack>.yaml")
    return m.group(1)


def _read_stack_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: stack file not found; create it or pick an existing stack") from None
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    config = doc.get("config") if isinstance(doc, Mapping) else None
    if not isinstance(config, Mapping):
        raise ConfigError(f"{path}: expected a top-level 'config:' mapping of stack settings")
    return dict(config)


def _split(config: Mapping[str, Any], source: str) -> tuple[dict[str, Any], str | None]:
    values: dict[str, Any] = {}
    region = None
    for key, value in config.items():
        if key == "aws:region":
            region = value if isinstance(value, str) else None
        elif isinstance(key, str) and key.startswith(f"{PROJECT}:"):
            values[key.split(":", 1)[1]] = value
        elif isinstance(key, str) and ":" not in key:
            raise ConfigError(f"{source}: {key}: config keys need a namespace; write {PROJECT}:{key}")
    return values, region


def load_stack_file(path: Path, stack: str | None = None) -> StackConfig:
    """Read and validate a stack file without Pulumi (CLI, sandbox, tests)."""
    path = Path(path)
    stack = stack or stack_from_path(path)
    config = _read_stack_file(path)
    values, region = _split(config, str(path))
    root = find_project_root(path.resolve().parent)
    return validate(values, stack=stack, region=region, source=_display(path, root), project_root=root)


def _display(path: Path, root: Path | None) -> str:
    """Path as users see it in messages: relative to the project root when possible."""
    try:
        return str(path.resolve().relative_to(root)) if root else str(path)
    except ValueError:
        return str(path)


def pulumi_config_from_stack_file(path: Path) -> dict[str, str]:
    """The ``{"mlrollback:endpoints": "<json>", "aws:region": "..."}`` map for ``set_all_config``.

    Structured values are JSON-encoded exactly as the Pulumi engine hands them to the program.
    """
    config = _read_stack_file(Path(path))
    out: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, str):
            out[str(key)] = value
        else:
            out[str(key)] = json.dumps(value)
    return out


def project_root_dir() -> Path | None:
    """Project root (where Pulumi.yaml is): the engine's answer when it is real, else found from here.

    The mock runtime reports a placeholder root directory; falling back to this package's
    location keeps schema checks and asset paths independent of the working directory.
    """
    try:
        import pulumi

        engine_root = pulumi.get_root_directory()
    except Exception:
        engine_root = None
    if engine_root and (Path(engine_root) / "Pulumi.yaml").is_file():
        return Path(engine_root)
    return find_project_root(Path(__file__).resolve().parent)


def from_pulumi() -> StackConfig:
    """Read and validate the current stack's config through ``pulumi.Config`` (inside the program)."""
    import pulumi

    stack = pulumi.get_stack()
    cfg = pulumi.Config(PROJECT)
    values: dict[str, Any] = {}
    for key in ("environment", "production", "artifacts", "notifications", "rehearsal", "endpoints"):
        raw = cfg.get(key)
        if raw is None:
            continue
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw  # plain strings (environment) are not JSON
    region = pulumi.Config("aws").get("region")
    root = project_root_dir()
    source = f"environments/Pulumi.{stack}.yaml"
    return validate(values, stack=stack, region=region, source=source, project_root=root)
