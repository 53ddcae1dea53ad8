"""Verdicts on a release from evidence: shadow agreement (:mod:`.shadow`), A/B tests (:mod:`.ab`,
the statistics in :mod:`.statistics`). Drift, which runs in Lambda, lives in :mod:`rollback.runtime.drift`.

:mod:`.shadow` uses only the standard library and boto3; :mod:`.ab` and :mod:`.statistics` need
scipy and are for the CLI, never the Lambda path.
"""

from __future__ import annotations
