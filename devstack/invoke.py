"""``invoke``: one handler, once, against a fresh in-process moto stack built from the template.

The answer goes to stdout as JSON and the handler's logs to stderr, as ``sam local invoke``
does, so ``python -m devstack invoke ... | jq`` works.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from devstack.harness import fresh_stack
from devstack.resources import function_environment
from devstack.runtime import LocalFunction, apply_function_environment
from devstack.stack import verify_email_sender


def invoke(
    function_id: str, event_path: str | Path, parameters: Mapping[str, str] | None = None
) -> Any:
    """Run ``function_id``'s handler with the event in ``event_path``; return its answer.
    ``parameters`` are template parameter values (``TaskTypeModules`` for plugin types)."""
    event = json.loads(Path(event_path).read_text(encoding="utf-8"))
    with fresh_stack(parameters) as (transformed, resources, functions):
        if function_id not in functions:
            known = ", ".join(sorted(functions))
            raise SystemExit(f"{function_id} is not a local function of the template ({known})")
        environment = function_environment(transformed, function_id, resources)
        apply_function_environment(environment)
        if environment.get("EMAIL_SENDER"):
            verify_email_sender(environment["EMAIL_SENDER"])
        function: LocalFunction = functions[function_id]
        # Handler output (Powertools logs, metrics) to stderr; Logger binds its stream at
        # import, which happens inside this block.
        with contextlib.redirect_stdout(sys.stderr):
            return function.invoke(event)


def print_answer(answer: Any) -> None:
    sys.stdout.write(json.dumps(answer, indent=2, default=str) + "\n")
    sys.stdout.flush()
