"""The package's structure, checked: every exception in errors.py, every environment variable
read in config.py, and handlers that build nothing themselves (wiring does)."""

from __future__ import annotations

import ast
from pathlib import Path

import taskqueue

PACKAGE = Path(taskqueue.__file__).parent
ROOT = PACKAGE.parents[2]
HANDLERS = sorted((ROOT / "functions").glob("*/app.py"))


def modules() -> list[Path]:
    found = sorted(PACKAGE.rglob("*.py"))
    assert len(found) > 20
    return found


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def test_every_exception_class_is_defined_in_the_errors_module() -> None:
    exception_names = {"Exception", "BaseException", "ValueError", "RuntimeError", "KeyError"}
    defined = set()
    for path in modules():
        for node in ast.walk(tree(path)):
            if isinstance(node, ast.ClassDef):
                bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                if bases & exception_names or any(b.endswith("Error") for b in bases):
                    defined.add((str(path.relative_to(PACKAGE)), node.name))
    assert ("errors.py", "TransitionConflict") in defined  # the check sees errors.py itself
    assert {d for d in defined if d[0] != "errors.py"} == set()


def test_only_config_reads_the_environment() -> None:
    readers = []
    for path in modules():
        for node in ast.walk(tree(path)):
            name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
            if name in ("environ", "getenv"):
                readers.append(str(path.relative_to(PACKAGE)))
    assert set(readers) == {"config.py"}


# What only taskqueue.wiring constructs (and the modules a handler has no business importing).
BUILT_BY_WIRING = {
    "Store",
    "Table",
    "TaskStore",
    "ConnectionStore",
    "Dispatcher",
    "Files",
    "Engine",
    "TaskService",
    "Pusher",
    "ManagementApi",
    "TokenVerifier",
}
BELOW_LOGIC = {"taskqueue.store", "taskqueue.aws", "taskqueue.engine", "taskqueue.service"}


def test_handlers_build_nothing_and_reach_no_store_or_client() -> None:
    assert len(HANDLERS) >= 7
    for path in HANDLERS:
        module = tree(path)
        imported = {
            node.module
            for node in ast.walk(module)
            if isinstance(node, ast.ImportFrom) and node.module
        }
        assert not imported & BELOW_LOGIC, (path, imported & BELOW_LOGIC)
        assert "taskqueue" in imported, path  # from taskqueue import wiring
        called = {
            getattr(node.func, "id", getattr(node.func, "attr", ""))
            for node in ast.walk(module)
            if isinstance(node, ast.Call)
        }
        assert not called & BUILT_BY_WIRING, (path, called & BUILT_BY_WIRING)
        assert not called & {"client", "resource"}, path  # no boto3 client of its own


# What only wiring builds from the settings (the Store facade composes its parts itself).
CONSTRUCTED_BY_WIRING = {"Store", "TaskStore", "Dispatcher", "of"}
COMPOSES_THE_STORE = PACKAGE / "store" / "__init__.py"


def constructor_calls(path: Path) -> set[str]:
    """The names called in `path` that only wiring may call (``Store.of`` as ``of``)."""
    called = set()
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "of":
                owner = getattr(func.value, "id", "")
                if owner == "Store":
                    called.add("of")
            elif isinstance(func, ast.Name | ast.Attribute):
                called.add(getattr(func, "id", getattr(func, "attr", "")))
    return called & CONSTRUCTED_BY_WIRING


def test_only_wiring_builds_stores_and_dispatchers() -> None:
    # Given the code that runs on Lambda, locally or in a benchmark
    code = [
        *(p for p in modules() if p.name != "wiring.py" and p != COMPOSES_THE_STORE),
        *HANDLERS,
        *sorted((ROOT / "devstack").rglob("*.py")),
        *sorted((ROOT / "bench").rglob("*.py")),
    ]
    # When the calls of the store and dispatcher constructors are collected
    builders = {str(p.relative_to(ROOT)): constructor_calls(p) for p in code}
    # Then none builds one (wiring does, from the settings), and the check sees wiring's own
    assert {path: names for path, names in builders.items() if names} == {}
    assert constructor_calls(PACKAGE / "wiring.py") >= {"of", "Dispatcher"}


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_benchmarks_and_the_local_stack_never_import_the_tests() -> None:
    # Given the benchmark and local-stack modules (they share devstack.harness with the tests)
    code = [*sorted((ROOT / "bench").rglob("*.py")), *sorted((ROOT / "devstack").rglob("*.py"))]
    assert len(code) > 20
    # When their imports are collected
    reaching = {
        str(p.relative_to(ROOT)): sorted(
            m for m in imported_modules(p) if m == "tests" or m.startswith("tests.")
        )
        for p in code
    }
    # Then none reaches into tests/, and the harness is what the tests' helpers import
    assert {path: names for path, names in reaching.items() if names} == {}
    assert "devstack.harness" in imported_modules(ROOT / "tests" / "helpers.py")
