"""Gap fillers for moto: every change the sandbox makes to moto's behaviour lives in this module.

moto runs in the same process as the sandbox (``ThreadedMotoServer`` is a thread), so its
backends can be extended in place. What moto 5.x lacks and the product relies on:

- ``UpdateEndpoint`` (switch an endpoint to a new endpoint config). SageMaker semantics: the
  variants and weights of the new config replace the live ones, unless
  ``RetainAllVariantProperties`` is true (the Terraform provider never sets it, which is why a
  new config resets live weights; see docs/architecture.md, provider facts).
- Variant weight 0 and instance counts: moto drops ``InitialVariantWeight=0`` (falsy check) and
  ``UpdateEndpointWeightsAndCapacities`` without ``DesiredInstanceCount`` blanks the counts.
  A quarantined candidate is declared at weight 0, so both matter.
- ``LastModifiedTime`` moves when weights change (the runtime's stale-event check reads it).
- With :func:`set_updating_window` (the drill's timing model), a weights update leaves the endpoint
  ``Updating`` for a while: traffic follows the old ``CurrentWeight`` and further updates are
  refused ("Cannot update in-progress endpoint"), as SageMaker does.
- ``InvokeEndpoint`` routes by variant weight (or ``TargetVariant``) to a simulated model per
  variant and answers ``ModelError`` (HTTP 424) when that model fails, instead of static data.
- Metric timestamps compare as UTC whether moto stored them naive or aware.
- Time: sagemaker and cloudwatch backends read the sandbox's virtual clock, so modification
  times, alarm state timestamps and metric timestamps share one time line.

:func:`install` is idempotent; :func:`set_clock` and :func:`set_invoke_hook` point the patched
code at the running sandbox (one sandbox per process).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

_clock: Any = None
_invoke_hook: Callable[[str, str | None, bytes], InvokeOutcome] | None = None
_installed = False
#: Seconds an endpoint stays ``Updating`` after a weights update (None: the change is instant).
_updating_window: Callable[[], float] | None = None
#: Told of every weights update: ``(kind, endpoint, at, weights)``, kind ``accepted`` or ``applied``.
_weights_observer: Callable[[str, str, datetime, dict[str, float]], None] | None = None


@dataclass(frozen=True)
class InvokeOutcome:
    """What a simulated variant answered to one InvokeEndpoint call."""

    variant: str
    ok: bool
    latency_ms: float
    body: str
    #: False: the error answer carries no ``x-Amzn-Invoked-Production-Variant`` header.
    header: bool = True


def set_clock(clock: Any) -> None:
    """Make the patched moto backends read time from ``clock`` (``None``: the system clock)."""
    global _clock
    _clock = clock


def set_invoke_hook(hook: Callable[[str, str | None, bytes], InvokeOutcome] | None) -> None:
    """Route InvokeEndpoint through ``hook(endpoint, target_variant, body)`` (``None``: moto's default)."""
    global _invoke_hook
    _invoke_hook = hook


def set_updating_window(
    window: Callable[[], float] | None,
    observer: Callable[[str, str, datetime, dict[str, float]], None] | None = None,
) -> None:
    """Model SageMaker's ``Updating`` state after UpdateEndpointWeightsAndCapacities (None: instant).

    ``window()`` gives the seconds of one update. Until they pass, the endpoint is ``Updating``,
    ``CurrentWeight`` keeps the old weights (traffic follows them) while ``DesiredWeight`` has the
    new ones, and any further update is refused as SageMaker refuses it. ``observer`` hears when an
    update is accepted and when it is applied.
    """
    global _updating_window, _weights_observer
    _updating_window = window
    _weights_observer = observer


def settle(endpoint: Any) -> None:
    """Finish ``endpoint``'s pending weights update once its Updating window has passed."""
    pending = getattr(endpoint, "_mlr_pending", None)
    if pending is None:
        return
    until, weights = pending
    if _utcnow() < until:
        return
    endpoint._mlr_pending = None
    for variant in endpoint.production_variants:
        if variant["VariantName"] in weights:
            variant["CurrentWeight"] = weights[variant["VariantName"]]
    endpoint.endpoint_status = "InService"
    endpoint.last_modified_time = until
    if _weights_observer is not None:
        _weights_observer("applied", endpoint.endpoint_name, _aware(until), dict(weights))


def _utcnow() -> datetime:
    if _clock is None:
        return datetime.now(UTC).replace(tzinfo=None)
    return _clock.now().astimezone(UTC).replace(tzinfo=None)


def install() -> None:
    """Apply every patch once. Safe to call many times."""
    global _installed
    if _installed:
        return
    import moto.cloudwatch.models as cw_models
    import moto.sagemaker.models as sm_models

    cw_models.utcnow = _utcnow  # type: ignore[attr-defined]
    sm_models.utcnow = _utcnow  # type: ignore[attr-defined]
    _patch_sagemaker()
    _patch_runtime()
    _patch_cloudwatch()
    _installed = True


def _aware(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _patch_cloudwatch() -> None:
    """Metric timestamps arrive aware (API) or naive (moto's own providers): compare them as UTC."""
    from moto.cloudwatch.models import CloudWatchBackend

    original_all = CloudWatchBackend.get_all_metrics
    original_get = CloudWatchBackend.get_metric_data

    def get_all_metrics(self: Any) -> Any:
        metrics = original_all(self)
        for datum in metrics:
            if datum.timestamp.tzinfo is None:
                datum.timestamp = datum.timestamp.replace(tzinfo=UTC)
        return metrics

    def get_metric_data(
        self: Any, queries: Any, start_time: datetime, end_time: datetime, *a: Any, **kw: Any
    ) -> Any:
        return original_get(self, queries, _aware(start_time), _aware(end_time), *a, **kw)

    CloudWatchBackend.get_all_metrics = get_all_metrics  # type: ignore[method-assign]
    CloudWatchBackend.get_metric_data = get_metric_data  # type: ignore[method-assign]


def _variant_from_config(declared: dict[str, Any]) -> dict[str, Any]:
    variant: dict[str, Any] = {"VariantName": declared["VariantName"]}
    count = declared.get("InitialInstanceCount")
    if count is not None:
        variant["CurrentInstanceCount"] = variant["DesiredInstanceCount"] = int(count)
    weight = declared.get("InitialVariantWeight")
    # SageMaker's default weight is 1.0; 0 is a valid (drained) weight and must survive.
    weight = 1.0 if weight is None else float(weight)
    variant["CurrentWeight"] = variant["DesiredWeight"] = weight
    if declared.get("ServerlessConfig"):
        variant["CurrentServerlessConfig"] = variant["DesiredServerlessConfig"] = declared["ServerlessConfig"]
    return variant


def _patch_sagemaker() -> None:
    """Variants as configured (weight 0 kept), the weights API, and UpdateEndpoint."""
    from moto.sagemaker import models as sm

    def process_variants(self: Any, production_variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [_variant_from_config(v) for v in production_variants]

    sm.FakeEndpoint._process_production_variants = process_variants  # type: ignore[method-assign]
    _patch_update_weights()
    _patch_update_endpoint()


def _patch_update_weights() -> None:
    """UpdateEndpointWeightsAndCapacities: refused while busy, keeps instance counts, moves the time."""
    from moto.sagemaker import models as sm
    from moto.sagemaker.exceptions import AWSValidationException

    def update_weights(
        self: Any, endpoint_name: str, desired_weights_and_capacities: list[dict[str, Any]]
    ) -> str:
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is None:
            arn = sm.FakeEndpoint.arn_formatter(endpoint_name, self.account_id, self.region_name)
            raise AWSValidationException(f'Could not find endpoint "{arn}".')
        settle(endpoint)
        if endpoint.endpoint_status != "InService":
            raise AWSValidationException(
                f"Cannot update in-progress endpoint {endpoint.arn} (status {endpoint.endpoint_status})."
            )
        by_name = {v["VariantName"]: v for v in endpoint.production_variants}
        seen: set[str] = set()
        for item in desired_weights_and_capacities:
            name = item.get("VariantName")
            if name in seen:
                raise AWSValidationException(f'The variant name "{name}" was non-unique within the request.')
            if name not in by_name:
                raise AWSValidationException(
                    f'The variant name(s) "{name}" is/are not present within endpoint configuration '
                    f'"{endpoint.endpoint_config_name}".'
                )
            weight = item.get("DesiredWeight")
            if weight is not None and float(weight) < 0:
                raise AWSValidationException(f"DesiredWeight for variant {name} must be >= 0")
            seen.add(name)
        window = _updating_window() if _updating_window is not None else 0.0
        weights: dict[str, float] = {}
        for item in desired_weights_and_capacities:
            variant = by_name[item["VariantName"]]
            if item.get("DesiredWeight") is not None:
                weights[item["VariantName"]] = float(item["DesiredWeight"])
                variant["DesiredWeight"] = float(item["DesiredWeight"])
                if window <= 0:
                    variant["CurrentWeight"] = float(item["DesiredWeight"])
            if item.get("DesiredInstanceCount") is not None:
                count = int(item["DesiredInstanceCount"])
                variant["DesiredInstanceCount"] = variant["CurrentInstanceCount"] = count
        now = _utcnow()
        endpoint.last_modified_time = now
        if _weights_observer is not None:
            _weights_observer("accepted", endpoint_name, _aware(now), dict(weights))
        if window > 0:
            endpoint.endpoint_status = "Updating"
            endpoint._mlr_pending = (now + timedelta(seconds=window), weights)
        elif _weights_observer is not None:
            _weights_observer("applied", endpoint_name, _aware(now), dict(weights))
        return endpoint.arn

    original_describe = sm.SageMakerModelBackend.describe_endpoint

    def describe_endpoint(self: Any, endpoint_name: str) -> dict[str, Any]:
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is not None:
            settle(endpoint)
        return original_describe(self, endpoint_name)  # type: ignore[no-any-return]

    sm.SageMakerModelBackend.describe_endpoint = describe_endpoint  # type: ignore[method-assign]

    sm.SageMakerModelBackend.update_endpoint_weights_and_capacities = update_weights  # type: ignore[method-assign]


def _patch_update_endpoint() -> None:
    """UpdateEndpoint: the new config's variants and declared weights replace the live ones."""
    from moto.sagemaker import models as sm
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.responses import SageMakerResponse

    def update_endpoint(
        self: Any,
        endpoint_name: str,
        endpoint_config_name: str,
        retain_all_variant_properties: bool = False,
        deployment_config: dict[str, Any] | None = None,
    ) -> str:
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is None:
            arn = sm.FakeEndpoint.arn_formatter(endpoint_name, self.account_id, self.region_name)
            raise ValidationError(message=f"Could not find endpoint '{arn}'.")
        config = self.endpoint_configs.get(endpoint_config_name)
        if config is None:
            arn = sm.FakeEndpointConfig.arn_formatter(endpoint_config_name, self.account_id, self.region_name)
            raise ValidationError(message=f"Could not find endpoint configuration '{arn}'.")
        settle(endpoint)
        if endpoint.endpoint_status != "InService":
            raise ValidationError(
                message=f"Cannot update in-progress endpoint {endpoint.arn} "
                f"(status {endpoint.endpoint_status})."
            )
        new_variants = [_variant_from_config(v) for v in config.production_variants]
        if retain_all_variant_properties:
            live = {v["VariantName"]: v for v in endpoint.production_variants}
            new_variants = [live.get(v["VariantName"], v) for v in new_variants]
        endpoint.endpoint_config_name = endpoint_config_name
        endpoint.production_variants = new_variants
        endpoint.data_capture_config = config.data_capture_config
        if deployment_config is not None:
            endpoint.deployment_config = deployment_config
        endpoint.last_modified_time = _utcnow()
        return endpoint.arn

    sm.SageMakerModelBackend.update_endpoint = update_endpoint  # type: ignore[attr-defined]

    def update_endpoint_response(self: Any) -> Any:
        from moto.core.responses import ActionResult

        arn = self.sagemaker_backend.update_endpoint(
            endpoint_name=self._get_param("EndpointName"),
            endpoint_config_name=self._get_param("EndpointConfigName"),
            retain_all_variant_properties=bool(self._get_param("RetainAllVariantProperties")),
            deployment_config=self._get_param("DeploymentConfig"),
        )
        return ActionResult({"EndpointArn": arn})

    SageMakerResponse.update_endpoint = update_endpoint_response  # type: ignore[attr-defined]


def _patch_runtime() -> None:
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

    original = SageMakerRuntimeResponse.invoke_endpoint

    def invoke_endpoint(self: Any) -> Any:
        if _invoke_hook is None:
            return original(self)
        endpoint_name = self._get_params().get("EndpointName") or self.path.split("/")[2]
        target = self.headers.get("X-Amzn-SageMaker-Target-Variant")
        body = self.body if isinstance(self.body, bytes) else str(self.body or "").encode()
        try:
            outcome = _invoke_hook(endpoint_name, target, body)
        except LookupError as exc:
            payload = {"__type": "ValidationError", "message": str(exc)}
            # moto takes the HTTP status from the "status" header, not from the tuple's first item.
            return 400, {"status": 400, "x-amzn-ErrorType": "ValidationError"}, json.dumps(payload)
        # The variant header on errors too: clients (rollback.client) name the failing variant from it.
        headers: dict[str, Any] = (
            {"x-Amzn-Invoked-Production-Variant": outcome.variant} if outcome.ok or outcome.header else {}
        )
        if outcome.ok:
            return 200, {**headers, "status": 200, "Content-Type": "application/json"}, outcome.body
        payload = {
            "__type": "ModelError",
            "message": f'Received server error (500) from primary with message "{outcome.body}"',
            "OriginalStatusCode": 500,
            "OriginalMessage": outcome.body,
            "LogStreamArn": f"arn:aws:logs:::log-group:/aws/sagemaker/Endpoints/{endpoint_name}",
        }
        return 424, {**headers, "status": 424, "x-amzn-ErrorType": "ModelError"}, json.dumps(payload)

    SageMakerRuntimeResponse.invoke_endpoint = invoke_endpoint  # type: ignore[method-assign]
