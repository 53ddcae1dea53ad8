from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws


@pytest.fixture(autouse=True)
def fake_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert os.environ["AWS_DEFAULT_REGION"] == "eu-west-1"


@pytest.fixture
def cloudwatch() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("cloudwatch", region_name="eu-west-1")


@pytest.fixture
def put_calls(cloudwatch: Any) -> list[list[dict[str, Any]]]:
    """Every PutMetricData batch the code sends (observed on the real client's event hook)."""
    calls: list[list[dict[str, Any]]] = []

    def observe(params: dict[str, Any], **_: Any) -> None:
        calls.append(list(params["MetricData"]))

    cloudwatch.meta.events.register("provide-client-params.cloudwatch.PutMetricData", observe)
    return calls
