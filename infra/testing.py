"""Record what the Pulumi program declares, in the mock runtime of infra/mock_runtime.py (tests, benchmark).

* :class:`RecordingMocks` keeps every registered resource and invoke, and answers invokes the way
  the AWS provider would (:func:`invoke_answer`: caller identity, partition, region, SSM
  parameters, prebuilt ECR images). A missing SSM parameter is a *failed invoke* (a catchable
  error in the program), exactly like ``ParameterNotFound`` from the real engine.
* :func:`run_program` runs a program (default: ``infra/__main__.py`` via ``runpy``) in a fresh
  runtime: new event loop, new context, config from a ``{"mlrollback:endpoints": "<json>"}`` map.
* :func:`run_stack_file` does the same for an ``environments/Pulumi.<stack>.yaml`` file.

Resources are recorded with their inputs as the engine sees them (camelCase keys, Outputs
resolved, secret wrappers removed), which is what tests assert on.
"""

from __future__ import annotations

import runpy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

from infra.config import pulumi_config_from_stack_file, stack_from_path
from infra.limits import PROJECT
from infra.mock_runtime import run_in_mock_runtime, unsecret

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "eu-west-1"
PROGRAM = Path(__file__).resolve().parent / "__main__.py"

#: Account of SageMaker's prebuilt images per region (subset; others fall back to us-east-1's id).
_PREBUILT_ACCOUNTS = {"us-east-1": "683313688378", "eu-west-1": "141502667606", "us-west-2": "246618743249"}


@dataclass
class Resource:
    """One registered resource: type token, logical name, inputs and the outputs the mock returned."""

    typ: str
    name: str
    inputs: dict[str, Any]
    id: str
    outputs: dict[str, Any]
    custom: bool


@dataclass
class Invoke:
    """One provider invoke and its arguments."""

    token: str
    args: dict[str, Any]


def computed_outputs(
    typ: str, name: str, inputs: Mapping[str, Any], *, region: str, account: str
) -> tuple[str, dict[str, Any]]:
    """Physical id and computed outputs (camelCase) that AWS would assign to a new resource."""
    physical = inputs.get("name") or name
    out: dict[str, Any] = {}
    arn_base = f"arn:aws:{{svc}}:{region}:{account}:"
    if typ == "aws:s3/bucket:Bucket":
        physical = inputs.get("bucket") or f"{name}-0000000"
        out = {"bucket": physical, "arn": f"arn:aws:s3:::{physical}"}
    elif typ == "aws:kms/key:Key":
        physical = f"key-{name}"
        out = {"arn": arn_base.format(svc="kms") + f"key/{physical}", "keyId": physical}
    elif typ == "aws:iam/role:Role":
        out = {"arn": f"arn:aws:iam::{account}:role/{physical}", "name": physical}
    elif typ == "aws:iam/rolePolicy:RolePolicy":
        physical = f"{inputs.get('role', '')}:{name}"
    elif typ == "aws:sagemaker/model:Model":
        out = {"name": physical, "arn": arn_base.format(svc="sagemaker") + f"model/{physical.lower()}"}
    elif typ == "aws:sagemaker/endpointConfiguration:EndpointConfiguration":
        physical = inputs.get("name") or f"{name}-0000000"
        out = {
            "name": physical,
            "arn": arn_base.format(svc="sagemaker") + f"endpoint-config/{physical.lower()}",
        }
    elif typ == "aws:sagemaker/endpoint:Endpoint":
        out = {"name": physical, "arn": arn_base.format(svc="sagemaker") + f"endpoint/{physical.lower()}"}
    elif typ == "aws:sagemaker/modelPackageGroup:ModelPackageGroup":
        physical = inputs.get("modelPackageGroupName") or name
        out = {"arn": arn_base.format(svc="sagemaker") + f"model-package-group/{physical.lower()}"}
    elif typ == "aws:cloudwatch/metricAlarm:MetricAlarm":
        out = {"arn": arn_base.format(svc="cloudwatch") + f"alarm:{physical}"}
    elif typ == "aws:cloudwatch/eventRule:EventRule":
        out = {"arn": arn_base.format(svc="events") + f"rule/{physical}", "name": physical}
    elif typ == "aws:cloudwatch/logGroup:LogGroup":
        out = {"arn": arn_base.format(svc="logs") + f"log-group:{physical}", "name": physical}
    elif typ == "aws:lambda/function:Function":
        out = {"arn": arn_base.format(svc="lambda") + f"function:{physical}", "name": physical}
    elif typ == "aws:sns/topic:Topic":
        physical = arn_base.format(svc="sns") + str(inputs.get("name") or name)
        out = {"arn": physical}
    elif typ == "aws:sqs/queue:Queue":
        physical = f"https://sqs.{region}.amazonaws.com/{account}/{inputs.get('name') or name}"
        out = {"arn": arn_base.format(svc="sqs") + str(inputs.get("name") or name), "url": physical}
    elif typ == "aws:dynamodb/table:Table":
        out = {"arn": arn_base.format(svc="dynamodb") + f"table/{physical}", "name": physical}
    elif typ == "aws:ssm/parameter:Parameter":
        out = {"arn": arn_base.format(svc="ssm") + f"parameter{physical}", "version": 1}
    return str(physical), out


def invoke_answer(
    token: str,
    args: Mapping[str, Any],
    *,
    region: str = DEFAULT_REGION,
    account: str = DEFAULT_ACCOUNT,
    ssm_parameters: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
    """Answer a provider invoke as the AWS provider would; failures as ``[(property, reason)]``."""
    if token == "aws:index/getCallerIdentity:getCallerIdentity":
        arn = f"arn:aws:iam::{account}:user/mlrollback-test"
        return {"accountId": account, "arn": arn, "userId": "AIDATEST", "id": account}, None
    if token == "aws:index/getPartition:getPartition":
        return {
            "partition": "aws",
            "dnsSuffix": "amazonaws.com",
            "reverseDnsPrefix": "com.amazonaws",
            "id": "aws",
        }, None
    if token == "aws:index/getRegion:getRegion":
        r = args.get("region") or args.get("name") or region
        return {"name": r, "region": r, "endpoint": f"ec2.{r}.amazonaws.com", "description": r, "id": r}, None
    if token == "aws:ssm/getParameter:getParameter":
        name = args.get("name", "")
        value = (ssm_parameters or {}).get(name)
        if value is None:
            return {}, [("name", f"reading SSM Parameter ({name}): ParameterNotFound")]
        arn = f"arn:aws:ssm:{region}:{account}:parameter{name}"
        return {
            "name": name,
            "value": value,
            "insecureValue": value,
            "type": "String",
            "arn": arn,
            "version": 1,
            "withDecryption": True,
            "id": name,
        }, None
    if token == "aws:sagemaker/getPrebuiltEcrImage:getPrebuiltEcrImage":
        r = args.get("region") or region
        registry = _PREBUILT_ACCOUNTS.get(r, _PREBUILT_ACCOUNTS["us-east-1"])
        repo, tag = args.get("repositoryName"), args.get("imageTag") or "1"
        path = f"{registry}.dkr.ecr.{r}.amazonaws.com/{repo}:{tag}"
        return {
            "registryPath": path,
            "registryId": registry,
            "repositoryName": repo,
            "imageTag": tag,
            "region": r,
            "dnsSuffix": "amazonaws.com",
            "id": registry,
        }, None
    return {}, [("token", f"no mock answer for invoke {token}")]


class RecordingMocks(pulumi.runtime.Mocks):
    """Mocks that record every resource and invoke and answer like the AWS provider."""

    def __init__(
        self,
        *,
        region: str = DEFAULT_REGION,
        account: str = DEFAULT_ACCOUNT,
        ssm_parameters: Mapping[str, str] | None = None,
    ) -> None:
        self.region = region
        self.account = account
        self.ssm_parameters = dict(ssm_parameters or {})
        self.resources: list[Resource] = []
        self.invokes: list[Invoke] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
        physical, out = computed_outputs(
            args.typ, args.name, args.inputs, region=self.region, account=self.account
        )
        outputs = {**args.inputs, **out}
        self.resources.append(
            Resource(args.typ, args.name, unsecret(dict(args.inputs)), physical, outputs, bool(args.custom))
        )
        return physical, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list[tuple[str, str]] | None]:
        self.invokes.append(Invoke(args.token, dict(args.args)))
        result, failures = invoke_answer(
            args.token,
            args.args,
            region=self.region,
            account=self.account,
            ssm_parameters=self.ssm_parameters,
        )
        # The mock monitor iterates the failures whenever a tuple is returned: never hand it None.
        return result, list(failures or [])


@dataclass
class ProgramRun:
    """What one program run registered, invoked, logged and exported."""

    resources: list[Resource]
    invokes: list[Invoke]
    warnings: list[str]
    exports: dict[str, Any] = field(default_factory=dict)

    def of_type(self, typ: str) -> list[Resource]:
        """Resources whose type token ends with ``typ`` (e.g. ``"sagemaker/endpoint:Endpoint"``)."""
        return [r for r in self.resources if r.typ == typ or r.typ.endswith(typ)]

    def named(self, name: str) -> Resource:
        """The one resource with logical name ``name``."""
        found = [r for r in self.resources if r.name == name]
        if len(found) != 1:
            raise KeyError(
                f"{len(found)} resources named {name!r}; names: {[r.name for r in self.resources]}"
            )
        return found[0]

    @property
    def custom_resources(self) -> list[Resource]:
        """Resources managed by a provider (components excluded)."""
        return [r for r in self.resources if r.custom]


def run_program(
    config: Mapping[str, str],
    *,
    stack: str,
    program: Callable[[], Any] | None = None,
    mocks: RecordingMocks | None = None,
    project: str = PROJECT,
) -> ProgramRun:
    """Run ``program`` (default: ``infra/__main__.py``) in a fresh mock runtime and return what happened.

    Exceptions raised by the program (e.g. ConfigError) propagate after the runtime has drained.
    """
    mocks = mocks if mocks is not None else RecordingMocks(region=config.get("aws:region", DEFAULT_REGION))
    target = program or (lambda: runpy.run_path(str(PROGRAM), run_name="__main__"))
    done = run_in_mock_runtime(target, mocks, stack=stack, config=config, project=project, exports=True)
    return ProgramRun(
        resources=mocks.resources, invokes=mocks.invokes, warnings=done.warnings, exports=done.exports
    )


def run_stack_file(
    path: Path,
    *,
    stack: str | None = None,
    mocks: RecordingMocks | None = None,
    program: Callable[[], Any] | None = None,
) -> ProgramRun:
    """Run the program for an ``environments/Pulumi.<stack>.yaml`` file."""
    path = Path(path)
    config = pulumi_config_from_stack_file(path)
    return run_program(config, stack=stack or stack_from_path(path), mocks=mocks, program=program)
