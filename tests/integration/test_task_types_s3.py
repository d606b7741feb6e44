"""Each task type driven start -> chunks -> finish against moto's S3 and SES."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws
from PIL import Image

from taskqueue.errors import InputNotFound, InvalidInput
from taskqueue.models import ChunkState, TaskResult
from taskqueue.task_types.base import TaskContext, TaskType
from taskqueue.task_types.data_processing import (
    DATA_PROCESSING,
    DataProcessing,
    DataProcessingParams,
)
from taskqueue.task_types.image_processing import IMAGE_PROCESSING, ImageProcessingParams
from tests.csv_awkward import StepClock, assert_same, reference

BUCKET = "data-bucket"
OWNER = "alice"
SENDER = "noreply@example.com"
STATE_LIMIT = 8 * 1024


@dataclass
class Aws:
    s3: Any
    sesv2: Any

    def ctx(self, task_id: str = "task1", **overrides: Any) -> TaskContext:
        clients = {"s3": self.s3, "sesv2": self.sesv2, **overrides}
        return TaskContext(task_id, OWNER, BUCKET, email_sender=SENDER, clients=clients)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        sesv2 = boto3.client("sesv2", region_name="us-east-1")
        sesv2.create_email_identity(EmailIdentity=SENDER)
        yield Aws(s3, sesv2)


def drive(
    task_type: TaskType,
    params: Any,
    ctx: TaskContext,
    repeat: bool = True,
    state: ChunkState | None = None,
) -> tuple[TaskResult, list[ChunkState]]:
    """Run a task as the engine does: every state goes through its stored JSON form.

    With repeat, each chunk also runs a second time from the same checkpoint, as after a
    crash, and must give the identical state.
    """
    states = [state or task_type.start(params, ctx)]
    while not states[-1].done:
        stored = ChunkState.model_validate_json(states[-1].model_dump_json())
        state = task_type.run_chunk(params, stored, ctx)
        if repeat:
            again = task_type.run_chunk(params, stored, ctx)
            # When to run next is pacing, not the chunk's result: a repeat that sends
            # nothing again need not wait.
            same = {"resume_at"}
            assert again.model_dump(mode="json", exclude=same) == state.model_dump(
                mode="json", exclude=same
            )
        assert len(state.model_dump_json()) < STATE_LIMIT
        assert 0 <= state.units_done <= state.units_total
        states.append(state)
    return task_type.finish(params, states[-1], ctx), states


def read_json(aws: Aws, location: str) -> Any:
    key = location.removeprefix(f"s3://{BUCKET}/")
    return json.loads(aws.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


# ---------------------------------------------------------------- DATA_PROCESSING
# Exactness against the csv module over awkward files: tests/integration/test_data_processing.py


def data_processing() -> DataProcessing:
    return DataProcessing(clock=StepClock())


def test_generated_csv_is_written_then_analysed(aws: Aws) -> None:
    params = DataProcessingParams(rows=3000, columns=4, seed=9, delimiter="\t", chunk_bytes=65536)

    result, _ = drive(data_processing(), params, aws.ctx())

    body = aws.s3.get_object(Bucket=BUCKET, Key=f"results/{OWNER}/task1/input.csv")["Body"]
    expected = reference(body.read().decode(), "\t")
    assert expected["rows"] == 3000
    assert all(column["empty"] and column["invalid"] for column in expected["column_stats"])
    assert_same(read_json(aws, result.location or ""), expected)


def test_large_generated_csv_goes_up_in_parts_and_state_stays_small(aws: Aws) -> None:
    # 50 columns is the most a state carries; > 5 MiB needs a multipart upload.
    params = DataProcessingParams(rows=16_000, columns=50, seed=3, chunk_bytes=8 * 1024 * 1024)

    result, states = drive(data_processing(), params, aws.ctx())

    assert [s.data["phase"] for s in states[:2]] == ["generate", "generate"]
    head = aws.s3.head_object(Bucket=BUCKET, Key=f"results/{OWNER}/task1/input.csv")
    assert head["ContentLength"] > 5 * 1024 * 1024
    assert "-" in head["ETag"]  # a multipart object
    assert max(len(s.model_dump_json()) for s in states) < STATE_LIMIT
    body = aws.s3.get_object(Bucket=BUCKET, Key=f"results/{OWNER}/task1/input.csv")["Body"]
    expected = reference(body.read().decode(), ",")
    assert_same(read_json(aws, result.location or ""), expected)
    assert len(result.summary["top_columns"]) == 10
    assert "column_stats" not in result.summary


@pytest.mark.parametrize("text", ["", "a,b\r\n", "\n\na,b"])
def test_an_empty_or_header_only_csv_gives_zero_rows(aws: Aws, text: str) -> None:
    key = f"uploads/{OWNER}/empty.csv"
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=text.encode())

    result, _ = drive(data_processing(), DataProcessingParams(input_key=key), aws.ctx())

    assert result.summary["rows"] == 0
    assert [c["type"] for c in result.summary["column_stats"]] == (
        ["empty", "empty"] if text else []
    )


def test_input_outside_the_callers_uploads_is_refused(aws: Aws) -> None:
    aws.s3.put_object(Bucket=BUCKET, Key="uploads/mallory/x.csv", Body=b"a\n1\n")

    with pytest.raises(InvalidInput, match="uploads/alice/"):
        DATA_PROCESSING.start(DataProcessingParams(input_key="uploads/mallory/x.csv"), aws.ctx())
    with pytest.raises(InputNotFound, match="does not exist"):
        DATA_PROCESSING.start(DataProcessingParams(input_key="uploads/alice/none.csv"), aws.ctx())


# ---------------------------------------------------------------- IMAGE_PROCESSING


def image_bytes(size: tuple[int, int], fmt: str, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (200, 100, 50, 255)[: len(mode)]).save(out, format=fmt)
    return out.getvalue()


def open_output(aws: Aws, key: str) -> tuple[Image.Image, str]:
    response = aws.s3.get_object(Bucket=BUCKET, Key=key)
    image = Image.open(io.BytesIO(response["Body"].read()))
    image.load()
    return image, response["ContentType"]


def test_generated_images_are_resized_into_the_box(aws: Aws) -> None:
    params = ImageProcessingParams(
        generate_count=7, width=120, height=90, output_format="JPEG", images_per_chunk=3
    )

    result, states = drive(IMAGE_PROCESSING, params, aws.ctx())

    assert len(states) - 1 == 3
    prefix = f"results/{OWNER}/task1/output/"
    assert result.outputs == [f"{prefix}{n:04d}-image-{n:03d}.jpg" for n in range(1, 8)]
    for key in result.outputs:
        image, content_type = open_output(aws, key)
        assert (image.format, image.mode, content_type) == ("JPEG", "RGB", "image/jpeg")
        assert image.width <= 120 and image.height <= 90
        assert image.width == 120 or image.height == 90  # every source is bigger than the box
    assert result.summary["processed"] == 7
    assert result.summary["failed"] == 0
    assert result.summary["output_bytes"] == sum(
        aws.s3.head_object(Bucket=BUCKET, Key=k)["ContentLength"] for k in result.outputs
    )


def test_uploaded_images_are_converted_and_a_broken_one_is_recorded(aws: Aws) -> None:
    folder = f"uploads/{OWNER}/pics/"
    uploads = {
        "a.png": image_bytes((300, 200), "PNG", "RGBA"),
        "b.JPG": image_bytes((50, 400), "JPEG"),
        "broken.png": b"\x89PNG but not really",
        "c.gif": image_bytes((64, 64), "GIF", "P"),
        "notes.txt": b"not an image at all",
    }
    for name, body in uploads.items():
        aws.s3.put_object(Bucket=BUCKET, Key=folder + name, Body=body)
    aws.s3.put_object(Bucket=BUCKET, Key=f"uploads/{OWNER}/elsewhere.png", Body=uploads["a.png"])
    params = ImageProcessingParams(
        input_prefix=folder,
        width=40,
        height=30,
        keep_aspect=False,
        output_format="WEBP",
        images_per_chunk=1,
    )

    result, states = drive(IMAGE_PROCESSING, params, aws.ctx())

    assert states[0].units_total == 4
    prefix = f"results/{OWNER}/task1/output/"
    assert result.outputs == [
        prefix + "0001-a.webp",
        prefix + "0002-b.webp",
        prefix + "0004-c.webp",
    ]
    for key in result.outputs:
        image, content_type = open_output(aws, key)
        assert (image.format, image.size, content_type) == ("WEBP", (40, 30), "image/webp")
    assert result.summary["failed"] == 1
    assert result.summary["failures"] == [
        {"key": folder + "broken.png", "reason": "not a recognised image format"}
    ]
    assert result.summary["input_bytes"] == sum(
        len(body) for name, body in uploads.items() if name != "notes.txt"
    )


def test_image_input_must_be_the_callers_and_not_empty(aws: Aws) -> None:
    # Permanent errors: the task fails at once, without retries.
    with pytest.raises(InvalidInput, match="uploads/alice/"):
        IMAGE_PROCESSING.start(ImageProcessingParams(input_prefix="uploads/bob/"), aws.ctx())
    with pytest.raises(InvalidInput, match="no images"):
        IMAGE_PROCESSING.start(ImageProcessingParams(input_prefix="uploads/alice/x/"), aws.ctx())


def test_images_too_big_for_the_functions_memory_or_gone_fail_alone(aws: Aws) -> None:
    # Given a 128 MB function (1,000,000 pixels at most), a picture over that, one deleted
    # after the listing, and one that fits
    folder = f"uploads/{OWNER}/mixed/"
    uploads = {
        "big.png": image_bytes((1250, 801), "PNG"),
        "gone.png": image_bytes((10, 10), "PNG"),
        "ok.png": image_bytes((1000, 1000), "PNG"),
    }
    for name, body in uploads.items():
        aws.s3.put_object(Bucket=BUCKET, Key=folder + name, Body=body)
    ctx = aws.ctx()
    ctx.memory_mb = 128
    params = ImageProcessingParams(input_prefix=folder, width=100, height=100)
    state = IMAGE_PROCESSING.start(params, ctx)
    aws.s3.delete_object(Bucket=BUCKET, Key=folder + "gone.png")

    # When the task runs
    result, _ = drive(IMAGE_PROCESSING, params, ctx, state=state)

    # Then those two fail with their reasons and the other is converted: a partial success
    assert result.summary["failures"] == [
        {
            "key": folder + "big.png",
            "reason": "1250x801 is 1001250 pixels, more than the 1000000 this function's "
            "memory allows",
        },
        {"key": folder + "gone.png", "reason": "no longer exists"},
    ]
    assert result.outputs == [f"results/{OWNER}/task1/output/0003-ok.jpg"]
    assert (result.total_items, result.failed_items) == (3, 2)


def test_image_state_stays_small_with_a_thousand_inputs(aws: Aws) -> None:
    folder = f"uploads/{OWNER}/" + "deep/" * 30
    for n in range(1005):
        aws.s3.put_object(Bucket=BUCKET, Key=f"{folder}{n:05d}.png", Body=b"x")
    params = ImageProcessingParams(input_prefix=folder, images_per_chunk=20)

    state = IMAGE_PROCESSING.start(params, aws.ctx())
    for _ in range(50):
        state = IMAGE_PROCESSING.run_chunk(params, state, aws.ctx())

    assert state.done and state.units_total == 1000
    assert state.data["failed"] == 1000
    assert len(state.model_dump_json()) < STATE_LIMIT
