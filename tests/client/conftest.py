from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
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
def runtime() -> Iterator[tuple[Any, Stubber]]:
    """A real sagemaker-runtime client whose HTTP responses are stubbed (the AWS boundary)."""
    client = boto3.client("sagemaker-runtime", region_name="eu-west-1")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


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
