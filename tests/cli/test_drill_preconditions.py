"""The real drill starts only from a settled endpoint, and CI's promote after a finalize is a no-op.

Found by a second review: a drill that read CurrentWeight while a stepper advance was still
Updating restored the previous step's weights with the next step's progress record, and the stepper
then held that rollout forever.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from infra.config import load_stack_file
from rollback.cli import app
from rollback.ops.rehearsal import run_drill
from rollback.ops.stackfile import Release, StackDocument
from rollback.runtime import clock, names
from rollback.runtime.aws import Clients
from rollback.runtime.errors import ConflictError
from tests.cli.conftest import audit_table, deploy_endpoint, promoted_before, record_drill
from tests.cli.test_drill_restore import _live, _parameter

runner = CliRunner()


class _Updating:
    """SageMaker during an in-flight weights update: Updating, CurrentWeight still the old split."""

    def __init__(self, client: Any, old: dict[str, float]) -> None:
        self._client, self.old = client, old

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)
        if name != "describe_endpoint":
            return target

        def describe(**kw: Any) -> Any:
            resp = target(**kw)
            variants = [
                {**v, "CurrentWeight": self.old[v["VariantName"]]} for v in resp["ProductionVariants"]
            ]
            return {**resp, "EndpointStatus": "Updating", "ProductionVariants": variants}

        return describe


class _UpdatingFor(_Updating):
    """Updating for the first ``n`` DescribeEndpoint calls (a deploy finishing), then as it is."""

    def __init__(self, client: Any, n: int) -> None:
        super().__init__(client, {})
        self.left = n

    def __getattr__(self, name: str) -> Any:
        if name != "describe_endpoint" or self.left <= 0:
            return getattr(self._client, name)
        self.left -= 1
        target = self._client.describe_endpoint
        return lambda **kw: {**target(**kw), "EndpointStatus": "Updating"}


def test_a_drill_started_while_the_endpoint_is_still_updating_waits_for_it_and_says_so(
    project: Path, aws: dict[str, Any]
) -> None:
    audit_table(aws, "staging")
    deploy_endpoint(aws, "staging", weights={"stable": 90, "candidate": 10})
    said: list[str] = []
    clients = Clients(**{**aws, "sagemaker": _UpdatingFor(aws["sagemaker"], 3)})

    report = run_drill(
        clients,
        load_stack_file(project / "environments/Pulumi.staging.yaml", "staging"),
        "fraud-scorer",
        timeout_seconds=0.2,  # no Lambda here: the drain is never seen, the drill just has to start
        i_know_this_is_prod=False,
        progress=lambda text, _s: said.append(text),
        ready_wait_seconds=5,
        poll_seconds=0.01,
    )

    assert clients.sagemaker.left == 0 and report["weights_before"] == {"stable": 90.0, "candidate": 10.0}
    assert (
        said[0]
        == "waiting for fraud-scorer-staging to be InService (it is Updating) before forcing the alarm"
    )
    assert any(t.startswith("waiting for the drain of v2") for t in said)


def test_a_drill_during_a_stepper_advance_is_refused_before_anything_changes(
    project: Path, aws: dict[str, Any]
) -> None:
    audit_table(aws, "staging")
    physical = deploy_endpoint(
        aws, "staging", weights={"stable": 50, "candidate": 50}, progress={"stepIndex": 1, "state": "baking"}
    )
    progress_before = _parameter(aws, names.rollout_progress_parameter("staging", physical))
    clients = Clients(
        **{**aws, "sagemaker": _Updating(aws["sagemaker"], {"stable": 90.0, "candidate": 10.0})}
    )

    with pytest.raises(
        ConflictError, match=r"Updating .*waited 0.2 s.* retry when `mlrollback status` shows"
    ):
        run_drill(
            clients,
            load_stack_file(project / "environments/Pulumi.staging.yaml", "staging"),
            "fraud-scorer",
            timeout_seconds=5,
            i_know_this_is_prod=False,
            ready_wait_seconds=0.2,
            poll_seconds=0.05,
        )

    alarm = names.alarm_name(physical, names.CANDIDATE, "errors")
    states = aws["cloudwatch"].describe_alarms(AlarmNames=[alarm])["MetricAlarms"]
    assert all(a["StateValue"] != "ALARM" for a in states)  # never forced
    assert _live(aws, physical) == {"stable": 50.0, "candidate": 50.0}
    assert _parameter(aws, names.rollout_progress_parameter("staging", physical)) == progress_before


def test_a_drill_of_a_declared_candidate_that_is_not_deployed_is_a_refused_gate(
    project: Path, aws: dict[str, Any]
) -> None:
    audit_table(aws, "staging")  # staging declares candidate v2; its endpoint was never deployed
    result = runner.invoke(
        app, ["drill", "--stack", "staging", "--endpoint", "fraud-scorer", "--skip-if-no-candidate"]
    )
    assert result.exit_code == 8, result.output
    assert "fraud-scorer-staging is not deployed; run `pulumi up`" in " ".join(result.output.split())


def test_after_a_finalize_ci_skips_the_drill_and_promotes_nothing_without_asking_for_a_drill(
    project: Path, aws: dict[str, Any]
) -> None:
    # staging finalized v2: stable v2, no candidate; v2's passing drill is older than maxAgeHours
    path = project / "environments/Pulumi.staging.yaml"
    doc = StackDocument.load(path)
    doc.set_release("fraud-scorer", Release("v2", None))
    path.write_text(doc.render())
    audit_table(aws, "staging")
    deploy_endpoint(aws, "staging", weights={"stable": 100}, stable="v2", candidate=None)
    previous = clock.use(clock.VirtualClock(clock.now() - timedelta(hours=73)))
    try:
        record_drill(aws, project, "staging", "v2")
    finally:
        clock.use(previous)
    audit_table(aws, "prod")
    deploy_endpoint(aws, "prod", weights={"stable": 90, "candidate": 10})  # prod runs v2 as candidate
    promoted_before(aws, project, "v2", hours_ago=72)  # one hour after that drill: it was fresh then
    prod_before = (project / "environments/Pulumi.prod.yaml").read_text()

    drill = runner.invoke(
        app, ["drill", "--stack", "staging", "--endpoint", "fraud-scorer", "--skip-if-no-candidate"]
    )
    promote = runner.invoke(
        app, ["promote", "--from", "staging", "--to", "prod", "--endpoint", "fraud-scorer", "--json"]
    )

    assert drill.exit_code == 0, drill.output
    assert promote.exit_code == 0, promote.output
    assert '"changed": false' in promote.stdout
    assert (project / "environments/Pulumi.prod.yaml").read_text() == prod_before
