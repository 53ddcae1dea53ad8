"""Lambda entry points: import weight, environment contract, end-to-end through make_clients."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from rollback.runtime import handler, names
from rollback.runtime.errors import ConfigError, EventError
from rollback.runtime.settings import Settings
from tests.rollback.conftest import World, alarm_event

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("typer", "rich", "pulumi", "pulumi_aws", "moto", "sagemaker", "click", "ruamel", "matplotlib")


def test_importing_the_handler_loads_no_cli_infra_or_test_packages() -> None:
    code = (
        "import json, sys\n"
        "import rollback.runtime.handler\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(json.dumps(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)

    assert json.loads(out.stdout) == []


def test_settings_from_env_names_every_missing_variable() -> None:
    with pytest.raises(ConfigError, match="MLROLLBACK_AUDIT_TABLE, MLROLLBACK_QUARANTINE_PREFIX"):
        Settings.from_env({names.ENV_STACK: "dev", names.ENV_ROLLOUT_PREFIX: "/x"})


@pytest.fixture
def lambda_env(world: World, monkeypatch: pytest.MonkeyPatch):
    """The environment the program sets on the functions; the handler builds its own clients."""
    settings = world.settings
    monkeypatch.setenv(names.ENV_STACK, settings.stack)
    monkeypatch.setenv(names.ENV_AUDIT_TABLE, settings.audit_table)
    monkeypatch.setenv(names.ENV_TOPIC_ARN, settings.topic_arn)
    monkeypatch.setenv(names.ENV_QUARANTINE_PREFIX, settings.quarantine_prefix)
    monkeypatch.setenv(names.ENV_ROLLOUT_PREFIX, settings.rollout_prefix)
    handler.reset()
    yield world
    handler.reset()


class Context:
    function_name = "mlrollback-dev-rollback"


def test_on_alarm_drains_through_the_lambda_entry_point(lambda_env: World, capsys) -> None:
    world = lambda_env
    event = alarm_event(names.alarm_name(world.endpoint, "candidate", "errors"), world.endpoint, "candidate")

    result = handler.on_alarm(event, Context())

    assert result["action"] == "drained"
    assert world.weights()["candidate"] == 0.0
    assert world.audit_items()[0]["actor"] == "lambda:mlrollback-dev-rollback"
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert any(line.get("action") == "drained" and line.get("endpoint") == world.endpoint for line in lines)


def test_on_alarm_rejects_a_malformed_event_before_touching_anything(lambda_env: World) -> None:
    with pytest.raises(EventError, match="detail-type"):
        handler.on_alarm({"detail-type": "nope", "detail": {}}, Context())
    assert lambda_env.weights() == {"stable": 90.0, "candidate": 10.0}


def test_on_schedule_starts_rollouts(lambda_env: World) -> None:
    world = lambda_env
    world.put_plan(world.endpoint)

    result = handler.on_schedule(
        {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}, None
    )

    assert result["endpoints"][world.endpoint]["action"] == "start"


def test_log_lines_follow_stdout_when_it_is_swapped() -> None:
    import io

    from rollback.runtime import logs

    logs.configure()
    swapped = io.StringIO()
    real = sys.stdout
    sys.stdout = swapped
    try:
        logs.log(logging.INFO, "after swap", endpoint="x")
    finally:
        sys.stdout = real
    assert json.loads(swapped.getvalue())["event"] == "after swap"
