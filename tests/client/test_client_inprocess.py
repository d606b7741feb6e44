"""Every route through the client, against the API handler and the worker in this process
(moto behind them): what a program using `taskqueue_client` sees."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskqueue_client import (
    Client,
    Conflict,
    NotFound,
    TaskFailed,
    TaskStatus,
    Unauthorized,
    ValidationFailed,
    WaitTimeout,
)
from taskqueue_client.client import Task
from tests.client.support import API_URL, IMAGES, LambdaTransport, jwt_for, step
from tests.helpers import (
    FakeLambdaContext,
    load_function,
    reset_function_caches,
    sqs_event,
    sqs_record,
)
from tests.pipeline_world import OWNER, World


def states(seen: list[Task]) -> list[tuple[str, int]]:
    return [(task.status.value, task.progress) for task in seen]


# ------------------------------------------------------------------ submit, wait, get


def test_submit_then_wait_reports_each_new_state_until_success(
    make_client: Callable[..., Client], world: World
) -> None:
    # Given a client whose pauses between polls let the worker run one chunk
    client = make_client(sleep=lambda seconds: step(world))
    seen: list[Task] = []
    # When an image task of three chunks is submitted and waited for
    task = client.submit("IMAGE_PROCESSING", IMAGES).wait(timeout=60, on_progress=seen.append)
    # Then it succeeded, and each state seen was reported once, in order, progress rising
    assert task.status is TaskStatus.SUCCESS and task.progress == 100
    assert states(seen)[0] == ("PENDING", 0)
    assert states(seen)[-1] == ("SUCCESS", 100)
    assert len(set(states(seen))) == len(seen) >= 3
    assert [p for _, p in states(seen)] == sorted(p for _, p in states(seen))
    # And the task read by wait is the detail: events and download links
    assert [event.message for event in task.events][:2] == ["submitted", "started (attempt 1 of 3)"]
    assert len(task.downloads) == 3


def test_wait_all_reads_many_tasks_with_one_listing_per_round(
    make_client: Callable[..., Client], world: World, transport: LambdaTransport
) -> None:
    # Given five submitted tasks, and pauses in which the worker drains the queues
    client = make_client(sleep=lambda seconds: world.pipeline().run())
    tasks = [client.submit("DATA_PROCESSING", {"rows": 10 + n}) for n in range(5)]
    sent = len(transport.requests)
    # When they are waited for together
    finished = client.wait_all(tasks, timeout=60)
    # Then all succeeded, returned in the order given, read by listing, not one GET each
    assert [(t.id, t.status) for t in finished] == [(t.id, TaskStatus.SUCCESS) for t in tasks]
    paths = {request.url.path for request in transport.requests[sent:]}
    assert paths == {"/tasks"}


def test_wait_all_of_ids_reads_them_one_by_one_first(
    client: Client, world: World, transport: LambdaTransport
) -> None:
    ids = [client.submit("DATA_PROCESSING", {"rows": 10}).id for _ in range(4)]
    world.pipeline().run()
    sent = len(transport.requests)
    assert all(t.status is TaskStatus.SUCCESS for t in client.wait_all(ids))
    assert sorted(r.url.path for r in transport.requests[sent:]) == sorted(
        f"/tasks/{i}" for i in ids
    )


def test_wait_gives_up_after_its_timeout_with_the_last_state(
    make_client: Callable[..., Client],
) -> None:
    # Given a clock that moves 10 s at every pause, and no worker running
    now = [0.0]
    client = make_client(
        clock=lambda: now[0], sleep=lambda seconds: now.__setitem__(0, now[0] + 10)
    )
    task = client.submit("DATA_PROCESSING", {"rows": 10})
    # When it is waited for 25 s
    with pytest.raises(WaitTimeout) as raised:
        task.wait(timeout=25)
    # Then the error carries the task as last seen
    assert raised.value.task.id == task.id
    assert raised.value.task.status is TaskStatus.PENDING
    assert now[0] == 30


def test_submit_twice_with_one_idempotency_key_gives_one_task(client: Client) -> None:
    first = client.submit("DATA_PROCESSING", {"rows": 10}, idempotency_key="nightly-2026-11-24")
    again = client.submit("DATA_PROCESSING", {"rows": 10}, idempotency_key="nightly-2026-11-24")
    assert again.id == first.id
    assert [task.id for task in client.list()] == [first.id]


class LoseFirstAnswer(httpx.BaseTransport):
    """The first POST /tasks is processed by the API, but its answer is lost (a 502)."""

    def __init__(self, inner: LambdaTransport) -> None:
        self.inner = inner
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST" and request.url.path == "/tasks" and not self.lost:
            self.lost += 1
            return httpx.Response(502, json={"message": "Internal Server Error"})
        return response


def test_a_submit_whose_answer_was_lost_is_retried_into_the_same_task(
    transport: LambdaTransport,
) -> None:
    # Given an API whose first answer to a submit is lost after the task was written
    lossy = LoseFirstAnswer(transport)
    client = Client(API_URL, jwt_for(OWNER), transport=lossy, sleep=lambda s: None)
    # When a task is submitted
    task = client.submit("DATA_PROCESSING", {"rows": 10})
    # Then the client's retry got the very task of the first attempt: there is one
    assert lossy.lost == 1
    assert [t.id for t in client.list()] == [task.id]


def test_invalid_params_raise_validation_failed_naming_the_field(client: Client) -> None:
    with pytest.raises(ValidationFailed) as raised:
        client.submit("DATA_PROCESSING", {"rows": 0})
    assert raised.value.status == 422
    assert raised.value.code == "invalid_request"
    assert ["params", "rows"] in [detail["loc"][-2:] for detail in raised.value.details]
    assert list(client.list()) == []


def test_an_unknown_type_is_refused_with_the_apis_code(client: Client) -> None:
    with pytest.raises(ValidationFailed) as raised:
        client.submit("NO_SUCH_TYPE", {})
    assert raised.value.code == "invalid_request"
    assert "NO_SUCH_TYPE" in raised.value.message


def test_get_of_an_unknown_or_another_users_task_is_not_found(
    client: Client, make_client: Callable[..., Client]
) -> None:
    mine = client.submit("DATA_PROCESSING", {"rows": 10})
    with pytest.raises(NotFound) as raised:
        make_client(user="someone-else").get(mine.id)
    assert raised.value.code == "not_found"
    with pytest.raises(NotFound):
        client.get("0" * 32)


def test_without_a_token_the_api_answers_unauthorized(make_client: Callable[..., Client]) -> None:
    with pytest.raises(Unauthorized) as raised:
        make_client(user=None).stats()
    assert (raised.value.status, raised.value.code) == (401, "unauthorized")


# ------------------------------------------------------------------ list


def test_list_iterates_every_page_newest_first(client: Client, transport: LambdaTransport) -> None:
    # Given five tasks
    ids = [client.submit("DATA_PROCESSING", {"rows": 10 + n}).id for n in range(5)]
    sent = len(transport.requests)
    # When they are listed two per page
    listed = [task.id for task in client.list(page_size=2)]
    # Then all five come, newest first, in three requests
    assert listed == ids[::-1]
    assert len(transport.requests) - sent == 3


def test_list_filters_by_status_and_type_and_stops_at_its_limit(
    client: Client, transport: LambdaTransport
) -> None:
    data = [client.submit("DATA_PROCESSING", {"rows": 10}).id for _ in range(3)]
    email = client.submit("EMAIL", {"recipient_count": 1, "subject": "s", "body": "b"}).id
    client.cancel(data[0])
    client.cancel(email)
    assert [t.id for t in client.list(status="CANCELLED")] == [email, data[0]]
    assert [t.id for t in client.list(status=TaskStatus.PENDING, type="DATA_PROCESSING")] == [
        data[2],
        data[1],
    ]
    assert [t.id for t in client.list(type="EMAIL")] == [email]
    sent = len(transport.requests)
    assert [t.id for t in client.list(page_size=1, limit=2)] == [email, data[2]]
    assert len(transport.requests) - sent == 2  # no third page asked for


def test_list_since_a_time_leaves_out_older_tasks(client: Client) -> None:
    old = client.submit("DATA_PROCESSING", {"rows": 10})
    new = client.submit("DATA_PROCESSING", {"rows": 10})
    assert [t.id for t in client.list(created_after=new.view.created_at)] == [new.id]
    assert [t.id for t in client.list(created_before=new.view.created_at)] == [old.id]


# ------------------------------------------------------------------ cancel, retry


def test_cancel_of_a_pending_task_cancels_it_and_a_second_cancel_conflicts(
    client: Client,
) -> None:
    task = client.submit("DATA_PROCESSING", {"rows": 10})
    assert task.cancel().status is TaskStatus.CANCELLED
    with pytest.raises(Conflict) as raised:
        task.cancel()
    assert (raised.value.status, raised.value.code) == (409, "conflict")


def test_cancel_of_a_running_task_asks_it_to_stop_at_its_next_checkpoint(
    client: Client, world: World
) -> None:
    # Given an image task that ran one of its three chunks
    task = client.submit("IMAGE_PROCESSING", IMAGES)
    step(world)
    assert client.get(task).status is TaskStatus.RUNNING
    # When it is cancelled
    cancelled = client.cancel(task)
    # Then the cancel is requested, and the worker stops it at its next checkpoint
    assert cancelled.status is TaskStatus.RUNNING and cancelled.view.cancel_requested
    world.pipeline().run()
    assert client.get(task).status is TaskStatus.CANCELLED


def test_bulk_cancels_each_task_on_its_own_with_one_result_each(client: Client) -> None:
    pending = client.submit("DATA_PROCESSING", {"rows": 10})
    finished = client.submit("DATA_PROCESSING", {"rows": 10})
    finished.cancel()

    answer = client.bulk("cancel", [pending, finished.id])

    assert [(r.id, r.ok, r.status) for r in answer.results] == [
        (pending.id, True, TaskStatus.CANCELLED),
        (finished.id, False, None),
    ]
    assert answer.results[1].error is not None and answer.results[1].error.code == "conflict"


def test_retry_resumes_a_cancelled_task_which_then_succeeds(client: Client, world: World) -> None:
    task = client.submit("IMAGE_PROCESSING", IMAGES)
    step(world)
    client.cancel(task)
    world.pipeline().run()
    # When it is retried (resuming from its checkpoint)
    retried = client.retry(task)
    assert retried.status is TaskStatus.PENDING
    world.pipeline().run()
    # Then it finishes with all three images, the one before the cancel not redone
    done = client.get(task)
    assert done.status is TaskStatus.SUCCESS
    assert len(done.view.outputs) == 3


def test_retry_of_a_running_task_conflicts(client: Client, world: World) -> None:
    task = client.submit("IMAGE_PROCESSING", IMAGES)
    step(world)
    with pytest.raises(Conflict):
        client.retry(task, restart=True)


def test_a_failed_task_raises_task_failed_and_can_be_restarted(
    client: Client, world: World
) -> None:
    # Given a task of one attempt whose input does not exist
    missing = "uploads/user-123/none/missing.csv"
    task = client.submit("DATA_PROCESSING", {"input_key": missing}, max_attempts=1)
    world.pipeline().run()
    failed = client.get(task)
    assert failed.status is TaskStatus.FAILED
    # Then raise_for_failure raises with the task and its error
    with pytest.raises(TaskFailed) as raised:
        failed.raise_for_failure()
    assert raised.value.task.view.error is not None
    assert missing in raised.value.task.view.error.message
    # When it is retried from the start, it is queued again
    assert client.retry(task, restart=True).status is TaskStatus.PENDING


# ------------------------------------------------------------------ files


def test_upload_then_process_the_file_then_download_the_result(
    client: Client, world: World, tmp_path: Path
) -> None:
    # Given a CSV uploaded through the client
    source = tmp_path / "cities.csv"
    source.write_text("city,temp\nOslo,4.5\nRome,17\n")
    key = client.upload(source)
    assert key.startswith("uploads/user-123/") and key.endswith("/cities.csv")
    # When a task processes it
    task = client.submit("DATA_PROCESSING", {"input_key": key})
    world.pipeline().run()
    done = client.get(task)
    assert done.status is TaskStatus.SUCCESS
    # Then its result file downloads below the folder given, named after its key
    saved = client.download(done, tmp_path / "out")
    assert saved == [tmp_path / "out" / "result.json"]
    assert json.loads(saved[0].read_text())["rows"] == 2


def test_uploads_share_a_folder_when_given_the_first_ones_prefix(
    client: Client, tmp_path: Path
) -> None:
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    first.write_bytes(b"\x89PNG one")
    second.write_bytes(b"\x89PNG two")
    key = client.upload(first)
    prefix = key.rsplit("/", 1)[0] + "/"
    assert client.upload(second, prefix=prefix) == prefix + "b.png"


def test_an_upload_of_a_type_the_api_does_not_take_is_refused(
    client: Client, tmp_path: Path
) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("hello")
    with pytest.raises(ValidationFailed) as raised:
        client.upload(file)
    assert ["body", "content_type"] in [detail["loc"] for detail in raised.value.details]


def test_download_writes_every_output_of_an_image_task(
    client: Client, world: World, tmp_path: Path
) -> None:
    task = client.submit("IMAGE_PROCESSING", IMAGES)
    world.pipeline().run()
    saved = client.download(task, tmp_path)
    done = client.get(task)
    assert len(saved) == len(done.downloads) == len(done.view.outputs)
    images = [path for path in saved if path.suffix == ".png"]
    assert len(images) == 3
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in images)
    assert all(path.is_relative_to(tmp_path) for path in saved)


# ------------------------------------------------------------------ the other routes


def test_task_types_are_listed_with_their_params_schema(client: Client) -> None:
    types = {info.name: info for info in client.task_types()}
    assert {"DATA_PROCESSING", "EMAIL", "IMAGE_PROCESSING"} <= set(types)
    assert "rows" in types["DATA_PROCESSING"].params_schema["properties"]


def test_stats_count_the_callers_tasks(client: Client, world: World) -> None:
    client.submit("DATA_PROCESSING", {"rows": 10})
    client.cancel(client.submit("DATA_PROCESSING", {"rows": 10}))
    world.pipeline().run()
    world.counters.drain()
    stats = client.stats()
    assert stats.counts.by_status["SUCCESS"] == 1
    assert stats.counts.by_status["CANCELLED"] == 1
    assert stats.counts.by_status_type["SUCCESS"] == {"DATA_PROCESSING": 1}
    assert len(stats.throughput) == 60


def test_dead_letters_are_listed_and_redriven(
    client: Client, world: World, function_env: Callable[[str], dict[str, str]]
) -> None:
    # Given a task whose message died after five deliveries
    task = client.submit("DATA_PROCESSING", {"rows": 10})
    function_env("DlqFunction")
    reset_function_caches()
    record = sqs_record(json.dumps({"task_id": task.id}), receive_count=5)
    load_function("dlq").lambda_handler(sqs_event([record]), FakeLambdaContext())
    function_env("ApiFunction")
    reset_function_caches()
    # When the client lists the dead letters, then redrives them
    letters = client.dead_letters().items
    result = client.redrive()
    # Then the task was listed as FAILED, sent back once, and none remain
    assert [(d.task_id, d.task_status) for d in letters] == [(task.id, TaskStatus.FAILED)]
    assert (result.redriven, result.skipped) == (1, 0)
    assert client.dead_letters().items == []


def test_health_and_the_openapi_document_need_no_token(
    make_client: Callable[..., Client],
) -> None:
    anonymous = make_client(user=None)
    assert anonymous.health()["ok"] is True
    document: dict[str, Any] = anonymous.openapi()
    assert "/tasks/{task_id}" in document["paths"]
