"""Entry point run by ``pulumi preview --policy-pack policy/``: serves the mlrollback policies.

Self-contained, so ``pulumi policy publish`` can ship this folder alone: the policies import only
the standard library and ``pulumi_policy`` (requirements.txt), and the language host puts this
folder on ``sys.path``, so the sibling module is imported by its own name. The policies live in
``policies.py`` (importable without starting the analyzer server, so each one is unit-tested);
constructing the PolicyPack here starts the gRPC server.
"""

from __future__ import annotations

from policies import POLICIES  # type: ignore[import-not-found]  # the pack's own folder
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(name="mlrollback", enforcement_level=EnforcementLevel.MANDATORY, policies=POLICIES)
