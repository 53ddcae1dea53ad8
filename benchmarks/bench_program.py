"""How long the Pulumi program takes under the mock runtime for 1, 10 and 100 endpoints.

Target: 100 endpoints in under 10 s on this machine, growth about linear. Prints, per size, the
median of 3 runs, the number of provider resources, the time per endpoint, and the largest inline
policy of the rollback/stepper roles as IAM counts it (no whitespace; IAM's quota is 10,240 per role).

    .venv/bin/python benchmarks/bench_program.py
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from infra.testing import RecordingMocks, run_program  # noqa: E402

RUNS = 3
SIZES = (1, 10, 100)


def endpoint(i: int) -> dict:
    """A generated endpoint with a candidate on a canary, custom alarms and a quality trigger."""
    return {
        "name": f"model-{i:03d}",
        "instanceType": "ml.m5.large",
        "instanceCount": 2,
        "versions": {
            "v1": {
                "image": f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/model-{i}:1",
                "modelDataUrl": f"s3://bench-models/model-{i}/v1/model.tar.gz",
            },
            "v2": {
                "framework": "xgboost",
                "frameworkVersion": "1.7-1",
                "modelDataUrl": f"s3://bench-models/model-{i}/v2/model.tar.gz",
            },
        },
        "release": {"stable": "v1", "candidate": "v2"},
        "strategy": {"type": "canary", "steps": [10, 50, 100], "guardrailWaitSeconds": 120},
        "triggers": {"metrics": "custom", "quality": {"metric": "accuracy", "min": 0.9}},
    }


def config(n: int) -> dict[str, str]:
    return {
        "aws:region": "eu-west-1",
        "mlrollback:environment": "bench",
        "mlrollback:notifications": json.dumps({"emails": ["oncall@example.com"]}),
        "mlrollback:endpoints": json.dumps([endpoint(i) for i in range(n)]),
    }


def lambda_policy_chars(mocks: RecordingMocks) -> int:
    """Largest rollback/stepper inline policy, whitespace excluded as IAM counts it."""
    return max(
        len(json.dumps(json.loads(r.inputs["policy"]), separators=(",", ":")))
        for r in mocks.resources
        if r.typ == "aws:iam/rolePolicy:RolePolicy"
        and r.name.endswith(("-rollback-policy", "-stepper-policy"))
    )


def measure(n: int) -> tuple[float, int, int]:
    times, count, chars = [], 0, 0
    for _ in range(RUNS):
        mocks = RecordingMocks()
        start = time.perf_counter()
        run_program(config(n), stack="bench", mocks=mocks)
        times.append(time.perf_counter() - start)
        count = sum(1 for r in mocks.resources if r.custom)
        chars = lambda_policy_chars(mocks)
    return statistics.median(times), count, chars


def main() -> int:
    measure(1)  # warm-up: imports and provider module loading are not the program's cost
    print(f"{'endpoints':>9} {'resources':>9} {'median s':>9} {'ms/endpoint':>12} {'policy chars':>12}")
    results = {}
    for n in SIZES:
        median, count, chars = measure(n)
        results[n] = median
        print(f"{n:>9} {count:>9} {median:>9.3f} {1000 * median / n:>12.1f} {chars:>12}")
    growth = results[100] / results[10]
    print(f"growth 10 -> 100 endpoints: x{growth:.1f} (linear would be x10)")
    ok = results[100] < 10
    print(f"100 endpoints under 10 s: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
