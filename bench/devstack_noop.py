"""``python -m bench.devstack_noop dev ...``: the local stack of ``python -m devstack``,
unchanged, with the benchmark's BENCH_NOOP task type registered (the API and the worker
read the same registry), so local throughput measures the stack, not a task's work."""

from __future__ import annotations

import sys

import bench  # noqa: F401  (makes taskqueue importable)
from bench.tasktypes import BENCH_TYPES
from taskqueue.task_types import REGISTRY

if __name__ == "__main__":
    REGISTRY.update(BENCH_TYPES)
    from devstack.cli import main

    sys.exit(main(sys.argv[1:]))
