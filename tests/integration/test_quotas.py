"""Per-owner quotas: exact under racing submits, refused with a 429 and Retry-After, given
back once when a task finishes, and raised for one owner by the operator without a deploy."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from devstack.moto_patches import serialize_dynamodb_requests
from taskqueue import wiring
from taskqueue.errors import QuotaExceeded
from taskqueue.models import ListTasksQuery, SubmitTaskRequest, TaskStatus
from taskqueue.quotas import QUOTA_SHARDS, Quota
from taskqueue.service import TaskService
from taskqueue.store.items import quota_key, shard_of
from taskqueue.store.quotas import QuotaStore
from tests.helpers import call_api, http_event
from tests.pipeline_world import OWNER, World

OTHER = "user-456"
NOON = datetime(2026, 11, 30, 12, 0, 30, tzinfo=UTC)


class Clock:
    """The store's clock, moved by hand: windows never depend on when the test runs."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def service(world: World) -> Iterator[TaskService]:
    service = wiring.service()
    service.registry = {**service.registry, "COUNTING": world.counting}
    yield service


@pytest.fixture
def clock(service: TaskService, world: World) -> Clock:
    clock = Clock(NOON)
    service.store.table.clock = clock
    return clock


def submit(service: TaskService, owner: str = OWNER, chunks: int = 1) -> str:
    request = SubmitTaskRequest.model_validate({"type": "COUNTING", "params": {"chunks": chunks}})
    task, created = service.submit(owner, request)
    assert created
    return task.task_id


def refusal(service: TaskService, owner: str = OWNER) -> QuotaExceeded:
    with pytest.raises(QuotaExceeded) as refused:
        submit(service, owner)
    return refused.value


def active(service: TaskService, owner: str = OWNER) -> int:
    return service.store.quotas.usage(owner)[Quota.ACTIVE_TASKS]


def finish_and_count(world: World) -> None:
    world.pipeline().run()
    world.counters.drain()


def test_twenty_racing_submits_for_the_last_slot_admit_exactly_one(
    service: TaskService, world: World, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given DynamoDB's atomic conditional writes (moto's tables are not thread-safe by
    # themselves: unserialized, two threads may both pass one condition), and an owner
    # allowed 3 tasks not yet finished, 2 of them taken
    serialize_dynamodb_requests(monkeypatch.setattr)
    service.store.quotas.set_limits(OWNER, {Quota.ACTIVE_TASKS: 3})
    submit(service)
    submit(service)
    # When 20 submits race for the last slot
    start = threading.Barrier(20)
    admitted: list[str] = []
    refused: list[QuotaExceeded] = []

    def race() -> None:
        start.wait()
        try:
            admitted.append(submit(service))
        except QuotaExceeded as exc:
            refused.append(exc)

    threads = [threading.Thread(target=race) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one is admitted, and the counters say 3
    assert len(admitted) == 1
    assert len(refused) == 19
    assert {(e.quota, e.limit) for e in refused} == {("active_tasks", 3)}
    assert active(service) == 3
    listed = service.list_tasks(OWNER, ListTasksQuery())
    assert len(listed.items) == 3


def test_an_over_quota_submit_is_a_429_with_retry_after_and_changes_nothing(
    service: TaskService, world: World
) -> None:
    # Given an owner at their quota of one task not yet finished
    service.store.quotas.set_limits(OWNER, {Quota.ACTIVE_TASKS: 1})
    submit(service)
    # When they submit another through the API
    body = {"type": "COUNTING", "params": {"chunks": 1}}
    response = call_api(http_event("POST", "/tasks", body=body, sub=OWNER))
    # Then: a 429 in the error shape, saying when to try again, and no task written
    assert response.status == 429
    assert response.headers["Retry-After"] == "5"
    assert response.body == {
        "error": {
            "code": "quota_exceeded",
            "message": "quota exceeded: at most 1 tasks not yet finished",
            "details": {"quota": "active_tasks", "limit": 1, "retry_after": 5},
        }
    }
    assert len(service.list_tasks(OWNER, ListTasksQuery()).items) == 1
    assert active(service) == 1


@pytest.mark.parametrize("ending", ["success", "cancel", "failure"])
def test_a_finished_task_gives_its_slot_back_once(
    service: TaskService, world: World, ending: str
) -> None:
    # Given an owner allowed one task, holding it
    service.store.quotas.set_limits(OWNER, {Quota.ACTIVE_TASKS: 1})
    params = {"chunks": 2}
    if ending == "failure":
        params = {"chunks": 2, "fail_on_chunk": 0, "fail_times": 1, "permanent": True}
    request = SubmitTaskRequest.model_validate({"type": "COUNTING", "params": params})
    task, _ = service.submit(OWNER, request)
    refusal(service)
    # When it ends (succeeds, is cancelled, fails) and the stream is counted, twice over
    if ending == "cancel":
        service.cancel(OWNER, task.task_id)
    world.pipeline().run()
    world.counters.drain()
    world.counters.drain()
    # Then its slot is back, once: one more task is admitted, and no second one
    expected = {"success": "SUCCESS", "cancel": "CANCELLED", "failure": "FAILED"}[ending]
    assert service.store.tasks.get(task.task_id).status == TaskStatus(expected)
    assert active(service) == 0
    submit(service)
    assert refusal(service).quota == "active_tasks"


def test_a_retried_task_takes_a_slot_again(service: TaskService, world: World) -> None:
    # Given a cancelled task whose slot came back, and the one slot taken by another task
    service.store.quotas.set_limits(OWNER, {Quota.ACTIVE_TASKS: 1})
    first = submit(service)
    service.cancel(OWNER, first)
    world.counters.drain()
    second = submit(service)
    # When the cancelled one is retried: refused, and it stays CANCELLED
    with pytest.raises(QuotaExceeded):
        service.retry(OWNER, first, restart=False)
    assert service.store.tasks.get(first).status == TaskStatus.CANCELLED
    # Then once the other is done, the retry takes the slot
    service.cancel(OWNER, second)
    world.counters.drain()
    retried = service.retry(OWNER, first, restart=False)
    assert retried.status == TaskStatus.PENDING
    assert active(service) == 1


def test_submits_a_minute_are_refused_until_the_next_minute(
    service: TaskService, world: World, clock: Clock
) -> None:
    # Given an owner allowed 2 submits a minute, at 12:00:30 by the store's clock
    service.store.quotas.set_limits(OWNER, {Quota.SUBMITS_PER_MINUTE: 2})
    submit(service)
    submit(service)
    # When a third comes in the same minute: refused until 12:01:00
    refused = refusal(service)
    assert (refused.quota, refused.limit, refused.retry_after) == ("submits_per_minute", 2, 30)
    # Then at 12:01 it is admitted (the tasks of 12:00 still run: only the minute moved)
    clock.now = NOON + timedelta(seconds=30)
    submit(service)
    assert active(service) == 3


def test_the_operator_raises_one_owners_quota_without_a_deploy(
    service: TaskService, world: World
) -> None:
    # Given the default quota of 2 tasks for every owner, both owners at it
    service.settings = service.settings.model_copy(
        update={"quota_active_tasks": 2, "quotas_enabled": True}
    )
    for owner in (OWNER, OTHER):
        submit(service, owner)
        submit(service, owner)
        refusal(service, owner)
    # When the operator raises one owner's limit to 3 (items in the table, nothing else)
    world.store.quotas.set_limits(OWNER, {Quota.ACTIVE_TASKS: 3})
    # Then that owner gets exactly one more, at once; the other owner still none
    submit(service, OWNER)
    assert refusal(service, OWNER).limit == 3
    assert refusal(service, OTHER).limit == 2
    # And back to the default: refused at 2 again (3 taken)
    world.store.quotas.set_limits(OWNER, {Quota.ACTIVE_TASKS: None})
    assert refusal(service, OWNER).limit == 2


def test_a_raised_limit_admits_whichever_shard_the_take_starts_at(world: World) -> None:
    # Given an owner at the default limit of 2 (shards 0 and 1 full), a process that has not
    # seen the operator raise it to 3 (shard 2's share), and each task whose own shard is
    # tried first: the shards before 0 and 1 in its order were once refused under the old
    # limit before the take learned the new one (2 of them: 1 in 16 submits refused)
    defaults = {Quota.ACTIVE_TASKS: 2}
    for start in range(QUOTA_SHARDS):
        store = QuotaStore(world.store.table)
        owner = f"user-{start}"
        for task in ("t0", "t1"):
            store.take(owner, task, {Quota.ACTIVE_TASKS: 1}, defaults)
        world.store.quotas.set_limits(owner, {Quota.ACTIVE_TASKS: 3})
        task_id = next(f"t{n}" for n in range(10_000) if shard_of(f"t{n}", QUOTA_SHARDS) == start)
        # When it submits one more
        taken = store.take(owner, task_id, {Quota.ACTIVE_TASKS: 1}, defaults)
        # Then the task is admitted on shard 2, the share the raise added
        assert taken.shard == 2, start


def test_an_owner_far_below_the_limit_uses_every_shard(service: TaskService) -> None:
    # Given the default quota, When an owner submits 64 tasks
    for _ in range(64):
        submit(service)
    # Then their takes spread over the owner's shard items (no hot key), and add up exactly
    used = [
        int(service.store.table.get_item(quota_key(OWNER, shard))["active"]["N"])
        for shard in range(QUOTA_SHARDS)
        if service.store.table.get_item(quota_key(OWNER, shard))
    ]
    assert len(used) >= 12
    assert sum(used) == 64


def test_quotas_are_on_by_default(service: TaskService) -> None:
    # Given the functions' settings from the template's defaults, then quotas are on
    assert service.settings.quotas_enabled is True
    assert service.settings.quota_active_tasks == 1000
    assert service.settings.quota_submits_per_minute == 600


def test_with_quotas_off_a_submit_takes_nothing(service: TaskService, world: World) -> None:
    # Given quotas off (the template's Quotas=off) and an owner whose operator limit is one task
    service.settings = service.settings.model_copy(update={"quotas_enabled": False})
    service.store.quotas.set_limits(OWNER, {Quota.ACTIVE_TASKS: 1})
    # When they submit three tasks
    ids = [submit(service) for _ in range(3)]
    # Then all are admitted, none holds a slot, and the counters give none back
    assert [service.store.tasks.get(i).quota_shard for i in ids] == [None, None, None]
    finish_and_count(world)
    assert active(service) == 0


def email(*recipients: str) -> SubmitTaskRequest:
    params = {"recipients": list(recipients), "subject": "s", "body": "b"}
    return SubmitTaskRequest.model_validate({"type": "EMAIL", "params": params})


def test_email_recipients_a_day_count_the_listed_recipients_until_the_next_day(
    service: TaskService, world: World, clock: Clock
) -> None:
    # Given an owner allowed 3 EMAIL recipients a day, 2 of them used at 12:00:30
    service.settings = service.settings.model_copy(
        update={"email_allowed_recipients": ("example.org",)}
    )
    service.store.quotas.set_limits(OWNER, {Quota.EMAIL_RECIPIENTS_PER_DAY: 3})
    service.submit(OWNER, email("a@example.org", "b@example.org"))
    # When an EMAIL to 2 more is submitted: refused until midnight, its task slot given back
    with pytest.raises(QuotaExceeded) as refused:
        service.submit(OWNER, email("c@example.org", "d@example.org"))
    assert (refused.value.quota, refused.value.retry_after) == ("email_recipients_per_day", 43170)
    usage = service.store.quotas.usage(OWNER)
    assert (usage[Quota.ACTIVE_TASKS], usage[Quota.SUBMITS_PER_MINUTE]) == (1, 1)
    assert usage[Quota.EMAIL_RECIPIENTS_PER_DAY] == 2
    # Then one more recipient fits today, and the next day counts anew
    service.submit(OWNER, email("c@example.org"))
    clock.now = NOON + timedelta(days=1)
    service.submit(OWNER, email("c@example.org", "d@example.org", "e@example.org"))
    assert service.store.quotas.usage(OWNER)[Quota.EMAIL_RECIPIENTS_PER_DAY] == 3


def test_uploads_count_their_declared_bytes_a_day(
    service: TaskService, world: World, clock: Clock
) -> None:
    # Given an owner allowed 1,000 bytes of uploads a day
    service.store.quotas.set_limits(OWNER, {Quota.UPLOAD_BYTES_PER_DAY: 1000})
    body = {"filename": "a.csv", "content_type": "text/csv", "size": 600}
    first = call_api(http_event("POST", "/uploads", body=body, sub=OWNER))
    # When a second upload of 600 bytes is asked for the same day
    second = call_api(http_event("POST", "/uploads", body=body, sub=OWNER))
    # Then the first got its URL (signed for exactly 600 bytes), the second a 429
    assert first.status == 201
    query = parse_qs(urlsplit(first.body["url"]).query)
    assert "content-length" in query["X-Amz-SignedHeaders"][0].split(";")
    assert second.status == 429
    assert second.body["error"]["details"]["quota"] == "upload_bytes_per_day"
    assert service.store.quotas.usage(OWNER)[Quota.UPLOAD_BYTES_PER_DAY] == 600


def test_a_repeated_submit_answers_its_task_even_at_the_limit(
    service: TaskService, world: World, clock: Clock
) -> None:
    # Given an owner allowed one task, admitted for a submit with an Idempotency-Key
    service.store.quotas.set_limits(OWNER, {Quota.ACTIVE_TASKS: 1})
    request = SubmitTaskRequest.model_validate({"type": "COUNTING", "params": {"chunks": 1}})
    first, created = service.submit(OWNER, request, "key-1")
    assert created
    # When the client repeats it (a lost answer), and then submits something new
    again, created_again = service.submit(OWNER, request, "key-1")
    # Then the repeat answers the same task, taking nothing, and the new one is refused
    assert (again.task_id, created_again) == (first.task_id, False)
    assert active(service) == 1
    assert service.store.quotas.usage(OWNER)[Quota.SUBMITS_PER_MINUTE] == 1
    assert refusal(service).quota == "active_tasks"
