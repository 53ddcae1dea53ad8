"""Read-only smoke test against a real deployed stack (skipped without one).

Set MLROLLBACK_AWS_STACK to a stack deployed with `pulumi up` and have AWS credentials in the
standard chain; the test then runs the operator's read commands against it, changing nothing.
"""

from __future__ import annotations

import json
import os

import boto3
import pytest
from typer.testing import CliRunner

from rollback.cli import app

STACK = os.environ.get("MLROLLBACK_AWS_STACK")


def _credentials() -> bool:
    try:
        return boto3.Session().get_credentials() is not None
    except Exception:
        return False


pytestmark = [
    pytest.mark.aws,
    pytest.mark.skipif(
        not STACK or os.environ.get("AWS_ENDPOINT_URL") is not None or not _credentials(),
        reason="needs MLROLLBACK_AWS_STACK (a deployed stack) and AWS credentials; none on this machine",
    ),
]


def test_status_and_preflight_read_a_real_stack() -> None:
    runner = CliRunner()
    status = runner.invoke(app, ["status", "--stack", str(STACK), "--json"])
    assert status.exit_code == 0, status.output
    endpoints = json.loads(status.stdout)["endpoints"]
    assert endpoints and all(ep["status"] for ep in endpoints)
    preflight = runner.invoke(app, ["preflight", "--stack", str(STACK)])
    assert preflight.exit_code in (0, 8), preflight.output  # clean, or a gate with its reason
