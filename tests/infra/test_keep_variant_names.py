"""strategy.keepVariantNames: an idle candidate keeps the variant names of every endpoint update.

SageMaker's deployment guardrails require a blue/green update's new endpoint config to keep the old
variant names; without this option a release adds `candidate` and finalize/revert remove it.
"""

from __future__ import annotations

from infra.runtime_records import declared_weights
from infra.validation import validate
from tests.infra.helpers import endpoint_values, run, stack_values
from tests.infra.test_components import variants
from tests.infra.test_config import rejected

KEEP = {"type": "canary", "steps": [10, 50, 100], "bakeMinutes": 1, "guardrailWaitSeconds": 60}


def _endpoint(release: dict[str, str], keep: bool = True) -> dict:
    return endpoint_values(release=release, strategy={**KEEP, "keepVariantNames": keep})


def test_without_a_release_the_idle_candidate_serves_the_stable_model_at_weight_zero() -> None:
    by_role, _ = variants(run(stack_values(_endpoint({"stable": "v1"}))))

    assert list(by_role) == ["stable", "candidate"]
    assert by_role["stable"]["initialVariantWeight"] == 100
    assert by_role["candidate"]["initialVariantWeight"] == 0
    assert by_role["candidate"]["modelName"] == by_role["stable"]["modelName"] == "fraud-scorer-dev-model-v1"
    assert by_role["candidate"]["initialInstanceCount"] == by_role["stable"]["initialInstanceCount"]


def test_release_finalize_and_revert_all_keep_the_same_variant_names() -> None:
    releases = [
        {"stable": "v1"},  # before the release
        {"stable": "v1", "candidate": "v2"},  # release
        {"stable": "v2"},  # finalize
        {"stable": "v1"},  # revert
    ]
    sets = [list(variants(run(stack_values(_endpoint(r))))[0]) for r in releases]
    assert sets == [["stable", "candidate"]] * 4


def test_a_released_candidate_is_declared_as_without_the_option() -> None:
    with_keep, _ = variants(run(stack_values(_endpoint({"stable": "v1", "candidate": "v2"}))))
    without, _ = variants(run(stack_values(_endpoint({"stable": "v1", "candidate": "v2"}, keep=False))))
    assert with_keep == without


def test_default_is_off_and_the_idle_candidate_takes_no_weight_in_the_plan_weights() -> None:
    cfg = validate(
        stack_values(endpoint_values(release={"stable": "v1"})),
        stack="dev",
        region="eu-west-1",
        source="x.yaml",
    )
    ep = cfg.endpoints[0]
    assert ep.strategy.keep_variant_names is False
    assert declared_weights(ep) == {"stable": 100}
    kept = validate(
        stack_values(_endpoint({"stable": "v1"})), stack="dev", region="eu-west-1", source="x.yaml"
    ).endpoints[0]
    assert declared_weights(kept) == {"stable": 100, "candidate": 0}
    assert kept.production_roles() == ("stable", "candidate")


def test_a_non_boolean_value_names_the_key() -> None:
    message = rejected(stack_values(endpoint_values(strategy={**KEEP, "keepVariantNames": "yes"})))
    assert "mlrollback:endpoints[0].strategy.keepVariantNames: must be true or false, got 'yes'" in message
