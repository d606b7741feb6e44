"""template.yaml -> local resources: the one place where the SAM template becomes moto resources.

Tests (in-process ``mock_aws``) and the local stack (moto server) both build their table,
queues and buckets here, from the samtranslator output of template.yaml, so local and AWS
cannot drift. Also resolves a function's environment and SQS event sources the same way.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import yaml

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"  # moto's default account
# Local code paths are swapped for this bucket before transforming (samtranslator wants S3
# URIs); the key keeps the path so the local stack can find the code again.
LOCAL_CODE_BUCKET = "devstack-local-code"

Template = dict[str, Any]


# ------------------------------------------------------------------------------- loading


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that understands CloudFormation short tags (!Ref, !GetAtt, !Sub, ...)."""


def _construct_intrinsic(loader: _CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = tag_suffix  # the multi-constructor prefix "!" is already stripped
    key = name if name in ("Ref", "Condition") else f"Fn::{name}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if name == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {key: value}


_CfnLoader.add_multi_constructor("!", _construct_intrinsic)
# CloudFormation has no dates: keep "2012-10-17"-like scalars as strings.
_CfnLoader.add_constructor("tag:yaml.org,2002:timestamp", _CfnLoader.construct_yaml_str)


def load_template(path: str | Path = TEMPLATE_PATH) -> Template:
    """Read a CloudFormation/SAM YAML template into plain dicts (short tags become Fn::*)."""
    with open(path, encoding="utf-8") as stream:
        loaded = yaml.load(stream, Loader=_CfnLoader)
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} is not a template")
    return loaded


# ------------------------------------------------------------------------------- transform


class _NoNetworkPolicyLoader:
    """Stands in for samtranslator's ManagedPolicyLoader, which would call IAM."""

    def load(self) -> dict[str, str]:
        return {}


def _replace_local_code_uris(template: Template) -> None:
    def swap(properties: dict[str, Any], key: str) -> None:
        uri = properties.get(key)
        if isinstance(uri, str) and not uri.startswith("s3://"):
            properties[key] = f"s3://{LOCAL_CODE_BUCKET}/{uri.strip('/') or '.'}"

    swap(template.get("Globals", {}).get("Function", {}), "CodeUri")
    for resource in template.get("Resources", {}).values():
        properties = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::Serverless::Function":
            swap(properties, "CodeUri")
        elif resource.get("Type") == "AWS::Serverless::LayerVersion":
            swap(properties, "ContentUri")


def transform_template(
    template: Template,
    parameters: Mapping[str, str] | None = None,
    region: str = DEFAULT_REGION,
) -> Template:
    """SAM -> plain CloudFormation with samtranslator, offline (no IAM, no S3 uploads)."""
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator
    from samtranslator.utils.py27hash_fix import (
        to_py27_compatible_template,
        undo_mark_unicode_str_in_template,
    )

    fragment = copy.deepcopy(template)
    _replace_local_code_uris(fragment)
    parameter_values: dict[str, Any] = dict(parameters or {})
    to_py27_compatible_template(fragment, parameter_values)
    translator = Translator(None, Parser(), boto_session=boto3.Session(region_name=region))
    policy_loader = _NoNetworkPolicyLoader()
    transformed = translator.translate(
        fragment,
        parameter_values=parameter_values,
        get_managed_policy_map=policy_loader.load,
    )
    result: Template = undo_mark_unicode_str_in_template(transformed)
    return result


def _ensure_transformed(template: Template) -> Template:
    return transform_template(template) if "Transform" in template else template


# ------------------------------------------------------------------------------- resources


@dataclass(frozen=True)
class AwsClients:
    """The three clients resources are created with (moto in-process or a moto server)."""

    dynamodb: DynamoDBClient
    sqs: SQSClient
    s3: S3Client

    @classmethod
    def from_session(
        cls,
        session: boto3.Session | None = None,
        *,
        endpoint_url: str | None = None,
        region_name: str = DEFAULT_REGION,
    ) -> AwsClients:
        session = session or boto3.Session(region_name=region_name)
        region = session.region_name or region_name
        return cls(
            dynamodb=session.client("dynamodb", endpoint_url=endpoint_url, region_name=region),
            sqs=session.client("sqs", endpoint_url=endpoint_url, region_name=region),
            s3=session.client("s3", endpoint_url=endpoint_url, region_name=region),
        )


@dataclass
class LocalResources:
    """Physical names of the resources created from the template, by logical id."""

    prefix: str
    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT_ID
    parameters: dict[str, str] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)  # logical id -> table name
    queues: dict[str, str] = field(default_factory=dict)  # logical id -> queue URL
    queue_names: dict[str, str] = field(default_factory=dict)
    buckets: dict[str, str] = field(default_factory=dict)  # logical id -> bucket name
    arns: dict[str, str] = field(default_factory=dict)  # logical id -> ARN

    def physical_name(self, logical_id: str) -> str:
        """Name a resource of this stack gets locally (also for resources not created)."""
        return f"{self.prefix}-{logical_id}"

    def ref(self, logical_id: str) -> str:
        """What ``!Ref`` returns: table/bucket name, queue URL; else the derived name."""
        for mapping in (self.tables, self.queues, self.buckets):
            if logical_id in mapping:
                return mapping[logical_id]
        return self.physical_name(logical_id)

    def get_att(self, logical_id: str, attribute: str) -> str:
        """What ``!GetAtt logical_id.attribute`` returns for the created resources."""
        if attribute == "Arn" and logical_id in self.arns:
            return self.arns[logical_id]
        if logical_id in self.queues:
            if attribute == "QueueName":
                return self.queue_names[logical_id]
            if attribute == "QueueUrl":
                return self.queues[logical_id]
        if logical_id in self.buckets:
            name = self.buckets[logical_id]
            if attribute == "DomainName":
                return f"{name}.s3.amazonaws.com"
            if attribute == "RegionalDomainName":
                return f"{name}.s3.{self.region}.amazonaws.com"
        raise KeyError(f"no local value for !GetAtt {logical_id}.{attribute}")

    @property
    def physical_ids(self) -> dict[str, str]:
        """Every created resource: logical id -> what ``!Ref`` returns."""
        return {**self.tables, **self.queues, **self.buckets}


def _resources_of_type(template: Template, resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource.get("Properties") or {}
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") == resource_type
    }


def _references(value: Any) -> set[str]:
    """Logical ids (and parameters) a template value refers to."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                parts = inner.split(".", 1) if isinstance(inner, str) else inner
                found.add(str(parts[0]))
            elif key == "Fn::Sub":
                text = inner if isinstance(inner, str) else inner[0]
                found.update(m.split(".", 1)[0] for m in _SUB_VARIABLE.findall(text))
                if not isinstance(inner, str):
                    found |= _references(inner[1:])
            else:
                found |= _references(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= _references(inner)
    return found


def _as_bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() == "true"


def _create_table(ddb: DynamoDBClient, name: str, props: dict[str, Any]) -> str:
    billing_mode = props.get("BillingMode", "PROVISIONED")
    kwargs: dict[str, Any] = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": billing_mode,
    }
    if billing_mode == "PROVISIONED":
        kwargs["ProvisionedThroughput"] = props.get(
            "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
        )
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if props.get(key):
            indexes = [dict(index) for index in props[key]]
            if billing_mode == "PAY_PER_REQUEST":
                for index in indexes:
                    index.pop("ProvisionedThroughput", None)
            kwargs[key] = indexes
    if "StreamSpecification" in props:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    if "SSESpecification" in props:
        sse = props["SSESpecification"]
        kwargs["SSESpecification"] = {
            "Enabled": _as_bool(sse.get("SSEEnabled", False)),
            **{k: v for k, v in sse.items() if k in ("SSEType", "KMSMasterKeyId")},
        }
    if props.get("Tags"):
        kwargs["Tags"] = props["Tags"]
    try:
        arn = ddb.create_table(**kwargs)["TableDescription"]["TableArn"]
    except ddb.exceptions.ResourceInUseException:
        arn = ddb.describe_table(TableName=name)["Table"]["TableArn"]
    # moto (like CloudFormation's own API mapping) needs these as separate calls.
    ttl = props.get("TimeToLiveSpecification")
    if ttl and _as_bool(ttl.get("Enabled", False)):
        current = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if current.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            ddb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
    pitr = props.get("PointInTimeRecoverySpecification")
    if pitr and _as_bool(pitr.get("PointInTimeRecoveryEnabled", False)):
        ddb.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
    return arn


_QUEUE_ATTRIBUTES = (
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "DelaySeconds",
    "FifoQueue",
    "FifoThroughputLimit",
    "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "RedriveAllowPolicy",
    "RedrivePolicy",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
)


def _queue_attribute(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _create_queue(sqs: SQSClient, name: str, props: dict[str, Any]) -> tuple[str, str]:
    attributes = {key: _queue_attribute(props[key]) for key in _QUEUE_ATTRIBUTES if key in props}
    if _as_bool(props.get("FifoQueue", False)) and not name.endswith(".fifo"):
        name += ".fifo"
    kwargs: dict[str, Any] = {"QueueName": name, "Attributes": attributes}
    if props.get("Tags"):
        kwargs["tags"] = {tag["Key"]: tag["Value"] for tag in props["Tags"]}
    url = sqs.create_queue(**kwargs)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def _create_bucket(s3: S3Client, name: str, props: dict[str, Any], region: str) -> None:
    if region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(
            Bucket=name,
            CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
        )
    cors = props.get("CorsConfiguration")
    if cors:
        cors_rules: Any = [
            {
                **{
                    k: rule[k]
                    for k in ("AllowedHeaders", "AllowedMethods", "AllowedOrigins")
                    if k in rule
                },
                **({"ExposeHeaders": rule["ExposedHeaders"]} if "ExposedHeaders" in rule else {}),
                **({"MaxAgeSeconds": int(rule["MaxAge"])} if "MaxAge" in rule else {}),
                **({"ID": rule["Id"]} if "Id" in rule else {}),
            }
            for rule in cors["CorsRules"]
        ]
        s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": cors_rules})
    encryption = props.get("BucketEncryption")
    if encryption:
        # CloudFormation says ServerSideEncryptionByDefault where the S3 API says Apply...
        sse_rules: Any = [
            {
                "ApplyServerSideEncryptionByDefault"
                if key == "ServerSideEncryptionByDefault"
                else key: value
                for key, value in rule.items()
            }
            for rule in encryption["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(
            Bucket=name, ServerSideEncryptionConfiguration={"Rules": sse_rules}
        )
    block = props.get("PublicAccessBlockConfiguration")
    if block:
        block_config: Any = {key: _as_bool(value) for key, value in block.items()}
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=block_config)


def create_resources(
    clients: AwsClients | boto3.Session,
    transformed: Template,
    prefix: str = "local",
    parameters: Mapping[str, str] | None = None,
) -> LocalResources:
    """Create the template's DynamoDB tables, SQS queues and S3 buckets; return their names.

    ``clients`` is an :class:`AwsClients` or a boto3 session (moto in-process or, with
    ``AwsClients.from_session(endpoint_url=...)``, a moto server). Physical names are
    ``<prefix>-<LogicalId>`` (buckets lower-cased). Intrinsics in the properties resolve
    against parameter defaults, ``parameters`` and the resources created so far.
    """
    template = _ensure_transformed(transformed)
    if isinstance(clients, boto3.Session):
        clients = AwsClients.from_session(clients)
    region = clients.sqs.meta.region_name or DEFAULT_REGION
    resources = LocalResources(
        prefix=prefix, region=region, parameters=_parameter_values(template, parameters)
    )
    resolver = _Resolver(template, resources)

    for logical_id, props in _resources_of_type(template, "AWS::DynamoDB::Table").items():
        name = resources.physical_name(logical_id)
        arn = _create_table(clients.dynamodb, name, resolver.resolve(props))
        resources.tables[logical_id] = name
        resources.arns[logical_id] = arn
        resources.account_id = arn.split(":")[4]

    # Queues in dependency order: a dead-letter queue exists before the queue redriving to it.
    pending = _resources_of_type(template, "AWS::SQS::Queue")
    while pending:
        ready = [
            logical_id
            for logical_id, props in pending.items()
            if not (_references(props) & (pending.keys() - {logical_id}))
        ]
        if not ready:
            raise ValueError(f"circular references between queues {sorted(pending)}")
        for logical_id in ready:
            props = resolver.resolve(pending.pop(logical_id))
            url, arn = _create_queue(clients.sqs, resources.physical_name(logical_id), props)
            resources.queues[logical_id] = url
            resources.queue_names[logical_id] = arn.rsplit(":", 1)[1]
            resources.arns[logical_id] = arn
            resources.account_id = arn.split(":")[4]

    for logical_id, props in _resources_of_type(template, "AWS::S3::Bucket").items():
        name = resources.physical_name(logical_id).lower()
        _create_bucket(clients.s3, name, resolver.resolve(props), region)
        resources.buckets[logical_id] = name
        resources.arns[logical_id] = f"arn:aws:s3:::{name}"

    return resources


# ------------------------------------------------------------------------------- intrinsics

_SUB_VARIABLE = re.compile(r"\$\{([^!}][^}]*)\}")
_NO_VALUE = object()


# Locally, parameters a real deploy must set (no default, or one that names an AWS resource):
# moto's SES accepts any sender once verified, and the local page is served by the gateway
# that also answers the API, so any origin may call it. moto's SES delivers nothing, so EMAIL
# may go to example.com, the domain of the tests' and examples' addresses.
LOCAL_PARAMETERS = {
    "EmailSender": "noreply@example.com",
    "AllowedOrigin": "*",
    "EmailAllowedRecipients": "example.com",
}


def _parameter_values(template: Template, overrides: Mapping[str, str] | None) -> dict[str, str]:
    declared = template.get("Parameters", {})
    values = {name: str(spec["Default"]) for name, spec in declared.items() if "Default" in spec}
    values.update({name: value for name, value in LOCAL_PARAMETERS.items() if name in declared})
    values.update({name: str(value) for name, value in (overrides or {}).items()})
    return values


class _Resolver:
    """Evaluates Ref, Fn::GetAtt, Fn::Sub, Fn::If, Fn::Join, ... against local resources."""

    def __init__(self, template: Template, resources: LocalResources) -> None:
        self._template = template
        self._resources = resources

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self._ref(argument)
            if key.startswith("Fn::"):
                return self._function(key, argument)
        resolved = {key: self.resolve(inner) for key, inner in value.items()}
        return {key: inner for key, inner in resolved.items() if inner is not _NO_VALUE}

    def _ref(self, name: str) -> Any:
        resources = self._resources
        pseudo = {
            "AWS::Region": resources.region,
            "AWS::AccountId": resources.account_id,
            "AWS::StackName": resources.prefix,
            "AWS::StackId": f"arn:aws:cloudformation:{resources.region}:"
            f"{resources.account_id}:stack/{resources.prefix}/local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in pseudo:
            return pseudo[name]
        if name in self._template.get("Parameters", {}):
            if name not in resources.parameters:
                raise KeyError(f"parameter {name} has no default and no value")
            return resources.parameters[name]
        return resources.ref(name)

    def _get_att(self, argument: Any) -> str:
        logical_id, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
        return self._resources.get_att(str(logical_id), str(self.resolve(attribute)))

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        values = {name: self.resolve(inner) for name, inner in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in values:
                return str(values[name])
            if "." in name and name.split(".", 1)[0] in self._template.get("Resources", {}):
                return self._get_att(name)
            return str(self._ref(name))

        return _SUB_VARIABLE.sub(replace, text).replace("${!", "${")

    def condition(self, name: str) -> bool:
        return bool(self._evaluate(self._template["Conditions"][name]))

    def _evaluate(self, value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"Condition"}:
            return self.condition(value["Condition"])
        return self.resolve(value)

    def _function(self, key: str, argument: Any) -> Any:
        if key == "Fn::GetAtt":
            return self._get_att(argument)
        if key == "Fn::Sub":
            return self._sub(argument)
        if key == "Fn::If":
            name, when_true, when_false = argument
            return self.resolve(when_true if self.condition(name) else when_false)
        if key == "Fn::Equals":
            left, right = (self._evaluate(item) for item in argument)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self._evaluate(argument[0])
        if key == "Fn::And":
            return all(self._evaluate(item) for item in argument)
        if key == "Fn::Or":
            return any(self._evaluate(item) for item in argument)
        if key == "Fn::Join":
            delimiter, items = argument
            return str(delimiter).join(str(item) for item in self.resolve(items))
        if key == "Fn::Select":
            index, items = argument
            return self.resolve(items)[int(self.resolve(index))]
        if key == "Fn::Split":
            delimiter, text = argument
            return str(self.resolve(text)).split(delimiter)
        if key == "Fn::GetAZs":
            return [f"{self._resources.region}{zone}" for zone in "abc"]
        if key == "Fn::ToJsonString":
            return json.dumps(self.resolve(argument), separators=(",", ":"))
        raise ValueError(f"{key} is not supported locally")


def template_resolver(template: Template, resources: LocalResources) -> _Resolver:
    """Evaluates the template's values (Ref, Fn::GetAtt, Fn::Sub, Fn::If, ...) and conditions
    against `resources` and its parameters (``.resolve(value)``, ``.condition(name)``)."""
    return _Resolver(_ensure_transformed(template), resources)


# ------------------------------------------------------------------------------- functions


def _function_resource(template: Template, logical_id: str) -> dict[str, Any]:
    resource = template.get("Resources", {}).get(logical_id)
    if not resource or resource.get("Type") != "AWS::Lambda::Function":
        raise KeyError(f"{logical_id} is not a function of the template")
    properties: dict[str, Any] = resource.get("Properties") or {}
    return properties


def function_environment(
    template: Template, logical_id: str, resources: LocalResources
) -> dict[str, str]:
    """The environment the function gets on AWS (Globals + its own), with local names."""
    transformed = _ensure_transformed(template)
    props = _function_resource(transformed, logical_id)
    variables = (props.get("Environment") or {}).get("Variables") or {}
    resolved = _Resolver(transformed, resources).resolve(variables)
    return {name: _queue_attribute(value) for name, value in resolved.items()}


@dataclass(frozen=True)
class SqsEventSource:
    """One SQS event source mapping of a function, as the local poller needs it."""

    queue: str  # logical id of the queue
    batch_size: int = 10
    maximum_batching_window_in_seconds: int = 0
    function_response_types: tuple[str, ...] = ()
    maximum_concurrency: int | None = None
    enabled: bool = True

    @property
    def reports_batch_item_failures(self) -> bool:
        return "ReportBatchItemFailures" in self.function_response_types


@dataclass(frozen=True)
class StreamEventSource:
    """One DynamoDB stream event source mapping of a function."""

    table: str  # logical id of the table
    batch_size: int = 100
    maximum_batching_window_in_seconds: int = 0
    filters: tuple[dict[str, Any], ...] = ()  # FilterCriteria patterns, parsed
    enabled: bool = True
    starting_position: str = "TRIM_HORIZON"  # or LATEST: only records written from now on


# rate(<n> <unit>) of EventBridge schedules, in seconds per unit.
RATE_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}
_RATE = re.compile(r"^rate\(\s*(\d+)\s+([a-z]+)\s*\)$")


def rate_seconds(expression: str) -> int | None:
    """``rate(1 minute)`` -> 60; None for a cron() or at() expression (not emulated)."""
    match = _RATE.match(expression.strip())
    if match is None or match.group(2) not in RATE_UNITS:
        return None
    return int(match.group(1)) * RATE_UNITS[match.group(2)]


@dataclass(frozen=True)
class ScheduleEventSource:
    """A schedule invoking a function: an EventBridge rule (SAM ``Schedule``) or an
    EventBridge Scheduler schedule (SAM ``ScheduleV2``)."""

    name: str  # logical id of the rule or schedule
    expression: str  # rate(...) or cron(...)
    scheduler: bool = False  # ScheduleV2: the target gets its Input, no EventBridge envelope
    input: str | None = None  # the target's Input (JSON text), when the template sets one
    enabled: bool = True

    @property
    def seconds(self) -> int | None:
        return rate_seconds(self.expression)


@dataclass(frozen=True)
class FunctionEventSources:
    """A function's SQS event sources plus what running it locally needs."""

    function: str  # logical id
    timeout: int  # seconds
    memory_size: int
    handler: str  # "app.lambda_handler"
    code_uri: str | None  # local code directory relative to the repository, e.g. functions/api
    sqs: tuple[SqsEventSource, ...] = ()
    streams: tuple[StreamEventSource, ...] = ()
    schedules: tuple[ScheduleEventSource, ...] = ()

    def __iter__(self) -> Iterator[SqsEventSource]:
        return iter(self.sqs)


def event_sources(template: Template, logical_id: str) -> FunctionEventSources:
    """SQS and DynamoDB stream event sources (batch size, window, response types, filters)
    and Timeout of a function."""
    transformed = _ensure_transformed(template)
    props = _function_resource(transformed, logical_id)
    code = props.get("Code") or {}
    code_uri = code.get("S3Key") if code.get("S3Bucket") == LOCAL_CODE_BUCKET else None
    queues = _resources_of_type(transformed, "AWS::SQS::Queue")
    tables = _resources_of_type(transformed, "AWS::DynamoDB::Table")
    sources = []
    streams = []
    for mapping in _resources_of_type(transformed, "AWS::Lambda::EventSourceMapping").values():
        if mapping.get("FunctionName") != {"Ref": logical_id}:
            continue
        source_arn = mapping.get("EventSourceArn")
        queue = next(iter(_references(source_arn)), None)
        if queue in tables:
            filters = (mapping.get("FilterCriteria") or {}).get("Filters", [])
            streams.append(
                StreamEventSource(
                    table=str(queue),
                    batch_size=int(mapping.get("BatchSize", 100)),
                    maximum_batching_window_in_seconds=int(
                        mapping.get("MaximumBatchingWindowInSeconds", 0)
                    ),
                    filters=tuple(json.loads(f["Pattern"]) for f in filters),
                    enabled=_as_bool(mapping.get("Enabled", True)),
                    starting_position=str(mapping.get("StartingPosition", "TRIM_HORIZON")),
                )
            )
            continue
        if queue not in queues:
            continue
        scaling = mapping.get("ScalingConfig") or {}
        concurrency = scaling.get("MaximumConcurrency")
        sources.append(
            SqsEventSource(
                queue=str(queue),
                batch_size=int(mapping.get("BatchSize", 10)),
                maximum_batching_window_in_seconds=int(
                    mapping.get("MaximumBatchingWindowInSeconds", 0)
                ),
                function_response_types=tuple(mapping.get("FunctionResponseTypes", ())),
                maximum_concurrency=int(concurrency) if concurrency is not None else None,
                enabled=_as_bool(mapping.get("Enabled", True)),
            )
        )
    return FunctionEventSources(
        function=logical_id,
        timeout=int(props.get("Timeout", 3)),
        memory_size=int(props.get("MemorySize", 128)),
        handler=str(props.get("Handler", "")),
        code_uri=code_uri,
        sqs=tuple(sorted(sources, key=lambda source: source.queue)),
        streams=tuple(streams),
        schedules=schedules_of(transformed, logical_id),
    )


def schedules_of(transformed: Template, logical_id: str) -> tuple[ScheduleEventSource, ...]:
    """The EventBridge rules and Scheduler schedules whose target is the function."""
    found = []
    for name, rule in _resources_of_type(transformed, "AWS::Events::Rule").items():
        if "ScheduleExpression" not in rule:
            continue  # an event pattern rule, not a schedule
        for target in rule.get("Targets") or []:
            if logical_id in _references(target.get("Arn")):
                found.append(
                    ScheduleEventSource(
                        name=name,
                        expression=str(rule["ScheduleExpression"]),
                        input=target.get("Input"),
                        enabled=str(rule.get("State", "ENABLED")) == "ENABLED",
                    )
                )
    for name, schedule in _resources_of_type(transformed, "AWS::Scheduler::Schedule").items():
        target = schedule.get("Target") or {}
        if logical_id in _references(target.get("Arn")):
            found.append(
                ScheduleEventSource(
                    name=name,
                    expression=str(schedule.get("ScheduleExpression", "")),
                    scheduler=True,
                    input=target.get("Input"),
                    enabled=str(schedule.get("State", "ENABLED")) == "ENABLED",
                )
            )
    return tuple(sorted(found, key=lambda source: source.name))


# ------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> None:
    """``python -m devstack.resources --out build/transformed.json`` (used by make validate)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--template", default=str(TEMPLATE_PATH))
    parser.add_argument("--out", default=str(REPO_ROOT / "build" / "transformed.json"))
    args = parser.parse_args(argv)
    transformed = transform_template(load_template(args.template))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(transformed, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
