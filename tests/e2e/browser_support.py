"""Launching Debian's Chromium with Playwright (never a downloaded browser), and a page that
records everything that must not happen: console errors, uncaught exceptions, dialogs.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.e2e.devstack_process import Stack, bearer_for

if TYPE_CHECKING:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        ConsoleMessage,
        Dialog,
        Page,
        Playwright,
    )

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1280, "height": 900}


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

    def problems(self) -> list[str]:
        return (
            [f"console error: {text}" for text in self.console_errors]
            + [f"uncaught exception: {text}" for text in self.page_errors]
            + [f"dialog opened: {text}" for text in self.dialogs]
        )

    def close(self) -> None:
        self.context.close()


def watched_page(browser: Browser, base_url: str, **context_options: object) -> WatchedPage:
    context = browser.new_context(viewport=VIEWPORT, base_url=base_url, **context_options)  # type: ignore[arg-type]
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

    page.on("console", on_console)
    page.on("pageerror", lambda error: watched.page_errors.append(str(error)))
    page.on("dialog", on_dialog)
    return watched


def act_as(page: Page, stack: Stack, user: str) -> dict[str, str]:
    """Makes the page's requests to the stack carry a bearer token for `user`, so a test sees
    only its own tasks; requests elsewhere (presigned S3 URLs) are left alone. The page's
    WebSocket (which cannot carry headers) gets the token as its `token` query parameter,
    through the WebSocket URL of config.js. Returns the headers, for the same user's requests
    with `requests`."""
    headers = bearer_for(user)
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
