"""In the sandbox, a stack with strategy.keepVariantNames keeps its variant names across a release."""

from __future__ import annotations

from pathlib import Path

from rollback.ops.preflight import Declared, check_endpoint, gather_live
from rollback.sandbox.emulator import Emulator
from rollback.sandbox.runner import apply_program
from tests.infra.helpers import config_map, endpoint_values, stack_values

STRATEGY = {"type": "canary", "steps": [10, 50, 100], "bakeMinutes": 1, "guardrailWaitSeconds": 60}


def _config(release: dict[str, str]) -> dict[str, str]:
    ep = endpoint_values(release=release, strategy={**STRATEGY, "keepVariantNames": True})
    return config_map(stack_values(ep))


def _live_variants(emu: Emulator) -> dict[str, float]:
    desc = emu.client("sagemaker").describe_endpoint(EndpointName="fraud-scorer-dev")
    return {v["VariantName"]: v["CurrentWeight"] for v in desc["ProductionVariants"]}


def test_release_on_an_idle_candidate_changes_weights_not_variant_names(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with Emulator("eu-west-1") as emu:
        apply_program(emu, stack="dev", config=_config({"stable": "v1"}), state_path=state)
        assert _live_variants(emu) == {"stable": 100.0, "candidate": 0.0}

        declared = Declared(
            endpoint="fraud-scorer",
            physical="fraud-scorer-dev",
            stable="v1",
            candidate="v2",
            shadow=None,
            strategy="canary",
            steps=(10.0, 50.0, 100.0),
            keep_variant_names=True,
        )
        live = gather_live(emu.client("sagemaker"), emu.client("ssm"), "dev", "fraud-scorer-dev")
        assert "variant-set-changes" not in [f.code for f in check_endpoint(declared, live)]

        apply_program(emu, stack="dev", config=_config({"stable": "v1", "candidate": "v2"}), state_path=state)
        weights = _live_variants(emu)
        assert set(weights) == {"stable", "candidate"}
        assert weights["candidate"] > 0
