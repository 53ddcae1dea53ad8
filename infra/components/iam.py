"""Small helpers for least-privilege IAM documents shared by the components."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pulumi


def assume_role_policy(service: str) -> str:
    """Trust policy letting one AWS service principal assume a role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
    )


def statement(sid: str, actions: Sequence[str], resources: Sequence[Any], **extra: Any) -> dict[str, Any]:
    """One Allow statement; actions are always listed explicitly (never ``*``)."""
    return {"Sid": sid, "Effect": "Allow", "Action": list(actions), "Resource": list(resources), **extra}


def policy_document(statements: Sequence[dict[str, Any]]) -> pulumi.Output[str]:
    """A policy JSON document; statements may hold Outputs (ARNs of this stack's resources)."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})
