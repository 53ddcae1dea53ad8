"""Suite-wide settings."""

from __future__ import annotations

import os

from hypothesis import settings

# CI must be reproducible: the same examples on every run (a new edge case found locally becomes a
# test of its own), and no per-example deadline on a loaded 2-core runner.
settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
