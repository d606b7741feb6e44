"""``python -m devstack dev | invoke | scaffold``: the command line of the local stack."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from devstack.runtime import say

EXAMPLES = """\
examples:
  python -m devstack dev                       # http://127.0.0.1:8000
  python -m devstack dev --port 9000 --workers 8
  PYTHONPATH=examples/task_types/url_check/src python -m devstack dev \\
      --parameter TaskTypeModules=url_check    # a task type from its own package
  python -m devstack invoke ApiFunction events/api_submit_task.json
  python -m devstack invoke WorkerFunction events/sqs_task_message.json
  python -m devstack scaffold NUMBER_SUM --dir ../number-sum   # a new task type's package
"""


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m devstack",
        description="Run the system from template.yaml on this machine, with moto for AWS.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = root.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="moto server, resources, API + page, SQS pollers")
    dev.add_argument("--host", default="127.0.0.1", help="address of the page and API")
    dev.add_argument("--port", type=int, default=8000, help="port of the page and API")
    dev.add_argument(
        "--moto-port", type=int, default=0, help="port of the moto server (0: a free one)"
    )
    dev.add_argument(
        "--workers",
        type=int,
        default=4,
        help="batches each SQS-triggered function runs at once (capped by the template's "
        "MaximumConcurrency)",
    )
    dev.add_argument(
        "--schedule-every",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="invoke every scheduled function (the sweeper) this often instead of at its "
        "template's rate() (tests)",
    )
    dev.add_argument(
        "--in-process",
        action="store_true",
        help="run the SQS-triggered functions as threads of this process instead of "
        "environment processes of their own (one process for a debugger; parts of a "
        "parallel task then share one core's worth of Python)",
    )
    dev.add_argument(
        "--verbose",
        action="store_true",
        help="handler logs at the template's LOG_LEVEL and metrics as EMF lines",
    )
    dev.add_argument(
        "--admin",
        action="store_true",
        help="the local user is an operator (Cognito group admin): /stats shows queue depths",
    )
    dev.add_argument(
        "--parameter",
        action="append",
        default=[],
        type=parameter,
        metavar="NAME=VALUE",
        help="a template parameter's value (repeatable), as `sam deploy --parameter-overrides`",
    )

    invoke = commands.add_parser(
        "invoke", help="run one handler once against a fresh stack; print its answer"
    )
    invoke.add_argument("function", help="logical id in template.yaml, e.g. ApiFunction")
    invoke.add_argument("event", help="event file, e.g. events/api_submit_task.json")
    invoke.add_argument(
        "--parameter",
        action="append",
        default=[],
        type=parameter,
        metavar="NAME=VALUE",
        help="a template parameter's value (repeatable), e.g. TaskTypeModules=my_types",
    )
    scaffold = commands.add_parser(
        "scaffold", help="a new task type's package, with its tests and sample events"
    )
    scaffold.add_argument("name", help="the type's name, e.g. NUMBER_SUM")
    scaffold.add_argument("--dir", required=True, help="where to write it (new or empty)")
    scaffold.add_argument("--module", help="its Python module (default: the name lower-cased)")
    return root


def positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0.1 <= seconds <= 86_400:
        raise argparse.ArgumentTypeError(f"expected seconds from 0.1 to 86400, got {text!r}")
    return seconds


def parameter(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name.isalnum():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def run_dev(args: argparse.Namespace) -> int:
    from devstack.stack import DevStack, StackOptions

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    options = StackOptions(
        host=args.host,
        port=args.port,
        moto_port=args.moto_port,
        workers=args.workers,
        verbose=args.verbose,
        separate_processes=not args.in_process,
        schedule_every=args.schedule_every,
        dev_admin=args.admin,
        parameters=dict(args.parameter),
    )
    stack = DevStack(options)
    try:
        stack.start()
        print(stack.banner(), flush=True)
        while not stop.wait(0.5):
            pass
        say("stopping ...")
    except OSError as exc:
        say(f"cannot start: {exc}", sys.stderr)
        return 1
    finally:
        started = time.monotonic()
        stack.stop()
    say(f"stopped in {time.monotonic() - started:.1f} s")
    return 0


def run_invoke(args: argparse.Namespace) -> int:
    from devstack.invoke import invoke, print_answer

    print_answer(invoke(args.function, args.event, dict(args.parameter)))
    return 0


def run_scaffold(args: argparse.Namespace) -> int:
    from devstack.scaffold import Names, ScaffoldError, next_steps, scaffold

    try:
        written = scaffold(args.name, args.dir, args.module)
    except ScaffoldError as exc:
        print(f"scaffold: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    print(next_steps(Names.of(args.name, args.module), Path(args.dir).resolve()))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "dev":
        return run_dev(args)
    if args.command == "scaffold":
        return run_scaffold(args)
    return run_invoke(args)
