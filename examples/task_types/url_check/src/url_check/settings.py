"""URL_CHECK's one setting, read once per process from the functions' environment."""

from __future__ import annotations

import os
from functools import cache

from taskqueue.errors import PermanentError

ALLOW_LOOPBACK = "URL_CHECK_ALLOW_LOOPBACK"


@cache
def loopback_allowed() -> bool:
    """Whether checks may connect to 127.0.0.0/8 and ::1: for local tests (a test's HTTP server
    on this machine), never on Lambda, where loopback is the runtime API of the function."""
    wanted = os.environ.get(ALLOW_LOOPBACK, "").strip().lower() in ("1", "true", "yes")
    if wanted and os.environ.get("AWS_EXECUTION_ENV", "").startswith("AWS_Lambda_"):
        raise PermanentError(
            f"{ALLOW_LOOPBACK} is for local tests and is refused on Lambda; remove it from "
            "the function's environment",
            code="misconfigured",
        )
    return wanted
