"""`tq`: the tasks API from a terminal, on top of `taskqueue_client.Client`.

Every command takes `--json` for scripts (one JSON document on stdout, the API's own shapes).
Exit codes: 0 done; 1 the API refused or a task ended FAILED or CANCELLED; 2 bad usage or
configuration; 3 `watch`/`--wait` timed out.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from taskqueue_client._version import __version__
from taskqueue_client._wire import to_json
from taskqueue_client.auth import (
    LOGIN_PORT,
    Cognito,
    LoginError,
    Tokens,
    TokenStore,
    login_with_browser,
    token_source,
)
from taskqueue_client.client import Client, Task
from taskqueue_client.config import (
    ENVIRONMENT,
    ConfigError,
    Profile,
    config_dir,
    load_profile,
    read_profiles,
    save_profile,
)
from taskqueue_client.errors import ApiError, TaskQueueClientError, WaitTimeout
from taskqueue_client.models import TaskStatus

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 3
STATUS_STYLE = {
    TaskStatus.PENDING: "yellow",
    TaskStatus.RUNNING: "cyan",
    TaskStatus.SUCCESS: "green",
    TaskStatus.FAILED: "red",
    TaskStatus.CANCELLED: "magenta",
}
DURATION = re.compile(r"^(\d+)([smhd])$")
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Cli:
    """What the commands share: parsed arguments, consoles, and the client made on demand."""

    def __init__(
        self,
        args: argparse.Namespace,
        *,
        out: Console,
        err: Console,
        make_client: Callable[[Profile], Client],
        tokens: TokenStore,
    ) -> None:
        self.args = args
        self.out = out
        self.err = err
        self.tokens = tokens
        self._make_client = make_client
        self._client: Client | None = None

    @property
    def as_json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    def profile(self) -> Profile:
        return load_profile(
            self.args.profile,
            overrides={"url": self.args.url, "token": self.args.token},
        )

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = self._make_client(self.profile())
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def emit(self, data: Any) -> None:
        """JSON on stdout for scripts: no colours, no wrapping."""
        self.out.file.write(json.dumps(to_json(data), indent=2, default=str) + "\n")
        self.out.file.flush()


# ------------------------------------------------------------------ formatting


def short_time(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"


def status_text(status: TaskStatus) -> str:
    return f"[{STATUS_STYLE[status]}]{status.value}[/]"


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def parse_when(text: str) -> datetime:
    """An ISO 8601 time (UTC if it names no zone) or a span back from now: 30m, 2h, 7d."""
    found = DURATION.match(text.strip())
    if found:
        back = int(found.group(1)) * DURATION_UNITS[found.group(2)]
        return datetime.now(UTC) - timedelta(seconds=back)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO 8601 time nor a span such as 30m, 2h, 7d"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_param(text: str) -> tuple[str, Any]:
    """key=value; the value is JSON when it parses as JSON (10, true, [1,2]), else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def parse_step(text: str) -> tuple[str, dict[str, Any]]:
    """--then: TYPE or TYPE=PARAMS, the params a JSON object or @file.json."""
    kind, given, params = text.partition("=")
    if not kind:
        raise argparse.ArgumentTypeError("--then needs a task type: TYPE or TYPE=PARAMS")
    return kind, load_params(params) if given else {}


def load_params(text: str) -> dict[str, Any]:
    """--params: a JSON object, or @file.json."""
    source = Path(text[1:]).read_text(encoding="utf-8") if text.startswith("@") else text
    try:
        value = json.loads(source)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--params is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--params must be a JSON object")
    return value


def tasks_table(tasks: Sequence[Task]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("ID", "TYPE", "STATUS", "PROGRESS", "CREATED", "DURATION"):
        table.add_column(column, no_wrap=column in ("ID", "CREATED"))
    for task in tasks:
        view = task.view
        table.add_row(
            view.id,
            view.type,
            status_text(view.status),
            f"{view.progress}%",
            short_time(view.created_at),
            duration_text(view.duration_seconds),
        )
    return table


# ------------------------------------------------------------------ watching


def progress_bars(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
    )


def watch_tasks(cli: Cli, ids: Sequence[str], timeout: float | None) -> int:
    """Live progress bars until every task finished; the exit code says how they ended."""
    bars: dict[str, TaskID] = {}
    with progress_bars(cli.err if cli.as_json else cli.out) as progress:

        def update(task: Task) -> None:
            if task.id not in bars:
                bars[task.id] = progress.add_task(
                    f"{task.id[:12]} {escape(task.type)}", total=100, status=""
                )
            progress.update(bars[task.id], completed=task.progress, status=status_text(task.status))

        try:
            finished = cli.client.wait_all(ids, timeout, update)
        except WaitTimeout as exc:
            cli.err.print(f"[red]timed out[/]: {escape(str(exc))}")
            return EXIT_TIMEOUT
    if cli.as_json:
        cli.emit([task.view for task in finished])
    else:
        for task in finished:
            show_outcome(cli, task)
    ok = all(task.status == TaskStatus.SUCCESS for task in finished)
    return EXIT_OK if ok else EXIT_FAILED


def show_outcome(cli: Cli, task: Task) -> None:
    view = task.view
    line = f"{view.id} {status_text(view.status)}"
    if view.error:
        line += f"  {escape(view.error.type)}: {escape(view.error.message)}"
    if view.failed_items:
        line += f"  ({view.failed_items} items failed)"
    cli.out.print(line)


# ------------------------------------------------------------------ commands


def cmd_submit(cli: Cli) -> int:
    args = cli.args
    params = dict(args.params or {})
    params.update(dict(args.param or []))  # -p key=value over --params
    task = cli.client.submit(
        args.type,
        params,
        priority=args.priority,
        run_at=args.run_at,
        delay_seconds=args.delay,
        max_attempts=args.max_attempts,
        timeout_seconds=args.timeout_seconds,
        then=args.then,
        idempotency_key=args.idempotency_key,
    )
    if args.wait:
        if not cli.as_json:
            cli.out.print(f"submitted {task.id}")
        return watch_tasks(cli, [task.id], args.wait_timeout)
    if cli.as_json:
        cli.emit(task.view)
    else:
        cli.out.print(f"{task.id} {escape(task.type)} {status_text(task.status)}")
    return EXIT_OK


def cmd_list(cli: Cli) -> int:
    args = cli.args
    tasks = list(
        cli.client.list(
            status=args.status,
            type=args.type,
            created_after=args.since,
            created_before=args.before,
            page_size=min(100, args.limit) if args.limit else 100,
            limit=None if args.all else args.limit,
        )
    )
    if cli.as_json:
        cli.emit([task.view for task in tasks])
    elif tasks:
        cli.out.print(tasks_table(tasks))
    else:
        cli.err.print("no tasks")
    return EXIT_OK


def cmd_show(cli: Cli) -> int:
    task = cli.client.get(cli.args.id)
    if cli.as_json:
        cli.emit(task.view)
        return EXIT_OK
    view = task.view
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    rows: list[tuple[str, str]] = [
        ("id", view.id),
        ("type", escape(view.type)),
        (
            "status",
            status_text(view.status) + (" (cancel requested)" if view.cancel_requested else ""),
        ),
        ("progress", f"{view.progress}% ({view.units_done}/{view.units_total})"),
        ("priority", view.priority.value),
        ("attempts", f"{view.attempts}/{view.max_attempts}"),
        ("created", short_time(view.created_at)),
        ("started", short_time(view.started_at)),
        ("finished", short_time(view.finished_at)),
        ("duration", duration_text(view.duration_seconds)),
        ("params", escape(json.dumps(view.params))),
    ]
    if view.run_at:
        rows.append(("run at", short_time(view.run_at)))
    if view.error:
        rows.append(("error", f"[red]{escape(view.error.type)}[/]: {escape(view.error.message)}"))
    if view.failed_items:
        rows.append(("failed items", str(view.failed_items)))
    for name, value in (view.result or {}).items():
        rows.append((f"result.{escape(name)}", escape(summary_of(value))))
    if view.result_location:
        rows.append(("result at", escape(view.result_location)))
    for link in task.downloads:
        rows.append(("download", escape(link.key)))
    for name, value in rows:
        grid.add_row(name, value)
    cli.out.print(grid)
    if task.events:
        cli.out.print("\n[bold]recent events[/] (tq logs for all)")
        for event in task.events[-10:]:
            cli.out.print(event_line(event))
    return EXIT_OK


def summary_of(value: Any) -> str:
    """A result field on one line: scalars as JSON, collections by their size (--json has all)."""
    if isinstance(value, list):
        return f"[{len(value)} items]"
    if isinstance(value, dict):
        return f"{{{len(value)} fields}}"
    return json.dumps(value)


def event_line(event: Any) -> str:
    style = {"ERROR": "red", "WARNING": "yellow"}.get(event.level, "dim")
    return f"{short_time(event.time)} [{style}]{event.level:<7}[/] {escape(event.message)}"


def cmd_watch(cli: Cli) -> int:
    return watch_tasks(cli, cli.args.ids, cli.args.timeout)


def cmd_cancel(cli: Cli) -> int:
    cancelled = [cli.client.cancel(task_id) for task_id in cli.args.ids]
    if cli.as_json:
        cli.emit([task.view for task in cancelled])
        return EXIT_OK
    for task in cancelled:
        note = " (cancel requested: it stops at its next checkpoint)" if not task.finished else ""
        cli.out.print(f"{task.id} {status_text(task.status)}{note}")
    return EXIT_OK


def cmd_retry(cli: Cli) -> int:
    task = cli.client.retry(cli.args.id, restart=cli.args.restart)
    if cli.as_json:
        cli.emit(task.view)
    else:
        how = "from the start" if cli.args.restart else "from its last checkpoint"
        cli.out.print(f"{task.id} {status_text(task.status)} ({how})")
    return EXIT_OK


def cmd_logs(cli: Cli) -> int:
    seen: set[tuple[str, str]] = set()
    collected = []
    pause = 0.5
    while True:
        task = cli.client.get(cli.args.id)
        for event in task.events:
            mark = (event.time.isoformat(), event.message)
            if mark in seen:
                continue
            seen.add(mark)
            collected.append(event)
            if not cli.as_json:
                cli.out.print(event_line(event))
        if not cli.args.follow or task.finished:
            break
        time.sleep(pause)
        pause = min(2.0, pause * 1.5)
    if cli.as_json:
        cli.emit(collected)
    return EXIT_OK


def cmd_upload(cli: Cli) -> int:
    uploaded: list[dict[str, str]] = []
    prefix = cli.args.prefix
    for path in cli.args.paths:
        key = cli.client.upload(path, content_type=cli.args.content_type, prefix=prefix)
        # The files of one command share a folder, as a task with several inputs expects.
        prefix = prefix or key.rsplit("/", 1)[0] + "/"
        uploaded.append({"path": str(path), "key": key})
        if not cli.as_json:
            cli.out.print(key)
    if cli.as_json:
        cli.emit(uploaded)
    return EXIT_OK


def cmd_download(cli: Cli) -> int:
    saved = cli.client.download(cli.args.id, cli.args.dest)
    if cli.as_json:
        cli.emit([str(path) for path in saved])
    elif saved:
        for path in saved:
            cli.out.print(str(path))
    else:
        cli.err.print("the task has no output files")
    return EXIT_OK


def cmd_stats(cli: Cli) -> int:
    stats = cli.client.stats()
    if cli.as_json:
        cli.emit(stats)
        return EXIT_OK
    counts = Table(title="tasks", box=None, header_style="bold", title_justify="left")
    counts.add_column("TYPE")
    statuses = list(TaskStatus)
    for status in statuses:
        counts.add_column(status.value, justify="right")
    by_status_type = stats.counts.by_status_type
    for task_type in sorted(stats.counts.by_type):
        counts.add_row(
            escape(task_type),
            *(str(by_status_type.get(s.value, {}).get(task_type, 0)) for s in statuses),
        )
    counts.add_row("[bold]all[/]", *(str(stats.counts.by_status.get(s.value, 0)) for s in statuses))
    cli.out.print(counts)
    if stats.queues:  # the queues' depths come to operators (Cognito group admin) only
        queues = Table(title="queues", box=None, header_style="bold", title_justify="left")
        names = ["visible", "in_flight", "delayed"]
        queues.add_column("QUEUE")
        for name in names:
            queues.add_column(name.upper(), justify="right")
        for queue, depths in sorted(stats.queues.items()):
            label = f"{queue} (dead letters)" if depths.dead_letter else queue
            queues.add_row(escape(label), *(str(getattr(depths, name)) for name in names))
        cli.out.print(queues)
    hour = stats.throughput
    cli.out.print(
        f"last hour: {sum(p.succeeded for p in hour)} succeeded, "
        f"{sum(p.failed for p in hour)} failed, {sum(p.cancelled for p in hour)} cancelled"
    )
    return EXIT_OK


def cmd_types(cli: Cli) -> int:
    types = cli.client.task_types()
    if cli.as_json:
        cli.emit(types)
        return EXIT_OK
    for info in types:
        cli.out.print(f"[bold]{escape(info.name)}[/]  {escape(info.description)}")
        properties = info.params_schema.get("properties", {})
        for name, schema in properties.items():
            kind = schema.get("type") or "|".join(
                option.get("type", "?") for option in schema.get("anyOf", [])
            )
            default = f" = {json.dumps(schema['default'])}" if "default" in schema else ""
            cli.out.print(f"    {escape(name)}: {escape(str(kind))}{escape(default)}")
    return EXIT_OK


def cmd_dead_letters(cli: Cli) -> int:
    if cli.args.redrive:
        result = cli.client.redrive()
        if cli.as_json:
            cli.emit(result)
        else:
            cli.out.print(f"sent back {result.redriven}, skipped {result.skipped}")
        return EXIT_OK
    page = cli.client.dead_letters()
    if cli.as_json:
        cli.emit(page.items)
        return EXIT_OK
    if not page.items:
        cli.err.print("no dead letters")
    for letter in page.items:
        cli.out.print(
            f"{letter.task_id} {escape(letter.task_type)} {escape(letter.queue)} "
            f"{short_time(letter.dead_at)} {escape(letter.reason)}"
        )
    return EXIT_OK


def cmd_health(cli: Cli) -> int:
    checks = cli.client.health()
    if cli.as_json:
        cli.emit(checks)
    else:
        for name, value in checks.items():
            cli.out.print(f"{name}: {value}")
    return EXIT_OK if checks.get("ok") else EXIT_FAILED


def cmd_configure(cli: Cli) -> int:
    """Write the profile: the file's settings for it, with the flags given."""
    args = cli.args
    name = args.profile or "default"
    stored = read_profiles(config_dir() / "config.toml").get(name, {})
    profile = Profile(name=name, **stored)
    profile.url = args.configure_url or args.url or profile.url
    profile.cognito_domain = args.cognito_domain or profile.cognito_domain
    profile.client_id = args.client_id or profile.client_id
    path = save_profile(profile)
    cli.err.print(f"profile {name!r} saved in {path}")
    return EXIT_OK


def cmd_login(cli: Cli) -> int:
    profile = cli.profile()
    if cli.args.with_token:
        cli.tokens.save(profile.name, Tokens(id_token=cli.args.with_token))
        cli.err.print(f"token saved for profile {profile.name!r}")
        return EXIT_OK
    cognito = Cognito.of(profile)
    if cognito is None:
        raise ConfigError(
            "signing in needs the user pool's hosted UI domain and app client id: "
            "`tq configure --cognito-domain DOMAIN --client-id ID` (stack outputs "
            f"UserPoolDomain, UserPoolClientId) or {ENVIRONMENT['cognito_domain']} and "
            f"{ENVIRONMENT['client_id']}"
        )
    opener: Callable[[str], Any] = (lambda url: None) if cli.args.no_browser else _open_browser
    tokens = login_with_browser(
        cognito, port=cli.args.port, open_browser=opener, say=lambda text: cli.err.print(text)
    )
    cli.tokens.save(profile.name, tokens)
    cli.err.print(f"signed in (profile {profile.name!r})")
    return EXIT_OK


def _open_browser(url: str) -> None:
    import webbrowser

    webbrowser.open(url)


def cmd_logout(cli: Cli) -> int:
    profile = cli.profile()
    removed = cli.tokens.delete(profile.name)
    cli.err.print("signed out" if removed else "was not signed in")
    return EXIT_OK


# ------------------------------------------------------------------ arguments


def build_parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="tq",
        description="Submit, watch, cancel and retry background tasks of the tasks API.",
        epilog=(
            "configuration: --url/--token, else TQ_URL, TQ_TOKEN (TQ_PROFILE picks a profile), "
            "else the profile file ~/.config/taskqueue/config.toml (tq configure). "
            "A local stack (make dev) needs no token: TQ_URL=http://127.0.0.1:8000"
        ),
    )
    root.add_argument("--version", action="version", version=f"tq {__version__}")
    root.add_argument(
        "--profile", help="profile of the config file (default: TQ_PROFILE or default)"
    )
    root.add_argument("--url", help="base URL of the API (default: TQ_URL or the profile's)")
    root.add_argument("--token", help="a JWT to send (default: TQ_TOKEN, else `tq login`'s)")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print JSON for scripts")

    def command(name: str, handler: Callable[[Cli], int], text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[output], help=text, description=text)
        sub.set_defaults(handler=handler)
        return sub

    submit = command("submit", cmd_submit, "submit a task")
    submit.add_argument("type", help="task type, e.g. DATA_PROCESSING (tq types lists them)")
    submit.add_argument(
        "-p",
        "--param",
        action="append",
        type=parse_param,
        metavar="KEY=VALUE",
        help="a parameter (repeatable); the value is read as JSON when it is JSON: -p rows=1000",
    )
    submit.add_argument("--params", type=load_params, help="params as a JSON object or @file")
    submit.add_argument("--priority", choices=["normal", "high"])
    when = submit.add_mutually_exclusive_group()
    when.add_argument("--delay", type=int, metavar="SECONDS", help="start after this long")
    when.add_argument("--run-at", type=parse_when, metavar="TIME", help="start at this time")
    submit.add_argument("--max-attempts", type=int)
    submit.add_argument("--timeout-seconds", type=int, help="fail if it runs longer")
    submit.add_argument(
        "--then",
        action="append",
        type=parse_step,
        metavar="TYPE=PARAMS",
        help="a task to run once the one before it succeeded (repeatable, a chain): "
        "EMAIL='{\"recipient_count\": 3, ...}' or EMAIL=@params.json",
    )
    submit.add_argument("--idempotency-key", help="the same key again returns the same task")
    submit.add_argument("--wait", action="store_true", help="show its progress until it ends")
    submit.add_argument("--wait-timeout", type=float, metavar="SECONDS")

    listing = command("list", cmd_list, "list your tasks, newest first")
    listing.add_argument("--status", choices=[s.value for s in TaskStatus])
    listing.add_argument("--type")
    listing.add_argument("--since", type=parse_when, metavar="TIME", help="ISO time or 30m, 2h, 7d")
    listing.add_argument("--before", type=parse_when, metavar="TIME")
    listing.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    listing.add_argument("--all", action="store_true", help="every page")

    show = command("show", cmd_show, "one task: status, progress, result, events")
    show.add_argument("id")

    watch = command("watch", cmd_watch, "live progress bars until the tasks finish")
    watch.add_argument("ids", nargs="+", metavar="id")
    watch.add_argument("--timeout", type=float, metavar="SECONDS")

    cancel = command("cancel", cmd_cancel, "cancel tasks")
    cancel.add_argument("ids", nargs="+", metavar="id")

    retry = command("retry", cmd_retry, "retry a FAILED or CANCELLED task")
    retry.add_argument("id")
    retry.add_argument("--restart", action="store_true", help="from the start, not the checkpoint")

    logs = command("logs", cmd_logs, "a task's event log")
    logs.add_argument("id")
    logs.add_argument("--follow", "-f", action="store_true", help="until the task finishes")

    upload = command("upload", cmd_upload, "upload input files; prints their keys")
    upload.add_argument("paths", nargs="+", type=Path, metavar="path")
    upload.add_argument("--content-type", help="default: from the file name")
    upload.add_argument("--prefix", help="the folder of an earlier upload")

    download = command("download", cmd_download, "save a task's output files")
    download.add_argument("id")
    download.add_argument("dest", type=Path, help="folder to save into")

    command("stats", cmd_stats, "counts by status and type, queue depths, last hour")
    command("types", cmd_types, "registered task types and their params")
    dead = command("dead-letters", cmd_dead_letters, "tasks whose messages died")
    dead.add_argument("--redrive", action="store_true", help="send them back to their queues")
    command("health", cmd_health, "is the API up (no token needed)")

    configure = command("configure", cmd_configure, "save settings in the profile file")
    configure.add_argument("--url", dest="configure_url", help="base URL of the API")
    configure.add_argument(
        "--cognito-domain", help="hosted UI domain (stack output UserPoolDomain)"
    )
    configure.add_argument("--client-id", help="app client id (stack output UserPoolClientId)")

    login = command("login", cmd_login, "sign in through the browser (Cognito, PKCE)")
    login.add_argument("--with-token", metavar="JWT", help="keep this token instead")
    login.add_argument("--port", type=int, default=LOGIN_PORT, help=argparse.SUPPRESS)
    login.add_argument("--no-browser", action="store_true", help="print the URL only")
    command("logout", cmd_logout, "forget the profile's sign-in")
    return root


def default_client(profile: Profile) -> Client:
    return Client(profile.require_url(), token_source(profile))


def main(
    argv: Sequence[str] | None = None,
    *,
    out: Console | None = None,
    err: Console | None = None,
    make_client: Callable[[Profile], Client] = default_client,
    tokens: TokenStore | None = None,
) -> int:
    args = build_parser().parse_args(argv)
    err_console = err or Console(stderr=True)
    cli = Cli(
        args,
        # Piped into a file or another program, lines are not cut at 80 columns.
        out=out or (Console() if sys.stdout.isatty() else Console(width=200)),
        err=err_console,
        make_client=make_client,
        tokens=tokens or TokenStore(),
    )
    try:
        code: int = args.handler(cli)
        return code
    except ApiError as exc:
        err_console.print(f"[red]error[/] {exc.status} {escape(exc.code)}: {escape(exc.message)}")
        for detail in exc.details if isinstance(exc.details, list) else []:
            if isinstance(detail, dict):
                where = ".".join(str(part) for part in detail.get("loc", []))
                err_console.print(f"  {escape(where)}: {escape(str(detail.get('msg', '')))}")
        return EXIT_FAILED
    except (ConfigError, LoginError) as exc:
        err_console.print(f"[red]error[/] {escape(str(exc))}")
        return EXIT_USAGE
    except TaskQueueClientError as exc:
        err_console.print(f"[red]error[/] {escape(str(exc))}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    finally:
        cli.close()


if __name__ == "__main__":
    sys.exit(main())
