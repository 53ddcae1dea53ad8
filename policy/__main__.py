"""Entry point run by ``pulumi preview --policy-pack policy/``: serves the mlrollback policies.

The policies live in :mod:`policy.policies` (importable without starting the analyzer server,
so each one is unit-tested); constructing the PolicyPack here starts the gRPC server.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack

from policy.policies import POLICIES

PolicyPack(name="mlrollback", enforcement_level=EnforcementLevel.MANDATORY, policies=POLICIES)
