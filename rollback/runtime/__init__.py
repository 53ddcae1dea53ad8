"""The Lambda runtime: every module the Lambda archive holds (standard library + boto3 only).

The archive is built from this folder alone (see docs/architecture.md); nothing here imports
from outside it.
"""

from __future__ import annotations
