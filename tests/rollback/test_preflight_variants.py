"""Preflight warns when `pulumi up` changes an endpoint's variant names (guardrails exclusion)."""

from __future__ import annotations

from rollback.ops.preflight import Declared, Live, check_endpoint, gather_live


def _declared(
    candidate: str | None = "v2", shadow: str | None = None, stable: str = "v1", keep: bool = False
) -> Declared:
    return Declared(
        endpoint="fraud-scorer",
        physical="fraud-scorer-dev",
        stable=stable,
        candidate=candidate,
        shadow=shadow,
        strategy="canary",
        steps=(10.0, 50.0, 100.0) if candidate else (),
        keep_variant_names=keep,
    )


def _live(variants: set[str] | None, weights: dict[str, float]) -> Live:
    return Live(
        "fraud-scorer-dev",
        exists=True,
        status="InService",
        weights=weights,
        variants=frozenset(variants) if variants is not None else None,
    )


def test_starting_a_release_on_a_stable_only_endpoint_warns_and_does_not_fail() -> None:
    findings = check_endpoint(_declared(), _live({"stable"}, {"stable": 100.0}))

    assert [(f.severity, f.code) for f in findings] == [("warning", "variant-set-changes")]
    assert "from [stable] to [candidate, stable]" in findings[0].message
    assert "guardrails" in findings[0].message


def test_finalizing_away_the_candidate_warns_too() -> None:
    live = _live({"stable", "candidate"}, {"stable": 0.0, "candidate": 100.0})
    codes = [f.code for f in check_endpoint(_declared(candidate=None), live)]
    assert "variant-set-changes" in codes


def test_adding_a_shadow_variant_counts_as_a_change() -> None:
    live = _live({"stable", "candidate"}, {"stable": 90.0, "candidate": 10.0})
    codes = [f.code for f in check_endpoint(_declared(shadow="v3"), live)]
    assert "variant-set-changes" in codes


def test_same_variant_set_gives_no_warning() -> None:
    live = _live({"stable", "candidate"}, {"stable": 90.0, "candidate": 10.0})
    assert [f.code for f in check_endpoint(_declared(), live)] == ["ok"]


def test_unknown_live_variants_give_no_warning() -> None:
    assert [f.code for f in check_endpoint(_declared(), _live(None, {"stable": 100.0}))] == ["ok"]


class _SageMaker:
    class exceptions:
        ClientError = Exception

    def describe_endpoint(self, EndpointName: str) -> dict:
        return {
            "EndpointStatus": "InService",
            "ProductionVariants": [{"VariantName": "stable", "CurrentWeight": 1.0}],
            "ShadowProductionVariants": [{"VariantName": "shadow", "CurrentWeight": 1.0}],
        }


class _SSM:
    class exceptions:
        class ParameterNotFound(Exception):
            pass

    def get_parameter(self, Name: str) -> dict:
        raise self.exceptions.ParameterNotFound(Name)


def test_gather_live_reads_production_and_shadow_variant_names() -> None:
    live = gather_live(_SageMaker(), _SSM(), "dev", "fraud-scorer-dev")
    assert live.variants == frozenset({"stable", "shadow"})
    assert live.weights == {"stable": 100.0}


def test_an_idle_candidate_keeps_the_set_so_finalize_gives_no_warning() -> None:
    declared = _declared(candidate=None, stable="v2", keep=True)
    live = _live({"stable", "candidate"}, {"stable": 0.0, "candidate": 100.0})
    findings = check_endpoint(declared, live)
    assert "variant-set-changes" not in [f.code for f in findings]


def test_the_warning_names_the_option_that_avoids_it() -> None:
    finding = check_endpoint(_declared(), _live({"stable"}, {"stable": 100.0}))[0]
    assert "strategy.keepVariantNames: true on endpoint fraud-scorer" in finding.fix
