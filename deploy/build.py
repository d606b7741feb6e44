"""`make build`: `sam build` with the Python of the Lambda runtime, found on this machine.

    python -m deploy.build --sam .tools/sam/bin/sam [--template template.yaml] [--config-env dev]

sam build needs the runtime's interpreter (python3.12) to install the layer's dependencies.
It is looked for, in this order:

1. ``python3.12`` on PATH, if it really runs (a pyenv shim is on PATH even where no 3.12 is
   selected, and then fails);
2. pyenv's newest installed 3.12 (``pyenv versions --bare``, ``pyenv prefix``);
3. a container build (``sam build --use-container``) where a Docker engine answers;

else the build stops with one line saying how to get one. No path of any one machine is
written anywhere: everything is asked of the machine it runs on.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from shutil import which as shutil_which

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
# A `docker info` or a pyenv call that hangs must not hang the build.
PROBE_TIMEOUT_SECONDS = 20
BUILD_DIR = ROOT / ".aws-sam" / "build"
# unchecked-hash: the bytecode is used as it is, never compared with the source's time (a zip
# keeps times inexactly). bench/coldstart.py measures the layer compiled with these options.
BYTECODE_OPTIONS = ("-q", "-j", "0", "--invalidation-mode", "unchecked-hash")
# Lambda's limit on a function's code and all its layers, unzipped (250 MB).
UNZIPPED_LIMIT_BYTES = 262_144_000

Which = Callable[[str], str | None]
Run = Callable[[Sequence[str]], tuple[int, str]]


class BuildError(RuntimeError):
    """No way to build for the runtime on this machine; the message says how to get one."""


@dataclass(frozen=True)
class Toolchain:
    """How sam build gets the runtime's Python: a directory put first on PATH, or a container."""

    python_dir: str | None = None
    use_container: bool = False
    found: str = ""  # what was found, for the log line


def run_probe(argv: Sequence[str]) -> tuple[int, str]:
    """(exit code, stdout) of a short probe command; a missing or hung command is a failure."""
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return 1, ""
    return done.returncode, done.stdout


def runtime_version(template: Path = TEMPLATE) -> str:
    """ "3.12" from the template's Globals.Function.Runtime ("python3.12")."""
    from devstack.resources import load_template

    runtime = str(load_template(template)["Globals"]["Function"]["Runtime"])
    match = re.fullmatch(r"python(\d+\.\d+)", runtime)
    if not match:
        raise BuildError(f"make build: the template's runtime {runtime} is not a Python runtime")
    return match.group(1)


def _runs(run: Run, python: str, version: str) -> bool:
    code, out = run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    return code == 0 and out.strip() == version


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def find_toolchain(version: str, *, which: Which = shutil_which, run: Run = run_probe) -> Toolchain:
    """The first of: python<version> on PATH, pyenv's newest <version>.x, a Docker engine."""
    executable = f"python{version}"
    on_path = which(executable)
    if on_path and _runs(run, on_path, version):
        return Toolchain(python_dir=str(Path(on_path).parent), found=on_path)

    pyenv = which("pyenv")
    if pyenv:
        code, out = run([pyenv, "versions", "--bare"])
        installed = re.findall(
            rf"^({re.escape(version)}(?:\.\d+)*)$", out if code == 0 else "", re.M
        )
        for candidate in sorted(set(installed), key=_version_key, reverse=True):
            code, prefix = run([pyenv, "prefix", candidate])
            python = str(Path(prefix.strip()) / "bin" / executable)
            if code == 0 and prefix.strip() and _runs(run, python, version):
                return Toolchain(python_dir=str(Path(python).parent), found=f"pyenv {candidate}")

    docker = which("docker")
    if docker and run([docker, "info"])[0] == 0:
        return Toolchain(use_container=True, found="a Docker engine (sam build --use-container)")

    raise BuildError(
        f"make build: needs Python {version} (the Lambda runtime): put {executable} on PATH "
        f"(python.org, your package manager, or `pyenv install {version}`), or start a Docker "
        "engine to build in a container"
    )


def build_command(
    sam: str, template: Path, config_env: str, toolchain: Toolchain, environ: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """argv and environment of the sam build run."""
    argv = [sam, "build", "--template", str(template), "--config-env", config_env]
    env = dict(environ)
    if toolchain.use_container:
        argv.append("--use-container")
    if toolchain.python_dir:
        env["PATH"] = os.pathsep.join(filter(None, [toolchain.python_dir, env.get("PATH")]))
    return argv, env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="sam build with the runtime's Python.")
    parser.add_argument("--sam", required=True, help="the sam executable")
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    parser.add_argument("--config-env", default="dev")
    args = parser.parse_args(argv)
    try:
        toolchain = find_toolchain(runtime_version(args.template))
    except BuildError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"make build: Python from {toolchain.found}", file=sys.stderr)
    command, env = build_command(args.sam, args.template, args.config_env, toolchain, os.environ)
    built = subprocess.run(command, env=env, check=False).returncode
    if built != 0:
        return built
    compile_command = bytecode_command(toolchain, runtime_version(args.template))
    if compile_command is None:
        print("make build: built in a container; bytecode left to the runtime", file=sys.stderr)
    else:
        compiled = subprocess.run(compile_command, check=False).returncode
        if compiled != 0:
            return compiled
    return check_sizes(deployment_sizes(BUILD_DIR))


def tree_bytes(path: Path) -> int:
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())


def deployment_sizes(build_dir: Path) -> dict[str, int]:
    """Each built function's unzipped size with the layers of this template it uses, in bytes.
    A layer given by ARN (TaskTypeLayerArn) is not in the build and is not counted."""
    from devstack.resources import load_template

    template = load_template(build_dir / "template.yaml")
    resources = template["Resources"]
    layer_bytes = {
        name: tree_bytes(build_dir / resource["Properties"]["ContentUri"])
        for name, resource in resources.items()
        if resource["Type"] == "AWS::Serverless::LayerVersion"
    }
    shared = template.get("Globals", {}).get("Function", {}).get("Layers", [])
    sizes = {}
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        properties = resource["Properties"]
        layers = [*shared, *properties.get("Layers", [])]
        used = {layer["Ref"] for layer in layers if isinstance(layer, dict) and "Ref" in layer}
        code = tree_bytes(build_dir / properties["CodeUri"])
        sizes[name] = code + sum(layer_bytes[layer] for layer in used & layer_bytes.keys())
    return sizes


def check_sizes(sizes: Mapping[str, int], limit: int = UNZIPPED_LIMIT_BYTES) -> int:
    """Prints each function's size against Lambda's limit; 1 if one is over it."""
    over = False
    for name, size in sorted(sizes.items(), key=lambda item: -item[1]):
        verdict = "OVER Lambda's limit" if size > limit else "ok"
        print(
            f"make build: {name}: {size / 1e6:.1f} MB unzipped with its layers "
            f"(limit {limit / 1e6:.0f} MB) {verdict}",
            file=sys.stderr,
        )
        over = over or size > limit
    return 1 if over else 0


def bytecode_command(toolchain: Toolchain, version: str) -> list[str] | None:
    """compileall of the build with the runtime's own Python (bytecode is version-specific)."""
    if toolchain.python_dir is None:
        return None
    python = str(Path(toolchain.python_dir) / f"python{version}")
    return [python, "-m", "compileall", *BYTECODE_OPTIONS, str(BUILD_DIR)]


if __name__ == "__main__":
    raise SystemExit(main())
