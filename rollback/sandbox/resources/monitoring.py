"""Appliers of alarms and notifications: CloudWatch metric alarms, SNS topics and subscriptions."""

from __future__ import annotations

from typing import Any

from rollback.sandbox.resources.base import Applier, ApplyContext, Outputs, _digest, _tags


def _metric_alarm(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    alarm = inputs.get("name") or (prev["id"] if prev else ctx.autoname(name, max_len=255))
    outputs = {
        "name": alarm,
        "arn": ctx.arn("cloudwatch", f"alarm:{alarm}"),
        "inputsDigest": _digest(inputs, 16),
    }
    if prev and prev["outputs"].get("inputsDigest") == outputs["inputsDigest"]:
        return alarm, outputs  # unchanged: re-putting would reset the alarm's state
    args: dict[str, Any] = {
        "AlarmName": alarm,
        "ComparisonOperator": inputs["comparisonOperator"],
        "EvaluationPeriods": int(inputs["evaluationPeriods"]),
        "ActionsEnabled": bool(inputs.get("actionsEnabled", True)),
    }
    if "threshold" in inputs:
        args["Threshold"] = float(inputs["threshold"])
    simple = {
        "alarmDescription": "AlarmDescription",
        "treatMissingData": "TreatMissingData",
        "namespace": "Namespace",
        "metricName": "MetricName",
        "statistic": "Statistic",
        "extendedStatistic": "ExtendedStatistic",
        "unit": "Unit",
        "thresholdMetricId": "ThresholdMetricId",
    }
    for key, api in simple.items():
        if inputs.get(key) is not None:
            args[api] = inputs[key]
    for key, api in (("datapointsToAlarm", "DatapointsToAlarm"), ("period", "Period")):
        if inputs.get(key) is not None:
            args[api] = int(inputs[key])
    for key, api in (("alarmActions", "AlarmActions"), ("okActions", "OKActions")):
        if inputs.get(key):
            args[api] = list(inputs[key])
    if inputs.get("dimensions"):
        args["Dimensions"] = [{"Name": k, "Value": str(v)} for k, v in sorted(inputs["dimensions"].items())]
    if inputs.get("metricQueries"):
        metrics = []
        for query in inputs["metricQueries"]:
            item: dict[str, Any] = {"Id": query["id"], "ReturnData": bool(query.get("returnData", False))}
            if query.get("expression"):
                item["Expression"] = query["expression"]
            if query.get("label"):
                item["Label"] = query["label"]
            metric = query.get("metric")
            if metric:
                stat: dict[str, Any] = {
                    "Metric": {
                        "Namespace": metric["namespace"],
                        "MetricName": metric["metricName"],
                        "Dimensions": [
                            {"Name": k, "Value": str(v)}
                            for k, v in sorted((metric.get("dimensions") or {}).items())
                        ],
                    },
                    "Period": int(metric["period"]),
                    "Stat": metric["stat"],
                }
                if metric.get("unit"):
                    stat["Unit"] = metric["unit"]
                item["MetricStat"] = stat
            metrics.append(item)
        args["Metrics"] = metrics
    if inputs.get("tags") and not prev:
        args["Tags"] = _tags(inputs)
    ctx.client("cloudwatch").put_metric_alarm(**args)
    return alarm, outputs


def _sns_topic(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    topic = inputs.get("name") or (prev["outputs"]["name"] if prev else ctx.autoname(name, max_len=256))
    attributes = {}
    if inputs.get("kmsMasterKeyId"):
        attributes["KmsMasterKeyId"] = inputs["kmsMasterKeyId"]
    args: dict[str, Any] = {"Name": topic, "Attributes": attributes}
    if inputs.get("tags"):
        args["Tags"] = _tags(inputs)
    arn = ctx.client("sns").create_topic(**args)["TopicArn"]
    return arn, {"name": topic, "arn": arn}


def _sns_subscription(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    if prev:
        return prev["id"], prev["outputs"]
    arn = ctx.client("sns").subscribe(
        TopicArn=inputs["topic"],
        Protocol=inputs["protocol"],
        Endpoint=inputs["endpoint"],
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]
    return arn, {"arn": arn}


APPLIERS: dict[str, Applier] = {
    "aws:cloudwatch/metricAlarm:MetricAlarm": _metric_alarm,
    "aws:sns/topic:Topic": _sns_topic,
    "aws:sns/topicSubscription:TopicSubscription": _sns_subscription,
}
