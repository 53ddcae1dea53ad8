from __future__ import annotations

import io
import itertools
import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from rollback.client import SafePredictor
from rollback.runtime.errors import PredictionError
from rollback.runtime.metrics import MetricsPublisher

ENDPOINT = "fraud-scorer-dev"


def ok(stub: Stubber, variant: str, body: bytes = b'{"score": 0.1}', target: str | None = None) -> None:
    expected: dict[str, Any] = {"EndpointName": ENDPOINT, "Body": ANY, "ContentType": ANY, "InferenceId": ANY}
    if target:
        expected["TargetVariant"] = target
    stub.add_response(
        "invoke_endpoint",
        {
            "Body": StreamingBody(io.BytesIO(body), len(body)),
            "ContentType": "application/json",
            "InvokedProductionVariant": variant,
        },
        expected,
    )


def fail(
    stub: Stubber, code: str = "ModelError", status: int = 424, variant: str | None = "candidate"
) -> None:
    meta = {"HTTPHeaders": {"x-amzn-invoked-production-variant": variant}} if variant else None
    stub.add_client_error("invoke_endpoint", code, f"{code} from the model", status, response_meta=meta)


def test_healthy_prediction_returns_body_and_serving_variant(runtime: Any) -> None:
    client, stub = runtime
    ok(stub, "candidate")
    predictor = SafePredictor(ENDPOINT, runtime=client, metrics=None)

    result = predictor.predict(json.dumps({"amount": 3}))

    assert result.body == b'{"score": 0.1}' and result.variant == "candidate"
    assert not result.failed_over and not result.from_fallback
    assert predictor.stats.predictions == 1 and predictor.stats.failovers == 0


def test_candidate_model_error_fails_over_once_to_stable(runtime: Any) -> None:
    client, stub = runtime
    fail(stub, "ModelError", 424, "candidate")
    ok(stub, "stable", b'{"score": 0.2}', target="stable")
    predictor = SafePredictor(ENDPOINT, runtime=client, metrics=None)

    result = predictor.predict(b"{}")

    assert result.body == b'{"score": 0.2}' and result.variant == "stable" and result.failed_over
    assert [(a.variant, a.ok, a.error_code) for a in result.attempts] == [
        ("candidate", False, "ModelError"),
        ("stable", True, None),
    ]
    stats = predictor.stats.as_dict()
    assert stats["failovers"] == 1 and stats["predictions_failed"] == 0
    assert stats["predictions_failed_without_failover"] == 1


@pytest.mark.parametrize(("code", "status"), [("InternalFailure", 500), ("ServiceUnavailable", 503)])
def test_5xx_from_a_variant_fails_over(runtime: Any, code: str, status: int) -> None:
    client, stub = runtime
    fail(stub, code, status, variant=None)  # variant unknown: stable is still tried
    ok(stub, "stable", target="stable")
    result = SafePredictor(ENDPOINT, runtime=client, metrics=None).predict(b"{}")
    assert result.failed_over and result.attempts[0].variant == "unknown"


def test_timeout_fails_over_to_stable(runtime: Any) -> None:
    client, stub = runtime

    def time_out(**_: Any) -> None:
        raise ReadTimeoutError(endpoint_url="https://runtime.sagemaker")

    client.meta.events.register("provide-client-params.sagemaker-runtime.InvokeEndpoint", _once(time_out))
    ok(stub, "stable", target="stable")
    result = SafePredictor(ENDPOINT, runtime=client, metrics=None).predict(b"{}")
    assert result.failed_over and result.attempts[0].error_code == "ReadTimeoutError"


def _once(fn: Any) -> Any:
    state = {"done": False}

    def handler(**kwargs: Any) -> Any:
        if not state["done"]:
            state["done"] = True
            return fn(**kwargs)
        return None

    return handler


def test_failure_on_stable_itself_is_not_retried_and_uses_fallback(runtime: Any) -> None:
    client, stub = runtime
    fail(stub, "ModelError", 424, "stable")
    predictor = SafePredictor(ENDPOINT, runtime=client, metrics=None, fallback=b'{"score": null}')

    result = predictor.predict(b"{}")

    assert result.from_fallback and result.body == b'{"score": null}' and result.variant is None
    assert len(result.attempts) == 1 and predictor.stats.failovers == 0 and predictor.stats.fallbacks == 1


def test_non_idempotent_call_is_never_retried(runtime: Any) -> None:
    client, stub = runtime
    fail(stub, "ModelError", 424, "candidate")
    predictor = SafePredictor(ENDPOINT, runtime=client, metrics=None)

    with pytest.raises(PredictionError, match="no fallback") as info:
        predictor.predict(b"{}", idempotent=False)

    assert isinstance(info.value.__cause__, ClientError)
    assert predictor.stats.failovers == 0 and predictor.stats.non_idempotent_not_retried == 1
    assert predictor.stats.failed == 1


def test_callable_fallback_gets_the_request_body_when_stable_fails_too(runtime: Any) -> None:
    client, stub = runtime
    fail(stub, "ModelError", 424, "candidate")
    fail(stub, "ServiceUnavailable", 503, "stable")
    seen: list[bytes] = []

    def default(body: bytes) -> str:
        seen.append(body)
        return '{"score": 0.5}'

    predictor = SafePredictor(ENDPOINT, runtime=client, metrics=None, fallback=default)
    result = predictor.predict(b'{"amount": 7}')

    assert seen == [b'{"amount": 7}'] and result.body == b'{"score": 0.5}' and result.from_fallback
    assert result.failed_over and predictor.stats.failovers == 1 and predictor.stats.failover_successes == 0


def test_bad_request_is_raised_unchanged_not_retried(runtime: Any) -> None:
    client, stub = runtime
    fail(stub, "ValidationError", 400, variant=None)
    predictor = SafePredictor(ENDPOINT, runtime=client, metrics=None, fallback=b"x")
    with pytest.raises(ClientError, match="ValidationError"):
        predictor.predict(b"not json")
    assert predictor.stats.failovers == 0 and predictor.stats.fallbacks == 0


def test_no_retry_after_the_deadline(runtime: Any) -> None:
    client, stub = runtime
    fail(stub, "ModelError", 424, "candidate")
    ticks = itertools.chain([0.0, 0.0], itertools.repeat(3.0))  # the failing call took 3 s
    predictor = SafePredictor(
        ENDPOINT, runtime=client, metrics=None, fallback=b"d", deadline_seconds=2.0, clock=lambda: next(ticks)
    )
    result = predictor.predict(b"{}")
    assert result.from_fallback and len(result.attempts) == 1 and predictor.stats.failovers == 0


def test_every_attempt_is_counted_per_variant_in_cloudwatch(runtime: Any, cloudwatch: Any) -> None:
    from tests.client.test_metrics import T0, _sum

    client, stub = runtime
    fail(stub, "ModelError", 424, "candidate")
    ok(stub, "stable", target="stable")
    ok(stub, "candidate")
    publisher = MetricsPublisher(cloudwatch, clock=lambda: T0)
    predictor = SafePredictor(ENDPOINT, runtime=client, metrics=publisher)

    predictor.predict(b"{}")
    predictor.predict(b"{}")
    publisher.flush()

    # the failover hid the candidate's error from the caller, but not from the candidate alarm
    assert _sum(cloudwatch, "Invocations", "candidate", endpoint=ENDPOINT) == 2
    assert _sum(cloudwatch, "Errors", "candidate", endpoint=ENDPOINT) == 1
    assert _sum(cloudwatch, "Invocations", "stable", endpoint=ENDPOINT) == 1


def test_publishing_failure_never_fails_a_prediction(runtime: Any) -> None:
    client, stub = runtime
    ok(stub, "candidate")
    cw = boto3.client("cloudwatch", region_name="eu-west-1")
    with Stubber(cw) as cw_stub:
        cw_stub.add_client_error("put_metric_data", "InternalServiceError", "boom", 500)
        publisher = MetricsPublisher(cw)
        predictor = SafePredictor(ENDPOINT, runtime=client, metrics=publisher)
        result = predictor.predict(b"{}")
        stats = publisher.flush()
    assert result.body and stats.failed_calls == 1


def test_a_broken_metrics_sink_never_fails_a_prediction(runtime: Any) -> None:
    client, stub = runtime
    ok(stub, "candidate")

    class BrokenSink:
        def record_invocation(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("disk full")

    result = SafePredictor(ENDPOINT, runtime=client, metrics=BrokenSink()).predict(b"{}")
    assert result.variant == "candidate"


def test_inference_id_is_sent_so_shadow_captures_can_be_paired(runtime: Any) -> None:
    client, stub = runtime
    body = b"{}"
    stub.add_response(
        "invoke_endpoint",
        {"Body": StreamingBody(io.BytesIO(body), 2), "InvokedProductionVariant": "stable"},
        {"EndpointName": ENDPOINT, "Body": body, "ContentType": "application/json", "InferenceId": "req-42"},
    )
    result = SafePredictor(ENDPOINT, runtime=client, metrics=None).predict(body, inference_id="req-42")
    assert result.inference_id == "req-42"


def test_constructor_rejects_meaningless_settings() -> None:
    with pytest.raises(ValueError, match="deadline_seconds"):
        SafePredictor(ENDPOINT, runtime=object(), metrics=None, deadline_seconds=0)
    with pytest.raises(ValueError, match="endpoint_name"):
        SafePredictor("", runtime=object(), metrics=None)
