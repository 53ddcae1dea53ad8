"""The real-stack drill's restore: waits out a busy endpoint, puts the rollout back, records a failure."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from infra.config import load_stack_file
from rollback.ops.rehearsal import run_drill
from rollback.ops.stackfile import Release, StackDocument
from rollback.runtime import audit, clock, names
from rollback.runtime.aws import Clients
from rollback.runtime.drain import drain
from rollback.runtime.errors import RetryExhaustedError
from rollback.runtime.retry import RetryPolicy
from rollback.runtime.settings import Settings
from tests.cli.conftest import audit_table, deploy_endpoint

BUSY = 'Cannot update in-progress endpoint "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/x"'
POLL = 0.5


class Flaky:
    """A thin proxy over the moto SageMaker client: only AWS's answers change, never the code under test.

    ``updating(n)`` makes the next ``n`` DescribeEndpoint answers say ``Updating``; ``refuse(n)`` makes
    the next ``n`` weight updates fail with SageMaker's busy-endpoint ValidationException.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self.busy_describes = 0
        self.refusals = 0
        self.calls: dict[str, int] = {}

    def updating(self, times: int) -> None:
        self.busy_describes += times

    def refuse(self, times: int) -> None:
        self.refusals += times

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)
        if not callable(target):
            return target

        def wrapper(**kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            if name == "update_endpoint_weights_and_capacities" and self.refusals:
                self.refusals -= 1
                raise ClientError({"Error": {"Code": "ValidationException", "Message": BUSY}}, name)
            response = target(**kwargs)
            if name == "describe_endpoint" and self.busy_describes:
                self.busy_describes -= 1
                response = {**response, "EndpointStatus": "Updating"}
            return response

        return wrapper


@pytest.fixture
def virtual_clock() -> Iterator[clock.VirtualClock]:
    """Backoff sleeps go through rollback.runtime.clock: a virtual clock records them without waiting."""
    vc = clock.VirtualClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    previous = clock.use(vc)
    try:
        yield vc
    finally:
        clock.use(previous)


def _retry(attempts: int) -> RetryPolicy:
    """Deterministic backoff (the upper bound of each jitter window): 1, 2, 4, ... s."""
    return RetryPolicy(attempts=attempts, base=1.0, cap=8.0, rng=lambda _lo, hi: hi)


def _lambda_then(
    aws: dict[str, Any], clients: Clients, physical: str, after_drain: Callable[[], None]
) -> Callable[[str, float], None]:
    """Stands in for the rollback Lambda: one drain while the forced alarm is in ALARM, then ``after_drain``.

    Reacting only in ALARM keeps it from draining again while the restore reports its progress.
    """
    alarm = names.alarm_name(physical, "candidate", "errors")
    drained: list[bool] = []

    def react(_message: str, _elapsed: float) -> None:
        state = aws["cloudwatch"].describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0]["StateValue"]
        if state == "ALARM" and not drained:
            drain(
                clients,
                Settings.for_stack("staging"),
                physical,
                actor="lambda:test",
                reason="alarm",
                kind="auto",
            )
            drained.append(True)
            after_drain()

    return react


def _live(aws: dict[str, Any], physical: str) -> dict[str, float]:
    desc = aws["sagemaker"].describe_endpoint(EndpointName=physical)
    return {v["VariantName"]: v["CurrentWeight"] for v in desc["ProductionVariants"]}


def _parameter(aws: dict[str, Any], name: str) -> str | None:
    try:
        return aws["ssm"].get_parameter(Name=name)["Parameter"]["Value"]
    except aws["ssm"].exceptions.ParameterNotFound:
        return None


def _stepper_halts(aws: dict[str, Any], physical: str) -> None:
    """Stands in for a stepper tick during the drill: the forced alarm halts the rollout."""
    name = names.rollout_progress_parameter("staging", physical)
    record = json.loads(_parameter(aws, name) or "{}")
    halted = {**record, "state": "halted", "reason": "candidate alarm in ALARM"}
    aws["ssm"].put_parameter(Name=name, Value=json.dumps(halted), Type="String", Overwrite=True)


def test_restore_waits_out_an_updating_endpoint_then_restores_weights_and_the_pre_drill_rollout(
    project: Path, aws: dict[str, Any], virtual_clock: clock.VirtualClock
) -> None:
    table = audit_table(aws, "staging")
    physical = deploy_endpoint(
        aws, "staging", weights={"stable": 90, "candidate": 10}, progress={"stepIndex": 1, "state": "baking"}
    )
    flaky = Flaky(aws["sagemaker"])
    clients = Clients(**{**aws, "sagemaker": flaky})

    def endpoint_stays_busy() -> None:
        _stepper_halts(aws, physical)
        # One Updating answer is seen by the drill's own poll, two by the restore; then two refusals.
        flaky.updating(3)
        flaky.refuse(2)

    report = run_drill(
        clients,
        load_stack_file(project / "environments/Pulumi.staging.yaml", "staging"),
        "fraud-scorer",
        timeout_seconds=30,
        i_know_this_is_prod=False,
        progress=_lambda_then(aws, clients, physical, endpoint_stays_busy),
        poll_seconds=POLL,
        restore_retry=_retry(6),
    )

    assert report["rolled_back"] is True and report["restored"] is True
    assert _live(aws, physical) == {"stable": 90.0, "candidate": 10.0}
    # waited 1 + 2 s for InService, then 1 + 2 s between refused updates, all on rollback.runtime.clock
    assert [s for s in virtual_clock.slept if s != POLL] == [1.0, 2.0, 1.0, 2.0]
    assert flaky.calls["update_endpoint_weights_and_capacities"] == 1 + 2 + 1  # drain, 2 refused, restore
    assert _parameter(aws, names.quarantine_parameter("staging", physical)) is None
    # the halt written during the drill is gone: step 1 bakes again, its bake restarted at the restore
    progress = json.loads(_parameter(aws, names.rollout_progress_parameter("staging", physical)) or "{}")
    assert (progress["state"], progress["stepIndex"]) == ("baking", 1)
    assert progress["stepStartedAt"] == clock.iso(virtual_clock.now())
    assert report["progress_restored"] is True and report["progress_reset"] is False
    assert any("restored to its pre-drill state (baking at step 2)" in n for n in report["notes"])
    drills = [i for i in audit.query(aws["dynamodb"], table, physical)[0] if i["action"] == "drill"]
    assert [(d["outcome"], d["detail"]["restored"], d["detail"]["progressRestored"]) for d in drills] == [
        ("done", True, True)
    ]


def test_drill_of_a_finished_rollout_leaves_it_ready_to_finalize_so_promote_still_passes(
    project: Path, aws: dict[str, Any], virtual_clock: clock.VirtualClock
) -> None:
    from typer.testing import CliRunner

    from rollback.cli import app

    audit_table(aws, "staging")
    audit_table(aws, "prod")
    physical = deploy_endpoint(
        aws,
        "staging",
        weights={"stable": 0, "candidate": 100},
        steps=[10, 25, 50, 100],
        progress={"stepIndex": 3, "state": "ready-to-finalize"},
    )
    deploy_endpoint(aws, "prod", weights={"stable": 100}, candidate=None)
    prod_file = project / "environments/Pulumi.prod.yaml"
    doc = StackDocument.load(prod_file)
    doc.set_release("fraud-scorer", Release("v1", None))  # so v2 is new in prod
    prod_file.write_text(doc.render())
    name = names.rollout_progress_parameter("staging", physical)
    before = _parameter(aws, name)
    clients = Clients(**aws)
    report = run_drill(
        clients,
        load_stack_file(project / "environments/Pulumi.staging.yaml", "staging"),
        "fraud-scorer",
        timeout_seconds=30,
        i_know_this_is_prod=False,
        progress=_lambda_then(aws, clients, physical, lambda: _stepper_halts(aws, physical)),
        poll_seconds=POLL,
        restore_retry=_retry(3),
    )
    assert report["restored"] is True and _parameter(aws, name) == before  # exactly as it was

    promoted = CliRunner().invoke(app, ["promote", "--from", "staging", "--to", "prod", "-e", "fraud-scorer"])
    assert promoted.exit_code == 0, promoted.output
    assert StackDocument.load(prod_file).release("fraud-scorer") == Release("v1", "v2")


def test_restore_without_a_pre_drill_progress_record_removes_the_one_written_during_the_drill(
    project: Path, aws: dict[str, Any], virtual_clock: clock.VirtualClock
) -> None:
    physical = deploy_endpoint(aws, "staging", weights={"stable": 90, "candidate": 10})
    audit_table(aws, "staging")
    name = names.rollout_progress_parameter("staging", physical)

    def stepper_writes_a_halt() -> None:
        record = {"planId": "abc123abc123", "stepIndex": 0, "stepStartedAt": "2026-03-01T12:00:00.000Z"}
        aws["ssm"].put_parameter(Name=name, Value=json.dumps({**record, "state": "halted"}), Type="String")

    clients = Clients(**aws)
    report = run_drill(
        clients,
        load_stack_file(project / "environments/Pulumi.staging.yaml", "staging"),
        "fraud-scorer",
        timeout_seconds=30,
        i_know_this_is_prod=False,
        progress=_lambda_then(aws, clients, physical, stepper_writes_a_halt),
        poll_seconds=POLL,
        restore_retry=_retry(3),
    )
    assert _parameter(aws, name) is None
    assert report["progress_reset"] is True and report["progress_restored"] is False
    assert "removed (it said halted at step 1)" in report["notes"][-1]


def test_restore_without_a_progress_record_says_only_what_it_restored(
    project: Path, aws: dict[str, Any], virtual_clock: clock.VirtualClock
) -> None:
    audit_table(aws, "staging")
    physical = deploy_endpoint(aws, "staging", weights={"stable": 90, "candidate": 10})
    clients = Clients(**aws)
    report = run_drill(
        clients,
        load_stack_file(project / "environments/Pulumi.staging.yaml", "staging"),
        "fraud-scorer",
        timeout_seconds=30,
        i_know_this_is_prod=False,
        progress=_lambda_then(aws, clients, physical, lambda: None),
        poll_seconds=POLL,
        restore_retry=_retry(3),
    )
    assert report["restored"] is True and _live(aws, physical) == {"stable": 90.0, "candidate": 10.0}
    assert report["progress_reset"] is False
    assert report["notes"] == [
        "pre-drill weights restored: stable 90 / candidate 10",
        "the drill's quarantine record was cleared (its drain marked complete)",
    ]


@pytest.mark.parametrize("stuck", ["updating", "refusing"])
def test_restore_that_never_gets_through_records_a_failed_drill_and_says_what_was_left(
    project: Path, aws: dict[str, Any], virtual_clock: clock.VirtualClock, stuck: str
) -> None:
    table = audit_table(aws, "staging")
    progress_record = {"stepIndex": 1, "state": "baking"}
    physical = deploy_endpoint(
        aws, "staging", weights={"stable": 90, "candidate": 10}, progress=progress_record
    )
    flaky = Flaky(aws["sagemaker"])
    clients = Clients(**{**aws, "sagemaker": flaky})

    def never_settles() -> None:
        if stuck == "updating":
            flaky.updating(1000)
        else:
            flaky.refuse(1000)

    with pytest.raises(RetryExhaustedError) as raised:
        run_drill(
            clients,
            load_stack_file(project / "environments/Pulumi.staging.yaml", "staging"),
            "fraud-scorer",
            timeout_seconds=30,
            i_know_this_is_prod=False,
            progress=_lambda_then(aws, clients, physical, never_settles),
            poll_seconds=POLL,
            restore_retry=_retry(3),
        )

    message = " ".join(str(raised.value).split())
    quarantine = names.quarantine_parameter("staging", physical)
    assert "restoring the pre-drill weights failed" in message
    assert "live weights stable 100 / candidate 0" in message
    assert f"quarantine record {quarantine} kept" in message
    assert "mlrollback clear-quarantine --stack staging --endpoint fraud-scorer" in message
    # nothing half-undone: still drained, and still quarantined so `pulumi up` keeps the drain
    assert _live(aws, physical) == {"stable": 100.0, "candidate": 0.0}
    assert json.loads(_parameter(aws, quarantine) or "{}")["version"] == "v2"
    assert _parameter(aws, names.rollout_progress_parameter("staging", physical)) is not None
    drills = [i for i in audit.query(aws["dynamodb"], table, physical)[0] if i["action"] == "drill"]
    assert len(drills) == 1 and drills[0]["outcome"] == "failed"
    left = drills[0]["detail"]["left"]
    assert left["weights"] == {"stable": 100.0, "candidate": 0.0}
    assert left["quarantine"]["parameter"] == quarantine
    assert drills[0]["detail"]["restored"] is False and "restore failed" in drills[0]["reason"]
