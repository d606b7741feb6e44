"""The task-type registry: names without imports, a type's module imported on first use, and
plugins from TASK_TYPE_MODULES and entry points, with every way a plugin can be wrong named."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from pydantic import ValidationError

from taskqueue.config import Settings
from taskqueue.errors import TaskTypeNameClash, TaskTypeRegistryError
from taskqueue.task_types import (
    BUILTIN_TYPES,
    ENTRY_POINT_GROUP,
    REGISTRY,
    TaskTypeRegistry,
    registry_for,
)

PLUGINS = "tests.task_type_plugins"
COUNTDOWN_MODULE = f"{PLUGINS}.countdown"
BUILTIN_NAMES = ["DATA_PROCESSING", "EMAIL", "IMAGE_PROCESSING"]
ROOT = Path(__file__).resolve().parents[2]


def no_entry_points() -> list[EntryPoint]:
    return []


def entry_point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


def registry(*modules: str, entry_points: list[EntryPoint] | None = None) -> TaskTypeRegistry:
    return TaskTypeRegistry(modules=modules, entry_points=lambda: entry_points or [])


@pytest.fixture
def countdown_not_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin module as a fresh process has it: not imported yet. Afterwards the module
    and the package's attribute are both put back, so other tests see one module object."""
    import tests.task_type_plugins as package

    monkeypatch.delitem(sys.modules, COUNTDOWN_MODULE, raising=False)
    monkeypatch.delattr(package, "countdown", raising=False)


# ---------------------------------------------------------------- lazy: names without imports


def test_listing_names_imports_no_type_module_and_a_lookup_imports_its_own(
    countdown_not_imported: None,
) -> None:
    # Given a registry whose one type lives in a module nobody imported yet
    lazy = TaskTypeRegistry(
        builtins={"COUNTDOWN": f"{COUNTDOWN_MODULE}:COUNTDOWN"}, entry_points=no_entry_points
    )
    # When its names are listed and counted
    names, count, known = list(lazy), len(lazy), "COUNTDOWN" in lazy
    # Then the module is still not imported
    assert (names, count, known) == (["COUNTDOWN"], 1, True)
    assert COUNTDOWN_MODULE not in sys.modules
    # When the type is looked up, its module is imported and the type returned, once
    countdown = lazy["COUNTDOWN"]
    assert sys.modules[COUNTDOWN_MODULE].COUNTDOWN is countdown
    assert lazy["COUNTDOWN"] is countdown


def test_one_builtin_lookup_in_a_fresh_interpreter_imports_that_type_only() -> None:
    # Given a fresh interpreter, when it lists the registry's names and gets DATA_PROCESSING
    program = (
        "import sys\n"
        "from taskqueue.task_types import REGISTRY\n"
        "names = list(REGISTRY)\n"
        "REGISTRY['DATA_PROCESSING']\n"
        "types = sorted(m for m in sys.modules if m.startswith('taskqueue.task_types.'))\n"
        "print(names, types, 'email_validator' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "layers" / "core"), "PATH": ""},
        check=True,
    )
    # Then only DATA_PROCESSING's modules (and the registry's own) were imported
    assert done.stdout.split("\n")[0] == (
        f"{BUILTIN_NAMES} ['taskqueue.task_types._s3', 'taskqueue.task_types.base', "
        "'taskqueue.task_types.column_stats', 'taskqueue.task_types.csv_engine', "
        "'taskqueue.task_types.csv_records', 'taskqueue.task_types.data_processing', "
        "'taskqueue.task_types.registry'] False"
    )


def test_the_builtin_registry_holds_the_three_types_in_order() -> None:
    assert list(BUILTIN_TYPES) == BUILTIN_NAMES
    assert [REGISTRY[name].name for name in REGISTRY if name in BUILTIN_TYPES] == BUILTIN_NAMES
    assert registry_for(()) is REGISTRY


# ---------------------------------------------------------------- TASK_TYPE_MODULES


def test_a_listed_module_registers_its_task_types_beside_the_builtins() -> None:
    # Given TASK_TYPE_MODULES naming the countdown plugin
    plugins = registry(COUNTDOWN_MODULE)
    # Then its type is listed after the built-ins and is the module's own object
    assert list(plugins) == [*BUILTIN_NAMES, "COUNTDOWN"]
    assert plugins["COUNTDOWN"] is sys.modules[COUNTDOWN_MODULE].COUNTDOWN
    assert plugins.get("ROCKET") is None  # exported, but not in TASK_TYPES


def test_a_builtin_lookup_never_loads_the_plugins() -> None:
    # Given a listed plugin whose import fails
    broken = registry(f"{PLUGINS}.broken")
    # When a built-in type is looked up, it is served
    assert broken["EMAIL"].name == "EMAIL"
    # But listing the types needs the plugins, and fails naming the plugin and its error
    with pytest.raises(TaskTypeRegistryError) as failure:
        list(broken)
    assert str(failure.value) == (
        f"task type module '{PLUGINS}.broken' (TASK_TYPE_MODULES): importing "
        f"'{PLUGINS}.broken' failed: RuntimeError: the plugin's own bug"
    )
    # And the failure is not remembered as "no plugins": the next listing fails the same way
    with pytest.raises(TaskTypeRegistryError):
        len(broken)


def test_a_name_not_built_in_loads_the_plugins_and_a_broken_one_fails_the_lookup() -> None:
    broken = registry(f"{PLUGINS}.broken")
    with pytest.raises(TaskTypeRegistryError, match="the plugin's own bug"):
        broken.get("COUNTDOWN")


LISTED = "(TASK_TYPE_MODULES)"
# Each way a listed plugin module can be wrong, and the error that names it.
WRONG_MODULES: list[tuple[tuple[str, ...], type[Exception], str]] = [
    (
        (f"{PLUGINS}.nowhere",),
        TaskTypeRegistryError,
        f"task type module '{PLUGINS}.nowhere' {LISTED}: importing '{PLUGINS}.nowhere' failed: "
        f"ModuleNotFoundError: No module named '{PLUGINS}.nowhere'",
    ),
    (
        (f"{PLUGINS}.no_export",),
        TaskTypeRegistryError,
        f"task type module '{PLUGINS}.no_export' {LISTED}: must export TASK_TYPES, "
        "a non-empty list of task types (found NoneType)",
    ),
    (
        (f"{PLUGINS}.malformed",),
        TaskTypeRegistryError,
        f"task type module '{PLUGINS}.malformed' {LISTED}: a HalfDone object is not a task "
        "type: name must be a str of A-Z, 0-9 and _, starting with a letter, at most 64; "
        "progress_unit must be a str of a-z, at most 32: bytes or a plural noun; "
        "params_model must be a pydantic BaseModel subclass; run_chunk must be a method "
        "run_chunk(params, state, ctx) -> ChunkState",
    ),
    (
        (f"{PLUGINS}.class_exported",),
        TaskTypeRegistryError,
        f"task type module '{PLUGINS}.class_exported' {LISTED}: class Stamp is not a task "
        "type: export an instance, not the class",
    ),
    (
        (f"{PLUGINS}.clashing",),
        TaskTypeNameClash,
        f"task type 'EMAIL' of task type module '{PLUGINS}.clashing' {LISTED} "
        "is already registered by taskqueue (built-in)",
    ),
    (
        (COUNTDOWN_MODULE, f"{PLUGINS}.countdown_again"),
        TaskTypeNameClash,
        f"task type 'COUNTDOWN' of task type module '{PLUGINS}.countdown_again' {LISTED} "
        f"is already registered by task type module '{COUNTDOWN_MODULE}' {LISTED}",
    ),
]


@pytest.mark.parametrize(
    ("modules", "error", "message"), WRONG_MODULES, ids=lambda v: str(v).rsplit(".", 1)[-1]
)
def test_a_wrong_plugin_module_is_refused_with_a_message_naming_it(
    modules: tuple[str, ...], error: type[Exception], message: str
) -> None:
    # Given TASK_TYPE_MODULES with a wrong plugin, when the registry is listed
    with pytest.raises(error) as failure:
        list(registry(*modules))
    # Then the error says which plugin and what is wrong with it
    assert str(failure.value) == message


# ---------------------------------------------------------------- entry points


def test_an_entry_point_registers_its_name_and_imports_its_module_on_first_use(
    countdown_not_imported: None,
) -> None:
    # Given an entry point ROCKET = tests.task_type_plugins.countdown:ROCKET
    plugins = registry(entry_points=[entry_point("ROCKET", f"{COUNTDOWN_MODULE}:ROCKET")])
    # When the names are listed, the entry point's module is not imported
    assert list(plugins) == [*BUILTIN_NAMES, "ROCKET"]
    assert COUNTDOWN_MODULE not in sys.modules
    # When the type is looked up, it is the object the entry point names
    rocket = plugins["ROCKET"]
    assert rocket is sys.modules[COUNTDOWN_MODULE].ROCKET


def test_an_entry_point_named_differently_from_its_type_is_refused() -> None:
    plugins = registry(entry_points=[entry_point("ROCKETS", f"{COUNTDOWN_MODULE}:ROCKET")])
    with pytest.raises(TaskTypeRegistryError) as failure:
        plugins["ROCKETS"]
    assert str(failure.value) == (
        f"entry point ROCKETS = {COUNTDOWN_MODULE}:ROCKET: registered as 'ROCKETS' "
        "but its name is 'ROCKET'"
    )


def test_an_entry_point_and_a_listed_module_with_one_name_clash() -> None:
    plugins = registry(
        COUNTDOWN_MODULE, entry_points=[entry_point("COUNTDOWN", f"{COUNTDOWN_MODULE}:ROCKET")]
    )
    with pytest.raises(TaskTypeNameClash, match="is already registered by entry point COUNTDOWN"):
        list(plugins)


def test_an_entry_point_that_is_not_a_type_name_is_refused() -> None:
    plugins = registry(entry_points=[entry_point("rocket", f"{COUNTDOWN_MODULE}:ROCKET")])
    with pytest.raises(TaskTypeRegistryError, match="'rocket' is not a type name"):
        list(plugins)


def test_entry_points_of_an_installed_distribution_are_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, countdown_not_imported: None
) -> None:
    # Given a distribution on sys.path declaring an entry point in the group, as
    # `pip install` of a package with [project.entry-points."taskqueue.task_types"] leaves it
    info = tmp_path / "rocket_types-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rocket-types\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nROCKET = {COUNTDOWN_MODULE}:ROCKET\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    # When a registry reads the installed entry points
    installed = TaskTypeRegistry()
    # Then ROCKET is registered from that distribution, imported only when looked up
    assert list(installed) == [*BUILTIN_NAMES, "ROCKET"]
    assert installed.plugins()["ROCKET"].source == (
        f"entry point ROCKET = {COUNTDOWN_MODULE}:ROCKET of rocket-types 1.0"
    )
    assert COUNTDOWN_MODULE not in sys.modules
    assert installed["ROCKET"].name == "ROCKET"


# ---------------------------------------------------------------- the setting


def test_task_type_modules_setting_is_a_comma_separated_list() -> None:
    base = {"TABLE_NAME": "tasks", "QUEUE_URL": "https://queue"}
    configured = Settings.from_env({**base, "TASK_TYPE_MODULES": "my_types.tasks, other ,"})
    assert configured.task_type_modules == ("my_types.tasks", "other")
    assert Settings.from_env(base).task_type_modules == ()
    assert Settings.from_env({**base, "TASK_TYPE_MODULES": ""}).task_type_modules == ()


@pytest.mark.parametrize("value", ["my-types", "my_types..tasks", "1types", "a,b c"])
def test_task_type_modules_setting_refuses_what_is_not_a_module_path(value: str) -> None:
    with pytest.raises(ValidationError, match="task_type_modules"):
        Settings.from_env({"TABLE_NAME": "tasks", "QUEUE_URL": "q", "TASK_TYPE_MODULES": value})


def test_task_type_modules_setting_is_bounded() -> None:
    many = ",".join(f"m{i}" for i in range(21))
    with pytest.raises(ValidationError, match="at most 20 items"):
        Settings.from_env({"TABLE_NAME": "tasks", "QUEUE_URL": "q", "TASK_TYPE_MODULES": many})
