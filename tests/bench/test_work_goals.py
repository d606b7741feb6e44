"""`python -m bench work` at small size: DATA_PROCESSING and its peers side by side on one
generated file, asserted as ratios measured in the same run (never absolute times).

The goal "within 1.5x of the fastest peer computing the same typed statistics" is asserted.
">= 5x less CPU than before" is judged on the 200 MB file (docs/benchmarks.md, section 6: met
at the median, 5.23x over 25 interleaved pairs); on this 6 MB one a third of ours' CPU comes
once per file, so here it is asserted as a floor against regressions (>= 1.5x; ~2.2x measured).
What is asserted holds on a busy machine."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench import work

# Serial (tests/conftest.py): its ratios are of CPU times measured in this run,
# which a busy neighbour would skew.
pytestmark = pytest.mark.serial


@pytest.fixture(scope="module")
def result() -> work.WorkRun:
    return work.run("small")


def test_every_contender_reports_the_csv_modules_numbers(result: work.WorkRun) -> None:
    # counts, empty, min, max exactly; sums, means, deviations to 1e-12 relative; the typed
    # peer's every figure equal to ours, and ours the same whatever the chunk size
    assert result.wrong() == {}


def test_ours_is_within_the_goal_of_the_fastest_peer_computing_the_same_statistics(
    result: work.WorkRun,
) -> None:
    # like for like: the peer reads the whole file and reports the typed figures ours does
    # (checked equal above); ratios measured in the same run
    assert result.vs_peer() <= work.GOAL_VS_PEER, result.render()


def test_ours_takes_well_under_todays_cpu_even_on_the_small_file(result: work.WorkRun) -> None:
    # 6 MB in one chunk: the sample, DuckDB's first connection and the queries' planning come
    # once per file, so the 5x of the 200 MB file (docs) is ~2.2x here; reading every column
    # with every test again would bring it to ~1.3x
    assert result.vs_today() >= 1.5, result.render()


def test_the_time_sized_task_reads_the_file_in_few_chunks(result: work.WorkRun) -> None:
    # 6 MB: all in the first chunk of 8 MiB (its first 1 MiB of rows read with every test to
    # choose the columns' modes, the rest in those modes); chunks sized by the measured rate
    # read a longer file's rest (tests/integration/test_data_processing.py)
    assert result.runs["ours"]["chunks"] == 1
    assert result.runs["ours_1mib"]["chunks"] >= 6


def test_the_worker_imports_duckdb_only_when_a_csv_chunk_runs() -> None:
    from bench import coldstart

    # a cold worker pays nothing for the engine; nor does loading the type itself (its
    # params are validated before any chunk runs)
    assert "duckdb" not in coldstart.loaded_modules("worker")
    program = (
        "import sys\n"
        "from taskqueue.task_types import REGISTRY\n"
        "REGISTRY['DATA_PROCESSING']\n"
        "print('taskqueue.task_types.data_processing' in sys.modules, 'duckdb' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(coldstart.ROOT / "layers" / "core"), "PATH": ""},
        check=True,
    )
    assert done.stdout.split() == ["True", "False"]
