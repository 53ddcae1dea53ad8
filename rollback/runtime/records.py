"""The small JSON records the runtime shares with the program and the CLI (docs/contracts.md).

- quarantine record: written here after a drain, read by the program and ``mlrollback preflight``;
- rollout plan: written by the program on ``pulumi up``, read-only here;
- rollout progress: owned by the stepper.

All three are SSM String parameters named by :mod:`rollback.runtime.names`. Parsing is strict so a
hand-edited record fails with a message naming the parameter and the key.
Standard library only (the SSM client is passed in): on the Lambda import path.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rollback.runtime import clock
from rollback.runtime.errors import ConfigError

PROGRESS_STATES = ("baking", "paused", "ready-to-finalize", "halted")
QUARANTINE_KINDS = ("auto", "manual", "drill")
#: The quarantine record keeps at most this many characters of the reason: an SSM Standard
#: parameter holds 4 KB, and a long operator ``--reason`` must not make the record unwritable
#: (the audit item and the message keep the whole reason).
QUARANTINE_REASON_MAX = 1000


def _load(name: str, text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"SSM parameter {name}: not valid JSON ({exc.msg} at {exc.pos})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"SSM parameter {name}: expected a JSON object")
    return data


def _need(name: str, data: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in data:
        raise ConfigError(
            f"SSM parameter {name}: missing key {key!r}; redeploy with `pulumi up` to rewrite it"
        )
    value = data[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ConfigError(f"SSM parameter {name}: key {key!r} has type {type(value).__name__}")
    return value


@dataclass(frozen=True)
class RolloutPlan:
    """The program's declaration of how the candidate is rolled out (read-only for the runtime)."""

    endpoint: str
    stable: str | None
    candidate: str | None
    strategy: str
    steps: tuple[float, ...]
    bake_seconds: float
    min_requests_per_step: float
    metrics: str
    candidate_alarms: tuple[str, ...]
    plan_id: str

    @property
    def advances(self) -> bool:
        """True when there is a candidate and more than one step to walk through."""
        return self.candidate is not None and len(self.steps) > 1

    @classmethod
    def parse(cls, name: str, text: str) -> RolloutPlan:
        """Parse and validate the plan stored in parameter ``name``."""
        data = _load(name, text)
        steps = _need(name, data, "steps", list)
        if not all(isinstance(s, int | float) and not isinstance(s, bool) and 0 < s <= 100 for s in steps):
            raise ConfigError(f"SSM parameter {name}: 'steps' must be percents in (0, 100], got {steps!r}")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ConfigError(f"SSM parameter {name}: 'steps' must be strictly increasing, got {steps!r}")
        candidate = data.get("candidate")
        if candidate is not None and not isinstance(candidate, str):
            raise ConfigError(f"SSM parameter {name}: 'candidate' must be a string or null")
        metrics = data.get("metrics", "custom")
        if metrics not in ("custom", "builtin"):
            raise ConfigError(
                f"SSM parameter {name}: 'metrics' must be 'custom' or 'builtin', got {metrics!r}"
            )
        alarms = data.get("candidateAlarms", [])
        if not isinstance(alarms, list) or not all(isinstance(a, str) for a in alarms):
            raise ConfigError(f"SSM parameter {name}: 'candidateAlarms' must be a list of alarm names")
        bake = _need(name, data, "bakeSeconds", (int, float))
        min_requests = _need(name, data, "minRequestsPerStep", (int, float))
        if bake < 0 or min_requests < 0:
            raise ConfigError(f"SSM parameter {name}: 'bakeSeconds' and 'minRequestsPerStep' must be >= 0")
        stable = data.get("stable")
        return cls(
            endpoint=_need(name, data, "endpoint", str),
            stable=stable if isinstance(stable, str) else None,
            candidate=candidate,
            strategy=str(data.get("strategy", "canary")),
            steps=tuple(float(s) for s in steps),
            bake_seconds=float(bake),
            min_requests_per_step=float(min_requests),
            metrics=metrics,
            candidate_alarms=tuple(alarms),
            plan_id=_need(name, data, "planId", str),
        )


@dataclass(frozen=True)
class Progress:
    """Where the stepper is in a plan; a record for another ``planId`` is stale."""

    plan_id: str
    step_index: int
    step_started_at: datetime
    state: str
    reason: str = ""

    def to_json(self) -> str:
        """The JSON stored in the progress parameter."""
        return json.dumps(
            {
                "planId": self.plan_id,
                "stepIndex": self.step_index,
                "stepStartedAt": clock.iso(self.step_started_at),
                "state": self.state,
                "reason": self.reason,
            },
            sort_keys=True,
        )

    @classmethod
    def parse(cls, name: str, text: str) -> Progress:
        """Parse the progress stored in parameter ``name``."""
        data = _load(name, text)
        state = _need(name, data, "state", str)
        if state not in PROGRESS_STATES:
            raise ConfigError(f"SSM parameter {name}: 'state' {state!r} is not one of {PROGRESS_STATES}")
        started = _need(name, data, "stepStartedAt", str)
        try:
            started_at = clock.parse_iso(started)
        except ValueError as exc:
            raise ConfigError(f"SSM parameter {name}: 'stepStartedAt' {started!r} is not ISO-8601") from exc
        index = _need(name, data, "stepIndex", int)
        if index < 0:
            raise ConfigError(f"SSM parameter {name}: 'stepIndex' must be >= 0")
        return cls(
            plan_id=_need(name, data, "planId", str),
            step_index=index,
            step_started_at=started_at,
            state=state,
            reason=str(data.get("reason", "")),
        )


@dataclass(frozen=True)
class Quarantine:
    """A drained candidate version that the program must not re-promote silently."""

    endpoint: str
    version: str
    variant: str
    alarm: str | None
    reason: str
    at: str
    by: str
    kind: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The JSON stored in the quarantine parameter (contract keys first, then extras)."""
        reason = self.reason
        if len(reason) > QUARANTINE_REASON_MAX:
            reason = reason[: QUARANTINE_REASON_MAX - 3] + "..."
        return json.dumps(
            {
                **self.extra,
                "endpoint": self.endpoint,
                "version": self.version,
                "variant": self.variant,
                "alarm": self.alarm,
                "reason": reason,
                "at": self.at,
                "by": self.by,
                "kind": self.kind,
            },
            sort_keys=True,
        )

    @classmethod
    def parse(cls, name: str, text: str) -> Quarantine:
        """Parse the quarantine record stored in parameter ``name``."""
        data = _load(name, text)
        known = {"endpoint", "version", "variant", "alarm", "reason", "at", "by", "kind"}
        alarm = data.get("alarm")
        return cls(
            endpoint=_need(name, data, "endpoint", str),
            version=_need(name, data, "version", str),
            variant=str(data.get("variant", "candidate")),
            alarm=alarm if isinstance(alarm, str) else None,
            reason=str(data.get("reason", "")),
            at=str(data.get("at", "")),
            by=str(data.get("by", "")),
            kind=str(data.get("kind", "auto")),
            extra={k: v for k, v in data.items() if k not in known},
        )

    @property
    def idempotency_key(self) -> str | None:
        """Key of the alarm state change / command whose drain wrote this record (None: older record)."""
        key = self.extra.get("idempotencyKey")
        return key if isinstance(key, str) else None

    @property
    def guards(self) -> tuple[str, ...]:
        """Audit guards whose follow-ups this record completes: its own drain's first, then those it replaced.

        ``clear-quarantine`` marks them done so a replay cannot write the cleared record again.
        """
        value = self.extra.get("guards")
        return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()

    @property
    def pending(self) -> tuple[str, ...]:
        """Follow-ups the drain that wrote this record still owes (``notify`` when Publish failed)."""
        value = self.extra.get("pending")
        return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


# --- SSM I/O -------------------------------------------------------------------------------


def _is_not_found(exc: Exception) -> bool:
    return getattr(exc, "response", {}).get("Error", {}).get("Code") == "ParameterNotFound"


def get_text(ssm: Any, name: str) -> str | None:
    """The value of String parameter ``name``, or None when it does not exist."""
    try:
        return ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except Exception as exc:
        if _is_not_found(exc):
            return None
        raise


def put_text(ssm: Any, name: str, value: str, description: str) -> None:
    """Create or overwrite String parameter ``name``."""
    ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True, Description=description)


def get_parameters_by_path(ssm: Any, path: str) -> dict[str, str]:
    """Every parameter under ``path`` (recursive, all pages) as name -> value."""
    out: dict[str, str] = {}
    kwargs: dict[str, Any] = {"Path": path, "Recursive": True, "MaxResults": 10}
    while True:
        page = ssm.get_parameters_by_path(**kwargs)
        for p in page.get("Parameters", []):
            out[p["Name"]] = p["Value"]
        token = page.get("NextToken")
        if not token:
            return out
        kwargs["NextToken"] = token
