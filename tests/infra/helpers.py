"""Per-test config builders and program runners for the infra tests (no shared mutable data)."""

from __future__ import annotations

import json
from typing import Any

from infra.testing import ProgramRun, RecordingMocks, run_program

REGION = "eu-west-1"


def endpoint_values(name: str = "fraud-scorer", **overrides: Any) -> dict[str, Any]:
    """A fresh, valid raw endpoint mapping (as in a stack file); ``overrides`` replace top-level keys."""
    ep: dict[str, Any] = {
        "name": name,
        "instanceType": "ml.m5.large",
        "instanceCount": 1,
        "versions": {
            "v1": {
                "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/fraud:1.0",
                "modelDataUrl": "s3://models-bucket/fraud/v1/model.tar.gz",
            },
            "v2": {
                "framework": "xgboost",
                "frameworkVersion": "1.7-1",
                "modelDataUrl": "s3://models-bucket/fraud/v2/model.tar.gz",
            },
        },
        "release": {"stable": "v1", "candidate": "v2"},
        "strategy": {"type": "canary", "steps": [10, 50, 100], "bakeMinutes": 1, "guardrailWaitSeconds": 60},
        "triggers": {
            "metrics": "custom",
            "periodSeconds": 10,
            "evaluationPeriods": 3,
            "datapointsToAlarm": 2,
        },
        "dataCapture": {"samplingPercent": 20},
    }
    ep.update(overrides)
    return ep


def stack_values(*endpoints: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """Fresh raw ``mlrollback:`` values (keys without prefix) for a whole stack."""
    values: dict[str, Any] = {
        "environment": "dev",
        "production": False,
        "artifacts": {"create": True},
        "notifications": {"emails": ["oncall@example.com"]},
        "endpoints": list(endpoints) or [endpoint_values()],
    }
    values.update(overrides)
    return values


def config_map(values: dict[str, Any], region: str | None = REGION) -> dict[str, str]:
    """The engine's config map for ``values``: structured values JSON-encoded, like set_all_config wants."""
    out = {f"mlrollback:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
    if region:
        out["aws:region"] = region
    return out


def run(values: dict[str, Any], *, stack: str = "dev", ssm: dict[str, str] | None = None) -> ProgramRun:
    """Run the real program (infra/__main__.py) for ``values`` in a fresh mock runtime."""
    mocks = RecordingMocks(region=REGION, ssm_parameters=ssm)
    return run_program(config_map(values), stack=stack, mocks=mocks)


def policy_statements(run_: ProgramRun, name: str) -> list[dict[str, Any]]:
    """Statements of the inline role policy with logical name ``name``."""
    return json.loads(run_.named(name).inputs["policy"])["Statement"]
