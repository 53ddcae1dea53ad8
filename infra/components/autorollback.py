"""AutoRollback: the machinery that drains a failing candidate within seconds, per stack.

Alarm ALARM transitions -> EventBridge rule -> rollback Lambda (retries + SQS dead-letter queue),
a scheduled stepper Lambda for progressive rollouts, an encrypted SNS topic, and the DynamoDB
audit table. IAM lists actions explicitly and scopes resources to this stack's ARNs.

Two retry layers, one queue: EventBridge invokes the rollback Lambda asynchronously, so the
target's retry policy and dead-letter config only cover *delivery* (throttling, a missing
permission). Once Lambda has accepted the event, an error the function raises follows the
function's asynchronous invocation config (:data:`ROLLBACK_RETRY_ATTEMPTS` retries, then the
on-failure destination). Both end in the same dead-letter queue, so a lost drain is never silent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.endpoint import AwsScope
from infra.components.iam import assume_role_policy, policy_document, statement
from infra.lambda_archive import lambda_code
from infra.runtime_records import lambda_environment
from rollback.runtime import names

LAMBDA_RUNTIME = "python3.12"
ROLLBACK_HANDLER = "rollback.runtime.handler.on_alarm"
#: The service principal CloudWatch alarms invoke Lambda actions as.
ALARM_ACTION_PRINCIPAL = "lambda.alarms.cloudwatch.amazonaws.com"
STEPPER_HANDLER = "rollback.runtime.handler.on_schedule"
LOG_RETENTION_DAYS = 90
#: Lambda's own retries of a failing asynchronous invocation (its maximum), 1 then 2 minutes apart.
ROLLBACK_RETRY_ATTEMPTS = 2
#: How long a failing alarm event may keep being retried by Lambda before it goes to the DLQ.
ROLLBACK_MAX_EVENT_AGE_SECONDS = 3600
#: Lambda refuses a MaximumEventAgeInSeconds below this.
LAMBDA_MIN_EVENT_AGE_SECONDS = 60


@dataclass(frozen=True)
class AutoRollbackArgs:
    """Inputs of :class:`AutoRollback`.

    ``rule_alarms`` are the alarms whose ALARM transition is sent to the rollback Lambda;
    ``watched_alarms`` every alarm the Lambdas may describe (their roles grant the name patterns of
    these, see :func:`stack_resource_patterns`).
    """

    stack: str
    scope: AwsScope
    rule_alarms: Sequence[str]
    watched_alarms: Sequence[str]
    emails: Sequence[str] = ()
    production: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)


#: EventBridge's default quota for one rule's event pattern, in characters (adjustable to 4096).
EVENT_PATTERN_LIMIT = 2048
#: IAM's quota for all inline policies of one role together, counted without whitespace.
INLINE_POLICY_LIMIT = 10_240

#: Endpoints the rollback and stepper roles name one by one (about 95 policy characters each);
#: a larger stack gets the ``endpoint/*-<stack>`` pattern so the policy stays under the quota.
MAX_LISTED_ENDPOINTS = 40


def stack_resource_patterns(
    scope: AwsScope, stack: str, watched_alarms: Sequence[str]
) -> tuple[list[str], list[str], list[str]]:
    """ARNs (endpoints, endpoint configs, alarms) of this stack's names, whatever its size.

    Listing every endpoint and alarm ARN passed IAM's 10,240-character inline-policy quota at about
    ten endpoints; one pattern per name *shape* keeps the policy size independent of the endpoint
    count. Endpoints themselves (the weights update) are listed by ARN up to
    :data:`MAX_LISTED_ENDPOINTS`. Every physical name of the stack ends with ``-<stack>``
    (``names.endpoint_name``), configs are auto-named ``<endpoint>-config-<random>`` and alarms
    ``<endpoint>-<role>-<kpi>`` (``names.alarm_name``); the alarm patterns name each (role, KPI)
    the stack watches. Another stack whose name ends with ``-<stack>`` in the same account and
    region would match the patterns too, but its physical names could already clash with this
    one's (``a-b`` + ``dev`` = ``a`` + ``b-dev``): such stacks must not share an account and region
    (docs/config.md).
    """
    configs = [scope.arn("sagemaker", f"endpoint-config/*-{stack}-config-*")]
    shapes: set[tuple[str, str]] = set()
    physical: set[str] = set()
    for alarm in watched_alarms:
        parsed = names.parse_alarm_name(alarm)
        if parsed is None or not parsed[0].endswith(f"-{stack}"):
            raise ValueError(f"alarm {alarm!r} is not named by names.alarm_name for stack {stack!r}")
        physical.add(parsed[0])
        shapes.add((parsed[1], parsed[2]))
    # The weights update is the one write here: name each endpoint while the list stays short
    # (SageMaker ARNs carry the name in lower case), so an endpoint outside the stack that merely
    # ends in "-<stack>" (a hand-made "recommender-prod") cannot be reweighted.
    endpoints = (
        [scope.arn("sagemaker", f"endpoint/{name.lower()}") for name in sorted(physical)]
        if len(physical) <= MAX_LISTED_ENDPOINTS
        else [scope.arn("sagemaker", f"endpoint/*-{stack}")]
    )
    alarms = [
        scope.arn("cloudwatch", f"alarm:{names.alarm_name(f'*-{stack}', r, k)}") for r, k in sorted(shapes)
    ]
    return endpoints, configs, alarms


def alarm_event_pattern(alarms: Sequence[str]) -> dict[str, Any]:
    """EventBridge pattern: ALARM transitions of exactly these alarms."""
    return {
        "source": ["aws.cloudwatch"],
        "detail-type": ["CloudWatch Alarm State Change"],
        "detail": {"alarmName": sorted(alarms), "state": {"value": ["ALARM"]}},
    }


def alarm_event_patterns(alarms: Sequence[str], limit: int = EVENT_PATTERN_LIMIT) -> list[str]:
    """The alarm patterns (as the JSON the rules carry) split so that each fits in ``limit`` characters.

    One pattern listing every alarm of a large stack would be refused by EventBridge; alarms are
    added in name order, so adding an endpoint only moves the alarms after it.
    """
    patterns: list[str] = []
    chunk: list[str] = []
    for alarm in sorted(alarms):
        candidate = json.dumps(alarm_event_pattern([*chunk, alarm]), sort_keys=True)
        if len(candidate) > limit:
            if not chunk:
                raise ValueError(f"alarm name {alarm!r} alone does not fit in an event pattern of {limit}")
            patterns.append(json.dumps(alarm_event_pattern(chunk), sort_keys=True))
            chunk = []
        chunk.append(alarm)
    if chunk or not patterns:
        patterns.append(json.dumps(alarm_event_pattern(chunk), sort_keys=True))
    return patterns


def invoke_on_schedule(
    name: str,
    *,
    rule_name: str,
    description: str,
    expression: str,
    function: aws.lambda_.Function,
    max_event_age_seconds: int,
    tags: Mapping[str, str],
    opts: pulumi.ResourceOptions,
) -> aws.cloudwatch.EventRule:
    """An EventBridge schedule rule that invokes ``function``, and the permission scoped to that rule.

    No retries at either layer: a scheduled job's next run covers what a missed run would have done,
    and a late retry could act on a stale view (e.g. a stepper tick advancing weights minutes late,
    next to the tick that replaced it).
    """
    rule = aws.cloudwatch.EventRule(
        f"{name}-rule",
        name=rule_name,
        description=description,
        schedule_expression=expression,
        tags=dict(tags),
        opts=opts,
    )
    aws.cloudwatch.EventTarget(
        f"{name}-target",
        rule=rule.name,
        arn=function.arn,
        retry_policy={"maximum_retry_attempts": 0, "maximum_event_age_in_seconds": max_event_age_seconds},
        opts=opts,
    )
    aws.lambda_.Permission(
        f"{name}-permission",
        action="lambda:InvokeFunction",
        function=function.name,
        principal="events.amazonaws.com",
        source_arn=rule.arn,
        opts=opts,
    )
    # The target's retry policy above only covers delivery; a tick the function *fails* would be
    # retried by Lambda itself (2 times by default, up to 6 hours late). A failed tick is replaced
    # by the next one, so Lambda must drop it: no retry, and no destination (nothing to replay).
    aws.lambda_.FunctionEventInvokeConfig(
        f"{name}-invoke-config",
        function_name=function.name,
        maximum_retry_attempts=0,
        maximum_event_age_in_seconds=max(LAMBDA_MIN_EVENT_AGE_SECONDS, max_event_age_seconds),
        opts=opts,
    )
    return rule


def _topic_key_policy(scope: AwsScope) -> str:
    """Key policy of the topic's key: this account through IAM, and CloudWatch alarms publishing."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    # The AWS default key-policy statement: delegates key use to IAM policies of
                    # this account; without it the key becomes unmanageable.
                    "Sid": "AccountAdministersKeyThroughIam",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:{scope.partition}:iam::{scope.account}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    "Sid": "CloudWatchAlarmsPublish",
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudwatch.amazonaws.com"},
                    "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                    "Resource": "*",
                },
            ],
        }
    )


@dataclass
class _Shared:
    """What both functions' roles and environments refer to: key, topic, audit table, DLQ, code."""

    key: aws.kms.Key
    topic: aws.sns.Topic
    table: aws.dynamodb.Table
    dlq: aws.sqs.Queue
    env: dict[str, Any]
    code: pulumi.AssetArchive
    patterns: tuple[list[str], list[str], list[str]]


class AutoRollback(pulumi.ComponentResource):
    """Rollback + stepper Lambdas, their triggers, audit table, topic and least-privilege roles."""

    topic_arn: pulumi.Output[str]
    table_name: pulumi.Output[str]
    rollback_function_name: pulumi.Output[str]
    stepper_function_name: pulumi.Output[str]
    environment: dict[str, Any]

    def __init__(self, name: str, args: AutoRollbackArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlrollback:autorollback:AutoRollback", name, None, opts)
        self._name, self._args = name, args
        self._child = pulumi.ResourceOptions(parent=self)
        self._tags = dict(args.tags)
        shared = self._shared()
        rollback_fn = self._rollback_function(shared)
        stepper_fn = self._stepper_function(shared)
        self._alarm_rules(rollback_fn, shared.dlq)
        self._alarm_actions(rollback_fn)
        invoke_on_schedule(
            f"{name}-schedule",
            rule_name=names.schedule_rule_name(args.stack),
            description=f"Advance progressive rollouts of mlrollback {args.stack}",
            expression="rate(1 minute)",
            function=stepper_fn,
            # A missed tick is replaced by the next one a minute later: no long retries.
            max_event_age_seconds=60,
            tags=self._tags,
            opts=self._child,
        )
        self.topic_arn = shared.topic.arn
        self.table_name = shared.table.name
        self.rollback_function_name = rollback_fn.name
        #: The rollback alarms' own Lambda action (beside the EventBridge rule).
        self.rollback_function_arn = rollback_fn.arn
        self.stepper_function_name = stepper_fn.name
        #: The contract environment, for other functions of the stack (the drift job).
        self.environment = shared.env
        self.register_outputs(
            {
                "topicArn": self.topic_arn,
                "auditTableName": self.table_name,
                "rollbackFunctionName": self.rollback_function_name,
                "stepperFunctionName": self.stepper_function_name,
            }
        )

    def _shared(self) -> _Shared:
        name, stack, tags, child = self._name, self._args.stack, self._tags, self._child
        # One customer-managed key for the topic: CloudWatch alarms (notify-only drift alarms)
        # can only publish to an encrypted topic whose key policy lets cloudwatch use the key.
        key = aws.kms.Key(
            f"{name}-key",
            description=f"mlrollback {stack}: rollback notifications",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=_topic_key_policy(self._args.scope),
            tags=tags,
            opts=child,
        )
        topic = aws.sns.Topic(
            f"{name}-topic", name=names.topic_name(stack), kms_master_key_id=key.arn, tags=tags, opts=child
        )
        for i, email in enumerate(self._args.emails):
            aws.sns.TopicSubscription(
                f"{name}-email-{i}", topic=topic.arn, protocol="email", endpoint=email, opts=child
            )
        table = aws.dynamodb.Table(
            f"{name}-audit",
            name=names.audit_table_name(stack),
            billing_mode="PAY_PER_REQUEST",
            hash_key="endpoint",
            range_key="at",
            attributes=[{"name": "endpoint", "type": "S"}, {"name": "at", "type": "S"}],
            point_in_time_recovery={"enabled": True},
            server_side_encryption={"enabled": True, "kms_key_arn": key.arn},
            # The audit trail must outlive a mistaken `pulumi destroy` on production.
            deletion_protection_enabled=self._args.production,
            tags=tags,
            opts=child,
        )
        dlq = aws.sqs.Queue(
            f"{name}-dlq",
            name=names.dead_letter_queue_name(stack),
            sqs_managed_sse_enabled=True,
            message_retention_seconds=14 * 24 * 3600,  # the maximum: time to replay by hand
            tags=tags,
            opts=child,
        )
        return _Shared(
            key=key,
            topic=topic,
            table=table,
            dlq=dlq,
            env=lambda_environment(stack, table.name, topic.arn),
            code=lambda_code(),
            patterns=stack_resource_patterns(self._args.scope, stack, self._args.watched_alarms),
        )

    def _ssm(self, prefix: str, *, path: bool = False) -> str:
        """ARN of the SSM parameters under ``prefix`` (``path``: the path itself, for GetParametersByPath)."""
        return self._args.scope.arn("ssm", f"parameter{prefix}" + ("" if path else "/*"))

    @staticmethod
    def _common_statements(shared: _Shared, log_group: aws.cloudwatch.LogGroup) -> list[dict[str, Any]]:
        endpoint_arns, config_arns, alarm_arns = shared.patterns
        return [
            statement(
                "Endpoints",
                ["sagemaker:DescribeEndpoint", "sagemaker:UpdateEndpointWeightsAndCapacities"],
                endpoint_arns,
            ),
            statement("EndpointConfigs", ["sagemaker:DescribeEndpointConfig"], config_arns),
            statement("Alarms", ["cloudwatch:DescribeAlarms"], alarm_arns),
            # GetMetricData has no resource-level permissions in IAM: "*" is the only form.
            statement("Metrics", ["cloudwatch:GetMetricData"], ["*"]),
            statement(
                "Audit",
                [
                    # GetItem: a later delivery reads the idempotency guard to finish what an
                    # earlier one left pending.
                    "dynamodb:GetItem",
                    # BatchGetItem: the stepper reads its candidates' drain markers per tick.
                    "dynamodb:BatchGetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:ConditionCheckItem",
                    "dynamodb:Query",
                ],
                [shared.table.arn],
            ),
            statement("Notify", ["sns:Publish"], [shared.topic.arn]),
            statement("Key", ["kms:Decrypt", "kms:GenerateDataKey"], [shared.key.arn]),
            statement(
                "Logs",
                ["logs:CreateLogStream", "logs:PutLogEvents"],
                [pulumi.Output.concat(log_group.arn, ":*")],
            ),
        ]

    def _function(
        self,
        shared: _Shared,
        kind: str,
        function_name: str,
        handler: str,
        timeout: int,
        extra: list[dict[str, Any]],
    ) -> aws.lambda_.Function:
        """A function of the stack with its log group and a role of its own (common + ``extra``)."""
        name, stack, tags, child = self._name, self._args.stack, self._tags, self._child
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-{kind}-logs",
            name=f"/aws/lambda/{function_name}",
            retention_in_days=LOG_RETENTION_DAYS,
            tags=tags,
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-{kind}-role",
            assume_role_policy=assume_role_policy("lambda.amazonaws.com"),
            description=f"mlrollback {stack}: {kind} Lambda",
            tags=tags,
            opts=child,
        )
        policy = aws.iam.RolePolicy(
            f"{name}-{kind}-policy",
            role=role.id,
            policy=policy_document([*self._common_statements(shared, log_group), *extra]),
            opts=child,
        )
        return aws.lambda_.Function(
            f"{name}-{kind}",
            name=function_name,
            role=role.arn,
            runtime=LAMBDA_RUNTIME,
            handler=handler,
            code=shared.code,
            timeout=timeout,
            memory_size=256,
            environment={"variables": shared.env},
            logging_config={"log_format": "JSON", "log_group": log_group.name},
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy, log_group]),
        )

    def _rollback_function(self, shared: _Shared) -> aws.lambda_.Function:
        stack = self._args.stack
        fn = self._function(
            shared,
            "rollback",
            names.rollback_function_name(stack),
            ROLLBACK_HANDLER,
            60,
            [
                statement(
                    "Quarantine",
                    ["ssm:GetParameter", "ssm:PutParameter"],
                    [self._ssm(names.quarantine_prefix(stack))],
                ),
                statement("RolloutPlan", ["ssm:GetParameter"], [self._ssm(names.rollout_prefix(stack))]),
                # Lambda sends the on-failure record of an event the function kept failing with the
                # function's own execution role (SSE-SQS queue: no KMS grant needed).
                statement("DeadLetters", ["sqs:SendMessage"], [shared.dlq.arn]),
            ],
        )
        # A drain the function raised on (RetryExhaustedError, FollowUpError, a timeout) is retried
        # by Lambda, not EventBridge, and without a destination discarded after the last retry.
        # Created after the role policy (the function depends on it): Lambda checks that the role
        # may send to the destination when the config is put.
        aws.lambda_.FunctionEventInvokeConfig(
            f"{self._name}-rollback-invoke-config",
            function_name=fn.name,
            maximum_retry_attempts=ROLLBACK_RETRY_ATTEMPTS,
            maximum_event_age_in_seconds=ROLLBACK_MAX_EVENT_AGE_SECONDS,
            destination_config={"on_failure": {"destination": shared.dlq.arn}},
            opts=self._child,
        )
        return fn

    def _stepper_function(self, shared: _Shared) -> aws.lambda_.Function:
        stack = self._args.stack
        quarantine, rollout = names.quarantine_prefix(stack), names.rollout_prefix(stack)
        return self._function(
            shared,
            "stepper",
            names.stepper_function_name(stack),
            STEPPER_HANDLER,
            120,
            [
                # The stepper reads every quarantine in one call, and its safety-net drain (a
                # candidate alarm in ALARM whose event was lost) writes the quarantine record.
                statement("QuarantinePath", ["ssm:GetParametersByPath"], [self._ssm(quarantine, path=True)]),
                statement("Quarantine", ["ssm:GetParameter", "ssm:PutParameter"], [self._ssm(quarantine)]),
                statement(
                    "Rollout",
                    ["ssm:GetParameter", "ssm:GetParametersByPath", "ssm:PutParameter"],
                    [self._ssm(rollout, path=True), self._ssm(rollout)],
                ),
            ],
        )

    def _alarm_actions(self, rollback_fn: aws.lambda_.Function) -> None:
        """Let this stack's alarms invoke the rollback function directly (their alarm action).

        A second path beside the EventBridge rule, from the same state change: CloudWatch invokes
        the function asynchronously itself ("Invoke a Lambda function from an alarm", CloudWatch user
        guide), retried until Lambda accepts it. Both deliveries carry the same alarm and state
        timestamp, so the drain's idempotency key makes the second one a duplicate (2 calls). Scoped
        to this account's alarms named for this stack (``<endpoint>-<stack>-<role>-<kpi>``).
        """
        scope, stack = self._args.scope, self._args.stack
        aws.lambda_.Permission(
            f"{self._name}-alarm-action-permission",
            action="lambda:InvokeFunction",
            function=rollback_fn.name,
            principal=ALARM_ACTION_PRINCIPAL,
            source_account=scope.account,
            # names.alarm_name: <endpoint-physical>-<role>-<kpi>, the physical name ends in -<stack>.
            source_arn=scope.arn("cloudwatch", f"alarm:*-{stack}-*"),
            opts=self._child,
        )

    def _alarm_rules(self, rollback_fn: aws.lambda_.Function, dlq: aws.sqs.Queue) -> None:
        """One EventBridge rule per event pattern of the alarms, each to the rollback function and the DLQ."""
        name, stack, child = self._name, self._args.stack, self._child
        rule_arns: list[pulumi.Output[str]] = []
        for part, pattern in enumerate(alarm_event_patterns(self._args.rule_alarms), start=1):
            suffix = "" if part == 1 else f"-{part}"
            rule = aws.cloudwatch.EventRule(
                f"{name}-alarm-rule{suffix}",
                name=names.alarm_rule_name(stack, part),
                description=f"ALARM transitions of mlrollback {stack} alarms -> rollback Lambda",
                event_pattern=pattern,
                tags=self._tags,
                opts=child,
            )
            aws.cloudwatch.EventTarget(
                f"{name}-alarm-target{suffix}",
                rule=rule.name,
                arn=rollback_fn.arn,
                # Delivery to Lambda must not be lost: retry for up to an hour, then keep the event in
                # the DLQ. (Errors the function raises are retried by Lambda: see the invoke config.)
                retry_policy={"maximum_retry_attempts": 20, "maximum_event_age_in_seconds": 3600},
                dead_letter_config={"arn": dlq.arn},
                opts=child,
            )
            aws.lambda_.Permission(
                f"{name}-alarm-permission{suffix}",
                action="lambda:InvokeFunction",
                function=rollback_fn.name,
                principal="events.amazonaws.com",
                source_arn=rule.arn,
                opts=child,
            )
            rule_arns.append(rule.arn)
        aws.sqs.QueuePolicy(
            f"{name}-dlq-policy",
            queue_url=dlq.url,
            policy=policy_document(
                [
                    {
                        "Sid": "AlarmRuleDeadLetters",
                        "Effect": "Allow",
                        "Principal": {"Service": "events.amazonaws.com"},
                        "Action": "sqs:SendMessage",
                        "Resource": dlq.arn,
                        "Condition": {
                            "ArnEquals": {"aws:SourceArn": rule_arns[0] if len(rule_arns) == 1 else rule_arns}
                        },
                    }
                ]
            ),
            opts=child,
        )
