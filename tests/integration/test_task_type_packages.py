"""Task types in packages of their own: the URL_CHECK example and a package fresh from
``python -m devstack scaffold`` pass their own tests, run as their developers run them (their
own pytest configuration, in a process of their own, from outside the repository for the
scaffold's); the scaffold's package lints clean and installs with its entry point."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.scaffold import Names, ScaffoldError, scaffold

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "task_types" / "url_check"
SUMMARY = re.compile(r"^(\d+) passed in [\d.]+s", re.MULTILINE)


def run(*command: str | Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def passed(package: Path) -> int:
    """How many tests the package's own suite passed; fails on anything but all passing."""
    done = run(
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        cwd=package,
        TASKQUEUE_HOME=str(ROOT),
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    found = SUMMARY.search(done.stdout)
    assert found is not None, output  # "N passed in ...": nothing skipped, failed or warned
    return int(found.group(1))


@pytest.mark.slow
def test_the_url_check_example_passes_its_own_tests() -> None:
    assert passed(EXAMPLE) >= 100


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("types") / "number-sum"
    scaffold("NUMBER_SUM", root)
    return root


def test_the_scaffold_writes_a_package_with_tests_and_sample_events(scaffolded: Path) -> None:
    files = sorted(
        p.relative_to(scaffolded).as_posix() for p in scaffolded.rglob("*") if p.is_file()
    )
    assert files == [
        ".gitignore",
        "README.md",
        "events/api_submit_number_sum.json",
        "events/api_submit_number_sum_invalid.json",
        "pyproject.toml",
        "src/number_sum/__init__.py",
        "src/number_sum/task.py",
        "tests/__init__.py",
        "tests/conftest.py",
        "tests/test_task.py",
        "tests/test_through_the_worker.py",
    ]
    assert "$" not in (scaffolded / "src/number_sum/task.py").read_text()
    event = json.loads((scaffolded / "events/api_submit_number_sum.json").read_text())
    assert json.loads(event["body"])["type"] == "NUMBER_SUM"


@pytest.mark.slow
def test_a_scaffolded_type_passes_its_own_tests_from_outside_the_repository(
    scaffolded: Path,
) -> None:
    assert passed(scaffolded) == 14


def test_a_scaffolded_package_lints_clean(scaffolded: Path) -> None:
    for check in (["check"], ["format", "--check"]):
        done = run(sys.executable, "-m", "ruff", *check, "--no-cache", ".", cwd=scaffolded)
        assert done.returncode == 0, done.stdout + done.stderr


def test_a_scaffolded_package_installs_and_registers_by_its_entry_point(
    scaffolded: Path, tmp_path: Path
) -> None:
    # Given the package installed as a layer holds it (offline, no build isolation)
    site = tmp_path / "python"
    installed = run(
        sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
        "--no-build-isolation", "--target", site, scaffolded, cwd=tmp_path,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    # When a process with the layers on its path builds the registry (no TASK_TYPE_MODULES)
    program = (
        "import json; from taskqueue.task_types import TaskTypeRegistry\n"
        "registry = TaskTypeRegistry()\n"
        "print(json.dumps([sorted(registry), registry['NUMBER_SUM'].description]))\n"
    )
    listed = run(
        sys.executable, "-c", program, cwd=tmp_path,
        PYTHONPATH=os.pathsep.join([str(site), str(ROOT / "layers/core")]),
    )  # fmt: skip
    # Then the entry point registered the type beside the built-ins
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [
        ["DATA_PROCESSING", "EMAIL", "IMAGE_PROCESSING", "NUMBER_SUM"],
        "Sum, count, minimum, maximum and mean of a list of integers.",
    ]


@pytest.mark.parametrize(
    ("name", "module", "reason"),
    [
        ("word_count", None, "not a type name"),
        ("1WORDS", None, "not a type name"),
        ("W" * 65, None, "not a type name"),
        ("CSV", None, "would hide a module"),
        ("TESTS", None, "would hide a module"),
        ("WORD_COUNT", "Word-Count", "not a lower-case Python module name"),
        ("WORD_COUNT", "class", "not a lower-case Python module name"),
    ],
)
def test_names_the_registry_or_python_would_refuse_are_refused(
    name: str, module: str | None, reason: str
) -> None:
    with pytest.raises(ScaffoldError, match=reason):
        Names.of(name, module)


def test_the_scaffold_never_writes_into_a_directory_with_files(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ScaffoldError, match="not an empty directory"):
        scaffold("NUMBER_SUM", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_names_derive_the_module_class_and_distribution() -> None:
    assert Names.of("WORD_COUNT") == Names(
        "WORD_COUNT", "word_count", "WordCount", "taskqueue-word-count"
    )
    assert Names.of("URL_CHECK", "links").module == "links"
