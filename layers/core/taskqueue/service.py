"""What the API does: submit, list, get, cancel, retry (logic, no HTTP)."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ValidationError

from taskqueue.chains import chain_view
from taskqueue.config import Settings
from taskqueue.dispatch import Dispatcher
from taskqueue.errors import (
    EnqueueFailed,
    InvalidInput,
    InvalidRequest,
    InvalidTransition,
    QuotaExceeded,
    TaskNotFound,
    TaskQueueError,
    TransitionConflict,
)
from taskqueue.fanout import FanOut, queue_of
from taskqueue.files import Files
from taskqueue.lifecycle import Action, decide
from taskqueue.models import (
    MAX_DELAY_SECONDS,
    BulkAction,
    BulkItemResult,
    BulkRequest,
    BulkResult,
    ChainStep,
    DeadLetterPage,
    DeadLetterView,
    ErrorBody,
    ListTasksQuery,
    PartView,
    RedriveResult,
    Stats,
    StatusCounts,
    SubmitTaskRequest,
    Task,
    TaskDetail,
    TaskError,
    TaskMessage,
    TaskPage,
    TaskStatus,
    TaskTypeInfo,
    TaskView,
    ThroughputPoint,
    UploadRequest,
    UploadTicket,
    format_time,
    new_generation,
    utcnow,
    validation_details,
)
from taskqueue.observability import logger
from taskqueue.quotas import Quota
from taskqueue.store import DeadMessage, Store
from taskqueue.store.quotas import Taken
from taskqueue.task_types import REGISTRY, _s3
from taskqueue.task_types.base import ADMIT, QUOTA_USAGE, Submitter, TaskType, Upload

MAX_PARAMS_BYTES = 256 * 1024  # a task's params as stored (compact JSON)
TRIES = 5  # decisions on a fresh read when the task keeps moving under a user's request
# A task released for a message that a worker could not send: handed over, or a retry wait.
OWED_STATUSES = (TaskStatus.RUNNING, TaskStatus.PENDING)


@dataclass
class TaskService:
    store: Store
    dispatcher: Dispatcher
    files: Files
    settings: Settings
    registry: Mapping[str, TaskType] = field(default_factory=lambda: REGISTRY)
    enqueue_wait_seconds: float = 2.0
    # The wait of `enqueue_if_lost`: a simulated clock's in the reliability suite.
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic

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
        self,
        owner: str,
        request: SubmitTaskRequest,
        idempotency_key: str | None = None,
        *,
        verified_email: str | None = None,
    ) -> tuple[Task, bool]:
        """Validate, admit, write the task, then enqueue it. Returns the task and whether it
        is new. `verified_email`: the caller's own, verified, address."""
        task_type = self.task_type(request.type)
        params = self._params(request.type, task_type, request.params, ("body", "params"))
        stored_params = params.model_dump(mode="json")
        steps = self._chain_steps(owner, request.then or [])
        # Every step's params ride on the item (the first's), which every checkpoint rewrites.
        size = len(json.dumps(stored_params, separators=(",", ":")).encode()) + sum(
            len(step.model_dump_json()) for step in steps
        )
        if size > MAX_PARAMS_BYTES:
            # Whatever MAX_BODY_BYTES allows: the item holding them must stay far below
            # DynamoDB's 400 KB, and every checkpoint rewrites it.
            raise InvalidRequest(
                f"invalid params for {request.type}",
                [
                    {
                        "loc": ["body", "params"],
                        "msg": f"{size} bytes as JSON{' with the chain' if steps else ''}; "
                        f"at most {MAX_PARAMS_BYTES}",
                        "type": "too_long",
                    }
                ],
            )
        self._check_uploads(owner, request.type, task_type, params)
        admit = getattr(task_type, ADMIT, None)
        if admit is not None:
            admit(params, Submitter(owner, verified_email, self.settings.email_allowed_recipients))
        now = self.store.table.now()
        run_at = request.run_at
        if run_at is not None and run_at > now + timedelta(seconds=MAX_DELAY_SECONDS):
            # The cap of delay_seconds: a task scheduled further out would outlive its records.
            raise InvalidRequest(
                "run_at is more than a year ahead",
                [
                    {
                        "loc": ["body", "run_at"],
                        "msg": f"must be at most {MAX_DELAY_SECONDS} seconds from now",
                        "type": "less_than_equal",
                    }
                ],
            )
        if request.delay_seconds:
            run_at = now + timedelta(seconds=request.delay_seconds)
        if run_at is not None and run_at <= now:
            run_at = None
        task_id = uuid.uuid4().hex
        request_hash = hashlib.sha256(
            request.model_dump_json(exclude={"run_at", "delay_seconds"}).encode()
        ).hexdigest()
        usage = self._quota_usage(task_type, params)
        for step in steps:
            for quota, amount in self._quota_usage(self.registry[step.type], step.params).items():
                usage[quota] = usage.get(quota, 0) + amount
        try:
            taken = self._take_quotas(
                owner, task_id, {Quota.ACTIVE_TASKS: 1, Quota.SUBMITS_PER_MINUTE: 1}, usage
            )
        except QuotaExceeded:
            # A repeat of a submit that was admitted answers its task, over quota or not.
            earlier = idempotency_key and self.store.tasks.created_with_key(
                owner, idempotency_key, request_hash
            )
            if not earlier:
                raise
            if earlier.awaiting_first_claim:
                self.enqueue_if_lost(earlier)
            return earlier, False
        task = Task(
            task_id=task_id,
            owner=owner,
            task_type=task_type.name,
            params=stored_params,
            status=TaskStatus.PENDING,
            priority=request.priority,
            max_attempts=request.max_attempts or self.settings.default_max_attempts,
            timeout_seconds=request.timeout_seconds,
            created_at=now,
            updated_at=now,
            run_at=run_at,
            generation=new_generation(),
            quota_shard=taken[0].shard if taken else None,
        )
        if steps:
            task = task.model_copy(
                update={
                    "chain_id": task.task_id,
                    "chain_position": 1,
                    "chain_length": 1 + len(steps),
                    "chain_next": steps,
                }
            )
        try:
            stored, created = self.store.tasks.create(task, idempotency_key, request_hash)
        except BaseException:
            self._give_back(owner, taken)
            raise
        if not created:  # the task of an earlier call with this key: it holds its own slot
            self._give_back(owner, taken)
        if created:
            self.enqueue(stored)
        elif stored.awaiting_first_claim:
            self.enqueue_if_lost(stored)
        return stored, created

    def _take_quotas(
        self,
        owner: str,
        task_id: str,
        shared: Mapping[Quota, int],
        whole: Mapping[Quota, int] | None = None,
    ) -> list[Taken]:
        """Take the task's slot (`shared`: from one of the owner's shards), then its amounts
        of the unsharded quotas (`whole`), all or nothing: QuotaExceeded names the first
        refused. Nothing when quotas are off."""
        if not self.settings.quotas_enabled:
            return []
        defaults = self.settings.quota_defaults
        taken = [self.store.quotas.take(owner, task_id, shared, defaults)]
        whole = {quota: amount for quota, amount in (whole or {}).items() if amount}
        if whole:
            try:
                taken.append(self.store.quotas.take(owner, task_id, whole, defaults))
            except BaseException:
                self._give_back(owner, taken)
                raise
        return taken

    def _give_back(self, owner: str, taken: list[Taken]) -> None:
        for each in taken:
            self.store.quotas.give_back(owner, each)

    @staticmethod
    def _quota_usage(task_type: TaskType, params: Any) -> dict[Quota, int]:
        """What a task of this type takes of the quotas counted in amounts (its type says)."""
        usage = getattr(task_type, QUOTA_USAGE, None)
        if usage is None:
            return {}
        if isinstance(params, dict):
            params = task_type.params_model.model_validate(params)
        return dict(usage(params))

    def _params(
        self, type_name: str, task_type: TaskType, params: dict[str, Any], loc: tuple[str, ...]
    ) -> BaseModel:
        """`params` validated by the type's model; a 422 located under `loc` if they fail."""
        try:
            return task_type.params_model.model_validate(params)
        except ValidationError as exc:
            raise InvalidRequest(
                f"invalid params for {type_name}", validation_details(exc, loc)
            ) from exc

    def _chain_steps(self, owner: str, then: list[ChainStep]) -> list[ChainStep]:
        """A chain's steps validated now, each against its type (a 422 at
        `body.then.<i>...`), rather than failing when the chain reaches them."""
        steps = []
        for index, step in enumerate(then):
            loc = ("body", "then", str(index))
            task_type = self.registry.get(step.type)
            if task_type is None:
                raise InvalidRequest(
                    f"unknown task type {step.type!r}",
                    [
                        {
                            "loc": [*loc, "type"],
                            "msg": f"must be one of {sorted(self.registry)}",
                            "type": "enum",
                        }
                    ],
                )
            params = self._params(step.type, task_type, step.params, (*loc, "params"))
            self._check_uploads(owner, step.type, task_type, params, (*loc, "params"))
            steps.append(ChainStep(type=task_type.name, params=params.model_dump(mode="json")))
        return steps

    def _check_uploads(
        self,
        owner: str,
        type_name: str,
        task_type: TaskType,
        params: BaseModel,
        loc: tuple[str, ...] = ("body", "params"),
    ) -> None:
        """The uploads the params name are the caller's and exist: a 422 now, rather than a
        task that FAILS `input_not_found` later. An S3 error skips the check (the worker
        checks again): submits do not depend on S3 being reachable."""
        uploads: Mapping[str, Upload] = getattr(task_type, "uploads", {})
        for name, kind in uploads.items():
            value = getattr(params, name, None)
            if not isinstance(value, str):
                continue
            try:
                _s3.require_under(value, _s3.uploads_prefix(owner), name)
                if self.files.upload_exists(value, folder=kind == Upload.FOLDER):
                    continue
                what = "no upload at" if kind == Upload.FILE else "no uploads under"
                problem, message = "input_not_found", f"{what} {value!r}"
            except InvalidInput as exc:
                problem, message = "value_error", exc.message
            except (ClientError, BotoCoreError):
                logger.warning("upload check skipped: S3 did not answer", param=name)
                continue
            raise InvalidRequest(
                f"invalid params for {type_name}",
                [{"loc": [*loc, name], "msg": message, "type": problem}],
            )

    def enqueue_if_lost(self, task: Task) -> None:
        """A repeated submit or retry: the first call may have died between its write and
        its message. Wait briefly for the first call's mark; without one, send the message.

        Concurrent repeats of a live call so send nothing; after a lost call, one does (a rare
        duplicate is harmless: it loses the claim).
        """
        deadline = self.monotonic() + self.enqueue_wait_seconds
        pause = 0.1  # doubling: a live first call marks within a few hundred ms; 5 reads in all
        while task.enqueued_at is None and task.awaiting_first_claim:
            left = deadline - self.monotonic()
            if left <= 0:
                self.enqueue(task)
                return
            self.sleep(min(pause, left))
            pause *= 2
            task = self.store.tasks.get(task.task_id)

    def enqueue(self, task: Task) -> None:
        """Send the task's message, then mark it sent; nothing may stay PENDING without one."""
        delay = 0
        if task.run_at is not None:
            delay = max(0, int((task.run_at - utcnow()).total_seconds()))
        try:
            self.dispatcher.send(TaskMessage.of(task), queue_of(task), delay)
        except (ClientError, BotoCoreError) as exc:
            # Fail it visibly, so that its owner can retry it, rather than leave it waiting.
            error = TaskError(type="EnqueueFailed", message=str(exc)[:500])
            self._fail_unfinished(task.task_id, Action.ENQUEUE_FAILED, error)
            raise EnqueueFailed("the task queue is unavailable; try again") from exc
        self.store.tasks.mark_enqueued(task.task_id, task.generation)

    def send_unsent(self, grace_seconds: int, limit: int = 100) -> int:
        """The sweeper: send the message of every task whose submit or retry wrote it more
        than `grace_seconds` ago (longer than an API call lives) and never marked it sent,
        because the API died between its write and its send, and of every task a worker
        released for a message it then failed to send (due `grace_seconds` ago). Returns how
        many were sent.

        The message carries the task's generation and goes out before the mark, so a sweeper
        that dies in between sends it again next time: a duplicate loses the claim.
        """
        now = self.store.table.now()
        ids = self.store.tasks.unsent(now - timedelta(seconds=grace_seconds), limit)
        sent = 0
        for task in self.store.tasks.batch_get(ids):
            # A worker's continuation or retry whose send failed is owed too (`owe_send`).
            handed_over = task.lease_expires_at == 0 and task.status in OWED_STATUSES
            if not (task.awaiting_first_claim or handed_over):
                continue  # claimed or finished since: its index keys went with that write
            delay = 0
            if task.run_at is not None:
                delay = max(0, int((task.run_at - now).total_seconds()))
            message = TaskMessage.of(task, resume=task.status == TaskStatus.RUNNING)
            self.dispatcher.send(message, queue_of(task), delay)
            self.store.tasks.mark_enqueued(task.task_id, task.generation)
            sent += 1
        return sent

    def get(self, owner: str, task_id: str, events_before: str | None = None) -> TaskDetail:
        task, events, cursor = self.store.tasks.get_with_event_page(
            task_id, owner, before=events_before
        )
        view = TaskView.of(task)
        downloads = self.files.download_links(owner, task.outputs) if task.outputs else []
        parts: list[PartView] = []
        if task.parts_total and task.status == TaskStatus.RUNNING:
            found = self.store.parts.get(task)
            parts = [_part_view(part) for part in found]
            # A split task's progress is its parts': the units each has done of its total.
            done = sum(part.units_done for part in found)
            total = sum(part.units_total for part in found)
            progress = min(99, done * 100 // total) if total else view.progress
            view = view.model_copy(
                update={"progress": progress, "units_done": done, "units_total": total}
            )
        elif task.parts_total:
            parts = [_part_view(part) for part in self.store.parts.get(task)]
        return TaskDetail(
            **view.model_dump(),
            events=events,
            events_cursor=cursor,
            downloads=downloads,
            parts=parts,
            chain=chain_view(self.store, task),
        )

    def list_tasks(self, owner: str, query: ListTasksQuery) -> TaskPage:
        if query.id_prefix is not None:
            found = self.store.listing.find_by_id_prefix(owner, query.id_prefix, query.limit)
            return TaskPage(items=[TaskView.of(t) for t in found], next_cursor=None)
        if query.type is not None:
            self.task_type(query.type)
        if (
            query.created_after
            and query.created_before
            and query.created_after >= query.created_before
        ):
            raise InvalidRequest("created_after must be before created_before")
        page = self.store.listing.list_tasks(
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
        """PENDING -> CANCELLED at once; RUNNING -> cancel requested (the worker stops at its
        next checkpoint); anything else is a 409."""
        for _ in range(TRIES):
            task = self.store.tasks.get(task_id, owner)
            transition = decide(task, Action.CANCEL, self.store.table.now())
            try:
                cancelled = self.store.tasks.cancel(task, transition)
            except TransitionConflict:
                continue  # the status moved meanwhile: decide again on the fresh item
            if cancelled.parts_total:
                self._cancel_parts(cancelled)
            return cancelled
        raise InvalidTransition(f"task {task_id} keeps changing state; try again")

    def _cancel_parts(self, parent: Task) -> None:
        """Every part that has not finished: cancelled at once (PENDING, then counted on the
        parent) or asked to stop at its next checkpoint (RUNNING). A cancel repeated after a
        crash here finishes the job: finished parts are skipped, counts are idempotent."""
        fanout = FanOut(self.store, self.dispatcher)
        for part in self.store.parts.get(parent):
            if part.status.is_terminal:
                continue
            try:
                written = self.store.tasks.cancel(
                    part, decide(part, Action.CANCEL, self.store.table.now())
                )
            except (TransitionConflict, InvalidTransition):
                continue  # it finished meanwhile: its worker counts it
            if written.status == TaskStatus.CANCELLED:
                fanout.part_finished(written, succeeded=False)

    def retry(self, owner: str, task_id: str, restart: bool) -> Task:
        """FAILED or CANCELLED -> PENDING (resuming from the checkpoint unless `restart`), then
        its message. A repeat of a retry whose task has not been claimed since answers the
        same task, and sends the message only if the first call never did."""
        task = self.store.tasks.get(task_id, owner)
        if task.retried_at is not None and task.awaiting_first_claim:
            self.enqueue_if_lost(task)
            return task
        transition = decide(task, Action.RETRY, self.store.table.now())
        # Not finished again: it takes a slot of the owner's quota anew.
        taken = self._take_quotas(owner, task_id, {Quota.ACTIVE_TASKS: 1})
        try:
            if task.parts_total and not restart:
                # Resume: only the parts that did not succeed run again (restart plans anew).
                for part in self.store.parts.get(task):
                    if part.status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
                        self.store.parts.reset(part, task, None)
            retried = self.store.tasks.retry(
                task, transition, restart, taken[0].shard if taken else None
            )
        except TransitionConflict as exc:
            self._give_back(owner, taken)
            raise InvalidTransition(f"task {task_id} changed state; try again") from exc
        except BaseException:
            self._give_back(owner, taken)
            raise
        self.enqueue(retried)
        return retried

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
            except (InvalidTransition, TaskNotFound, QuotaExceeded) as exc:
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

    def stats(self, owner: str, operator: bool = False) -> Stats:
        """The caller's own counts and finishes per minute over the last hour; every queue's
        depth only for an operator (the queues hold every owner's work)."""
        raw = self.store.counters.stats(owner)
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
            queues=self.dispatcher.depths() if operator else {},
            throughput=throughput,
        )

    def dead_letters(self, owner: str) -> DeadLetterPage:
        letters = self.store.dead_letters.list(owner)
        current = {t.task_id: t for t in self.store.tasks.batch_get([d.task_id for d in letters])}
        return DeadLetterPage(
            items=[
                DeadLetterView(
                    **d.model_dump(),
                    task_status=current[d.task_id].status if d.task_id in current else None,
                )
                for d in letters
            ]
        )

    def redrive(self, owner: str) -> RedriveResult:
        """Send each of the owner's dead-lettered tasks back to its queue (resuming)."""
        redriven = skipped = 0
        for letter in self.store.dead_letters.list(owner):
            try:
                self.retry(owner, letter.task_id, restart=False)
                redriven += 1
            except (InvalidTransition, TaskNotFound):
                skipped += 1  # retried by hand already, or expired: the record is done with
            self.store.dead_letters.delete(owner, letter.id)
        return RedriveResult(redriven=redriven, skipped=skipped)

    def dead_letter(
        self,
        task_id: str,
        *,
        message_id: str,
        queue: str,
        receive_count: int,
        generation: str | None = None,
    ) -> bool:
        """A message of the task died in a DLQ: FAILED, with the owner's dead-letter record
        written in the same request. False when the task is gone or finished already, or the
        message is not the task's current one (`generation`), or a live worker holds it."""
        reason = f"its message could not be processed after {receive_count} deliveries"
        message = DeadMessage(
            message_id=message_id, queue=queue, reason=reason, receive_count=receive_count
        )
        error = TaskError(type="DeadLetter", message=reason)
        return self._fail_unfinished(task_id, Action.DEAD_LETTER, error, message, generation)

    def _fail_unfinished(
        self,
        task_id: str,
        action: Action,
        error: TaskError,
        dead_message: DeadMessage | None = None,
        generation: str | None = None,
    ) -> bool:
        """Fail a task that never finished, so that nothing waits forever; False when there
        is nothing to fail (the task is gone, finished, or past what `action` may fail)."""
        for _ in range(TRIES):
            try:
                task = self.store.tasks.get(task_id)
                # The store's clock, which wrote the lease: a lease is live or expired on
                # the clock of its writes (the wall clock misjudged a test's simulated one).
                transition = decide(task, action, self.store.table.now(), generation=generation)
            except (TaskNotFound, InvalidTransition):
                return False  # GuardFailed too: a stale message, or one a live worker holds
            try:
                self.store.tasks.fail(task, transition, error, dead_message, generation)
            except TransitionConflict:
                continue
            if task.part is not None:
                FanOut(self.store, self.dispatcher).part_finished(task, succeeded=False)
            return True
        return False

    def upload(self, owner: str, request: UploadRequest) -> UploadTicket:
        """A presigned PUT of exactly `request.size` bytes (signed: S3 refuses another
        length), counted against the owner's bytes a day when quotas are on."""
        if self.settings.quotas_enabled:
            self.store.quotas.take(
                owner,
                uuid.uuid4().hex,
                {Quota.UPLOAD_BYTES_PER_DAY: request.size},
                self.settings.quota_defaults,
            )
        return self.files.upload_ticket(owner, request)

    def health(self) -> dict[str, Any]:
        checks: dict[str, Any] = {}
        try:
            self.store.tasks.get("0" * 32)
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


def _part_view(part: Task) -> PartView:
    assert part.part is not None
    return PartView(
        index=part.part[1],
        status=part.status,
        progress=part.progress,
        attempts=part.attempts,
        error=part.error,
    )
