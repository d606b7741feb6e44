"""Fixtures of the end-to-end tests: ONE local stack (`python -m devstack dev` as a subprocess on
free ports) for the whole session, shared by test_devstack.py, the browser tests and
test_live.py; and the browser fixtures (Debian's Chromium through Playwright): one Chromium for
the browser tests, which run one after another, a fresh context per test.

Tests that need a stack of their own (the shutdown test) call `start_stack` themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

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


class _SharedChromium:
    """One Chromium for a run of consecutive tests that use it (the browser modules), stopped
    before the first test that does not: between its calls Playwright's sync API marks its
    event loop as running in this thread, which would break asyncio.run() in any later test."""

    def __init__(self) -> None:
        self._manager: Any = None
        self._browser: Browser | None = None

    def get(self, executable: str) -> Browser:
        if self._browser is None:
            from playwright.sync_api import expect as playwright_expect
            from playwright.sync_api import sync_playwright

            # A loaded CI machine (two CPUs shared by Chromium, the stack and its workers) is
            # slow.
            playwright_expect.set_options(timeout=EXPECT_TIMEOUT_MS)
            self._manager = sync_playwright()
            self._browser = launch(self._manager.__enter__(), executable)
        return self._browser

    def stop(self) -> None:
        if self._browser is not None:
            browser, self._browser = self._browser, None
            try:
                browser.close()
            finally:
                self._manager.__exit__(None, None, None)


_CHROMIUM = _SharedChromium()


@pytest.hookimpl(trylast=True)  # after the test's own fixtures (its context) are torn down
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if nextitem is None or "browser" not in getattr(nextitem, "fixturenames", ()):
        _CHROMIUM.stop()


@pytest.fixture
def browser(chromium_executable: str) -> Browser:
    """The shared Chromium (each test still gets a fresh context: `watched`)."""
    return _CHROMIUM.get(chromium_executable)


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
