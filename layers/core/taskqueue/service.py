"""What the API does: submit, list, get, cancel, retry (logic, no HTTP)."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from taskqueue.config import Settings
from taskqueue.dispatch import Dispatcher
from taskqueue.errors import (
    EnqueueFailed,
    InvalidRequest,
    InvalidTransition,
    TaskNotFound,
    TaskQueueError,
)
from taskqueue.files import Files
from taskqueue.models import (
    BulkAction,
    BulkItemResult,
    BulkRequest,
    BulkResult,
    DeadLetterPage,
    DeadLetterView,
    ErrorBody,
    ListTasksQuery,
    RedriveResult,
    Stats,
    StatusCounts,
    SubmitTaskRequest,
    Task,
    TaskDetail,
    TaskError,
    TaskPage,
    TaskStatus,
    TaskTypeInfo,
    TaskView,
    ThroughputPoint,
    UploadRequest,
    UploadTicket,
    format_time,
    utcnow,
)
from taskqueue.store import TaskStore
from taskqueue.task_types import REGISTRY
from taskqueue.task_types.base import TaskType


def validation_details(exc: ValidationError, prefix: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        {"loc": [*prefix, *error["loc"]], "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


@dataclass
class TaskService:
    store: TaskStore
    dispatcher: Dispatcher
    files: Files
    settings: Settings
    registry: Mapping[str, TaskType] = field(default_factory=lambda: REGISTRY)
    enqueue_wait_seconds: float = 2.0

    @classmethod
    def from_settings(cls, settings: Settings) -> TaskService:
        return cls(
            store=TaskStore(settings.table_name, settings.shard_count, settings.retention_days),
            dispatcher=Dispatcher(
                {"normal": settings.queue_url, "high": settings.high_priority_queue_url},
                settings.dead_letter_queues,
            ),
            files=Files(settings.data_bucket),
            settings=settings,
        )

    def task_type(self, name: str) -> TaskType:
        task_type = self.registry.get(name)
        if task_type is None:
            raise InvalidRequest(
                f"unknown task type {name!r}",
                [
                    {
                        "loc": ["body", "type"],
                        "msg": f"must be one of {sorted(self.registry)}",
                        "type": "enum",
                    }
                ],
            )
        return task_type

    def submit(
        self, owner: str, request: SubmitTaskRequest, idempotency_key: str | None = None
    ) -> tuple[Task, bool]:
        """Validate, write the task, then enqueue it. Returns the task and whether it is new."""
        task_type = self.task_type(request.type)
        try:
            params = task_type.params_model.model_validate(request.params)
        except ValidationError as exc:
            raise InvalidRequest(
                f"invalid params for {request.type}", validation_details(exc, ("body", "params"))
            ) from exc
        now = utcnow()
        run_at = request.run_at
        if request.delay_seconds:
            run_at = now + timedelta(seconds=request.delay_seconds)
        if run_at is not None and run_at <= now:
            run_at = None
        task = Task(
            task_id=uuid.uuid4().hex,
            owner=owner,
            task_type=task_type.name,
            params=params.model_dump(mode="json"),
            status=TaskStatus.PENDING,
            priority=request.priority,
            max_attempts=request.max_attempts or self.settings.default_max_attempts,
            timeout_seconds=request.timeout_seconds,
            created_at=now,
            updated_at=now,
            run_at=run_at,
        )
        request_hash = hashlib.sha256(
            request.model_dump_json(exclude={"run_at", "delay_seconds"}).encode()
        ).hexdigest()
        stored, created = self.store.create_task(task, idempotency_key, request_hash)
        if created:
            self.enqueue(stored)
        elif stored.awaiting_first_claim:
            self.enqueue_if_lost(stored)
        return stored, created

    def enqueue_if_lost(self, task: Task) -> None:
        """A repeated submit or retry: the first call may have died between its write and
        its message. Wait briefly for the first call's mark; without one, send the message.

        Concurrent repeats of a live call so send nothing; after a lost call, one does (a rare
        duplicate is harmless: it loses the claim).
        """
        deadline = time.monotonic() + self.enqueue_wait_seconds
        pause = 0.1  # doubling: a live first call marks within a few hundred ms; 5 reads in all
        while task.enqueued_at is None and task.awaiting_first_claim:
            left = deadline - time.monotonic()
            if left <= 0:
                self.enqueue(task)
                return
            time.sleep(min(pause, left))
            pause *= 2
            task = self.store.get_task(task.task_id)

    def enqueue(self, task: Task) -> None:
        """Send the task's message, then mark it sent; nothing may stay PENDING without one."""
        delay = 0
        if task.run_at is not None:
            delay = max(0, int((task.run_at - utcnow()).total_seconds()))
        try:
            self.dispatcher.send(task.task_id, task.priority.value, delay)
        except (ClientError, BotoCoreError) as exc:
            # Fail it visibly, so that its owner can retry it, rather than leave it waiting.
            self.store.fail_pending(
                task.task_id, TaskError(type="EnqueueFailed", message=str(exc)[:500])
            )
            raise EnqueueFailed("the task queue is unavailable; try again") from exc
        self.store.mark_enqueued(task.task_id)

    def get(self, owner: str, task_id: str) -> TaskDetail:
        task, events = self.store.get_task_with_events(task_id, owner)
        view = TaskView.of(task)
        downloads = self.files.download_links(owner, task.outputs) if task.outputs else []
        return TaskDetail(**view.model_dump(), events=events, downloads=downloads)

    def list_tasks(self, owner: str, query: ListTasksQuery) -> TaskPage:
        if query.id_prefix is not None:
            found = self.store.find_by_id_prefix(owner, query.id_prefix, query.limit)
            return TaskPage(items=[TaskView.of(t) for t in found], next_cursor=None)
        if query.type is not None:
            self.task_type(query.type)
        if (
            query.created_after
            and query.created_before
            and query.created_after >= query.created_before
        ):
            raise InvalidRequest("created_after must be before created_before")
        page = self.store.list_tasks(
            owner,
            status=query.status,
            task_type=query.type,
            created_after=query.created_after,
            created_before=query.created_before,
            limit=query.limit,
            cursor=query.cursor,
        )
        return TaskPage(items=[TaskView.of(t) for t in page.tasks], next_cursor=page.next_cursor)

    def cancel(self, owner: str, task_id: str) -> Task:
        return self.store.cancel(task_id, owner)

    def retry(self, owner: str, task_id: str, restart: bool) -> Task:
        task, transitioned = self.store.retry_task(task_id, owner, restart)
        if transitioned:
            self.enqueue(task)
        else:
            self.enqueue_if_lost(task)
        return task

    def bulk(self, owner: str, request: BulkRequest) -> BulkResult:
        """Cancel or retry each task on its own: one task's refusal (409, 404) is its result
        and does not stop the others."""
        results = []
        for task_id in request.ids:
            try:
                if request.action == BulkAction.CANCEL:
                    task = self.cancel(owner, task_id)
                else:
                    task = self.retry(owner, task_id, request.restart)
            except (InvalidTransition, TaskNotFound) as exc:
                error = ErrorBody(code=exc.code, message=exc.message)
                results.append(BulkItemResult(id=task_id, ok=False, status=None, error=error))
                continue
            results.append(BulkItemResult(id=task_id, ok=True, status=task.status, error=None))
        return BulkResult(results=results)

    def task_types(self) -> list[TaskTypeInfo]:
        return [
            TaskTypeInfo(
                name=t.name,
                description=t.description,
                progress_unit=t.progress_unit,
                params_schema=t.params_model.model_json_schema(),
            )
            for t in sorted(self.registry.values(), key=lambda t: t.name)
        ]

    def stats(self, owner: str) -> Stats:
        """The caller's counts, every queue's depth and finishes per minute over the last hour."""
        raw = self.store.stats(owner)
        by_status = {status.value: 0 for status in TaskStatus}
        by_type: dict[str, int] = dict.fromkeys(self.registry, 0)
        for status, types in raw.counts.items():
            by_status[status] = by_status.get(status, 0) + sum(types.values())
            for task_type, count in types.items():
                by_type[task_type] = by_type.get(task_type, 0) + count
        now = utcnow().replace(second=0, microsecond=0)
        throughput = []
        for back in range(59, -1, -1):
            minute = format_time(now - timedelta(minutes=back))[:16]
            counts = raw.minutes.get(minute, {})
            throughput.append(
                ThroughputPoint(
                    minute=minute + ":00Z",
                    succeeded=counts.get(TaskStatus.SUCCESS.value, 0),
                    failed=counts.get(TaskStatus.FAILED.value, 0),
                    cancelled=counts.get(TaskStatus.CANCELLED.value, 0),
                )
            )
        return Stats(
            counts=StatusCounts(
                by_status=by_status,
                by_type=by_type,
                by_status_type={
                    status: {t: n for t, n in types.items() if n}
                    for status, types in raw.counts.items()
                    if any(types.values())
                },
            ),
            queues=self.dispatcher.depths(),
            throughput=throughput,
        )

    def dead_letters(self, owner: str) -> DeadLetterPage:
        letters = self.store.dead_letters(owner)
        current = {t.task_id: t for t in self.store.batch_get([d["task_id"] for d in letters])}
        return DeadLetterPage(
            items=[
                DeadLetterView(
                    id=d["sk"],
                    task_id=d["task_id"],
                    task_type=d["task_type"],
                    queue=d["queue"],
                    reason=d["reason"],
                    receive_count=d["receive_count"],
                    dead_at=d["dead_at"],
                    task_status=current[d["task_id"]].status if d["task_id"] in current else None,
                )
                for d in letters
            ]
        )

    def redrive(self, owner: str) -> RedriveResult:
        """Send each of the owner's dead-lettered tasks back to its queue (resuming)."""
        redriven = skipped = 0
        for letter in self.store.dead_letters(owner):
            try:
                self.retry(owner, letter["task_id"], restart=False)
                redriven += 1
            except (InvalidTransition, TaskNotFound):
                skipped += 1  # retried by hand already, or expired: the record is done with
            self.store.delete_dead_letter(owner, letter["sk"])
        return RedriveResult(redriven=redriven, skipped=skipped)

    def upload(self, owner: str, request: UploadRequest) -> UploadTicket:
        return self.files.upload_ticket(owner, request)

    def health(self) -> dict[str, Any]:
        checks: dict[str, Any] = {}
        try:
            self.store.get_task("0" * 32)
        except TaskQueueError:
            checks["table"] = "ok"
        except (ClientError, BotoCoreError) as exc:
            checks["table"] = f"error: {type(exc).__name__}"
        try:
            self.dispatcher.depth(self.settings.queue_url)
            checks["queue"] = "ok"
        except (ClientError, BotoCoreError) as exc:
            checks["queue"] = f"error: {type(exc).__name__}"
        checks["ok"] = all(v == "ok" for v in checks.values())
        return checks
