"""API fuzzing: schemathesis against the spec GET /openapi.json serves, plus targeted bad input.

Every generated request goes through the API Lambda handler in-process (moto behind it) by
way of a WSGI adapter that builds the HTTP API v2 event (tests/security/support.py). Each
answer must be no 5xx and conform to the spec: a documented status, the documented content
type and a body valid against the documented schema. Errors are checked against DESIGN.md's
`{"error": {code, message, details}}`, which the served spec lacks (see the xfail tests).

`SECURITY_FUZZ_EXAMPLES` (default 120) sets the examples per operation and mode, and
`SECURITY_STATEFUL_EXAMPLES` (default 10) the scenarios of linked requests; both runs are
derandomized, so CI reproduces a failure exactly.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, reject, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.helpers import ApiResponse, call_api, http_event
from tests.security.support import (
    ALICE,
    FUZZER,
    LambdaWsgiAdapter,
    World,
    api,
    assert_error_shape,
    fetch_spec,
    fresh_user,
    moto_world,
    with_documented_errors,
)

EXAMPLES = int(os.environ.get("SECURITY_FUZZ_EXAMPLES", "120"))
# Scenarios of the stateful run (up to 6 linked requests each): a few seconds by default.
STATEFUL_EXAMPLES = int(os.environ.get("SECURITY_STATEFUL_EXAMPLES", "10"))
MIN_REQUESTS = 1000
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
TASK_TYPES = ["DATA_PROCESSING", "EMAIL", "IMAGE_PROCESSING"]
EMAIL: dict[str, Any] = {
    "type": "EMAIL",
    "params": {"recipient_count": 2, "subject": "Hi", "body": "Hello"},
}
# Bodies that are not UTF-8 are fuzzed too (they once crashed the handler; now a 400).
SKIP_NON_UTF8_BODIES = False


def is_utf8(body: Any) -> bool:
    if isinstance(body, (bytes, bytearray)):
        try:
            bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


# Known problems, reported to the lead, by operation and failure title. Works like
# xfail(strict=True) per operation: a failure not listed here fails the test, and so does a
# listed one that no longer happens (remove it then).
KNOWN_FAILURES: dict[str, dict[str, str]] = {}


def failure_titles(exc: BaseException) -> set[str]:
    """The distinct failure titles of a schemathesis FailureGroup (or the exception's type)."""
    inner = getattr(exc, "exceptions", None)
    if inner:
        return set().union(*(failure_titles(e) for e in inner))
    return {getattr(exc, "title", None) or type(exc).__name__}


def has_inputs(operation: Any) -> bool:
    return bool(operation.path_parameters or operation.query or operation.headers or operation.body)


@pytest.fixture(scope="module")
def world(transformed_template: dict[str, Any]) -> Iterator[World]:
    """One moto world for the module: hundreds of small requests, one setup."""
    with moto_world(transformed_template) as built:
        yield built


@pytest.fixture
def api_env(world: World) -> World:
    return world


@pytest.fixture(scope="module")
def seeded(world: World) -> dict[str, list[str]]:
    """Tasks the fuzzer may hit by id: its own (pending, cancelled) and another user's."""
    own = [api("POST", "/tasks", sub=FUZZER, body=EMAIL).body["id"] for _ in range(3)]
    api("DELETE", f"/tasks/{own[1]}", sub=FUZZER)
    alice = [api("POST", "/tasks", sub=ALICE, body=EMAIL).body["id"] for _ in range(2)]
    api("DELETE", f"/tasks/{alice[1]}", sub=ALICE)
    return {"own": own, "alice": alice}


# ------------------------------------------------------------------ schemathesis


def operations(spec: dict[str, Any]) -> Iterator[Any]:
    schema = schemathesis.openapi.from_dict(with_documented_errors(spec))
    for result in schema.get_all_operations():
        yield result.ok()  # type: ignore[union-attr]  # an Err raises here: a broken spec


def fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    adapter: LambdaWsgiAdapter,
    seeded: dict[str, list[str]],
) -> int:
    """Runs `EXAMPLES` generated requests of one operation; returns how many were sent."""
    before = adapter.requests
    has_task_id = "{task_id}" in operation.path
    is_submit = operation.method.upper() == "POST" and operation.path == "/tasks"

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    def run(case: Any, data: st.DataObject) -> None:
        alice_task = None
        if has_task_id and mode.is_positive and data.draw(st.booleans(), label="known id"):
            task_id = data.draw(st.sampled_from(seeded["own"] + seeded["alice"]), label="id")
            case.path_parameters = {**(case.path_parameters or {}), "task_id": task_id}
            alice_task = task_id if task_id in seeded["alice"] else None
        real_type = is_submit and mode.is_positive and isinstance(case.body, dict)
        if real_type and data.draw(st.booleans(), label="real type"):
            case.body["type"] = data.draw(st.sampled_from(TASK_TYPES), label="type")
        if SKIP_NON_UTF8_BODIES and not is_utf8(case.body):
            reject()
        response = case.call(app=adapter)
        case.validate_response(response, checks=CHECKS, transport_kwargs={"app": adapter})
        if response.status_code >= 400:
            body = response.json()
            assert set(body) == {"error"}, body
        if alice_task is not None:
            # Another user's task: not found, exactly as a missing one, whatever the route.
            assert response.status_code == 404, (case.method, case.formatted_path, response.text)

    run()
    return adapter.requests - before


def test_fuzzing_every_operation_gives_no_5xx_and_spec_conforming_answers(
    seeded: dict[str, list[str]],
) -> None:
    """Given the served spec, when schemathesis sends >= 1,000 requests, then all conform."""
    spec = fetch_spec()
    adapter = LambdaWsgiAdapter(default_sub=FUZZER)
    started = time.perf_counter()
    per_operation: dict[str, int] = {}
    unexpected: dict[str, str] = {}
    known_seen: dict[str, set[str]] = {}
    for operation in operations(spec):
        modes = [GenerationMode.POSITIVE]
        if has_inputs(operation):  # nothing to make invalid in an operation without inputs
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            label = f"{operation.method.upper()} {operation.path} [{mode.value}]"
            sent = adapter.requests
            try:
                fuzz_operation(operation, mode, adapter, seeded)
            except (Exception, BaseExceptionGroup) as exc:
                titles = failure_titles(exc)
                known = set(KNOWN_FAILURES.get(label, {}))
                known_seen[label] = titles & known
                if titles - known:
                    unexpected[label] = str(exc)[:4000]
            per_operation[label] = adapter.requests - sent
    elapsed = time.perf_counter() - started
    print(f"\nschemathesis: {adapter.requests} requests in {elapsed:.1f} s")
    for label, count in per_operation.items():
        print(f"  {count:5d}  {label}")
    print(f"  statuses: {dict(sorted(adapter.statuses.items()))}")
    for label, titles in known_seen.items():
        for title in titles:
            print(f"  known problem: {label}: {title}: {KNOWN_FAILURES[label][title]}")
    assert not unexpected, "\n\n".join(f"{k}:\n{v}" for k, v in unexpected.items())
    fixed = {
        f"{label}: {title}"
        for label, titles in KNOWN_FAILURES.items()
        for title in titles
        if title not in known_seen.get(label, set())
    }
    assert not fixed, f"fixed now, remove from KNOWN_FAILURES: {sorted(fixed)}"
    assert adapter.requests >= MIN_REQUESTS


# ------------------------------------------------------------------ stateful: links between routes

TASK_ID = {"task_id": "$response.body#/id"}
LINKS: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {
    # (path, method, status) -> links to the routes that take the answer's task further
    ("/tasks", "post", "201"): {
        "get": {"operationId": "get_task", "parameters": TASK_ID},
        "cancel": {"operationId": "cancel_task", "parameters": TASK_ID},
        "retry": {"operationId": "retry_task", "parameters": TASK_ID},
    },
    ("/tasks/{task_id}", "delete", "200"): {
        "retry": {"operationId": "retry_task", "parameters": TASK_ID},
        "get": {"operationId": "get_task", "parameters": TASK_ID},
    },
    ("/tasks/{task_id}/retry", "post", "200"): {
        "cancel": {"operationId": "cancel_task", "parameters": TASK_ID},
        "get": {"operationId": "get_task", "parameters": TASK_ID},
    },
    ("/tasks/{task_id}", "get", "200"): {
        "older events": {
            "operationId": "get_task",
            "parameters": {**TASK_ID, "events_before": "$response.body#/events_cursor"},
        },
    },
}
OPERATION_IDS = {
    ("/tasks/{task_id}", "get"): "get_task",
    ("/tasks/{task_id}", "delete"): "cancel_task",
    ("/tasks/{task_id}/retry", "post"): "retry_task",
}


def with_links(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with OpenAPI links from submit to get, cancel and retry, and between them."""
    linked = copy.deepcopy(spec)
    for (path, method), operation_id in OPERATION_IDS.items():
        linked["paths"][path][method]["operationId"] = operation_id
    for (path, method, status), links in LINKS.items():
        linked["paths"][path][method]["responses"][status]["links"] = links
    return linked


def test_stateful_sequences_of_submit_get_cancel_retry_give_no_5xx(
    seeded: dict[str, list[str]],
) -> None:
    """Given links between the task routes, when schemathesis chains them (a submitted task
    fetched, cancelled, retried, paged), then every answer conforms and none is a 5xx.

    Hypothesis replays a scenario to shrink it and stops with FlakyStrategyDefinition when
    the replay draws differently; the draws follow the answers (a link needs its 201), so
    each scenario starts from the same world: a caller of its own, named by a counter (no
    uuid), with the run derandomized.
    """
    schema = schemathesis.openapi.from_dict(with_documented_errors(with_links(fetch_spec())))
    adapter = LambdaWsgiAdapter(default_sub=FUZZER)
    callers = itertools.count()

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            adapter.default_sub = f"stateful-{next(callers)}"

        def before_call(self, case: Any) -> None:
            # A submit with a real type and valid params (the rest as generated), so that most
            # scenarios get a task to chain: random params almost never pass a type's model.
            submit = case.method.upper() == "POST" and case.path == "/tasks"
            if submit and isinstance(case.body, dict):
                case.body = {**case.body, "type": EMAIL["type"], "params": EMAIL["params"]}

        def call(self, case: Any, **kwargs: Any) -> Any:
            return case.call(app=adapter)

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS, transport_kwargs={"app": adapter})

    Machine.run(
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=6,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    print(
        f"\nstateful: {adapter.requests} requests, statuses {dict(sorted(adapter.statuses.items()))}"
    )
    assert adapter.statuses.get(500, 0) == 0
    assert adapter.requests > 0


# ------------------------------------------------------------------ targeted bad input


def raw_submit(raw: str, *, content_type: str = "application/json", **kwargs: Any) -> ApiResponse:
    return call_api(
        http_event(
            "POST",
            "/tasks",
            raw_body=raw,
            headers={"content-type": content_type},
            sub=kwargs.pop("sub", FUZZER),
            **kwargs,
        )
    )


def own_task_count(sub: str = FUZZER) -> int:
    return len(api("GET", "/tasks", sub=sub, query={"limit": "100"}).body["items"])


def test_params_nested_10000_deep_are_rejected_with_4xx(api_env: World) -> None:
    """Given params nested 10,000 objects deep (60 KB), the answer is a 4xx, not a crash."""
    depth = 10_000
    raw = '{"type": "EMAIL", "params": ' + '{"a": ' * depth + "1" + "}" * depth + "}"
    assert len(raw) < 256 * 1024
    who = fresh_user()
    response = raw_submit(raw, sub=who)
    assert_error_shape(response)
    assert own_task_count(who) == 0


def test_lists_nested_10000_deep_in_an_upload_are_rejected_with_4xx(
    api_env: World,
) -> None:
    raw = '{"filename": ' + "[" * 10_000 + "]" * 10_000 + "}"
    response = call_api(http_event("POST", "/uploads", raw_body=raw, sub=FUZZER))
    assert_error_shape(response)


@pytest.mark.parametrize("size", [256 * 1024 + 1, 6 * 1024 * 1024])
def test_body_over_the_limit_is_413(api_env: World, size: int) -> None:
    padding = "x" * size
    response = raw_submit(json.dumps({**EMAIL, "params": {**EMAIL["params"], "body": padding}}))
    assert_error_shape(response, 413)
    assert response.body["error"]["code"] == "payload_too_large"


def test_body_just_under_the_limit_with_a_huge_string_is_422(api_env: World) -> None:
    """200 KB in a field capped at 10,000 characters: a validation error, not a crash."""
    body = {**EMAIL, "params": {**EMAIL["params"], "body": "é" * 100_000}}
    response = raw_submit(json.dumps(body, ensure_ascii=False))
    assert_error_shape(response, 422)


def test_many_keys_in_params_are_rejected(api_env: World) -> None:
    params = {f"k{i}": i for i in range(20_000)}
    response = raw_submit(json.dumps({"type": "EMAIL", "params": params}))
    assert_error_shape(response)


INVALID_UTF8 = [b"\xff\xfe\xfd", b'{"type": "EMAIL\xc3\x28"}', b"\xed\xa0\x80", b"\x80"]


@pytest.mark.parametrize("path", ["/tasks", "/uploads", "/tasks/" + "0" * 32 + "/retry"])
@pytest.mark.parametrize("payload", INVALID_UTF8, ids=lambda b: b.hex())
def test_body_that_is_not_utf8_is_400(api_env: World, path: str, payload: bytes) -> None:
    """Given a base64 body whose bytes are not UTF-8, the answer is 400 malformed body."""
    event = http_event("POST", path, sub=FUZZER)
    event["body"] = base64.b64encode(payload).decode()
    event["isBase64Encoded"] = True
    response = call_api(event)
    assert_error_shape(response, 400)


def test_base64_body_that_is_valid_utf8_json_is_accepted(api_env: World) -> None:
    response = call_api(http_event("POST", "/tasks", body=EMAIL, sub=FUZZER, base64_body=True))
    assert response.status == 201, response.body


ODD_TEXT = [
    "nul\u0000inside",
    "\u202eRTL override\u202c",
    "emoji 🧨👩🏽‍🚀",
    "zero\u200bwidth",
    "\ufeffBOM",
    "combining e\u0301\u0301\u0301",
]


@pytest.mark.parametrize("text", ODD_TEXT, ids=range(len(ODD_TEXT)))
def test_odd_unicode_in_params_round_trips_or_is_rejected(api_env: World, text: str) -> None:
    body = {"type": "EMAIL", "params": {**EMAIL["params"], "subject": text, "body": text}}
    response = raw_submit(json.dumps(body))
    if response.status == 201:
        task = api("GET", f"/tasks/{response.body['id']}", sub=FUZZER).body
        assert task["params"]["subject"] == text
    else:
        assert_error_shape(response)


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "a\\udc00b", "\\ud83d"])
def test_lone_surrogates_escaped_in_json_are_rejected_with_4xx(api_env: World, escape: str) -> None:
    """A lone surrogate is valid JSON text but no Unicode string: 4xx, never a crash."""
    count = EMAIL["params"]["recipient_count"]
    raw = (
        f'{{"type": "EMAIL", "params": {{"recipient_count": {count}, '
        f'"subject": "{escape}", "body": "{escape}"}}}}'
    )
    response = raw_submit(raw)
    assert_error_shape(response)


@pytest.mark.parametrize("where", ["type", "upload filename", "idempotency record"])
def test_lone_surrogates_in_other_json_fields_are_4xx(api_env: World, where: str) -> None:
    if where == "type":
        response = raw_submit('{"type": "EMAIL\\ud800", "params": {}}')
    elif where == "upload filename":
        raw = '{"filename": "a\\ud800.csv", "content_type": "text/csv", "size": 1}'
        response = call_api(http_event("POST", "/uploads", raw_body=raw, sub=FUZZER))
    else:
        raw = '{"type": "EMAIL", "params": {"recipient_count": 1, "subject": "s", "body": "b",'
        raw += ' "fields": {"a\\udc00@example.com": {"name": "x"}}}}'
        response = raw_submit(raw)
    assert_error_shape(response)


NUMBERS = [
    "1e309",
    "-1e309",
    "-1",
    "0",
    "-0",
    "1.5",
    "18446744073709551616",
    "1e400",
    "NaN",
    "Infinity",
    "-Infinity",
    "[1]",
    "{}",
    "null",
]
# (pydantic's lax mode reads true and "1" as 1 and 1e-400 as 0: coercions, not holes.)
NUMBER_FIELDS = ["max_attempts", "delay_seconds", "timeout_seconds", "recipient_count", "rate"]
# The only (field, value) pairs that are in range: accepted with 201.
VALID_NUMBERS = {
    ("delay_seconds", "0"),
    ("delay_seconds", "-0"),
    ("rate", "1.5"),
    ("delay_seconds", "null"),
    ("max_attempts", "null"),
    ("timeout_seconds", "null"),
}


def number_body(field: str, number: str) -> str:
    params = '{"recipient_count": %s, "subject": "s", "body": "b"%s}'
    if field == "recipient_count":
        return '{"type": "EMAIL", "params": %s}' % (params % (number, ""))
    if field == "rate":
        return '{"type": "EMAIL", "params": %s}' % (params % (1, ', "rate_per_second": ' + number))
    return '{{"type": "EMAIL", "params": {}, "{}": {}}}'.format(params % (1, ""), field, number)


@pytest.mark.parametrize("number", NUMBERS)
@pytest.mark.parametrize("field", NUMBER_FIELDS)
def test_negative_huge_and_odd_numbers_are_4xx(api_env: World, number: str, field: str) -> None:
    response = raw_submit(number_body(field, number))
    if (field, number) in VALID_NUMBERS:
        assert response.status == 201, response.body
    else:
        assert_error_shape(response)


@pytest.mark.parametrize("field", NUMBER_FIELDS)
def test_integer_of_5000_digits_is_400(api_env: World, field: str) -> None:
    response = raw_submit(number_body(field, "9" * 5000))
    assert_error_shape(response, 400)


@pytest.mark.parametrize(
    "number", ["-1", "0", "101", "18446744073709551616", "1e309", "1.5", "abc", "", "9" * 5000]
)
def test_list_limit_out_of_range_is_422(api_env: World, number: str) -> None:
    response = api("GET", "/tasks", sub=FUZZER, query={"limit": number})
    assert_error_shape(response, 422)


@pytest.mark.parametrize("size", ["-1", "0", "104857601", "18446744073709551616", "1e309"])
def test_upload_size_out_of_range_is_422(api_env: World, size: str) -> None:
    raw = f'{{"filename": "a.csv", "content_type": "text/csv", "size": {size}}}'
    response = call_api(http_event("POST", "/uploads", raw_body=raw, sub=FUZZER))
    assert_error_shape(response)


JSON_TEXT = json.dumps(EMAIL)


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [
        ("application/x-www-form-urlencoded", "type=EMAIL&params=%7B%7D"),
        ("application/x-www-form-urlencoded", JSON_TEXT),
        pytest.param(
            "multipart/form-data; boundary=x",
            '--x\r\nContent-Disposition: form-data; name="type"\r\n\r\nEMAIL\r\n--x--\r\n',
        ),
        pytest.param("text/plain", "type: EMAIL"),
        pytest.param("text/plain", JSON_TEXT),
        pytest.param("application/xml", "<task><type>EMAIL</type></task>"),
        ("", "type: EMAIL"),
    ],
    ids=["form", "form-json", "multipart", "text", "text-json", "xml", "none"],
)
def test_wrong_content_type_is_4xx_in_the_error_shape(
    api_env: World, content_type: str, raw: str
) -> None:
    """Only JSON is accepted; anything else is a 4xx in the documented error shape."""
    who = fresh_user()
    response = raw_submit(raw, content_type=content_type, sub=who)
    assert_error_shape(response)
    assert response.status in (400, 415, 422)
    assert own_task_count(who) == 0


@pytest.mark.parametrize("raw", ["\x07", "not json", "{", "[1", "'x'"])
def test_retry_with_a_body_that_is_not_json_is_400(
    api_env: World, seeded: dict[str, list[str]], raw: str
) -> None:
    path = f"/tasks/{seeded['own'][1]}/retry"
    response = call_api(http_event("POST", path, raw_body=raw, sub=FUZZER))
    assert_error_shape(response, 400)


@pytest.mark.parametrize("path", ["/nope", "/tasks/a\u0301b/retry", "/tasks/x/y/z"])
def test_unmatched_route_with_a_body_that_is_not_json_is_a_4xx(api_env: World, path: str) -> None:
    response = call_api(http_event("POST", path, raw_body="x", sub=FUZZER))
    assert_error_shape(response)


TRAVERSAL_NAMES = [
    "../x",
    "..\\x",
    "/abs",
    "a/b",
    "%2e%2e%2f",
    "..",
    ".",
    "./x",
    "a\\b",
    "x\u0000.csv",
    "..%2fx",
    "%2Fetc%2Fpasswd",
    " a.csv",
    "a.csv\n",
]


@pytest.mark.parametrize("filename", TRAVERSAL_NAMES)
def test_upload_filename_with_a_path_is_refused(api_env: World, filename: str) -> None:
    body = {"filename": filename, "content_type": "text/csv", "size": 10}
    response = api("POST", "/uploads", sub=FUZZER, body=body)
    assert_error_shape(response, 422)


@pytest.mark.parametrize(
    "prefix",
    [
        f"uploads/{FUZZER}/../{ALICE}/" + "0" * 32 + "/",
        f"uploads/../{ALICE}/" + "0" * 32 + "/",
        f"uploads/{ALICE}/" + "0" * 32 + "/",
        f"uploads/{FUZZER}/" + "0" * 32 + "/../",
        f"results/{FUZZER}/" + "0" * 32 + "/",
        f"/uploads/{FUZZER}/" + "0" * 32 + "/",
        f"uploads/{FUZZER}/%2e%2e/" + "0" * 32 + "/",
    ],
)
def test_upload_prefix_outside_the_callers_folder_is_refused(api_env: World, prefix: str) -> None:
    body = {"filename": "a.csv", "content_type": "text/csv", "size": 10, "prefix": prefix}
    response = api("POST", "/uploads", sub=FUZZER, body=body)
    assert_error_shape(response)


INJECTIONS = {
    "type": [
        "EMAIL OR 1=1",
        "EMAIL' OR '1'='1",
        "EMAIL#STATUS#SUCCESS",
        "EMAIL) OR (#x",
        ":p",
        "#p",
    ],
    "status": [
        "PENDING) OR (#x",
        "PENDING OR 1=1",
        "PENDING#TYPE#EMAIL",
        ":p",
        "attribute_exists(pk)",
    ],
    "cursor": [":p", "#p", "' OR 1=1 --", "eyJ2IjoxfQ", "{}", "null", "A" * 4096, "%00", "=="],
    "created_after": [":lo", "2026-01-01T00:00:00Z OR ck > :lo", "#p", "ck"],
    "created_before": [":hi", "9999-99-99", "2026-01-01T00:00:00Z) OR (#p = :p"],
}


@pytest.mark.parametrize(
    ("name", "value"), [(n, v) for n, values in INJECTIONS.items() for v in values]
)
def test_expression_injection_in_list_filters_is_rejected(
    api_env: World, seeded: dict[str, list[str]], name: str, value: str
) -> None:
    """Filters and cursors never reach an expression: each is 400/422, nothing leaks."""
    response = api("GET", "/tasks", sub=FUZZER, query={name: value})
    assert_error_shape(response)
    assert response.status in (400, 422)


def test_expression_injection_in_the_task_id_is_404(
    api_env: World, seeded: dict[str, list[str]]
) -> None:
    for task_id in [":pk", "x OR 1=1", seeded["alice"][0] + "#META", "*", "%", "META"]:
        for method, path in [
            ("GET", "/tasks/{}"),
            ("DELETE", "/tasks/{}"),
            ("POST", "/tasks/{}/retry"),
        ]:
            response = api(method, path.format(task_id), sub=FUZZER)
            assert response.status in (404, 422), (method, task_id, response.body)
            assert_error_shape(response)


# ------------------------------------------------------------------ forged cursors


def decode_cursor(cursor: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    )
    return decoded


def encode_cursor(document: dict[str, Any]) -> str:
    raw = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def fingerprint(owner: str, index: str = "by_owner") -> str:
    """The cursor's filter fingerprint, recomputed the way the store does (it is no secret)."""
    import hashlib

    return hashlib.sha256(
        json.dumps([owner, index, None, None, "None", "None"]).encode()
    ).hexdigest()[:16]


OWNER_A, OWNER_B = "user-cursor-a", "user-cursor-b"


@pytest.fixture(scope="module")
def two_owners(world: World) -> dict[str, Any]:
    """A and B with eight tasks each, and a first page (limit 3) of each."""
    ids: dict[str, list[str]] = {OWNER_A: [], OWNER_B: []}
    for owner in (OWNER_A, OWNER_B):
        for _ in range(8):
            ids[owner].append(api("POST", "/tasks", sub=owner, body=EMAIL).body["id"])
    pages = {owner: api("GET", "/tasks", sub=owner, query={"limit": "3"}).body for owner in ids}
    assert all(page["next_cursor"] for page in pages.values())
    return {"ids": ids, "pages": pages}


def test_cursor_format_is_as_documented(two_owners: dict[str, Any]) -> None:
    cursor = decode_cursor(two_owners["pages"][OWNER_A]["next_cursor"])
    assert cursor["v"] == 1
    assert cursor["f"] == fingerprint(OWNER_A)
    assert isinstance(cursor["p"], dict) and cursor["p"]


def test_another_owners_cursor_is_refused(two_owners: dict[str, Any]) -> None:
    alice_cursor = two_owners["pages"][OWNER_A]["next_cursor"]
    response = api("GET", "/tasks", sub=OWNER_B, query={"limit": "3", "cursor": alice_cursor})
    assert_error_shape(response, 400)


def test_cursor_forged_with_another_owners_fingerprint_and_positions_is_refused(
    two_owners: dict[str, Any],
) -> None:
    bob_cursor = decode_cursor(two_owners["pages"][OWNER_B]["next_cursor"])
    alice_cursor = decode_cursor(two_owners["pages"][OWNER_A]["next_cursor"])
    forged = {**bob_cursor, "f": fingerprint(OWNER_A), "p": alice_cursor["p"]}
    response = api(
        "GET", "/tasks", sub=OWNER_B, query={"limit": "3", "cursor": encode_cursor(forged)}
    )
    assert_error_shape(response, 400)


def test_cursor_with_own_fingerprint_and_another_owners_positions_shows_only_own_tasks(
    two_owners: dict[str, Any],
) -> None:
    """Positions only say where to resume in the caller's own partitions."""
    bob_cursor = decode_cursor(two_owners["pages"][OWNER_B]["next_cursor"])
    alice_cursor = decode_cursor(two_owners["pages"][OWNER_A]["next_cursor"])
    a_positions = {shard: position for shard, position in alice_cursor["p"].items() if position}
    # The sort keys of A's tasks, as positions in every shard of B's partitions.
    a_items = api("GET", "/tasks", sub=OWNER_A, query={"limit": "100"}).body["items"]
    a_cks = [f"{item['created_at']}#{item['id']}" for item in a_items]
    assert len(a_cks) == 8
    forged_sets = [
        {**bob_cursor, "p": a_positions},
        *({**bob_cursor, "p": {str(s): ck for s in range(32)}} for ck in a_cks[::3]),
        {**bob_cursor, "p": {"0": a_cks[0]}},
    ]
    for forged in forged_sets:
        cursor = encode_cursor(forged)
        seen: list[str] = []
        for _ in range(10):
            response = api("GET", "/tasks", sub=OWNER_B, query={"limit": "3", "cursor": cursor})
            if response.status == 400:
                assert_error_shape(response, 400)
                break
            assert response.status == 200, response.body
            seen += [item["id"] for item in response.body["items"]]
            cursor = response.body["next_cursor"]
            if not cursor:
                break
        assert set(seen) <= set(two_owners["ids"][OWNER_B]), "another owner's task leaked"


@pytest.mark.parametrize(
    "mutation",
    [
        lambda c: {**c, "v": 2},
        lambda c: {**c, "p": {"99": None}},
        lambda c: {**c, "p": {"0": "not a ck"}},
        lambda c: {**c, "p": {"0": {"S": "x"}}},
        lambda c: {**c, "p": {"-1": None}},
        lambda c: {**c, "p": {"0": "2026-01-01T00:00:00.000000Z#" + "0" * 32 + "#META"}},
        lambda c: {**c, "p": []},
        lambda c: {k: v for k, v in c.items() if k != "p"},
        lambda c: [c],
    ],
    ids=[
        "version",
        "shard",
        "ck",
        "attribute-value",
        "negative-shard",
        "suffix",
        "list",
        "no-p",
        "array",
    ],
)
def test_tampered_cursor_is_400(two_owners: dict[str, Any], mutation: Any) -> None:
    cursor = decode_cursor(two_owners["pages"][OWNER_B]["next_cursor"])
    response = api(
        "GET",
        "/tasks",
        sub=OWNER_B,
        query={"limit": "3", "cursor": encode_cursor(mutation(cursor))},
    )
    assert_error_shape(response, 400)


# ------------------------------------------------------------------ the served spec


def test_served_spec_documents_every_error_answer(api_env: World) -> None:
    """Every protected operation documents 401 and 422, and every error in the one shape."""
    spec = fetch_spec()
    missing, wrong_shape = [], []
    for path, operations_ in spec["paths"].items():
        for method, operation in operations_.items():
            label = f"{method.upper()} {path}"
            if path != "/health":
                missing += [
                    f"{label} {code}"
                    for code in ("401", "422")
                    if code not in operation["responses"]
                ]
            for code, answer in operation["responses"].items():
                if code.startswith("4"):
                    schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
                    if not schema.get("$ref", "").endswith("/ErrorResponse"):
                        wrong_shape.append(f"{label} {code}")
    assert not missing, missing
    assert not wrong_shape, wrong_shape


def test_served_spec_documents_200_for_cancel(api_env: World) -> None:
    spec = fetch_spec()
    assert "200" in spec["paths"]["/tasks/{task_id}"]["delete"]["responses"]


def test_served_spec_declares_the_jwt_security_scheme(api_env: World) -> None:
    spec = fetch_spec()
    assert spec.get("components", {}).get("securitySchemes")
    protected = spec["paths"]["/tasks"]["get"]
    assert protected.get("security") or spec.get("security")
