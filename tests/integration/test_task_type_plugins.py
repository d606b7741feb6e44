"""A task type from outside the core layer, through the handlers: TASK_TYPE_MODULES (as the
template's TaskTypeModules parameter sets it) makes the API list and accept it and the worker
run it; a broken plugin fails loudly where it is needed and leaves the built-in types alone."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from taskqueue import wiring
from taskqueue.errors import TaskTypeRegistryError
from taskqueue.models import TaskStatus
from tests.helpers import Pipeline, call_api, http_event, reset_function_caches

COUNTDOWN_MODULE = "tests.task_type_plugins.countdown"


@pytest.fixture
def plugin_env(
    function_env: Callable[[str], dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], dict[str, str]]]:
    """The functions' environment with TASK_TYPE_MODULES set to the given modules."""

    def apply(modules: str) -> dict[str, str]:
        env = function_env("WorkerFunction")  # the functions share their variables
        monkeypatch.setenv("TASK_TYPE_MODULES", modules)
        reset_function_caches()
        return {**env, "TASK_TYPE_MODULES": modules}

    yield apply
    reset_function_caches()


def test_a_plugin_type_is_listed_submitted_and_run_to_success(
    plugin_env: Callable[[str], dict[str, str]],
) -> None:
    # Given the countdown plugin configured for the functions
    env = plugin_env(COUNTDOWN_MODULE)
    # When the page asks for the task types
    listed = call_api(http_event("GET", "/task-types"))
    # Then COUNTDOWN is there with its params schema, beside the built-ins
    assert listed.status == 200
    by_name = {t["name"]: t for t in listed.body}
    assert sorted(by_name) == ["COUNTDOWN", "DATA_PROCESSING", "EMAIL", "IMAGE_PROCESSING"]
    assert by_name["COUNTDOWN"]["params_schema"]["properties"]["start"]["maximum"] == 100
    # When a COUNTDOWN task is submitted and the queue drained through the worker
    submitted = call_api(
        http_event("POST", "/tasks", body={"type": "COUNTDOWN", "params": {"start": 3}})
    )
    assert submitted.status == 201, submitted.body
    Pipeline(boto3.client("sqs"), [env["QUEUE_URL"]]).run()
    # Then it ran its three chunks to an exact result
    task = wiring.new_store(wiring.settings()).tasks.get(submitted.body["id"])
    assert task.status == TaskStatus.SUCCESS
    assert task.result == {"said": [3, 2, 1], "lift_off": True}
    assert (task.units_done, task.units_total) == (3, 3)


def test_a_plugin_type_validates_its_params_like_a_builtin(
    plugin_env: Callable[[str], dict[str, str]],
) -> None:
    plugin_env(COUNTDOWN_MODULE)
    answer = call_api(
        http_event("POST", "/tasks", body={"type": "COUNTDOWN", "params": {"start": 101}})
    )
    assert answer.status == 422
    assert answer.body["error"]["details"][0]["loc"] == ["body", "params", "start"]


def test_without_the_setting_a_plugin_type_is_unknown(
    plugin_env: Callable[[str], dict[str, str]],
) -> None:
    plugin_env("")
    answer = call_api(
        http_event("POST", "/tasks", body={"type": "COUNTDOWN", "params": {"start": 3}})
    )
    assert answer.status == 422
    assert answer.body["error"]["message"] == "unknown task type 'COUNTDOWN'"


def test_a_broken_plugin_fails_the_routes_that_need_it_and_spares_the_builtins(
    plugin_env: Callable[[str], dict[str, str]],
) -> None:
    # Given a configured plugin whose import fails
    plugin_env("tests.task_type_plugins.broken")
    # When a built-in type is submitted, it is accepted: built-in names never load plugins
    submitted: Any = call_api(
        http_event("POST", "/tasks", body={"type": "EMAIL", "params": _email()})
    )
    assert submitted.status == 201, submitted.body
    # When the types are listed, the invocation fails with the plugin's name (a 5xx on AWS)
    with pytest.raises(TaskTypeRegistryError, match=r"tests\.task_type_plugins\.broken"):
        call_api(http_event("GET", "/task-types"))


def _email() -> dict[str, Any]:
    return {"recipient_count": 1, "subject": "s", "body": "b"}
