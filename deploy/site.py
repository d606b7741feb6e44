"""Publish the web page of a deployed stack: `config.js` from the stack's outputs, static_site/
to the site bucket, then a CloudFront invalidation.

    python -m deploy.site --stack taskqueue-dev [--region us-east-1] [--cognito-domain D]

Steps:

1. CloudFormation DescribeStacks -> the outputs ApiUrl, SiteBucketName, SiteDistributionId,
   UserPoolId, UserPoolClientId (and UserPoolDomain and WebSocketUrl when the template has them).
2. `config.js`: ``window.TASKQUEUE_CONFIG = {apiBaseUrl, websocketUrl?, cognito: {region,
   userPoolId, clientId, domain?, redirectUri?, logoutUri?}}``. The page's hosted-UI sign-in
   needs the Cognito domain: from the UserPoolDomain output or ``--cognito-domain``. The
   redirect and sign-out URI are the site's root (SiteUrl + "/"), one canonical address
   whichever path the page was opened at; the template lists it (and ``/index.html``) as
   callback URL. Without a websocketUrl the page polls instead of receiving pushed updates.
3. Upload every file of static_site/ with its Content-Type and Cache-Control; the assets
   first and index.html and config.js last, so a new index.html never points at a file that
   is not there yet. ``config.example.js`` and a local ``config.js`` are not uploaded.
4. Delete the objects of the bucket that are no longer part of the site.
5. Invalidate ``/*`` in the CloudFront distribution.

Cache-Control: the page has no build step, so its files keep their names from one deploy to
the next (``js/app.js`` imports ``./list.js`` by name). A long max-age is only safe for files
whose name changes with their content (hashed names): here a browser could combine a new
index.html with week-old modules. So index.html and config.js are ``no-cache`` (always
revalidated; a 304 costs little) and the other files get a short ``max-age=300,
must-revalidate``: at most five minutes of an old asset, then a cheap conditional request.
CloudFront's own copies are dropped by the invalidation.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SITE_DIR = ROOT / "static_site"

REQUIRED_OUTPUTS = ("ApiUrl", "SiteBucketName", "SiteDistributionId")
NO_CACHE = "no-cache"
ASSET_CACHE = "public, max-age=300, must-revalidate"
# Entry points: fetched first by the browser and naming the others, never cached without asking.
ENTRY_POINTS = frozenset({"index.html", "config.js"})
# Never published: the template of config.js, and a developer's local config.js (the
# generated one replaces it).
EXCLUDED = frozenset({"config.example.js", "config.js"})

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
}


class DeployError(RuntimeError):
    """Something the person deploying must fix (a missing output, an empty site)."""


# ------------------------------------------------------------------------------- outputs


def stack_outputs(cloudformation: Any, stack: str) -> dict[str, str]:
    """OutputKey -> OutputValue of `stack` (CloudFormation DescribeStacks)."""
    answer = cloudformation.describe_stacks(StackName=stack)
    stacks = answer.get("Stacks") or []
    if not stacks:
        raise DeployError(f"stack {stack} not found")
    return {
        output["OutputKey"]: output["OutputValue"]
        for output in stacks[0].get("Outputs") or []
        if "OutputKey" in output and "OutputValue" in output
    }


def site_config(
    outputs: Mapping[str, str], region: str, cognito_domain: str | None = None
) -> dict[str, Any]:
    """The page's window.TASKQUEUE_CONFIG from the stack outputs."""
    missing = [name for name in REQUIRED_OUTPUTS if not outputs.get(name)]
    if missing:
        raise DeployError(f"the stack has no output {', '.join(missing)}")
    config: dict[str, Any] = {"apiBaseUrl": outputs["ApiUrl"].rstrip("/")}
    if outputs.get("WebSocketUrl"):
        config["websocketUrl"] = outputs["WebSocketUrl"].rstrip("/")
    pool, client = outputs.get("UserPoolId"), outputs.get("UserPoolClientId")
    if pool and client:
        # A pool id is "<region>_<id>": the pool's region even if the stack's differs.
        pool_region = pool.split("_", 1)[0] if "_" in pool else region
        cognito: dict[str, str] = {"region": pool_region, "userPoolId": pool, "clientId": client}
        domain = cognito_domain or outputs.get("UserPoolDomain")
        if domain:
            if "." not in domain:  # a prefix: <prefix>.auth.<region>.amazoncognito.com
                domain = f"{domain}.auth.{pool_region}.amazoncognito.com"
            cognito["domain"] = domain
        if outputs.get("SiteUrl"):
            cognito["redirectUri"] = cognito["logoutUri"] = redirect_uri(outputs["SiteUrl"])
        config["cognito"] = cognito
    return config


def redirect_uri(site_url: str) -> str:
    """The one address the page sends Cognito as redirect_uri and logout_uri."""
    return site_url.rstrip("/") + "/"


def config_js(config: Mapping[str, Any]) -> str:
    body = json.dumps(config, indent=2, sort_keys=False)
    return (
        f"// Written by deploy/site.py from the stack outputs.\nwindow.TASKQUEUE_CONFIG = {body};\n"
    )


# ------------------------------------------------------------------------------- files


def content_type(key: str) -> str:
    suffix = Path(key).suffix.lower()
    if suffix in CONTENT_TYPES:
        return CONTENT_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(key)
    return guessed or "application/octet-stream"


def cache_control(key: str) -> str:
    return NO_CACHE if key in ENTRY_POINTS or key.endswith(".html") else ASSET_CACHE


@dataclass(frozen=True)
class SiteFile:
    key: str
    body: bytes

    @property
    def content_type(self) -> str:
        return content_type(self.key)

    @property
    def cache_control(self) -> str:
        return cache_control(self.key)


def site_files(site_dir: Path, config_text: str) -> list[SiteFile]:
    """The files to publish, in upload order: assets, then index.html and config.js."""
    files = []
    for path in sorted(site_dir.rglob("*")):
        relative = path.relative_to(site_dir)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        key = relative.as_posix()
        if key in EXCLUDED:
            continue
        files.append(SiteFile(key, path.read_bytes()))
    if not any(f.key == "index.html" for f in files):
        raise DeployError(f"{site_dir} has no index.html")
    files.append(SiteFile("config.js", config_text.encode()))
    return sorted(files, key=lambda f: (f.key in ENTRY_POINTS, f.key == "index.html", f.key))


# ------------------------------------------------------------------------------- AWS


@dataclass
class DeployReport:
    uploaded: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    invalidation_id: str | None = None


def upload(s3: Any, bucket: str, files: Iterable[SiteFile]) -> list[str]:
    keys = []
    for item in files:
        s3.put_object(
            Bucket=bucket,
            Key=item.key,
            Body=item.body,
            ContentType=item.content_type,
            CacheControl=item.cache_control,
        )
        keys.append(item.key)
    return keys


def delete_stale(s3: Any, bucket: str, keep: Iterable[str]) -> list[str]:
    """Deletes every object of `bucket` whose key is not in `keep`; returns their keys."""
    wanted = set(keep)
    stale = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        stale += [item["Key"] for item in page.get("Contents", []) if item["Key"] not in wanted]
    for start in range(0, len(stale), 1000):
        batch = [{"Key": key} for key in stale[start : start + 1000]]
        answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        if answer.get("Errors"):
            raise DeployError(f"could not delete stale objects: {answer['Errors']}")
    return stale


def invalidate(cloudfront: Any, distribution_id: str) -> str:
    answer = cloudfront.create_invalidation(
        DistributionId=distribution_id,
        InvalidationBatch={
            "Paths": {"Quantity": 1, "Items": ["/*"]},
            "CallerReference": f"deploy-site-{time.time_ns()}",
        },
    )
    return str(answer["Invalidation"]["Id"])


def publish(
    outputs: Mapping[str, str],
    *,
    s3: Any,
    cloudfront: Any,
    region: str,
    site_dir: Path = SITE_DIR,
    cognito_domain: str | None = None,
) -> DeployReport:
    """Steps 2 to 5 with the outputs given: what the tests call with moto clients."""
    config = site_config(outputs, region, cognito_domain)
    files = site_files(site_dir, config_js(config))
    bucket = outputs["SiteBucketName"]
    report = DeployReport()
    report.uploaded = upload(s3, bucket, files)
    report.deleted = delete_stale(s3, bucket, report.uploaded)
    report.invalidation_id = invalidate(cloudfront, outputs["SiteDistributionId"])
    return report


# ------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Publish static_site/ for a deployed stack.")
    parser.add_argument("--stack", required=True, help="CloudFormation stack name")
    parser.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    parser.add_argument("--site-dir", type=Path, default=SITE_DIR)
    parser.add_argument(
        "--cognito-domain",
        help="Cognito hosted UI domain (or its prefix) when the stack has no UserPoolDomain output",
    )
    args = parser.parse_args(argv)

    import boto3

    session = boto3.Session(region_name=args.region)
    region = session.region_name
    if not region:
        parser.error("no region: give --region or configure one (AWS_REGION)")
    try:
        outputs = stack_outputs(session.client("cloudformation"), args.stack)
        if outputs.get("UserPoolId") and not (args.cognito_domain or outputs.get("UserPoolDomain")):
            print(
                "deploy.site: warning: no Cognito domain (UserPoolDomain output or "
                "--cognito-domain): the page cannot sign users in, and the API needs a token",
                file=sys.stderr,
            )
        report = publish(
            outputs,
            s3=session.client("s3"),
            cloudfront=session.client("cloudfront"),
            region=region,
            site_dir=args.site_dir,
            cognito_domain=args.cognito_domain,
        )
    except DeployError as error:
        print(f"deploy.site: {error}", file=sys.stderr)
        return 1
    print(
        f"deploy.site: {len(report.uploaded)} files to s3://{outputs['SiteBucketName']}, "
        f"{len(report.deleted)} stale deleted, invalidation {report.invalidation_id}"
    )
    if outputs.get("SiteUrl"):
        print(f"deploy.site: {outputs['SiteUrl']}")
    if outputs.get("UserPoolId"):
        print(
            "deploy.site: sign-in needs a user: aws cognito-idp admin-create-user "
            f"--region {region} --user-pool-id {outputs['UserPoolId']} --username <e-mail> "
            "(docs/deploy.md, step 6)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
