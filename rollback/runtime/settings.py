"""Where a stack's records live: from the Lambda environment, or derived for a stack by the CLI.

Standard library only: on the Lambda import path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from rollback.runtime import names
from rollback.runtime.errors import ConfigError


@dataclass(frozen=True)
class Settings:
    """Where the stack's records live; from the Lambda environment or built for a stack by the CLI."""

    stack: str
    audit_table: str
    topic_arn: str | None
    quarantine_prefix: str
    rollout_prefix: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the MLROLLBACK_* variables the program sets on the functions (docs/contracts.md)."""
        env = os.environ if env is None else env
        missing = [
            k
            for k in (
                names.ENV_STACK,
                names.ENV_AUDIT_TABLE,
                names.ENV_QUARANTINE_PREFIX,
                names.ENV_ROLLOUT_PREFIX,
            )
            if not env.get(k)
        ]
        if missing:
            raise ConfigError(
                f"Lambda environment is missing {', '.join(missing)}; these are set by the Pulumi program "
                "(infra/components/autorollback): redeploy with `pulumi up`"
            )
        return cls(
            stack=names.check_stack(env[names.ENV_STACK]),
            audit_table=env[names.ENV_AUDIT_TABLE],
            topic_arn=env.get(names.ENV_TOPIC_ARN) or None,
            quarantine_prefix=env[names.ENV_QUARANTINE_PREFIX].rstrip("/"),
            rollout_prefix=env[names.ENV_ROLLOUT_PREFIX].rstrip("/"),
        )

    @classmethod
    def for_stack(cls, stack: str, topic_arn: str | None = None) -> Settings:
        """Settings derived from :mod:`rollback.runtime.names` (what the program would set)."""
        return cls(
            stack=names.check_stack(stack),
            audit_table=names.audit_table_name(stack),
            topic_arn=topic_arn,
            quarantine_prefix=names.quarantine_prefix(stack),
            rollout_prefix=names.rollout_prefix(stack),
        )

    def quarantine_parameter(self, endpoint: str) -> str:
        """Quarantine record parameter of ``endpoint`` under this stack's prefix."""
        return f"{self.quarantine_prefix}/{endpoint}"

    def plan_parameter(self, endpoint: str) -> str:
        """Rollout plan parameter of ``endpoint``."""
        return f"{self.rollout_prefix}/{endpoint}/plan"

    def progress_parameter(self, endpoint: str) -> str:
        """Rollout progress parameter of ``endpoint``."""
        return f"{self.rollout_prefix}/{endpoint}/progress"

    def physical(self, endpoint: str) -> str:
        """Accept a physical endpoint name of this stack or a logical one (made physical)."""
        return endpoint if endpoint.endswith(f"-{self.stack}") else names.endpoint_name(self.stack, endpoint)
