"""Shared fixtures: fake AWS first, moto resources from template.yaml, and no DynamoDB Scan.

- ``aws``: a fresh ``mock_aws()`` with the table, queues and buckets of template.yaml;
  yields :class:`devstack.resources.LocalResources` (``aws.tables["TasksTable"]``,
  ``aws.queues["TaskQueue"]`` (URL), ``aws.buckets["DataBucket"]``, ``aws.arns[...]``);
  moto there writes DynamoDB attribute values directly, parses each UpdateExpression once and
  gives symmetric KMS keys one RSA pair (``MOTO_SPEED_UPS``: the same answers, faster).
- ``settings_env``: ``aws`` + the ApiFunction environment set with monkeypatch.
- ``function_env``: the same for any function: ``function_env("WorkerFunction")``.
- ``lambda_context``: a Lambda context with a settable remaining time.

Each is a thin wrapper over devstack.harness, which the benchmarks and the local stack share.
- every test: a DynamoDB ``Scan`` fails the test (design rule: no Scan, anywhere).
- ``serial``: the tests ``make test`` runs alone, after the others ran on two xdist workers.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Before boto3 is imported anywhere: never reach a real account, whatever the shell has.
from devstack.runtime import FAKE_AWS_ENV
from devstack.runtime import REAL_AWS_ENV as _REAL

REAL_AWS_ENV = (*_REAL, "DEV_AUTH_USER")  # the local-only identity never leaks into a test
os.environ.update(FAKE_AWS_ENV)
for _name in REAL_AWS_ENV:
    os.environ.pop(_name, None)

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.client import BaseClient

from devstack.harness import LambdaContext, reset_caches, template_resources
from devstack.harness import lambda_context as new_lambda_context
from devstack.moto_patches import (
    cached_update_expressions,
    direct_attribute_values,
    one_rsa_key_for_symmetric_keys,
    temporarily,
)
from devstack.resources import (
    LocalResources,
    function_environment,
    load_template,
    transform_template,
)

REGION = FAKE_AWS_ENV["AWS_DEFAULT_REGION"]
TESTS_DIR = Path(__file__).resolve().parent

# ------------------------------------------------------------------------------- serial part

# `make test` runs every test not marked `serial` on two xdist workers (`-m "not serial" -n 2`),
# then the `serial` ones in one process (`-m serial`): each test once. Serial are the tests a
# busy neighbour would break or slow: waits asserted in wall time, CPU ratios measured in the
# run, processes and stacks of their own. A module marks itself (`pytestmark`); whole
# directories are marked here, each with the reason.
SERIAL_DIRECTORIES = {
    "e2e": "local stacks (moto server, gateway, environment processes) and Chromium, with "
    "waits asserted in wall time; one stack a session, which two workers would start twice",
}

# xdist gives each worker whole files, in collection order (`--no-loadscope-reorder`): these,
# the longest (test-seconds on 2 shared cores), go first, so that the run does not end with one
# worker alone in a long file. Only an order: a file missing here runs all the same.
LONGEST_FILES_FIRST = (
    "reliability/test_faults.py",  # 140-170 s, most of it the mixed workload under faults
    "bench/test_counting_goals.py",  # 110-160 s, most of it the benchmarks' own worlds
    "integration/test_data_processing.py",  # 130-155 s in about 100 tests
    "security/test_fuzz_api.py",  # 80-90 s
)


def _relative(item: pytest.Item) -> str | None:
    return (
        item.path.relative_to(TESTS_DIR).as_posix() if item.path.is_relative_to(TESTS_DIR) else None
    )


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        relative = _relative(item)
        if relative is not None and relative.split("/")[0] in SERIAL_DIRECTORIES:
            item.add_marker(pytest.mark.serial)
    if os.environ.get("PYTEST_XDIST_WORKER"):  # every worker sorts alike: same collection

        def rank(item: pytest.Item) -> int:
            relative = _relative(item)
            if relative in LONGEST_FILES_FIRST:
                return LONGEST_FILES_FIRST.index(relative)
            return len(LONGEST_FILES_FIRST)

        items.sort(key=rank)  # stable: the rest keep their order


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A serial test on an xdist worker would run beside another test: fail it, saying how."""
    if os.environ.get("PYTEST_XDIST_WORKER") and item.get_closest_marker("serial"):
        pytest.fail(
            'a serial test on an xdist worker: run `-m "not serial"` with -n and `-m serial` '
            "without it, as `make test` does (tests/conftest.py says why a test is serial)",
            pytrace=False,
        )


# ------------------------------------------------------------------------------- no Scan


class ScanGuard:
    """Fails the running test on a forbidden call: a DynamoDB Scan (use Query on an index)."""

    forbidden = frozenset({("dynamodb", "Scan")})

    def __init__(self) -> None:
        self.seen: list[str] = []

    def check(self, service_name: str, operation_name: str) -> None:
        if (service_name, operation_name) in self.forbidden:
            message = f"{service_name}.{operation_name} called: DynamoDB Scan is forbidden"
            self.seen.append(message)
            # pytest.fail raises a BaseException: code catching Exception cannot hide it.
            pytest.fail(message)


SCAN_GUARD = ScanGuard()
_original_make_api_call = BaseClient._make_api_call  # type: ignore[attr-defined]


def _guarded_make_api_call(self: BaseClient, operation_name: str, api_params: Any) -> Any:
    SCAN_GUARD.check(self.meta.service_model.service_name, operation_name)
    return _original_make_api_call(self, operation_name, api_params)


@pytest.fixture(scope="session", autouse=True)
def _moto_bulk_email() -> Iterator[None]:
    """moto 5.2.5 has no SES v2 SendBulkEmail or GetAccount; the local stack adds them too."""
    from devstack.moto_sesv2 import bulk_email

    with pytest.MonkeyPatch.context() as patch:
        bulk_email(lambda owner, name, value: patch.setattr(owner, name, value, raising=False))
        yield


@pytest.fixture(autouse=True)
def _fresh_email_pacer() -> None:
    """The EMAIL type paces its process's sends; each test is a fresh process in that sense."""
    module = sys.modules.get("taskqueue.task_types.email")
    if module is not None:  # never imported here first: the cold-start tests watch imports
        module.EMAIL.pacer = module.SesPacer()


@pytest.fixture(scope="session", autouse=True)
def _no_dynamodb_scan() -> Iterator[None]:
    """Every botocore call (boto3 client, resource, paginator) passes through the guard."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BaseClient, "_make_api_call", _guarded_make_api_call)
        yield


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


@pytest.fixture(autouse=True)
def scan_guard(request: pytest.FixtureRequest) -> Iterator[ScanGuard]:
    """The guard; after the test, also fails a test whose code swallowed the guard's error."""
    SCAN_GUARD.seen.clear()
    yield SCAN_GUARD
    seen = list(SCAN_GUARD.seen)
    SCAN_GUARD.seen.clear()
    if seen and not request.node.stash.get(_CALL_FAILED, False):
        pytest.fail(seen[0], pytrace=False)


# ------------------------------------------------------------------------------- AWS


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    for name in REAL_AWS_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def sam_template() -> dict[str, Any]:
    """template.yaml as written (short tags turned into Fn::*)."""
    return load_template()


@pytest.fixture(scope="session")
def transformed_template(sam_template: dict[str, Any]) -> dict[str, Any]:
    """template.yaml after samtranslator: plain CloudFormation (cached for the session)."""
    return transform_template(sam_template)


# moto as fast as answering the same allows (devstack/moto_patches.py says how each keeps
# every answer); the local stack runs with them too.
MOTO_SPEED_UPS = (
    direct_attribute_values,
    cached_update_expressions,
    one_rsa_key_for_symmetric_keys,
)


@pytest.fixture
def aws(transformed_template: dict[str, Any]) -> Iterator[LocalResources]:
    """moto in-process with every table, queue and bucket of template.yaml."""
    with (
        temporarily(*MOTO_SPEED_UPS),
        template_resources(transformed_template) as resources,
    ):
        reset_caches()
        yield resources
    reset_caches()


@pytest.fixture
def function_env(
    aws: LocalResources,
    transformed_template: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[str], dict[str, str]]:
    """``function_env("WorkerFunction")`` sets that function's environment; returns it."""

    def apply(logical_id: str) -> dict[str, str]:
        environment = function_environment(transformed_template, logical_id, aws)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        reset_caches()
        return environment

    return apply


@pytest.fixture
def settings_env(function_env: Callable[[str], dict[str, str]]) -> dict[str, str]:
    """The ApiFunction environment (Globals included) pointing at the moto resources."""
    return function_env("ApiFunction")


# ------------------------------------------------------------------------------- Lambda


@pytest.fixture
def lambda_context() -> LambdaContext:
    return new_lambda_context(function_name="local-WorkerFunction", memory_limit_in_mb=1024)
