"""IMAGE_PROCESSING and EMAIL in parallel parts on the local stack: each gives exactly what
the same task gives run whole (the images' outputs byte for byte, every recipient's row of
the downloadable CSV), its parts run by the stack's pollers from their own messages (EMAIL's
later lanes held back to their first slot by SQS's DelaySeconds)."""

from __future__ import annotations

import csv
import io
import time
from typing import Any

from tests.e2e.devstack_process import Stack, moto_client, submit, wait_for

FINAL = ("SUCCESS", "FAILED", "CANCELLED")


def run(stack: Stack, task_type: str, params: dict[str, Any]) -> dict[str, Any]:
    """Submit a task and wait for it to finish; it must have succeeded. Its wall time is
    printed (`-s`)."""
    started = time.monotonic()
    task = wait_for(stack, submit(stack, task_type, params)["id"], *FINAL, timeout=60)
    print(
        f"{task_type}, max_parallel {params.get('max_parallel', 1)}: "
        f"{time.monotonic() - started:.1f} s"
    )
    assert task["status"] == "SUCCESS", task
    return task


def outputs(stack: Stack, task: dict[str, Any]) -> dict[str, bytes]:
    """The task's output objects by their name below its results prefix (ids differ)."""
    bucket = task["result_location"].removeprefix("s3://").split("/", 1)[0]
    s3 = moto_client(stack, "s3")
    prefix = task["result_location"].removeprefix(f"s3://{bucket}/").rsplit("/", 1)[0] + "/"
    return {
        key.removeprefix(prefix): s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        for key in task["outputs"]
    }


def test_images_in_parts_give_the_whole_runs_outputs_byte_for_byte(stack: Stack) -> None:
    # Given 7 small generated images, one a chunk, resized to PNG
    params = {
        "generate_count": 7,
        "images_per_chunk": 1,
        "width": 48,
        "height": 48,
        "output_format": "PNG",
    }
    # When the task runs whole, and in 3 parts
    whole = run(stack, "IMAGE_PROCESSING", params)
    split = run(stack, "IMAGE_PROCESSING", {**params, "max_parallel": 3})
    # Then it was split, and its result and every output are the whole run's
    assert (whole["parts_total"], split["parts_total"]) == (0, 3)
    assert split["result"] == whole["result"]
    assert split["result"]["processed"] == 7
    images = outputs(stack, split)
    assert len(images) == 7
    assert images == outputs(stack, whole)


def recipients(stack: Stack, task: dict[str, Any]) -> list[dict[str, str]]:
    """The downloadable CSV's rows; SES's message ids said to be there, not compared."""
    (body,) = outputs(stack, task).values()
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    return [row | {"message_id": str(bool(row["message_id"]))} for row in rows]


def test_email_in_parts_gives_every_recipient_the_whole_runs_outcome(stack: Stack) -> None:
    # Given 6 of the SES simulator's recipients, 2 a batch (few: moto's SES account sends 1
    # a second, and each of the stack's worker environments keeps to it)
    params = {
        "recipient_count": 6,
        "subject": "Hello {name}",
        "body": "You are number {index}.",
        "batch_size": 2,
    }
    # When the task runs whole, and in 3 parts that share its rate
    whole = run(stack, "EMAIL", params)
    split = run(stack, "EMAIL", {**params, "max_parallel": 3})
    # Then it was split, and its figures and every recipient's row are the whole run's
    assert (whole["parts_total"], split["parts_total"]) == (0, 3)
    csv_key = split["outputs"][0]
    assert split["result"] == {**whole["result"], "recipients_csv": csv_key}
    assert split["result"]["sent"] == 6
    rows = recipients(stack, split)
    assert rows == recipients(stack, whole)
    assert [row["status"] for row in rows] == ["sent"] * 6
    assert [row["index"] for row in rows] == [str(n) for n in range(1, 7)]
