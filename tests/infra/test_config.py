"""Stack config validation: every bad config fails before any resource is registered."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.config import load_stack_file, pulumi_config_from_stack_file
from infra.runtime_records import rollout_plan
from infra.testing import RecordingMocks, run_program
from infra.validation import validate
from rollback.runtime.errors import ConfigError
from tests.infra.helpers import config_map, endpoint_values, stack_values

SOURCE = "environments/Pulumi.dev.yaml"
ROOT = Path(__file__).resolve().parents[2]


def rejected(values: dict) -> str:
    """Run the real program on ``values``; assert it fails with ConfigError and registered nothing."""
    mocks = RecordingMocks()
    with pytest.raises(ConfigError) as info:
        run_program(config_map(values), stack="dev", mocks=mocks)
    assert mocks.resources == [], (
        f"resources registered despite bad config: {[r.name for r in mocks.resources]}"
    )
    return str(info.value)


def test_unknown_release_version_names_file_key_and_known_versions():
    ep = endpoint_values(release={"stable": "v1", "candidate": "v9"})
    message = rejected(stack_values(ep))
    assert (
        f"{SOURCE}: mlrollback:endpoints[0].release.candidate: 'v9' is not in the version catalog "
        "(known: v1, v2); add it under versions or fix the release"
    ) in message


def test_candidate_equal_to_stable_is_rejected():
    message = rejected(stack_values(endpoint_values(release={"stable": "v1", "candidate": "v1"})))
    assert f"{SOURCE}: mlrollback:endpoints[0].release.candidate: 'v1' equals stable" in message


def test_steps_not_strictly_increasing_are_rejected():
    ep = endpoint_values(strategy={"type": "canary", "steps": [10, 10, 50]})
    message = rejected(stack_values(ep))
    assert "mlrollback:endpoints[0].strategy.steps: [10, 10, 50] must be strictly increasing" in message


def test_steps_outside_zero_to_hundred_are_rejected():
    ep = endpoint_values(strategy={"type": "canary", "steps": [0, 50, 120]})
    message = rejected(stack_values(ep))
    assert "mlrollback:endpoints[0].strategy.steps: [0, 120] outside (0, 100]" in message


@pytest.mark.parametrize(
    ("key", "strategy", "capture", "fragment"),
    [
        (
            "candidatePercent",
            {"type": "ab", "candidatePercent": 150},
            20,
            "150 is out of range; a percent in (0, 100]",
        ),
        ("stepPercent", {"type": "linear", "stepPercent": 0}, 20, "0 is out of range; a percent in (0, 100]"),
        ("samplingPercent", {"type": "canary"}, 101, "101 is out of range; a percent in [0, 100]"),
    ],
)
def test_weights_out_of_range_are_rejected(key, strategy, capture, fragment):
    ep = endpoint_values(strategy=strategy, dataCapture={"samplingPercent": capture})
    message = rejected(stack_values(ep))
    assert f".{key}: {fragment}" in message


def test_malformed_s3_uri_is_rejected():
    ep = endpoint_values()
    ep["versions"]["v2"]["modelDataUrl"] = "https://models-bucket/fraud/v2/model.tar.gz"
    message = rejected(stack_values(ep))
    assert (
        "mlrollback:endpoints[0].versions.v2.modelDataUrl: 'https://models-bucket/fraud/v2/model.tar.gz' "
        "is not an S3 URI like s3://bucket/path/model.tar.gz"
    ) in message


def test_instance_type_without_ml_prefix_is_rejected():
    message = rejected(stack_values(endpoint_values(instanceType="m5.large")))
    assert "mlrollback:endpoints[0].instanceType: 'm5.large' is not a SageMaker instance type" in message


def test_unknown_strategy_lists_the_known_ones():
    message = rejected(stack_values(endpoint_values(strategy={"type": "rainbow"})))
    assert "strategy.type: unknown strategy 'rainbow'; use one of canary, linear, blue-green" in message


def test_shadow_strategy_without_shadow_version_is_rejected():
    ep = endpoint_values(release={"stable": "v1"}, strategy={"type": "shadow"})
    message = rejected(stack_values(ep))
    assert "strategy.type: strategy shadow needs release.shadow; add the shadow version" in message


def test_shadow_version_with_a_non_shadow_strategy_is_rejected():
    ep = endpoint_values(release={"stable": "v1", "shadow": "v2"})
    message = rejected(stack_values(ep))
    assert "release.shadow: a shadow version needs strategy.type: shadow (got 'canary')" in message


@pytest.mark.parametrize(
    ("triggers", "fragment"),
    [
        ({"errorRate": -0.1}, "triggers.errorRate: -0.1 must be a share in (0, 1]"),
        ({"errorRate": 5}, "triggers.errorRate: 5 must be a share in (0, 1]"),
        ({"p99LatencyMs": -5}, "triggers.p99LatencyMs: -5 must be > 0 milliseconds"),
        ({"minSamples": 1}, "triggers.minSamples: 1 is out of range"),  # one request would breach
        ({"minSamples": "many"}, "triggers.minSamples: must be an integer"),
        ({"drift": {"maxScore": -1}}, "triggers.drift.maxScore: -1 must be > 0"),
        (
            {"quality": {"metric": "auc", "min": 0.9, "max": 0.8}},
            "triggers.quality: min 0.9 must be below max 0.8",
        ),
        (
            {"datapointsToAlarm": 4, "evaluationPeriods": 3},
            "datapointsToAlarm: 4 exceeds evaluationPeriods 3",
        ),
    ],
)
def test_thresholds_of_the_wrong_sign_or_shape_are_rejected(triggers, fragment):
    ep = endpoint_values()
    ep["triggers"].update(triggers)
    assert fragment in rejected(stack_values(ep))


@pytest.mark.parametrize("timeout", [300, 20000])
def test_max_execution_timeout_outside_provider_range_is_rejected(timeout):
    ep = endpoint_values(
        strategy={"type": "canary", "steps": [10, 100], "maxExecutionTimeoutSeconds": timeout}
    )
    message = rejected(stack_values(ep))
    assert (
        f"strategy.maxExecutionTimeoutSeconds: {timeout} is outside what the provider accepts "
        "(600-14400 seconds)" in message
    )


def test_guardrail_waits_longer_than_the_timeout_are_rejected():
    # linear 10 % steps x 600 s = 6000 s of bakes: beyond the 1800 s timeout and the 60-minute waiter.
    strategy = {
        "type": "linear",
        "stepPercent": 10,
        "guardrailWaitSeconds": 600,
        "maxExecutionTimeoutSeconds": 1800,
    }
    message = rejected(stack_values(endpoint_values(strategy=strategy)))
    assert (
        "strategy.guardrailWaitSeconds: the blue/green update would wait 6120 s in total, more than 1800 s"
        in message
    )


def test_builtin_metrics_need_one_minute_periods():
    ep = endpoint_values()
    ep["triggers"] = {"metrics": "builtin", "periodSeconds": 10}
    assert "triggers.periodSeconds: 10 s: built-in AWS/SageMaker metrics are 1-minute" in rejected(
        stack_values(ep)
    )


def test_duplicate_endpoint_names_are_rejected():
    message = rejected(stack_values(endpoint_values("scorer"), endpoint_values("scorer")))
    assert "mlrollback:endpoints[1].name: duplicate endpoint name 'scorer' (also endpoints[0])" in message


def test_bring_your_own_bucket_needs_a_bucket_name():
    message = rejected(stack_values(artifacts={"create": False}))
    assert "mlrollback:artifacts.bucket: is required when create is false" in message


def test_every_problem_is_reported_at_once_one_line_each():
    ep = endpoint_values(instanceType="m5.large", release={"stable": "v1", "candidate": "v1"})
    ep["triggers"]["errorRate"] = -1
    message = rejected(stack_values(ep, endpoint_values("other", strategy={"type": "rainbow"})))
    lines = message.splitlines()
    assert lines[0] == "4 problems in the stack config:"
    assert all(line.startswith(f"{SOURCE}: mlrollback:endpoints[") for line in lines[1:])


def test_missing_region_is_reported():
    mocks = RecordingMocks()
    with pytest.raises(ConfigError, match=r"aws:region: is required"):
        run_program(config_map(stack_values(), region=None), stack="dev", mocks=mocks)
    assert mocks.resources == []


def test_load_stack_file_names_the_file_in_messages(tmp_path):
    path = tmp_path / "Pulumi.qa.yaml"
    path.write_text(
        "config:\n  aws:region: eu-west-1\n  mlrollback:endpoints:\n"
        "    - name: e\n      instanceType: ml.m5.large\n"
        "      versions: {v1: {image: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/b:1, modelDataUrl: s3://bb/m}}\n"
        "      release: {stable: v7}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_stack_file(path)
    assert (
        f"{path}: mlrollback:endpoints[0].release.stable: 'v7' is not in the version catalog (known: v1)"
        in str(info.value)
    )


def test_missing_stack_file_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="stack file not found"):
        load_stack_file(tmp_path / "Pulumi.nope.yaml")


def test_unquoted_numeric_framework_version_is_flagged():
    ep = endpoint_values()
    ep["versions"]["v2"]["frameworkVersion"] = 1.7
    with pytest.raises(ConfigError, match="frameworkVersion: quote it as a string"):
        validate(stack_values(ep), stack="dev", region="eu-west-1", source=SOURCE)


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_stack_file_and_pulumi_config_paths_agree(stack):
    path = ROOT / "environments" / f"Pulumi.{stack}.yaml"
    from_file = load_stack_file(path)
    mocks = RecordingMocks()
    seen = {}

    def program():
        from infra.config import from_pulumi

        seen["cfg"] = from_pulumi()

    run_program(pulumi_config_from_stack_file(path), stack=stack, mocks=mocks, program=program)
    assert seen["cfg"].endpoints == from_file.endpoints
    assert seen["cfg"].region == from_file.region == "eu-west-1"
    assert seen["cfg"].production == from_file.production


def test_rollout_plan_id_changes_with_the_plan_and_only_then():
    cfg = validate(stack_values(), stack="dev", region="eu-west-1", source=SOURCE)
    plan = rollout_plan(cfg.endpoints[0])
    assert plan["steps"] == [10, 50, 100]
    assert plan["candidateAlarms"] == [
        "fraud-scorer-dev-candidate-errors",
        "fraud-scorer-dev-candidate-latency",
    ]
    assert rollout_plan(cfg.endpoints[0])["planId"] == plan["planId"]
    other = validate(
        stack_values(endpoint_values(strategy={"type": "canary", "steps": [10, 60, 100]})),
        stack="dev",
        region="eu-west-1",
        source=SOURCE,
    )
    assert rollout_plan(other.endpoints[0])["planId"] != plan["planId"]
    assert len(plan["planId"]) == 12


@pytest.mark.parametrize(
    ("strategy", "steps"),
    [
        ({"type": "linear", "stepPercent": 30}, [30, 60, 90, 100]),
        ({"type": "ab", "candidatePercent": 40}, [40]),
        ({"type": "blue-green"}, [100]),
        ({"type": "all-at-once"}, [100]),
    ],
)
def test_rollout_plan_steps_follow_the_strategy(strategy, steps):
    cfg = validate(
        stack_values(endpoint_values(strategy=strategy)), stack="dev", region="eu-west-1", source=SOURCE
    )
    assert rollout_plan(cfg.endpoints[0])["steps"] == steps


def test_rollout_plan_without_candidate_has_no_steps():
    ep = endpoint_values(release={"stable": "v1"})
    cfg = validate(stack_values(ep), stack="dev", region="eu-west-1", source=SOURCE)
    plan = rollout_plan(cfg.endpoints[0])
    assert plan["candidate"] is None
    assert plan["steps"] == []


def test_names_the_program_generates_must_fit_sagemaker_limits():
    long_name = "a-very-long-endpoint-name-for-the-risk-team-xx"  # 46 + "-dev" = 50 > 48
    values = stack_values(endpoint_values(long_name))
    message = rejected(values)
    assert (
        f"mlrollback:endpoints[0].name: the endpoint configuration name '{long_name}-dev-config-xxxxxxx'"
        in message
    )
    assert "is at most 48 characters" in message


def test_version_keys_that_collide_as_model_names_are_rejected_and_dots_are_allowed():
    ep = endpoint_values()
    ep["versions"]["v1.2"] = dict(ep["versions"]["v1"])
    ep["versions"]["v1_2"] = dict(ep["versions"]["v1"])
    message = rejected(stack_values(ep))
    assert "version keys 'v1.2' and 'v1_2' give the same SageMaker model name part 'v1-2'" in message


def test_shadow_verdict_gate_settings_are_validated_and_default_off():
    cfg = validate(stack_values(endpoint_values()), stack="dev", region="eu-west-1", source=SOURCE)
    assert cfg.rehearsal.shadow_verdict.required is False
    message = rejected(
        stack_values(endpoint_values(), rehearsal={"shadowVerdict": {"required": True, "minAgreement": 1.5}})
    )
    assert "mlrollback:rehearsal.shadowVerdict.minAgreement: 1.5 must be a share in (0, 1]" in message


# --- Review findings: things real AWS refuses that validation used to accept ----------------------


def test_keep_variant_names_with_a_shadow_is_rejected_naming_the_key():
    """SageMaker allows one production variant next to a shadow variant; an idle candidate is a second."""
    ep = endpoint_values(
        release={"stable": "v1", "shadow": "v2"},
        strategy={
            "type": "shadow",
            "shadowPercent": 50,
            "guardrailWaitSeconds": 60,
            "keepVariantNames": True,
        },
    )
    message = rejected(stack_values(ep))
    assert (
        f"{SOURCE}: mlrollback:endpoints[0].strategy.keepVariantNames: an idle candidate would be a second "
        "production variant, but SageMaker allows only one production variant next to a shadow variant; "
        "remove keepVariantNames (or set it to false) for strategy shadow"
    ) in message


def test_shadow_strategy_without_keep_variant_names_is_accepted():
    ep = endpoint_values(
        release={"stable": "v1", "shadow": "v2"},
        strategy={
            "type": "shadow",
            "shadowPercent": 50,
            "guardrailWaitSeconds": 60,
            "keepVariantNames": False,
        },
    )
    cfg = validate(stack_values(ep), stack="dev", region="eu-west-1", source=SOURCE)
    assert cfg.endpoints[0].production_roles() == ("stable",)


def test_endpoint_name_whose_execution_role_name_would_pass_64_characters_is_rejected():
    """Pulumi auto-names the role '<physical>-execution-role-' + 7 characters; IAM allows 64."""
    name = "customer-lifetime-value-predictor-eu"  # + "-staging" = 44 characters
    values = stack_values(endpoint_values(name=name))
    with pytest.raises(ConfigError) as info:
        validate(values, stack="staging", region="eu-west-1", source=SOURCE)
    assert (
        f"{SOURCE}: mlrollback:endpoints[0].name: the endpoint's execution role name "
        f"'{name}-staging-execution-role-xxxxxxx' would be 67 characters and IAM allows 64; shorten the "
        f"endpoint name so that '{name}-staging' (name + '-' + stack) is at most 41 characters"
    ) in str(info.value)


@pytest.mark.parametrize(("length", "ok"), [(41, True), (42, False)])
def test_the_longest_accepted_physical_name_gives_a_64_character_role_name(length, ok):
    name = "e" * (length - len("-dev"))
    values = stack_values(endpoint_values(name=name))
    if ok:
        validate(values, stack="dev", region="eu-west-1", source=SOURCE)
        roles = [r.name for r in run_program(config_map(values), stack="dev").of_type("iam/role:Role")]
        assert max(len(r) + len("-xxxxxxx") for r in roles) == 64
    else:
        with pytest.raises(ConfigError, match="IAM allows 64"):
            validate(values, stack="dev", region="eu-west-1", source=SOURCE)


@pytest.mark.parametrize(
    "image",
    [
        "registry.example.com/fraud:1.0",
        "docker.io/library/python:3.12",
        "ghcr.io/acme/fraud@sha256:" + "a" * 64,
        "123.dkr.ecr.eu-west-1.amazonaws.com/fraud:1.0",  # not a 12-digit account
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/fraud",  # no tag or digest
    ],
)
def test_non_ecr_images_are_rejected_with_what_to_do(image):
    """SageMaker pulls from ECR only, unless the model sets VPC image access, which the program does not."""
    ep = endpoint_values()
    ep["versions"]["v1"]["image"] = image
    message = rejected(stack_values(ep))
    assert (
        f"{SOURCE}: mlrollback:endpoints[0].versions.v1.image: {image!r} is not an Amazon ECR image URI"
        in message
    )
    assert "push the image to ECR, or use framework + frameworkVersion" in message


@pytest.mark.parametrize(
    "image",
    [
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/fraud:1.0",
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/fraud-scorer@sha256:" + "0" * 64,
        "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com/fraud:1.0",
        "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/fraud:v1_2",
    ],
)
def test_ecr_images_are_accepted(image):
    ep = endpoint_values()
    ep["versions"]["v1"]["image"] = image
    cfg = validate(stack_values(ep), stack="dev", region="eu-west-1", source=SOURCE)
    assert cfg.endpoints[0].versions["v1"].image == image
