"""The push path in the template: the WebSocket API accepts a connection only through the
Cognito token authorizer on $connect, its functions may touch connection items only, the
push function may post to this API's connections only, and each role covers the calls its
function really makes (run against moto, as tests/security/test_template_security.py does
for the other functions)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.resources import event_sources
from tests.helpers import FakeLambdaContext, load_function
from tests.integration.test_push import push_reader
from tests.integration.test_websocket_routes import ws_event
from tests.security.support import World, api, moto_world, recorded_aws_calls
from tests.security.test_template_security import (
    as_list,
    missing_permissions,
    render,
    resources_of,
    role_statements,
)

Template = dict[str, Any]
PUSH_API = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}"


def websocket_routes(template: Template) -> dict[str, dict[str, Any]]:
    return {
        route["Properties"]["RouteKey"]: route["Properties"]
        for route in resources_of(template, "AWS::ApiGatewayV2::Route").values()
        if route["Properties"]["ApiId"] == {"Ref": "WebSocketApi"}
    }


# ------------------------------------------------------------------ API and authorizer


def test_the_push_api_is_a_websocket_api_routed_by_action(transformed_template: Template) -> None:
    api = transformed_template["Resources"]["WebSocketApi"]["Properties"]

    assert api["ProtocolType"] == "WEBSOCKET"
    assert api["RouteSelectionExpression"] == "$request.body.action"
    assert set(websocket_routes(transformed_template)) == {"$connect", "$disconnect", "$default"}


def test_only_connect_authorizes_and_it_uses_the_token_authorizer(
    transformed_template: Template,
) -> None:
    routes = websocket_routes(transformed_template)

    connect = routes["$connect"]
    assert connect["AuthorizationType"] == "CUSTOM"
    assert connect["AuthorizerId"] == {"Ref": "WebSocketAuthorizer"}
    # API Gateway allows an authorizer on $connect only: the rest run on the allowed connection.
    assert routes["$disconnect"]["AuthorizationType"] == "NONE"
    assert routes["$default"]["AuthorizationType"] == "NONE"


def test_the_authorizer_checks_the_http_apis_cognito_pool_and_client(
    transformed_template: Template,
) -> None:
    resources = transformed_template["Resources"]
    authorizer = resources["WebSocketAuthorizer"]["Properties"]
    assert authorizer["AuthorizerType"] == "REQUEST"
    # A $connect without a token is refused by API Gateway before the function runs.
    assert authorizer["IdentitySource"] == ["route.request.querystring.token"]
    assert "${WsAuthorizerFunction.Arn}" in render(authorizer["AuthorizerUri"])

    variables = resources["WsAuthorizerFunction"]["Properties"]["Environment"]["Variables"]
    http_jwt = resources["HttpApi"]["Properties"]["Body"]["components"]["securitySchemes"]
    jwt_configuration = http_jwt["CognitoJwt"]["x-amazon-apigateway-authorizer"]["jwtConfiguration"]
    assert variables["JWT_ISSUER"] == jwt_configuration["issuer"]
    assert [variables["JWT_AUDIENCE"]] == jwt_configuration["audience"]


def test_api_gateway_may_invoke_the_websocket_functions_from_this_api_only(
    transformed_template: Template,
) -> None:
    permissions = {
        render(props["FunctionName"]): render(props["SourceArn"])
        for props in (
            p["Properties"]
            for p in resources_of(transformed_template, "AWS::Lambda::Permission").values()
        )
        if "WebSocketApi" in json.dumps(props["SourceArn"])
    }

    assert permissions == {
        "${WsAuthorizerFunction.Arn}": f"{PUSH_API}/authorizers/${{WebSocketAuthorizer}}",
        "${WebSocketFunction.Arn}": f"{PUSH_API}/${{WebSocketStage}}/*",
    }


def test_the_wss_url_of_the_stage_is_an_output(transformed_template: Template) -> None:
    output = transformed_template["Outputs"]["WebSocketUrl"]["Value"]

    assert render(output).startswith("wss://${WebSocketApi}.execute-api.")
    assert render(output).endswith("/${WebSocketStage}")


# ------------------------------------------------------------------ IAM


def allow_statements(template: Template, role: str) -> list[dict[str, Any]]:
    return [
        statement
        for name, _, statement in role_statements(template)
        if name == role and statement.get("Effect") == "Allow"
    ]


def test_only_the_push_function_manages_connections_and_only_posts_on_this_api(
    transformed_template: Template,
) -> None:
    managers = {
        (role, render(resource))
        for role, _, statement in role_statements(transformed_template)
        if "execute-api:ManageConnections" in as_list(statement.get("Action", []))
        for resource in as_list(statement["Resource"])
    }

    assert managers == {("PushFunctionRole", f"{PUSH_API}/${{WebSocketStage}}/POST/@connections/*")}


@pytest.mark.parametrize("role", ["WebSocketFunctionRole", "PushFunctionRole"])
def test_the_websocket_functions_touch_connection_items_only(
    transformed_template: Template, role: str
) -> None:
    table_statements = [
        statement
        for statement in allow_statements(transformed_template, role)
        if any(action.startswith("dynamodb:") for action in as_list(statement["Action"]))
        and render(statement["Resource"]) == "${TasksTable.Arn}"
    ]

    assert table_statements
    for statement in table_statements:
        keys = statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
        assert keys == ["CONN#*"], (role, statement)


def test_the_authorizer_has_no_aws_permission_beyond_logs_and_traces(
    transformed_template: Template,
) -> None:
    actions = {
        action
        for statement in allow_statements(transformed_template, "WsAuthorizerFunctionRole")
        for action in as_list(statement["Action"])
    }

    assert actions == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
    }


# ------------------------------------------------------------------ policies cover the code


@pytest.fixture(scope="module")
def world(transformed_template: Template) -> Iterator[World]:
    with moto_world(transformed_template) as built:
        yield built


def management_actions(
    calls: list[tuple[str, str, dict[str, Any]]],
) -> list[tuple[str, str, dict[str, Any]]]:
    """PostToConnection is authorised by execute-api:ManageConnections."""
    return [
        ("execute-api", "ManageConnections", params)
        if service == "apigatewaymanagementapi"
        else (service, operation, params)
        for service, operation, params in calls
    ]


@pytest.fixture(scope="module")
def exercised(world: World) -> dict[str, list[Any]]:
    calls: dict[str, list[Any]] = {}
    world.as_function("WebSocketFunction")
    websocket = load_function("websocket")
    with recorded_aws_calls() as route_calls:
        for route_key in ("$connect", "$default", "$disconnect"):
            websocket.lambda_handler(
                ws_event(route_key, "gone-page", "user-ws", body='{"action": "ping"}'),
                FakeLambdaContext("websocket"),
            )
        websocket.lambda_handler(
            ws_event("$connect", "open-page", "user-ws"), FakeLambdaContext("websocket")
        )
    calls["WebSocketFunction"] = list(route_calls)

    # A task submitted through the API, its stream record read as the push mapping reads it.
    env = world.as_function("PushFunction")
    reader, batch_size = push_reader(env["TABLE_NAME"])
    world.as_function("ApiFunction")
    body = {"type": "DATA_PROCESSING", "params": {"rows": 5}}
    assert api("POST", "/tasks", sub="user-ws", body=body).status == 201
    world.as_function("PushFunction")
    push = load_function("push")
    with recorded_aws_calls() as push_calls:
        batch = reader.read(batch_size)
        answer = push.lambda_handler({"Records": batch}, FakeLambdaContext("push"))
    assert answer["sent"] == 1
    calls["PushFunction"] = management_actions(list(push_calls))
    return calls


def test_websocket_function_policy_covers_every_call_it_makes(
    transformed_template: Template, exercised: dict[str, list[Any]]
) -> None:
    calls = exercised["WebSocketFunction"]
    assert {operation for _, operation, _ in calls} == {"PutItem", "Query", "DeleteItem"}
    missing = missing_permissions(transformed_template, "WebSocketFunctionRole", calls)
    assert missing == {}


def test_push_function_policy_covers_every_call_it_makes(
    transformed_template: Template, exercised: dict[str, list[Any]]
) -> None:
    calls = exercised["PushFunction"]
    operations = {(service, operation) for service, operation, _ in calls}
    assert ("execute-api", "ManageConnections") in operations  # it posted
    assert ("dynamodbstreams", "GetRecords") in operations  # the mapping's reads, same role
    missing = missing_permissions(transformed_template, "PushFunctionRole", calls)
    assert missing == {}
    keys = [
        (params.get("Key") or {}).get("pk", {}).get("S")
        or params.get("ExpressionAttributeValues", {}).get(":pk", {}).get("S")
        for service, operation, params in calls
        if service == "dynamodb"
    ]
    assert keys and all(key.startswith("CONN#") for key in keys), keys


# ------------------------------------------------------------------ the stream mapping


def test_the_push_mapping_reads_task_items_from_the_latest_record_without_a_window(
    transformed_template: Template,
) -> None:
    (stream,) = event_sources(transformed_template, "PushFunction").streams
    (counters,) = event_sources(transformed_template, "CountersFunction").streams
    mapping = next(
        m["Properties"]
        for m in resources_of(transformed_template, "AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": "PushFunction"}
    )

    assert stream.table == "TasksTable"
    assert stream.starting_position == "LATEST"
    assert stream.maximum_batching_window_in_seconds == 0
    assert stream.filters == counters.filters  # task META items, inserts and modifications
    assert mapping["MaximumRecordAgeInSeconds"] == 60
    assert mapping["MaximumRetryAttempts"] == 2
