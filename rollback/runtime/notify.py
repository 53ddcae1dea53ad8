"""The one SNS message per rollback (and per "stable is failing" alert).

Subject and JSON body follow docs/contracts.md. SNS subjects must be ASCII, single-line and at
most 100 characters, so the subject is sanitised and shortened; the body carries everything.
Standard library only (the client is passed in): on the Lambda import path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SUBJECT_MAX = 100


@dataclass(frozen=True)
class Message:
    """A ready-to-publish notification."""

    subject: str
    body: dict[str, Any]

    def to_json(self) -> str:
        """The message body as sent (sorted keys, so equal messages are equal strings)."""
        return json.dumps(self.body, sort_keys=True)


def _subject(text: str) -> str:
    clean = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text.replace("\n", " "))
    return clean if len(clean) <= SUBJECT_MAX else clean[: SUBJECT_MAX - 3] + "..."


def rollback_message(
    *,
    stack: str,
    endpoint: str,
    variant: str,
    version: str,
    alarm: str | None,
    reason: str,
    weights_before: dict[str, float],
    weights_after: dict[str, float],
    kind: str,
    actor: str,
) -> Message:
    """The message sent after a candidate was drained, with what to do next."""
    next_steps = [
        f"Traffic for {endpoint} now goes to the stable variant; version {version} is quarantined.",
        f"Investigate: `mlrollback status {endpoint} --stack {stack}` and `mlrollback history {endpoint} "
        f"--stack {stack}`.",
        f"Fix or replace the candidate in environments/Pulumi.{stack}.yaml, then clear the quarantine "
        "(`mlrollback clear-quarantine`) and run `pulumi up`.",
        "`pulumi up` keeps the candidate at weight 0 while the quarantine record exists.",
    ]
    return Message(
        subject=_subject(f"[mlrollback] {stack}: rolled back {version} on {endpoint}"),
        body={
            "kind": kind,
            "stack": stack,
            "endpoint": endpoint,
            "variant": variant,
            "version": version,
            "alarm": alarm,
            "reason": reason,
            "weightsBefore": weights_before,
            "weightsAfter": weights_after,
            "by": actor,
            "nextSteps": next_steps,
        },
    )


def stable_failing_message(
    *,
    stack: str,
    endpoint: str,
    version: str,
    alarm: str,
    reason: str,
    weights: dict[str, float],
    actor: str,
) -> Message:
    """The message sent when the stable variant's own alarm fires (nothing is drained)."""
    next_steps = [
        "Nothing was drained: the stable variant is never drained automatically.",
        f"Check the model and the endpoint's dependencies: `mlrollback status {endpoint} --stack {stack}`.",
        f"To move traffic, change the release in environments/Pulumi.{stack}.yaml and run `pulumi up`, "
        "or revert with `mlrollback revert`.",
    ]
    return Message(
        subject=_subject(f"[mlrollback] {stack}: stable {version} is failing on {endpoint}"),
        body={
            "kind": "stable-failing",
            "stack": stack,
            "endpoint": endpoint,
            "variant": "stable",
            "version": version,
            "alarm": alarm,
            "reason": reason,
            "weightsBefore": weights,
            "weightsAfter": weights,
            "by": actor,
            "nextSteps": next_steps,
        },
    )


def publish(sns: Any, topic_arn: str, message: Message) -> str:
    """Publish ``message`` to ``topic_arn``; returns the SNS message id."""
    response = sns.publish(TopicArn=topic_arn, Subject=message.subject, Message=message.to_json())
    return response["MessageId"]
