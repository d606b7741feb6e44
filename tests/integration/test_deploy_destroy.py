"""deploy/destroy.py against moto: a stand-in stack with the template's bucket and table ids,
a versioned site bucket, the confirmation, and the `sam delete` command (recorded, not run)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto import mock_aws

from deploy import destroy
from devstack.resources import load_template

REGION = "us-east-1"
STACK = "taskqueue-dev"
# The logical ids of template.yaml, as resources moto's CloudFormation can create.
STAND_IN = {
    "Resources": {
        "SiteBucket": {"Type": "AWS::S3::Bucket"},
        "DataBucket": {"Type": "AWS::S3::Bucket", "DeletionPolicy": "RetainExceptOnCreate"},
        "TasksTable": {
            "Type": "AWS::DynamoDB::Table",
            "DeletionPolicy": "RetainExceptOnCreate",
            "Properties": {
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            },
        },
    }
}


@dataclass
class World:
    cloudformation: Any
    s3: Any
    buckets: dict[str, str]
    table: str
    commands: list[list[str]] = field(default_factory=list)
    said: list[str] = field(default_factory=list)
    exit_code: int = 0

    def run(self, argv: Sequence[str]) -> int:
        self.commands.append(list(argv))
        return self.exit_code

    def destroy(self, *, yes: bool = True, answer: str | None = None) -> int:
        return destroy.destroy(
            STACK,
            REGION,
            cloudformation=self.cloudformation,
            s3=self.s3,
            sam="sam",
            yes=yes,
            ask=lambda prompt: answer,
            run=self.run,
            say=self.said.append,
            template=load_template(),
        )

    def versions(self, logical_id: str) -> list[tuple[str, bool]]:
        answer = self.s3.list_object_versions(Bucket=self.buckets[logical_id])
        return [(v["Key"], False) for v in answer.get("Versions", [])] + [
            (m["Key"], True) for m in answer.get("DeleteMarkers", [])
        ]


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws():
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        s3 = boto3.client("s3", region_name=REGION)
        cloudformation.create_stack(StackName=STACK, TemplateBody=json.dumps(STAND_IN))
        resources = cloudformation.describe_stack_resources(StackName=STACK)["StackResources"]
        ids = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources}
        buckets = {name: ids[name] for name in ("SiteBucket", "DataBucket")}
        site = buckets["SiteBucket"]
        s3.put_bucket_versioning(Bucket=site, VersioningConfiguration={"Status": "Enabled"})
        for body in (b"v1", b"v2"):
            s3.put_object(Bucket=site, Key="index.html", Body=body)
        s3.put_object(Bucket=site, Key="js/app.js", Body=b"x")
        s3.delete_object(Bucket=site, Key="js/app.js")  # leaves a delete marker
        s3.put_object(Bucket=buckets["DataBucket"], Key="results/t1.json", Body=b"{}")
        yield World(cloudformation, s3, buckets, ids["TasksTable"])


def test_destroy_empties_every_version_of_the_site_bucket_then_runs_sam_delete(
    world: World,
) -> None:
    assert len(world.versions("SiteBucket")) == 4

    code = world.destroy()

    assert code == 0
    assert world.versions("SiteBucket") == []
    assert world.commands == [
        ["sam", "delete", "--stack-name", STACK, "--region", REGION, "--no-prompts"]
    ]
    assert world.said[0] == f"destroy: emptied SiteBucket {world.buckets['SiteBucket']}: 4 objects"


def test_the_data_survives_and_the_commands_to_delete_it_are_said(world: World) -> None:
    world.destroy()

    data = world.buckets["DataBucket"]
    assert world.versions("DataBucket") == [("results/t1.json", False)]
    assert world.said[1] == "destroy: kept on purpose (user data); to delete them for good:"
    assert world.said[2:] == [
        f"  DataBucket (AWS::S3::Bucket) {data}\n    aws s3 rb --region {REGION} s3://{data} --force",
        f"  TasksTable (AWS::DynamoDB::Table) {world.table}\n"
        f"    aws dynamodb delete-table --region {REGION} --table-name {world.table}",
    ]


def test_typing_the_stack_name_confirms(world: World) -> None:
    code = world.destroy(yes=False, answer=f"{STACK}\n")

    assert code == 0
    assert world.versions("SiteBucket") == []
    assert len(world.commands) == 1


def test_any_other_answer_changes_nothing(world: World) -> None:
    code = world.destroy(yes=False, answer="y\n")

    assert code == 1
    assert len(world.versions("SiteBucket")) == 4
    assert world.commands == []
    assert world.said == ["destroy: not confirmed; nothing was changed"]


def test_without_a_terminal_destroy_needs_yes(world: World) -> None:
    with pytest.raises(destroy.DestroyError, match="make destroy YES=1"):
        world.destroy(yes=False, answer=None)

    assert len(world.versions("SiteBucket")) == 4
    assert world.commands == []


def test_a_failed_sam_delete_is_reported_and_lists_no_survivors(world: World) -> None:
    world.exit_code = 3

    code = world.destroy()

    assert code == 3
    assert world.said[-1] == "destroy: sam delete failed (3); the stack may still be there"


def test_an_unknown_stack_stops_before_anything(world: World) -> None:
    world.cloudformation.delete_stack(StackName=STACK)

    with pytest.raises(destroy.DestroyError, match=f"there is no stack {STACK}"):
        world.destroy()

    assert world.commands == []


def test_an_unversioned_bucket_is_emptied_too(world: World) -> None:
    data = world.buckets["DataBucket"]
    world.s3.put_object(Bucket=data, Key="uploads/a.csv", Body=b"a")

    deleted = destroy.empty_bucket(world.s3, data)

    assert deleted == 2
    assert world.s3.list_objects_v2(Bucket=data).get("KeyCount") == 0
    assert destroy.empty_bucket(world.s3, "no-such-bucket-anywhere") == 0
