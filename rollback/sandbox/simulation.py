"""The sandbox drill: deploy, release a candidate, send traffic, play a scenario, report.

:func:`run_drill` is the library entry point behind ``mlrollback drill --sandbox``. It starts an
emulator, installs a virtual clock (``rollback.runtime.clock.use`` and the patched moto backends), runs the
real program twice (stable only, then the release = an update), and then advances simulated time
one second per tick: predictions are routed by live weight to simulated variants, metrics are
published, alarms are evaluated at their period boundaries, alarm transitions and the schedule
are delivered by EventBridge rules to the deployed Lambda handlers, called in-process.

Predictions go through the real client, :class:`rollback.client.SafePredictor` (one failover to
``stable`` with ``TargetVariant``), whose :class:`~rollback.runtime.metrics.MetricsPublisher` on the
virtual clock is the one publisher of the fast custom metrics: it counts every attempt, so the
candidate's errors reach the candidate alarm even when the failover hid them from the caller.
``failover=False`` sends plain calls (``idempotent=False``: never retried) to show the difference.

Scenarios and what they expect (``expectation_met`` decides the CLI exit code):

=================  =====================================================  =======================
scenario           what happens after the release                         expected
=================  =====================================================  =======================
bad-canary         the candidate returns 5xx for half the requests, slow  rolled back
healthy            both variants healthy                                   stepper reaches
                                                                           ready-to-finalize
fault-injection    healthy, then ``SetAlarmState`` ALARM on the            rolled back
                   candidate errors alarm (what a staging drill does)
no-traffic         no prediction at all                                    paused, no rollback
flapping           isolated bad periods, fewer than M in any N             no rollback
=================  =====================================================  =======================
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rollback.client import NO_BREAKER, BreakerPolicy, SafePredictor
from rollback.runtime import clock as rclock
from rollback.runtime import names
from rollback.runtime.errors import ConfigError, GateError, NotFoundError, PredictionError
from rollback.runtime.metrics import MetricsPublisher, Timestamp
from rollback.sandbox import moto_patches
from rollback.sandbox.alarm_evaluator import AlarmEvaluator
from rollback.sandbox.deploy_log import record_applied
from rollback.sandbox.emulator import Emulator
from rollback.sandbox.eventbus import EventBus
from rollback.sandbox.runner import apply_program, project_root
from rollback.sandbox.timing import TimingModel
from rollback.sandbox.traffic import ModelBehaviour, SandboxRuntime, SimulatedCloud, SimulatedTime

SCENARIOS: tuple[str, ...] = (
    "bad-canary",
    "hung-canary",
    "no-variant-header",
    "step-during-update",
    "healthy",
    "fault-injection",
    "no-traffic",
    "flapping",
)
WARMUP_SECONDS = 60
AFTER_ROLLBACK_SECONDS = 15
MAX_RATE = 200
#: The drill client's failover deadline: the bad canary fails after ~1.5 s (up to ~2.3 s), and a
#: failure seen after the deadline is not retried; 3 s keeps every one of them retried.
CLIENT_DEADLINE_SECONDS = 3.0
#: The drill client's per-attempt read timeout: above the bad canary's slowest answer, so its
#: errors are errors; the hung canary's attempts time out here.
CLIENT_ATTEMPT_TIMEOUT_SECONDS = 2.0
#: How long a hung variant takes to answer: SageMaker gives a container 60 s before a ModelError.
HUNG_LATENCY_MS = 60_000.0
#: A failing scenario that has not drained this long after its first bad prediction gives up
#: (expectation not met): more simulated time would only repeat the same minute.
GIVE_UP_SECONDS = 300.0
_FAILING = frozenset({"bad-canary", "hung-canary", "no-variant-header", "step-during-update"})
_BODY = b'{"amount": 12.5}'

Progress = Callable[[str, dict[str, Any]], None]


@dataclass
class _Marks:
    release: float = 0.0
    first_bad: float | None = None
    fault: float | None = None
    alarm: float | None = None
    alarm_name: str | None = None
    rollback: float | None = None
    drain_accepted: float | None = None
    step: float | None = None  # the stepper's first accepted step after the release
    traffic_moved: float | None = None
    weight_changes: list[dict[str, Any]] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)  # rollout state changes (polled)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


class _AttemptCounter:
    """The predictor's metrics sink: forwards every attempt to the publisher and counts it per variant.

    The drill's timeline (candidate requests and error rate per second) and the time of the first
    failed attempt come from here, i.e. from what the client itself recorded.
    """

    def __init__(self, publisher: MetricsPublisher) -> None:
        self.publisher = publisher
        self.served: dict[str, list[int]] = {}
        self.failed_attempts = 0

    def record_invocation(
        self, endpoint: str, variant: str, latency_ms: float, error: bool, at: Timestamp = None
    ) -> None:
        self.publisher.record_invocation(endpoint, variant, latency_ms, error, at)
        counts = self.served.setdefault(variant, [0, 0])
        counts[0] += 1
        counts[1] += 1 if error else 0
        self.failed_attempts += 1 if error else 0

    def take(self) -> dict[str, list[int]]:
        served, self.served = self.served, {}
        return served


def stack_file(stack: str, project_dir: Path | None = None) -> Path:
    """``environments/Pulumi.<stack>.yaml`` of the project; a clear error when it is missing."""
    root = project_dir or project_root()
    path = root / "environments" / f"Pulumi.{stack}.yaml"
    if not path.exists():
        known = sorted(p.name.split(".")[1] for p in (root / "environments").glob("Pulumi.*.yaml"))
        raise NotFoundError(  # exit 3, like every other command given an unknown stack
            f"{path}: no such stack file; known stacks: {', '.join(known) or 'none'} "
            "(pass --stack with one of them)"
        )
    return path


def _without_candidate(config: dict[str, str], endpoint: str) -> dict[str, str]:
    endpoints = json.loads(config["mlrollback:endpoints"])
    for item in endpoints:
        if item.get("name") == endpoint:
            item.setdefault("release", {}).pop("candidate", None)
    return {**config, "mlrollback:endpoints": json.dumps(endpoints)}


def _percent(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    if total <= 0:
        return {k: 0.0 for k in weights}
    return {k: round(100.0 * v / total, 2) for k, v in weights.items()}


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (``p`` in 0..100): a value some sample really had; None for none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _p99(values: list[float]) -> float | None:
    value = percentile(values, 99)
    return None if value is None else round(value, 1)


def traffic_rate(bake_seconds: float, first_step_percent: float, min_requests: int) -> int:
    """Predictions per second so the candidate's first step sees 1.5x its minimum in one bake."""
    share = max(first_step_percent, 1.0) / 100.0
    need = math.ceil(1.5 * min_requests / max(bake_seconds * share, 1.0))
    return max(20, min(MAX_RATE, need))


def run_drill(
    stack: str = "dev",
    scenario: str = "bad-canary",
    *,
    project_dir: Path | None = None,
    endpoint: str | None = None,
    progress: Progress | None = None,
    seed: int = 7,
    state_dir: Path | None = None,
    failover: bool = True,
    timing: TimingModel | None = None,
    breaker: bool = True,
) -> dict[str, Any]:
    """Run one drill in a fresh sandbox and return the report (see docs/sandbox.md for fields).

    ``failover=False``: predictions are plain calls (no retry on ``stable``), to show how many a
    client without the failover would have lost. ``timing``: the latencies to simulate
    (:mod:`rollback.sandbox.timing`; default the honest model, ``TimingModel(instant=True)`` none);
    ``seed`` draws them, the release's phase in the alarm period, and the traffic.
    """
    if scenario not in SCENARIOS:  # a usage error (exit 2)
        raise ConfigError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    from infra.config import load_stack_file, pulumi_config_from_stack_file

    wall0 = time.perf_counter()
    notify = progress or (lambda _stage, _data: None)
    root = project_dir or project_root()
    path = stack_file(stack, root)
    cfg = load_stack_file(path, stack)
    if endpoint is not None and endpoint not in [e.name for e in cfg.endpoints]:
        known = ", ".join(e.name for e in cfg.endpoints)
        raise NotFoundError(
            f"{path}: no endpoint {endpoint!r} (known: {known}); pass one of them as --endpoint"
        )
    candidates = [e for e in cfg.endpoints if e.release.candidate and (endpoint in (None, e.name))]
    if not candidates:  # exit 8 like the real drill: a precondition, not something the sandbox lacks
        wanted = f"endpoint {endpoint!r}" if endpoint else "any endpoint"
        raise GateError(f"{path}: {wanted} has no release.candidate to drill; declare one and run again")
    ep = candidates[0]
    physical = ep.physical_name
    config_map = pulumi_config_from_stack_file(path)
    region = config_map.get("aws:region", "us-east-1")

    timing = timing or TimingModel()
    timing_rng = random.Random(f"timing-{seed}")
    sampled = timing.sample(timing_rng)
    offset_range = timing.get("eval-offset")
    offsets: dict[str, float] = {}

    def offset_share(alarm: str) -> float:
        if alarm not in offsets:
            offsets[alarm] = 0.0 if timing.instant else offset_range.sample(timing_rng)
        return offsets[alarm]

    period = int(ep.triggers.period_seconds)
    release_phase = 0 if timing.instant else timing_rng.randrange(period)

    start = datetime.now(UTC).replace(second=0, microsecond=0)
    vclock = rclock.VirtualClock(start)
    previous_clock = rclock.use(vclock)
    moto_patches.set_clock(vclock)
    weight_events: list[tuple[str, str, datetime, dict[str, float]]] = []
    moto_patches.set_updating_window(
        (lambda: sampled["updating"]) if not timing.instant else None,
        lambda kind, name, at, weights: weight_events.append((kind, name, at, weights)),
    )
    tmp = None
    if state_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="mlrollback-drill-")
        state_dir = Path(tmp.name)
    emu = Emulator(region)
    # The client's breaker warns when it opens (right for an application's logs); in the drill the
    # report says it, and a warning line would break the CLI's progress display.
    client_log = logging.getLogger("rollback.client.predictor")
    client_level = client_log.level
    client_log.setLevel(logging.ERROR)
    try:
        notify("emulator", {"message": "starting the embedded AWS emulator"})
        emu.start()
        cloud = SimulatedCloud(emu, vclock.now, seed=seed, builtin_lag_seconds=sampled["builtin-lag"])
        moto_patches.set_invoke_hook(cloud.route)
        publisher = MetricsPublisher(emu.client("cloudwatch"), clock=lambda: vclock.now().timestamp())
        counter = _AttemptCounter(publisher)
        sim_time = SimulatedTime()
        runtime = SandboxRuntime(emu, cloud, sim_time, read_timeout=CLIENT_ATTEMPT_TIMEOUT_SECONDS)
        predictor = SafePredictor(
            physical,
            runtime=runtime,
            metrics=counter,
            deadline_seconds=CLIENT_DEADLINE_SECONDS,
            attempt_timeout_seconds=CLIENT_ATTEMPT_TIMEOUT_SECONDS,
            auto_inference_id=False,
            clock=sim_time,
            breaker=BreakerPolicy() if breaker else NO_BREAKER,
            background=sim_time.background,
            rng=random.Random(f"client-{seed}"),
        )
        evaluator = AlarmEvaluator(
            emu.backend("cloudwatch"),
            vclock.now,
            honest=not timing.instant,
            ingest_seconds=sampled["metric-ingest"],
            offset_share=offset_share,
        )
        bus = EventBus(
            emu,
            vclock.now,
            delivery_delay=None if timing.instant else sampled["event-delivery"],
            action_delay=None if timing.instant else sampled["alarm-action"],
            cold_start=sampled["cold-start"],
        )
        state_path = state_dir / "state.json"

        notify("deploy", {"message": f"deploying {stack}: stable {ep.release.stable} only"})
        stable_only = _without_candidate(config_map, ep.name)
        apply_program(emu, stack=stack, config=stable_only, state_path=state_path)
        record_applied(emu, stable_only, stack, actor="sandbox:drill", project_dir=root)
        notify("release", {"message": f"releasing candidate {ep.release.candidate} ({ep.strategy.type})"})
        client = _Client(predictor, runtime, counter, failover, sim_time)
        runner = _Runner(emu, vclock, cloud, client, evaluator, bus, stack, physical, scenario, ep, notify)
        runner.publish_every = max(1, round(sampled["client-publish"]))
        runner.updating_high = 0.0 if timing.instant else timing.get("updating").high
        runner.weight_events = weight_events
        runner.run_for(WARMUP_SECONDS + release_phase, traffic=True)
        release_result = apply_program(emu, stack=stack, config=config_map, state_path=state_path)
        record_applied(emu, config_map, stack, actor="sandbox:drill", project_dir=root)
        bus.invalidate()
        runner.marks.release = vclock.now().timestamp()
        weights_before = _percent(cloud.weights(physical))
        runner.play()
        weights_after = _percent(cloud.weights(physical))
        report = runner.report(weights_before, weights_after)
        if runner.gave_up:
            report["notes"] = [
                f"nothing drained the candidate within {GIVE_UP_SECONDS:g} simulated seconds of its "
                "first bad prediction; the drill stopped there (see alarm_events and handler_invocations)"
            ]
        report["warnings"] = release_result.warnings
        report["resources_applied"] = len(release_result.resources)
        report["seed"] = seed
        report["timing"] = {
            "model": "instant" if timing.instant else "honest",
            "ranges": timing.ranges(),
            "sampled": {k: round(v, 3) for k, v in sampled.values.items()},
            "release_phase_seconds": release_phase,
            "alarm_offsets_share": {k: round(v, 3) for k, v in sorted(offsets.items())},
        }
    finally:
        client_log.setLevel(client_level)
        moto_patches.set_updating_window(None)
        moto_patches.set_invoke_hook(None)
        moto_patches.set_clock(None)
        rclock.use(previous_clock)
        emu.stop()
        if tmp is not None:
            tmp.cleanup()
    report["wall_seconds"] = round(time.perf_counter() - wall0, 2)
    return report


@dataclass
class _Client:
    """The application side of the drill: the real predictor, its runtime, its metrics sink."""

    predictor: SafePredictor
    runtime: SandboxRuntime
    counter: _AttemptCounter
    failover: bool
    time: SimulatedTime


class _Runner:
    """The tick loop of one drill (one simulated second per tick)."""

    def __init__(
        self,
        emu: Emulator,
        vclock: rclock.VirtualClock,
        cloud: SimulatedCloud,
        client: _Client,
        evaluator: AlarmEvaluator,
        bus: EventBus,
        stack: str,
        endpoint: str,
        scenario: str,
        ep: Any,
        notify: Progress,
    ) -> None:
        self.emu, self.clock, self.cloud, self.evaluator, self.bus = emu, vclock, cloud, evaluator, bus
        self.client = client
        self.stack, self.endpoint, self.scenario, self.ep, self.notify = stack, endpoint, scenario, ep, notify
        self.marks = _Marks()
        steps = list(ep.strategy.steps) or [100]
        self.bake = float(ep.strategy.bake_minutes) * 60.0
        self.period = int(ep.triggers.period_seconds)
        self.n_periods = int(ep.triggers.evaluation_periods)
        self.m_periods = int(ep.triggers.datapoints_to_alarm)
        self._blipped: int | None = None
        self.gave_up = False
        #: Callers' added latency (ms) between the first bad prediction and the traffic moving.
        self.added_pinned: list[float] = []
        self.added_routed: list[float] = []
        self._blip: ModelBehaviour | None = None
        self.rate = traffic_rate(self.bake, steps[0], int(ep.strategy.min_requests_per_step))
        self.steps = steps
        self.publish_every = 1
        self.updating_high = 0.0
        self.weight_events: list[tuple[str, str, datetime, dict[str, float]]] = []
        self._ticks = 0

    @property
    def max_seconds(self) -> float:
        """How long the scenario may run: every step baked, stepped (a minute) and applied, plus slack."""
        per_step = self.bake + 60.0 + self.updating_high
        return min(4 * 3600.0, per_step * (len(self.steps) + 1) + 240.0)

    # -- the loop -------------------------------------------------------------------------------

    def run_for(self, seconds: float, traffic: bool) -> None:
        end = self.clock.now().timestamp() + seconds
        while self.clock.now().timestamp() < end:
            self.tick(traffic)

    def _since_release(self) -> float:
        return self.clock.now().timestamp() - self.marks.release

    def _behaviour(self) -> None:
        good = ModelBehaviour()
        cand = good
        if self.scenario in ("bad-canary", "step-during-update"):
            cand = ModelBehaviour(error_rate=0.5, latency_ms=1500.0, jitter_ms=200.0)
        elif self.scenario == "hung-canary":
            cand = ModelBehaviour(error_rate=1.0, latency_ms=HUNG_LATENCY_MS, jitter_ms=0.0)
        elif self.scenario == "no-variant-header":
            cand = ModelBehaviour(error_rate=0.5, latency_ms=40.0, error_header=False)
        if self.scenario == "step-during-update" and self.marks.step is None:
            cand = good  # healthy until the stepper's first step is accepted (endpoint Updating)
        elif self.scenario == "flapping":
            index = int(self._since_release() // self.period)
            if self.m_periods >= 2:
                # One bad period every N+1 periods: never M bad datapoints within N.
                if index % (self.n_periods + 1) == 1:
                    cand = ModelBehaviour(error_rate=1.0, latency_ms=40.0)
            elif index % 2 == 1 and self._blipped != index:
                # Single-datapoint alarms: every other period one request fails, slowly (a blip
                # below MIN_BAD_REQUESTS, which the alarms' sample guard must not count).
                self._blipped = index
                self._blip = ModelBehaviour(blips=1)
            if self._blip is not None and self._blip.blips > 0:
                cand = self._blip
        self.cloud.behave(self.endpoint, names.STABLE, good)
        self.cloud.behave(self.endpoint, names.CANDIDATE, cand)

    def tick(self, traffic: bool) -> None:
        now = self.clock.now().timestamp()
        released = self.marks.release > 0
        if released:
            self._behaviour()
        if traffic:
            failed_before = self.client.counter.failed_attempts
            for i in range(self.rate):
                if i == 0 and self._ticks % 10 == 0:
                    # Every tenth tick one prediction takes the real InvokeEndpoint HTTP API.
                    self.client.runtime.use_http_once()
                # Each caller starts its prediction at its own moment of the second (callers are
                # concurrent, not one thread paying every latency in turn).
                self.client.time.seconds = now + i / self.rate
                self._predict()
            failed = self.client.counter.failed_attempts > failed_before
            if released and failed and self.marks.first_bad is None:
                self.marks.first_bad = now
                self.notify("first-bad", {"at": now - self.marks.release})
        served = self.client.counter.take()
        if self._ticks % self.publish_every == 0:
            self.client.counter.publisher.flush()
        self.cloud.flush()
        self.clock.advance(1.0)
        self._ticks += 1
        changes = self.evaluator.tick()
        for change in changes:
            self.marks.events.append(
                {
                    "t": round(self.clock.now().timestamp() - self.marks.release, 1),
                    "alarm": change.name,
                    "state": change.new_state,
                }
            )
            parsed = names.parse_alarm_name(change.name)
            candidate_alarm = parsed is not None and parsed[:2] == (self.endpoint, names.CANDIDATE)
            if released and change.new_state == "ALARM" and candidate_alarm and self.marks.alarm is None:
                self.marks.alarm = change.at.timestamp()
                self.marks.alarm_name = change.name
                self.notify("alarm", {"alarm": change.name, "at": self.marks.alarm - self.marks.release})
        self.bus.publish_alarm_changes(changes)
        self.bus.run_schedules()
        weights = _percent(self.cloud.weights(self.endpoint))
        self._weight_marks(released)
        if released:
            cand = served.get(names.CANDIDATE, [0, 0])
            self.marks.timeline.append(
                {
                    "t": round(self._since_release(), 1),
                    "weights": weights,
                    "candidateRequests": cand[0],
                    "candidateErrorRate": round(cand[1] / cand[0], 4) if cand[0] else None,
                    "errorRate": round(
                        sum(v[1] for v in served.values()) / max(1, sum(v[0] for v in served.values())), 4
                    ),
                }
            )
            if weights.get(names.CANDIDATE, 0.0) == 0.0 and self.marks.rollback is None:
                self.marks.rollback = self.clock.now().timestamp()
                self.notify("rollback", {"at": self.marks.rollback - self.marks.release})

    def _weight_marks(self, released: bool) -> None:
        """Drain accepted / traffic moved: the first accepted and applied updates to candidate 0."""
        events, self.weight_events[:] = list(self.weight_events), []
        for kind, name, at, weights in events:
            if name != self.endpoint or not released:
                continue
            t = at.timestamp()
            self.marks.weight_changes.append(
                {"t": round(t - self.marks.release, 1), "kind": kind, "weights": _percent(weights)}
            )
            if kind == "accepted" and (weights.get(names.CANDIDATE) or 0.0) > 0 and self.marks.step is None:
                self.marks.step = t
                self.notify("step", {"at": t - self.marks.release, "weights": _percent(weights)})
            if weights.get(names.CANDIDATE) == 0.0:
                if kind == "accepted" and self.marks.drain_accepted is None:
                    self.marks.drain_accepted = t
                if kind == "applied" and self.marks.traffic_moved is None:
                    self.marks.traffic_moved = t

    def _predict(self) -> None:
        """One prediction as an application makes it; a failure it would see is counted, not raised."""
        # A failure the caller would see is counted in the predictor's stats (``failed``).
        with contextlib.suppress(PredictionError):
            p = self.client.predictor.predict(_BODY, idempotent=self.client.failover)
            if self.marks.first_bad is not None and self.marks.traffic_moved is None:
                # What the caller waited beyond the attempt that answered: failed attempts before it.
                answered = sum(a.latency_ms for a in p.attempts if a.ok)
                added = max(0.0, p.latency_ms - answered)
                pinned = bool(p.attempts) and p.attempts[0].target_variant == names.STABLE
                (self.added_pinned if pinned else self.added_routed).append(added)

    def progress_state(self) -> dict[str, Any] | None:
        ssm = self.emu.client("ssm")
        try:
            text = ssm.get_parameter(Name=names.rollout_progress_parameter(self.stack, self.endpoint))
        except ssm.exceptions.ParameterNotFound:
            return None
        try:
            return dict(json.loads(text["Parameter"]["Value"]))
        except ValueError:
            return None

    def play(self) -> None:
        traffic = self.scenario != "no-traffic"
        fault_at = self.period * 2 if self.scenario == "fault-injection" else None
        last_progress_check = 0.0
        self.progress: dict[str, Any] | None = None
        while self._since_release() < self.max_seconds:
            if fault_at is not None and self.marks.fault is None and self._since_release() >= fault_at:
                self._inject_fault()
            self.tick(traffic)
            if self.marks.rollback is not None:
                self.run_for(AFTER_ROLLBACK_SECONDS, traffic)
                break
            first_bad = self.marks.first_bad
            if (
                self.scenario in _FAILING
                and first_bad is not None
                and self.marks.drain_accepted is None
                and self.clock.now().timestamp() - first_bad > GIVE_UP_SECONDS
            ):
                self.gave_up = True
                break
            if self._since_release() - last_progress_check >= 30:
                last_progress_check = self._since_release()
                self.progress = self.progress_state()
                state = (self.progress or {}).get("state")
                if not self.marks.states or self.marks.states[-1]["state"] != state:
                    self.marks.states.append({"t": round(self._since_release(), 1), "state": state})
                self.notify("tick", {"t": self._since_release(), "state": state})
                if self.scenario == "healthy" and state == "ready-to-finalize":
                    break
                if (
                    self.scenario == "no-traffic"
                    and state == "paused"
                    and self._since_release() > self.bake + 120
                ):
                    break
                if self.scenario == "flapping" and self._since_release() > max(
                    self.bake + 120, 3 * (self.n_periods + 1) * self.period
                ):
                    break
        self.progress = self.progress_state()

    def _inject_fault(self) -> None:
        alarm = names.alarm_name(self.endpoint, names.CANDIDATE, "errors")
        self.marks.fault = self.clock.now().timestamp()
        self.emu.client("cloudwatch").set_alarm_state(
            AlarmName=alarm,
            StateValue="ALARM",
            StateReason="mlrollback drill: injected fault (SetAlarmState)",
        )
        self.notify("fault", {"alarm": alarm, "at": self.marks.fault - self.marks.release})

    # -- the report -----------------------------------------------------------------------------

    def report(self, weights_before: dict[str, float], weights_after: dict[str, float]) -> dict[str, Any]:
        m = self.marks
        origin = m.fault if m.fault is not None else m.first_bad
        rolled_back = m.rollback is not None
        moved = m.traffic_moved if m.traffic_moved is not None else m.rollback

        def since(at: float | None) -> float | None:
            return round(at - origin, 1) if at is not None and origin is not None else None

        ttr = since(moved) if rolled_back else None
        detection = since(m.alarm)
        rollback_calls = [
            inv for inv in self.bus.invocations if inv.function == names.rollback_function_name(self.stack)
        ]
        audit = self._audit_items()
        notifications = self._notifications()
        state = (self.progress or {}).get("state")
        stats = self.client.predictor.stats
        quarantine = self._quarantine()
        drains = [i for i in audit if i.get("action") == "drain" and i.get("outcome") == "done"]
        # A rollback counts only with its records: the candidate quarantined, one drain in the audit
        # trail and one notification (what the operator and `pulumi up` rely on afterwards).
        recorded = (
            rolled_back
            and quarantine is not None
            and quarantine.get("version") == self.ep.release.candidate
            and len(drains) == 1
            and len(notifications) == 1
        )
        # With the failover, no caller may see the bad canary's errors (nor its timeouts).
        protected = recorded and (stats.failed == 0 or not self.client.failover)
        expected = {
            "bad-canary": protected,
            "hung-canary": protected,
            "no-variant-header": protected,
            "step-during-update": protected and m.step is not None,
            "fault-injection": recorded,
            "healthy": not rolled_back and state == "ready-to-finalize",
            "no-traffic": not rolled_back and state == "paused",
            "flapping": not rolled_back,
        }[self.scenario]
        return {
            "scenario": self.scenario,
            "stack": self.stack,
            "endpoint": self.endpoint,
            "strategy": self.ep.strategy.type,
            "metrics": self.ep.triggers.metrics,
            "rolled_back": rolled_back,
            "ttr_seconds": ttr,
            "detection_seconds": detection,
            # The four times, from the first bad prediction (or the injected fault).
            "times": {
                "detected_seconds": detection,
                "drain_accepted_seconds": since(m.drain_accepted),
                "traffic_moved_seconds": ttr,
                "exposure_failed_predictions": stats.failed,
                "exposure_failed_without_failover": stats.first_attempt_failures,
            },
            "first_bad_at": round(origin - m.release, 1) if origin is not None else None,
            "step_at": round(m.step - m.release, 1) if m.step is not None else None,
            "rollout_states": m.states,
            "thresholds": {
                "errorRate": self.ep.triggers.error_rate,
                "p99LatencyMs": self.ep.triggers.p99_latency_ms,
                "minSamples": self.ep.triggers.min_samples,
                "periodSeconds": self.period,
                "evaluationPeriods": self.n_periods,
                "datapointsToAlarm": self.m_periods,
            },
            "pinned_predictions": stats.pinned,
            "added_latency_ms": {
                "pinned_p99": _p99(self.added_pinned),
                "routed_p99": _p99(self.added_routed),
                "pinned": len(self.added_pinned),
                "routed": len(self.added_routed),
            },
            "breaker_opened": stats.breaker_opened,
            "mirrored_predictions": stats.mirrored,
            "weight_changes": m.weight_changes,
            "predictions_total": stats.predictions,
            "predictions_failed": stats.failed,
            "predictions_failed_without_failover": stats.first_attempt_failures,
            "failovers": stats.failovers,
            "failover": self.client.failover,
            "http_predictions": self.client.runtime.http_calls,
            "weights_before": weights_before,
            "weights_after": weights_after,
            "handler_api_calls": sum(inv.api_calls for inv in rollback_calls if inv.ok),
            "handler_invocations": [
                {
                    "function": inv.function,
                    "via": inv.rule,
                    "at": round(inv.at.timestamp() - m.release, 1),
                    "ok": inv.ok,
                    "apiCalls": inv.api_calls,
                    "error": inv.error,
                    "result": inv.result,
                }
                for inv in self.bus.invocations
            ],
            "audit_items": len(audit),
            "audit": audit,
            "notifications": len(notifications),
            "notification_subjects": notifications,
            "quarantine": quarantine,
            "rollout_state": state,
            "alarm": m.alarm_name,
            "simulated_seconds": round(self._since_release(), 1),
            "traffic_rate_per_second": self.rate,
            "alarm_events": m.events,
            "timeline": m.timeline,
            "expectation_met": expected,
        }

    def _audit_items(self) -> list[dict[str, Any]]:
        table = names.audit_table_name(self.stack)
        ddb = self.emu.client("dynamodb")
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": table,
            "KeyConditionExpression": "#e = :e",
            "ExpressionAttributeNames": {"#e": "endpoint"},
            "ExpressionAttributeValues": {":e": {"S": self.endpoint}},
        }
        while True:
            page = ddb.query(**kwargs)
            for item in page.get("Items", []):
                items.append(
                    {
                        k: item[k].get("S")
                        for k in ("at", "action", "outcome", "actor", "variant", "version")
                        if k in item
                    }
                )
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _notifications(self) -> list[str]:
        backend = self.emu.backend("sns")
        arn = self.emu.arn("sns", names.topic_name(self.stack))
        topic = backend.topics.get(arn)
        return [n[2] or "" for n in topic.sent_notifications] if topic else []

    def _quarantine(self) -> dict[str, Any] | None:
        ssm = self.emu.client("ssm")
        try:
            p = ssm.get_parameter(Name=names.quarantine_parameter(self.stack, self.endpoint))
        except ssm.exceptions.ParameterNotFound:
            return None
        try:
            return dict(json.loads(p["Parameter"]["Value"]))
        except ValueError:
            return {"raw": p["Parameter"]["Value"]}
