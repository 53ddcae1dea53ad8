"""The Pulumi program: read the stack config once, build the components, export.

Runs under ``pulumi up`` (``main: infra/``) and under ``runpy.run_path("infra/__main__.py")`` in a
mock runtime (the sandbox, the tests). Either way the project root must be importable, so it is
put on ``sys.path`` defensively before importing ``infra`` and ``rollback``.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import pulumi  # noqa: E402

from infra.config import from_pulumi  # noqa: E402
from infra.stack import build_stack  # noqa: E402

for _name, _value in build_stack(from_pulumi()).items():
    pulumi.export(_name, _value)
