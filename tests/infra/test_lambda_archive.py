"""The Lambda archive the program builds is self-contained: every handler imports from it alone.

The archive leaves out the CLI and the sandbox; a handler that imported from them (or from infra/)
would pass every in-repo test and fail at its first invocation in AWS.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pulumi

from infra.components.autorollback import ROLLBACK_HANDLER, STEPPER_HANDLER, lambda_code
from infra.components.drift import DRIFT_HANDLER

REPO = Path(__file__).resolve().parents[2]


def test_every_handler_imports_from_the_archive_alone(tmp_path: Path) -> None:
    archive = lambda_code(REPO)
    assert isinstance(archive, pulumi.AssetArchive)
    for name, asset in archive.assets.items():
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(asset.path, target)
    handlers = [ROLLBACK_HANDLER, STEPPER_HANDLER, DRIFT_HANDLER]
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
