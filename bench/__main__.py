"""``python -m bench [name ...] [--size small|full]``: run benchmarks and print their tables.

Exit status 1 when a goal is not met (every benchmark still runs).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

BENCHMARKS = {
    "cost": "bench.cost",
    "parallel": "bench.parallel",
    "capacity": "bench.capacity",
    "list": "bench.listing",
    "coldstart": "bench.coldstart",
    "local": "bench.local",
    "work": "bench.work",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names", nargs="*", metavar="name", help=f"default: all of {', '.join(BENCHMARKS)}"
    )
    parser.add_argument(
        "--size",
        choices=("small", "full"),
        default="full",
        help="small: the CI sizes; full (default): the sizes in docs/benchmarks.md",
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    names = args.names or list(BENCHMARKS)
    failed = []
    for name in names:
        started = time.perf_counter()
        module = importlib.import_module(BENCHMARKS[name])
        met = module.main(args.size)
        print(f"[{name}: {time.perf_counter() - started:.0f} s, size {args.size}]\n", flush=True)
        if not met:
            failed.append(name)
    if failed:
        print(f"goals not met: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
