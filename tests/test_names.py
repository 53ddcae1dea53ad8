from __future__ import annotations

import pytest

from rollback.runtime import names


def test_alarm_names_round_trip_and_do_not_mention_versions() -> None:
    ep = names.endpoint_name("dev", "fraud-scorer")
    alarm = names.alarm_name(ep, names.CANDIDATE, "errors")
    assert alarm == "fraud-scorer-dev-candidate-errors"
    assert names.parse_alarm_name(alarm) == ("fraud-scorer-dev", "candidate", "errors")


@pytest.mark.parametrize("bad", ["fraud-scorer-dev-canary-errors", "x-candidate-speed", "nohyphens"])
def test_parse_alarm_name_rejects_foreign_alarms(bad: str) -> None:
    assert names.parse_alarm_name(bad) is None


def test_endpoint_name_rejects_names_sagemaker_would_refuse() -> None:
    with pytest.raises(ValueError, match="at most 63"):
        names.endpoint_name("prod", "x" * 60)
    with pytest.raises(ValueError, match="endpoint name"):
        names.endpoint_name("dev", "bad_name")


def test_stack_names_are_checked() -> None:
    assert names.check_stack("staging") == "staging"
    with pytest.raises(ValueError, match="stack name"):
        names.check_stack("Prod Stack")


def test_record_parameters_live_under_the_stack_prefixes() -> None:
    ep = names.endpoint_name("staging", "ranker")
    assert names.quarantine_parameter("staging", ep).startswith(names.quarantine_prefix("staging") + "/")
    assert names.rollout_plan_parameter("staging", ep).startswith(names.rollout_prefix("staging") + "/")
    assert names.rollout_progress_parameter("staging", ep) != names.rollout_plan_parameter("staging", ep)
