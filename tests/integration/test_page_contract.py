"""The page's contract (static_site/js/contract.js) against the API's own /openapi.json: every
route the page calls exists, every field it reads is in that route's answer, every field and
query parameter it sends is in the request's schema; the form hints of GET /task-types are the
ones the page knows, pointing at fields that exist and content types POST /uploads takes; and
every event line the lifecycle writes is of a kind the page's timeline declares.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ApiResponse, call_api, http_event, reset_function_caches
from tests.pipeline_world import OWNER, World

ROOT = Path(__file__).resolve().parents[2]
CONTRACT_JS = ROOT / "static_site" / "js" / "contract.js"
Shape = Any


def read_contract(source: str) -> dict[str, Any]:
    """The JSON object assigned to CONTRACT in contract.js."""
    match = re.search(r"export const CONTRACT = (\{.*\});\s*$", source, re.DOTALL)
    assert match, "contract.js must assign one JSON object to CONTRACT"
    contract: dict[str, Any] = json.loads(match.group(1))
    return contract


def resolve(schema: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """Follows $ref, and unwraps `X | None` (anyOf with null) and one-element allOf."""
    while True:
        if "$ref" in schema:
            name = schema["$ref"].removeprefix("#/components/schemas/")
            schema = doc["components"]["schemas"][name]
        elif "anyOf" in schema or "oneOf" in schema:
            branches = [
                b for b in schema.get("anyOf", schema.get("oneOf")) if b != {"type": "null"}
            ]
            if len(branches) != 1:
                return schema
            schema = branches[0]
        elif len(schema.get("allOf", ())) == 1:
            schema = schema["allOf"][0]
        else:
            return schema


def missing(
    shape: Shape, schema: dict[str, Any], doc: dict[str, Any], shapes: dict[str, Any], at: str
) -> list[str]:
    """Where `shape` reads something `schema` does not declare (empty when all is there)."""
    schema = resolve(schema, doc)
    if shape is True:
        return []
    if isinstance(shape, str):
        return missing(shapes[shape], schema, doc, shapes, at)
    if "$extends" in shape:
        own = {k: v for k, v in shape.items() if k != "$extends"}
        return missing({**shapes[shape["$extends"]], **own}, schema, doc, shapes, at)
    if isinstance(shape, list):
        if schema.get("type") != "array":
            return [f"{at}: a list in the page, {schema.get('type')} in the API"]
        return missing(shape[0], schema["items"], doc, shapes, f"{at}[]")
    if "*" in shape:
        values = schema.get("additionalProperties")
        if not isinstance(values, dict):
            return [f"{at}: a map in the page, not in the API"]
        return missing(shape["*"], values, doc, shapes, f"{at}{{}}")
    properties = schema.get("properties", {})
    problems = []
    for name, field_shape in shape.items():
        if name not in properties:
            problems.append(f"{at}.{name}: not in the API's schema")
        else:
            problems += missing(field_shape, properties[name], doc, shapes, f"{at}.{name}")
    return problems


def route_problems(contract: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    problems = []
    shapes = contract["shapes"]
    for key, route in contract["routes"].items():
        method, path = key.split(" ")
        operation = doc["paths"].get(path, {}).get(method.lower())
        if operation is None:
            problems.append(f"{key}: no such route in /openapi.json")
            continue
        answers = [
            answer["content"]["application/json"]["schema"]
            for status, answer in operation["responses"].items()
            if status.startswith("2")
        ]
        if not answers:
            problems.append(f"{key}: no documented 2xx answer")
        for schema in answers:
            problems += missing(route["response"], schema, doc, shapes, key)
        parameters = {(p["in"], p["name"].lower()) for p in operation.get("parameters", [])}
        for name in route.get("query", []):
            if ("query", name.lower()) not in parameters:
                problems.append(f"{key}: query parameter {name} not in the API")
        for name in route.get("headers", []):
            if ("header", name.lower()) not in parameters:
                problems.append(f"{key}: header {name} not in the API")
        if route.get("body"):
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            fields = resolve(body["schema"], doc).get("properties", {}) if body else {}
            for name in route["body"]:
                if name not in fields:
                    problems.append(f"{key}: body field {name} not in the API")
        for status, answer in operation["responses"].items():
            if status.startswith(("4", "5")):
                schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
                problems += missing(contract["error"], schema, doc, shapes, f"{key} {status}")
    return problems


def extensions(value: Any) -> set[str]:
    """Every `x-` key anywhere in a JSON Schema."""
    if isinstance(value, dict):
        found = {k for k in value if k.startswith("x-")}
        for v in value.values():
            found |= extensions(v)
        return found
    if isinstance(value, list):
        return set().union(*(extensions(v) for v in value)) if value else set()
    return set()


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def contract() -> dict[str, Any]:
    return read_contract(CONTRACT_JS.read_text(encoding="utf-8"))


@pytest.fixture
def api(settings_env: dict[str, str]) -> dict[str, str]:
    reset_function_caches()
    return settings_env


@pytest.fixture
def openapi(api: dict[str, str]) -> dict[str, Any]:
    response: ApiResponse = call_api(http_event("GET", "/openapi.json"))
    assert response.status == 200
    doc: dict[str, Any] = response.body
    return doc


# ------------------------------------------------------------------ tests


def test_every_route_and_field_the_page_uses_is_in_the_openapi_document(
    contract: dict[str, Any], openapi: dict[str, Any]
) -> None:
    assert route_problems(contract, openapi) == []


def test_the_check_reports_a_field_route_and_parameter_the_api_lacks(
    contract: dict[str, Any], openapi: dict[str, Any]
) -> None:
    broken = json.loads(json.dumps(contract))
    broken["shapes"]["TaskView"]["colour"] = True
    broken["routes"]["GET /tasks"]["query"].append("sort")
    broken["routes"]["GET /tasks/{task_id}/children"] = {"response": True}
    broken["routes"]["GET /stats"]["response"] = {"counts": {"by_status": ["TaskView"]}}

    problems = route_problems(broken, openapi)

    assert "GET /tasks/{task_id}/children: no such route in /openapi.json" in problems
    assert "GET /tasks: query parameter sort not in the API" in problems
    assert "GET /tasks.items[].colour: not in the API's schema" in problems
    assert "POST /tasks.colour: not in the API's schema" in problems
    assert "GET /stats.counts.by_status: a list in the page, object in the API" in problems


def test_task_types_use_only_the_form_hints_the_page_reads(
    contract: dict[str, Any], api: dict[str, str]
) -> None:
    types = call_api(http_event("GET", "/task-types")).body
    upload_types = set(
        resolve(
            call_api(http_event("GET", "/openapi.json")).body["components"]["schemas"][
                "UploadRequest"
            ]["properties"]["content_type"],
            {},
        )["enum"]
    )

    assert {t["name"] for t in types} == {"DATA_PROCESSING", "EMAIL", "IMAGE_PROCESSING"}
    for task_type in types:
        schema = task_type["params_schema"]
        fields = set(schema["properties"])
        assert extensions(schema) <= set(contract["params_schema_extensions"]), task_type["name"]
        for source in schema["x-sources"]:
            assert set(source["fields"]) <= fields, (task_type["name"], source)
        for name, field in schema["properties"].items():
            if "x-upload" in field:
                assert set(field["x-upload"]["accept"]) <= upload_types, (task_type["name"], name)
                assert field["x-upload"]["target"] in ("key", "prefix")


def test_upload_fields_and_sources_are_declared_by_the_types(api: dict[str, str]) -> None:
    types = {t["name"]: t for t in call_api(http_event("GET", "/task-types")).body}

    data = types["DATA_PROCESSING"]["params_schema"]
    image = types["IMAGE_PROCESSING"]["params_schema"]
    email = types["EMAIL"]["params_schema"]
    assert data["properties"]["input_key"]["x-upload"] == {"accept": ["text/csv"], "target": "key"}
    assert image["properties"]["input_prefix"]["x-upload"] == {
        "accept": ["image/png", "image/jpeg", "image/webp", "image/gif"],
        "target": "prefix",
    }
    assert [(s["name"], s["fields"]) for s in data["x-sources"]] == [
        ("upload", ["input_key"]),
        ("generate", ["rows", "columns", "seed"]),
    ]
    assert [s["name"] for s in email["x-sources"]] == ["list", "generate"]
    assert data["properties"]["chunk_bytes"]["x-advanced"] is True
    assert "x-advanced" not in data["properties"]["rows"]
    assert [types[n]["progress_unit"] for n in sorted(types)] == ["bytes", "recipients", "images"]


def test_a_template_error_is_located_at_its_field_so_the_page_shows_it_there(
    api: dict[str, str],
) -> None:
    body = {"recipient_count": 2, "subject": "Hi {nickname}", "body": "Hello {name}"}

    response = call_api(http_event("POST", "/tasks", body={"type": "EMAIL", "params": body}))

    assert response.status == 422
    assert [(d["loc"], d["msg"]) for d in response.body["error"]["details"]] == [
        (
            ["body", "params", "subject"],
            "subject: unknown field {nickname}; use one of {email}, {index}, {name}",
        )
    ]


def test_every_event_line_of_a_task_is_of_a_kind_the_timeline_knows(
    contract: dict[str, Any], world: World
) -> None:
    # Given tasks through every path of the lifecycle: a retried chunk, a failure, a resume,
    # a cancel before the start and one while running
    retried = world.submit({"chunks": 4, "fail_on_chunk": 1, "fail_times": 1})
    failed = world.submit({"chunks": 3, "fail_on_chunk": 2, "fail_times": 9}, max_attempts=1)
    cancelled = world.submit({"chunks": 2})
    world.cancel(cancelled)
    world.pipeline().run()
    world.retry(failed, restart=False)  # its message included
    world.pipeline().run()
    stopped = world.submit({"chunks": 8})
    world.counting.after_chunk = lambda task_id, index: (
        world.cancel(task_id) if task_id == stopped and index == 2 else None
    )
    world.pipeline().run()

    # When their event logs are read
    lines = [
        event.message
        for task_id in (retried, failed, cancelled, stopped)
        for event in world.store.tasks.get_with_events(task_id, OWNER)[1]
    ]

    # Then each line is of a kind contract.js declares, and every kind but the take-over occurs
    kinds = {name: re.compile(pattern) for name, pattern in contract["events"].items()}
    unknown = [line for line in lines if not any(p.search(line) for p in kinds.values())]
    assert unknown == []
    seen = {name for name, p in kinds.items() if any(p.search(line) for line in lines)}
    assert seen == set(kinds) - {"took_over"}
    assert "50% done (2 of 4)" in lines
