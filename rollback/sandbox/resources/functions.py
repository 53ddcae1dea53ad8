"""Appliers of the Lambda side: IAM roles and policies, log groups, functions, permissions,
invoke configs, EventBridge rules and targets.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

from rollback.runtime.errors import SandboxError
from rollback.sandbox.resources.base import Applier, ApplyContext, Outputs, _digest, _tags, pascal


def _iam_role(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    iam = ctx.client("iam")
    role = inputs.get("name") or (prev["id"] if prev else ctx.autoname(name))
    policy = inputs["assumeRolePolicy"]
    policy = policy if isinstance(policy, str) else json.dumps(policy)
    if prev:
        iam.update_assume_role_policy(RoleName=role, PolicyDocument=policy)
        if inputs.get("description"):
            iam.update_role(RoleName=role, Description=inputs["description"])
        arn = iam.get_role(RoleName=role)["Role"]["Arn"]
    else:
        args: dict[str, Any] = {"RoleName": role, "AssumeRolePolicyDocument": policy}
        if inputs.get("description"):
            args["Description"] = inputs["description"]
        if inputs.get("tags"):
            args["Tags"] = _tags(inputs)
        arn = iam.create_role(**args)["Role"]["Arn"]
    return role, {"name": role, "arn": arn, "uniqueId": _digest(arn, 20).upper()}


def _iam_role_policy(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    policy_name = inputs.get("name") or (prev["outputs"]["name"] if prev else ctx.autoname(name, max_len=128))
    document = inputs["policy"] if isinstance(inputs["policy"], str) else json.dumps(inputs["policy"])
    ctx.client("iam").put_role_policy(
        RoleName=inputs["role"], PolicyName=policy_name, PolicyDocument=document
    )
    return f"{inputs['role']}:{policy_name}", {"name": policy_name}


def _log_group(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    logs = ctx.client("logs")
    group = inputs.get("name") or (prev["id"] if prev else ctx.autoname(name))
    if not prev:
        args: dict[str, Any] = {"logGroupName": group}
        if inputs.get("tags"):
            args["tags"] = {k: str(v) for k, v in inputs["tags"].items()}
        logs.create_log_group(**args)
    if inputs.get("retentionInDays"):
        logs.put_retention_policy(logGroupName=group, retentionInDays=int(inputs["retentionInDays"]))
    return group, {"name": group, "arn": ctx.arn("logs", f"log-group:{group}")}


def _archive_zip(code: Any) -> bytes:
    """Zip a Pulumi archive (AssetArchive of FileAsset/StringAsset, or FileArchive of a directory)."""
    import pulumi

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if isinstance(code, pulumi.AssetArchive):
            for path, asset in sorted(code.assets.items()):
                if isinstance(asset, pulumi.FileAsset):
                    zf.write(asset.path, path)
                elif isinstance(asset, pulumi.StringAsset):
                    zf.writestr(path, asset.text)
                else:
                    raise SandboxError(f"Lambda code entry {path!r}: {type(asset).__name__} is not supported")
        elif isinstance(code, pulumi.FileArchive) and Path(code.path).is_dir():
            root = Path(code.path)
            for file in sorted(root.rglob("*")):
                if file.is_file():
                    zf.write(file, file.relative_to(root).as_posix())
        else:
            raise SandboxError(f"Lambda code of type {type(code).__name__} is not supported by the sandbox")
    return buf.getvalue()


def _lambda_function(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    lam = ctx.client("lambda")
    function = inputs.get("name") or (prev["id"] if prev else ctx.autoname(name, max_len=64))
    zipped = _archive_zip(inputs["code"])
    code_digest = hashlib.sha256(zipped).hexdigest()
    config: dict[str, Any] = {
        "Role": inputs["role"],
        "Handler": inputs["handler"],
        "Runtime": inputs["runtime"],
        "Timeout": int(inputs.get("timeout", 3)),
        "MemorySize": int(inputs.get("memorySize", 128)),
        "Environment": {
            "Variables": {
                k: str(v) for k, v in (inputs.get("environment") or {}).get("variables", {}).items()
            }
        },
    }
    if inputs.get("loggingConfig"):
        config["LoggingConfig"] = pascal(inputs["loggingConfig"])
    if prev:
        lam.update_function_configuration(FunctionName=function, **config)
        if prev["outputs"].get("codeSha256") != code_digest:
            lam.update_function_code(FunctionName=function, ZipFile=zipped)
        arn = prev["outputs"]["arn"]
    else:
        args: dict[str, Any] = {"FunctionName": function, "Code": {"ZipFile": zipped}, **config}
        if inputs.get("tags"):
            args["Tags"] = {k: str(v) for k, v in inputs["tags"].items()}
        arn = lam.create_function(**args)["FunctionArn"]
    return function, {
        "name": function,
        "arn": arn,
        "invokeArn": (
            f"arn:aws:apigateway:{ctx.emulator.region}:lambda:path/2015-03-31/functions/{arn}/invocations"
        ),
        "qualifiedArn": f"{arn}:$LATEST",
        "version": "$LATEST",
        "codeSha256": code_digest,
        "code": None,  # the archive object itself is not an output worth keeping in the state file
    }


def _lambda_permission(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    lam = ctx.client("lambda")
    sid = inputs.get("statementId") or (
        prev["outputs"]["statementId"] if prev else ctx.autoname(name, max_len=100)
    )
    if prev:
        with contextlib.suppress(lam.exceptions.ResourceNotFoundException):
            lam.remove_permission(FunctionName=inputs["function"], StatementId=sid)
    args: dict[str, Any] = {
        "FunctionName": inputs["function"],
        "StatementId": sid,
        "Action": inputs["action"],
        "Principal": inputs["principal"],
    }
    if inputs.get("sourceArn"):
        args["SourceArn"] = inputs["sourceArn"]
    if inputs.get("sourceAccount"):
        args["SourceAccount"] = inputs["sourceAccount"]
    lam.add_permission(**args)
    return sid, {"statementId": sid}


def _function_event_invoke_config(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    """Lambda's asynchronous invocation config (retries, max event age, on-failure destination).

    moto stores it; the sandbox bus reads it back to retry a failing function and send the
    on-failure record. moto's put appends instead of replacing (and reads the first), so an update
    deletes the old config first, as the provider's update replaces it whole.
    """
    lam = ctx.client("lambda")
    function = inputs["functionName"]
    args: dict[str, Any] = {"FunctionName": function}
    if inputs.get("qualifier"):
        args["Qualifier"] = inputs["qualifier"]
    for key, api in (
        ("maximumRetryAttempts", "MaximumRetryAttempts"),
        ("maximumEventAgeInSeconds", "MaximumEventAgeInSeconds"),
    ):
        if inputs.get(key) is not None:
            args[api] = int(inputs[key])
    destinations = pascal(inputs.get("destinationConfig") or {})
    for kind, target in destinations.items():
        arn = (target or {}).get("Destination", "")
        if ":sqs:" not in arn:
            raise SandboxError(
                f"resource {name!r}: destinationConfig.{kind[:1].lower() + kind[1:]} {arn!r} is not an SQS "
                "queue; the sandbox only delivers Lambda destinations to SQS"
            )
    if destinations:
        args["DestinationConfig"] = destinations
    with contextlib.suppress(lam.exceptions.ResourceNotFoundException):
        lam.delete_function_event_invoke_config(
            FunctionName=function, **({"Qualifier": args["Qualifier"]} if "Qualifier" in args else {})
        )
    lam.put_function_event_invoke_config(**args)
    physical = f"{function}:{args['Qualifier']}" if "Qualifier" in args else function
    return physical, {"functionName": function}


def _event_rule(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    rule = inputs.get("name") or (prev["id"] if prev else ctx.autoname(name, max_len=64))
    args: dict[str, Any] = {"Name": rule, "State": inputs.get("state", "ENABLED")}
    for key, api in (
        ("eventPattern", "EventPattern"),
        ("scheduleExpression", "ScheduleExpression"),
        ("description", "Description"),
    ):
        if inputs.get(key):
            args[api] = inputs[key]
    if inputs.get("tags") and not prev:
        args["Tags"] = _tags(inputs)
    arn = ctx.client("events").put_rule(**args)["RuleArn"]
    return rule, {"name": rule, "arn": arn}


def _event_target(
    ctx: ApplyContext, name: str, inputs: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str, Outputs]:
    target_id = inputs.get("targetId") or (
        prev["outputs"]["targetId"] if prev else ctx.autoname(name, max_len=64)
    )
    target: dict[str, Any] = {"Id": target_id, "Arn": inputs["arn"]}
    if inputs.get("retryPolicy"):
        target["RetryPolicy"] = pascal(inputs["retryPolicy"])
    if inputs.get("deadLetterConfig"):
        target["DeadLetterConfig"] = pascal(inputs["deadLetterConfig"])
    if inputs.get("input"):
        target["Input"] = inputs["input"]
    ctx.client("events").put_targets(Rule=inputs["rule"], Targets=[target])
    return f"{inputs['rule']}-{target_id}", {"targetId": target_id}


APPLIERS: dict[str, Applier] = {
    "aws:iam/role:Role": _iam_role,
    "aws:iam/rolePolicy:RolePolicy": _iam_role_policy,
    "aws:cloudwatch/logGroup:LogGroup": _log_group,
    "aws:lambda/function:Function": _lambda_function,
    "aws:lambda/permission:Permission": _lambda_permission,
    "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig": _function_event_invoke_config,
    "aws:cloudwatch/eventRule:EventRule": _event_rule,
    "aws:cloudwatch/eventTarget:EventTarget": _event_target,
}
