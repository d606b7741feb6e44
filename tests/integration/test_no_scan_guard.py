"""The no-Scan guard of tests/conftest.py really fails a test that scans DynamoDB."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest

from devstack.resources import LocalResources

TESTS_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = TESTS_DIR.parent


def test_scan_through_a_client_fails_the_test(aws: LocalResources, scan_guard) -> None:
    client = boto3.client("dynamodb")

    with pytest.raises(pytest.fail.Exception, match="Scan is forbidden"):
        client.scan(TableName=aws.tables["TasksTable"])

    assert scan_guard.seen == ["dynamodb.Scan called: DynamoDB Scan is forbidden"]
    scan_guard.seen.clear()  # the guard did its job: let this test pass


def test_scan_through_a_table_resource_fails_the_test(aws: LocalResources, scan_guard) -> None:
    table = boto3.resource("dynamodb").Table(aws.tables["TasksTable"])

    with pytest.raises(pytest.fail.Exception, match="Scan is forbidden"):
        table.scan()

    scan_guard.seen.clear()


def test_query_on_an_index_passes_the_guard(aws: LocalResources) -> None:
    client = boto3.client("dynamodb")

    response = client.query(
        TableName=aws.tables["TasksTable"],
        IndexName="by_owner",
        KeyConditionExpression="gsi1pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "OWNER#user-123#0"}},
    )

    assert response["Count"] == 0


def test_a_test_that_scans_fails_even_if_it_swallows_the_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest((TESTS_DIR / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(
        test_scans="""
        import boto3

        def test_scans(aws):
            boto3.client("dynamodb").scan(TableName=aws.tables["TasksTable"])

        def test_scans_and_swallows_the_error(aws):
            try:
                boto3.client("dynamodb").scan(TableName=aws.tables["TasksTable"])
            except BaseException:
                pass

        def test_gets_an_item(aws):
            boto3.client("dynamodb").get_item(
                TableName=aws.tables["TasksTable"],
                Key={"pk": {"S": "TASK#x"}, "sk": {"S": "META"}},
            )
        """
    )
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "layers" / "core")])
    )

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "E*Failed: dynamodb.Scan called: DynamoDB Scan is forbidden",
            "FAILED test_scans.py::test_scans - *",
            "ERROR test_scans.py::test_scans_and_swallows_the_error - *",
        ]
    )
