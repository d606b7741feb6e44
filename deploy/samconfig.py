"""Print the stack name and region of a samconfig.toml environment, for the Makefile:

$ python -m deploy.samconfig dev
taskqueue-dev us-east-1
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

SAMCONFIG = Path(__file__).resolve().parents[1] / "samconfig.toml"


def stack_and_region(env: str, path: Path = SAMCONFIG) -> tuple[str, str]:
    """[env.global.parameters] (falling back to [env.deploy.parameters], then [default])."""
    config: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    values: dict[str, Any] = {}
    for section in ("default", env):
        for command in ("global", "deploy"):
            values.update(config.get(section, {}).get(command, {}).get("parameters", {}))
    if env not in config:
        raise SystemExit(f"samconfig.toml has no [{env}] environment")
    stack, region = values.get("stack_name"), values.get("region")
    if not stack or not region:
        raise SystemExit(f"samconfig.toml [{env}] names no stack_name or region")
    return str(stack), str(region)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m deploy.samconfig ENV", file=sys.stderr)
        return 2
    print(*stack_and_region(args[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
