"""What the API handler's cold start loads, in a fresh interpreter as bench/coldstart.py runs it:
the figures themselves are machine-dependent, the modules behind them are not. And what the
bench and the build assume: the template's environment, bytecode valid as shipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import coldstart

XRAY_SDK = "aws_xray_sdk"
OPENAPI_MODELS = "aws_lambda_powertools.event_handler.openapi.models"
TASK_TYPE_MODULES = {
    "taskqueue.task_types.data_processing",
    "taskqueue.task_types.email",
    "taskqueue.task_types.image_processing",
}


def test_api_first_request_loads_neither_xray_sdk_nor_openapi_models_nor_task_types() -> None:
    # Given a fresh interpreter, when it imports the API handler and answers GET /tasks/{id}
    loaded = coldstart.loaded_modules(coldstart.FIRST_REQUEST)
    # Then the task was read through the handler, without the heaviest optional imports:
    # no task type is needed to read a task, so none is imported (nor EMAIL's validator)
    assert "taskqueue.store" in loaded
    assert XRAY_SDK not in loaded
    assert OPENAPI_MODELS not in loaded
    assert not TASK_TYPE_MODULES & loaded
    assert "email_validator" not in loaded


def test_api_import_leaves_the_collector_on_and_its_objects_frozen() -> None:
    # Given a fresh interpreter that imported the API handler
    program = (
        coldstart._program("api") + "import gc\nprint(gc.isenabled(), gc.get_freeze_count())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        env=coldstart._env(),
        cwd=coldstart.ROOT,
        check=True,
    )
    enabled, frozen = done.stdout.strip().splitlines()[-1].split()
    # Then garbage is collected again, but no collection rescans the import's own objects
    assert enabled == "True"
    assert int(frozen) > 50_000


def test_worker_keeps_its_xray_tracer() -> None:
    assert XRAY_SDK in coldstart.loaded_modules("worker")


def test_bench_environment_has_the_template_globals_literal_variables(
    sam_template: dict[str, Any],
) -> None:
    # The bench times the functions with the variables the template gives them (those that
    # are not references to resources), so a setting that changes a cold start is measured.
    variables = sam_template["Globals"]["Function"]["Environment"]["Variables"]
    literal = {name: value for name, value in variables.items() if isinstance(value, str)}
    assert literal
    assert {name: coldstart.ENVIRONMENT.get(name) for name in literal} == literal


def test_bytecode_compiled_as_the_build_does_is_used_even_when_source_times_change(
    tmp_path: Path,
) -> None:
    # Given a module compiled with the build's options, whose source then changes under it
    # with another modification time (as unpacking a zip may give it)
    module = tmp_path / "shipped.py"
    module.write_text("WHERE = 'bytecode'\n")
    coldstart.compile_bytecode(tmp_path, options=coldstart.BYTECODE_OPTIONS)
    module.write_text("WHERE = 'source'\n")
    os.utime(module, (1_000_000_000, 1_000_000_000))
    # When a fresh interpreter that cannot write bytecode imports it
    done = subprocess.run(
        [sys.executable, "-B", "-c", "import shipped; print(shipped.WHERE)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    # Then it ran the shipped bytecode, without compiling anything
    assert done.stdout.strip() == "bytecode"


def test_make_build_compiles_with_the_options_the_bench_measures() -> None:
    from deploy.build import BUILD_DIR, Toolchain, bytecode_command

    command = bytecode_command(Toolchain(python_dir="/opt/py/bin"), "3.12")
    assert command == [
        "/opt/py/bin/python3.12",
        "-m",
        "compileall",
        *coldstart.BYTECODE_OPTIONS,
        str(BUILD_DIR),
    ]
    assert bytecode_command(Toolchain(use_container=True), "3.12") is None


def test_the_figures_without_a_dependency_take_off_its_own_import_only() -> None:
    # Given medians (ms): boto3 100, + pydantic 140, + logger/metrics 145, + resolver 170,
    # and the API handler 200
    imports = {
        "boto3": 100,
        coldstart.PYDANTIC: 140,
        coldstart.POWERTOOLS: 145,
        coldstart.RESOLVER: 170,
        "api": 200,
    }
    samples = {
        name: [coldstart.Sample(ms / 1000, ms / 1000, ms / 1000, ms / 1000)]
        for name, ms in imports.items()
    }
    result = coldstart.ColdStartResult(1, samples, profiles={})
    # Then each step adds its own share, and taking steps off gives the handler without them
    assert round(result.ratio(), 2) == 2.0
    assert [round(result.step_ms(step)) for step in coldstart.STACK_STEPS] == [40, 5, 25]
    assert round(result.own_ms()) == 30
    assert round(result.ratio_without(coldstart.RESOLVER), 2) == 1.75
    assert round(result.ratio_without(coldstart.PYDANTIC, coldstart.RESOLVER), 2) == 1.35
