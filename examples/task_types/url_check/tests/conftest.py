"""Fixtures of URL_CHECK's tests.

The type runs on the core layer, and its integration tests on the system itself: both come
from the taskqueue repository, found at TASKQUEUE_HOME or as a checkout this package sits in.
Fake AWS credentials are set before boto3 is imported, so no test can reach a real account.

- ``web``: a local HTTP server (``web.url("/ok")``, see ``support.py``);
- ``s3_context``: moto in-process, one bucket and the TaskContext a task of user ``alice`` gets;
- ``stack``: the whole system in this process (``devstack.harness``) with this package's
  module in TASK_TYPE_MODULES, checks allowed to reach loopback (the local server).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _taskqueue_home() -> Path:
    configured = os.environ.get("TASKQUEUE_HOME")
    candidates = [Path(configured)] if configured else list(Path(__file__).resolve().parents)
    for candidate in candidates:
        if (candidate / "template.yaml").is_file() and (candidate / "layers/core").is_dir():
            return candidate
    raise RuntimeError(
        "set TASKQUEUE_HOME to a checkout of the taskqueue repository: these tests run the "
        "type on its core layer and local stack"
    )


HOME = _taskqueue_home()
for _path in (HOME, HOME / "layers" / "core"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from devstack.runtime import use_fake_aws

use_fake_aws()  # before boto3 is imported anywhere

from collections.abc import Iterator

import boto3
import pytest
from devstack.harness import InProcessStack, in_process_stack
from moto import mock_aws
from taskqueue.task_types.base import TaskContext

from url_check.settings import ALLOW_LOOPBACK, loopback_allowed

from .support import Web, serving

OWNER = "alice"


@pytest.fixture
def web() -> Iterator[Web]:
    with serving() as served:
        yield served


@pytest.fixture
def s3_context() -> Iterator[TaskContext]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="data")
        yield TaskContext(task_id="t1", owner=OWNER, bucket="data", clients={"s3": s3})


@pytest.fixture
def stack() -> Iterator[InProcessStack]:
    loopback_allowed.cache_clear()
    with in_process_stack(
        task_type_modules=["url_check"], environment={ALLOW_LOOPBACK: "true"}, user=OWNER
    ) as running:
        yield running
    loopback_allowed.cache_clear()
