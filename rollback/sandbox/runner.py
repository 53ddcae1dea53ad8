"""Run the real Pulumi program under the mock runtime and apply every resource to the emulator.

The per-resource appliers live in :mod:`rollback.sandbox.resources`; this module runs the program
(:mod:`infra.mock_runtime`), keeps the state file and answers the provider's invokes.

There is no Pulumi engine or provider plugin on these machines. :func:`apply_program` runs
``infra/__main__.py`` with ``pulumi.runtime.set_mocks`` (fresh event loop, the stack's config),
and :class:`SandboxMocks` turns each registered custom resource into boto3 calls against the
emulator, so every payload is checked against the AWS API model by botocore and moto.

- Create or update: a state file maps ``type::name`` to the physical id and outputs, so a second
  run updates in place instead of duplicating (as ``pulumi up`` would). Types whose attributes all
  force replacement in the provider (SageMaker models and endpoint configurations) get a new
  physical name when their inputs change; the previous one is kept (they are retained on delete).
- Mocks return ``{**inputs, ...computed}`` with camelCase keys, like the engine's outputs.
- Provider invokes are answered from the emulator (``ssm.getParameter`` reads the real SSM, so a
  quarantine record written by the rollback Lambda is seen by the next run).
- A type without an applier stops the run with :class:`~rollback.runtime.errors.SandboxError` naming it;
  nothing after it is applied. Component resources are not applied (they are only grouping).
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

from infra.mock_runtime import run_in_mock_runtime, unsecret
from rollback.runtime.errors import SandboxError
from rollback.sandbox.emulator import ACCOUNT_ID, Emulator
from rollback.sandbox.resources import APPLIERS
from rollback.sandbox.resources.base import ApplyContext


@dataclass
class ApplyResult:
    """What one program run did: resources created / updated / unchanged, and the warnings logged."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    invokes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class SandboxMocks(pulumi.runtime.Mocks):
    """Pulumi mocks that apply each custom resource to the emulator (see module docstring)."""

    def __init__(self, ctx: ApplyContext, state: dict[str, Any], result: ApplyResult) -> None:
        self.ctx = ctx
        self.state = state
        self.result = result
        self.error: BaseException | None = None

    def new_resource(self, args: Any) -> tuple[str | None, dict[str, Any]]:
        if not args.custom or args.typ.startswith("pulumi:providers:"):
            return f"{args.name}-id", dict(args.inputs)
        key = f"{args.typ}::{args.name}"
        if self.error is not None:
            return f"{args.name}-failed", dict(args.inputs)  # stop applying after the first failure
        applier = APPLIERS.get(args.typ)
        try:
            if applier is None:
                raise SandboxError(
                    f"the sandbox has no applier for resource type {args.typ!r} (resource {args.name!r}); "
                    "add one in rollback/sandbox/runner.py or remove the resource from the program"
                )
            prev = self.state.get(key)
            physical_id, computed = applier(self.ctx, args.name, unsecret(dict(args.inputs)), prev)
        except BaseException as exc:  # recorded and re-raised by apply_program after the run
            if not isinstance(exc, SandboxError):
                exc = SandboxError(f"applying {args.typ} {args.name!r} to the sandbox failed: {exc}")
            self.error = exc
            return f"{args.name}-failed", dict(args.inputs)
        computed = {k: v for k, v in computed.items() if v is not None}
        self.state[key] = {"id": physical_id, "outputs": _jsonable(computed)}
        (self.result.updated if prev else self.result.created).append(key)
        self.result.resources[key] = {"id": physical_id, **computed}
        return physical_id, {**args.inputs, "id": physical_id, **computed}

    def call(self, args: Any) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self.result.invokes.append(args.token)
        region = self.ctx.emulator.region
        token = args.token
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT_ID,
                "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/sandbox",
                "userId": "AIDASANDBOX",
                "id": ACCOUNT_ID,
            }, []
        if token == "aws:index/getRegion:getRegion":
            return {
                "name": region,
                "region": region,
                "id": region,
                "endpoint": f"ec2.{region}.amazonaws.com",
                "description": region,
            }, []
        if token == "aws:index/getPartition:getPartition":
            return {
                "partition": "aws",
                "id": "aws",
                "dnsSuffix": "amazonaws.com",
                "reverseDnsPrefix": "com.amazonaws",
            }, []
        if token == "aws:ssm/getParameter:getParameter":
            ssm = self.ctx.client("ssm")
            try:
                p = ssm.get_parameter(
                    Name=args.args["name"], WithDecryption=bool(args.args.get("withDecryption"))
                )
            except ssm.exceptions.ParameterNotFound:
                return {}, [("name", f"couldn't find resource: ParameterNotFound: {args.args['name']}")]
            param = p["Parameter"]
            return {
                "name": param["Name"],
                "value": param["Value"],
                "insecureValue": param["Value"],
                "type": param["Type"],
                "version": param["Version"],
                "arn": param["ARN"],
                "id": param["Name"],
                "withDecryption": bool(args.args.get("withDecryption")),
            }, []
        if token == "aws:sagemaker/getPrebuiltEcrImage:getPrebuiltEcrImage":
            registry = "141502667606" if region == "eu-west-1" else "683313688378"
            repo = args.args["repositoryName"]
            tag = args.args.get("imageTag", "latest")
            return {
                "registryId": registry,
                "registryPath": f"{registry}.dkr.ecr.{region}.amazonaws.com/{repo}:{tag}",
                "repositoryName": repo,
                "imageTag": tag,
                "region": region,
                "id": registry,
            }, []
        self.error = self.error or SandboxError(
            f"the sandbox cannot answer provider function {token!r}; add it to SandboxMocks.call in "
            "rollback/sandbox/runner.py"
        )
        return {}, [("token", f"{token} is not supported by the sandbox")]


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def load_state(path: Path) -> dict[str, Any]:
    """The applier state (``type::name`` -> id/outputs) of a sandbox, empty if none yet."""
    if not path.exists():
        return {}
    try:
        return dict(json.loads(path.read_text()).get("resources", {}))
    except (OSError, ValueError) as exc:
        raise SandboxError(
            f"{path}: sandbox state file is unreadable ({exc}); delete it and run again"
        ) from None


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write the state atomically, so an interrupted run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"resources": state}, indent=1, sort_keys=True))
    os.replace(tmp, path)


def apply_program(
    emulator: Emulator,
    *,
    stack: str,
    config: dict[str, str],
    state_path: Path,
    program_path: Path | None = None,
    program: Callable[[], Any] | None = None,
) -> ApplyResult:
    """Run the Pulumi program for ``stack`` with ``config`` and apply it to ``emulator``.

    ``program_path`` (default: ``infra/__main__.py`` of this project) is run with ``runpy``;
    tests may pass a ``program`` callable instead. The state file is saved even when a resource
    fails, so what was applied is remembered; the failure is raised as :class:`SandboxError`.
    """
    if program is None:
        path = program_path or project_root() / "infra" / "__main__.py"
        if not path.exists():
            raise SandboxError(
                f"{path}: the Pulumi program is missing; the sandbox runs the real infra/ program"
            )
        root = str(path.parent.parent)

        def program() -> None:
            if root not in sys.path:
                sys.path.insert(0, root)
            runpy.run_path(str(path), run_name="__main__")

    state = load_state(state_path)
    result = ApplyResult()
    mocks = SandboxMocks(ApplyContext(emulator, stack), state, result)
    error: BaseException | None = None
    try:
        result.warnings.extend(run_in_mock_runtime(program, mocks, stack=stack, config=config).warnings)
    except Exception as exc:  # the program itself failed (e.g. ConfigError): report it as is
        error = exc
    finally:
        save_state(state_path, state)
    if mocks.error is not None:
        raise mocks.error
    if error is not None:
        raise error
    return result


def project_root() -> Path:
    """The directory holding ``Pulumi.yaml`` above this package (this checkout), else the cwd."""
    from infra.config import find_project_root

    return find_project_root(Path(__file__).resolve().parent) or Path.cwd()
