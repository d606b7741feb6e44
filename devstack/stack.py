"""The whole system on one machine: moto server, template resources, gateway, pollers and
schedules."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3

from devstack.gateway import Gateway, Route, http_routes
from devstack.moto_patches import tune_moto
from devstack.moto_sesv2 import bulk_email
from devstack.poller import QueueSource, SqsPoller
from devstack.resources import (
    AwsClients,
    LocalResources,
    Template,
    create_resources,
    event_sources,
    function_environment,
    load_template,
    transform_template,
)
from devstack.runtime import (
    LocalFunction,
    add_layers_to_path,
    apply_function_environment,
    say,
    use_fake_aws,
)
from devstack.schedules import SchedulePoller
from devstack.streams import StreamPoller, StreamReader
from devstack.wakeups import STREAM_WRITES, QueueWaiter, signal_stream_writes
from devstack.websocket import LocalWebSocketApi, local_config, websocket_api

if TYPE_CHECKING:
    from moto.server import ThreadedMotoServer

DEV_USER = "dev-user"
# Clients the handlers create lazily; made once up front, because creating boto3 clients
# from several threads at once is not safe.
HANDLER_CLIENTS = ("dynamodb", "sqs", "s3", "sesv2", "ses")
# Set for the push function locally: its management API is the gateway's WebSocket stage.
MANAGEMENT_URL_VARIABLE = "WEBSOCKET_MANAGEMENT_URL"


@dataclass
class StackOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    moto_port: int = 0
    workers: int = 4
    verbose: bool = False
    # SQS-triggered functions run in environment processes of their own; False: threads of
    # this process only (one process to attach a debugger to).
    separate_processes: bool = True
    # Seconds between invocations of every scheduled function, instead of its rate().
    schedule_every: float | None = None
    dev_user: str = DEV_USER
    dev_admin: bool = False  # the local user is in the operators' group (admin views)
    parameters: dict[str, str] = field(default_factory=dict)  # template parameter overrides


def local_functions(
    transformed: Template, resources: LocalResources, *, separate_processes: bool = False
) -> dict[str, LocalFunction]:
    """Every function of the template whose code is in this repository. With
    ``separate_processes`` the SQS-triggered ones (the task workers: the CPU work) get
    environment processes of their own; the others stay threads of this process."""
    functions = {}
    for logical_id, resource in transformed.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        config = event_sources(transformed, logical_id)
        if config.code_uri:
            name = resources.physical_name(logical_id)
            processes = separate_processes and bool(config.sqs)
            functions[logical_id] = LocalFunction(logical_id, config, name, processes)
    return functions


def queue_sources(function: LocalFunction, resources: LocalResources) -> list[QueueSource]:
    """The enabled SQS event source mappings of a function, with their queues' local names."""
    return [
        QueueSource(
            queue=source.queue,
            url=resources.queues[source.queue],
            arn=resources.arns[source.queue],
            region=resources.region,
            batch_size=source.batch_size,
            window_seconds=source.maximum_batching_window_in_seconds,
            reports_batch_item_failures=source.reports_batch_item_failures,
            maximum_concurrency=source.maximum_concurrency,
        )
        for source in function.config.sqs
        if source.enabled and source.queue in resources.queues
    ]


def handler_environment(
    transformed: Template, resources: LocalResources, functions: list[str]
) -> dict[str, str]:
    """One process environment for all functions (they share their variables' names)."""
    merged: dict[str, str] = {}
    for logical_id in functions:
        for name, value in function_environment(transformed, logical_id, resources).items():
            if merged.get(name, value) != value:
                say(f"warning: {name} differs between functions; {logical_id}'s value is ignored")
                continue
            merged[name] = value
    return merged


def verify_email_sender(address: str) -> None:
    """SES (moto too) refuses to send from an unverified identity; on AWS it is verified once."""
    ses = boto3.client("ses")
    if "@" in address:
        ses.verify_email_identity(EmailAddress=address)
    else:
        ses.verify_domain_identity(Domain=address)


def check_task_types() -> list[str]:
    """Load the configured task-type plugins now, so a broken one stops the start-up (on
    Lambda it would fail the first request that needs it)."""
    from taskqueue import wiring

    registry = wiring.new_registry(wiring.settings())
    plugins = list(registry.plugins())
    if plugins:
        say(f"task types from plugins: {', '.join(plugins)}")
    return plugins


def configure_handlers(
    transformed: Template,
    resources: LocalResources,
    functions: list[str],
    *,
    dev_user: str = DEV_USER,
    verbose: bool = False,
) -> dict[str, str]:
    """The functions' environment in this process, their clients made, the SES sender verified
    and the task-type plugins loaded: what every local run of the handlers needs first."""
    environment = handler_environment(transformed, resources, functions)
    if not verbose:
        # Keep the terminal readable: handler warnings and errors only, no EMF lines.
        environment["LOG_LEVEL"] = "WARNING"
        environment["POWERTOOLS_METRICS_DISABLED"] = "true"
    # Local only, never in the template: requests without a JWT act as this user.
    environment["DEV_AUTH_USER"] = dev_user
    # Each worker environment paces its sends as if it were the only one: locally the sends
    # stay quick, and moto does not enforce the account's rate (several EMAIL tasks at once
    # can together exceed it here, never on AWS, where the template's value divides it).
    environment["EMAIL_MAX_CONCURRENCY"] = "1"
    add_layers_to_path()
    apply_function_environment(environment)
    from taskqueue import wiring
    from taskqueue.aws import client

    wiring.settings()  # the clients follow the settings (S3 addressing)
    for service in HANDLER_CLIENTS:
        client(service)
    if environment.get("EMAIL_SENDER"):
        verify_email_sender(environment["EMAIL_SENDER"])
    check_task_types()
    return environment


@dataclass
class DevStack:
    options: StackOptions = field(default_factory=StackOptions)
    moto: ThreadedMotoServer | None = None
    resources: LocalResources | None = None
    functions: dict[str, LocalFunction] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)
    gateway: Gateway | None = None
    websocket: LocalWebSocketApi | None = None
    pollers: list[SqsPoller | StreamPoller | SchedulePoller] = field(default_factory=list)
    endpoint_url: str = ""

    # --------------------------------------------------------------------- start

    def start(self) -> None:
        self._quiet_libraries()
        self._start_moto()
        template = load_template()
        unknown = sorted(set(self.options.parameters) - set(template.get("Parameters", {})))
        if unknown:
            raise SystemExit(f"template.yaml has no parameter {', '.join(unknown)}")
        transformed = transform_template(template, parameters=self.options.parameters)
        clients = AwsClients.from_session(boto3.Session(), endpoint_url=self.endpoint_url)
        self.resources = create_resources(clients, transformed, parameters=self.options.parameters)
        self.functions = local_functions(
            transformed, self.resources, separate_processes=self.options.separate_processes
        )
        self._configure_handlers(transformed, self.resources)
        self.routes = http_routes(transformed)
        for function in self.functions.values():
            function.warm()
        for function in self.functions.values():
            function.ready()
        api = websocket_api(transformed)
        if api is not None:
            self.websocket = LocalWebSocketApi(api, self._invoke, self.options.dev_user)
        self.gateway = Gateway(
            self.routes,
            self._invoke,
            host=self.options.host,
            port=self.options.port,
            dev_user=self.options.dev_user,
            dev_admin=self.options.dev_admin,
            config_js=local_config(api),
            websocket=self.websocket,
        )
        if self.websocket is not None:
            self._point_push_at(f"{self.gateway.url}{self.websocket.api.path}")
        self.gateway.start()
        self._start_pollers(transformed, clients)
        self._start_schedules()

    def _quiet_libraries(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request lines

    def _start_moto(self) -> None:
        from moto.server import ThreadedMotoServer

        if self.options.moto_port:
            # moto's server thread dies on a taken port and leaves start() waiting forever.
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                # As the server will (a port in TIME_WAIT after a restart is free to use).
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", self.options.moto_port))
                except OSError as exc:
                    raise SystemExit(
                        f"moto port {self.options.moto_port} is in use; choose another "
                        "with --moto-port, or 0 for any free port"
                    ) from exc
        tune_moto()
        bulk_email()
        self.moto = ThreadedMotoServer(
            ip_address="127.0.0.1", port=self.options.moto_port, verbose=False
        )
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        use_fake_aws(self.endpoint_url)

    def _configure_handlers(self, transformed: Template, resources: LocalResources) -> None:
        configure_handlers(
            transformed,
            resources,
            list(self.functions),
            dev_user=self.options.dev_user,
            verbose=self.options.verbose,
        )

    def _point_push_at(self, url: str) -> None:
        """The push function's management API is the gateway's WebSocket stage, whose port is
        known once the gateway is bound; the settings are read again, and the push function's
        logic built from them."""
        from taskqueue import wiring
        from taskqueue.config import get_settings

        os.environ[MANAGEMENT_URL_VARIABLE] = url
        get_settings.cache_clear()
        wiring.pusher.cache_clear()

    def _invoke(self, function: str, event: dict[str, Any]) -> Any:
        return self.functions[function].invoke(event)

    def _start_pollers(self, transformed: Template, clients: AwsClients) -> None:
        assert self.resources is not None
        resources = self.resources
        streams = boto3.client(
            "dynamodbstreams", endpoint_url=self.endpoint_url, region_name=resources.region
        )
        # moto is in this process: pollers wait on its signals, not on timers (devstack.wakeups).
        writes = STREAM_WRITES if signal_stream_writes() else None
        waiter = QueueWaiter(resources.account_id, resources.region)
        for logical_id, function in self.functions.items():
            for stream in function.config.streams:
                if not stream.enabled or stream.table not in resources.tables:
                    continue
                reader = StreamReader.for_table(
                    clients.dynamodb, streams, resources.tables[stream.table], stream.filters
                )
                if stream.starting_position == "LATEST":
                    reader.skip_to_latest()
                stream_poller = StreamPoller(
                    function,
                    reader,
                    stream.batch_size,
                    stream.maximum_batching_window_in_seconds,
                    writes=writes,
                )
                stream_poller.start()
                self.pollers.append(stream_poller)
                say(
                    f"{logical_id}: reading the stream of {stream.table} (batch "
                    f"{stream.batch_size}, every {stream_poller.window_seconds:g} s)"
                )
            sources = queue_sources(function, resources)
            if not sources:
                continue
            poller = SqsPoller(
                function, sources, clients.sqs, self.options.workers, self._report, waiter
            )
            poller.start()
            self.pollers.append(poller)
            say(
                f"{logical_id}: polling {', '.join(s.queue for s in sources)} "
                f"(batch {sources[0].batch_size}, window {sources[0].window_seconds} s, "
                f"timeout {function.config.timeout} s, "
                f"{', '.join(str(poller.concurrency(s)) for s in sources)} workers)"
            )

    def _start_schedules(self) -> None:
        for logical_id, function in self.functions.items():
            for source in function.config.schedules:
                if not source.enabled:
                    continue
                if not (self.options.schedule_every or source.seconds):
                    say(f"{logical_id}: {source.expression} ({source.name}) is not emulated")
                    continue
                schedule = SchedulePoller(function, source, self.options.schedule_every)
                schedule.start()
                self.pollers.append(schedule)
                say(f"{logical_id}: invoked every {schedule.period:g} s ({source.name})")

    def _report(
        self, queue: str, records: list[dict[str, Any]], failed: set[str], seconds: float
    ) -> None:
        """One line per task message: the task's status after the invocation."""
        from taskqueue import wiring
        from taskqueue.dispatch import parse_message

        store = wiring.new_store(wiring.settings())
        for record in records:
            retried = " (returned to the queue)" if record["messageId"] in failed else ""
            try:
                task_id = parse_message(record["body"]).task_id
            except Exception:
                say(f"{queue:<28} malformed message {record['messageId']}{retried}")
                continue
            try:
                task = store.tasks.get(task_id)
            except Exception:
                say(f"{queue:<28} task {task_id} not found{retried}")
                continue
            detail = f"{task.progress}%"
            if task.error is not None and task.status.value in ("FAILED", "PENDING"):
                detail += f" {task.error.type}: {task.error.message[:120]}"
            say(
                f"{queue:<28} task {task_id} {task.task_type:<16} {task.status.value:<9} "
                f"{detail} ({seconds:.1f} s){retried}"
            )

    # --------------------------------------------------------------------- stop

    def stop(self) -> None:
        """Pollers first (running tasks checkpoint and hand over), then gateway, then moto."""
        for poller in self.pollers:
            poller.stop()
        stuck = [name for poller in self.pollers for name in poller.alive_threads]
        if stuck:
            say(f"still busy at shutdown (left to exit with the process): {', '.join(stuck)}")
        for function in self.functions.values():
            function.close()
        if self.gateway is not None:
            self.gateway.stop()
        if self.moto is not None:
            with contextlib.suppress(Exception):
                self.moto.stop()
        os.environ.pop("AWS_ENDPOINT_URL", None)

    def banner(self) -> str:
        assert self.gateway is not None
        url = self.gateway.url
        push = ""
        if self.websocket is not None:
            push = f"  push      ws{url.removeprefix('http')}{self.websocket.api.path}\n"
        return (
            f"\nLocal stack ready: {url}   (moto at {self.endpoint_url}, user {self.options.dev_user})\n"
            f"  page      {url}/\n"
            f"  API docs  {url}/docs\n"
            f"{push}"
            f"  try       curl -s -X POST {url}/tasks -H 'content-type: application/json' "
            """-d '{"type": "DATA_PROCESSING", "params": {"rows": 10000}}'\n"""
            f"            curl -s {url}/tasks\n"
            f"  client    pip install ./client; export TQ_URL={url}; tq list  (no token needed)\n"
            "Ctrl-C stops everything.\n"
        )
