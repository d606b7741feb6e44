"""Task types by name, each imported on first use: a cold start pays only for the types it runs.

Three sources share one namespace of names:

- the built-in types (``BUILTIN_TYPES``: name -> ``module:attribute``);
- entry points of the group ``taskqueue.task_types`` in installed distributions: the entry
  point's name is the type's name, its value the type object (``URL_CHECK = pkg.mod:URL_CHECK``);
- the modules the ``TASK_TYPE_MODULES`` setting lists, each exporting ``TASK_TYPES``, a
  non-empty list or tuple of type objects.

A built-in name resolves without looking at plugins. Plugins are looked up (entry points read
from the installed metadata, listed modules imported) the first time the registry is listed or
asked for a name that is not built in. A name registered twice, a plugin that fails to import,
or an object that breaks the contract is a ``TaskTypeRegistryError`` naming the plugin, raised
by that lookup and by every later one that needs the plugins (nothing half-loaded is kept).
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel

from taskqueue.errors import TaskTypeNameClash, TaskTypeRegistryError
from taskqueue.models import MAX_PROGRESS_UNIT_CHARS, PROGRESS_UNIT_PATTERN
from taskqueue.task_types.base import TaskType

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

BUILTIN_TYPES: dict[str, str] = {
    "DATA_PROCESSING": "taskqueue.task_types.data_processing:DATA_PROCESSING",
    "EMAIL": "taskqueue.task_types.email:EMAIL",
    "IMAGE_PROCESSING": "taskqueue.task_types.image_processing:IMAGE_PROCESSING",
}
ENTRY_POINT_GROUP = "taskqueue.task_types"
MODULE_EXPORT = "TASK_TYPES"
# Names go into index keys and URLs: upper case, digits and "_" only, as the built-ins.
TYPE_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and TYPE_NAME.fullmatch(value) is not None


def _is_progress_unit(value: Any) -> bool:
    return (
        isinstance(value, str)
        and len(value) <= MAX_PROGRESS_UNIT_CHARS
        and re.match(PROGRESS_UNIT_PATTERN, value) is not None
    )


def _is_params_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


# The TaskType protocol as a plugin must meet it, checked at load: attribute, test, wording.
CONTRACT: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("name", _is_name, "a str of A-Z, 0-9 and _, starting with a letter, at most 64"),
    ("description", lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty str"),
    ("progress_unit", _is_progress_unit, "a str of a-z, at most 32: bytes or a plural noun"),
    ("params_model", _is_params_model, "a pydantic BaseModel subclass"),
    ("start", callable, "a method start(params, ctx) -> ChunkState"),
    ("run_chunk", callable, "a method run_chunk(params, state, ctx) -> ChunkState"),
    ("finish", callable, "a method finish(params, state, ctx) -> TaskResult"),
)


def checked(candidate: object, source: str) -> TaskType:
    """`candidate` if it meets the task-type contract; else an error naming `source`."""
    is_class = isinstance(candidate, type)
    # A class passes the attribute checks, and fails at its first chunk: refuse it here.
    problems = ["export an instance, not the class"] if is_class else []
    problems += [
        f"{attribute} must be {wording}"
        for attribute, meets, wording in CONTRACT
        if not meets(getattr(candidate, attribute, None))
    ]
    if problems:
        what = getattr(candidate, "__qualname__", "?") if is_class else type(candidate).__name__
        raise TaskTypeRegistryError(
            f"{source}: {'class' if is_class else 'a'} {what}{'' if is_class else ' object'} "
            f"is not a task type: {'; '.join(problems)}"
        )
    return cast(TaskType, candidate)


def _import(module_name: str, source: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except Exception as exc:  # any failure of a plugin's import: say which plugin it was
        raise TaskTypeRegistryError(
            f"{source}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _resolve(target: str, source: str) -> TaskType:
    """The object at ``module:attribute``, checked."""
    module_name, _, attribute = target.partition(":")
    module = _import(module_name, source)
    try:
        found = getattr(module, attribute)
    except AttributeError as exc:
        raise TaskTypeRegistryError(f"{source}: {module_name!r} has no {attribute!r}") from exc
    return checked(found, source)


def module_types(module_name: str) -> list[TaskType]:
    """The types a ``TASK_TYPE_MODULES`` module exports, checked."""
    source = f"task type module {module_name!r} (TASK_TYPE_MODULES)"
    exported = getattr(_import(module_name, source), MODULE_EXPORT, None)
    if not isinstance(exported, list | tuple) or not exported:
        raise TaskTypeRegistryError(
            f"{source}: must export {MODULE_EXPORT}, a non-empty list of task types "
            f"(found {type(exported).__name__})"
        )
    return [checked(task_type, source) for task_type in exported]


def installed_entry_points() -> Iterable[EntryPoint]:
    """Entry points of the group in the distributions on sys.path (names only, no import)."""
    from importlib.metadata import entry_points

    return entry_points(group=ENTRY_POINT_GROUP)


@dataclass(frozen=True)
class _Plugin:
    source: str  # what an error message calls it
    load: Callable[[], TaskType]


class TaskTypeRegistry(Mapping[str, TaskType]):
    """A read-only mapping of type name -> task type that imports a type when first asked.

    Listing the names (``iter``, ``len``, ``in``) imports no built-in type; ``values()``
    imports them all. Thread-safe: the local stack serves requests from several threads.
    """

    def __init__(
        self,
        builtins: Mapping[str, str] = BUILTIN_TYPES,
        modules: Sequence[str] = (),
        entry_points: Callable[[], Iterable[EntryPoint]] = installed_entry_points,
    ) -> None:
        self._builtins = dict(builtins)
        self._modules = tuple(modules)
        self._entry_points = entry_points
        self._loaded: dict[str, TaskType] = {}
        self._plugins: dict[str, _Plugin] | None = None
        self._lock = threading.RLock()

    def __getitem__(self, name: str) -> TaskType:
        found = self._loaded.get(name)
        if found is not None:
            return found
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            if name in self._builtins:
                source = f"built-in task type {name}"
                task_type = _resolve(self._builtins[name], source)
            else:
                plugin = self.plugins().get(name)
                if plugin is None:
                    raise KeyError(name)
                source, task_type = plugin.source, plugin.load()
            if task_type.name != name:
                raise TaskTypeRegistryError(
                    f"{source}: registered as {name!r} but its name is {task_type.name!r}"
                )
            self._loaded[name] = task_type
            return task_type

    def __contains__(self, name: object) -> bool:
        return name in self._builtins or name in self.plugins()

    def __iter__(self) -> Iterator[str]:
        return iter([*self._builtins, *self.plugins()])

    def __len__(self) -> int:
        return len(self._builtins) + len(self.plugins())

    def plugins(self) -> dict[str, _Plugin]:
        """The plugin types by name, looked up once: entry points, then the listed modules."""
        with self._lock:
            if self._plugins is None:
                self._plugins = self._find_plugins()
            return self._plugins

    def _find_plugins(self) -> dict[str, _Plugin]:
        found: dict[str, _Plugin] = {}

        def add(name: str, plugin: _Plugin) -> None:
            if not _is_name(name):
                raise TaskTypeRegistryError(f"{plugin.source}: {name!r} is not a type name")
            taken_by = "taskqueue (built-in)" if name in self._builtins else None
            if name in found:
                taken_by = found[name].source
            if taken_by:
                raise TaskTypeNameClash(
                    f"task type {name!r} of {plugin.source} is already registered by {taken_by}"
                )
            found[name] = plugin

        for entry_point in self._entry_points():
            dist = getattr(entry_point, "dist", None)
            source = f"entry point {entry_point.name} = {entry_point.value}" + (
                f" of {dist.name} {dist.version}" if dist is not None else ""
            )
            add(entry_point.name, _Plugin(source, _entry_point_loader(entry_point, source)))
        for module_name in self._modules:
            source = f"task type module {module_name!r} (TASK_TYPE_MODULES)"
            for task_type in module_types(module_name):
                add(task_type.name, _Plugin(source, _constant(task_type)))
        return found


def _entry_point_loader(entry_point: EntryPoint, source: str) -> Callable[[], TaskType]:
    return lambda: _resolve(entry_point.value, source)


def _constant(task_type: TaskType) -> Callable[[], TaskType]:
    return lambda: task_type


@cache
def registry_for(modules: tuple[str, ...] = ()) -> TaskTypeRegistry:
    """This process's registry for the configured ``TASK_TYPE_MODULES``: one per list, so the
    API's service and the worker's engine share loaded types."""
    return TaskTypeRegistry(modules=modules)
