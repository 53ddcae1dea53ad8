"""Added latency of SafePredictor per prediction, metrics on (median and p99 over several runs).

Two setups, each measured as (client.predict) minus (a bare invoke_endpoint on the same client):

1. ``stubbed``: a real boto3 sagemaker-runtime client answered by botocore's Stubber (no network),
   so the difference is the predictor's own work: InferenceId, timing, result object, and the
   non-blocking metrics hand-off to the background publisher (which flushes to a moto CloudWatch).
2. ``moto-server``: the same against an embedded moto server on 127.0.0.1 (InvokeEndpoint returns
   moto's static result), so it includes real HTTP on loopback for both sides.

Also prints the failover cost on the stubbed runtime (a candidate ModelError then stable).
Run: ``.venv/bin/python benchmarks/bench_client.py``
"""

from __future__ import annotations

import io
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")

import boto3
from botocore.response import StreamingBody
from botocore.stub import Stubber

from rollback.client import NO_BREAKER, BreakerPolicy, SafePredictor
from rollback.runtime.metrics import BackgroundPublisher, MetricsPublisher

ENDPOINT = "bench-dev"
RUNS = 5
CALLS = 2000
BODY = b'{"amount": 12.5, "country": "FR"}'


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _stubbed_runtime(n: int, fail_first: bool = False) -> tuple[Any, Stubber]:
    client = boto3.client("sagemaker-runtime", region_name="eu-west-1")
    stub = Stubber(client)
    for _ in range(n):
        if fail_first:
            stub.add_client_error(
                "invoke_endpoint",
                "ModelError",
                "boom",
                424,
                response_meta={"HTTPHeaders": {"x-amzn-invoked-production-variant": "candidate"}},
            )
        stub.add_response(
            "invoke_endpoint",
            {"Body": StreamingBody(io.BytesIO(b'{"score":0.1}'), 13), "InvokedProductionVariant": "stable"},
        )
    stub.activate()
    return client, stub


def _time_calls(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e6)
    return out


def bench(label: str, make_runtime: Callable[[int], Any], cloudwatch: Any, calls: int = CALLS) -> None:
    medians, p99s = [], []
    sent = dropped = 0
    for _ in range(RUNS):
        bare_rt = make_runtime(calls)
        bare = _time_calls(
            lambda rt=bare_rt: rt.invoke_endpoint(EndpointName=ENDPOINT, Body=BODY)["Body"].read(), calls
        )
        publisher = BackgroundPublisher(MetricsPublisher(cloudwatch), register_atexit=False)
        predictor = SafePredictor(ENDPOINT, runtime=make_runtime(calls), metrics=publisher)
        safe = _time_calls(lambda p=predictor: p.predict(BODY), calls)
        publisher.close()
        sent += publisher.stats.datums_sent
        dropped += publisher.stats.dropped
        medians.append(statistics.median(safe) - statistics.median(bare))
        p99s.append(_percentile(safe, 0.99) - _percentile(bare, 0.99))
    print(
        f"{label:12s} added latency per prediction: median {statistics.median(medians):7.1f} us, "
        f"p99 {statistics.median(p99s):7.1f} us  (median of {RUNS} runs x {calls} calls; "
        f"datums published {sent}, dropped {dropped})"
    )


def main() -> None:
    from moto import mock_aws
    from moto.server import ThreadedMotoServer

    with mock_aws():
        cloudwatch = boto3.client("cloudwatch", region_name="eu-west-1")
        bench("stubbed", lambda n: _stubbed_runtime(n)[0], cloudwatch)

        # failover cost: candidate ModelError, then stable answers (no breaker: every call fails over)
        failover_runs = []
        for _ in range(RUNS):
            rt, _stub = _stubbed_runtime(CALLS, fail_first=True)
            p = SafePredictor(ENDPOINT, runtime=rt, metrics=MetricsPublisher(cloudwatch), breaker=NO_BREAKER)
            failover_runs.append(statistics.median(_time_calls(lambda p=p: p.predict(BODY), CALLS)))
        took = statistics.median(failover_runs)
        print(f"{'stubbed':12s} a failed-over prediction (2 calls) takes median {took:7.1f} us")

        # pinned cost: the breaker is open (every prediction targets stable, and hands a mirrored
        # copy to the background runner, here a no-op so the stub's answers stay the caller's)
        pinned_medians, pinned_p99s = [], []
        for _ in range(RUNS):
            bare_rt, _s = _stubbed_runtime(CALLS)
            bare = _time_calls(
                lambda rt=bare_rt: rt.invoke_endpoint(EndpointName=ENDPOINT, Body=BODY)["Body"].read(), CALLS
            )
            p = SafePredictor(
                ENDPOINT,
                runtime=_stubbed_runtime(CALLS)[0],
                metrics=MetricsPublisher(cloudwatch),
                breaker=BreakerPolicy(open_seconds=3600.0),
                background=lambda _job: None,
            )
            p._breaker.share, p._breaker.open_since = 1.0, 0.0  # type: ignore[union-attr]
            p._breaker.open_until = time.perf_counter() + 3600.0  # type: ignore[union-attr]
            pinned = _time_calls(lambda p=p: p.predict(BODY), CALLS)
            assert p.stats.pinned == CALLS and p.stats.mirrored == CALLS
            pinned_medians.append(statistics.median(pinned) - statistics.median(bare))
            pinned_p99s.append(_percentile(pinned, 0.99) - _percentile(bare, 0.99))
        print(
            f"{'stubbed':12s} added latency while pinned to stable (mirror hand-off included): median "
            f"{statistics.median(pinned_medians):7.1f} us, p99 {statistics.median(pinned_p99s):7.1f} us"
        )

    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        cloudwatch = boto3.client("cloudwatch", region_name="eu-west-1", endpoint_url=url)
        runtime = boto3.client("sagemaker-runtime", region_name="eu-west-1", endpoint_url=url)
        bench("moto-server", lambda n: runtime, cloudwatch, calls=300)  # loopback HTTP: shorter runs
    finally:
        server.stop()


if __name__ == "__main__":
    main()
