"""Per-resource appliers: one function per Pulumi resource type, each a few real boto3 calls on the emulator.

:data:`APPLIERS` maps a type token to its applier; :mod:`rollback.sandbox.runner` calls them for
every custom resource the program registers. A type with no applier stops the run naming it.
To add a resource type, write its applier in the module of its service and list it there.
"""

from __future__ import annotations

from rollback.sandbox.resources import functions, monitoring, sagemaker, storage
from rollback.sandbox.resources.base import Applier, ApplyContext

APPLIERS: dict[str, Applier] = {
    **storage.APPLIERS,
    **sagemaker.APPLIERS,
    **functions.APPLIERS,
    **monitoring.APPLIERS,
}

__all__ = ["APPLIERS", "Applier", "ApplyContext"]
