"""`make destroy`: empty the site bucket, then delete the stack with `sam delete`.

    python -m deploy.destroy --stack S --region R --sam .tools/sam/bin/sam [--yes]

1. The stack's resources (DescribeStackResources): the buckets to empty and what survives.
2. Confirmation: the stack's name, typed (``--yes`` skips it; without a terminal it is needed).
3. Every object of the buckets in EMPTIED_BUCKETS is deleted, each version and delete marker
   too if the bucket is or was versioned: CloudFormation cannot delete a bucket that is not
   empty, and deploy/site.py filled this one after the stack was created.
4. ``sam delete --no-prompts``: the stack, and the artifacts sam deploy uploaded for it.
5. What the template retains on purpose (DeletionPolicy RetainExceptOnCreate: the table, the
   data bucket, the user pool) is listed with the commands that delete it for good.
"""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.console import Ask, Say, ask_terminal, say_stderr
from deploy.parameters import aws_problem, stack_missing

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
# Buckets of the stack that hold only copies (static_site/): emptied so the stack can go.
EMPTIED_BUCKETS = ("SiteBucket",)
RETAINED = frozenset({"Retain", "RetainExceptOnCreate", "Snapshot"})
# How to delete a retained resource for good, by CloudFormation type ({id}: physical id).
FOR_GOOD = {
    "AWS::DynamoDB::Table": "aws dynamodb delete-table --region {region} --table-name {id}",
    "AWS::S3::Bucket": "aws s3 rb --region {region} s3://{id} --force",
    "AWS::Cognito::UserPool": "aws cognito-idp delete-user-pool --region {region} "
    "--user-pool-id {id}",
}

Run = Callable[[Sequence[str]], int]


class DestroyError(RuntimeError):
    """The stack is not deleted; the message says why."""


@dataclass
class Plan:
    """Physical ids of the stack's resources that destroy empties and that survive it."""

    emptied: dict[str, str] = field(default_factory=dict)  # logical id -> bucket name
    retained: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (type, physical)


def retained_logical_ids(template: Mapping[str, Any]) -> set[str]:
    """Resources whose DeletionPolicy keeps them when the stack is deleted."""
    return {
        name
        for name, resource in (template.get("Resources") or {}).items()
        if resource.get("DeletionPolicy") in RETAINED
    }


def plan(cloudformation: Any, stack: str, retained: set[str]) -> Plan:
    from botocore.exceptions import ClientError

    try:
        answer = cloudformation.describe_stack_resources(StackName=stack)
    except ClientError as error:
        if stack_missing(error):
            raise DestroyError(f"there is no stack {stack}") from error
        raise
    result = Plan()
    for resource in answer.get("StackResources") or []:
        logical, physical = resource["LogicalResourceId"], resource.get("PhysicalResourceId")
        if not physical or resource.get("ResourceStatus") == "DELETE_COMPLETE":
            continue
        if logical in EMPTIED_BUCKETS:
            result.emptied[logical] = physical
        elif logical in retained:
            result.retained[logical] = (resource["ResourceType"], physical)
    return result


def empty_bucket(s3: Any, bucket: str) -> int:
    """Deletes every object version and delete marker (an unversioned bucket's objects are
    its "null" versions); returns how many were deleted. A bucket already gone counts 0."""
    from botocore.exceptions import ClientError

    deleted = 0
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            batch = [
                {"Key": item["Key"], "VersionId": item["VersionId"]}
                for kind in ("Versions", "DeleteMarkers")
                for item in page.get(kind, [])
            ]
            for start in range(0, len(batch), 1000):
                chunk = batch[start : start + 1000]
                answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
                if answer.get("Errors"):
                    raise DestroyError(f"could not empty {bucket}: {answer['Errors'][:3]}")
                deleted += len(chunk)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "NoSuchBucket":
            return deleted
        raise
    return deleted


def confirmed(stack: str, region: str, ask: Ask, say: Say) -> bool:
    answer = ask(f"Delete stack {stack} in {region}? Type its name to confirm: ")
    if answer is None:
        raise DestroyError(
            "no terminal to confirm: run make destroy YES=1 to delete without asking"
        )
    if answer.strip() != stack:
        say("destroy: not confirmed; nothing was changed")
        return False
    return True


def sam_delete_command(sam: str, stack: str, region: str) -> list[str]:
    return [sam, "delete", "--stack-name", stack, "--region", region, "--no-prompts"]


def survivors(found: Plan, region: str) -> list[str]:
    lines = []
    for logical, (kind, physical) in sorted(found.retained.items()):
        command = FOR_GOOD.get(kind, "").format(region=region, id=physical)
        lines.append(f"  {logical} ({kind}) {physical}" + (f"\n    {command}" if command else ""))
    return lines


def destroy(
    stack: str,
    region: str,
    *,
    cloudformation: Any,
    s3: Any,
    sam: str,
    yes: bool,
    ask: Ask,
    run: Run,
    say: Say,
    template: Mapping[str, Any],
) -> int:
    """Steps 1 to 5; returns sam delete's exit code (1 if not confirmed)."""
    found = plan(cloudformation, stack, retained_logical_ids(template))
    if not yes and not confirmed(stack, region, ask, say):
        return 1
    for logical, bucket in found.emptied.items():
        say(f"destroy: emptied {logical} {bucket}: {empty_bucket(s3, bucket)} objects")
    code = run(sam_delete_command(sam, stack, region))
    if code != 0:
        say(f"destroy: sam delete failed ({code}); the stack may still be there")
        return code
    if found.retained:
        say("destroy: kept on purpose (user data); to delete them for good:")
        for line in survivors(found, region):
            say(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Empty the site bucket and delete the stack.")
    parser.add_argument("--stack", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--sam", required=True, help="the sam executable")
    parser.add_argument("--yes", action="store_true", help="delete without asking")
    args = parser.parse_args(argv)

    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from devstack.resources import load_template

    session = boto3.Session(region_name=args.region)
    try:
        return destroy(
            args.stack,
            args.region,
            cloudformation=session.client("cloudformation"),
            s3=session.client("s3"),
            sam=args.sam,
            yes=args.yes,
            ask=ask_terminal,
            run=lambda command: subprocess.run(list(command), check=False).returncode,
            say=say_stderr,
            template=load_template(TEMPLATE),
        )
    except DestroyError as error:
        say_stderr(f"destroy: {error}")
        return 1
    except (BotoCoreError, ClientError) as error:
        say_stderr(f"destroy: {aws_problem(error)}")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
