"""URL_CHECK as deployed: registered from outside the core layer (TASK_TYPE_MODULES, or the
entry point this distribution declares), listed and validated by the API, run by the worker
from its queue message, its result and CSV where the API shows them."""

from __future__ import annotations

import json
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

from devstack.harness import InProcessStack
from taskqueue.task_types import ENTRY_POINT_GROUP, TaskTypeRegistry

from url_check.task import URL_CHECK

from .support import Web

PACKAGE = Path(__file__).resolve().parents[1]
METADATA = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"


def test_the_api_lists_url_check_beside_the_built_in_types(stack: InProcessStack) -> None:
    answer = stack.api("GET", "/task-types")
    assert answer.status == 200
    by_name = {t["name"]: t for t in answer.body}
    assert {"DATA_PROCESSING", "EMAIL", "IMAGE_PROCESSING", "URL_CHECK"} <= set(by_name)
    schema = by_name["URL_CHECK"]["params_schema"]
    assert schema["properties"]["timeout_seconds"]["maximum"] == 30


def test_a_check_runs_through_the_worker_to_an_exact_result(
    stack: InProcessStack, web: Web
) -> None:
    # Given URLs that answer, answer 404, and point at the metadata service
    urls = [web.url("/ok"), web.url("/status/404"), METADATA, web.url("/redirect?to=/ok")]
    submitted = stack.submit("URL_CHECK", {"urls": urls, "urls_per_chunk": 2})
    # When the worker has run it from its queue
    stack.drain()
    # Then it succeeded with two failed items, each named, and its CSV is offered for download
    task = stack.task(submitted["id"])
    assert (task["status"], task["units_done"], task["units_total"]) == ("SUCCESS", 4, 4)
    assert task["failed_items"] == 2
    result = task["result"]
    assert (result["urls"], result["ok"], result["failed"]) == (4, 2, 2)
    assert result["by_status"] == {"200": 2, "404": 1}
    assert result["failure_codes"] == {"blocked_address": 1, "http_error": 1}
    assert [d["key"].rsplit("/", 1)[1] for d in task["downloads"]] == ["url-check.csv"]
    # And the metadata service was never asked: every request the server saw was to itself
    assert web.hosts == [web.base.removeprefix("http://")] * 4


def test_a_task_whose_every_url_fails_is_failed_with_its_result_kept(
    stack: InProcessStack, web: Web
) -> None:
    submitted = stack.submit("URL_CHECK", {"urls": [web.url("/status/500"), METADATA]})
    stack.drain()
    task = stack.task(submitted["id"])
    assert (task["status"], task["error"]["type"], task["attempts"]) == (
        "FAILED",
        "all_items_failed",
        1,
    )
    assert task["result"]["failure_codes"] == {"blocked_address": 1, "http_error": 1}


def test_an_uploaded_list_is_checked(stack: InProcessStack, web: Web) -> None:
    key = "uploads/alice/links.csv"
    body = f"url\n{web.url('/ok')}\n# skipped\n{web.url('/bytes/10')}\n"
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=body.encode())
    submitted = stack.submit("URL_CHECK", {"input_key": key})
    stack.drain()
    task = stack.task(submitted["id"])
    assert (task["status"], task["result"]["urls"], task["result"]["bytes"]) == ("SUCCESS", 2, 15)


def test_a_list_that_does_not_exist_fails_at_once_without_retries(stack: InProcessStack) -> None:
    submitted = stack.submit("URL_CHECK", {"input_key": "uploads/alice/none.csv"})
    stack.drain()
    task = stack.task(submitted["id"])
    assert (task["status"], task["error"]["type"], task["attempts"]) == (
        "FAILED",
        "input_not_found",
        1,
    )


def test_bad_params_are_refused_at_the_field_and_nothing_is_stored(stack: InProcessStack) -> None:
    answer = stack.api(
        "POST", "/tasks", {"type": "URL_CHECK", "params": {"urls": ["gopher://old.example/"]}}
    )
    assert answer.status == 422
    assert answer.body["error"]["details"][0]["loc"] == ["body", "params", "urls", 0]
    assert stack.api("GET", "/tasks").body["items"] == []


def test_the_sample_events_are_a_submit_the_api_takes_and_one_it_refuses(
    stack: InProcessStack,
) -> None:
    events = PACKAGE / "events"
    accepted = stack.invoke(
        "ApiFunction", json.loads((events / "api_submit_url_check.json").read_text())
    )
    refused = stack.invoke(
        "ApiFunction", json.loads((events / "api_submit_url_check_invalid.json").read_text())
    )
    assert (accepted["statusCode"], refused["statusCode"]) == (201, 422)
    assert json.loads(refused["body"])["error"]["details"][0]["loc"] == [
        "body",
        "params",
        "urls",
        1,
    ]


def test_the_declared_entry_point_registers_url_check() -> None:
    # Given the entry point as pyproject.toml declares it (what an installed copy provides)
    declared = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]["entry-points"]
    (name, value), *others = declared[ENTRY_POINT_GROUP].items()
    assert others == []
    entry_point = EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)
    # When the core's registry reads it
    registry = TaskTypeRegistry(entry_points=lambda: [entry_point])
    # Then the name resolves to this package's type, beside the built-ins
    assert registry["URL_CHECK"] is URL_CHECK
    assert sorted(registry) == ["DATA_PROCESSING", "EMAIL", "IMAGE_PROCESSING", "URL_CHECK"]
