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

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
REAL_AWS_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "DEV_AUTH_USER")

for _path in (ROOT, LAYER):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
os.environ.update(FAKE_AWS_ENV)
for _name in REAL_AWS_ENV:
    os.environ.pop(_name, None)
