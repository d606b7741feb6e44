"""Per-owner quotas: exact counters under concurrency, released once per finish, re-taken on
retry, raised per owner by the operator's LIMITS item, and answered as 429 with Retry-After."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
from botocore.exceptions import ClientError

from devstack.moto_patches import serialize_dynamodb_requests, undo_log_transactions
from taskqueue import wiring
from taskqueue.errors import EnqueueFailed, QuotaExceeded
from taskqueue.models import BulkRequest, SubmitTaskRequest, TaskStatus, UploadRequest, utcnow
from taskqueue.quotas import Quota, retry_after
from taskqueue.service import TaskService
from taskqueue.task_types import REGISTRY
from tests.helpers import call_api, http_event
from tests.pipeline_world import OWNER, World


@pytest.fixture
def service(world: World, monkeypatch: pytest.MonkeyPatch) -> TaskService:
    """The API's service, with the world's observable task type among its types."""
    undo_log_transactions(monkeypatch.setattr)
    serialize_dynamodb_requests(monkeypatch.setattr)  # DynamoDB applies each request atomically
    service = wiring.service()
    service.registry = {**REGISTRY, "COUNTING": world.counting}
    return service


def counting(chunks: int = 1) -> SubmitTaskRequest:
    return SubmitTaskRequest.model_validate({"type": "COUNTING", "params": {"chunks": chunks}})


def email(count: int) -> SubmitTaskRequest:
    return SubmitTaskRequest.model_validate(
        {"type": "EMAIL", "params": {"recipient_count": count, "subject": "s", "body": "b"}}
    )


def used(world: World, quota: Quota) -> int:
    return world.store.quotas.usage(OWNER, utcnow())[quota]


def test_twenty_submits_racing_for_the_last_slot_admit_exactly_one(
    world: World, service: TaskService
) -> None:
    # Given an owner allowed 5 unfinished tasks, with 4 of them submitted
    world.store.quotas.set_limits(OWNER, {Quota.ACTIVE_TASKS: 5})
    for _ in range(4):
        service.submit(OWNER, counting())
    # When 20 submits race for the last slot
    outcomes: Counter[str] = Counter()
    start = threading.Barrier(20)

    def submit() -> None:
        start.wait()
        try:
            service.submit(OWNER, counting())
            outcomes["admitted"] += 1
        except QuotaExceeded as exc:
            outcomes[exc.quota] += 1

    threads = [threading.Thread(target=submit) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # Then exactly one is admitted, the 19 others are refused, and the counter is exact
    assert outcomes == {"admitted": 1, "active_tasks": 19}
    assert used(world, Quota.ACTIVE_TASKS) == 5
    listed = world.store.listing.list_tasks(OWNER, status=TaskStatus.PENDING, limit=100)
    assert len(listed.tasks) == 5


def test_a_finish_releases_its_slot_exactly_once_however_often_the_stream_is_read(
    world: World, service: TaskService
) -> None:
    # Given an owner allowed 2 unfinished tasks, both taken
    world.store.quotas.set_limits(OWNER, {Quota.ACTIVE_TASKS: 2})
    first, _ = service.submit(OWNER, counting())
    service.submit(OWNER, counting())
    with pytest.raises(QuotaExceeded):
        service.submit(OWNER, counting())
    # When one is cancelled before it starts and the stream is read, then read again
    service.cancel(OWNER, first.task_id)
    world.counters.drain()
    world.counters.drain()
    # Then exactly one slot came back: one more submit is admitted, the next is not
    assert used(world, Quota.ACTIVE_TASKS) == 1
    service.submit(OWNER, counting())
    with pytest.raises(QuotaExceeded):
        service.submit(OWNER, counting())
    assert used(world, Quota.ACTIVE_TASKS) == 2


def test_tasks_that_run_to_the_end_release_their_slots(world: World, service: TaskService) -> None:
    # Given three submitted tasks, one of which fails permanently
    for params in ({"chunks": 2}, {"chunks": 1}, {"chunks": 2, "fail_on_chunk": 0}):
        request = SubmitTaskRequest.model_validate(
            {"type": "COUNTING", "params": {**params, "fail_times": 1, "permanent": True}}
        )
        service.submit(OWNER, request)
    assert used(world, Quota.ACTIVE_TASKS) == 3
    # When the worker runs them all and the stream is read
    world.pipeline().run()
    world.counters.drain()
    # Then none holds a slot any more
    assert used(world, Quota.ACTIVE_TASKS) == 0


def test_a_retry_takes_a_slot_again_and_is_refused_without_one(
    world: World, service: TaskService
) -> None:
    # Given an owner allowed 1 unfinished task, whose cancelled task released its slot
    world.store.quotas.set_limits(OWNER, {Quota.ACTIVE_TASKS: 1})
    cancelled, _ = service.submit(OWNER, counting())
    service.cancel(OWNER, cancelled.task_id)
    world.counters.drain()
    # When another task takes the slot, the retry of the cancelled one is refused...
    other, _ = service.submit(OWNER, counting())
    with pytest.raises(QuotaExceeded) as refused:
        service.retry(OWNER, cancelled.task_id, restart=False)
    assert refused.value.quota == "active_tasks"
    assert world.task(cancelled.task_id).status == TaskStatus.CANCELLED  # nothing changed
    # ...and once that one is cancelled too, the retry is admitted and takes the slot
    service.cancel(OWNER, other.task_id)
    world.counters.drain()
    retried = service.retry(OWNER, cancelled.task_id, restart=False)
    assert retried.status == TaskStatus.PENDING
    assert used(world, Quota.ACTIVE_TASKS) == 1


def test_a_failed_enqueue_gives_its_slot_back(world: World, service: TaskService) -> None:
    # Given a queue that refuses every message
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "Send")

    service.dispatcher.send = refuse  # type: ignore[method-assign]
    # When a submit takes its slot and then cannot enqueue
    with pytest.raises(EnqueueFailed):
        service.submit(OWNER, counting())
    assert used(world, Quota.ACTIVE_TASKS) == 1
    world.counters.drain()
    # Then the task's failure released the slot
    assert used(world, Quota.ACTIVE_TASKS) == 0


def test_submits_per_minute_are_refused_past_the_limit_until_the_minute_ends(
    world: World, service: TaskService
) -> None:
    world.store.quotas.set_limits(OWNER, {Quota.SUBMITS_PER_MINUTE: 3})
    for _ in range(3):
        service.submit(OWNER, counting())
    with pytest.raises(QuotaExceeded) as refused:
        service.submit(OWNER, counting())
    assert refused.value.quota == "submits_per_minute"
    assert 1 <= refused.value.retry_after <= 60
    # The refused submit took nothing: not a slot, not a submit
    assert used(world, Quota.ACTIVE_TASKS) == 3
    assert used(world, Quota.SUBMITS_PER_MINUTE) == 3


def test_email_recipients_count_against_the_daily_quota_exactly(
    world: World, service: TaskService
) -> None:
    world.store.quotas.set_limits(OWNER, {Quota.EMAIL_RECIPIENTS_PER_DAY: 10})
    service.submit(OWNER, email(6))
    with pytest.raises(QuotaExceeded) as refused:
        service.submit(OWNER, email(5))
    assert refused.value.quota == "email_recipients_per_day"
    service.submit(OWNER, email(4))  # exactly the rest of the day's recipients
    assert used(world, Quota.EMAIL_RECIPIENTS_PER_DAY) == 10
    with pytest.raises(QuotaExceeded):
        service.submit(OWNER, email(1))


def test_an_idempotent_replay_takes_nothing_again(world: World, service: TaskService) -> None:
    first, created = service.submit(OWNER, counting(), idempotency_key="k-1")
    again, created_again = service.submit(OWNER, counting(), idempotency_key="k-1")
    assert (created, created_again, again.task_id) == (True, False, first.task_id)
    assert used(world, Quota.ACTIVE_TASKS) == 1
    assert used(world, Quota.SUBMITS_PER_MINUTE) == 1


def test_upload_tickets_take_their_declared_size_from_the_daily_bytes_quota(
    world: World, service: TaskService
) -> None:
    world.store.quotas.set_limits(OWNER, {Quota.UPLOAD_BYTES_PER_DAY: 1000})
    request = UploadRequest(filename="a.csv", content_type="text/csv", size=600)
    service.upload(OWNER, request)
    with pytest.raises(QuotaExceeded) as refused:
        service.upload(OWNER, request)
    assert refused.value.quota == "upload_bytes_per_day"
    service.upload(OWNER, request.model_copy(update={"size": 400}))
    assert used(world, Quota.UPLOAD_BYTES_PER_DAY) == 1000


def test_the_operators_limit_applies_to_that_owner_only(world: World, service: TaskService) -> None:
    world.store.quotas.set_limits(OWNER, {Quota.SUBMITS_PER_MINUTE: 1})
    service.submit(OWNER, counting())
    with pytest.raises(QuotaExceeded):
        service.submit(OWNER, counting())
    service.submit("someone-else", counting())  # the default (600 a minute) applies
    assert service.settings.quota_submits_per_minute == 600


def test_over_quota_the_api_answers_429_with_retry_after_and_the_error_shape(
    world: World, service: TaskService
) -> None:
    world.store.quotas.set_limits(OWNER, {Quota.ACTIVE_TASKS: 0})
    body = {"type": "EMAIL", "params": {"recipient_count": 1, "subject": "s", "body": "b"}}
    response = call_api(http_event("POST", "/tasks", body=body, sub=OWNER))
    assert response.status == 429
    assert response.headers["Retry-After"] == str(retry_after(Quota.ACTIVE_TASKS, utcnow()))
    assert response.body == {
        "error": {
            "code": "quota_exceeded",
            "message": "quota exceeded: at most 0 tasks not yet finished",
            "details": {"quota": "active_tasks", "limit": 0, "retry_after": 30},
        }
    }


def test_a_bulk_retry_over_the_active_quota_admits_exactly_what_fits(
    world: World, service: TaskService
) -> None:
    # Given three cancelled tasks and an owner allowed 2 unfinished tasks, 1 of them taken
    world.store.quotas.set_limits(OWNER, {Quota.ACTIVE_TASKS: 2})
    cancelled = [service.submit(OWNER, counting())[0].task_id for _ in range(2)]
    for task_id in cancelled:
        service.cancel(OWNER, task_id)
    world.counters.drain()
    service.submit(OWNER, counting())
    # When all of them are retried in one bulk request
    result = service.bulk(OWNER, BulkRequest.model_validate({"action": "retry", "ids": cancelled}))
    # Then exactly one is admitted; the other is refused on its own, and nothing drifted
    outcomes = [(item.ok, item.error.code if item.error else None) for item in result.results]
    assert outcomes == [(True, None), (False, "quota_exceeded")]
    assert used(world, Quota.ACTIVE_TASKS) == 2
    assert world.task(cancelled[1]).status == TaskStatus.CANCELLED
