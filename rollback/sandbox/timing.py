"""The sandbox's timing model: every latency between a bad prediction and the traffic moving.

AWS is not instant, and a drill that pretends it is promises a faster rollback than a real account
gives. Each latency the sandbox simulates is one :class:`Latency` here: a name (the ``--latency``
flag's key), a range sampled once per drill run (uniformly, from the run's seed), and where the
figure comes from. Where AWS publishes no figure the default is a pessimistic choice and says so;
docs/sandbox.md renders this table (``tests/sandbox/test_timing.py`` keeps the two equal).

A value of ``LO:HI`` (or one number for both) on the command line replaces a default:
``mlrollback drill --sandbox --latency updating=120:300``. Values outside ``[0, LIMIT]`` are refused.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from rollback.runtime.errors import ConfigError


@dataclass(frozen=True)
class Latency:
    """One simulated delay: seconds in ``[low, high]``, sampled once per run."""

    name: str
    low: float
    high: float
    what: str
    source: str
    published: bool
    limit: float = 900.0  # largest value a flag may set (a typo of 10x must not hang a drill)

    def sample(self, rng: random.Random) -> float:
        return self.low if self.low == self.high else rng.uniform(self.low, self.high)


#: The model, in the order a rollback meets them.
LATENCIES: tuple[Latency, ...] = (
    Latency(
        "client-publish",
        1.0,
        1.0,
        "SafePredictor's metrics publisher sends its 1-second aggregates every flush interval",
        "this project: rollback/runtime/metrics.py, BackgroundPublisher(flush_interval=1.0)",
        True,
        limit=60.0,
    ),
    Latency(
        "metric-ingest",
        2.0,
        6.0,
        "a high-resolution custom datum becomes visible to alarms after PutMetricData returns",
        "not published as a figure; CloudWatch's answer on AWS re:Post: 'a few seconds delay for the "
        "data to become available to the alarm' (repost.aws/questions/QUGIWUPlEYQWaCBm9x2WfnWA). "
        "Pessimistic default",
        False,
        limit=300.0,
    ),
    Latency(
        "builtin-lag",
        60.0,
        150.0,
        "SageMaker's per-minute AWS/SageMaker invocation metrics arrive after their minute ends",
        "SageMaker publishes endpoint invocation metrics at a 1-minute frequency (SageMaker developer "
        "guide, 'Amazon SageMaker AI metrics in Amazon CloudWatch'); the delay after the minute is "
        "not published. Pessimistic default",
        False,
    ),
    Latency(
        "eval-offset",
        0.0,
        1.0,
        "where in its cadence each alarm is evaluated, as a share of the cadence (0..1): "
        "not aligned with period ends",
        "CloudWatch user guide, 'Using Amazon CloudWatch alarms': an alarm with a 10- or 30-second "
        "period is evaluated every 10 seconds, others every minute; the phase is not published, so "
        "it is sampled per alarm",
        True,
        limit=1.0,
    ),
    Latency(
        "event-delivery",
        0.5,
        2.0,
        "an alarm state change reaches the rollback Lambda through the EventBridge rule and Lambda's "
        "asynchronous queue",
        "not published; EventBridge documents delivery to targets as asynchronous with retries. "
        "Pessimistic default",
        False,
        limit=120.0,
    ),
    Latency(
        "alarm-action",
        0.5,
        2.0,
        "the same state change through the alarm's own Lambda action (a second, independent path; "
        "the first to arrive drains, the other is a duplicate)",
        "not published; CloudWatch user guide, 'Invoke a Lambda function from an alarm': an "
        "asynchronous invocation, retried until Lambda accepts it. Pessimistic default, as "
        "event-delivery",
        False,
        limit=120.0,
    ),
    Latency(
        "cold-start",
        0.8,
        2.5,
        "first invocation of a function: Python init, boto3 import and client creation",
        "AWS Lambda operator guide, 'Operating Lambda: performance optimization': cold starts range "
        "from under 100 ms to over 1 second; boto3 client creation adds to it. Pessimistic default",
        True,
        limit=30.0,
    ),
    Latency(
        "updating",
        30.0,
        120.0,
        "after UpdateEndpointWeightsAndCapacities the endpoint is Updating: traffic still follows "
        "the old weights and further updates are refused",
        "not published (UpdateEndpointWeightsAndCapacities API reference: the endpoint status is "
        "Updating until the change is applied); this project's real drill waits up to 300 s. "
        "Pessimistic default",
        False,
    ),
)

_BY_NAME = {latency.name: latency for latency in LATENCIES}


@dataclass(frozen=True)
class TimingModel:
    """The latency ranges of one drill (defaults, or with overrides); :meth:`sample` draws one run."""

    latencies: tuple[Latency, ...] = LATENCIES
    instant: bool = False  # every delay 0 and no Updating window: the old, kinder sandbox

    def get(self, name: str) -> Latency:
        for latency in self.latencies:
            if latency.name == name:
                return latency
        raise KeyError(name)

    def sample(self, rng: random.Random) -> SampledTiming:
        """One run's values (each latency drawn once, in table order, from ``rng``)."""
        if self.instant:
            return SampledTiming({lat.name: 0.0 for lat in self.latencies} | {"client-publish": 1.0})
        return SampledTiming({lat.name: lat.sample(rng) for lat in self.latencies})

    def ranges(self) -> dict[str, list[float]]:
        """``name -> [low, high]`` (for the report)."""
        if self.instant:
            return {lat.name: [0.0, 0.0] for lat in self.latencies} | {"client-publish": [1.0, 1.0]}
        return {lat.name: [lat.low, lat.high] for lat in self.latencies}


@dataclass(frozen=True)
class SampledTiming:
    """The seconds one run uses (``eval-offset`` is a share of each alarm's cadence)."""

    values: Mapping[str, float] = field(default_factory=dict)

    def __getitem__(self, name: str) -> float:
        return float(self.values[name])


def parse_overrides(items: Iterable[str], flag: str = "--latency") -> TimingModel:
    """A :class:`TimingModel` from ``NAME=LO:HI`` / ``NAME=SECONDS`` strings; ConfigError names the flag.

    ``instant`` (alone) is the kind model: no delay anywhere, as the sandbox was before it had one.
    """
    items = list(items)
    if items == ["instant"]:
        return TimingModel(instant=True)
    latencies = dict(_BY_NAME)
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in _BY_NAME:
            raise ConfigError(
                f"{flag} {item!r}: expected NAME=SECONDS or NAME=LO:HI with NAME one of "
                f"{', '.join(_BY_NAME)} (or {flag} instant alone)"
            )
        lat = _BY_NAME[name]
        lo_text, _, hi_text = value.partition(":")
        try:
            low = float(lo_text)
            high = float(hi_text) if hi_text else low
        except ValueError:
            raise ConfigError(f"{flag} {item!r}: {value!r} is not SECONDS or LO:HI (numbers)") from None
        if not (0.0 <= low <= high <= lat.limit):
            raise ConfigError(
                f"{flag} {item!r}: out of range; {name} takes 0 <= LO <= HI <= {lat.limit:g} seconds"
            )
        latencies[name] = replace(lat, low=low, high=high)
    return TimingModel(tuple(latencies[lat.name] for lat in LATENCIES))


def markdown_table(model: TimingModel | None = None) -> str:
    """The model as the table docs/sandbox.md carries."""
    model = model or TimingModel()
    rows = ["| name | default (s) | what | source |", "|---|---|---|---|"]
    for lat in model.latencies:
        value = f"{lat.low:g}" if lat.low == lat.high else f"{lat.low:g}-{lat.high:g}"
        if lat.name == "eval-offset":
            value += " (share of cadence)"
        rows.append(f"| `{lat.name}` | {value} | {lat.what} | {lat.source} |")
    return "\n".join(rows)
