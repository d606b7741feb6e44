"""Template checks over the samtranslator output of template.yaml, plus cfn-lint.

Least privilege (no action or resource wildcard beyond the listed exceptions, no Scan, and
each function's policy covers the AWS calls its code really makes), encryption at rest,
private TLS-only buckets, a TLS policy only where CloudFront applies it, alarm topics CloudWatch
can publish to, API throttling, the JWT authorizer on every route but the public
ones, and no trace of the local-only no-auth setting. checkov is not run: installing it
downgrades boto3/botocore to 1.35 (see requirements-dev.txt).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from devstack.resources import TEMPLATE_PATH, LocalResources, template_resolver
from tests.helpers import (
    CounterStream,
    FakeLambdaContext,
    Pipeline,
    load_function,
    sqs_event,
    sqs_record,
)
from tests.security.support import BOB, World, api, moto_world, recorded_aws_calls

Template = dict[str, Any]

# Resource "*" is allowed only for actions that have no resource-level permissions.
STAR_RESOURCE_ACTIONS = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "xray:GetSamplingStatisticSummaries",
    "cloudwatch:PutMetricData",
    "ses:GetAccount",
}
PUSH_API_ARN = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}"
# Resources with a wildcard inside an ARN, each for a reason.
PARTIAL_WILDCARDS = {
    "${TasksTable.Arn}/index/*": "the table's own indexes",
    "${DataBucket.Arn}/*": "objects of the data bucket (presigning, task inputs and results)",
    "${DataBucket.Arn}/results/*": "the worker deletes only task results (intermediate partials)",
    "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/*": "SES checks "
    "the sender's and, in the sandbox, each recipient's identity",
    f"{PUSH_API_ARN}/${{WebSocketStage}}/POST/@connections/*": "PostToConnection on the push "
    "API's stage: connection ids are known only at run time",
}
# Managed policies SAM attaches, with what they grant (from the AWS managed policy reference).
MANAGED_POLICIES: dict[str, list[dict[str, Any]]] = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": [
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": "*",
        }
    ],
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess": [
        {
            "Effect": "Allow",
            "Action": sorted(STAR_RESOURCE_ACTIONS - {"cloudwatch:PutMetricData"}),
            "Resource": ["*"],
        }
    ],
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole": [
        {
            "Effect": "Allow",
            "Action": [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
            ],
            "Resource": "*",
        }
    ],
}
PUBLIC_ROUTES = {("/health", "get"), ("/openapi.json", "get"), ("/docs", "get")}
HTTP_METHODS = {
    "get",
    "put",
    "post",
    "delete",
    "patch",
    "head",
    "options",
    "x-amazon-apigateway-any-method",
}


# ------------------------------------------------------------------ template helpers


def resources_of(template: Template, resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def render(value: Any) -> str:
    """An intrinsic as readable text: {"Fn::Sub": "x"} -> "x", GetAtt -> "${A.B}", Ref -> "${A}"."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((key, inner),) = value.items()
        if key == "Fn::Sub":
            return inner if isinstance(inner, str) else inner[0]
        if key == "Fn::GetAtt":
            return "${" + ".".join(as_list(inner)) + "}"
        if key == "Ref":
            return "${" + inner + "}"
    return json.dumps(value, sort_keys=True)


def role_statements(template: Template) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(role, source, statement) for every inline statement of every role and policy."""
    for name, role in resources_of(template, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in as_list(policy["PolicyDocument"]["Statement"]):
                yield name, policy["PolicyName"], statement
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for name, policy in resources_of(template, kind).items():
            for statement in as_list(policy["Properties"]["PolicyDocument"]["Statement"]):
                yield name, name, statement


def managed_statements(template: Template) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for name, role in resources_of(template, "AWS::IAM::Role").items():
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            for statement in MANAGED_POLICIES.get(render(arn), []):
                yield name, render(arn), statement


def allowed_actions(template: Template, role: str) -> list[str]:
    actions: list[str] = []
    for name, _, statement in [*role_statements(template), *managed_statements(template)]:
        if name == role and statement.get("Effect") == "Allow":
            actions += as_list(statement.get("Action", []))
    return actions


def wildcard_action(action: str) -> bool:
    return action == "*" or action.endswith(":*")


# ------------------------------------------------------------------ IAM


def test_every_role_attaches_only_known_managed_policies(transformed_template: Template) -> None:
    for name, role in resources_of(transformed_template, "AWS::IAM::Role").items():
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            assert render(arn) in MANAGED_POLICIES, f"{name} attaches {render(arn)}"


def test_no_inline_policy_allows_an_action_wildcard(transformed_template: Template) -> None:
    offenders = [
        (role, source, action)
        for role, source, statement in role_statements(transformed_template)
        if statement.get("Effect") == "Allow"
        for action in as_list(statement.get("Action", []))
        if wildcard_action(action)
    ]
    assert offenders == []


def test_no_allow_statement_uses_not_action_or_not_resource(
    transformed_template: Template,
) -> None:
    offenders = [
        (role, source)
        for role, source, statement in role_statements(transformed_template)
        if statement.get("Effect") == "Allow" and ({"NotAction", "NotResource"} & set(statement))
    ]
    assert offenders == []


def test_inline_resource_wildcards_are_only_the_listed_ones(
    transformed_template: Template,
) -> None:
    offenders = []
    for role, source, statement in role_statements(transformed_template):
        if statement.get("Effect") != "Allow":
            continue
        actions = set(as_list(statement.get("Action", [])))
        for resource in as_list(statement.get("Resource", [])):
            text = render(resource)
            if text == "*" and actions <= STAR_RESOURCE_ACTIONS:
                continue
            if "*" in text and text not in PARTIAL_WILDCARDS:
                offenders.append((role, source, text, sorted(actions)))
    assert offenders == []


def test_managed_policies_grant_resource_wildcards_only_where_unavoidable(
    transformed_template: Template,
) -> None:
    offenders = {
        (role, arn, action)
        for role, arn, statement in managed_statements(transformed_template)
        if "*" in as_list(statement["Resource"])
        for action in as_list(statement["Action"])
        if action not in STAR_RESOURCE_ACTIONS
    }
    assert offenders == set()


def test_no_policy_allows_dynamodb_scan(transformed_template: Template) -> None:
    """DESIGN.md: no Scan anywhere; not even granted, so a stray Scan fails on AWS too."""
    statements = [*role_statements(transformed_template), *managed_statements(transformed_template)]
    offenders = [
        (role, source, action)
        for role, source, statement in statements
        if statement.get("Effect") == "Allow"
        for action in as_list(statement.get("Action", []))
        if fnmatch.fnmatchcase("dynamodb:Scan", action)
    ]
    assert offenders == []


def test_only_the_worker_may_send_email(transformed_template: Template) -> None:
    senders = {
        role
        for role, _, statement in role_statements(transformed_template)
        for action in as_list(statement.get("Action", []))
        if action.startswith("ses:")
    }
    assert senders == {"WorkerFunctionRole"}


# ------------------------------------------------------------------ policies cover the code


# Each DynamoDB transaction item is authorised by the action of its own kind.
TRANSACTION_ITEM_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}


def iam_actions(service: str, operation: str, params: dict[str, Any]) -> list[str]:
    prefix = {"sesv2": "ses", "dynamodbstreams": "dynamodb"}.get(service, service)
    if (service, operation) == ("dynamodb", "TransactWriteItems"):
        return [TRANSACTION_ITEM_ACTIONS[kind] for item in params["TransactItems"] for kind in item]
    if (service, operation) == ("s3", "CompleteMultipartUpload"):
        return ["s3:PutObject"]
    if (service, operation) in {("s3", "CreateMultipartUpload"), ("s3", "UploadPart")}:
        return ["s3:PutObject"]
    if (service, operation) == ("s3", "HeadObject"):
        return ["s3:GetObject"]
    if (service, operation) == ("s3", "ListObjectsV2"):
        return ["s3:ListBucket"]
    if (service, operation) == ("s3", "ListParts"):
        return ["s3:ListMultipartUploadParts"]
    if (service, operation) in {("sqs", "SendMessageBatch"), ("sqs", "DeleteMessageBatch")}:
        return [f"sqs:{operation.removesuffix('Batch')}"]  # IAM authorizes batches per message
    return [f"{prefix}:{operation}"]


def missing_permissions(
    template: Template, role: str, calls: list[tuple[str, str, dict[str, Any]]]
) -> dict[str, str]:
    granted = allowed_actions(template, role)
    missing = {}
    for service, operation, params in calls:
        for action in iam_actions(service, operation, params):
            if not any(fnmatch.fnmatchcase(action, pattern) for pattern in granted):
                missing[action] = f"{service}.{operation}"
    return missing


EMAIL: dict[str, Any] = {
    "type": "EMAIL",
    "params": {"recipient_count": 2, "subject": "Hi", "body": "Hello"},
}


@pytest.fixture(scope="module")
def world(transformed_template: Template) -> Iterator[World]:
    with moto_world(transformed_template) as built:
        yield built


@pytest.fixture(scope="module")
def exercised(world: World) -> dict[str, list[Any]]:
    """Every route, the worker and the DLQ handler run once; their AWS calls by function."""
    return exercise(world)


def exercise(world: World) -> dict[str, list[Any]]:
    calls: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    sqs = world.sqs
    queues = world.task_queues
    boto3.client("sesv2", region_name="us-east-1").create_email_identity(
        EmailIdentity="example.com"
    )
    function_env = world.as_function

    function_env("ApiFunction")
    with recorded_aws_calls() as api_calls:
        # Enough rows for several 64 KiB chunks: a partial is deleted from the third chunk on.
        data = api(
            "POST",
            "/tasks",
            body={"type": "DATA_PROCESSING", "params": {"rows": 6000, "chunk_bytes": 65536}},
        )
        image = api(
            "POST", "/tasks", body={"type": "IMAGE_PROCESSING", "params": {"generate_count": 1}}
        )
        email = api("POST", "/tasks", body=EMAIL, headers={"idempotency-key": "k1"})
        api("POST", "/tasks", body=EMAIL, headers={"idempotency-key": "k1"})
    calls["ApiFunction"] = list(api_calls)

    function_env("WorkerFunction")
    with recorded_aws_calls() as worker_calls:
        Pipeline(sqs, queues).run()
    calls["WorkerFunction"] = list(worker_calls)

    function_env("ApiFunction")
    with recorded_aws_calls() as api_calls:
        dead = api("POST", "/tasks", body={**EMAIL, "priority": "high"})
    calls["ApiFunction"] += api_calls

    function_env("DlqFunction")
    with recorded_aws_calls() as dlq_calls:
        load_function("dlq").lambda_handler(
            sqs_event([sqs_record(json.dumps({"task_id": dead.body["id"]}), receive_count=5)]),
            FakeLambdaContext(),
        )
    calls["DlqFunction"] = list(dlq_calls)

    function_env("ApiFunction")
    with recorded_aws_calls() as api_calls:
        for task in (data, image, email, dead):
            api("GET", f"/tasks/{task.body['id']}")
        api("GET", "/tasks", query={"limit": "1"})
        api("GET", "/tasks", query={"status": "SUCCESS", "type": "EMAIL"})
        pending = api("POST", "/tasks", body=EMAIL).body["id"]
        api("DELETE", f"/tasks/{pending}")
        api("POST", f"/tasks/{pending}/retry", body={"restart": True})
        api("GET", "/stats")
        api("GET", "/task-types")
        api("POST", "/uploads", body={"filename": "a.csv", "content_type": "text/csv", "size": 9})
        api("GET", "/health", sub=None)
        assert len(api("GET", "/dead-letters").body["items"]) == 1
        assert api("POST", "/dead-letters/redrive").body == {"redriven": 1, "skipped": 0}
        api("GET", "/dead-letters", sub=BOB)
    calls["ApiFunction"] += api_calls

    # The stream reads stand for the event source mapping's, made with the same role.
    env = function_env("CountersFunction")
    stream = CounterStream.of(env["TABLE_NAME"])
    with recorded_aws_calls() as counter_calls:
        assert stream.drain() > 0
    calls["CountersFunction"] = list(counter_calls)
    return calls


def test_api_policy_covers_every_call_the_api_makes(
    transformed_template: Template, exercised: dict[str, list[Any]]
) -> None:
    missing = missing_permissions(transformed_template, "ApiFunctionRole", exercised["ApiFunction"])
    assert missing == {}, f"ApiFunction calls these without permission on AWS: {missing}"


def test_worker_policy_covers_every_call_the_worker_makes(
    transformed_template: Template, exercised: dict[str, list[Any]]
) -> None:
    calls = exercised["WorkerFunction"]
    assert any(service == "sesv2" for service, _, _ in calls), "no email was sent"
    missing = missing_permissions(transformed_template, "WorkerFunctionRole", calls)
    assert missing == {}, f"WorkerFunction calls these without permission on AWS: {missing}"


def test_dlq_policy_covers_every_call_the_dlq_handler_makes(
    transformed_template: Template, exercised: dict[str, list[Any]]
) -> None:
    missing = missing_permissions(transformed_template, "DlqFunctionRole", exercised["DlqFunction"])
    assert missing == {}, f"DlqFunction calls these without permission on AWS: {missing}"


def test_counters_policy_covers_every_call_and_only_counter_keys(
    transformed_template: Template, exercised: dict[str, list[Any]]
) -> None:
    calls = exercised["CountersFunction"]
    missing = missing_permissions(transformed_template, "CountersFunctionRole", calls)
    assert missing == {}, f"CountersFunction calls these without permission on AWS: {missing}"
    keys = [
        (item.get("Key") or item.get("Item"))["pk"]["S"]
        for service, operation, params in calls
        if (service, operation) == ("dynamodb", "TransactWriteItems")
        for action in params["TransactItems"]
        for item in action.values()
    ]
    # (quotas on, the default: a finished task's slot goes back to its owner's QUOTA# item)
    prefixes = ("STATS#", "TPUT#", "QUOTA#", "COUNTED#")
    assert keys and all(key.startswith(prefixes) for key in keys), keys
    assert any(key.startswith("QUOTA#") for key in keys), keys
    # and the role's condition on the keys lets each of them through, and nothing else
    (statement,) = [
        s
        for role, _, s in role_statements(transformed_template)
        if role == "CountersFunctionRole" and s.get("Sid") == "CounterItems"
    ]
    leading = statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
    assert sorted(leading) == sorted(f"{prefix}*" for prefix in prefixes)
    assert all(any(fnmatch.fnmatchcase(key, p) for p in leading) for key in keys)


# ------------------------------------------------------------------ encryption at rest


def test_the_table_is_encrypted_at_rest(transformed_template: Template) -> None:
    tables = resources_of(transformed_template, "AWS::DynamoDB::Table")
    assert tables
    for name, table in tables.items():
        sse = table["Properties"].get("SSESpecification", {})
        assert sse.get("SSEEnabled") is True, name


def test_every_queue_is_encrypted_at_rest(transformed_template: Template) -> None:
    queues = resources_of(transformed_template, "AWS::SQS::Queue")
    # tasks, high priority, parts, the two isolation queues, the two DLQs, counters failures
    assert len(queues) == 8
    for name, queue in queues.items():
        props = queue["Properties"]
        assert props.get("SqsManagedSseEnabled") is True or props.get("KmsMasterKeyId"), name


def test_every_bucket_is_encrypted_at_rest(transformed_template: Template) -> None:
    buckets = resources_of(transformed_template, "AWS::S3::Bucket")
    assert set(buckets) == {"DataBucket", "SiteBucket"}
    for name, bucket in buckets.items():
        rules = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        algorithms = {rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] for rule in rules}
        assert algorithms and algorithms <= {"AES256", "aws:kms", "aws:kms:dsse"}, name


# ------------------------------------------------------------------ buckets


def test_every_bucket_blocks_public_access(transformed_template: Template) -> None:
    for name, bucket in resources_of(transformed_template, "AWS::S3::Bucket").items():
        block = bucket["Properties"]["PublicAccessBlockConfiguration"]
        assert block == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, name
        controls = bucket["Properties"].get("OwnershipControls", {}).get("Rules", [])
        assert {"ObjectOwnership": "BucketOwnerEnforced"} in controls, f"{name}: ACLs enabled"


def test_every_bucket_has_a_tls_only_policy(transformed_template: Template) -> None:
    policies = {
        render(policy["Properties"]["Bucket"]): policy["Properties"]["PolicyDocument"]
        for policy in resources_of(transformed_template, "AWS::S3::BucketPolicy").values()
    }
    for name in resources_of(transformed_template, "AWS::S3::Bucket"):
        document = policies.get("${" + name + "}")
        assert document, f"{name} has no bucket policy"
        denies = [
            s
            for s in as_list(document["Statement"])
            if s["Effect"] == "Deny"
            and s.get("Principal") in ("*", {"AWS": "*"})
            and "s3:*" in as_list(s["Action"])
            and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")
            in ("false", False)
        ]
        assert denies, f"{name}: no Deny on aws:SecureTransport false"
        covered = {render(r) for s in denies for r in as_list(s["Resource"])}
        assert {"${" + name + ".Arn}", "${" + name + ".Arn}/*"} <= covered, (name, covered)


def test_no_bucket_policy_allows_anyone(transformed_template: Template) -> None:
    for name, policy in resources_of(transformed_template, "AWS::S3::BucketPolicy").items():
        for statement in as_list(policy["Properties"]["PolicyDocument"]["Statement"]):
            if statement["Effect"] == "Allow":
                assert statement.get("Principal") not in ("*", {"AWS": "*"}), name
                assert statement.get("Condition"), f"{name}: unconditioned Allow"


def test_site_is_served_over_https_only(transformed_template: Template) -> None:
    for name, dist in resources_of(transformed_template, "AWS::CloudFront::Distribution").items():
        config = dist["Properties"]["DistributionConfig"]
        behaviors = [config["DefaultCacheBehavior"], *config.get("CacheBehaviors", [])]
        for behavior in behaviors:
            assert behavior["ViewerProtocolPolicy"] in ("redirect-to-https", "https-only"), name


def test_a_tls_policy_is_set_exactly_where_cloudfront_applies_it(
    transformed_template: Template,
) -> None:
    """With the default *.cloudfront.net certificate CloudFront fixes the policy itself, so a
    MinimumProtocolVersion there would only mislead; with an own certificate it must be set."""
    distributions = resources_of(transformed_template, "AWS::CloudFront::Distribution")
    assert distributions
    for name, dist in distributions.items():
        certificate = dist["Properties"]["DistributionConfig"]["ViewerCertificate"]
        branches = certificate["Fn::If"][1:] if "Fn::If" in certificate else [certificate]
        for branch in branches:
            if branch.get("CloudFrontDefaultCertificate"):
                assert "MinimumProtocolVersion" not in branch, name
            else:
                assert branch["MinimumProtocolVersion"] in ("TLSv1.2_2021", "TLSv1.2_2025"), name
                assert branch["SslSupportMethod"] == "sni-only", name


def test_no_topic_uses_a_key_cloudwatch_cannot_publish_with(
    transformed_template: Template,
) -> None:
    """The AWS managed key of SNS does not let CloudWatch publish: alarms would be lost."""
    topics = resources_of(transformed_template, "AWS::SNS::Topic")
    assert topics
    for name, topic in topics.items():
        assert topic["Properties"].get("KmsMasterKeyId") != "alias/aws/sns", name


# ------------------------------------------------------------------ API


def http_api_body(template: Template) -> dict[str, Any]:
    # The WebSocket API has tests of its own (tests/security/test_websocket_template.py).
    apis = {
        name: api
        for name, api in resources_of(template, "AWS::ApiGatewayV2::Api").items()
        if api["Properties"].get("ProtocolType") != "WEBSOCKET"
    }
    assert list(apis) == ["HttpApi"]
    body: dict[str, Any] = apis["HttpApi"]["Properties"]["Body"]
    return body


def test_api_stage_has_throttling_limits(transformed_template: Template) -> None:
    stages = resources_of(transformed_template, "AWS::ApiGatewayV2::Stage")
    assert stages
    for name, stage in stages.items():
        settings = stage["Properties"].get("DefaultRouteSettings", {})
        assert settings.get("ThrottlingBurstLimit", 0) > 0, name
        assert settings.get("ThrottlingRateLimit", 0) > 0, name


# Routes that write or fan out, with tighter limits than the stage's default.
THROTTLED_ROUTES = {
    "POST /tasks",
    "POST /tasks/{id}/retry",
    "POST /uploads",
    "POST /dead-letters/redrive",
}


def http_api_stage(template: Template) -> dict[str, Any]:
    (stage,) = [
        stage
        for stage in resources_of(template, "AWS::ApiGatewayV2::Stage").values()
        if stage["Properties"]["ApiId"] == {"Ref": "HttpApi"}
    ]
    return stage


def test_writing_routes_have_their_own_tighter_throttling(transformed_template: Template) -> None:
    stage = http_api_stage(transformed_template)
    default = stage["Properties"]["DefaultRouteSettings"]
    routes = stage["Properties"]["RouteSettings"]
    assert set(routes) == THROTTLED_ROUTES
    paths = {
        f"{m.upper()} {p}"
        for p, ops in http_api_body(transformed_template)["paths"].items()
        for m in ops
        if m != "x-amazon-apigateway-any-method"
    }
    assert paths >= THROTTLED_ROUTES  # each names a real route
    for route, settings in routes.items():
        assert 0 < settings["ThrottlingRateLimit"] < default["ThrottlingRateLimit"], route
        assert 0 < settings["ThrottlingBurstLimit"] < default["ThrottlingBurstLimit"], route


def test_the_api_writes_json_access_logs_to_a_log_group_with_retention(
    transformed_template: Template,
) -> None:
    stage = http_api_stage(transformed_template)
    settings = stage["Properties"]["AccessLogSettings"]
    assert settings["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    fields = json.loads(settings["Format"])
    assert {"requestId", "ip", "routeKey", "status", "sub"} <= set(fields)
    group = resources_of(transformed_template, "AWS::Logs::LogGroup")["ApiAccessLogGroup"]
    assert group["Properties"]["RetentionInDays"]


def test_the_worker_cannot_take_the_accounts_whole_concurrency(
    transformed_template: Template,
) -> None:
    """Each SQS event source of the worker is capped, so the API always has concurrency left
    (the account's default is 1,000): together they take at most 300 of it."""
    mappings = resources_of(transformed_template, "AWS::Lambda::EventSourceMapping")
    workers = [
        m["Properties"]
        for m in mappings.values()
        if m["Properties"]["FunctionName"] == {"Ref": "WorkerFunction"}
    ]
    # normal, high, parts and the two isolation queues
    caps = [p["ScalingConfig"]["MaximumConcurrency"] for p in workers if "ScalingConfig" in p]
    assert len(workers) == len(caps) == 5
    assert sum(caps) <= 300


def user_pool(template: Template, **parameters: str) -> dict[str, Any]:
    """The UserPool's properties as CloudFormation resolves them with these parameters."""
    declared = template["Parameters"].items()
    defaults = {name: str(spec["Default"]) for name, spec in declared if "Default" in spec}
    resources = LocalResources(prefix="t", parameters={**defaults, **parameters})
    resolver = template_resolver(template, resources)
    pool = resources_of(template, "AWS::Cognito::UserPool")["UserPool"]["Properties"]
    resolved: dict[str, Any] = resolver.resolve(pool)
    return resolved


def test_self_sign_up_is_off_unless_the_operator_opens_it(transformed_template: Template) -> None:
    default = user_pool(transformed_template, AllowSelfSignUp="false")
    assert default["AdminCreateUserConfig"] == {"AllowAdminCreateUserOnly": True}
    opened = user_pool(transformed_template, AllowSelfSignUp="true")
    assert opened["AdminCreateUserConfig"] == {"AllowAdminCreateUserOnly": False}
    assert transformed_template["Parameters"]["AllowSelfSignUp"]["Default"] == "false"


def test_mfa_and_threat_protection_are_parameters(transformed_template: Template) -> None:
    off = user_pool(transformed_template, MfaConfiguration="OFF", ThreatProtection="OFF")
    assert off["MfaConfiguration"] == "OFF"
    assert "EnabledMfas" not in off and "UserPoolAddOns" not in off
    on = user_pool(transformed_template, MfaConfiguration="ON", ThreatProtection="ENFORCED")
    assert on["MfaConfiguration"] == "ON" and on["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]
    assert on["UserPoolAddOns"] == {"AdvancedSecurityMode": "ENFORCED"}
    assert on["UserPoolTier"] == "PLUS"  # threat protection is a Plus-plan feature


def test_the_operators_group_is_the_one_the_api_checks(transformed_template: Template) -> None:
    groups = resources_of(transformed_template, "AWS::Cognito::UserPoolGroup")
    assert [g["Properties"]["GroupName"] for g in groups.values()] == ["admin"]
    api = (Path(TEMPLATE_PATH).parent / "functions/api/app.py").read_text()
    assert 'ADMIN_GROUP = "admin"' in api


def test_no_client_signs_in_with_a_plain_password(transformed_template: Template) -> None:
    clients = resources_of(transformed_template, "AWS::Cognito::UserPoolClient")
    for name, client in clients.items():
        flows = client["Properties"]["ExplicitAuthFlows"]
        assert "ALLOW_USER_PASSWORD_AUTH" not in flows, name
        assert "ALLOW_ADMIN_USER_PASSWORD_AUTH" not in flows, name
        assert client["Properties"]["AllowedOAuthFlows"] == ["code"], name
    # Neither the page nor the CLI calls a password flow.
    root = Path(TEMPLATE_PATH).parent
    sources = [
        *root.glob("static_site/**/*.js"),
        *root.glob("static_site/**/*.html"),
        *root.glob("client/src/**/*.py"),
    ]
    assert sources
    for source in sources:
        text = source.read_text(errors="replace")
        assert "USER_PASSWORD_AUTH" not in text and "InitiateAuth" not in text, source
        assert "initiate_auth" not in text, source


def test_the_authorizer_is_a_cognito_jwt_authorizer(transformed_template: Template) -> None:
    schemes = http_api_body(transformed_template)["components"]["securitySchemes"]
    assert list(schemes) == ["CognitoJwt"]
    authorizer = schemes["CognitoJwt"]["x-amazon-apigateway-authorizer"]
    assert authorizer["type"] == "jwt"
    assert authorizer["identitySource"] == "$request.header.Authorization"
    assert "cognito-idp" in render(authorizer["jwtConfiguration"]["issuer"])
    assert authorizer["jwtConfiguration"]["audience"] == [{"Ref": "UserPoolClient"}]


def test_every_route_but_the_public_ones_requires_the_jwt(transformed_template: Template) -> None:
    body = http_api_body(transformed_template)
    routes = {
        (path, method): operation.get("security")
        for path, operations in body["paths"].items()
        for method, operation in operations.items()
        if method in HTTP_METHODS
    }
    assert routes
    for (path, method), security in routes.items():
        if (path, method) in PUBLIC_ROUTES:
            assert security == [{"NONE": []}], (path, method)
        else:
            # OPTIONS preflight is answered by API Gateway's CORS, never routed: no such route.
            assert method != "options", f"{path} routes OPTIONS to the function"
            assert security == [{"CognitoJwt": []}], (path, method, security)
    assert not any(p in ("$default", "/{proxy+}") for p, _ in routes), "catch-all route"
    # Routes made outside the body (AWS::ApiGatewayV2::Route) need the authorizer too; the
    # WebSocket API's routes are checked in tests/security/test_websocket_template.py.
    for name, route in resources_of(transformed_template, "AWS::ApiGatewayV2::Route").items():
        if route["Properties"]["ApiId"] == {"Ref": "WebSocketApi"}:
            continue
        key = route["Properties"]["RouteKey"]
        if tuple(key.lower().split(" ", 1)[::-1]) not in PUBLIC_ROUTES:
            assert route["Properties"].get("AuthorizationType") == "JWT", name


def test_the_template_routes_are_exactly_the_apps_routes(
    transformed_template: Template, world: World
) -> None:
    """A route in the code but not the template never arrives; one in the template but not
    the code reaches the function unvalidated: both sides must list the same routes."""
    world.as_function("ApiFunction")
    spec = api("GET", "/openapi.json", sub=None).body

    def normal(path: str) -> str:
        return re.sub(r"\{[^}]+\}", "{}", path)

    app_routes = {
        (normal(path), method) for path, ops in spec["paths"].items() for method in ops
    } | {("/openapi.json", "get"), ("/docs", "get")}
    template_routes = {
        (normal(path), method)
        for path, ops in http_api_body(transformed_template)["paths"].items()
        for method in ops
        if method in HTTP_METHODS
    }
    assert template_routes == app_routes


def test_cors_allows_only_the_headers_and_methods_the_api_uses(
    transformed_template: Template,
) -> None:
    cors = http_api_body(transformed_template)["x-amazon-apigateway-cors"]
    assert set(cors["allowMethods"]) <= {"GET", "POST", "DELETE", "OPTIONS"}
    assert set(cors["allowHeaders"]) == {"authorization", "content-type", "idempotency-key"}
    assert not cors.get("allowCredentials"), "credentials with a configurable origin"


# ------------------------------------------------------------------ the no-auth setting


def test_dev_auth_user_appears_nowhere_in_the_template(
    sam_template: Template, transformed_template: Template
) -> None:
    raw = Path(TEMPLATE_PATH).read_text()
    assert "DEV_AUTH_USER" not in raw
    assert "DEV_AUTH_USER" not in json.dumps(sam_template)
    assert "DEV_AUTH_USER" not in json.dumps(transformed_template)
    for name, function in resources_of(transformed_template, "AWS::Lambda::Function").items():
        variables = function["Properties"].get("Environment", {}).get("Variables", {})
        assert not any("AUTH" in key for key in variables), (name, sorted(variables))


def test_functions_have_no_public_url_or_open_invoke_permission(
    transformed_template: Template,
) -> None:
    assert not resources_of(transformed_template, "AWS::Lambda::Url")
    for name, permission in resources_of(transformed_template, "AWS::Lambda::Permission").items():
        props = permission["Properties"]
        if props["Principal"] == "events.amazonaws.com":
            # The sweeper's schedule, and only its own rule, may invoke it.
            assert name.startswith("SweeperFunction"), name
            assert props["SourceArn"] == {"Fn::GetAtt": [name.removesuffix("Permission"), "Arn"]}
            continue
        assert props["Principal"] == "apigateway.amazonaws.com", name
        source = render(props["SourceArn"])
        websocket = f"{PUSH_API_ARN}/"
        assert (
            "${HttpApi}" in source
            or "HttpApi" in json.dumps(props["SourceArn"])
            or source.startswith(websocket)
        ), name


# ------------------------------------------------------------------ cfn-lint


def deploy_regions() -> list[str]:
    """The regions samconfig.toml deploys to (cfn-lint's default checks regions like cn-north-1,
    where CloudFront origin access control does not exist)."""
    text = (Path(TEMPLATE_PATH).parent / "samconfig.toml").read_text()
    return sorted(set(re.findall(r'^region\s*=\s*"([^"]+)"', text, re.MULTILINE))) or ["us-east-1"]


def test_cfn_lint_finds_nothing_in_the_transformed_template(
    transformed_template: Template,
) -> None:
    from cfnlint.api import lint

    matches = lint(json.dumps(transformed_template), regions=deploy_regions())
    problems = [
        f"{m.rule.id} {m.message} ({'/'.join(map(str, m.path or []))})"
        for m in matches
        if not m.rule.id.startswith("I")  # informational only
    ]
    assert problems == []


def test_cfn_lint_finds_nothing_in_template_yaml() -> None:
    from cfnlint.api import lint

    matches = lint(Path(TEMPLATE_PATH).read_text(), regions=deploy_regions())
    problems = [f"{m.rule.id} {m.message}" for m in matches if not m.rule.id.startswith("I")]
    assert problems == []
