"""One execution environment in a process of its own: ``python -m devstack.lambda_process``.

What a Lambda execution environment is: the function's handler imported once (its cold
start), then one invocation at a time, each with its own context, talking to AWS (the moto
server here) over HTTP with the environment variables it was started with. Its CPU work runs
outside the devstack's process, so parts of a parallel task use every core, as separate
environments on AWS do.

The devstack (``devstack.runtime.ProcessEnvironment``) sends one request per line on stdin
(``{"event": ..., "expired": bool}``) and reads one answer per line from the pipe that was
stdout (``{"response": ...}`` or ``{"error": "<traceback>"}``); the handler's own output
(stdout and stderr) goes to stderr, which the devstack copies to its output line by line.
SIGUSR1 makes the running invocation's remaining time zero (``LambdaContext.expire``);
SIGUSR2 writes every thread's stack to the output (what is a stuck handler doing?).
"""

from __future__ import annotations

import ctypes
import faulthandler
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, TextIO

# Linux's prctl(PR_SET_PDEATHSIG): the kernel sends this signal when the devstack dies, even
# by SIGKILL, so an environment never outlives it.
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: stdin closing still ends the loop
        pass


def answer_channel() -> TextIO:
    """The pipe that was stdout, for answers only; stdout itself now goes to stderr, so no
    print or log line of a handler can corrupt an answer."""
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return channel


def serve(spec: dict[str, Any]) -> int:
    from devstack.runtime import (
        LambdaContext,
        add_layers_to_path,
        clear_local_metrics,
        load_handler_module,
    )

    # The devstack decides when environments stop, not a Ctrl-C (it has a session of its own,
    # out of the terminal's reach, but one started by hand is not).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    channel = answer_channel()
    faulthandler.register(signal.SIGUSR2, all_threads=True)
    add_layers_to_path()
    module = load_handler_module(Path(spec["code_dir"]), spec["handler"], spec["module"])
    handler = getattr(module, spec["handler"].rpartition(".")[2])
    current: list[LambdaContext] = []

    def expire(signum: int, frame: Any) -> None:
        for context in current:
            context.expire()

    signal.signal(signal.SIGUSR1, expire)
    channel.write(json.dumps({"ready": os.getpid()}) + "\n")
    channel.flush()
    for line in sys.stdin:
        request = json.loads(line)
        context = LambdaContext(
            function_name=spec["function_name"],
            timeout_seconds=spec["timeout"],
            memory_limit_in_mb=spec["memory"],
        )
        if request.get("expired"):
            context.expire()
        current.append(context)
        try:
            reply: dict[str, Any] = {"response": handler(request["event"], context)}
        except Exception:
            reply = {"error": traceback.format_exc().rstrip()}
        finally:
            current.clear()
            clear_local_metrics()
        channel.write(json.dumps(reply, default=str) + "\n")
        channel.flush()
    return 0


def main() -> int:
    return serve(json.loads(sys.argv[1]))


if __name__ == "__main__":
    raise SystemExit(main())
