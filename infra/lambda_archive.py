"""The Lambda archive: the ``rollback.runtime`` package and nothing else (an allow-list).

Every function of a stack (rollback, stepper, drift) runs from this one archive. It holds
``rollback/__init__.py`` and every ``.py`` file under ``rollback/runtime/``, found through the
installed package (:mod:`importlib.resources`), so ``pulumi up`` from an editable checkout and from
an installed wheel ship the same code. Before the archive is declared, each module's imports are
read (not run): anything but the standard library, boto3/botocore (the Lambda Python runtime
provides them) and ``rollback.runtime`` itself fails the program with the file, line and module,
as does a runtime folder with no module in it. A handler that imported the CLI, the sandbox or
ruamel would otherwise pass every local test and fail at its first invocation in AWS.
"""

from __future__ import annotations

import ast
import functools
import importlib.resources
import sys
from pathlib import Path

import pulumi

from rollback.runtime.errors import ConfigError

#: The package the archive is built from.
RUNTIME_PACKAGE = "rollback.runtime"
#: Third-party top-level packages a runtime module may import: the Lambda runtime provides them.
LAMBDA_PROVIDED = frozenset({"boto3", "botocore"})


def runtime_folder() -> Path:
    """The installed ``rollback/runtime`` folder (a directory on disk, as setuptools installs it)."""
    found = importlib.resources.files(RUNTIME_PACKAGE)
    if not isinstance(found, Path) or not found.is_dir():
        raise ConfigError(
            f"the Lambda archive is built from the installed {RUNTIME_PACKAGE} package, but it is not a "
            f"folder on disk ({found!r}); install mlrollback from a checkout or a wheel (pip install -e .)"
        )
    return found


def runtime_sources(folder: Path | None = None) -> dict[str, Path]:
    """Archive path -> file, sorted: ``rollback/__init__.py`` and every module under ``folder``.

    Raises ConfigError when the folder holds no module (an archive with no handler in it).
    """
    folder = runtime_folder() if folder is None else folder
    package_root = folder.parent
    sources: dict[str, Path] = {}
    init = package_root / "__init__.py"
    if init.is_file():
        sources[f"{package_root.name}/__init__.py"] = init
    modules = sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)
    if not modules:
        raise ConfigError(
            f"the Lambda archive would be empty: {folder} holds no Python module; "
            "the rollback, stepper and drift functions need rollback/runtime/handler.py"
        )
    for path in modules:
        sources[f"{package_root.name}/{path.relative_to(package_root).as_posix()}"] = path
    return sources


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """True when ``node`` sits inside ``if TYPE_CHECKING:`` (never imported at run time)."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _allowed(module: str) -> bool:
    top = module.split(".", 1)[0]
    if module == RUNTIME_PACKAGE or module.startswith(RUNTIME_PACKAGE + "."):
        return True
    return top in sys.stdlib_module_names or top in LAMBDA_PROVIDED


@functools.lru_cache(maxsize=512)
def _foreign_in(path: Path, name: str, _stamp: tuple[int, int]) -> tuple[str, ...]:
    """The foreign imports of one file; cached per (path, mtime, size): a program run declares the
    archive once per function, and the sandbox runs the program many times in one process."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "rollback":  # ``from rollback import runtime`` is the only fit
                modules = [f"rollback.{alias.name}" for alias in node.names]
            else:
                modules = [node.module]
        else:
            continue  # relative imports stay inside the package
        if _type_checking_only(node, parents):
            continue
        found.extend(f"{name}:{node.lineno}: {m}" for m in modules if not _allowed(m))
    return tuple(found)


def foreign_imports(sources: dict[str, Path]) -> list[str]:
    """``<archive path>:<line>: <module>`` for every run-time import from outside what Lambda has."""
    found: list[str] = []
    for name, path in sources.items():
        stat = path.stat()
        found.extend(_foreign_in(path, name, (stat.st_mtime_ns, stat.st_size)))
    return found


def lambda_code(folder: Path | None = None) -> pulumi.AssetArchive:
    """The archive of the runtime package, files listed one by one (sorted, so its hash follows the code).

    Raises ConfigError naming every module that imports something Lambda does not have.
    """
    sources = runtime_sources(folder)
    foreign = foreign_imports(sources)
    if foreign:
        raise ConfigError(
            "the Lambda archive (rollback/runtime) may import only the standard library, boto3, botocore "
            "and rollback.runtime; move the code or the import out of rollback/runtime: " + "; ".join(foreign)
        )
    return pulumi.AssetArchive({name: pulumi.FileAsset(str(path)) for name, path in sources.items()})
