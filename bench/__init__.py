"""Benchmarks that print figures: cost per task, design capacity, list cost, cold start and
local throughput. ``python -m bench [name] [--size small|full]``; results in
docs/benchmarks.md.

Importing the package makes ``taskqueue`` importable (as Lambda's layer does) and points
boto3 at fake credentials: a benchmark never reaches a real AWS account.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "layers" / "core"

for _path in (ROOT, LAYER):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from devstack.runtime import FAKE_AWS_ENV, REAL_AWS_ENV  # noqa: E402 - needs the path above

os.environ.update(FAKE_AWS_ENV)
for _name in (*REAL_AWS_ENV, "DEV_AUTH_USER"):
    os.environ.pop(_name, None)
