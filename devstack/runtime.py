"""A Lambda runtime stand-in: handler modules loaded by path, contexts, one log line at a time.

Each loaded copy of a handler module is one "execution environment": module globals
(Powertools resolver, BatchProcessor, cached services) belong to it, and it serves one
invocation at a time, so concurrent requests and batches never share them.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
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
from typing import Any, TextIO

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


@dataclass
class LocalFunction:
    """One function of the template: its settings and a pool of execution environments."""

    logical_id: str
    config: FunctionEventSources
    name: str  # the physical function name, as Lambda would report it
    _idle: list[ModuleType] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _live: set[LambdaContext] = field(default_factory=set, repr=False)
    _expired: bool = field(default=False, repr=False)

    @property
    def code_dir(self) -> Path:
        if not self.config.code_uri:
            raise ValueError(f"{self.logical_id} has no local CodeUri")
        return REPO_ROOT / self.config.code_uri

    def _load(self) -> ModuleType:
        number = next(_instance_numbers)
        module_name = f"devstack_{self.logical_id.lower()}_{number}"
        return load_handler_module(self.code_dir, self.config.handler, module_name)

    def warm(self) -> None:
        """Cold-start one environment now, so import errors show at start-up."""
        module = self._load()
        with self._lock:
            self._idle.append(module)

    def invoke(self, event: Any) -> Any:
        """Run the handler once in an idle environment (a new one if all are busy)."""
        with self._lock:
            module = self._idle.pop() if self._idle else None
        if module is None:
            module = self._load()
        context = LambdaContext(
            function_name=self.name,
            timeout_seconds=self.config.timeout,
            memory_limit_in_mb=self.config.memory_size,
        )
        if self._expired:
            context.expire()
        function_name = self.config.handler.rpartition(".")[2]
        handler: Callable[[Any, LambdaContext], Any] = getattr(module, function_name)
        with self._lock:
            self._live.add(context)
        try:
            return handler(event, context)
        finally:
            with self._lock:
                self._live.discard(context)
                self._idle.append(module)
            _clear_local_metrics()

    def expire_invocations(self) -> None:
        """Tell running (and later) invocations their time is up (see LambdaContext.expire)."""
        with self._lock:
            self._expired = True
            for context in self._live:
                context.expire()


def _clear_local_metrics() -> None:
    """Metrics are not published locally; without this they would pile up in memory."""
    if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() != "true":
        return
    from taskqueue.observability import metrics

    metrics.clear_metrics()
