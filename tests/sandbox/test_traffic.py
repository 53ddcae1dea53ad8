"""The drill's client path: SafePredictor over SandboxRuntime, in-process and through the HTTP API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError

from rollback.client import SafePredictor
from rollback.sandbox import moto_patches
from rollback.sandbox.emulator import Emulator
from rollback.sandbox.traffic import ModelBehaviour, SandboxRuntime, SimulatedCloud, SimulatedTime

ENDPOINT = "scorer-traffic-test"


@pytest.fixture
def cloud() -> Iterator[tuple[Emulator, SimulatedCloud]]:
    with Emulator("us-east-1") as emu:
        sm = emu.client("sagemaker")
        role = "arn:aws:iam::123456789012:role/exec"
        sm.create_model(ModelName="m", ExecutionRoleArn=role, PrimaryContainer={"Image": "123.dkr.ecr/x:1"})
        variants = [
            {
                "VariantName": name,
                "ModelName": "m",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": weight,
            }
            for name, weight in (("stable", 90.0), ("candidate", 10.0))
        ]
        sm.create_endpoint_config(EndpointConfigName="c", ProductionVariants=variants)
        sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="c")
        sim = SimulatedCloud(emu, lambda: datetime.now(UTC), seed=3)
        moto_patches.set_invoke_hook(sim.route)
        try:
            yield emu, sim
        finally:
            moto_patches.set_invoke_hook(None)


def _predictor(emu: Emulator, sim: SimulatedCloud) -> tuple[SafePredictor, SandboxRuntime, SimulatedTime]:
    time = SimulatedTime()
    runtime = SandboxRuntime(emu, sim, time)
    predictor = SafePredictor(ENDPOINT, runtime=runtime, metrics=None, clock=time, deadline_seconds=3.0)
    return predictor, runtime, time


@pytest.mark.parametrize("http", [False, True], ids=["in-process", "http"])
def test_candidate_failure_names_the_candidate_and_fails_over_to_stable(
    cloud: tuple[Emulator, SimulatedCloud], http: bool
) -> None:
    emu, sim = cloud
    sim.behave(ENDPOINT, "candidate", ModelBehaviour(error_rate=1.0, latency_ms=300.0, jitter_ms=0.0))
    predictor, runtime, _ = _predictor(emu, sim)
    if http:
        runtime.use_http_once()

    prediction = predictor.predict(b"{}", target_variant="candidate")

    first, second = prediction.attempts
    assert (first.variant, first.ok, first.error_code) == ("candidate", False, "ModelError")
    assert (second.target_variant, second.variant, second.ok) == ("stable", "stable", True)
    assert prediction.failed_over and prediction.body == b'{"score": 0.12}'
    assert runtime.http_calls == (1 if http else 0)


@pytest.mark.parametrize("http", [False, True], ids=["in-process", "http"])
def test_client_measures_the_simulated_latency_of_each_variant(
    cloud: tuple[Emulator, SimulatedCloud], http: bool
) -> None:
    emu, sim = cloud
    sim.behave(ENDPOINT, "stable", ModelBehaviour(latency_ms=1250.0, jitter_ms=0.0))
    predictor, runtime, time = _predictor(emu, sim)
    if http:
        runtime.use_http_once()

    prediction = predictor.predict(b"{}", target_variant="stable")

    assert prediction.attempts[0].latency_ms == pytest.approx(1250.0)
    assert time() == pytest.approx(1.25)


def test_failure_after_the_deadline_is_not_retried(cloud: tuple[Emulator, SimulatedCloud]) -> None:
    emu, sim = cloud
    sim.behave(ENDPOINT, "candidate", ModelBehaviour(error_rate=1.0, latency_ms=3500.0, jitter_ms=0.0))
    predictor, _, _ = _predictor(emu, sim)

    with pytest.raises(Exception, match="no fallback is configured"):
        predictor.predict(b"{}", target_variant="candidate")

    assert predictor.stats.failovers == 0 and predictor.stats.failed == 1


@pytest.mark.parametrize("http", [False, True], ids=["in-process", "http"])
def test_unknown_variant_is_a_validation_error_for_the_caller(
    cloud: tuple[Emulator, SimulatedCloud], http: bool
) -> None:
    emu, sim = cloud
    predictor, runtime, _ = _predictor(emu, sim)
    if http:
        runtime.use_http_once()

    with pytest.raises(ClientError) as info:
        predictor.predict(b"{}", target_variant="shadow")

    assert info.value.response["Error"]["Code"] == "ValidationError"
    assert "shadow" in info.value.response["Error"]["Message"]
