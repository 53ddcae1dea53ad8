"""The Lambda archive is the runtime folder alone (an allow-list), checked before it is declared.

A handler that imported from the CLI, the sandbox, ops or infra/ would pass every in-repo test and
fail at its first invocation in AWS; operator code in the archive would ship as dead weight.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pulumi
import pytest

from infra.components.autorollback import ROLLBACK_HANDLER, STEPPER_HANDLER
from infra.components.drift import DRIFT_HANDLER
from infra.lambda_archive import foreign_imports, lambda_code, runtime_sources
from rollback.runtime.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_the_archive_lists_the_package_init_and_every_runtime_module_and_nothing_else() -> None:
    archive = lambda_code()

    assert isinstance(archive, pulumi.AssetArchive)
    on_disk = sorted(
        p.relative_to(REPO).as_posix()
        for p in (REPO / "rollback" / "runtime").rglob("*.py")
        if "__pycache__" not in p.parts
    )
    assert sorted(archive.assets) == sorted(["rollback/__init__.py", *on_disk])
    assert {"rollback/runtime/handler.py", "rollback/runtime/drain.py", "rollback/runtime/stepper.py"} <= set(
        archive.assets
    )
    assert list(archive.assets) == sorted(archive.assets)  # a stable order: the hash follows the code


def test_every_handler_imports_from_the_archive_alone(tmp_path: Path) -> None:
    archive = lambda_code()
    for name, asset in archive.assets.items():
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(asset.path, target)
    handlers = [ROLLBACK_HANDLER, STEPPER_HANDLER, DRIFT_HANDLER]
    assert all(h.startswith("rollback.runtime.handler.") for h in handlers)
    script = "import importlib\n"
    for handler in handlers:
        module, function = handler.rsplit(".", 1)
        script += f"assert callable(getattr(importlib.import_module({module!r}), {function!r}))\n"
    script += (
        "import sys\n"
        "outside = [m.__file__ for m in list(sys.modules.values())\n"
        "           if m.__name__.split('.')[0] in ('rollback', 'infra') and getattr(m, '__file__', None)\n"
        f"           and not m.__file__.startswith({str(tmp_path)!r})]\n"
        "assert not outside, outside\n"
    )
    # -I: isolated, so neither the repo nor the editable install can fill a gap in the archive;
    # site-packages stays for boto3, which the Lambda runtime provides.
    site = [p for p in sys.path if p.endswith("site-packages")]
    code = f"import sys; sys.path[:0] = [{str(tmp_path)!r}]; sys.path += {site!r}\n" + script
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def _package(tmp_path: Path, modules: dict[str, str]) -> Path:
    folder = tmp_path / "rollback" / "runtime"
    folder.mkdir(parents=True)
    (tmp_path / "rollback" / "__init__.py").write_text("")
    for name, text in modules.items():
        (folder / name).write_text(text)
    return folder


def test_a_runtime_module_importing_outside_stdlib_and_boto3_fails_the_build_naming_file_and_line(
    tmp_path: Path,
) -> None:
    folder = _package(
        tmp_path,
        {
            "__init__.py": "",
            "handler.py": "import json\nimport boto3\nfrom botocore.config import Config\n"
            "from rollback.runtime import names\nfrom . import names as n2\n",
            "names.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import mypy_boto3_ssm\n",
            "bad.py": (
                "import os\n\ndef f():\n"
                "    from ruamel.yaml import YAML\n"
                "    from rollback.ops import status\n"
            ),
        },
    )

    assert foreign_imports(runtime_sources(folder)) == [
        "rollback/runtime/bad.py:4: ruamel.yaml",
        "rollback/runtime/bad.py:5: rollback.ops",
    ]
    with pytest.raises(
        ConfigError, match=r"rollback/runtime/bad\.py:4: ruamel\.yaml; .*bad\.py:5: rollback\.ops"
    ):
        lambda_code(folder)


def test_from_rollback_import_anything_but_runtime_is_foreign(tmp_path: Path) -> None:
    folder = _package(tmp_path, {"handler.py": "from rollback import runtime\nfrom rollback import cli\n"})

    assert foreign_imports(runtime_sources(folder)) == ["rollback/runtime/handler.py:2: rollback.cli"]


def test_an_empty_runtime_folder_fails_the_build(tmp_path: Path) -> None:
    folder = _package(tmp_path, {})

    with pytest.raises(ConfigError, match="Lambda archive would be empty"):
        lambda_code(folder)
