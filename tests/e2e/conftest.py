"""Fixtures of the end-to-end tests: ONE local stack (`python -m devstack dev` as a subprocess on
free ports) for the whole session, shared by test_devstack.py and test_browser.py.

Tests that need a stack of their own (the shutdown test) call `start_stack` themselves.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.devstack_process import Stack, StackError, start_stack, stop_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    try:
        running = start_stack(tmp_path_factory.mktemp("devstack") / "devstack.log")
    except StackError as error:
        pytest.fail(str(error), pytrace=False)
    yield running
    assert stop_stack(running) == 0, running.output()
