"""Limits and constants of the stack config: what SageMaker, the provider and this project accept.

Each limit names where it comes from; :mod:`infra.validation` checks a stack file against them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from rollback.runtime import names

PROJECT: Final = "mlrollback"


STRATEGIES: Final[tuple[str, ...]] = ("canary", "linear", "blue-green", "all-at-once", "shadow", "ab")


#: Strategies whose rollout is a single declared step (nothing for the stepper to advance).
SINGLE_STEP_STRATEGIES: Final[frozenset[str]] = frozenset({"blue-green", "all-at-once", "ab", "shadow"})


METRIC_SOURCES: Final[tuple[str, ...]] = ("custom", "builtin")


#: KPIs and roles of the blue/green auto-rollback (guardrail) alarms: the ones every endpoint always
#: has, so the ForceNew guardrail list never changes with the triggers (``guardrail_alarm_names``).
GUARDRAIL_KPIS: Final[tuple[str, ...]] = ("errors", "latency")


GUARDRAIL_ROLES: Final[tuple[str, ...]] = (names.STABLE, names.CANDIDATE)


DRIFT_ACTIONS: Final[tuple[str, ...]] = ("rollback", "notify")


#: A period of the errors or latency alarm breaches only with at least this many failing (or slow)
#: requests in it: one bad request never rolls a candidate back (docs/config.md, triggers).
MIN_BAD_REQUESTS: Final = 2


#: ``triggers.minSamples`` default: a period with fewer requests than this never breaches.
DEFAULT_MIN_SAMPLES: Final = 10


#: ``framework`` values -> SageMaker prebuilt ECR repository, resolved at deploy time with the
#: provider invoke ``aws.sagemaker.get_prebuilt_ecr_image`` (region-correct account ids for free).
FRAMEWORK_REPOSITORIES: Final[Mapping[str, str]] = {
    "xgboost": "sagemaker-xgboost",
    "sklearn": "sagemaker-scikit-learn",
    "pytorch": "pytorch-inference",
    "tensorflow": "tensorflow-inference",
    "mxnet": "mxnet-inference",
    "huggingface-pytorch": "huggingface-pytorch-inference",
    "huggingface-tensorflow": "huggingface-tensorflow-inference",
}


#: SageMaker's MaximumExecutionTimeoutInSeconds range for blue/green updates (provider-validated).
MAX_EXECUTION_TIMEOUT_RANGE: Final = (600, 14400)


#: The provider's endpoint waiter gives up after 60 minutes and does not treat RollingBack as
#: pending: the whole guardrail (bake waits + termination wait) must finish well inside it.
GUARDRAIL_BUDGET_SECONDS: Final = 45 * 60


#: Old fleet kept this long after a blue/green update completes (quick manual fallback).
TERMINATION_WAIT_SECONDS: Final = 120


#: SageMaker limits: WaitIntervalInSeconds 0-3600; canary <= 50 % of the fleet; linear 10-50 %.
WAIT_INTERVAL_RANGE: Final = (0, 3600)


#: All-at-once is for fast, low-risk changes: the guardrail bake is capped at this.
ALL_AT_ONCE_MAX_WAIT_SECONDS: Final = 60


#: Data capture lands under ``s3://<artifacts bucket>/<this>/<endpoint>/<variant>/yyyy/mm/dd/hh/``.
DATA_CAPTURE_PREFIX: Final = "data-capture"


#: The drift job runs every this many minutes; its alarm period and window bounds follow it.
DRIFT_SCHEDULE_MINUTES: Final = 15


#: Drift windows: at least one schedule interval (no input is skipped between runs), at most a day
#: for the candidate (the job reads every capture object of the window within its 300 s timeout).
DRIFT_WINDOW_RANGE: Final = (DRIFT_SCHEDULE_MINUTES, 24 * 60)


DRIFT_BASELINE_WINDOW_RANGE: Final = (DRIFT_SCHEDULE_MINUTES, 7 * 24 * 60)


#: The job reads at most this many capture records per side (rollback.runtime.drift, .capture).
DRIFT_MAX_SAMPLES: Final = 50_000


#: An Amazon ECR image: SageMaker pulls a model's image from ECR only, unless the model sets VPC image
#: access (ImageConfig RepositoryAccessMode=Vpc + VpcConfig), which this program does not declare.
#: ECR_REPOSITORY_RE matches the registry and repository (the program derives the repository ARN
#: from it); ECR_IMAGE_RE the whole image reference a stack file may give (with a tag or digest).
_ECR_REPOSITORY = (
    r"^(?P<account>\d{12})\.dkr\.ecr(-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?/"
    r"(?P<repo>[a-z0-9][a-z0-9._/-]*)"
)


ECR_REPOSITORY_RE: Final = re.compile(_ECR_REPOSITORY)


ECR_IMAGE_RE: Final = re.compile(
    _ECR_REPOSITORY + r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})$"
)


#: Instance families with local NVMe instance storage although their name has no "d" attribute (EC2's
#: naming marks instance store with "d": m5d, c6id, g4dn, p4d, ...).
_LOCAL_STORAGE_FAMILIES: Final = frozenset(
    {"g5", "g6", "g6e", "gr6", "p5", "p5e", "p5en", "p6-b200", "p6e-gb200", "trn1", "trn1n", "trn2", "dl1"}
)


_FAMILY_RE = re.compile(r"^(?P<series>[a-z]+)(?P<generation>\d+)(?P<attributes>[a-z]*)(-.*)?$")


def has_local_instance_storage(instance_type: str) -> bool:
    """Whether ``ml.<family>.<size>`` is a Nitro instance with local (NVMe) instance storage.

    CreateEndpointConfig fails when KmsKeyId is set and a variant runs on such an instance: its local
    volumes are encrypted by a hardware module on the instance and cannot take a KMS key. EC2 marks
    instance store with a "d" attribute (m5d, c6id, r6id, g4dn, p3dn, p4d, ...); a few families have
    NVMe storage without it (g5, g6, g6e, p5, trn1, ...), listed in ``_LOCAL_STORAGE_FAMILIES``.
    """
    parts = instance_type.split(".")
    if len(parts) != 3:
        return False
    family = parts[1]
    if family in _LOCAL_STORAGE_FAMILIES:
        return True
    m = _FAMILY_RE.match(family)
    return bool(m and "d" in m["attributes"])


#: Logical name of an endpoint's SageMaker execution role: ``<physical endpoint>`` + this, auto-named.
#: Kept (not shortened) because renaming it would replace every deployed role and, through the models'
#: ForceNew ``execution_role_arn``, every model: endpoint names are validated against it instead.
EXECUTION_ROLE_SUFFIX: Final = "-execution-role"


def model_name_part(version: str) -> str:
    """The version key as it appears in SageMaker model names ('.' and '_' are not allowed there)."""
    return re.sub(r"[._]", "-", version)
