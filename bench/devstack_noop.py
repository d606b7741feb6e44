"""``python -m bench.devstack_noop dev ...``: the local stack of ``python -m devstack``,
unchanged, with the benchmark's BENCH_NOOP task type registered the way any task type from
outside the core layer is (the ``TaskTypeModules`` parameter), so local throughput measures
the stack, not a task's work."""

from __future__ import annotations

import sys

import bench  # noqa: F401  (makes taskqueue importable)
from devstack.cli import main

BENCH_PARAMETERS = ["--parameter", "TaskTypeModules=bench.tasktypes"]

if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["dev"]:
        argv = [*argv, *BENCH_PARAMETERS]
    sys.exit(main(argv))
