"""The applier puts Lambda's asynchronous invocation config, replaces it on update, refuses non-SQS."""

from __future__ import annotations

import io
import zipfile

import pytest

from rollback.runtime.errors import SandboxError
from rollback.sandbox.emulator import Emulator
from rollback.sandbox.resources import APPLIERS, ApplyContext

TYPE = "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig"


@pytest.fixture
def emulator():
    with Emulator("eu-west-1") as emu:
        yield emu


def _function(emu: Emulator, name: str = "fn") -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("h.py", "def h(e, c):\n    return e\n")
    trust = (
        '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", '
        '"Principal": {"Service": "lambda.amazonaws.com"}}]}'
    )
    role = emu.client("iam").create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=trust)
    emu.client("lambda").create_function(
        FunctionName=name,
        Role=role["Role"]["Arn"],
        Runtime="python3.12",
        Handler="h.h",
        Code={"ZipFile": buf.getvalue()},
    )
    return name


def test_update_replaces_the_config_instead_of_keeping_the_first(emulator: Emulator) -> None:
    ctx = ApplyContext(emulator, "t")
    fn = _function(emulator)
    queue = emulator.client("sqs").create_queue(QueueName="dlq")["QueueUrl"]
    dlq = emulator.arn("sqs", "dlq")
    assert queue
    inputs = {
        "functionName": fn,
        "maximumRetryAttempts": 2.0,  # the mock runtime delivers numbers as floats
        "maximumEventAgeInSeconds": 3600.0,
        "destinationConfig": {"onFailure": {"destination": dlq}},
    }
    physical, _ = APPLIERS[TYPE](ctx, "cfg", inputs, None)
    prev = {"id": physical, "outputs": {"functionName": fn}}
    APPLIERS[TYPE](ctx, "cfg", {"functionName": fn, "maximumRetryAttempts": 0.0}, prev)

    live = emulator.client("lambda").get_function_event_invoke_config(FunctionName=fn)
    assert physical == fn
    assert live["MaximumRetryAttempts"] == 0
    assert "DestinationConfig" not in live or not live["DestinationConfig"].get("OnFailure")


def test_a_destination_the_sandbox_cannot_deliver_to_is_refused_by_name(emulator: Emulator) -> None:
    ctx = ApplyContext(emulator, "t")
    fn = _function(emulator)
    topic = "arn:aws:sns:eu-west-1:123456789012:alerts"

    with pytest.raises(SandboxError, match=r"cfg.*onFailure.*alerts.*not an SQS queue"):
        APPLIERS[TYPE](
            ctx, "cfg", {"functionName": fn, "destinationConfig": {"onFailure": {"destination": topic}}}, None
        )
