"""deploy/site.py against moto: the site bucket's objects, their headers, config.js, stale
objects removed, the CloudFront invalidation. The stack outputs are injected (no CloudFormation
stack); the DescribeStacks parsing is checked with botocore's Stubber.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from deploy import site
from deploy.samconfig import stack_and_region

REGION = "us-east-1"
BUCKET = "taskqueue-dev-sitebucket-abc123"
POOL = "eu-west-1_AbCdEf123"


@dataclass
class World:
    s3: Any
    cloudfront: Any
    distribution_id: str
    outputs: dict[str, str]


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        cloudfront = boto3.client("cloudfront", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        distribution = cloudfront.create_distribution(
            DistributionConfig={
                "CallerReference": "test",
                "Comment": "site",
                "Enabled": True,
                "DefaultRootObject": "index.html",
                "Origins": {
                    "Quantity": 1,
                    "Items": [
                        {
                            "Id": "SiteBucketOrigin",
                            "DomainName": f"{BUCKET}.s3.{REGION}.amazonaws.com",
                            "S3OriginConfig": {"OriginAccessIdentity": ""},
                        }
                    ],
                },
                "DefaultCacheBehavior": {
                    "TargetOriginId": "SiteBucketOrigin",
                    "ViewerProtocolPolicy": "redirect-to-https",
                    "MinTTL": 0,
                    "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
                },
            }
        )
        distribution_id = distribution["Distribution"]["Id"]
        outputs = {
            "ApiUrl": "https://abc123.execute-api.us-east-1.amazonaws.com/",
            "SiteUrl": "https://d111.cloudfront.net",
            "SiteBucketName": BUCKET,
            "SiteDistributionId": distribution_id,
            "UserPoolId": POOL,
            "UserPoolClientId": "client123",
        }
        yield World(s3, cloudfront, distribution_id, outputs)


def objects(world: World) -> dict[str, dict[str, Any]]:
    listed = world.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {item["Key"]: world.s3.get_object(Bucket=BUCKET, Key=item["Key"]) for item in listed}


def publish(world: World, site_dir: Path = site.SITE_DIR, **kwargs: Any) -> site.DeployReport:
    return site.publish(
        world.outputs,
        s3=world.s3,
        cloudfront=world.cloudfront,
        region=REGION,
        site_dir=site_dir,
        **kwargs,
    )


def read_config(text: str) -> dict[str, Any]:
    match = re.search(r"window\.TASKQUEUE_CONFIG = (\{.*\});\s*$", text, re.S)
    assert match, text
    config: dict[str, Any] = json.loads(match.group(1))
    return config


# ------------------------------------------------------------------------------- publish


def test_every_site_file_is_uploaded_with_config_js(world: World) -> None:
    expected = {
        path.relative_to(site.SITE_DIR).as_posix()
        for path in site.SITE_DIR.rglob("*")
        if path.is_file()
    } - {"config.example.js"}

    report = publish(world)

    stored = objects(world)
    assert set(stored) == expected | {"config.js"}
    assert {"index.html", "css/app.css", "js/app.js", "js/api.js"} <= set(stored)
    assert stored["js/app.js"]["Body"].read() == (site.SITE_DIR / "js/app.js").read_bytes()
    # Entry points last: a new index.html never names an asset not uploaded yet.
    assert report.uploaded[-2:] == ["config.js", "index.html"]


def test_content_types_and_cache_headers(world: World) -> None:
    publish(world)

    stored = objects(world)
    assert stored["index.html"]["ContentType"] == "text/html; charset=utf-8"
    assert stored["config.js"]["ContentType"] == "text/javascript; charset=utf-8"
    assert stored["js/app.js"]["ContentType"] == "text/javascript; charset=utf-8"
    assert stored["css/app.css"]["ContentType"] == "text/css; charset=utf-8"
    assert stored["index.html"]["CacheControl"] == "no-cache"
    assert stored["config.js"]["CacheControl"] == "no-cache"
    for key in ("js/app.js", "js/list.js", "css/app.css"):
        assert stored[key]["CacheControl"] == "public, max-age=300, must-revalidate", key


def test_config_js_comes_from_the_outputs(world: World) -> None:
    publish(world, cognito_domain="taskqueue-dev")

    text = objects(world)["config.js"]["Body"].read().decode()

    assert read_config(text) == {
        "apiBaseUrl": "https://abc123.execute-api.us-east-1.amazonaws.com",
        "cognito": {
            "region": "eu-west-1",
            "userPoolId": POOL,
            "clientId": "client123",
            "domain": "taskqueue-dev.auth.eu-west-1.amazoncognito.com",
            "redirectUri": "https://d111.cloudfront.net/",
            "logoutUri": "https://d111.cloudfront.net/",
        },
    }


def test_config_js_without_a_domain_or_a_pool(world: World) -> None:
    without_pool = {k: v for k, v in world.outputs.items() if not k.startswith("UserPool")}

    with_pool = site.site_config(world.outputs, REGION)
    no_pool = site.site_config(without_pool, REGION)
    domain_output = site.site_config(
        {**world.outputs, "UserPoolDomain": "login.example.com"}, REGION
    )

    assert "domain" not in with_pool["cognito"]
    assert no_pool == {"apiBaseUrl": "https://abc123.execute-api.us-east-1.amazonaws.com"}
    assert domain_output["cognito"]["domain"] == "login.example.com"


def test_the_page_sends_the_site_root_as_redirect_and_logout_uri(world: World) -> None:
    """Whether the page was opened at / or /index.html, Cognito gets one address, which the
    template lists as a callback URL (tests/integration/test_deploy_rehearsal.py)."""
    custom_domain = {**world.outputs, "SiteUrl": "https://tasks.acme.internal/"}
    without_site_url = {k: v for k, v in world.outputs.items() if k != "SiteUrl"}

    cognito = site.site_config(custom_domain, REGION)["cognito"]
    fallback = site.site_config(without_site_url, REGION)["cognito"]

    assert cognito["redirectUri"] == "https://tasks.acme.internal/"
    assert cognito["logoutUri"] == "https://tasks.acme.internal/"
    # Without the output the page falls back to its own address (auth.js).
    assert "redirectUri" not in fallback and "logoutUri" not in fallback


def test_config_js_names_the_websocket_url_when_the_stack_has_one(world: World) -> None:
    wss = "wss://ws456.execute-api.us-east-1.amazonaws.com/live"

    pushed = site.site_config({**world.outputs, "WebSocketUrl": f"{wss}/"}, REGION)
    polled = site.site_config(world.outputs, REGION)

    assert pushed["websocketUrl"] == wss
    assert "websocketUrl" not in polled


def test_stale_objects_are_deleted_and_local_config_is_not_published(
    world: World, tmp_path: Path
) -> None:
    site_dir = tmp_path / "site"
    (site_dir / "js").mkdir(parents=True)
    (site_dir / "index.html").write_text("<!doctype html><title>t</title>")
    (site_dir / "js" / "app.js").write_text("export {};")
    (site_dir / "config.js").write_text("window.TASKQUEUE_CONFIG = {apiBaseUrl: 'local'};")
    (site_dir / ".DS_Store").write_bytes(b"\0")
    for key in ("js/old-module.js", "css/app.css", "index.html"):
        world.s3.put_object(Bucket=BUCKET, Key=key, Body=b"old")

    report = publish(world, site_dir=site_dir)

    stored = objects(world)
    assert set(stored) == {"index.html", "js/app.js", "config.js"}
    assert sorted(report.deleted) == ["css/app.css", "js/old-module.js"]
    assert stored["index.html"]["Body"].read() == b"<!doctype html><title>t</title>"
    assert "local" not in stored["config.js"]["Body"].read().decode()


def test_a_cloudfront_invalidation_of_everything_is_created(world: World) -> None:
    report = publish(world)

    listed = world.cloudfront.list_invalidations(DistributionId=world.distribution_id)
    items = listed["InvalidationList"].get("Items", [])
    invalidation = world.cloudfront.get_invalidation(
        DistributionId=world.distribution_id, Id=report.invalidation_id
    )["Invalidation"]

    assert [item["Id"] for item in items] == [report.invalidation_id]
    assert invalidation["InvalidationBatch"]["Paths"]["Items"] == ["/*"]


def test_missing_outputs_stop_before_any_upload(world: World) -> None:
    world.outputs.pop("SiteDistributionId")

    with pytest.raises(site.DeployError, match="SiteDistributionId"):
        publish(world)

    assert objects(world) == {}


# ------------------------------------------------------------------------------- outputs


def test_stack_outputs_are_read_with_describe_stacks() -> None:
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    answer = {
        "Stacks": [
            {
                "StackName": "taskqueue-dev",
                "CreationTime": "2026-01-01T00:00:00Z",
                "StackStatus": "UPDATE_COMPLETE",
                "Outputs": [
                    {"OutputKey": "ApiUrl", "OutputValue": "https://api.example.com"},
                    {"OutputKey": "SiteBucketName", "OutputValue": BUCKET},
                ],
            }
        ]
    }
    with Stubber(cloudformation) as stub:
        stub.add_response("describe_stacks", answer, {"StackName": "taskqueue-dev"})
        outputs = site.stack_outputs(cloudformation, "taskqueue-dev")

    assert outputs == {"ApiUrl": "https://api.example.com", "SiteBucketName": BUCKET}


def test_samconfig_names_the_stack_of_each_environment() -> None:
    assert stack_and_region("dev") == ("taskqueue-dev", "us-east-1")
    assert stack_and_region("prod") == ("taskqueue-prod", "us-east-1")


def test_the_command_reads_the_stack_and_publishes(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    # A stand-in stack whose outputs are the moto bucket and distribution.
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {key: {"Value": value} for key, value in world.outputs.items()},
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName="taskqueue-dev", TemplateBody=json.dumps(template)
    )

    code = site.main(["--stack", "taskqueue-dev", "--region", REGION])

    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "no Cognito domain" in captured.err
    assert "invalidation" in captured.out
    assert f"admin-create-user --region {REGION} --user-pool-id {POOL}" in captured.out
    config = read_config(objects(world)["config.js"]["Body"].read().decode())
    assert config["cognito"]["userPoolId"] == POOL
