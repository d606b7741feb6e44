"""A Lambda runtime stand-in: handler modules loaded by path, contexts, one log line at a time.

Each loaded copy of a handler module is one "execution environment": module globals
(Powertools resolver, BatchProcessor, cached services) belong to it, and it serves one
invocation at a time, so concurrent requests and batches never share them. An environment
is a module in this process (a thread per invocation), or a process of its own
(``devstack.lambda_process``: CPU work on every core, as Lambda's separate environments).
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import IO, Any, Protocol, TextIO

from devstack.resources import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, REPO_ROOT, FunctionEventSources

LAYER_PATHS = (REPO_ROOT / "layers" / "core",)
FUNCTIONS_DIR = REPO_ROOT / "functions"

# Never reach a real account (the local stack, the tests, the benchmarks), whatever the shell
# has configured: fake credentials, and no profile or endpoint of the shell's.
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": DEFAULT_REGION,
    "AWS_REGION": DEFAULT_REGION,
}
REAL_AWS_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL")
LOCAL_HANDLER_ENV = {
    # Outside Lambda there is no X-Ray daemon to send traces to.
    "POWERTOOLS_TRACE_DISABLED": "true",
    # Read by taskqueue.aws: bucket host names do not resolve locally, so path style.
    "S3_ADDRESSING_STYLE": "path",
}


def add_layers_to_path() -> None:
    """What Lambda does with the function's layers: make `taskqueue` importable."""
    # Powertools warns on every invocation that adds no metric; that is normal here.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    for path in LAYER_PATHS:
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def use_fake_aws(endpoint_url: str | None = None) -> None:
    """Fake credentials and region; with an endpoint, every boto3 client goes there."""
    for name in REAL_AWS_ENV:
        os.environ.pop(name, None)
    os.environ.update(FAKE_AWS_ENV)
    if endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = endpoint_url


def apply_function_environment(environment: Mapping[str, str]) -> None:
    """Set a function's variables and drop what the handlers cached from the old ones."""
    os.environ.update(environment)
    os.environ.update(LOCAL_HANDLER_ENV)
    reset_handler_caches()


def reset_handler_caches() -> None:
    """Forget every cached object of the handlers (services, engine, clients, settings), so
    that a changed environment takes effect: the one reset for tests, benchmarks and stack."""
    from taskqueue import wiring

    wiring.reset()


# ------------------------------------------------------------------------------- output

_print_lock = threading.Lock()


def say(line: str, stream: TextIO | None = None) -> None:
    """One line of devstack output, whole even when threads print at once."""
    out = stream or sys.stdout
    with _print_lock:
        out.write(f"{datetime.now():%H:%M:%S} {line}\n")
        out.flush()


def relay(line: str) -> None:
    """A line a handler wrote in an environment process, passed on as it was written."""
    with _print_lock:
        sys.stdout.write(line if line.endswith("\n") else line + "\n")
        sys.stdout.flush()


# ------------------------------------------------------------------------------- event sources


class EventSourceThread:
    """One daemon thread feeding a function (a stream mapping, a schedule) until stopped."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        # Daemon: a handler stuck in a long call never keeps the process alive.
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    @property
    def alive_threads(self) -> list[str]:
        return [self._thread.name] if self._thread.is_alive() else []

    def _run(self) -> None:
        raise NotImplementedError


# ------------------------------------------------------------------------------- context


@dataclass(eq=False)  # compared and hashed by identity: kept in a set while running
class LambdaContext:
    """The Lambda context object: remaining time counts down from the function's Timeout,
    unless ``remaining`` sets it (milliseconds, or a function answering them: a test's
    countdown makes a worker run out of time after N chunks).

    ``expire()`` makes the remaining time zero, so a handler that watches it (the worker
    engine) checkpoints and hands over to a continuation message: a prompt, clean shutdown.
    """

    function_name: str
    timeout_seconds: int
    memory_limit_in_mb: int = 128
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT_ID
    remaining: int | Callable[[], int] | None = None
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"{datetime.now():%Y/%m/%d}/[$LATEST]devstack"

    def get_remaining_time_in_millis(self) -> int:
        if self.remaining is not None:
            return self.remaining() if callable(self.remaining) else self.remaining
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def expire(self) -> None:
        self.remaining = None
        self._deadline = time.monotonic()


# ------------------------------------------------------------------------------- functions

_instance_numbers = itertools.count(1)


def load_handler_module(code_dir: Path, handler: str, name: str) -> ModuleType:
    """Import ``<code_dir>/<module>.py`` of ``module.function`` under a unique module name.

    All functions call their module app.py, so each copy gets its own name in sys.modules.
    """
    module_path, _, _ = handler.rpartition(".")
    source = code_dir / (module_path.replace(".", "/") + ".py")
    if str(code_dir) not in sys.path:
        sys.path.append(str(code_dir))  # Lambda runs a function with its code dir on the path
    spec = importlib.util.spec_from_file_location(name, source)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {source}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_function(name: str) -> ModuleType:
    """functions/<name>/app.py, loaded once per process under the name ``<name>_app``: one
    execution environment of that function shared by every caller in this process."""
    module_name = f"{name}_app"
    if module_name in sys.modules:
        return sys.modules[module_name]
    return load_handler_module(FUNCTIONS_DIR / name, "app.lambda_handler", module_name)


class InvocationError(RuntimeError):
    """The handler raised (its traceback is the message), or its environment died."""


class Environment(Protocol):
    def invoke(self, event: Any, context: LambdaContext) -> Any: ...

    def expire(self, context: LambdaContext) -> None: ...

    def close(self) -> None: ...


@dataclass(eq=False)
class ModuleEnvironment:
    """An environment in this process: the handler module, called on the caller's thread."""

    module: ModuleType
    handler: str

    def invoke(self, event: Any, context: LambdaContext) -> Any:
        function: Callable[[Any, LambdaContext], Any] = getattr(self.module, self.handler)
        try:
            return function(event, context)
        finally:
            clear_local_metrics()

    def expire(self, context: LambdaContext) -> None:
        context.expire()

    def close(self) -> None:
        pass


# Past the function's Timeout an invocation is ended as Lambda ends it: its environment is
# killed (and a new one made for the next invocation).
TIMEOUT_GRACE_SECONDS = 5.0
CLOSE_WAIT_SECONDS = 2.0


class ProcessEnvironment:
    """An environment in a process of its own (``devstack.lambda_process``), started with this
    process's environment variables (the endpoint of the moto server among them)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devstack.lambda_process", json.dumps(spec)],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            # A session of its own, as each environment on AWS has CPU of its own: where the
            # kernel shares CPU by session (autogroup), the stack's environments together
            # would otherwise get one session's share, however many run at once.
            start_new_session=True,
        )
        self._ready = False
        self._relay = threading.Thread(
            target=self._relay_output, name=f"{spec['module']}-output", daemon=True
        )
        self._relay.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _relay_output(self) -> None:
        stream: IO[str] | None = self.process.stderr
        if stream is None:
            return
        for line in stream:
            relay(line)

    def _read_answer(self) -> dict[str, Any]:
        stream = self.process.stdout
        line = stream.readline() if stream is not None else ""
        if not line:
            code = self.process.wait()
            raise InvocationError(
                f"the execution environment of {self.spec['function_name']} exited ({code})"
            )
        answer: dict[str, Any] = json.loads(line)
        return answer

    def wait_ready(self) -> None:
        """Its cold start: the handler imported (an import error ends the process)."""
        if not self._ready:
            self._read_answer()
            self._ready = True

    def invoke(self, event: Any, context: LambdaContext) -> Any:
        self.wait_ready()
        request = {"event": event, "expired": context.get_remaining_time_in_millis() == 0}
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise InvocationError(f"the execution environment is gone: {exc}") from exc
        limit = self.spec["timeout"] + TIMEOUT_GRACE_SECONDS
        timer = threading.Timer(limit, self.process.kill)
        timer.daemon = True
        timer.start()
        try:
            answer = self._read_answer()
        finally:
            timer.cancel()
        if "error" in answer:
            raise InvocationError(answer["error"])
        return answer.get("response")

    def expire(self, context: LambdaContext) -> None:
        context.expire()
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGUSR1)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        """End of input ends the process; one that does not end (a handler still running) is
        killed."""
        with contextlib.suppress(OSError, ValueError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(CLOSE_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class LocalFunction:
    """One function of the template: its settings and a pool of execution environments,
    modules in this process, or processes of their own when ``separate_processes``."""

    logical_id: str
    config: FunctionEventSources
    name: str  # the physical function name, as Lambda would report it
    separate_processes: bool = False
    _idle: list[Environment] = field(default_factory=list, repr=False)
    _all: list[Environment] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _live: dict[LambdaContext, Environment] = field(default_factory=dict, repr=False)
    _expired: bool = field(default=False, repr=False)

    @property
    def code_dir(self) -> Path:
        if not self.config.code_uri:
            raise ValueError(f"{self.logical_id} has no local CodeUri")
        return REPO_ROOT / self.config.code_uri

    @property
    def handler_name(self) -> str:
        return self.config.handler.rpartition(".")[2]

    def _load(self) -> Environment:
        number = next(_instance_numbers)
        module_name = f"devstack_{self.logical_id.lower()}_{number}"
        environment: Environment
        if self.separate_processes:
            environment = ProcessEnvironment(
                {
                    "code_dir": str(self.code_dir),
                    "handler": self.config.handler,
                    "module": module_name,
                    "function_name": self.name,
                    "timeout": self.config.timeout,
                    "memory": self.config.memory_size,
                }
            )
        else:
            module = load_handler_module(self.code_dir, self.config.handler, module_name)
            environment = ModuleEnvironment(module, self.handler_name)
        with self._lock:
            self._all.append(environment)
        return environment

    def warm(self) -> None:
        """Cold-start one environment now, so import errors show at start-up (a process is
        started here and waited for in ``ready``, so several start at once)."""
        environment = self._load()
        with self._lock:
            self._idle.append(environment)

    def ready(self) -> None:
        """Wait for the warmed environments' cold starts; an import error stops the start-up."""
        for environment in list(self._idle):
            if isinstance(environment, ProcessEnvironment):
                try:
                    environment.wait_ready()
                except InvocationError as exc:
                    raise SystemExit(f"{self.logical_id} does not start: {exc}") from exc

    def invoke(self, event: Any) -> Any:
        """Run the handler once in an idle environment (a new one if all are busy)."""
        with self._lock:
            environment = self._idle.pop() if self._idle else None
        if environment is None:
            environment = self._load()
        context = LambdaContext(
            function_name=self.name,
            timeout_seconds=self.config.timeout,
            memory_limit_in_mb=self.config.memory_size,
        )
        if self._expired:
            context.expire()
        with self._lock:
            self._live[context] = environment
        reusable = True
        try:
            return environment.invoke(event, context)
        except InvocationError:
            # As on Lambda, an environment whose invocation crashed or timed out is not
            # reused; an error the handler raised leaves the process as it was.
            reusable = not isinstance(environment, ProcessEnvironment) or environment.alive
            raise
        finally:
            with self._lock:
                self._live.pop(context, None)
                if reusable:
                    self._idle.append(environment)
                elif environment in self._all:
                    self._all.remove(environment)

    def expire_invocations(self) -> None:
        """Tell running (and later) invocations their time is up (see LambdaContext.expire)."""
        with self._lock:
            self._expired = True
            for context, environment in self._live.items():
                environment.expire(context)

    def pids(self) -> list[int]:
        """The processes of its environments (none when they are modules of this one)."""
        with self._lock:
            return [e.pid for e in self._all if isinstance(e, ProcessEnvironment)]

    def close(self) -> None:
        """End every environment (processes exit; nothing is left behind the devstack)."""
        with self._lock:
            environments, self._all, self._idle = list(self._all), [], []
        for environment in environments:
            environment.close()


def clear_local_metrics() -> None:
    """Metrics are not published locally; without this they would pile up in memory."""
    if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() != "true":
        return
    from taskqueue.observability import metrics

    metrics.clear_metrics()
