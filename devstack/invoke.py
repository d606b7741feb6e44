"""``invoke``: one handler, once, against a fresh in-process moto stack built from the template.

The answer goes to stdout as JSON and the handler's logs to stderr, as ``sam local invoke``
does, so ``python -m devstack invoke ... | jq`` works.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import boto3

from devstack.resources import (
    DEFAULT_REGION,
    create_resources,
    function_environment,
    load_template,
    transform_template,
)
from devstack.runtime import (
    LocalFunction,
    add_layers_to_path,
    apply_function_environment,
    use_fake_aws,
)
from devstack.stack import local_functions, verify_email_sender


def invoke(function_id: str, event_path: str | Path) -> Any:
    """Run ``function_id``'s handler with the event in ``event_path``; return its answer."""
    event = json.loads(Path(event_path).read_text(encoding="utf-8"))
    use_fake_aws()
    add_layers_to_path()
    from moto import mock_aws

    from devstack.moto_sesv2 import bulk_email

    bulk_email()  # moto has no SES v2 SendBulkEmail or GetAccount (see devstack.moto_sesv2)
    transformed = transform_template(load_template())
    with mock_aws():
        resources = create_resources(boto3.Session(region_name=DEFAULT_REGION), transformed)
        functions = local_functions(transformed, resources)
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
