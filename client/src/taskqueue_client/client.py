"""`Client`: every route of the tasks API as a method; `Task`: a handle on one task.

Usage::

    client = Client("https://api.example.com", token="eyJ...")
    task = client.submit("DATA_PROCESSING", {"rows": 10_000}).wait(timeout=120)
    print(task.status, task.result)
"""

from __future__ import annotations

import builtins
import mimetypes
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from taskqueue_client._http import RetryPolicy, Sender
from taskqueue_client._version import __version__
from taskqueue_client._wire import decode, to_json
from taskqueue_client.errors import TaskFailed, WaitTimeout
from taskqueue_client.models import (
    BulkAction,
    BulkRequest,
    BulkResult,
    DeadLetterPage,
    OutputLink,
    Priority,
    RedriveResult,
    RetryTaskRequest,
    Stats,
    SubmitTaskRequest,
    TaskDetail,
    TaskEvent,
    TaskPage,
    TaskStatus,
    TaskTypeInfo,
    TaskView,
    UploadRequest,
    UploadTicket,
)

M = TypeVar("M")
TERMINAL = frozenset({TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.CANCELLED})
TokenSource = str | Callable[[], str | None] | None
ProgressCallback = Callable[["Task"], None]
UPLOAD_CHUNK = 1024 * 1024
# From this many unfinished tasks, `wait_all` lists them instead of reading each.
LIST_POLLING_FROM = 4


@dataclass(frozen=True)
class Route:
    """One route of the API. `repeatable`: sending it twice does what sending it once does,
    so a failure that may hide a processed request is retried (see `_http`)."""

    method: str
    path: str
    response: type | None
    repeatable: bool = True
    authorized: bool = True


# Every route of the API, as data: a test checks these against the OpenAPI document (paths,
# methods and answer models), so a route the API gains or changes fails it until added here.
ROUTES: dict[str, Route] = {
    # Repeatable because every submit carries an Idempotency-Key.
    "submit": Route("POST", "/tasks", TaskView),
    "list": Route("GET", "/tasks", TaskPage),
    "get": Route("GET", "/tasks/{task_id}", TaskDetail),
    # A repeated cancel of a task it cancelled answers 409: not repeatable.
    "cancel": Route("DELETE", "/tasks/{task_id}", TaskView, repeatable=False),
    # The API answers a repeated retry with the task until a worker claims it.
    "retry": Route("POST", "/tasks/{task_id}/retry", TaskView),
    # Each task's result says whether it applied; a repeat answers 409s for those that did.
    "bulk": Route("POST", "/tasks/bulk", BulkResult, repeatable=False),
    "task_types": Route("GET", "/task-types", TaskTypeInfo),
    "stats": Route("GET", "/stats", Stats),
    "dead_letters": Route("GET", "/dead-letters", DeadLetterPage),
    "redrive": Route("POST", "/dead-letters/redrive", RedriveResult, repeatable=False),
    "upload": Route("POST", "/uploads", UploadTicket),
    "health": Route("GET", "/health", None, authorized=False),
    "openapi": Route("GET", "/openapi.json", None, authorized=False),
}


class Client:
    """The tasks API over HTTPS. `token` is a JWT (or a function returning a fresh one each
    time, for tokens that expire); without one, only a local stack lets requests in."""

    def __init__(
        self,
        base_url: str,
        token: TokenSource = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._sleep = sleep
        self._clock = clock
        self._http = httpx.Client(
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": f"taskqueue-client/{__version__}"},
        )
        self._sender = Sender(self._http, retry or RetryPolicy(), sleep=sleep)

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _headers(self, route: Route) -> dict[str, str]:
        if not route.authorized:
            return {}
        token = self._token() if callable(self._token) else self._token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _call(
        self,
        name: str,
        *,
        path_params: Mapping[str, str] | None = None,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        route = ROUTES[name]
        path = route.path.format(**{k: quote(v, safe="") for k, v in (path_params or {}).items()})
        response = self._sender.send(
            route.method,
            self.base_url + path,
            repeatable=route.repeatable,
            headers={**self._headers(route), **(headers or {})},
            json=json,
            params=params,
        )
        return response.json() if response.content else None

    def _model(self, kind: type[M], name: str, **kwargs: Any) -> M:
        return decode(kind, self._call(name, **kwargs))

    def _task(self, view: TaskView) -> Task:
        return Task(self, view)

    # ------------------------------------------------------------------ tasks

    def submit(
        self,
        type: str,
        params: Mapping[str, Any] | None = None,
        *,
        priority: Priority | str | None = None,
        run_at: datetime | None = None,
        delay_seconds: int | None = None,
        max_attempts: int | None = None,
        timeout_seconds: int | None = None,
        idempotency_key: str | None = None,
    ) -> Task:
        """Submit a task. Every call carries an Idempotency-Key (a fresh one unless given), so
        the client's own retries never submit twice; pass your own key to make a repeated call
        of your program return the task of the first one."""
        body = SubmitTaskRequest(
            type=type,
            params=dict(params or {}),
            priority=Priority(priority) if priority is not None else Priority.NORMAL,
            run_at=run_at,
            delay_seconds=delay_seconds,
            max_attempts=max_attempts,
            timeout_seconds=timeout_seconds,
        )
        key = idempotency_key or uuid.uuid4().hex
        view = self._model(
            TaskView,
            "submit",
            json=to_json(body, drop_none=True),
            headers={"Idempotency-Key": key},
        )
        return self._task(view)

    def get(self, task: Task | str) -> Task:
        """The task now: status, progress, result or error, recent events, download links."""
        return self._task(self._model(TaskDetail, "get", path_params={"task_id": _id(task)}))

    def list(
        self,
        *,
        status: TaskStatus | str | None = None,
        type: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = 100,
        limit: int | None = None,
    ) -> Iterator[Task]:
        """Your tasks, newest first, page after page until the last (or `limit` tasks)."""
        query: dict[str, str] = {"limit": str(page_size)}
        if status is not None:
            query["status"] = TaskStatus(status).value
        if type is not None:
            query["type"] = type
        if created_after is not None:
            query["created_after"] = created_after.isoformat()
        if created_before is not None:
            query["created_before"] = created_before.isoformat()
        yielded = 0
        while True:
            page = self._model(TaskPage, "list", params=query)
            for view in page.items:
                if limit is not None and yielded >= limit:
                    return
                yielded += 1
                yield self._task(view)
            if not page.next_cursor or (limit is not None and yielded >= limit):
                return
            query["cursor"] = page.next_cursor

    def cancel(self, task: Task | str) -> Task:
        """Cancel: CANCELLED at once if it had not started; RUNNING with `cancel_requested`
        while it runs (it stops at its next checkpoint). Conflict if it already finished."""
        return self._task(self._model(TaskView, "cancel", path_params={"task_id": _id(task)}))

    def retry(self, task: Task | str, *, restart: bool = False) -> Task:
        """Queue a FAILED or CANCELLED task again: from its last checkpoint, or from the start."""
        view = self._model(
            TaskView,
            "retry",
            path_params={"task_id": _id(task)},
            json=to_json(RetryTaskRequest(restart=restart)),
        )
        return self._task(view)

    def wait(
        self,
        task: Task | str,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        *,
        poll_interval: float = 0.25,
        max_poll_interval: float = 2.0,
    ) -> Task:
        """Poll until the task finishes (SUCCESS, FAILED or CANCELLED) and return it.

        `on_progress(task)` is called with each new state seen (status or progress changed).
        Raises WaitTimeout (with the last state) after `timeout` seconds; None waits forever."""
        return next(
            iter(
                self.wait_all(
                    [task],
                    timeout,
                    on_progress,
                    poll_interval=poll_interval,
                    max_poll_interval=max_poll_interval,
                )
            )
        )

    def wait_all(
        self,
        tasks: Iterable[Task | str],
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        *,
        poll_interval: float = 0.25,
        max_poll_interval: float = 2.0,
    ) -> builtins.list[Task]:
        """`wait` for many tasks at once; returns them in the order given, finished.

        Each round reads the unfinished tasks: from LIST_POLLING_FROM of them on, with one
        listing of the tasks created since the oldest (a page holds 100) instead of a GET
        each. The pause between rounds grows from `poll_interval` to `max_poll_interval`
        while nothing changes."""
        given = builtins.list(tasks)
        order = [_id(task) for task in given]
        created = {t.id: t.view.created_at for t in given if isinstance(t, Task)}
        latest: dict[str, Task] = {}
        pending = builtins.list(dict.fromkeys(order))
        deadline = None if timeout is None else self._clock() + timeout
        pause = poll_interval
        while True:
            changed = False
            for task in self._read_all(pending, created):
                before = latest.get(task.id)
                latest[task.id] = task
                created[task.id] = task.view.created_at
                if before is None or task._state != before._state:
                    changed = True
                    if on_progress is not None:
                        on_progress(task)
            pending = [i for i in pending if not latest[i].finished]
            if not pending:
                return [latest[task_id] for task_id in order]
            if deadline is not None and self._clock() >= deadline:
                raise WaitTimeout(latest[pending[0]], timeout or 0.0)
            pause = poll_interval if changed else min(max_poll_interval, pause * 1.5)
            if deadline is not None:
                pause = max(0.0, min(pause, deadline - self._clock()))
            self._sleep(pause)

    def _read_all(self, ids: builtins.list[str], created: dict[str, datetime]) -> Iterator[Task]:
        """The tasks now, in the order of `ids`: listed when there are many, else one by one;
        one the listing misses (an index that lags the table) is read by itself."""
        found: dict[str, Task] = {}
        if len(ids) >= LIST_POLLING_FROM and all(i in created for i in ids):
            wanted = set(ids)
            # A second before the oldest: the listing's bound is on stored, rounded times.
            since = min(created[i] for i in ids) - timedelta(seconds=1)
            for task in self.list(created_after=since):
                if task.id in wanted:
                    found[task.id] = task
                    if len(found) == len(wanted):
                        break
        for task_id in ids:
            yield found[task_id] if task_id in found else self.get(task_id)

    # ------------------------------------------------------------------ files

    def upload(
        self,
        path: str | Path,
        *,
        content_type: str | None = None,
        prefix: str | None = None,
    ) -> str:
        """Upload a local file for a task's input; returns its key (e.g. `input_key`).

        Asks the API for a presigned PUT URL (`POST /uploads`), then sends the file there.
        `prefix` (a key's folder from an earlier upload) puts files side by side."""
        file = Path(path)
        size = file.stat().st_size
        guessed = content_type or mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        request = UploadRequest(
            filename=file.name,
            content_type=guessed,  # type: ignore[arg-type]  # the API says which it takes
            size=size,
            prefix=prefix,
        )
        ticket = self._model(UploadTicket, "upload", json=to_json(request, drop_none=True))

        def chunks() -> Iterator[bytes]:
            with file.open("rb") as handle:
                while block := handle.read(UPLOAD_CHUNK):
                    yield block

        # Presigned URLs carry their own signature: no Authorization header. S3 takes no
        # chunked upload on a presigned PUT, hence the explicit length.
        self._sender.send(
            ticket.method,
            ticket.url,
            repeatable=True,
            headers={**ticket.headers, "Content-Length": str(size)},
            content=chunks,
        ).close()
        return ticket.key

    def download(self, task: Task | str, dest: str | Path) -> builtins.list[Path]:
        """Save a finished task's output files under the folder `dest`; returns their paths.

        Files keep their path below the task's result folder; nothing is written outside
        `dest`."""
        detail = self.get(task)
        folder = Path(dest)
        saved: builtins.list[Path] = []
        for link in detail.downloads:
            target = folder / _relative_output_path(link.key, detail.id)
            target.parent.mkdir(parents=True, exist_ok=True)
            response = self._sender.send("GET", link.url, repeatable=True, stream=True)
            try:
                partial = target.with_name(target.name + ".part")
                with partial.open("wb") as sink:
                    for block in response.iter_bytes(UPLOAD_CHUNK):
                        sink.write(block)
                partial.replace(target)
            finally:
                response.close()
            saved.append(target)
        return saved

    # ------------------------------------------------------------------ the rest

    def task_types(self) -> builtins.list[TaskTypeInfo]:
        """Registered task types with the JSON Schema of their params."""
        return decode(builtins.list[TaskTypeInfo], self._call("task_types"))

    def stats(self) -> Stats:
        """Counts by status and type, queue depths, finishes per minute over the last hour."""
        return self._model(Stats, "stats")

    def dead_letters(self) -> DeadLetterPage:
        """Your tasks whose messages reached a dead-letter queue."""
        return self._model(DeadLetterPage, "dead_letters")

    def bulk(
        self, action: str, tasks: Iterable[Task | str], *, restart: bool = False
    ) -> BulkResult:
        """Cancel or retry ("cancel" / "retry") up to 50 tasks, each on its own: one result per
        task, in order, saying whether it applied and, if not, why."""
        body = BulkRequest(action=BulkAction(action), ids=[_id(t) for t in tasks], restart=restart)
        return self._model(BulkResult, "bulk", json=to_json(body))

    def redrive(self) -> RedriveResult:
        """Send your dead letters back to their queues."""
        return self._model(RedriveResult, "redrive")

    def health(self) -> dict[str, Any]:
        """Whether the API reaches its table and queue (no token needed)."""
        answer: dict[str, Any] = self._call("health")
        return answer

    def openapi(self) -> dict[str, Any]:
        """The API's OpenAPI document."""
        document: dict[str, Any] = self._call("openapi")
        return document


@dataclass
class Task:
    """A task as last seen (`view`: a TaskDetail once read with `get`), with the client to act
    on it."""

    client: Client
    view: TaskView

    @property
    def id(self) -> str:
        return self.view.id

    @property
    def type(self) -> str:
        return self.view.type

    @property
    def status(self) -> TaskStatus:
        return self.view.status

    @property
    def progress(self) -> int:
        return self.view.progress

    @property
    def result(self) -> dict[str, Any] | None:
        return self.view.result

    @property
    def finished(self) -> bool:
        return self.view.status in TERMINAL

    @property
    def events(self) -> builtins.list[TaskEvent]:
        """Recent events: present on a task read with `get` (or `refresh`, `wait`)."""
        return self.view.events if isinstance(self.view, TaskDetail) else []

    @property
    def downloads(self) -> builtins.list[OutputLink]:
        return self.view.downloads if isinstance(self.view, TaskDetail) else []

    @property
    def _state(self) -> tuple[Any, ...]:
        view = self.view
        return (view.status, view.progress, view.units_done, view.cancel_requested)

    def refresh(self) -> Task:
        self.view = self.client.get(self.id).view
        return self

    def wait(
        self, timeout: float | None = None, on_progress: ProgressCallback | None = None
    ) -> Task:
        self.view = self.client.wait(self.id, timeout, on_progress).view
        return self

    def cancel(self) -> Task:
        self.view = self.client.cancel(self.id).view
        return self

    def retry(self, *, restart: bool = False) -> Task:
        self.view = self.client.retry(self.id, restart=restart).view
        return self

    def download(self, dest: str | Path) -> builtins.list[Path]:
        return self.client.download(self.id, dest)

    def raise_for_failure(self) -> Task:
        """This task if it did not fail; TaskFailed if it is FAILED or CANCELLED."""
        if self.status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            raise TaskFailed(self)
        return self


def _id(task: Task | str) -> str:
    return task.id if isinstance(task, Task) else task


def _relative_output_path(key: str, task_id: str) -> PurePosixPath:
    """Where an output key goes below the download folder: its path after the task's id
    (results/<owner>/<task>/x.png -> x.png), or its file name; never `..` or absolute."""
    parts = PurePosixPath(key).parts
    parts = parts[parts.index(task_id) + 1 :] if task_id in parts else parts[-1:]
    kept = [part for part in parts if part not in ("", ".", "..", "/")]
    if not kept:
        raise ValueError(f"output key {key!r} names no file")
    return PurePosixPath(*kept)
