"""The Lambda's clients time out fast enough for the invocation's retry budget to hold."""

from __future__ import annotations

import pytest

from rollback.runtime import handler
from rollback.runtime.aws import CLI_LIMITS, LAMBDA_LIMITS, make_clients


@pytest.fixture(autouse=True)
def _region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")


def test_lambda_clients_use_the_short_call_limits() -> None:
    config = make_clients(limits=LAMBDA_LIMITS).dynamodb.meta.config
    assert (config.connect_timeout, config.read_timeout) == (2, 5)
    assert config.retries["total_max_attempts"] == 2


def test_the_handler_keeps_back_more_than_its_longest_single_call() -> None:
    # A call may start just before the retry deadline; it must still end before Lambda's timeout.
    assert LAMBDA_LIMITS.longest_call_seconds < handler.SAFETY_MARGIN_SECONDS
    assert LAMBDA_LIMITS.longest_call_seconds < CLI_LIMITS.longest_call_seconds


def test_the_handler_builds_its_clients_with_the_lambda_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLROLLBACK_STACK", "dev")
    monkeypatch.setenv("MLROLLBACK_AUDIT_TABLE", "mlrollback-dev-audit")
    monkeypatch.setenv("MLROLLBACK_TOPIC_ARN", "arn:aws:sns:eu-west-1:123456789012:mlrollback-dev-alerts")
    monkeypatch.setenv("MLROLLBACK_QUARANTINE_PREFIX", "/mlrollback/dev/quarantine")
    monkeypatch.setenv("MLROLLBACK_ROLLOUT_PREFIX", "/mlrollback/dev/rollout")
    handler.reset()
    try:
        clients, _ = handler._context()
        assert clients.sagemaker.meta.config.read_timeout == LAMBDA_LIMITS.read_timeout
    finally:
        handler.reset()
