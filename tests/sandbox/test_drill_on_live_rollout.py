"""A drill leaves the rollout it rehearses where it found it, also once the stepper runs on.

The real-path drill (the one CI runs against staging) against the staging stack deployed in the
emulator, with the rollback Lambda and the stepper delivered by the sandbox's event bus on a
virtual clock; afterwards the stepper runs for ten simulated minutes. Before the fix, the drained
drain's follow-ups looked owed once the drill deleted its quarantine record, and a minute later
the stepper wrote the record again and drained the restored candidate ("served 10% again").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from infra.config import load_stack_file, pulumi_config_from_stack_file
from rollback.ops.rehearsal import run_drill
from rollback.runtime import audit, clock, names, records
from rollback.runtime.aws import Clients
from rollback.sandbox import moto_patches
from rollback.sandbox.alarm_evaluator import AlarmEvaluator
from rollback.sandbox.deploy_log import record_applied
from rollback.sandbox.emulator import Emulator
from rollback.sandbox.eventbus import EventBus
from rollback.sandbox.runner import apply_program
from rollback.sandbox.traffic import SimulatedCloud

REPO = Path(__file__).resolve().parents[2]
STACK = "staging"
PHYSICAL = names.endpoint_name(STACK, "fraud-scorer")


@dataclass
class World:
    emu: Emulator
    vclock: clock.VirtualClock
    cloud: SimulatedCloud
    evaluator: AlarmEvaluator
    bus: EventBus
    clients: Clients

    def tick(self, seconds: int = 1) -> None:
        """What the daemon does every second: metrics, alarm transitions, deliveries, schedules."""
        for _ in range(seconds):
            self.cloud.flush()
            self.vclock.advance(1.0)
            self.bus.publish_alarm_changes(self.evaluator.tick())
            self.bus.run_schedules()

    def weights(self) -> dict[str, float]:
        desc = self.clients.sagemaker.describe_endpoint(EndpointName=PHYSICAL)
        return {v["VariantName"]: float(v["CurrentWeight"]) for v in desc["ProductionVariants"]}

    def parameter(self, name: str) -> str | None:
        return records.get_text(self.clients.ssm, name)

    def items(self, action: str) -> list[dict[str, Any]]:
        found, _ = audit.query(self.clients.dynamodb, names.audit_table_name(STACK), PHYSICAL, limit=100)
        return [i for i in found if i.get("action") == action]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    config = pulumi_config_from_stack_file(REPO / "environments" / f"Pulumi.{STACK}.yaml")
    vclock = clock.VirtualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    previous = clock.use(vclock)
    moto_patches.set_clock(vclock)
    emu = Emulator(config["aws:region"])
    try:
        emu.start()
        cloud = SimulatedCloud(emu, vclock.now)
        moto_patches.set_invoke_hook(cloud.route)
        apply_program(emu, stack=STACK, config=config, state_path=tmp_path / "state.json")
        record_applied(emu, config, STACK, actor="sandbox:up", project_dir=REPO)
        clients = Clients(
            **{s: emu.client(s) for s in ("sagemaker", "ssm", "dynamodb", "cloudwatch", "sns", "s3")}
        )
        yield World(emu, vclock, cloud, AlarmEvaluator(emu.backend("cloudwatch"), vclock.now),
                    EventBus(emu, vclock.now), clients)  # fmt: skip
    finally:
        moto_patches.set_invoke_hook(None)
        moto_patches.set_clock(None)
        clock.use(previous)
        emu.stop()


def test_a_drill_of_a_live_rollout_restores_it_and_the_stepper_does_not_drain_it_again(world: World) -> None:
    progress_name = names.rollout_progress_parameter(STACK, PHYSICAL)
    quarantine_name = names.quarantine_parameter(STACK, PHYSICAL)
    world.tick(120)  # the stepper's schedule has fired: the rollout is live at its first step
    before = world.weights()
    assert before["candidate"] == 10.0 and world.parameter(progress_name) is not None

    report = run_drill(
        world.clients,
        load_stack_file(REPO / "environments" / f"Pulumi.{STACK}.yaml", STACK),
        "fraud-scorer",
        timeout_seconds=30,
        i_know_this_is_prod=False,
        progress=lambda _text, _s: world.tick(),  # the daemon keeps running while the drill polls
        poll_seconds=0.0,
    )
    assert report["rolled_back"] and report["restored"], report
    assert world.weights() == before and world.parameter(quarantine_name) is None

    world.tick(600)  # ten simulated minutes of stepper ticks, alarm evaluations and retries

    assert world.parameter(quarantine_name) is None
    assert world.weights()["candidate"] > 0  # still serving: not drained again
    assert len(world.items("drain")) == 1  # the drill's own drain, once
    progress = world.parameter(progress_name) or ""
    assert '"halted"' not in progress, progress
