"""Benchmark the rollback runtime: AWS calls per rollback/duplicate, handler time, cold import.

Run: ``.venv/bin/python benchmarks/bench_runtime.py`` (about half a minute). Everything runs
against moto on 127.0.0.1; the figures are medians. Targets (docs/runtime.md): <= 5 calls per
rollback, <= 2 per duplicate delivery, cold import of ``rollback.runtime.handler`` beyond boto3 < 100 ms.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STACK = "bench"
REGION = "eu-west-1"
RUNS = 20
DUPLICATES = 49  # with the first delivery: 50 deliveries of one state change
IMPORT_RUNS = 9

os.environ.update(
    AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION=REGION, AWS_REGION=REGION
)
os.environ.pop("AWS_PROFILE", None)


def _event(alarm: str, endpoint: str, at: datetime) -> dict[str, Any]:
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}+0000"
    dims = {"EndpointName": endpoint, "VariantName": "candidate"}
    return {
        "version": "0",
        "id": "bench",
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": "123456789012",
        "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:cloudwatch:{REGION}:123456789012:alarm:{alarm}"],
        "detail": {
            "alarmName": alarm,
            "configuration": {
                "description": f"mlrollback: endpoint={endpoint} role=candidate kpi=errors version=v2",
                "metrics": [
                    {
                        "id": "m1",
                        "metricStat": {
                            "metric": {
                                "dimensions": dims,
                                "name": "Errors",
                                "namespace": "MLRollback/Endpoints",
                            },
                            "period": 10,
                            "stat": "Sum",
                        },
                        "returnData": True,
                    }
                ],
            },
            "previousState": {"value": "OK", "reason": "", "timestamp": "2026-01-01T00:00:00.000+0000"},
            "state": {"value": "ALARM", "reason": "Threshold Crossed (bench)", "timestamp": stamp},
        },
    }


def _setup_stack(clients: dict[str, Any], endpoints: int) -> tuple[list[str], str]:
    from rollback.runtime import names

    ddb = clients["dynamodb"]
    ddb.create_table(
        TableName=names.audit_table_name(STACK),
        KeySchema=[
            {"AttributeName": "endpoint", "KeyType": "HASH"},
            {"AttributeName": "at", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "endpoint", "AttributeType": "S"},
            {"AttributeName": "at", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    topic = clients["sns"].create_topic(Name=names.topic_name(STACK))["TopicArn"]
    sm = clients["sagemaker"]
    created = []
    for i in range(endpoints):
        physical = names.endpoint_name(STACK, f"model{i}")
        variants = []
        for role, weight in (("stable", 90.0), ("candidate", 10.0)):
            model = f"{physical}-{role}"
            sm.create_model(
                ModelName=model,
                ExecutionRoleArn="arn:aws:iam::123456789012:role/x",
                PrimaryContainer={"Image": "i"},
            )
            variants.append(
                {
                    "VariantName": role,
                    "ModelName": model,
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                    "InitialVariantWeight": weight,
                }
            )
        sm.create_endpoint_config(EndpointConfigName=f"{physical}-cfg", ProductionVariants=variants)
        sm.create_endpoint(EndpointName=physical, EndpointConfigName=f"{physical}-cfg")
        created.append(physical)
    return created, topic


def _lambda_env(topic: str) -> None:
    from rollback.runtime import names

    os.environ.update(
        {
            names.ENV_STACK: STACK,
            names.ENV_AUDIT_TABLE: names.audit_table_name(STACK),
            names.ENV_TOPIC_ARN: topic,
            names.ENV_QUARANTINE_PREFIX: names.quarantine_prefix(STACK),
            names.ENV_ROLLOUT_PREFIX: names.rollout_prefix(STACK),
        }
    )


def count_calls() -> tuple[Counter[str], list[int], dict[str, int]]:
    """API calls of one rollback and of each of 49 duplicate deliveries (moto in-process).

    Also what the 50 deliveries left: weights updates, audit items and messages (each must be 1).
    """
    import boto3
    from moto import mock_aws

    from rollback.runtime import audit
    from rollback.runtime.aws import SERVICES, Clients
    from rollback.runtime.events import parse_alarm_event
    from rollback.runtime.routing import handle_alarm
    from rollback.runtime.settings import Settings

    with mock_aws():
        raw = {s: boto3.client(s, region_name=REGION) for s in SERVICES}
        (endpoint,), topic = _setup_stack(raw, 1)
        seen: list[str] = []
        for client in raw.values():
            client.meta.events.register(
                "provide-client-params.*.*", lambda model, **_: seen.append(model.name)
            )
        settings = Settings.for_stack(STACK, topic)
        clients = Clients(**raw)
        event = parse_alarm_event(
            _event(f"{endpoint}-candidate-errors", endpoint, datetime.now(UTC) + timedelta(seconds=1))
        )
        result = handle_alarm(clients, settings, event, actor="lambda:bench")
        assert result["action"] == "drained", result
        first = Counter(seen)
        per_duplicate = []
        total = Counter(seen)
        for _ in range(DUPLICATES):
            seen.clear()
            assert handle_alarm(clients, settings, event, actor="lambda:bench")["action"] == "duplicate"
            per_duplicate.append(len(seen))
            total.update(seen)
        items, _ = audit.query(raw["dynamodb"], settings.audit_table, endpoint, limit=100)
        effects = {
            "weights updates": total["UpdateEndpointWeightsAndCapacities"],
            "audit items": len(items),
            "messages": total["Publish"],
        }
        return first, per_duplicate, effects


def deliveries_during_publish() -> dict[str, int]:
    """What 50 deliveries leave when 49 of them arrive while the first is still publishing.

    EventBridge duplicates and the stepper's safety net can land between the first delivery's
    audit commit and its quarantine write; they must answer ``duplicate``, not send again.
    """
    import boto3
    from moto import mock_aws

    from rollback.runtime import audit
    from rollback.runtime.aws import SERVICES, Clients
    from rollback.runtime.events import parse_alarm_event
    from rollback.runtime.routing import handle_alarm
    from rollback.runtime.settings import Settings

    with mock_aws():
        raw = {s: boto3.client(s, region_name=REGION) for s in SERVICES}
        (endpoint,), topic = _setup_stack(raw, 1)
        seen: list[str] = []
        for client in raw.values():
            client.meta.events.register(
                "provide-client-params.*.*", lambda model, **_: seen.append(model.name)
            )
        settings = Settings.for_stack(STACK, topic)
        event = parse_alarm_event(
            _event(f"{endpoint}-candidate-errors", endpoint, datetime.now(UTC) + timedelta(seconds=1))
        )
        others = Clients(**raw)
        actions: Counter[str] = Counter()

        class PublishSlowly:
            def __init__(self, client: Any) -> None:
                self._client = client

            def __getattr__(self, name: str) -> Any:
                return getattr(self._client, name)

            def publish(self, **kwargs: Any) -> Any:
                for _ in range(DUPLICATES):
                    result = handle_alarm(others, settings, event, actor="lambda:bench")
                    actions[result["action"]] += 1
                return self._client.publish(**kwargs)

        first = Clients(**{**raw, "sns": PublishSlowly(raw["sns"])})
        assert handle_alarm(first, settings, event, actor="lambda:bench")["action"] == "drained"
        items, _ = audit.query(raw["dynamodb"], settings.audit_table, endpoint, limit=100)
        return {
            "weights updates": seen.count("UpdateEndpointWeightsAndCapacities"),
            "audit items": len(items),
            "messages": seen.count("Publish"),
            "duplicate answers": actions["duplicate"],
        }


def worst_case_sleep() -> tuple[float, str]:
    """Seconds one drain sleeps when every call is refused 5 times and jitter is maximal.

    Runs on a virtual clock (nothing waits): the invocation's retry budget must stop it before
    the rollback function's 60 s timeout would kill it mid-sequence.
    """
    import boto3
    from botocore.exceptions import ClientError
    from moto import mock_aws

    from rollback.runtime import clock
    from rollback.runtime.aws import SERVICES, Clients
    from rollback.runtime.events import parse_alarm_event
    from rollback.runtime.retry import RetryPolicy
    from rollback.runtime.routing import handle_alarm
    from rollback.runtime.settings import Settings

    class Refusing:
        def __init__(self, client: Any, refuse: dict[str, str], busy: bool = False) -> None:
            self._client, self._refuse, self._left = client, refuse, dict.fromkeys(refuse, 5)
            self._busy = 5 if busy else 0

        def __getattr__(self, name: str) -> Any:
            target = getattr(self._client, name)

            def wrapper(**kwargs: Any) -> Any:
                if self._left.get(name):
                    self._left[name] -= 1
                    raise ClientError({"Error": {"Code": self._refuse[name], "Message": "bench"}}, name)
                response = target(**kwargs)
                if name == "describe_endpoint" and self._busy:
                    self._busy -= 1
                    response = {**response, "EndpointStatus": "Updating"}
                return response

            return wrapper

    virtual = clock.VirtualClock(datetime.now(UTC))
    previous = clock.use(virtual)
    try:
        with mock_aws():
            raw = {s: boto3.client(s, region_name=REGION) for s in SERVICES}
            (endpoint,), topic = _setup_stack(raw, 1)
            clients = Clients(
                sagemaker=Refusing(
                    raw["sagemaker"], {"update_endpoint_weights_and_capacities": "ThrottlingException"}, True
                ),
                dynamodb=Refusing(raw["dynamodb"], {"transact_write_items": "ThrottlingException"}),
                ssm=Refusing(raw["ssm"], {"put_parameter": "ThrottlingException"}),
                sns=Refusing(raw["sns"], {"publish": "ThrottlingException"}),
                cloudwatch=raw["cloudwatch"],
            )
            event = parse_alarm_event(
                _event(f"{endpoint}-candidate-errors", endpoint, datetime.now(UTC) + timedelta(seconds=1))
            )
            worst = RetryPolicy(rng=lambda _low, high: high)
            start = virtual.now()
            try:
                outcome = handle_alarm(
                    clients, Settings.for_stack(STACK, topic), event, actor="bench", retry=worst
                )["action"]
            except Exception as exc:
                outcome = type(exc).__name__
            return (virtual.now() - start).total_seconds(), outcome
    finally:
        clock.use(previous)


def handler_times() -> tuple[list[float], list[float], float]:
    """Wall time of ``handler.on_alarm`` against a moto server on loopback: drains and duplicates."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
    try:
        raw = {s: boto3.client(s, region_name=REGION) for s in ("sagemaker", "dynamodb", "sns")}
        endpoints, topic = _setup_stack(raw, RUNS + 1)
        _lambda_env(topic)
        from rollback.runtime import handler

        handler.reset()
        at = datetime.now(UTC) + timedelta(seconds=1)
        events = [_event(f"{e}-candidate-errors", e, at) for e in endpoints]
        t0 = time.perf_counter()
        handler.on_alarm(events[0])  # first invocation: creates the clients (cold-ish)
        first = time.perf_counter() - t0
        drains, duplicates = [], []
        for event in events[1:]:
            t0 = time.perf_counter()
            assert handler.on_alarm(event)["action"] == "drained"
            drains.append(time.perf_counter() - t0)
        for event in events[1:]:
            t0 = time.perf_counter()
            assert handler.on_alarm(event)["action"] == "duplicate"
            duplicates.append(time.perf_counter() - t0)
        return drains, duplicates, first
    finally:
        os.environ.pop("AWS_ENDPOINT_URL", None)
        server.stop()


def import_times() -> tuple[list[float], list[float]]:
    """Cold import of rollback.runtime.handler after boto3 is already imported, in fresh interpreters."""
    code = (
        "import time, boto3, botocore.config\n"
        "t = time.perf_counter()\n"
        "import rollback.runtime.handler\n"
        "print(time.perf_counter() - t)\n"
    )
    boto_code = "import time\nt = time.perf_counter()\nimport boto3\nprint(time.perf_counter() - t)\n"
    ours, boto = [], []
    for _ in range(IMPORT_RUNS):
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
        )
        ours.append(float(out.stdout.strip()))
        out = subprocess.run(
            [sys.executable, "-c", boto_code], cwd=ROOT, capture_output=True, text=True, check=True
        )
        boto.append(float(out.stdout.strip()))
    return ours, boto


def main() -> None:
    import logging

    logging.getLogger("mlrollback").disabled = True  # keep the table readable
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the moto server's request log
    first, per_duplicate, effects = count_calls()
    racing = deliveries_during_publish()
    slept, outcome = worst_case_sleep()
    drains, duplicates, first_call = handler_times()
    ours, boto = import_times()
    ms = 1000.0
    rows = [
        (
            "AWS calls per rollback",
            f"{sum(first.values())}",
            "<= 5",
            ", ".join(f"{k} {v}" for k, v in first.items()),
        ),
        (
            "AWS calls per duplicate",
            f"{statistics.median(per_duplicate):.0f} (max {max(per_duplicate)})",
            "<= 2",
            f"{DUPLICATES} duplicate deliveries",
        ),
        (
            "50 deliveries of one alarm leave",
            ", ".join(f"{v} {k}" for k, v in effects.items()),
            "1 each",
            "weights updates and messages counted as API calls",
        ),
        (
            "50 deliveries, 49 during the first's Publish",
            ", ".join(f"{v} {k}" for k, v in racing.items()),
            "1 each, 49 duplicate",
            "EventBridge duplicates arriving before the quarantine record (completion marker) exists",
        ),
        (
            "worst-case retry sleep of one drain",
            f"{slept:.1f} s",
            "< 60 s",
            f"every call refused 5 times, maximal jitter; ends with {outcome} (the event is retried)",
        ),
        (
            "on_alarm drain, moto server",
            f"{statistics.median(drains) * ms:.1f} ms",
            "-",
            f"median of {RUNS}, warm clients; first call {first_call * ms:.0f} ms",
        ),
        (
            "on_alarm duplicate, moto server",
            f"{statistics.median(duplicates) * ms:.1f} ms",
            "-",
            f"median of {RUNS}",
        ),
        (
            "import rollback.runtime.handler after boto3",
            f"{statistics.median(ours) * ms:.1f} ms",
            "< 100 ms",
            f"median of {IMPORT_RUNS} fresh interpreters; boto3 itself {statistics.median(boto) * ms:.0f} ms",
        ),
    ]
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"{'figure':<{width[0]}}  {'value':<{width[1]}}  {'target':<{width[2]}}  note")
    for row in rows:
        print(f"{row[0]:<{width[0]}}  {row[1]:<{width[1]}}  {row[2]:<{width[2]}}  {row[3]}")
    print(
        json.dumps(
            {
                "callsPerRollback": sum(first.values()),
                "callsPerDuplicateMax": max(per_duplicate),
                "effectsOf50Deliveries": effects,
                "effectsOf50DeliveriesDuringPublish": racing,
                "worstCaseSleepSeconds": round(slept, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
