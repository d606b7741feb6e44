"""Launching Debian's Chromium with Playwright (never a downloaded browser), a page that
records everything that must not happen (console errors, uncaught exceptions, dialogs), axe-core
run in a page, and the steps the browser tests share (open the app, submit the form, ...).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tests.e2e.devstack_process import Stack, bearer_for

if TYPE_CHECKING:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        ConsoleMessage,
        Dialog,
        Locator,
        Page,
        Playwright,
        Request,
        WebSocket,
    )

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1280, "height": 900}
API_REQUESTS = ("fetch", "xhr")  # Playwright's resource types of the page's API calls


def find_chromium() -> str | None:
    """$CHROMIUM_PATH, then chromium / chromium-browser on PATH, then /usr/bin/chromium."""
    candidates = [
        os.environ.get("CHROMIUM_PATH"),
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        "/usr/bin/chromium",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def launch(playwright: Playwright, executable: str) -> Browser:
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)


@dataclass
class WatchedPage:
    """A page in its own context, with what went wrong in it so far."""

    context: BrowserContext
    page: Page
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)
    # The page's API requests as they went (fetches, not its files): seconds since the page
    # opened, what happened (sent, done, failed), method and path; for a failed wait's message.
    requests: list[str] = field(default_factory=list)

    def network(self, last: int = 40) -> str:
        """The last API requests, one a line (a request sent and never done is one the page
        still waits for)."""
        return "\n".join(["the page's API requests:", *self.requests[-last:]])

    def allow(self, text: str) -> None:
        """A console error containing `text` is expected (Chromium logs every 4xx answer)."""
        self.expected.append(text)

    def problems(self) -> list[str]:
        unexpected = [t for t in self.console_errors if not any(e in t for e in self.expected)]
        return (
            [f"console error: {text}" for text in unexpected]
            + [f"uncaught exception: {text}" for text in self.page_errors]
            + [f"dialog opened: {text}" for text in self.dialogs]
        )

    def close(self) -> None:
        self.context.close()


def watched_page(browser: Browser, base_url: str, **context_options: object) -> WatchedPage:
    options = {"viewport": VIEWPORT, **context_options}
    context = browser.new_context(base_url=base_url, **options)  # type: ignore[arg-type]
    context.set_default_timeout(20_000)
    page = context.new_page()
    watched = WatchedPage(context, page)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            location = message.location
            watched.console_errors.append(f"{message.text} ({location.get('url', '')})")

    def on_dialog(dialog: Dialog) -> None:
        watched.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    opened = time.monotonic()

    def noting(what: str) -> Any:
        def note(request: Request) -> None:
            if request.url.startswith(base_url) and request.resource_type in API_REQUESTS:
                parts = urlsplit(request.url)
                path = parts.path + (f"?{parts.query}" if parts.query else "")
                failure = f" ({request.failure})" if what == "failed" else ""
                watched.requests.append(
                    f"{time.monotonic() - opened:7.2f} s {what:<6} {request.method} {path}{failure}"
                )

        return note

    def on_websocket(socket: WebSocket) -> None:
        def note(what: str) -> None:
            watched.requests.append(f"{time.monotonic() - opened:7.2f} s {what:<6} WebSocket")

        note("opened")
        socket.on("close", lambda _: note("closed"))

    page.on("websocket", on_websocket)
    page.on("request", noting("sent"))
    page.on("requestfinished", noting("done"))
    page.on("requestfailed", noting("failed"))
    page.on("console", on_console)
    page.on("pageerror", lambda error: watched.page_errors.append(str(error)))
    page.on("dialog", on_dialog)
    return watched


def act_as(page: Page, stack: Stack, user: str, groups: tuple[str, ...] = ()) -> dict[str, str]:
    """Makes the page's requests to the stack carry a bearer token for `user`, so a test sees
    only its own tasks; requests elsewhere (presigned S3 URLs) are left alone. The page's
    WebSocket (which cannot carry headers) gets the token as its `token` query parameter,
    through the WebSocket URL of config.js. Returns the headers, for the same user's requests
    with `requests`."""
    headers = bearer_for(user, groups)
    token = headers["Authorization"].split()[-1]

    def add_token(route: Any) -> None:
        if route.request.url == f"{stack.url}/config.js":
            original = route.fetch().text()
            config = json.loads(original[original.index("{") : original.rindex("}") + 1])
            if config.get("websocketUrl"):
                config["websocketUrl"] += f"?token={token}"
            route.fulfill(
                content_type="text/javascript",
                body=f"window.TASKQUEUE_CONFIG = {json.dumps(config)};\n",
            )
        elif route.request.url.startswith(stack.url):
            route.continue_(headers={**route.request.headers, **headers})
        else:
            route.continue_()

    page.route("**/*", add_token)
    return headers


AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"


def axe_violations(page: Page) -> list[str]:
    """axe-core's WCAG 2.x A and AA violations on the page as it is now, one line each
    (rule, impact, the first elements). The page's context needs `bypass_csp=True`: the
    site's Content-Security-Policy refuses the injected script, as it should."""
    if not page.evaluate("() => Boolean(window.axe)"):
        page.add_script_tag(path=str(AXE))
    # Colours are judged at rest: a panel still sliding in (its opacity under 1) would read as
    # low contrast on a busy machine. The page's reduced-motion rule stops every animation.
    page.emulate_media(reduced_motion="reduce")
    found = page.evaluate(
        """async () => {
            const result = await window.axe.run(document, {
                runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
            });
            return result.violations.map((v) => `${v.id} (${v.impact}): ${v.help} at `
                + v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", "));
        }"""
    )
    return list(found)


# ------------------------------------------------------------------------------- page steps

TASK_TIMEOUT_MS = 30_000
EXPECT_TIMEOUT_MS = 10_000


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def open_app(page: Page, path: str = "/") -> None:
    page.goto(path)
    expect(page.get_by_test_id("type-select")).to_be_enabled()


def choose_type(page: Page, name: str, source: str | None = None) -> None:
    """Chooses the task type and, when given, its input source ("upload", "generate", ...)."""
    page.get_by_test_id("type-select").select_option(name)
    expect(page.get_by_test_id("type-select")).to_have_value(name)
    if source:
        page.get_by_test_id(f"source-{source}").check()


def submit_form(page: Page) -> str:
    """Clicks Submit, waits for the success toast; returns the new task's id."""
    state = page.get_by_test_id("submit-state")
    before = state.text_content() or ""
    page.get_by_test_id("submit-button").click()
    expect(state).not_to_have_text(before)
    expect(state).to_have_text(re.compile(r"Last submitted: \S+"))
    expect(page.get_by_test_id("toast").filter(has_text="submitted").last).to_be_visible()
    return (state.text_content() or "").split(":", 1)[1].strip()


def task_row(page: Page, task_id: str) -> Locator:
    return page.locator(f'[data-testid="task-row"][data-task-id="{task_id}"]')


def wait_for_row(page: Page, task_id: str, status: str) -> Locator:
    row = task_row(page, task_id)
    expect(row).to_have_attribute("data-status", status, timeout=TASK_TIMEOUT_MS)
    return row


def wait_until_done(page: Page, task_id: str) -> Locator:
    """Waits for SUCCESS with the row's progress bar at 100% (units done = units total)."""
    row = wait_for_row(page, task_id, "SUCCESS")
    bar = row.get_by_test_id("progress-bar")
    expect(bar).to_have_attribute("aria-valuenow", "100")
    expect(bar).to_have_attribute("data-progress", "100")
    expect(row.get_by_test_id("status-badge")).to_have_text("Success")
    done, _, total = (row.get_by_test_id("progress-text").text_content() or "").partition(" / ")
    assert total and total.split(" ")[0] == done.split(" ")[0], f"done/total: {done!r} / {total!r}"
    return row


def open_detail(page: Page, task_id: str, status: str | None = None) -> Locator:
    task_row(page, task_id).get_by_test_id("task-open").click()
    panel = page.get_by_test_id("detail-panel")
    expect(panel).to_be_visible()
    expect(panel).to_have_attribute("data-task-id", task_id)
    if status:
        expect(panel).to_have_attribute("data-status", status, timeout=TASK_TIMEOUT_MS)
    return panel


def confirm(page: Page, expected_title: str) -> None:
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(expected_title)
    page.get_by_test_id("confirm-ok").click()
    expect(dialog).to_be_hidden()
