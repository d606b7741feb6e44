"""The client's models and routes are the API's: generated from the OpenAPI document the code
serves, checked against it here, and tolerant of fields the API gains."""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import pytest

from taskqueue_client import ROUTES
from taskqueue_client._wire import decode, to_json
from taskqueue_client.errors import DecodeError
from taskqueue_client.models import TaskDetail, TaskStatus, TaskView, UploadTicket
from tests.client.support import VIEW
from tests.helpers import ROOT, call_api, http_event, reset_function_caches


def generator() -> ModuleType:
    name = "client_generate_models"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, ROOT / "client" / "tools" / "generate_models.py"
        )
        assert spec and spec.loader
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def document(settings_env: dict[str, str]) -> dict[str, Any]:
    """The OpenAPI document as ApiFunction serves it."""
    reset_function_caches()
    response = call_api(http_event("GET", "/openapi.json", sub=None))
    assert response.status == 200
    served: dict[str, Any] = response.body
    return served


def test_models_file_is_what_the_served_openapi_document_generates(
    document: dict[str, Any],
) -> None:
    # Given the document the API serves now
    # When the models are generated from it
    generated = generator().render(document)
    # Then they are the committed file, character for character
    committed = (ROOT / "client" / "src" / "taskqueue_client" / "models.py").read_text()
    assert generated == committed, (
        "client models differ from the API's OpenAPI document: run "
        "`.venv/bin/python client/tools/generate_models.py` and commit the result"
    )


def test_every_route_of_the_document_is_a_client_route_answering_its_model(
    document: dict[str, Any],
) -> None:
    # Given every operation of the document, with the model of its success answer
    operations = {}
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            answers = [
                answer
                for status, answer in operation["responses"].items()
                if status.startswith("2")
            ]
            schema = answers[0].get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("type") == "array":
                schema = schema["items"]
            model = schema["$ref"].rsplit("/", 1)[1] if "$ref" in schema else None
            operations[(method.upper(), path)] = model
    # When the client's route table is compared with it (/openapi.json describes itself not)
    client_routes = {
        (route.method, route.path): route.response.__name__ if route.response else None
        for route in ROUTES.values()
        if route.path != "/openapi.json"
    }
    # Then both name the same routes, answering the same models
    assert client_routes == operations


def test_a_task_with_fields_this_client_does_not_know_keeps_them_in_extra() -> None:
    # Given a task as a newer API sends it, with a field the models lack
    answer = {**VIEW, "tenant": "acme", "failed_items": 2}
    # When it is decoded
    view = decode(TaskView, answer)
    # Then the known fields are typed and the new one is kept aside
    assert view.status is TaskStatus.RUNNING
    assert view.created_at == datetime(2026, 11, 24, 9, 0, 0, 1, tzinfo=UTC)
    assert view.duration_seconds == 1.5
    assert view.failed_items == 2
    assert view.extra == {"tenant": "acme"}
    # And turned back into JSON it is what the API sent
    assert to_json(view) == {
        **answer,
        "created_at": "2026-11-24T09:00:00.000001+00:00",
        "updated_at": "2026-11-24T09:00:02+00:00",
        "started_at": "2026-11-24T09:00:01+00:00",
    }


def test_a_detail_without_its_optional_lists_decodes_them_empty() -> None:
    detail = decode(TaskDetail, VIEW)
    assert detail.events == [] and detail.downloads == []


@pytest.mark.parametrize(
    ("change", "path", "expected"),
    [
        ({"status": "PAUSED"}, "$.status", "a TaskStatus"),
        ({"progress": "40"}, "$.progress", "an integer"),
        ({"progress": True}, "$.progress", "an integer"),
        ({"created_at": "yesterday"}, "$.created_at", "an ISO 8601 date-time"),
        ({"error": {"type": "X"}}, "$.error.message", "a required field"),
        ({"outputs": "a.png"}, "$.outputs", "an array"),
    ],
)
def test_an_answer_that_breaks_the_contract_raises_decode_error_naming_the_place(
    change: dict[str, Any], path: str, expected: str
) -> None:
    with pytest.raises(DecodeError) as raised:
        decode(TaskView, {**VIEW, **change})
    assert (raised.value.path, raised.value.expected) == (path, expected)


def test_a_missing_required_field_raises_decode_error() -> None:
    answer = {k: v for k, v in VIEW.items() if k != "status"}
    with pytest.raises(DecodeError) as raised:
        decode(TaskView, answer)
    assert raised.value.path == "$.status"


def test_an_upload_ticket_without_method_defaults_to_put() -> None:
    ticket = decode(
        UploadTicket,
        {"key": "k", "prefix": "p/", "url": "https://s3/x", "headers": {}, "expires_in": 900},
    )
    assert ticket.method == "PUT"


def test_generator_refuses_a_schema_it_cannot_type() -> None:
    # An inline object with properties has no model name: say so rather than guess a type.
    document = {
        "paths": {"/x": {"get": {"responses": {"200": {"content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Box"}}}}}}}},
        "components": {"schemas": {"Box": {"type": "object", "properties": {
            "inner": {"type": "object", "properties": {"a": {"type": "string"}}}}}}},
    }  # fmt: skip
    with pytest.raises(generator().UnsupportedSchema, match="inline object"):
        generator().render(document)
