"""One composition root: `Settings` -> store, dispatcher, files, engine and service.

Each function's handler calls one of the cached builders below (`service()` for the API and
DLQ functions, `engine()` for the worker, `stream_counter()` for the counters, `pusher()`,
`connections()` and `token_verifier()` for the push, WebSocket and authorizer ones), so a cold
start builds its object graph once, lazily, at first use, and never anything another
function needs. Handlers, tests, benchmarks and the local stack never construct stores or
clients themselves: they call these, or the `new_*` builders for a graph of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from taskqueue import aws
from taskqueue.config import Settings, get_settings

if TYPE_CHECKING:
    from taskqueue.counting import StreamCounter
    from taskqueue.dispatch import Dispatcher
    from taskqueue.engine import Engine
    from taskqueue.files import Files
    from taskqueue.models import Task
    from taskqueue.push import Pusher
    from taskqueue.service import TaskService
    from taskqueue.store import ConnectionStore, Store
    from taskqueue.task_types.base import TaskContext
    from taskqueue.task_types.registry import TaskTypeRegistry
    from taskqueue.tokens import TokenVerifier

# The builders import their modules when called: the API function never loads the engine,
# and the counters function neither the engine nor the service.


def settings() -> Settings:
    """This process's settings; building anything from them also configures the clients."""
    current = get_settings()
    aws.configure(current.s3_addressing_style)
    return current


def new_store(
    settings: Settings, *, client: Any = None, clock: Callable[[], datetime] | None = None
) -> Store:
    """The table's store: tasks, listing, counters and dead letters over one client."""
    from taskqueue.models import utcnow
    from taskqueue.store import Store

    return Store.of(
        settings.table_name,
        settings.shard_count,
        settings.retention_days,
        client=client,
        clock=clock or utcnow,
    )


def new_dispatcher(settings: Settings, *, client: Any = None) -> Dispatcher:
    from taskqueue.dispatch import Dispatcher

    return Dispatcher(settings.task_queues, settings.dead_letter_queues, client=client)


def new_files(settings: Settings, *, client: Any = None) -> Files:
    from taskqueue.files import Files

    return Files(settings.data_bucket, client=client)


def task_context_factory(settings: Settings) -> Callable[[Task], TaskContext]:
    """What the engine hands each task type: its identity and the settings it may use."""
    from taskqueue.task_types.base import TaskContext

    def context(task: Task) -> TaskContext:
        return TaskContext(
            task_id=task.task_id,
            owner=task.owner,
            bucket=settings.data_bucket,
            email_sender=settings.email_sender,
            email_rate_per_second=settings.email_rate_per_second,
            email_max_concurrency=settings.email_max_concurrency,
            memory_mb=settings.aws_lambda_function_memory_size,
            previous_result=task.previous_result,
        )

    return context


def new_registry(settings: Settings) -> TaskTypeRegistry:
    """The task types: the built-ins, the entry points and the TASK_TYPE_MODULES plugins, each
    imported at first use."""
    from taskqueue.task_types import registry_for

    return registry_for(settings.task_type_modules)


def new_service(settings: Settings) -> TaskService:
    from taskqueue.service import TaskService

    return TaskService(
        store=new_store(settings),
        dispatcher=new_dispatcher(settings),
        files=new_files(settings),
        settings=settings,
        registry=new_registry(settings),
    )


def new_engine(settings: Settings) -> Engine:
    from taskqueue.engine import Engine

    return Engine(
        store=new_store(settings),
        dispatcher=new_dispatcher(settings),
        context_factory=task_context_factory(settings),
        registry=new_registry(settings),
        max_parallel=settings.max_parallel_parts,
        quantum_seconds=settings.worker_quantum_seconds,
    )


def new_stream_counter(settings: Settings) -> StreamCounter:
    from taskqueue.counting import StreamCounter

    return StreamCounter(new_store(settings).counters)


def new_connections(settings: Settings) -> ConnectionStore:
    """The owners' open WebSocket connections, in the tasks table."""
    return new_store(settings).connections


def new_pusher(settings: Settings) -> Pusher:
    from taskqueue.push import ManagementApi, Pusher

    return Pusher(new_connections(settings), ManagementApi(settings.websocket_management_url))


def new_token_verifier(settings: Settings) -> TokenVerifier:
    from taskqueue.tokens import TokenVerifier

    return TokenVerifier(settings.jwt_issuer, settings.jwt_audience)


@cache
def service() -> TaskService:
    """The API's (and the DLQ handler's) logic: submit, list, cancel, retry, dead letters."""
    return new_service(settings())


def sweep() -> int:
    """The sweeper function's logic: send the messages an API call died before sending."""
    return service().send_unsent(settings().sweep_grace_seconds)


@cache
def engine() -> Engine:
    """The worker's chunk engine."""
    return new_engine(settings())


@cache
def stream_counter() -> StreamCounter:
    """The counters function's logic: stream records -> status counters."""
    return new_stream_counter(settings())


@cache
def pusher() -> Pusher:
    """The push function's logic: stream records -> the owners' open pages."""
    return new_pusher(settings())


@cache
def connections() -> ConnectionStore:
    """The WebSocket function's connection records."""
    return new_connections(settings())


@cache
def token_verifier() -> TokenVerifier:
    """The WebSocket authorizer's verifier; its key set is fetched once per process."""
    return new_token_verifier(settings())


def reset() -> None:
    """Forget every cached object, the settings and the clients (a test or the local stack
    changed the environment)."""
    for builder in (service, engine, stream_counter, pusher, connections, token_verifier):
        builder.cache_clear()
    get_settings.cache_clear()
    aws.reset_clients()
