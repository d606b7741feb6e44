"""deploy/build.py: where `make build` finds the runtime's Python, with a fake machine."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from deploy import build

PYTHON_VERSION_PROBE = "import sys; print('%d.%d' % sys.version_info[:2])"


class Machine:
    """Executables on PATH and the answers of the commands the probes run."""

    def __init__(self, on_path: dict[str, str], answers: dict[tuple[str, ...], tuple[int, str]]):
        self.on_path = on_path
        self.answers = answers
        self.ran: list[tuple[str, ...]] = []

    def which(self, name: str) -> str | None:
        return self.on_path.get(name)

    def run(self, argv: Sequence[str]) -> tuple[int, str]:
        self.ran.append(tuple(argv))
        return self.answers.get(tuple(argv), (127, ""))


def reports(python: str, version: str) -> dict[tuple[str, ...], tuple[int, str]]:
    return {(python, "-c", PYTHON_VERSION_PROBE): (0, f"{version}\n")}


def test_the_runtime_version_comes_from_the_template() -> None:
    assert build.runtime_version() == "3.12"


def test_python_on_path_that_runs_is_used_first() -> None:
    machine = Machine(
        {"python3.12": "/opt/py/bin/python3.12", "docker": "/usr/bin/docker"},
        {**reports("/opt/py/bin/python3.12", "3.12"), ("/usr/bin/docker", "info"): (0, "")},
    )

    toolchain = build.find_toolchain("3.12", which=machine.which, run=machine.run)

    assert toolchain == build.Toolchain(python_dir="/opt/py/bin", found="/opt/py/bin/python3.12")
    assert ("/usr/bin/docker", "info") not in machine.ran


def test_a_pyenv_shim_that_fails_falls_through_to_pyenvs_newest_312() -> None:
    shim = "/home/dev/.pyenv/shims/python3.12"
    pyenv = "/home/dev/.pyenv/bin/pyenv"
    newest = "/home/dev/.pyenv/versions/3.12.10"
    machine = Machine(
        {"python3.12": shim, "pyenv": pyenv},
        {
            (pyenv, "versions", "--bare"): (0, "3.11.7\n3.12.2\n3.12.10\n3.13.0\n"),
            (pyenv, "prefix", "3.12.10"): (0, f"{newest}\n"),
            **reports(f"{newest}/bin/python3.12", "3.12"),
        },
    )

    toolchain = build.find_toolchain("3.12", which=machine.which, run=machine.run)

    assert toolchain.python_dir == f"{newest}/bin"
    assert toolchain.found == "pyenv 3.12.10"
    assert (shim, "-c", PYTHON_VERSION_PROBE) in machine.ran
    assert (pyenv, "prefix", "3.12.2") not in machine.ran


def test_without_python_a_running_docker_engine_builds_in_a_container() -> None:
    machine = Machine({"docker": "/usr/bin/docker"}, {("/usr/bin/docker", "info"): (0, "")})

    toolchain = build.find_toolchain("3.12", which=machine.which, run=machine.run)

    assert toolchain.use_container and toolchain.python_dir is None


def test_without_python_or_docker_engine_one_line_says_how_to_get_one() -> None:
    # A docker client whose engine does not answer does not count.
    machine = Machine({"docker": "/usr/bin/docker"}, {("/usr/bin/docker", "info"): (1, "")})

    with pytest.raises(build.BuildError) as raised:
        build.find_toolchain("3.12", which=machine.which, run=machine.run)

    message = str(raised.value)
    assert "\n" not in message
    assert "python3.12 on PATH" in message and "pyenv install 3.12" in message
    assert "Docker engine" in message


def test_the_build_command_puts_the_found_python_first_on_path() -> None:
    found = build.Toolchain(python_dir="/opt/py/bin", found="x")
    container = build.Toolchain(use_container=True, found="docker")

    argv, env = build.build_command(
        "sam", Path("template.yaml"), "prod", found, {"PATH": "/usr/bin", "HOME": "/h"}
    )
    container_argv, container_env = build.build_command(
        "sam", Path("template.yaml"), "dev", container, {"PATH": "/usr/bin"}
    )

    assert argv == ["sam", "build", "--template", "template.yaml", "--config-env", "prod"]
    assert env == {"PATH": "/opt/py/bin:/usr/bin", "HOME": "/h"}
    assert container_argv[-1] == "--use-container"
    assert container_env == {"PATH": "/usr/bin"}


# ------------------------------------------------------------------------------- sizes

BUILT_TEMPLATE = """\
Globals:
  Function:
    Layers:
      - !Ref CoreLayer
Resources:
  CoreLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: CoreLayer
  ApiFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ApiFunction
      Layers:
        - !If [HasTaskTypeLayer, !Ref TaskTypeLayerArn, !Ref AWS::NoValue]
  WorkerFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: WorkerFunction
"""


def built(tmp_path: Path, files: dict[str, int]) -> Path:
    """A build directory like sam build's: the template and files of the given sizes."""
    (tmp_path / "template.yaml").write_text(BUILT_TEMPLATE)
    for name, size in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
    return tmp_path


def test_each_function_counts_its_code_and_the_shared_layer(tmp_path: Path) -> None:
    build_dir = built(
        tmp_path,
        {
            "CoreLayer/python/duckdb/lib.so": 7_000,
            "CoreLayer/python/taskqueue/engine.py": 300,
            "ApiFunction/app.py": 20,
            "WorkerFunction/app.py": 10,
            "WorkerFunction/more/util.py": 5,
        },
    )

    sizes = build.deployment_sizes(build_dir)

    assert sizes == {"ApiFunction": 7_320, "WorkerFunction": 7_315}


def test_a_function_over_lambdas_unzipped_limit_fails_the_build(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert build.check_sizes({"ApiFunction": 100, "WorkerFunction": 200}, limit=200) == 0
    assert build.check_sizes({"ApiFunction": 100, "WorkerFunction": 201}, limit=200) == 1
    assert (
        "WorkerFunction: 0.0 MB unzipped with its layers (limit 0 MB) OVER"
        in capsys.readouterr().err
    )
