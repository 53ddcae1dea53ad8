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


def test_weights_update_leaves_the_endpoint_updating_on_the_old_weights_then_applies(
    cloud: tuple[Emulator, SimulatedCloud],
) -> None:
    """The timing model's Updating window: SageMaker applies a weights update after a while; until
    then traffic follows the old weights and any further update is refused."""
    from rollback.runtime.clock import VirtualClock

    emu, sim = cloud
    clock = VirtualClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    seen: list[tuple[str, float, dict[str, float]]] = []
    moto_patches.set_clock(clock)
    moto_patches.set_updating_window(
        lambda: 30.0, lambda kind, _ep, at, w: seen.append((kind, at.timestamp(), w))
    )
    try:
        sm = emu.client("sagemaker")
        t0 = clock.now().timestamp()
        drain = [
            {"VariantName": "candidate", "DesiredWeight": 0.0},
            {"VariantName": "stable", "DesiredWeight": 100.0},
        ]
        sm.update_endpoint_weights_and_capacities(EndpointName=ENDPOINT, DesiredWeightsAndCapacities=drain)

        described = sm.describe_endpoint(EndpointName=ENDPOINT)
        variants = {v["VariantName"]: v for v in described["ProductionVariants"]}
        assert described["EndpointStatus"] == "Updating"
        assert (variants["candidate"]["CurrentWeight"], variants["candidate"]["DesiredWeight"]) == (10.0, 0.0)
        assert sim.weights(ENDPOINT) == {"stable": 90.0, "candidate": 10.0}  # routing: the old weights
        with pytest.raises(ClientError, match="Cannot update in-progress endpoint"):
            sm.update_endpoint_weights_and_capacities(
                EndpointName=ENDPOINT, DesiredWeightsAndCapacities=drain
            )

        clock.advance(30.0)
        assert sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == "InService"
        assert sim.weights(ENDPOINT) == {"stable": 100.0, "candidate": 0.0}
        assert [(kind, at - t0) for kind, at, _w in seen] == [("accepted", 0.0), ("applied", 30.0)]
    finally:
        moto_patches.set_updating_window(None)
        moto_patches.set_clock(None)


@pytest.mark.parametrize("http", [False, True], ids=["in-process", "http"])
def test_a_hung_variant_times_out_at_the_read_timeout_with_no_variant_named(
    cloud: tuple[Emulator, SimulatedCloud], http: bool
) -> None:
    emu, sim = cloud
    sim.behave(ENDPOINT, "candidate", ModelBehaviour(error_rate=1.0, latency_ms=60_000.0, jitter_ms=0.0))
    time = SimulatedTime()
    runtime = SandboxRuntime(emu, sim, time, read_timeout=2.0)
    predictor = SafePredictor(
        ENDPOINT, runtime=runtime, metrics=None, clock=time, deadline_seconds=3.0, attempt_timeout_seconds=2.0
    )
    if http:
        runtime.use_http_once()

    prediction = predictor.predict(b"{}", target_variant="candidate")

    first, second = prediction.attempts
    assert (first.variant, first.ok, first.error_code) == ("candidate", False, "ReadTimeoutError")
    assert 1999.0 <= first.latency_ms <= 2001.0  # the read timeout, not the minute the variant takes
    assert second.ok and second.variant == "stable" and prediction.failed_over


def test_errors_without_the_variant_header_are_unknown_unless_the_call_was_targeted(
    cloud: tuple[Emulator, SimulatedCloud],
) -> None:
    emu, sim = cloud
    sim.behave(ENDPOINT, "candidate", ModelBehaviour(error_rate=1.0, error_header=False))
    sim.behave(ENDPOINT, "stable", ModelBehaviour(error_rate=1.0, error_header=False))
    time = SimulatedTime()
    predictor = SafePredictor(
        ENDPOINT,
        runtime=SandboxRuntime(emu, sim, time),
        metrics=None,
        clock=time,
        fallback=b"-",
        breaker=None,
    )

    routed = predictor.predict(b"{}")
    targeted = predictor.predict(b"{}", target_variant="candidate")

    assert routed.attempts[0].variant == "unknown"  # SageMaker routed it; nobody said where
    assert targeted.attempts[0].variant == "candidate"  # only the target can have answered
