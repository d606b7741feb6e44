"""template.yaml -> moto resources: the table, queues and routes are what the design says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from devstack.resources import LocalResources, event_sources, function_environment

REPO_ROOT = Path(__file__).resolve().parents[2]
INDEXES = {  # docs/architecture.md, "Indexes": name -> (partition key, sort key)
    "by_owner": ("gsi1pk", "ck"),
    "by_owner_type": ("gsi2pk", "ck"),
    "by_owner_status": ("gsi3pk", "ck"),
    "by_owner_status_type": ("gsi4pk", "ck"),
    "by_owner_id": ("idpk", "pk"),
}
QUEUE_TO_DLQ = {
    "TaskQueue": "TaskDeadLetterQueue",
    "HighPriorityQueue": "HighPriorityDeadLetterQueue",
}
API_ROUTES = {  # DESIGN.md, "API"
    ("post", "/tasks"),
    ("get", "/tasks"),
    ("get", "/tasks/{id}"),
    ("delete", "/tasks/{id}"),
    ("post", "/tasks/{id}/retry"),
    ("post", "/tasks/bulk"),
    ("get", "/task-types"),
    ("get", "/stats"),
    ("post", "/uploads"),
    ("get", "/dead-letters"),
    ("post", "/dead-letters/redrive"),
    ("get", "/openapi.json"),
    ("get", "/docs"),
    ("get", "/health"),
}
PUBLIC_ROUTES = {("get", "/health"), ("get", "/openapi.json"), ("get", "/docs")}
ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "LOG_LEVEL",
    "TABLE_NAME",
    "QUEUE_URL",
    "HIGH_PRIORITY_QUEUE_URL",
    "DLQ_URL",
    "HIGH_PRIORITY_DLQ_URL",
    "DATA_BUCKET",
    "SHARD_COUNT",
    "RETENTION_DAYS",
    "EMAIL_SENDER",
    "TASK_TYPE_MODULES",
    "CORS_ALLOW_ORIGIN",
}
FUNCTIONS = ("ApiFunction", "WorkerFunction", "DlqFunction")


def _queue_attributes(url: str) -> dict[Any, str]:
    return boto3.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])[
        "Attributes"
    ]


def test_table_has_exactly_the_five_keys_only_indexes(aws: LocalResources) -> None:
    table = boto3.client("dynamodb").describe_table(TableName=aws.tables["TasksTable"])["Table"]

    indexes = {index["IndexName"]: index for index in table["GlobalSecondaryIndexes"]}

    assert set(indexes) == set(INDEXES)
    for name, (partition_key, sort_key) in INDEXES.items():
        assert indexes[name]["Projection"] == {"ProjectionType": "KEYS_ONLY"}
        assert indexes[name]["KeySchema"] == [
            {"AttributeName": partition_key, "KeyType": "HASH"},
            {"AttributeName": sort_key, "KeyType": "RANGE"},
        ]
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_table_expires_items_by_ttl_on_expires_at(aws: LocalResources) -> None:
    ttl = boto3.client("dynamodb").describe_time_to_live(TableName=aws.tables["TasksTable"])

    assert ttl["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED",
        "AttributeName": "expires_at",
    }


@pytest.mark.parametrize(("queue", "dlq"), QUEUE_TO_DLQ.items())
def test_task_queue_redrives_to_its_dead_letter_queue(
    aws: LocalResources, queue: str, dlq: str
) -> None:
    attributes = _queue_attributes(aws.queues[queue])

    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": aws.arns[dlq],
        "maxReceiveCount": 5,
    }
    assert _queue_attributes(aws.queues[dlq])["MessageRetentionPeriod"] == str(14 * 24 * 3600)


@pytest.mark.parametrize("function", ["WorkerFunction", "DlqFunction"])
def test_queue_visibility_timeout_is_six_times_the_consumer_timeout(
    aws: LocalResources, transformed_template: dict[str, Any], function: str
) -> None:
    sources = event_sources(transformed_template, function)

    assert len(sources.sqs) == 2
    for source in sources:
        visibility = int(_queue_attributes(aws.queues[source.queue])["VisibilityTimeout"])
        assert sources.timeout * 6 <= visibility
        assert source.reports_batch_item_failures


def test_worker_reads_both_task_queues_in_batches(transformed_template: dict[str, Any]) -> None:
    sources = event_sources(transformed_template, "WorkerFunction")

    assert sources.timeout == 300
    assert sources.code_uri == "functions/worker"
    assert sources.handler == "app.lambda_handler"
    assert {source.queue for source in sources} == set(QUEUE_TO_DLQ)
    assert {(s.batch_size, s.maximum_batching_window_in_seconds) for s in sources} == {(10, 1)}


def test_dlq_handler_reads_both_dead_letter_queues(transformed_template: dict[str, Any]) -> None:
    sources = event_sources(transformed_template, "DlqFunction")

    assert {source.queue for source in sources} == set(QUEUE_TO_DLQ.values())


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_environment_points_at_the_local_resources(
    aws: LocalResources, transformed_template: dict[str, Any], function: str
) -> None:
    environment = function_environment(transformed_template, function, aws)

    assert set(environment) >= ENVIRONMENT
    assert environment["TABLE_NAME"] == aws.tables["TasksTable"]
    assert environment["QUEUE_URL"] == aws.queues["TaskQueue"]
    assert environment["HIGH_PRIORITY_QUEUE_URL"] == aws.queues["HighPriorityQueue"]
    assert environment["DLQ_URL"] == aws.queues["TaskDeadLetterQueue"]
    assert environment["HIGH_PRIORITY_DLQ_URL"] == aws.queues["HighPriorityDeadLetterQueue"]
    assert environment["DATA_BUCKET"] == aws.buckets["DataBucket"]
    assert environment["SHARD_COUNT"] == "32"
    assert environment["RETENTION_DAYS"] == "30"
    assert environment["TASK_TYPE_MODULES"] == ""  # no plugin types unless deployed with some
    assert "DEV_AUTH_USER" not in environment


def test_settings_env_sets_the_api_environment(settings_env: dict[str, str]) -> None:
    import os

    assert {name: os.environ[name] for name in settings_env} == settings_env


def test_template_never_sets_dev_auth_user(transformed_template: dict[str, Any]) -> None:
    assert "DEV_AUTH_USER" not in (REPO_ROOT / "template.yaml").read_text(encoding="utf-8")
    assert "DEV_AUTH_USER" not in json.dumps(transformed_template)


def test_every_route_but_health_and_docs_needs_the_jwt_authorizer(
    transformed_template: dict[str, Any],
) -> None:
    api = transformed_template["Resources"]["HttpApi"]["Properties"]["Body"]
    security = {
        (method, path): operation.get("security")
        for path, operations in api["paths"].items()
        for method, operation in operations.items()
    }
    schemes = api["components"]["securitySchemes"]

    assert set(security) == API_ROUTES
    for route, requirement in security.items():
        if route in PUBLIC_ROUTES:
            assert requirement == [{"NONE": []}], route
        else:
            assert requirement == [{"CognitoJwt": []}], route
    assert schemes["CognitoJwt"]["x-amazon-apigateway-authorizer"]["type"] == "jwt"


def test_data_bucket_allows_browser_put_and_get(aws: LocalResources) -> None:
    rules = boto3.client("s3").get_bucket_cors(Bucket=aws.buckets["DataBucket"])["CORSRules"]

    assert {"GET", "PUT"} <= set(rules[0]["AllowedMethods"])
    assert rules[0]["AllowedOrigins"] == ["*"]


def test_every_route_has_a_sample_event() -> None:
    events = [
        json.loads(path.read_text(encoding="utf-8"))
        for path in sorted((REPO_ROOT / "events").glob("api_*.json"))
    ]

    route_keys = {tuple(event["routeKey"].split(" ", 1)) for event in events}

    assert {(method.lower(), path) for method, path in route_keys} == API_ROUTES
    for event in events:
        claims = event["requestContext"].get("authorizer", {}).get("jwt", {}).get("claims", {})
        public = (event["requestContext"]["http"]["method"].lower(), event["rawPath"])
        assert claims.get("sub") == ("user-123" if public not in PUBLIC_ROUTES else None)
