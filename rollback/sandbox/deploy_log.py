"""Deploy records for the sandbox's applies, as CI writes them after ``pulumi up``.

In a real account CI runs ``mlrollback record-deploy`` after ``pulumi up``; the sandbox's ``pulumi
up`` is the applier, so it records the same ``deploy`` audit items itself, through the same
:func:`rollback.ops.deploy_records.record_deploys`. That is what lets ``mlrollback revert --to-deployment ID
--sandbox`` (and the shadow verdicts) work against the sandbox as against AWS.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rollback.sandbox.emulator import Emulator


def _decode(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw  # plain strings (environment) are not JSON


def record_applied(
    emulator: Emulator, config: dict[str, str], stack: str, *, actor: str, project_dir: Path | None = None
) -> list[dict[str, Any]]:
    """Record one ``deploy`` item per endpoint of the config just applied; return the summaries.

    ``config`` is the Pulumi config map the applier ran the program with (it may differ from the
    stack file: the drill first deploys without the candidate), so it is validated again here, as
    the program did.
    """
    from infra.validation import validate
    from rollback.ops.deploy_records import record_deploys

    prefix = "mlrollback:"
    values = {key[len(prefix) :]: _decode(raw) for key, raw in config.items() if key.startswith(prefix)}
    cfg = validate(
        values,
        stack=stack,
        region=config.get("aws:region"),
        source=f"environments/Pulumi.{stack}.yaml",
        project_root=project_dir,
    )
    clients = SimpleNamespace(dynamodb=emulator.client("dynamodb"))
    return record_deploys(clients, cfg, actor=actor)
