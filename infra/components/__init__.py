"""One ComponentResource per concern: registry, endpoint, alarms, auto-rollback wiring."""

from __future__ import annotations
