"""SafePredictor's circuit breaker: pin to stable after repeated candidate failures, mirror the
candidate's share so its alarms keep their data, probe again after the open period."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from rollback.client import NO_BREAKER, BreakerPolicy, SafePredictor
from tests.client.test_client import ENDPOINT, fail, ok


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Sink:
    """The predictor's metrics sink: every attempt it records, as (variant, error)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bool]] = []

    def record_invocation(
        self, endpoint: str, variant: str, latency_ms: float, error: bool, at: Any = None
    ) -> None:
        self.records.append((variant, error))


def predictor(client: Any, clock: Clock, sink: Sink | None = None, **kwargs: Any) -> SafePredictor:
    jobs: list[Callable[[], None]] = kwargs.pop("jobs", [])
    return SafePredictor(
        ENDPOINT,
        runtime=client,
        metrics=sink,
        clock=clock,
        background=jobs.append,  # mirrored calls queue here; the test runs them
        rng=random.Random(1),
        **kwargs,
    )


def test_two_candidate_failures_pin_the_next_predictions_to_stable(runtime: Any) -> None:
    client, stub = runtime
    clock = Clock()
    p = predictor(client, clock, breaker=BreakerPolicy(mirror=False))
    for _ in range(2):  # the candidate fails twice, each failed over to stable
        fail(stub, "ModelError", 424, "candidate")
        ok(stub, "stable", target="stable")
        p.predict(b"{}")
        clock.now += 0.5
    assert p.breaker_open and p.stats.breaker_opened == 1

    ok(stub, "stable", target="stable")  # pinned: one call, TargetVariant stable, no candidate attempt
    result = p.predict(b"{}")

    assert [a.target_variant for a in result.attempts] == ["stable"]
    assert not result.failed_over and p.stats.pinned == 1


def test_failures_spread_beyond_the_window_do_not_open_it(runtime: Any) -> None:
    client, stub = runtime
    clock = Clock()
    p = predictor(client, clock, breaker=BreakerPolicy(window_seconds=5.0, mirror=False))
    for _ in range(3):
        fail(stub, "ModelError", 424, "candidate")
        ok(stub, "stable", target="stable")
        p.predict(b"{}")
        clock.now += 6.0
    assert not p.breaker_open and p.stats.breaker_opened == 0


def test_stable_failures_never_open_it(runtime: Any) -> None:
    client, stub = runtime
    clock = Clock()
    p = predictor(client, clock, fallback=b"default", breaker=BreakerPolicy(mirror=False))
    for _ in range(3):
        fail(stub, "ModelError", 424, "stable")
        p.predict(b"{}")
    assert not p.breaker_open  # pinning to stable could not help


def test_timeouts_without_a_variant_open_it_and_the_mirror_names_the_candidate(runtime: Any) -> None:
    """A hung canary: weight-routed calls time out with no variant header (``unknown``). The breaker
    opens on them; the mirrored copies are sent with TargetVariant=candidate, so their timeouts are
    attributed to the candidate and its alarms see them."""
    client, stub = runtime
    clock = Clock()
    sink = Sink()
    jobs: list[Callable[[], None]] = []
    p = predictor(client, clock, sink, jobs=jobs, breaker=BreakerPolicy())
    ok(stub, "stable")  # before the candidate: not counted in its share
    p.predict(b"{}")
    for i in range(2):  # routed: timeout, (stable answers the failover), stable, timeout
        _raise_once(client, ReadTimeoutError(endpoint_url="https://runtime"))
        ok(stub, "stable", target="stable")
        p.predict(b"{}")
        clock.now += 0.2
        if i == 0:
            ok(stub, "stable")
            p.predict(b"{}")
    assert p.breaker_open
    assert ("unknown", True) in sink.records

    # Pinned predictions now send the candidate copies at its share since it first showed up (2 of
    # the 3 routed attempts from the first timeout on), off the caller's path.
    assert p._breaker.share == pytest.approx(2 / 3)  # type: ignore[union-attr]
    for _ in range(12):
        ok(stub, "stable", target="stable")
        p.predict(b"{}")
    assert 0 < len(jobs) == p.stats.mirrored < 12
    for _ in jobs:
        _raise_once(client, ReadTimeoutError(endpoint_url="https://runtime"), target="candidate")
    for job in jobs:
        job()
    assert sink.records.count(("candidate", True)) == len(jobs)


def test_mirrors_of_a_candidate_error_without_header_are_attributed_to_the_target(runtime: Any) -> None:
    client, stub = runtime
    clock = Clock()
    sink = Sink()
    jobs: list[Callable[[], None]] = []
    p = predictor(client, clock, sink, jobs=jobs, breaker=BreakerPolicy())
    p._breaker.share = 1.0  # type: ignore[union-attr]
    p._breaker.open_since, p._breaker.open_until = 0.0, 30.0  # type: ignore[union-attr]
    ok(stub, "stable", target="stable")
    p.predict(b"{}")
    [job] = jobs
    fail(stub, "ModelError", 424, variant=None)  # no x-amzn-invoked-production-variant header
    job()
    assert sink.records[-1] == ("candidate", True)


def test_mirrored_calls_are_never_sent_for_non_idempotent_predictions(runtime: Any) -> None:
    client, stub = runtime
    clock = Clock()
    jobs: list[Callable[[], None]] = []
    p = predictor(client, clock, jobs=jobs, breaker=BreakerPolicy())
    p._breaker.share, p._breaker.open_since, p._breaker.open_until = 1.0, 0.0, 30.0  # type: ignore[union-attr]
    ok(stub, "stable", target="stable")
    p.predict(b"{}", idempotent=False)
    assert jobs == [] and p.stats.pinned == 1


def test_after_the_open_period_one_routed_probe_closes_or_reopens_it(runtime: Any) -> None:
    client, stub = runtime
    clock = Clock()
    p = predictor(client, clock, breaker=BreakerPolicy(open_seconds=30.0, mirror=False))
    for _ in range(2):
        fail(stub, "ModelError", 424, "candidate")
        ok(stub, "stable", target="stable")
        p.predict(b"{}")
    clock.now = 31.0  # half-open: weight-routed again
    fail(stub, "ModelError", 424, "candidate")  # the probe fails: one failure re-opens it
    ok(stub, "stable", target="stable")
    p.predict(b"{}")
    assert p.breaker_open

    clock.now = 62.0
    ok(stub, "candidate")  # the probe is answered by the candidate: closed
    p.predict(b"{}")
    assert not p.breaker_open
    ok(stub, "candidate")
    assert p.predict(b"{}").attempts[0].target_variant is None


def test_a_failure_seen_later_does_not_pin_a_prediction_that_started_before_it(runtime: Any) -> None:
    """Concurrent callers: the breaker opens when the failure is known (the attempt's end), so a
    prediction that started before that moment is still weight-routed."""
    client, stub = runtime
    clock = Clock()
    p = predictor(client, clock, breaker=BreakerPolicy(mirror=False), deadline_seconds=5.0)
    for start in (0.0, 0.1):
        clock.now = start
        _raise_once(client, ReadTimeoutError(endpoint_url="https://runtime"), advance=(clock, 2.0))
        ok(stub, "stable", target="stable")
        p.predict(b"{}")
    clock.now = 0.5  # another caller, started before the second timeout was known (2.1 s)
    ok(stub, "candidate")
    assert p.predict(b"{}").attempts[0].target_variant is None
    clock.now = 2.2
    assert p.breaker_open


def test_no_breaker_keeps_every_prediction_weight_routed(runtime: Any) -> None:
    client, stub = runtime
    clock = Clock()
    p = predictor(client, clock, breaker=NO_BREAKER)
    for _ in range(4):
        fail(stub, "ModelError", 424, "candidate")
        ok(stub, "stable", target="stable")
        p.predict(b"{}")
    assert not p.breaker_open and p.stats.failovers == 4 and p.stats.pinned == 0


def test_attempt_timeout_must_leave_time_for_the_failover() -> None:
    with pytest.raises(ValueError, match="attempt_timeout_seconds"):
        SafePredictor(
            ENDPOINT, runtime=object(), metrics=None, deadline_seconds=2.0, attempt_timeout_seconds=2.0
        )
    assert (
        SafePredictor(ENDPOINT, runtime=object(), metrics=None, deadline_seconds=3.0).attempt_timeout_seconds
        == 1.5
    )
    with pytest.raises(ValueError, match="failures_to_open"):
        BreakerPolicy(failures_to_open=0)


def _raise_once(
    client: Any, exc: Exception, target: str | None = None, advance: tuple[Clock, float] | None = None
) -> None:
    """Make the next InvokeEndpoint raise ``exc`` instead of sending (a transport failure), after
    ``advance`` = (clock, seconds) if given (the time the attempt took)."""
    real = client.invoke_endpoint

    def failing(**params: Any) -> Any:
        client.invoke_endpoint = real
        if target is not None:
            assert params.get("TargetVariant") == target
        if advance is not None:
            advance[0].now += advance[1]
        raise exc

    client.invoke_endpoint = failing
