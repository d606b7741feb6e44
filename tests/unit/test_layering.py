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
