"""Fixtures of the pipeline tests (see tests/pipeline_world.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.pipeline_world import World, make_world


@pytest.fixture
def world(aws: Any, function_env: Callable[[str], dict[str, str]]) -> Iterator[World]:
    yield from make_world(aws, function_env)
