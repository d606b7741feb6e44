"""``python -m devstack scaffold NAME --dir PATH``: a new task type's package, outside the core
layer, that works and passes its own tests as made.

It writes a distribution (``pyproject.toml`` with the ``taskqueue.task_types`` entry point), the
type's module (a params model with bounds, ``start``, ``run_chunk`` and ``finish`` of a type
that adds up numbers, with a per-chunk output and a permanent error), its tests (the methods on
moto's S3, and runs through the API and the worker with ``devstack.harness``) and sample API
events. It lives here, beside the local stack, rather than in the client (which knows the API,
not the contract of task types) or the core layer (which is deployed to every function): what
it writes is tested against this repository's core, so the two cannot drift.
"""

from __future__ import annotations

import json
import keyword
import sys
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from devstack.resources import REPO_ROOT
from devstack.runtime import add_layers_to_path

FILES = Path(__file__).with_name("scaffold_files")
SUBMIT_EVENT = REPO_ROOT / "events" / "api_submit_task.json"
# Module names a type's package must not take: they would hide the core, the local stack or
# the tests' packages on the functions' path.
RESERVED_MODULES = frozenset({"taskqueue", "devstack", "functions", "tests", "test", "conftest"})
SAMPLE_PARAMS = {"numbers": [3, 1, 4, 1, 5, 9, 2, 6], "per_chunk": 4}
INVALID_PARAMS: dict[str, Any] = {"numbers": []}


class ScaffoldError(ValueError):
    """A name or directory the scaffold cannot use; the message says why."""


@dataclass(frozen=True)
class Names:
    type_name: str  # WORD_COUNT: the registry's name, and the type object's
    module: str  # word_count
    class_name: str  # WordCount
    distribution: str  # taskqueue-word-count

    @classmethod
    def of(cls, type_name: str, module: str | None = None) -> Names:
        add_layers_to_path()
        from taskqueue.task_types.registry import TYPE_NAME  # the registry's own rule

        if not TYPE_NAME.fullmatch(type_name):
            raise ScaffoldError(
                f"{type_name!r} is not a type name: A-Z, 0-9 and _, starting with a letter, "
                "at most 64 (as DATA_PROCESSING)"
            )
        module = module or type_name.lower()
        if not module.isidentifier() or keyword.iskeyword(module) or module != module.lower():
            raise ScaffoldError(f"{module!r} is not a lower-case Python module name")
        if module in RESERVED_MODULES or module in sys.stdlib_module_names:
            raise ScaffoldError(f"{module!r} would hide a module of the same name; use --module")
        class_name = "".join(part.capitalize() for part in type_name.split("_") if part)
        return cls(type_name, module, class_name, "taskqueue-" + module.replace("_", "-"))

    def substitutions(self) -> dict[str, str]:
        return {
            "type_name": self.type_name,
            "module": self.module,
            "class_name": self.class_name,
            "constant": self.type_name,
            "distribution": self.distribution,
        }


def submit_event(body: dict[str, Any], idempotency_key: str) -> str:
    """The repository's sample POST /tasks event with another body (as API Gateway sends it)."""
    event = json.loads(SUBMIT_EVENT.read_text(encoding="utf-8"))
    text = json.dumps(body)
    event["body"] = text
    event["headers"]["content-length"] = str(len(text.encode()))
    event["headers"]["idempotency-key"] = idempotency_key
    return json.dumps(event, indent=2) + "\n"


def planned_files(names: Names) -> dict[str, str]:
    """Relative path -> content of every file of the package."""
    values = names.substitutions()
    files: dict[str, str] = {}
    for source in sorted(FILES.rglob("*.tmpl")):
        relative = source.relative_to(FILES).as_posix().removesuffix(".tmpl")
        relative = relative.replace("src/module/", f"src/{names.module}/")
        files[relative] = Template(source.read_text(encoding="utf-8")).substitute(values)
    sample = {"type": names.type_name, "params": SAMPLE_PARAMS}
    invalid = {"type": names.type_name, "params": INVALID_PARAMS}
    files[f"events/api_submit_{names.module}.json"] = submit_event(
        sample, "c0ffee00-1234-4abc-9def-00000000aaa1"
    )
    files[f"events/api_submit_{names.module}_invalid.json"] = submit_event(
        invalid, "c0ffee00-1234-4abc-9def-00000000aaa2"
    )
    return files


def scaffold(type_name: str, directory: str | Path, module: str | None = None) -> list[Path]:
    """Write the package of a new type into `directory` (new, or empty); returns its files."""
    names = Names.of(type_name, module)
    root = Path(directory)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ScaffoldError(f"{root} exists and is not an empty directory; nothing was written")
    written = []
    for relative, content in planned_files(names).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


def next_steps(names: Names, root: Path) -> str:
    return (
        f"{names.type_name} is in {root} (module {names.module}). Next:\n"
        f"  cd {root} && TASKQUEUE_HOME={REPO_ROOT} {REPO_ROOT}/.venv/bin/python -m pytest\n"
        f"  PYTHONPATH={root / 'src'} python -m devstack dev "
        f"--parameter TaskTypeModules={names.module}\n"
        "  the contract and deploying it as a layer: docs/task-types.md"
    )
