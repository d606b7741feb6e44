"""Deploy rehearsal: `make deploy` as far as it goes without an AWS account, then the template
CloudFormation would be given, checked for each thing that broke or misled a first deploy.

The steps, offline:

1. the first deploy's parameters, through deploy/parameters.py with samconfig.toml's [dev]
   values and scripted answers (what an operator types);
2. `sam package`, where the SAM CLI is installed (`make validate` installs it): SAM zips the
   code and uploads it to an S3 bucket of a local moto server, and writes the template that
   `sam deploy` would send. Packaged are template.yaml and, when `make build` has run and its
   output still has the template's resources, the built template too. Without SAM CLI only
   the in-process variant runs (template.yaml as written);
3. the SAM transform (samtranslator, the code CloudFormation runs for `Transform:`) with the
   parameter values, then the intrinsics evaluated with stand-in names for what only AWS
   knows (the distribution's domain name, ARNs).

Checked on each variant: no parameter CloudFormation would ask for is left without a value
and no default is a placeholder; every alarm notifies the alerts topic on ALARM and OK; the
alarm address is subscribed when given; the dashboard is valid JSON and shows every alarm;
data is kept on stack deletion but not after a failed create, and everything else goes with
the stack (the site bucket emptied by make destroy); Cognito accepts the redirect and logout
URI the page sends; CORS allows the page's origin with no second deploy; the TLS policy is set
only where CloudFront applies it; each dead-letter queue keeps messages longer than its
source; the packaged template names only uploaded S3 artifacts, and no deploy file names a
path of one machine; cfn-lint finds nothing with the first deploy's values.

Not proven here (it needs an AWS account): that CloudFormation creates every resource (service
quotas, names taken, the Cognito domain prefix, the ACM certificate's validity), that SES,
SNS e-mail confirmation and CloudFront behave as documented, and that the built layer imports
on the Lambda runtime.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from deploy import destroy, parameters, site
from deploy.samconfig import parameter_overrides
from devstack.resources import (
    REPO_ROOT,
    LocalResources,
    load_template,
    template_resolver,
    transform_template,
)
from taskqueue_client.auth import CALLBACK_PATH, LOGIN_PORT

Template = dict[str, Any]

SAM = REPO_ROOT / ".tools" / "sam" / "bin" / "sam"
BUILT = REPO_ROOT / ".aws-sam" / "build" / "template.yaml"
ARTIFACTS_BUCKET = "rehearsal-artifacts"
DISTRIBUTION = "d111111abcdef8.cloudfront.net"
SENDER = "tasks@mail.acme.internal"
OPS = "ops@acme.internal"
DOMAIN = "tasks.acme.internal"
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
# What an operator answers at the first deploy's questions, by situation.
ANSWERS = {
    "first deploy": {},
    "custom domain": {"SiteDomain": DOMAIN, "SiteCertificateArn": CERTIFICATE},
    "origin given": {"AllowedOrigin": "https://console.acme.internal"},
    "no alarm e-mail": {"AlarmEmail": ""},
}
# Files that build, deploy or describe a deploy: none may name a path of one machine.
DEPLOY_FILES = ("Makefile", "samconfig.toml", "template.yaml", ".ci/run", "docs/deploy.md")
MACHINE_PATH = re.compile(r"(/root/|/home/|/Users/|\.pyenv/versions|[A-Za-z]:\\\\)")
SQS_DEFAULT_RETENTION = 345600  # 4 days, when MessageRetentionPeriod is not set


# ------------------------------------------------------------------------------- step 1


def first_deploy_values(situation: str) -> dict[str, str]:
    """deploy/parameters.py's answer for a first deploy of [dev], as make deploy writes it."""
    given = dict(ANSWERS[situation])
    typed = iter([SENDER, OPS])
    values = parameters.resolve(
        parameters.load_parameters(),
        parameters.Stack(None, {}),
        parameter_overrides("dev"),
        given,
        lambda prompt: next(typed),
        lambda line: None,
    )
    return values


# ------------------------------------------------------------------------------- step 2


@dataclass
class Packaged:
    template: Template
    artifacts: dict[str, int]  # S3 URI -> size of the uploaded object


def sam_package(template_path: Path, out: Path) -> Packaged:
    """`sam package` against a moto server standing in for S3."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket=ARTIFACTS_BUCKET)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL=endpoint,  # every AWS call of the SAM CLI goes to moto
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
            SAM_CLI_TELEMETRY="0",
        )
        command = [str(SAM), "package", "--template-file", str(template_path), "--region"]
        command += ["us-east-1", "--s3-bucket", ARTIFACTS_BUCKET, "--output-template-file"]
        done = subprocess.run(
            [*command, str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        listed = s3.list_objects_v2(Bucket=ARTIFACTS_BUCKET).get("Contents", [])
        artifacts = {f"s3://{ARTIFACTS_BUCKET}/{o['Key']}": o["Size"] for o in listed}
    finally:
        server.stop()
    return Packaged(load_template(out), artifacts)


# ------------------------------------------------------------------------------- step 3


@dataclass
class StandIn(LocalResources):
    """What only AWS knows, made up: the distribution's domain name; any other attribute is
    "<LogicalId>.<Attribute>", which the checks can recognise."""

    def get_att(self, logical_id: str, attribute: str) -> str:
        if (logical_id, attribute) == ("SiteDistribution", "DomainName"):
            return DISTRIBUTION
        return f"{logical_id}.{attribute}"


@dataclass
class Deploy:
    """One situation of one variant: the CloudFormation template and its evaluation."""

    values: dict[str, str]
    template: Template

    def __post_init__(self) -> None:
        declared = self.template.get("Parameters", {})
        defaults = {k: str(v["Default"]) for k, v in declared.items() if "Default" in v}
        stand_in = StandIn(prefix="taskqueue-dev", parameters={**defaults, **self.values})
        self._resolver = template_resolver(self.template, stand_in)

    def resolve(self, value: Any) -> Any:
        return self._resolver.resolve(value)

    def condition(self, name: str) -> bool:
        return self._resolver.condition(name)

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return {
            name: resource
            for name, resource in self.template["Resources"].items()
            if resource["Type"] == kind
        }

    def properties(self, name: str) -> dict[str, Any]:
        resolved: dict[str, Any] = self.resolve(self.template["Resources"][name]["Properties"])
        return resolved

    @property
    def site_url(self) -> str:
        return str(self.resolve(self.template["Outputs"]["SiteUrl"]["Value"]))


@dataclass
class Rehearsal:
    """One variant: template.yaml in-process, or a `sam package` output."""

    name: str
    sam_template: Template
    artifacts: dict[str, int] | None = None  # None: not packaged
    _deploys: dict[str, Deploy] = field(default_factory=dict)

    def deploy(self, situation: str = "first deploy") -> Deploy:
        if situation not in self._deploys:
            values = first_deploy_values(situation)
            transformed = transform_template(self.sam_template, parameters=values)
            self._deploys[situation] = Deploy(values, transformed)
        return self._deploys[situation]


def _built_template_is_current(source: Template) -> bool:
    if not BUILT.exists():
        return False
    return set(load_template(BUILT)["Resources"]) == set(source["Resources"])


@pytest.fixture(scope="session", params=["in-process", "sam package", "sam build + package"])
def rehearsal(
    request: pytest.FixtureRequest, sam_template: Template, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rehearsal]:
    variant = request.param
    if variant == "in-process":
        yield Rehearsal(variant, sam_template)
        return
    if not SAM.exists():
        pytest.skip("SAM CLI is not installed (make validate installs it)")
    source = Path(request.config.rootpath) / "template.yaml"
    if variant == "sam build + package":
        if not _built_template_is_current(sam_template):
            pytest.skip("no current sam build output (make build)")
        source = BUILT
    packaged = sam_package(source, tmp_path_factory.mktemp("package") / "packaged.yaml")
    yield Rehearsal(variant, packaged.template, packaged.artifacts)


# ------------------------------------------------------------------------------- parameters


def test_the_first_deploy_gives_every_parameter_cloudformation_needs(
    rehearsal: Rehearsal,
) -> None:
    declared = parameters.template_parameters(rehearsal.sam_template)
    values = rehearsal.deploy().values

    without_default = {name for name, p in declared.items() if p.default is None}
    assert "EmailSender" in without_default, "the SES sender must never have a placeholder"
    assert without_default <= set(values)
    assert values["EmailSender"] == SENDER and values["AlarmEmail"] == OPS
    assert {n: p.problem(values[n]) for n, p in declared.items() if n in values} == {
        n: None for n in declared if n in values
    }
    # A default that CloudFormation or SES would refuse (an example address) cannot return.
    assert {n: p.problem(p.default) for n, p in declared.items() if p.default is not None} == {
        n: None for n, p in declared.items() if p.default is not None
    }


# ------------------------------------------------------------------------------- alerts


def test_every_alarm_notifies_the_alerts_topic_on_alarm_and_back_to_ok(
    rehearsal: Rehearsal,
) -> None:
    deploy = rehearsal.deploy()
    topics = set(deploy.resources("AWS::SNS::Topic"))
    alarms = deploy.resources("AWS::CloudWatch::Alarm")

    assert len(alarms) >= 7
    for name, alarm in alarms.items():
        for actions in ("AlarmActions", "OKActions"):
            targets = alarm["Properties"].get(actions, [])
            assert {"Ref": "AlertsTopic"} in targets, f"{name} has no {actions} to AlertsTopic"
            assert all(target.get("Ref") in topics for target in targets), (name, targets)


@pytest.mark.parametrize(
    ("situation", "subscribed"), [("first deploy", True), ("no alarm e-mail", False)]
)
def test_the_alarm_address_is_subscribed_only_when_given(
    rehearsal: Rehearsal, situation: str, subscribed: bool
) -> None:
    deploy = rehearsal.deploy(situation)
    subscriptions = deploy.resources("AWS::SNS::Subscription")

    (name, subscription), *others = subscriptions.items()
    assert others == []
    assert deploy.condition(subscription["Condition"]) is subscribed
    assert deploy.properties(name) == {
        "TopicArn": "taskqueue-dev-AlertsTopic",
        "Protocol": "email",
        "Endpoint": deploy.values["AlarmEmail"],
    }


def test_the_dashboard_is_valid_json_showing_every_alarm(rehearsal: Rehearsal) -> None:
    deploy = rehearsal.deploy()
    (name,) = deploy.resources("AWS::CloudWatch::Dashboard")

    body = json.loads(deploy.properties(name)["DashboardBody"])

    shown = {
        arn for w in body["widgets"] if w["type"] == "alarm" for arn in w["properties"]["alarms"]
    }
    alarms = {f"{alarm}.Arn" for alarm in deploy.resources("AWS::CloudWatch::Alarm")}
    assert shown == alarms
    metrics = {
        m[1] for w in body["widgets"] if w["type"] == "metric" for m in w["properties"]["metrics"]
    }
    assert {"TasksSubmitted", "TasksFailed", "TasksDeadLettered", "ChunkDuration"} <= metrics
    assert {"ApproximateAgeOfOldestMessage", "IteratorAge", "Errors", "Throttles", "5xx"} <= metrics


@pytest.mark.parametrize("queue", ["TaskQueue", "HighPriorityQueue", "PartsQueue"])
def test_each_task_queue_has_an_age_alarm_and_its_age_on_the_dashboard(
    rehearsal: Rehearsal, queue: str
) -> None:
    # Given the deployed template
    deploy = rehearsal.deploy()
    name = f"{queue}.QueueName"  # the stand-in's queue name
    # When its alarms and its dashboard's metrics are read
    alarms = [deploy.properties(alarm) for alarm in deploy.resources("AWS::CloudWatch::Alarm")]
    ages = [
        alarm
        for alarm in alarms
        if alarm["MetricName"] == "ApproximateAgeOfOldestMessage"
        and alarm["Dimensions"] == [{"Name": "QueueName", "Value": name}]
    ]
    (dashboard,) = deploy.resources("AWS::CloudWatch::Dashboard")
    body = json.loads(deploy.properties(dashboard)["DashboardBody"])
    shown = [
        metric[:4]
        for widget in body["widgets"]
        if widget["type"] == "metric"
        for metric in widget["properties"]["metrics"]
    ]
    # Then one alarm watches the queue's oldest message (30 minutes at most, the 900 s of a
    # backing-off message included), and the dashboard plots that age
    assert [alarm["Threshold"] <= 1800 for alarm in ages] == [True]
    assert ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", name] in shown


# ------------------------------------------------------------------------------- lifecycle


def test_data_outlives_the_stack_but_not_a_failed_create(rehearsal: Rehearsal) -> None:
    resources = rehearsal.deploy().template["Resources"]
    data_types = {"AWS::DynamoDB::Table", "AWS::Cognito::UserPool", "AWS::S3::Bucket"}

    policies = {
        name: (r.get("DeletionPolicy", "Delete"), r.get("UpdateReplacePolicy", "Delete"))
        for name, r in resources.items()
    }
    kept = {name for name, (deletion, _) in policies.items() if deletion != "Delete"}
    buckets = {name for name, r in resources.items() if r["Type"] == "AWS::S3::Bucket"}

    # Plain Retain leaves orphans behind a failed first create: never.
    assert {policies[name] for name in kept} == {("RetainExceptOnCreate", "Retain")}
    assert {name for name in resources if resources[name]["Type"] in data_types} - kept == set(
        destroy.EMPTIED_BUCKETS
    )
    # The buckets that go with the stack are exactly those make destroy empties first.
    assert buckets - kept == set(destroy.EMPTIED_BUCKETS)
    assert kept == destroy.retained_logical_ids(rehearsal.deploy().template)


def test_a_failed_first_create_deletes_the_stack_in_every_environment() -> None:
    config = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text(encoding="utf-8"))

    failure_modes = {
        env: sections.get("deploy", {}).get("parameters", {}).get("on_failure")
        for env, sections in config.items()
        if isinstance(sections, dict)
    }

    assert failure_modes == {"default": "DELETE", "dev": "DELETE", "prod": "DELETE"}


# ------------------------------------------------------------------------------- the page


@pytest.mark.parametrize("situation", ["first deploy", "custom domain"])
def test_cognito_accepts_the_redirect_and_logout_uri_the_page_sends(
    rehearsal: Rehearsal, situation: str
) -> None:
    deploy = rehearsal.deploy(situation)
    client = deploy.properties("UserPoolClient")
    outputs = {
        "ApiUrl": "https://api.acme.internal",
        "SiteBucketName": "site",
        "SiteDistributionId": "E1",
        "UserPoolId": "us-east-1_AbC",
        "UserPoolClientId": "client",
        "SiteUrl": deploy.site_url,
    }

    cognito = site.site_config(outputs, "us-east-1")["cognito"]

    expected = "https://" + (DOMAIN if situation == "custom domain" else DISTRIBUTION)
    assert deploy.site_url == expected
    # The page's two, then the loopback URL `tq login` listens on (taskqueue_client.auth).
    assert client["CallbackURLs"] == [
        f"{expected}/",
        f"{expected}/index.html",
        f"http://localhost:{LOGIN_PORT}{CALLBACK_PATH}",
    ]
    assert client["LogoutURLs"] == [f"{expected}/", f"{expected}/index.html"]
    assert cognito["redirectUri"] in client["CallbackURLs"]
    assert cognito["logoutUri"] in client["LogoutURLs"]


@pytest.mark.parametrize(
    ("situation", "origin"),
    [
        ("first deploy", f"https://{DISTRIBUTION}"),
        ("custom domain", f"https://{DOMAIN}"),
        ("origin given", "https://console.acme.internal"),
    ],
)
def test_cors_allows_the_pages_origin_without_a_second_deploy(
    rehearsal: Rehearsal, situation: str, origin: str
) -> None:
    deploy = rehearsal.deploy(situation)
    api_cors = deploy.properties("HttpApi")["Body"]["x-amazon-apigateway-cors"]
    bucket_rules = deploy.properties("DataBucket")["CorsConfiguration"]["CorsRules"]
    functions = deploy.resources("AWS::Lambda::Function")

    assert api_cors["allowOrigins"] == [origin]
    assert [rule["AllowedOrigins"] for rule in bucket_rules] == [[origin]]
    for name in functions:
        assert deploy.properties(name)["Environment"]["Variables"]["CORS_ALLOW_ORIGIN"] == origin


@pytest.mark.parametrize("situation", ["first deploy", "custom domain"])
def test_the_tls_policy_is_set_only_where_cloudfront_applies_it(
    rehearsal: Rehearsal, situation: str
) -> None:
    config = rehearsal.deploy(situation).properties("SiteDistribution")["DistributionConfig"]

    if situation == "custom domain":
        assert config["Aliases"] == [DOMAIN]
        assert config["ViewerCertificate"] == {
            "AcmCertificateArn": CERTIFICATE,
            "SslSupportMethod": "sni-only",
            "MinimumProtocolVersion": "TLSv1.2_2021",
        }
    else:
        # The default certificate's policy is CloudFront's own; a setting would mislead.
        assert "Aliases" not in config
        assert config["ViewerCertificate"] == {"CloudFrontDefaultCertificate": True}


# ------------------------------------------------------------------------------- queues


def test_every_dead_letter_queue_outlives_its_source_queue(rehearsal: Rehearsal) -> None:
    deploy = rehearsal.deploy()
    queues = {name: deploy.properties(name) for name in deploy.resources("AWS::SQS::Queue")}

    def retention(name: str) -> int:
        return int(queues[name].get("MessageRetentionPeriod", SQS_DEFAULT_RETENTION))

    redrives = {
        source: props["RedrivePolicy"]["deadLetterTargetArn"].removesuffix(".Arn")
        for source, props in queues.items()
        if "RedrivePolicy" in props
    }
    assert len(redrives) >= 2
    shorter = {
        s: (retention(s), retention(d)) for s, d in redrives.items() if retention(d) <= retention(s)
    }
    assert shorter == {}, "a DLQ keeps messages by their original enqueue time"


# ------------------------------------------------------------------------------- no local paths


def test_the_packaged_template_names_only_uploaded_artifacts(rehearsal: Rehearsal) -> None:
    if rehearsal.artifacts is None:
        pytest.skip("not packaged (SAM CLI not installed)")
    uris = {
        name: r["Properties"].get("CodeUri") or r["Properties"].get("ContentUri")
        for name, r in rehearsal.sam_template["Resources"].items()
        if r["Type"] in ("AWS::Serverless::Function", "AWS::Serverless::LayerVersion")
    }

    assert (
        uris and {name: uri for name, uri in uris.items() if uri not in rehearsal.artifacts} == {}
    )
    assert all(rehearsal.artifacts[uri] > 0 for uri in uris.values())
    assert MACHINE_PATH.search(json.dumps(rehearsal.sam_template)) is None


def test_no_deploy_file_names_a_path_of_one_machine() -> None:
    files = [REPO_ROOT / name for name in DEPLOY_FILES] + sorted(
        (REPO_ROOT / "deploy").glob("*.py")
    )

    found = {
        str(path.relative_to(REPO_ROOT)): match.group(0)
        for path in files
        if path.exists() and (match := MACHINE_PATH.search(path.read_text(encoding="utf-8")))
    }

    assert found == {}
    assert "PY312_DIR" not in (REPO_ROOT / "Makefile").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------- cfn-lint


@pytest.mark.parametrize("situation", ["first deploy", "custom domain"])
def test_cfn_lint_finds_nothing_with_the_first_deploys_values(
    rehearsal: Rehearsal, situation: str
) -> None:
    from cfnlint.api import lint

    if rehearsal.artifacts is not None:
        # The packaged template differs only in its code locations (checked above).
        pytest.skip("linted in-process; a lint run costs seconds")
    template = rehearsal.deploy(situation).template
    matches = lint(json.dumps(template), regions=["us-east-1"])

    assert [f"{m.rule.id} {m.message}" for m in matches if not m.rule.id.startswith("I")] == []
