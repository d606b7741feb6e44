"""IMAGE_PROCESSING in groups of images and EMAIL in batches of recipients, run as parallel
parts through the worker and moto: the merged result equals the same task run whole, with
parts killed and their messages duplicated."""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from devstack.sim_time import SimulatedTime, drain_in_time, simulated_time
from taskqueue import wiring
from taskqueue.models import Task, TaskMessage, TaskStatus, part_id
from taskqueue.task_types.email import SIMULATOR_DOMAIN, Email, SesPacer
from taskqueue.task_types.image_processing import generated_image
from tests.pipeline_world import OWNER, World, crash_on_checkpoint


def sent_messages() -> list[Any]:
    """What moto's SES accepted, in order."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return list(ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages)


# ---------------------------------------------------------------- helpers


def run_task(world: World, task_type: str, params: dict[str, Any]) -> Task:
    """Submit a task, drain the queues through the worker, return it finished."""
    task_id = world.submit(params, task_type=task_type)
    world.pipeline().run(max_invocations=400)
    return world.task(task_id)


def objects(task_id: str) -> dict[str, bytes]:
    """Every object under a task's results prefix, by its name below that prefix."""
    s3 = boto3.client("s3")
    bucket = wiring.settings().data_bucket
    prefix = f"results/{OWNER}/{task_id}/"
    found: dict[str, bytes] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            found[item["Key"].removeprefix(prefix)] = body
    return found


def relative(task: Task) -> list[str]:
    """The task's outputs, named below its results prefix (task ids differ, names must not)."""
    return [key.removeprefix(f"results/{OWNER}/{task.task_id}/") for key in task.outputs]


def assert_same_result(split: Task, whole: Task) -> None:
    """The split task finished as the whole one did: status, summary, outputs, and every
    object it wrote (documents that name the task itself compared with its id replaced)."""
    assert split.status == whole.status == TaskStatus.SUCCESS, (split.error, whole.error)
    assert split.result == whole.result
    assert relative(split) == relative(whole)
    assert (split.failed_items, split.units_done, split.units_total) == (
        whole.failed_items,
        whole.units_done,
        whole.units_total,
    )
    split_objects = {
        name: body.replace(split.task_id.encode(), whole.task_id.encode())
        if name.endswith((".json", ".csv"))
        else body
        for name, body in objects(split.task_id).items()
    }
    assert split_objects == objects(whole.task_id)
    assert objects_of_parts(split.task_id) == []


def objects_of_parts(task_id: str) -> list[str]:
    s3 = boto3.client("s3")
    bucket = wiring.settings().data_bucket
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=f"results/{OWNER}/{task_id}.")
    return [item["Key"] for item in listing.get("Contents", [])]


# ---------------------------------------------------------------- IMAGE_PROCESSING


def upload_images(folder: str, count: int, broken: int | None = None) -> str:
    """`count` generated PNGs under the owner's uploads, image `broken` not an image."""
    s3 = boto3.client("s3")
    bucket = wiring.settings().data_bucket
    prefix = f"uploads/{OWNER}/{folder}/"
    for number in range(1, count + 1):
        body = b"not an image at all" if number == broken else generated_image(number)
        s3.put_object(Bucket=bucket, Key=f"{prefix}photo-{number:02d}.png", Body=body)
    return prefix


def test_images_in_groups_give_the_whole_runs_outputs_and_result(world: World) -> None:
    # Given 11 uploaded images, the 7th of them broken
    prefix = upload_images("holiday", 11, broken=7)
    params = {"input_prefix": prefix, "images_per_chunk": 2, "output_format": "WEBP"}
    # When the task runs whole, and in groups 3 at a time
    whole = run_task(world, "IMAGE_PROCESSING", params)
    split = run_task(world, "IMAGE_PROCESSING", {**params, "max_parallel": 3})
    # Then it was split into 3 groups of whole chunks (4, 4 and 3 images)
    assert split.parts_total == 3 and split.parts_in == [0, 1, 2]
    parts = [world.task(part_id(split.task_id, index)) for index in range(3)]
    assert [(p.units_done, p.result["begin"], p.result["end"]) for p in parts] == [
        (4, 0, 4),
        (4, 4, 8),
        (3, 8, 11),
    ]
    # and its result, outputs and their bytes are the whole run's
    assert whole.result is not None and whole.result["failed"] == 1
    assert whole.result["failures"][0]["key"] == f"{prefix}photo-07.png"
    assert_same_result(split, whole)
    assert len(split.outputs) == 10


def test_killed_and_duplicated_groups_still_give_the_whole_result(world: World) -> None:
    # Given generated images processed one per chunk, whole
    params = {"generate_count": 7, "images_per_chunk": 1, "output_format": "PNG"}
    whole = run_task(world, "IMAGE_PROCESSING", params)
    # When the same task in 3 groups has a worker killed right after its 4th checkpoint
    undo = crash_on_checkpoint(wiring.engine().store.table.client, 4, after=True)
    task_id = world.submit({**params, "max_parallel": 3}, task_type="IMAGE_PROCESSING")
    try:
        world.pipeline().run(max_invocations=400)
    finally:
        undo()
    assert world.task(task_id).status == TaskStatus.RUNNING
    world.redeliver_after_crash()
    world.pipeline().run(max_invocations=400)
    # and every group's message and the parent's are then delivered again
    engine = wiring.engine()
    for index in range(3):
        engine.dispatcher.send(TaskMessage.of(world.task(part_id(task_id, index))), "parts")
    engine.dispatcher.send(TaskMessage.of(world.task(task_id), resume=True))
    world.pipeline().run()
    # Then the result is the whole run's, generated sources and outputs byte for byte
    split = world.task(task_id)
    assert split.parts_in == [0, 1, 2]
    assert_same_result(split, whole)
    assert len([name for name in objects(task_id) if name.startswith("source/")]) == 7


# ---------------------------------------------------------------- EMAIL


@pytest.fixture
def emails(world: World) -> Iterator[SimulatedTime]:
    """EMAIL paced on simulated time shared by the engine, the stores and moto's SQS: each
    lane's first part waits for its slot, and every batch for its turn, as they would."""
    engine = wiring.engine()
    with simulated_time(engine, [engine.store, world.store]) as sim:
        email = Email(sleep=sim.sleep, clock=sim.now, pacer=SesPacer(account_rate=math.inf))
        engine.registry = {**engine.registry, "EMAIL": email}
        wiring.service().registry = engine.registry
        boto3.client("sesv2").create_email_identity(EmailIdentity=wiring.settings().email_sender)
        yield sim


def recipients_csv(task: Task) -> list[dict[str, str]]:
    """The task's downloadable CSV, SES's message ids only said to be there."""
    assert task.result is not None
    body = objects(task.task_id)["recipients.csv"].decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    return [row | {"message_id": str(bool(row["message_id"]))} for row in rows]


def test_recipients_in_batches_through_the_worker_are_sent_once_and_merged_as_one_run(
    world: World, emails: SimulatedTime
) -> None:
    # Given 130 generated recipients, 20 per batch, sent whole
    params = {"recipient_count": 130, "subject": "Hi {name}", "body": "n {index}", "batch_size": 20}
    task_id = world.submit(params, task_type="EMAIL")
    drain_in_time(world.pipeline(), emails)
    whole = world.task(task_id)
    # When the same task in 3 groups has a worker killed right after its 3rd checkpoint,
    # and every part's message and the parent's are delivered again at the end
    undo = crash_on_checkpoint(wiring.engine().store.table.client, 3, after=True)
    task_id = world.submit({**params, "max_parallel": 3}, task_type="EMAIL")
    try:
        drain_in_time(world.pipeline(), emails)
    finally:
        undo()
    emails.advance(2000)  # beyond the lease and the visibility timeout: SQS redelivers
    world.pipeline().expire_visibility()
    drain_in_time(world.pipeline(), emails)
    engine = wiring.engine()
    for index in range(3):
        engine.dispatcher.send(TaskMessage.of(world.task(part_id(task_id, index))), "parts")
    engine.dispatcher.send(TaskMessage.of(world.task(task_id), resume=True))
    drain_in_time(world.pipeline(), emails)
    # Then it was split into 3 groups of whole batches and merged as the whole run's result
    split = world.task(task_id)
    assert split.status == TaskStatus.SUCCESS and split.parts_in == [0, 1, 2]
    parts = [world.task(part_id(task_id, index)).result or {} for index in range(3)]
    assert [(p["begin"], p["end"]) for p in parts] == [(0, 40), (40, 80), (80, 130)]
    assert whole.result is not None and split.result is not None
    csv_key = f"results/{OWNER}/{task_id}/recipients.csv"
    assert split.result == {**whole.result, "recipients_csv": csv_key}
    assert relative(split) == relative(whole) == ["recipients.csv"]
    assert recipients_csv(split) == recipients_csv(whole)
    assert objects_of_parts(task_id) == []
    # and each recipient got exactly one email from each run: none twice from the split one
    sent = Counter(m.destinations["ToAddresses"][0] for m in sent_messages())
    assert sent == {f"success+{n}@{SIMULATOR_DOMAIN}": 2 for n in range(1, 131)}
