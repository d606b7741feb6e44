"""devstack/moto_patches.py against plain moto: the same requests to both, the same answers
where a patch only saves time; where it fixes moto, plain moto's wrong answer beside the
patched right one. And the version guard: the patches apply to the pinned moto only."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import moto
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core.serialize import BaseJSONSerializer, ResponseSerializer
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.dynamodb.parsing.expressions import (  # type: ignore[attr-defined]
    UpdateExpressionParser,
)
from moto.dynamodb.parsing.tokens import ExpressionTokenizer
from moto.dynamodb.responses import DynamoHandler
from moto.kms import models as kms_models
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.s3.models import FakeKey
from moto.s3.responses import S3Response

from devstack.moto_patches import (
    PATCHED_MOTO_VERSION,
    MotoPatchSkipped,
    MotoVersionMismatch,
    cached_backend_hosts,
    cached_update_expressions,
    direct_attribute_values,
    one_rsa_key_for_symmetric_keys,
    partition_queries,
    ranged_s3_reads,
    serialize_dynamodb_requests,
    temporarily,
    tune_moto,
    undo_log_transactions,
)

ROOT = Path(__file__).resolve().parents[2]
TABLE = "patched"
INDEX = "gsi1"
Installer = Callable[..., None]


@contextmanager
def moto_with(*installers: Installer) -> Iterator[tuple[Any, Any]]:
    """A fresh in-process moto, patched with `installers` (none: plain moto), holding a table
    shaped like the tasks table (pk/sk, a keys-only index on gsi1pk/ck, a stream)."""
    with mock_aws(), temporarily(*installers):
        db = boto3.client("dynamodb")
        db.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": name, "AttributeType": "S"}
                for name in ("pk", "sk", "gsi1pk", "ck")
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": INDEX,
                    "KeySchema": [
                        {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                        {"AttributeName": "ck", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            ],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        # moto answers streams on the regional endpoint only, not the account-based one.
        streams = boto3.client(
            "dynamodbstreams", config=Config(account_id_endpoint_mode="disabled")
        )
        yield db, streams


def answer(call: Callable[..., Any], **params: Any) -> Any:
    """A request's answer without its request id: the response, or the error it raised."""
    try:
        response = dict(call(**params))
    except ClientError as exc:
        error = exc.response["Error"]
        return {
            "error": error["Code"],
            "message": error.get("Message"),
            "reasons": exc.response.get("CancellationReasons"),
        }
    response.pop("ResponseMetadata", None)
    return response


def key(pk: str, sk: str = "META") -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def item(pk: str, sk: str = "META", **attributes: Any) -> dict[str, Any]:
    values = {
        name: {"N": str(v)} if isinstance(v, int) else {"S": v} for name, v in attributes.items()
    }
    return {**key(pk, sk), **values}


def stream_arn(db: Any) -> str:
    return str(db.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"])


def iterator(db: Any, streams: Any, position: str) -> str:
    arn = stream_arn(db)
    (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    return str(
        streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType=position
        )["ShardIterator"]
    )


def changes(streams: Any, shard_iterator: str) -> list[tuple[str, Any, Any, Any]]:
    """Stream records as a consumer sees them: event, keys, old and new image."""
    records = streams.get_records(ShardIterator=shard_iterator)["Records"]
    return [
        (
            r["eventName"],
            r["dynamodb"]["Keys"],
            r["dynamodb"].get("OldImage"),
            r["dynamodb"].get("NewImage"),
        )
        for r in records
    ]


# ---------------------------------------------------------------- undo_log_transactions

KEYS = [key(name) for name in ("a", "b", "c", "d", "e", "f")]


def transactions(db: Any, streams: Any) -> list[Any]:
    """Every kind of TransactWriteItems answer: applied, cancelled by a condition (with the
    old item), refused before writing, refused while writing; the items after each, and the
    stream at the end."""
    put = {"TableName": TABLE}
    db.put_item(TableName=TABLE, Item=item("a", n=1))
    db.put_item(TableName=TABLE, Item=item("b", n=2))
    requests = [
        [  # applied: a put, a conditional update and delete, a check of an absent item
            {"Put": {**put, "Item": item("c", n=3)}},
            {
                "Update": {
                    **put,
                    "Key": key("a"),
                    "UpdateExpression": "SET n = n + :one",
                    "ConditionExpression": "n = :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}},
                }
            },
            {"Delete": {**put, "Key": key("b"), "ConditionExpression": "attribute_exists(pk)"}},
            {
                "ConditionCheck": {
                    **put,
                    "Key": key("d"),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ],
        [  # cancelled by its second condition, which asks for the item it saw
            {"Put": {**put, "Item": item("e", n=5)}},
            {
                "Update": {
                    **put,
                    "Key": key("c"),
                    "UpdateExpression": "SET n = :n",
                    "ConditionExpression": "n = :n",
                    "ExpressionAttributeValues": {":n": {"N": "99"}},
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
        ],
        [  # one item twice
            {"Put": {**put, "Item": item("e", n=5)}},
            {"Delete": {**put, "Key": key("e")}},
        ],
        [  # an update moto refuses as it writes (a key attribute), after a put
            {"Put": {**put, "Item": item("f", n=6)}},
            {
                "Update": {
                    **put,
                    "Key": key("a"),
                    "UpdateExpression": "SET pk = :x",
                    "ExpressionAttributeValues": {":x": {"S": "z"}},
                }
            },
        ],
    ]
    answers: list[Any] = []
    for transact_items in requests:
        answers.append(answer(db.transact_write_items, TransactItems=transact_items))
        answers.append(
            [db.get_item(TableName=TABLE, Key=k, ConsistentRead=True).get("Item") for k in KEYS]
        )
    answers.append(changes(streams, iterator(db, streams, "TRIM_HORIZON")))
    return answers


def test_transactions_answer_as_plain_moto_does() -> None:
    # Given the same transactions sent to plain moto and to moto with the undo log
    with moto_with() as (db, streams):
        plain = transactions(db, streams)
    with moto_with(undo_log_transactions) as (db, streams):
        patched = transactions(db, streams)
    # Then every answer, item and stream record is the same
    assert patched == plain
    # And the answers are the ones DynamoDB gives (so the comparison compared something)
    applied, cancelled, twice, refused = plain[0:8:2]
    assert applied == {"ConsumedCapacity": [], "ItemCollectionMetrics": {}}
    assert cancelled["error"] == "TransactionCanceledException"
    assert [r["Code"] for r in cancelled["reasons"]] == ["None", "ConditionalCheckFailed"]
    assert cancelled["reasons"][1]["Item"] == item("c", n=3)
    assert twice["error"] == "ValidationException"
    assert refused["error"] == "ValidationException"
    assert plain[7] == [item("a", n=2), None, item("c", n=3), None, None, None]


def cancelled_transaction_seen_by_a_reader(db: Any, streams: Any) -> list[Any]:
    """A stream reader holds its shard iterator (as Lambda's event source mapping does) while
    a transaction is cancelled, then an item is written."""
    db.put_item(TableName=TABLE, Item=item("b"))
    reader = iterator(db, streams, "LATEST")
    cancelled = answer(
        db.transact_write_items,
        TransactItems=[
            {"Put": {"TableName": TABLE, "Item": item("a")}},
            {
                "Put": {
                    "TableName": TABLE,
                    "Item": item("b"),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ],
    )
    db.put_item(TableName=TABLE, Item=item("c"))
    return [cancelled["error"], changes(streams, reader)]


def test_a_cancelled_transaction_leaves_no_stream_record_unlike_plain_moto() -> None:
    with moto_with() as (db, streams):
        plain = cancelled_transaction_seen_by_a_reader(db, streams)
    with moto_with(undo_log_transactions) as (db, streams):
        patched = cancelled_transaction_seen_by_a_reader(db, streams)
    # Plain moto: the reader gets an INSERT of "a", which no one ever wrote, and never the
    # write of "c" (the table was swapped for a copy made before the transaction)
    assert plain == ["TransactionCanceledException", [("INSERT", key("a"), None, item("a"))]]
    # Patched, as DynamoDB: nothing from the cancelled transaction, then the write of "c"
    assert patched == ["TransactionCanceledException", [("INSERT", key("c"), None, item("c"))]]


# ---------------------------------------------------------------- partition_queries


def queries(db: Any) -> list[Any]:
    """Four partitions of ten items, then the Query shapes the store sends: by partition,
    a sort-key range, newest first, filters, projections, counts, pages, the index."""
    with db_batch(db) as write:
        for partition in range(4):
            for n in range(10):
                write(
                    item(
                        f"TASK#{partition}",
                        f"EVENT#2026-11-24T08:00:{n:02d}#{n}",
                        gsi1pk=f"OWNER#u#{n % 3}",
                        ck=f"2026-11-24T08:{partition:02d}:{n:02d}#{partition}{n}",
                        n=n,
                        kind="even" if n % 2 == 0 else "odd",
                    )
                )
    pk = "pk = :pk"
    shapes: list[dict[str, Any]] = [
        {"KeyConditionExpression": pk, "ExpressionAttributeValues": {":pk": {"S": "TASK#1"}}},
        {
            "KeyConditionExpression": f"{pk} AND begins_with(sk, :event)",
            "ExpressionAttributeValues": {":pk": {"S": "TASK#2"}, ":event": {"S": "EVENT#"}},
            "ScanIndexForward": False,
            "Limit": 3,
        },
        {
            "KeyConditionExpression": f"{pk} AND sk BETWEEN :from AND :to",
            "FilterExpression": "kind = :kind",
            "ProjectionExpression": "pk, sk, n",
            "ExpressionAttributeValues": {
                ":pk": {"S": "TASK#3"},
                ":from": {"S": "EVENT#2026-11-24T08:00:02"},
                ":to": {"S": "EVENT#2026-11-24T08:00:08"},
                ":kind": {"S": "even"},
            },
        },
        {
            "KeyConditionExpression": pk,
            "ExpressionAttributeValues": {":pk": {"S": "TASK#0"}},
            "Select": "COUNT",
        },
        {"KeyConditionExpression": pk, "ExpressionAttributeValues": {":pk": {"S": "TASK#9"}}},
        {
            "IndexName": INDEX,
            "KeyConditionExpression": "gsi1pk = :owner AND ck > :after",
            "ExpressionAttributeValues": {
                ":owner": {"S": "OWNER#u#1"},
                ":after": {"S": "2026-11-24T08:01"},
            },
            "ScanIndexForward": False,
            "Limit": 4,
        },
    ]
    pages: list[Any] = []
    for shape in shapes:
        params: dict[str, Any] = {"TableName": TABLE, **shape}
        while True:
            page = answer(db.query, **params)
            pages.append(page)
            if "LastEvaluatedKey" not in page:
                break
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return pages


@contextmanager
def db_batch(db: Any) -> Iterator[Callable[[dict[str, Any]], None]]:
    items: list[dict[str, Any]] = []
    yield items.append
    for start in range(0, len(items), 25):
        db.batch_write_item(
            RequestItems={TABLE: [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]}
        )


def test_queries_answer_as_plain_moto_does_from_the_partition_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given moto's Query reading its candidate items through Table.all_items, counted
    handed: list[int] = []

    def counting(install: Installer) -> Installer:
        def installer(patch: Any) -> None:
            install(patch)
            all_items = Table.all_items
            patch(Table, "all_items", lambda self: _counted(all_items(self), handed))

        return installer

    # When the same queries go to plain moto and to moto with partition queries
    with moto_with(counting(lambda patch: None)) as (db, _):
        plain, plain_handed = queries(db), list(handed)
    handed.clear()
    with moto_with(counting(partition_queries)) as (db, _):
        patched, patched_handed = queries(db), list(handed)
    # Then every page is the same
    assert patched == plain
    assert [page.get("Count") for page in plain] == [10, 3, 3, 3, 1, 3, 10, 0, 4, 4, 1]
    # And where plain moto went through all 40 items for each page, patched moto went through
    # the queried partition's: 10 items of a task, none of a missing one, 12 of an owner shard
    assert plain_handed == [40] * 11
    assert patched_handed == [10, 10, 10, 10, 10, 10, 10, 0, 12, 12, 12]


def _counted(items: list[Any], handed: list[int]) -> list[Any]:
    handed.append(len(items))
    return items


# ---------------------------------------------------------------- serialize_dynamodb_requests


def read_during_a_transaction(db: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A transaction writes "in-flight" and is then cancelled; while it is between the two,
    another thread reads "in-flight". What did the reader see, and when?"""
    db.put_item(TableName=TABLE, Item=item("taken"))
    paused, resume, read_done = threading.Event(), threading.Event(), threading.Event()
    put_item = Table.put_item

    def pausing_put_item(self: Table, item_attrs: dict[str, Any], *args: Any, **kw: Any) -> Any:
        written = put_item(self, item_attrs, *args, **kw)
        if item_attrs["pk"] == {"S": "in-flight"}:
            paused.set()
            resume.wait(10)
        return written

    monkeypatch.setattr(Table, "put_item", pausing_put_item)
    writer_db, reader_db = boto3.client("dynamodb"), boto3.client("dynamodb")
    seen: dict[str, Any] = {}

    def write() -> None:
        seen["transaction"] = answer(
            writer_db.transact_write_items,
            TransactItems=[
                {"Put": {"TableName": TABLE, "Item": item("in-flight")}},
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": item("taken"),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ],
        )

    def read() -> None:
        seen["read"] = reader_db.get_item(TableName=TABLE, Key=key("in-flight")).get("Item")
        read_done.set()

    writer = threading.Thread(target=write)
    writer.start()
    assert paused.wait(10), "the transaction never wrote in-flight"
    reader = threading.Thread(target=read)
    reader.start()
    seen["read while the transaction ran"] = read_done.wait(0.5)
    resume.set()
    writer.join(10)
    reader.join(10)
    return seen


def test_a_request_waits_for_a_running_one_unlike_plain_moto(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with moto_with() as (db, _):
        plain = read_during_a_transaction(db, monkeypatch)
    with moto_with(serialize_dynamodb_requests) as (db, _):
        patched = read_during_a_transaction(db, monkeypatch)
    # Plain moto: the read ran in the middle of the transaction and saw its cancelled write
    assert plain["read while the transaction ran"] is True
    assert plain["read"] == item("in-flight")
    # Serialized, as DynamoDB applies each request whole: the read waited, and saw nothing
    assert patched["read while the transaction ran"] is False
    assert patched["read"] is None
    assert plain["transaction"]["error"] == patched["transaction"]["error"]
    assert patched["transaction"]["error"] == "TransactionCanceledException"


# ---------------------------------------------------------------- ranged S3 reads

OBJECT = bytes(range(256)) * 40  # 10,240 bytes, every offset distinguishable
RANGES = [
    "bytes=0-99",
    "bytes=100-",
    "bytes=10000-20000",  # past the end: cut to it
    "bytes=10239-10239",
    "bytes=-50",  # the last 50
    "bytes=300-200",  # first after last: the whole object, as S3 answers
    "bytes=20000-",  # outside: InvalidRange
    "bytes=0-9,20-29",  # several ranges: the whole object
    "bytes=x-y",
    "",
]


def ranged_gets(s3: Any) -> list[Any]:
    s3.create_bucket(Bucket="ranges")
    s3.put_object(Bucket="ranges", Key="file.csv", Body=OBJECT)
    answers = []
    for header in RANGES:
        got = answer(s3.get_object, Bucket="ranges", Key="file.csv", Range=header)
        if "Body" in got:
            got["Body"] = got["Body"].read()
        got.pop("LastModified", None)
        answers.append(got)
    answers.append(answer(s3.get_object, Bucket="ranges", Key="file.csv", PartNumber=1))
    answers[-1]["Body"] = answers[-1]["Body"].read()
    answers[-1].pop("LastModified", None)
    answers.append(answer(s3.get_object, Bucket="ranges", Key="missing", Range="bytes=0-9"))
    return answers


def test_ranged_gets_answer_as_plain_moto_does_without_reading_the_whole_object() -> None:
    # Given moto's S3 objects counting every read of their whole value
    whole_reads: list[int] = []

    def counting(install: Installer) -> Installer:
        def installer(patch: Any) -> None:
            value = FakeKey.value

            def counted(self: FakeKey) -> Any:
                whole_reads.append(1)
                return value.fget(self)  # type: ignore[attr-defined]

            patch(FakeKey, "value", property(counted, value.fset))  # type: ignore[attr-defined]
            install(patch)

        return installer

    # When the same GETs go to plain moto and to moto with ranged reads
    with moto_with(counting(lambda patch: None)):
        plain, plain_reads = ranged_gets(boto3.client("s3")), len(whole_reads)
    whole_reads.clear()
    with moto_with(counting(ranged_s3_reads)):
        patched, patched_reads = ranged_gets(boto3.client("s3")), len(whole_reads)
    # Then every answer is the same: bytes, status, length and range
    assert patched == plain
    assert [a.get("ContentRange") for a in plain[:5]] == [
        "bytes 0-99/10240",
        "bytes 100-10239/10240",
        "bytes 10000-10239/10240",
        "bytes 10239-10239/10240",
        "bytes 10190-10239/10240",
    ]
    assert plain[0]["Body"] == OBJECT[:100] and plain[4]["Body"] == OBJECT[-50:]
    assert plain[6]["error"] == "InvalidRange" and plain[-1]["error"] == "NoSuchKey"
    # And the four first-last ranges inside the object no longer copy it whole: every one of
    # the 11 GETs of the object did
    assert plain_reads == 11
    assert patched_reads == 7


# ---------------------------------------------------------------- direct_attribute_values

# Every kind of attribute value, nested: what a task item's params, state and parts hold.
EVERY_KIND: dict[str, Any] = {
    "s": {"S": "text"},
    "empty": {"S": ""},
    "n": {"N": "-12.50"},
    "b": {"B": b"\x00\xffbytes"},
    "ss": {"SS": ["x", "y"]},
    "ns": {"NS": ["1", "2.5"]},
    "bs": {"BS": [b"\x01", b"\x02"]},
    "null": {"NULL": True},
    "yes": {"BOOL": True},
    "no": {"BOOL": False},
    "empty_map": {"M": {}},
    "empty_list": {"L": []},
    "m": {
        "M": {
            "deep": {"M": {"l": {"L": [{"N": "1"}, {"S": "two"}, {"NULL": True}]}}},
            "b": {"B": b"\x7f"},
            "flag": {"BOOL": False},
        }
    },
    "l": {"L": [{"M": {"k": {"SS": ["a"]}}}, {"L": [{"BOOL": True}]}, {"BS": [b"z"]}]},
}


def attribute_answers(db: Any, streams: Any) -> list[Any]:
    """Items holding every kind of value, as each read and write that returns items answers;
    then the stream."""
    shard = iterator(db, streams, "TRIM_HORIZON")
    table = {"TableName": TABLE}
    answers = [
        answer(db.put_item, **table, Item={**key("a"), **EVERY_KIND}),
        answer(db.put_item, **table, Item={**key("a"), **EVERY_KIND}, ReturnValues="ALL_OLD"),
        answer(db.put_item, **table, Item={**key("a", "2"), **EVERY_KIND, "gsi1pk": {"S": "g"}}),
        answer(db.get_item, **table, Key=key("a"), ConsistentRead=True),
        answer(
            db.query,
            **table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": "a"}},
        ),
        answer(
            db.query,
            **table,
            KeyConditionExpression="pk = :pk",
            ProjectionExpression="m.deep, l[1], ss",
            ExpressionAttributeValues={":pk": {"S": "a"}},
        ),
        answer(
            db.update_item,
            **table,
            Key=key("a"),
            UpdateExpression="SET m.deep.x = :x, n = n + :one",
            ExpressionAttributeValues={":x": {"B": b"\x10"}, ":one": {"N": "1"}},
            ReturnValues="ALL_NEW",
        ),
        answer(
            db.update_item,
            **table,
            Key=key("a"),
            UpdateExpression="REMOVE l",
            ReturnValues="UPDATED_OLD",
        ),
        answer(db.batch_get_item, RequestItems={TABLE: {"Keys": [key("a"), key("a", "2")]}}),
        answer(db.transact_get_items, TransactItems=[{"Get": {**table, "Key": key("a", "2")}}]),
        answer(
            db.put_item,
            **table,
            Item=key("a"),
            ConditionExpression="attribute_not_exists(pk)",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        ),
        answer(db.delete_item, **table, Key=key("a"), ReturnValues="ALL_OLD"),
    ]
    answers.append(changes(streams, shard))
    return unordered_sets(answers)


def unordered_sets(value: Any) -> Any:
    """`value` with the members of every SS, NS and BS sorted: sets have no order, and
    moto's follows string hashing, which differs from one process to the next."""
    if isinstance(value, dict):
        return {
            k: sorted(v) if k in ("SS", "NS", "BS") else unordered_sets(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(unordered_sets(v) for v in value)
    return value


def test_attribute_values_answer_as_plain_moto_does_without_its_member_look_ups() -> None:
    # Given moto's serializer counting its generic look-ups of a structure's members
    lookups: list[int] = []
    get_value = ResponseSerializer.get_value

    def count_lookups(patch: Any) -> None:
        def counted(self: Any, value: Any, key: str, shape: Any) -> Any:
            lookups.append(1)
            return get_value(self, value, key, shape)

        patch(ResponseSerializer, "get_value", counted)

    # When the same requests go to plain moto and to moto writing attribute values directly
    with moto_with(count_lookups) as (db, streams):
        lookups.clear()  # not the table's creation
        plain, plain_lookups = attribute_answers(db, streams), len(lookups)
    with moto_with(count_lookups, direct_attribute_values) as (db, streams):
        lookups.clear()
        patched, patched_lookups = attribute_answers(db, streams), len(lookups)
    # Then every answer is the same, and is what was written
    assert patched == plain
    assert plain[1]["Attributes"] == {**key("a"), **EVERY_KIND}
    assert plain[3]["Item"] == {**key("a"), **EVERY_KIND}
    assert plain[5]["Items"][0] == {
        "m": {"M": {"deep": EVERY_KIND["m"]["M"]["deep"]}},
        "l": {"L": [EVERY_KIND["l"]["L"][1]]},
        "ss": EVERY_KIND["ss"],
    }
    assert plain[6]["Attributes"]["m"]["M"]["deep"]["M"]["x"] == {"B": b"\x10"}
    assert plain[7]["Attributes"] == {"l": EVERY_KIND["l"]}
    assert plain[10]["error"] == "ConditionalCheckFailedException"
    assert [event for event, *_ in plain[-1]] == [
        "INSERT",
        "MODIFY",
        "INSERT",
        *["MODIFY"] * 2,
        "REMOVE",
    ]
    # And the values no longer go through moto's member look-ups: tens of them per value did
    assert plain_lookups > 1000
    assert patched_lookups < plain_lookups / 5


# ---------------------------------------------------------------- cached_update_expressions

COUNT_UP = "SET n = if_not_exists(n, :zero) + :one, m.#k = :v ADD tags :tag REMOVE gone"


# A key attribute, a value not given, a syntax error.
REFUSED: list[tuple[str, dict[str, Any] | None]] = [
    ("SET pk = :v", {":v": {"S": "z"}}),
    ("SET n = :missing", None),
    ("SET n = = :v", {":v": {"N": "1"}}),
]


def updates(db: Any) -> list[Any]:
    """The same few UpdateExpressions again and again with other values and items, some
    refused (a bad value, a key attribute, a missing name, a syntax error), alone and in
    transactions; then the items."""
    table = {"TableName": TABLE}
    db.put_item(TableName=TABLE, Item={**key("a"), "m": {"M": {}}, "gone": {"S": "x"}})
    answers = []
    for round_ in range(3):
        for pk in ("a", "b"):
            values = {
                ":zero": {"N": "0"},
                ":one": {"N": str(round_ + 1)},
                ":v": {"S": f"v{round_}"},
                ":tag": {"SS": [f"t{round_}"]},
            }
            answers.append(
                answer(
                    db.update_item,
                    **table,
                    Key=key(pk),
                    UpdateExpression=COUNT_UP,
                    ExpressionAttributeNames={"#k": f"k{round_}"},
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW",
                )
            )
        answers.append(
            answer(
                db.update_item,
                **table,
                Key=key("a"),
                UpdateExpression=COUNT_UP,
                ExpressionAttributeNames={"#k": "k"},
                ExpressionAttributeValues={
                    ":zero": {"N": "0"},
                    ":one": {"S": "not a number"},
                    ":v": {"S": "v"},
                    ":tag": {"SS": ["t"]},
                },
            )
        )
        for expression, given in REFUSED:
            extra = {"ExpressionAttributeValues": given} if given else {}
            answers.append(
                answer(db.update_item, **table, Key=key("a"), UpdateExpression=expression, **extra)
            )
        answers.append(
            answer(
                db.transact_write_items,
                TransactItems=[
                    {
                        "Update": {
                            **table,
                            "Key": key(f"t{round_ % 2}"),
                            "UpdateExpression": "SET n = if_not_exists(n, :zero) + :one",
                            "ExpressionAttributeValues": {
                                ":zero": {"N": "0"},
                                ":one": {"N": "1"},
                            },
                        }
                    }
                ],
            )
        )
    answers.append(
        [
            db.get_item(TableName=TABLE, Key=key(pk), ConsistentRead=True).get("Item")
            for pk in ("a", "b", "t0", "t1")
        ]
    )
    return answers


def test_update_expressions_answer_as_plain_moto_does_parsed_once_each() -> None:
    # Given moto's tokenizer counting the expressions it reads
    tokenized: list[str] = []
    make_list = vars(ExpressionTokenizer)["make_list"].__func__

    def count_reads(patch: Any) -> None:
        def counted(cls: Any, expression: str) -> Any:
            tokenized.append(expression)
            return make_list(cls, expression)

        patch(ExpressionTokenizer, "make_list", classmethod(counted))

    # When the same updates go to plain moto and to moto keeping parsed expressions
    with moto_with(count_reads) as (db, _):
        plain, plain_reads = updates(db), list(tokenized)
    tokenized.clear()
    with moto_with(count_reads, cached_update_expressions) as (db, _):
        patched, patched_reads = updates(db), list(tokenized)
    # Then every answer is the same, refusals included, and the counts add up
    assert patched == plain
    assert plain[0]["Attributes"]["n"] == {"N": "1"}
    first, never_made, once, twice = plain[-1]
    assert first["n"] == {"N": "6"} and "gone" not in first
    assert first["m"] == {"M": {"k0": {"S": "v0"}, "k1": {"S": "v1"}, "k2": {"S": "v2"}}}
    assert never_made is None  # b has no map m: each of its updates was refused
    assert (once["n"], twice["n"]) == ({"N": "2"}, {"N": "1"})
    refusals = [a["error"] for a in plain[:-1] if "error" in a]
    assert refusals == ["ValidationException"] * 15
    # And each expression that parses is read once, where plain moto read it twice at every
    # UpdateItem; the one that does not parse is read at each try
    assert plain_reads.count(COUNT_UP) == 2 * 9
    assert patched_reads.count(COUNT_UP) == 1
    assert patched_reads.count("SET n = = :v") == plain_reads.count("SET n = = :v") == 3


# ---------------------------------------------------------------- cached_backend_hosts

# The hosts moto's server meets: those it infers from signed requests, its own, none, unknown.
HOSTS = [
    "dynamodb",
    "dynamodbstreams",
    "s3.us-east-1.amazonaws.com",
    "sqs.us-east-1.amazonaws.com",
    "email.us-east-1.amazonaws.com",
    "sesv2",
    "moto_api",
    None,
    "nowhere.example.com",
]


def test_backend_hosts_answer_as_plain_moto_does_matched_once_each() -> None:
    # Given moto's dispatcher counting the hosts it matches against its backends' patterns
    matched: list[str | None] = []
    find = DomainDispatcherApplication.get_backend_for_host

    def count_matches(patch: Any) -> None:
        def counted(self: Any, host: str | None) -> Any:
            matched.append(host)
            return find(self, host)

        patch(DomainDispatcherApplication, "get_backend_for_host", counted)

    # When every host is looked up three times by plain moto's server and by a patched one
    with temporarily(count_matches):
        plain_app = DomainDispatcherApplication(create_backend_app)
        plain = [plain_app.get_backend_for_host(host) for host in HOSTS * 3]
        plain_matches = list(matched)
    matched.clear()
    with temporarily(count_matches, cached_backend_hosts):
        patched_app = DomainDispatcherApplication(create_backend_app)
        patched = [patched_app.get_backend_for_host(host) for host in HOSTS * 3]
    # Then every answer is the same
    assert patched == plain
    assert plain[: len(HOSTS)] == [
        "dynamodb",
        "dynamodbstreams",
        "s3",
        "sqs",
        "ses",
        "sesv2",
        "moto_api",
        None,
        None,
    ]
    # And a host with a backend is matched once; one without is matched again each time
    assert plain_matches == HOSTS * 3
    assert matched == HOSTS + [None, "nowhere.example.com"] * 2
    assert DomainDispatcherApplication.get_backend_for_host is find


# ---------------------------------------------------------------- one_rsa_key_for_symmetric_keys


def kms_answers(kms: Any) -> tuple[list[Any], list[bytes]]:
    """Two symmetric keys at work (encrypt, decrypt, data keys, a refused signature) and two
    signing keys (sign, verify): the answers without their random parts, and the public keys
    of the signing keys."""
    symmetric = [kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(2)]
    signing = [
        kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048")["KeyMetadata"]["KeyId"]
        for _ in range(2)
    ]
    answers: list[Any] = []
    for key_id in symmetric:
        blob = kms.encrypt(KeyId=key_id, Plaintext=b"secret")["CiphertextBlob"]
        answers.append(kms.decrypt(CiphertextBlob=blob)["Plaintext"])
        answers.append(len(kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")["Plaintext"]))
        refused = answer(
            kms.sign, KeyId=key_id, Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256"
        )
        answers.append(refused["error"])
    for key_id in signing:
        signed = kms.sign(KeyId=key_id, Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256")
        verified = kms.verify(
            KeyId=key_id,
            Message=b"m",
            Signature=signed["Signature"],
            SigningAlgorithm="RSASSA_PSS_SHA_256",
        )
        answers.append(verified["SignatureValid"])
    public = [kms.get_public_key(KeyId=key_id)["PublicKey"] for key_id in signing]
    return answers, public


def test_symmetric_keys_answer_as_plain_moto_does_without_a_key_pair_each() -> None:
    # Given moto counting the key pairs it generates
    generated: list[str] = []
    generate = kms_models.generate_private_key

    def count_pairs(patch: Any) -> None:
        def counted(key_spec: str) -> Any:
            generated.append(key_spec)
            return generate(key_spec)

        patch(kms_models, "generate_private_key", counted)

    # When the same keys are made and used in plain moto and with one pair for symmetric keys
    with moto_with(count_pairs):
        (plain, plain_public), plain_pairs = kms_answers(boto3.client("kms")), list(generated)
    generated.clear()
    with moto_with(count_pairs, one_rsa_key_for_symmetric_keys):
        (patched, patched_public), patched_pairs = kms_answers(boto3.client("kms")), list(generated)
    # Then every answer is the same, and the signing keys still have key pairs of their own
    assert patched == plain
    assert plain == [b"secret", 32, "ValidationException"] * 2 + [True, True]
    assert len(set(patched_public)) == len(set(plain_public)) == 2
    # And the symmetric keys no longer generate a pair each: one pair serves them all
    assert plain_pairs == ["SYMMETRIC_DEFAULT"] * 2 + ["RSA_2048"] * 2
    assert patched_pairs == ["SYMMETRIC_DEFAULT"] + ["RSA_2048"] * 2


def test_symmetric_keys_share_one_pair_across_fresh_installs_of_the_patch() -> None:
    # Given moto's key pairs counted, and the patch installed afresh for each world (as every
    # test's `aws` installs it)
    generated: list[str] = []
    generate = kms_models.generate_private_key

    def counted(key_spec: str) -> Any:
        generated.append(key_spec)
        return generate(key_spec)

    def count_pairs(patch: Any) -> None:
        patch(kms_models, "generate_private_key", counted)

    # When three worlds each make two symmetric keys and one signing key
    for _ in range(3):
        with moto_with(count_pairs, one_rsa_key_for_symmetric_keys):
            kms = boto3.client("kms")
            for _ in range(2):
                kms.create_key()
            kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048")
    # Then the symmetric keys of all three had one pair, the signing keys one each
    assert generated == ["SYMMETRIC_DEFAULT", "RSA_2048", "RSA_2048", "RSA_2048"]


# ---------------------------------------------------------------- the version guard


def test_the_patches_are_written_for_the_pinned_moto_and_it_is_installed() -> None:
    pins = (ROOT / "requirements-dev.txt").read_text()
    assert re.search(rf"^moto\[server\]=={re.escape(PATCHED_MOTO_VERSION)}$", pins, re.M)
    assert moto.__version__ == PATCHED_MOTO_VERSION


@pytest.mark.parametrize(
    ("install", "owner", "attribute", "recheck"),
    [
        (
            undo_log_transactions,
            DynamoDBBackend,
            "transact_write_items",
            "moto.dynamodb.models.DynamoDBBackend.transact_write_items",
        ),
        (
            serialize_dynamodb_requests,
            DynamoHandler,
            "call_action",
            "that moto.dynamodb.responses.DynamoHandler.call_action",
        ),
    ],
    ids=["undo_log_transactions", "serialize_dynamodb_requests"],
)
def test_on_another_moto_a_patch_that_changes_answers_fails_saying_what_to_recheck(
    monkeypatch: pytest.MonkeyPatch, install: Installer, owner: Any, attribute: str, recheck: str
) -> None:
    before = getattr(owner, attribute)
    with pytest.raises(MotoVersionMismatch) as failure:
        install(monkeypatch.setattr, moto_version="5.9.0")
    message = str(failure.value)
    assert message.startswith(
        f"devstack.moto_patches.{install.__name__} was written for moto {PATCHED_MOTO_VERSION}, "
        f"and moto 5.9.0 is installed. Re-check {recheck}"
    )
    assert "run tests/integration/test_moto_patches.py; then set PATCHED_MOTO_VERSION." in message
    assert getattr(owner, attribute) is before


def test_on_another_moto_the_query_speed_up_is_skipped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    query, all_items = Table.query, Table.all_items
    with pytest.warns(MotoPatchSkipped, match="Running without it: it only narrows"):
        partition_queries(monkeypatch.setattr, moto_version="5.9.0")
    assert (Table.query, Table.all_items) == (query, all_items)


def test_the_local_stack_does_not_start_on_another_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MotoVersionMismatch, match="undo_log_transactions was written for"):
        tune_moto(monkeypatch.setattr, moto_version="5.9.0")


def test_on_another_moto_the_ranged_s3_reads_are_skipped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    get_object, value = S3Response.get_object, FakeKey.value
    with pytest.warns(MotoPatchSkipped, match="Running without it: it only reads less"):
        ranged_s3_reads(monkeypatch.setattr, moto_version="5.9.0")
    assert (S3Response.get_object, FakeKey.value) == (get_object, value)


@pytest.mark.parametrize(
    ("install", "owner", "attribute", "why"),
    [
        (
            direct_attribute_values,
            BaseJSONSerializer,
            "_serialize_type_structure",
            "it only writes the same JSON",
        ),
        (cached_update_expressions, UpdateExpressionParser, "make", "it only parses each"),
        (
            cached_backend_hosts,
            DomainDispatcherApplication,
            "get_backend_for_host",
            "it only keeps the backend",
        ),
        (one_rsa_key_for_symmetric_keys, kms_models, "generate_private_key", "it only spares"),
    ],
    ids=[
        "direct_attribute_values",
        "cached_update_expressions",
        "cached_backend_hosts",
        "one_rsa_key_for_symmetric_keys",
    ],
)
def test_on_another_moto_a_speed_up_is_skipped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, install: Installer, owner: Any, attribute: str, why: str
) -> None:
    before = vars(owner)[attribute]
    with pytest.warns(MotoPatchSkipped, match=f"Running without it: {why}"):
        install(monkeypatch.setattr, moto_version="5.9.0")
    assert vars(owner)[attribute] is before
