"""Fixtures of the end-to-end tests: ONE local stack (`python -m devstack dev` as a subprocess on
free ports) for the whole session, shared by test_devstack.py, the browser tests and
test_live.py; and the browser fixtures (Debian's Chromium through Playwright): one Chromium per
module, a fresh context per test.

Tests that need a stack of their own (the shutdown test) call `start_stack` themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.e2e.browser_support import EXPECT_TIMEOUT_MS, WatchedPage, find_chromium, launch
from tests.e2e.browser_support import watched_page as new_watched_page
from tests.e2e.devstack_process import Stack, StackError, start_stack, stop_stack

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    try:
        running = start_stack(tmp_path_factory.mktemp("devstack") / "devstack.log")
    except StackError as error:
        pytest.fail(str(error), pytrace=False)
    yield running
    assert stop_stack(running) == 0, running.output()


@pytest.fixture(scope="module")
def single_worker_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of a module's own whose mappings run one batch at a time, so that a backlog
    builds up (test_priorities.py, test_fairness.py)."""
    try:
        running = start_stack(
            tmp_path_factory.mktemp("single-worker") / "devstack.log", "--workers", "1"
        )
    except StackError as error:
        pytest.fail(str(error), pytrace=False)
    yield running
    assert stop_stack(running) == 0, running.output()


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    executable = find_chromium()
    if executable is None:
        pytest.skip(
            "browser tests skipped: no Chromium found (looked at $CHROMIUM_PATH, chromium and "
            "chromium-browser on PATH, /usr/bin/chromium); install it with "
            "`apt-get install chromium` (.ci/run does so when it runs as root)"
        )
    return executable


@pytest.fixture(scope="module")
def browser(chromium_executable: str) -> Iterator[Browser]:
    from playwright.sync_api import expect as playwright_expect
    from playwright.sync_api import sync_playwright

    # A loaded CI machine (two CPUs shared by Chromium, the stack and its workers) is slow.
    playwright_expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        running = launch(playwright, chromium_executable)
        yield running
        running.close()


@pytest.fixture
def context_options() -> dict[str, object]:
    """Options of the test's browser context (override in a test module or parametrize)."""
    return {}


@pytest.fixture
def watched(
    browser: Browser, stack: Stack, context_options: dict[str, object]
) -> Iterator[WatchedPage]:
    """A fresh context and page on the stack; fails the test on console errors or dialogs."""
    current = new_watched_page(browser, stack.url, **context_options)
    yield current
    problems = current.problems()
    current.close()
    if problems:
        pytest.fail("the page misbehaved:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def page(watched: WatchedPage) -> Page:
    return watched.page
