"""Fixtures for the runtime tests: moto in-process, a real endpoint, call counting, fault injection."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from rollback.runtime import clock, names
from rollback.runtime.aws import SERVICES, Clients
from rollback.runtime.clock import VirtualClock
from rollback.runtime.retry import RetryPolicy
from rollback.runtime.settings import Settings

STACK = "dev"
REGION = "eu-west-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/sagemaker-exec"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region so nothing can reach a real account."""
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)


@pytest.fixture
def vclock() -> Iterator[VirtualClock]:
    """A virtual clock installed for the test (starting at the real time, so moto timestamps agree)."""
    virtual = VirtualClock(datetime.now(UTC))
    previous = clock.use(virtual)
    yield virtual
    clock.use(previous)


class CallLog:
    """Counts every AWS API call made through the registered clients (a botocore event hook)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def hook(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, json.loads(json.dumps(params, default=str))))

    def reset(self) -> None:
        self.calls.clear()

    @property
    def count(self) -> int:
        return len(self.calls)

    def ops(self) -> Counter[str]:
        return Counter(name for name, _ in self.calls)

    def params(self, op: str) -> list[dict[str, Any]]:
        return [p for name, p in self.calls if name == op]


class Faulty:
    """A thin proxy over a real (moto) client that fails chosen operations a given number of times.

    ``fail("update_endpoint_weights_and_capacities", "ThrottlingException", times=3)``; the
    client under test is never replaced, only AWS's answers are.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._faults: dict[str, list[tuple[str, str]]] = {}
        self._rewrites: dict[str, list[Any]] = {}

    def fail(self, method: str, code: str, times: int, message: str = "injected") -> None:
        self._faults.setdefault(method, []).extend([(code, message)] * times)

    def rewrite(self, method: str, fn: Any, times: int) -> None:
        """Pass the real response through ``fn`` for the next ``times`` calls."""
        self._rewrites.setdefault(method, []).extend([fn] * times)

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)
        if not callable(target):
            return target

        def wrapper(**kwargs: Any) -> Any:
            queue = self._faults.get(name)
            if queue:
                code, message = queue.pop(0)
                raise ClientError({"Error": {"Code": code, "Message": message}}, name)
            response = target(**kwargs)
            rewrites = self._rewrites.get(name)
            if rewrites:
                response = rewrites.pop(0)(response)
            return response

        return wrapper


class Killed(BaseException):
    """The Lambda runtime ending the invocation (timeout, out of memory): no except clause runs."""


def killed_in(client: Any, method: str) -> Faulty:
    """``client`` whose ``method`` ends the invocation (:class:`Killed`) instead of answering."""
    proxy = Faulty(client)

    def die(**_: Any) -> Any:
        raise Killed(f"Task timed out in {method}")

    setattr(proxy, method, die)
    return proxy


@dataclass
class World:
    """One stack in moto: an endpoint with stable+candidate, audit table, topic, queue, records."""

    clients: Clients
    raw: dict[str, Any]
    log: CallLog
    settings: Settings
    queue_url: str
    endpoints: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return self.endpoints[0]

    def add_endpoint(self, logical: str, stable: float = 90.0, candidate: float | None = 10.0) -> str:
        sm = self.raw["sagemaker"]
        physical = names.endpoint_name(STACK, logical)
        variants = [self._variant(physical, names.STABLE, stable)]
        if candidate is not None:
            variants.append(self._variant(physical, names.CANDIDATE, candidate))
        sm.create_endpoint_config(EndpointConfigName=f"{physical}-cfg", ProductionVariants=variants)
        sm.create_endpoint(EndpointName=physical, EndpointConfigName=f"{physical}-cfg")
        self.endpoints.append(physical)
        for role in (names.STABLE, names.CANDIDATE):
            self.add_alarm(physical, role, "errors", version="v1" if role == names.STABLE else "v2")
        return physical

    def _variant(self, physical: str, role: str, weight: float) -> dict[str, Any]:
        model = f"{physical}-{role}"
        self.raw["sagemaker"].create_model(
            ModelName=model, ExecutionRoleArn=ROLE_ARN, PrimaryContainer={"Image": "img:1"}
        )
        return {
            "VariantName": role,
            "ModelName": model,
            "InitialInstanceCount": 1,
            "InstanceType": "ml.m5.large",
            "InitialVariantWeight": weight,
        }

    def add_alarm(self, physical: str, role: str, kpi: str, version: str | None) -> str:
        name = names.alarm_name(physical, role, kpi)
        self.raw["cloudwatch"].put_metric_alarm(
            AlarmName=name,
            AlarmDescription=alarm_description(physical, role, kpi, version),
            Namespace=names.CUSTOM_METRIC_NAMESPACE,
            MetricName="Errors",
            Dimensions=[{"Name": "EndpointName", "Value": physical}, {"Name": "VariantName", "Value": role}],
            Statistic="Sum",
            Period=10,
            EvaluationPeriods=6,
            DatapointsToAlarm=3,
            Threshold=5.0,
            ComparisonOperator="GreaterThanThreshold",
            TreatMissingData="notBreaching",
        )
        return name

    def set_alarm(self, name: str, state: str) -> datetime:
        cw = self.raw["cloudwatch"]
        cw.set_alarm_state(AlarmName=name, StateValue=state, StateReason=f"test set {state}")
        return cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateUpdatedTimestamp"]

    def weights(self, physical: str | None = None) -> dict[str, float]:
        desc = self.raw["sagemaker"].describe_endpoint(EndpointName=physical or self.endpoint)
        return {v["VariantName"]: v["CurrentWeight"] for v in desc["ProductionVariants"]}

    def audit_items(self, physical: str | None = None) -> list[dict[str, Any]]:
        from rollback.runtime import audit

        items, _ = audit.query(
            self.raw["dynamodb"], self.settings.audit_table, physical or self.endpoint, limit=1000
        )
        return items

    def messages(self) -> list[dict[str, Any]]:
        sqs = self.raw["sqs"]
        out = []
        while True:
            got = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return out
            for m in got:
                envelope = json.loads(m["Body"])
                out.append({"subject": envelope.get("Subject"), "body": json.loads(envelope["Message"])})
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])

    def quarantine(self, physical: str | None = None) -> dict[str, Any] | None:
        from rollback.runtime import records

        text = records.get_text(
            self.raw["ssm"], self.settings.quarantine_parameter(physical or self.endpoint)
        )
        return None if text is None else json.loads(text)

    def put_plan(self, physical: str, **overrides: Any) -> dict[str, Any]:
        plan = {
            "endpoint": physical,
            "stable": "v1",
            "candidate": "v2",
            "strategy": "canary",
            "steps": [10, 25, 50, 100],
            "bakeSeconds": 300,
            "minRequestsPerStep": 100,
            "metrics": "custom",
            "candidateAlarms": [names.alarm_name(physical, names.CANDIDATE, "errors")],
            "planId": "plan00000001",
        }
        plan.update(overrides)
        self.raw["ssm"].put_parameter(
            Name=self.settings.plan_parameter(physical), Value=json.dumps(plan), Type="String", Overwrite=True
        )
        return plan


def alarm_description(physical: str, role: str, kpi: str, version: str | None) -> str:
    return (
        f"{role} {kpi} of {physical}: drains the candidate when it fails.\n"
        f"mlrollback: endpoint={physical} role={role} kpi={kpi} version={version or '-'}"
    )


def alarm_event(
    alarm: str,
    physical: str,
    role: str,
    *,
    state: str = "ALARM",
    at: datetime | None = None,
    version: str | None = "v2",
    math: bool = False,
    description: str | None = None,
) -> dict[str, Any]:
    """A "CloudWatch Alarm State Change" event shaped like the AWS documentation's examples."""
    at = at or datetime.now(UTC) + timedelta(seconds=1)
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}+0000"
    dims = {"EndpointName": physical, "VariantName": role}
    if math:
        metrics: list[dict[str, Any]] = [
            {"expression": "errors / invocations", "id": "e1", "label": "error rate", "returnData": True},
            {
                "id": "errors",
                "metricStat": {
                    "metric": {
                        "dimensions": dims,
                        "name": "Errors",
                        "namespace": names.CUSTOM_METRIC_NAMESPACE,
                    },
                    "period": 10,
                    "stat": "Sum",
                },
                "returnData": False,
            },
            {
                "id": "invocations",
                "metricStat": {
                    "metric": {
                        "dimensions": dims,
                        "name": "Invocations",
                        "namespace": names.CUSTOM_METRIC_NAMESPACE,
                    },
                    "period": 10,
                    "stat": "Sum",
                },
                "returnData": False,
            },
        ]
    else:
        metrics = [
            {
                "id": "30b6c6b2-a864-43a2-4877-c09a1afc3b87",
                "metricStat": {
                    "metric": {
                        "dimensions": dims,
                        "name": "Errors",
                        "namespace": names.CUSTOM_METRIC_NAMESPACE,
                    },
                    "period": 10,
                    "stat": "Sum",
                },
                "returnData": True,
            }
        ]
    kpi = alarm.rsplit("-", 1)[-1]
    return {
        "version": "0",
        "id": "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92",
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": "123456789012",
        "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:cloudwatch:{REGION}:123456789012:alarm:{alarm}"],
        "detail": {
            "alarmName": alarm,
            "configuration": {
                "description": description
                if description is not None
                else alarm_description(physical, role, kpi, version),
                "metrics": metrics,
            },
            "previousState": {
                "reason": "Threshold Crossed: 1 out of the last 6 datapoints was not greater than "
                "the threshold (5.0)",
                "timestamp": "2019-10-01T13:56:40.985+0000",
                "value": "OK",
            },
            "state": {
                "reason": "Threshold Crossed: 3 out of the last 6 datapoints were greater than "
                "the threshold (5.0)",
                "reasonData": "{}",
                "timestamp": stamp,
                "value": state,
            },
        },
    }


def instant_retry(attempts: int = 4) -> RetryPolicy:
    """Retry policy whose jitter always picks the maximum delay (deterministic; sleeps on the clock)."""
    return RetryPolicy(attempts=attempts, base=0.5, cap=8.0, rng=lambda _low, high: high)


@pytest.fixture
def world(vclock: VirtualClock) -> Iterator[World]:
    """moto with one stack: endpoint fraud-scorer-dev (stable 90 / candidate 10), table, topic, queue."""
    with mock_aws():
        # Two sets of clients on the same moto backend: the counted ones are handed to the code
        # under test, the raw ones let tests set up and inspect without touching the count.
        raw = {s: boto3.client(s, region_name=REGION) for s in (*SERVICES, "sqs")}
        counted = {s: boto3.client(s, region_name=REGION) for s in SERVICES}
        log = CallLog()
        for service in SERVICES:
            counted[service].meta.events.register("provide-client-params.*.*", log.hook)
        raw["dynamodb"].create_table(
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
        topic = raw["sns"].create_topic(Name=names.topic_name(STACK))["TopicArn"]
        queue_url = raw["sqs"].create_queue(QueueName="alerts")["QueueUrl"]
        queue_arn = raw["sqs"].get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        raw["sns"].subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        clients = Clients(**counted)
        w = World(
            clients=clients, raw=raw, log=log, settings=Settings.for_stack(STACK, topic), queue_url=queue_url
        )
        w.add_endpoint("fraud-scorer")
        log.reset()
        yield w
