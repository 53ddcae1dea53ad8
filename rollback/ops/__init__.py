"""The operator library: what the CLI (and CI) does beyond the Lambda runtime. Never shipped to Lambda.

It may import :mod:`rollback.runtime`; the CLI renders what it returns (docs/architecture.md).
"""

from __future__ import annotations
