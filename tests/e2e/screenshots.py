"""Full-page screenshots of the page for the README: the task list with tasks in every state
(two of them selected), an open detail panel (a DATA_PROCESSING result with its column
statistics and timeline), the page on a phone, and the detail panel in dark mode.

    .venv/bin/python -m tests.e2e.screenshots            # writes docs/screenshots/*.png
    .venv/bin/python -m tests.e2e.screenshots --out /tmp/shots

Starts its own local stack and uses Debian's Chromium; tests/e2e/test_browser.py runs the same
scenario (into a temporary directory) against the shared stack so this script cannot rot.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.e2e.browser_support import (
    VIEWPORT,
    WatchedPage,
    act_as,
    find_chromium,
    launch,
    watched_page,
)
from tests.e2e.devstack_process import (
    ROOT,
    Stack,
    get_task,
    put_upload,
    start_stack,
    stop_stack,
    submit,
    unreadable_like,
    upload_ticket,
    wait_for,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser

DEFAULT_OUT = ROOT / "docs" / "screenshots"
TIMEOUT_MS = 30_000


def _wait_for_progress(
    stack: Stack, task_id: str, headers: dict[str, str], minimum: int
) -> dict[str, Any]:
    wait_for(stack, task_id, "RUNNING", headers=headers)
    deadline = time.monotonic() + 20
    while True:
        current = get_task(stack, task_id, headers)
        if current["progress"] >= minimum or time.monotonic() > deadline:
            return current
        time.sleep(0.1)


def seed_tasks(stack: Stack, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    """One user's tasks in every state (the list shows them newest first), in a few seconds.

    A big task runs alone: the worker handles the records of an SQS batch one after the other,
    so a quick task batched with a big one would wait for it, and big ones side by side slow
    everything down (the local stack runs the workers in one process).
    """
    big = {"rows": 5_000_000, "seed": 3}
    tasks: dict[str, dict[str, Any]] = {}
    cancelled = submit(stack, "DATA_PROCESSING", big, headers)
    _wait_for_progress(stack, cancelled["id"], headers, minimum=1)
    stack_delete(stack, cancelled["id"], headers)
    tasks["cancelled"] = wait_for(stack, cancelled["id"], "CANCELLED", headers=headers)

    tasks["image"] = submit(stack, "IMAGE_PROCESSING", {"generate_count": 4}, headers)
    tasks["email"] = submit(
        stack,
        "EMAIL",
        {"recipient_count": 12, "subject": "Hello {name}", "body": "Hi!", "rate_per_second": 50},
        headers,
        priority="high",
    )
    missing = upload_ticket(stack, "sales-2024.csv", b"x" * 10, "text/csv", headers)
    put_upload(missing, unreadable_like(b"x" * 10))  # a missing upload is refused at submit
    tasks["failed"] = submit(
        stack, "DATA_PROCESSING", {"input_key": missing["key"]}, headers, max_attempts=1
    )
    tasks["data"] = submit(
        stack, "DATA_PROCESSING", {"rows": 25_000, "columns": 6, "seed": 7}, headers
    )
    for name in ("image", "email", "failed", "data"):
        tasks[name] = wait_for(stack, tasks[name]["id"], "SUCCESS", "FAILED", headers=headers)

    later = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    tasks["scheduled"] = submit(
        stack,
        "EMAIL",
        {"recipient_count": 500, "subject": "Weekly report", "body": "."},
        headers,
        run_at=later,
    )
    running = submit(stack, "DATA_PROCESSING", big, headers)
    tasks["running"] = _wait_for_progress(stack, running["id"], headers, minimum=3)
    return tasks


def stack_delete(stack: Stack, task_id: str, headers: dict[str, str]) -> None:
    import requests

    response = requests.delete(f"{stack.url}/tasks/{task_id}", headers=headers, timeout=10)
    response.raise_for_status()


def take_screenshots(browser: Browser, stack: Stack, out: Path) -> tuple[list[str], list[Path]]:
    """Seeds a fresh user's tasks, saves list.png, detail.png, phone.png and dark.png into
    `out`. Returns the pages' problems (console errors, exceptions, dialogs) and the files.
    """
    from playwright.sync_api import expect

    out.mkdir(parents=True, exist_ok=True)
    watched = watched_page(
        browser, stack.url, color_scheme="light", reduced_motion="reduce", timezone_id="UTC"
    )
    page = watched.page
    user = f"demo-{uuid.uuid4().hex[:8]}"
    headers = act_as(page, stack, user)
    tasks = seed_tasks(stack, headers)
    problems: list[str] = []
    try:
        page.goto("/")
        expect_rows(watched, len(tasks))
        expect(page.get_by_test_id("stat-status-RUNNING")).to_have_attribute("data-count", "1")
        running = page.locator(f'li.task-row[data-task-id="{tasks["running"]["id"]}"]')
        expect(running).to_have_attribute("data-status", "RUNNING")
        for name in ("failed", "cancelled"):
            page.locator(f'li.task-row[data-task-id="{tasks[name]["id"]}"] .task-check').check()
        expect(page.get_by_test_id("bulk-count")).to_have_text("2 selected")
        page.mouse.move(0, 0)
        page.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")  # sticky top bar
        page.wait_for_timeout(300)  # fonts and the chart settle
        list_png = out / "list.png"
        page.screenshot(path=str(list_png), full_page=True, animations="disabled")

        page.locator(f'[data-task-id="{tasks["data"]["id"]}"] [data-testid="task-open"]').click()
        panel = page.get_by_test_id("detail-panel")
        expect(panel).to_have_attribute("data-status", "SUCCESS")
        expect(panel.get_by_test_id("column-stats")).to_be_visible()
        page.mouse.move(0, 0)  # no hover highlight in the picture
        # The panel is fixed to the viewport and scrolls inside: make the viewport tall enough
        # for all of it, so the full-page picture shows the whole panel.
        needed = page.evaluate(
            "() => Math.max(document.documentElement.scrollHeight,"
            " document.querySelector('.detail-top').offsetHeight"
            " + document.getElementById('detail-body').scrollHeight + 2)"
        )
        page.set_viewport_size({"width": VIEWPORT["width"], "height": int(needed)})
        page.wait_for_timeout(300)
        detail_png = out / "detail.png"
        page.screenshot(path=str(detail_png), full_page=True, animations="disabled")
        phone_png = shoot_phone(browser, stack, user, out, problems)
        dark_png = shoot_dark(browser, stack, user, tasks, out, problems)
    finally:
        stack_delete(stack, tasks["running"]["id"], headers)
        problems += watched.problems()
        watched.close()
    wait_for(stack, tasks["running"]["id"], "CANCELLED", headers=headers)
    return problems, [list_png, detail_png, phone_png, dark_png]


def expect_rows(watched: WatchedPage, count: int) -> None:
    """The list shows `count` rows within TIMEOUT_MS; if not, the failure lists what the page
    asked the API and when (a rare run has shown 2 rows of 7, its list never loaded)."""
    from playwright.sync_api import expect

    try:
        expect(watched.page.get_by_test_id("task-row")).to_have_count(count, timeout=TIMEOUT_MS)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{watched.network()}") from None


@contextmanager
def user_page(
    browser: Browser, stack: Stack, user: str, problems: list[str], **options: Any
) -> Iterator[WatchedPage]:
    """A page of its own (context options as given) acting as `user`; its problems are added
    to `problems` when it closes."""
    watched = watched_page(
        browser, stack.url, reduced_motion="reduce", timezone_id="UTC", **options
    )
    act_as(watched.page, stack, user)
    try:
        yield watched
    finally:
        problems += watched.problems()
        watched.close()


def shoot_phone(browser: Browser, stack: Stack, user: str, out: Path, problems: list[str]) -> Path:
    """The page at 390 px: the form first, then the list, the overview below them."""
    from playwright.sync_api import expect

    path = out / "phone.png"
    viewport = {"width": 390, "height": 844}
    with user_page(browser, stack, user, problems, viewport=viewport) as watched:
        page = watched.page
        page.goto("/")
        expect(page.get_by_test_id("task-row").first).to_be_visible(timeout=TIMEOUT_MS)
        expect(page.get_by_test_id("stat-status-RUNNING")).to_be_visible()
        page.wait_for_timeout(300)
        page.screenshot(path=str(path), full_page=True, animations="disabled")
    return path


def shoot_dark(
    browser: Browser, stack: Stack, user: str, tasks: dict[str, Any], out: Path, problems: list[str]
) -> Path:
    """The system's dark mode: the EMAIL task open, its tiles and timeline."""
    from playwright.sync_api import expect

    path = out / "dark.png"
    with user_page(browser, stack, user, problems, color_scheme="dark") as watched:
        page = watched.page
        page.goto(f"/?task={tasks['email']['id']}")
        expect_rows(watched, len(tasks))
        expect(page.get_by_test_id("stat-status-SUCCESS")).to_be_visible()
        panel = page.get_by_test_id("detail-panel")
        expect(panel).to_have_attribute("data-status", "SUCCESS", timeout=TIMEOUT_MS)
        expect(panel.get_by_test_id("timeline")).to_be_visible()
        page.wait_for_timeout(300)
        page.screenshot(path=str(path), full_page=False, animations="disabled")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory of the PNGs")
    args = parser.parse_args(argv)
    executable = find_chromium()
    if executable is None:
        print("no Chromium: apt-get install chromium, or set CHROMIUM_PATH", file=sys.stderr)
        return 2

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as scratch:
        stack = start_stack(Path(scratch) / "devstack.log")
        try:
            with sync_playwright() as playwright:
                browser = launch(playwright, executable)
                problems, files = take_screenshots(browser, stack, args.out)
                browser.close()
        finally:
            stop_stack(stack)
    for path in files:
        print(path)
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
