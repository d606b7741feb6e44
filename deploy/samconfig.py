"""Print the stack name and region of a samconfig.toml environment, for the Makefile:

$ python -m deploy.samconfig dev
taskqueue-dev us-east-1
"""

from __future__ import annotations

import shlex
import sys
import tomllib
from pathlib import Path
from typing import Any

SAMCONFIG = Path(__file__).resolve().parents[1] / "samconfig.toml"


def _settings(env: str, path: Path) -> dict[str, Any]:
    """[env.global.parameters] and [env.deploy.parameters] over the same of [default]."""
    config: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    if env not in config:
        raise SystemExit(f"samconfig.toml has no [{env}] environment")
    values: dict[str, Any] = {}
    for section in ("default", env):
        for command in ("global", "deploy"):
            values.update(config.get(section, {}).get(command, {}).get("parameters", {}))
    return values


def stack_and_region(env: str, path: Path = SAMCONFIG) -> tuple[str, str]:
    """[env.global.parameters] (falling back to [env.deploy.parameters], then [default])."""
    values = _settings(env, path)
    stack, region = values.get("stack_name"), values.get("region")
    if not stack or not region:
        raise SystemExit(f"samconfig.toml [{env}] names no stack_name or region")
    return str(stack), str(region)


def parameter_overrides(env: str, path: Path = SAMCONFIG) -> dict[str, str]:
    """The template parameters samconfig.toml sets for `env` ("Stage=prod RetentionDays=90")."""
    text = str(_settings(env, path).get("parameter_overrides", ""))
    overrides = {}
    for item in shlex.split(text):
        name, separator, value = item.partition("=")
        if not separator or not name:
            raise SystemExit(
                f"samconfig.toml [{env}] parameter_overrides: {item!r} is not Key=Value"
            )
        overrides[name] = value
    return overrides


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m deploy.samconfig ENV", file=sys.stderr)
        return 2
    print(*stack_and_region(args[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
