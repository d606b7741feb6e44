"""Each task type driven start -> chunks -> finish against moto's S3 and SES."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from PIL import Image

from taskqueue.errors import InputNotFound
from taskqueue.models import ChunkState, TaskResult
from taskqueue.task_types.base import TaskContext, TaskType
from taskqueue.task_types.data_processing import (
    DATA_PROCESSING,
    DataProcessing,
    DataProcessingParams,
)
from taskqueue.task_types.email import Email, EmailParams
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
    task_type: TaskType, params: Any, ctx: TaskContext, repeat: bool = True
) -> tuple[TaskResult, list[ChunkState]]:
    """Run a task as the engine does: every state goes through its stored JSON form.

    With repeat, each chunk also runs a second time from the same checkpoint, as after a
    crash, and must give the identical state.
    """
    states = [task_type.start(params, ctx)]
    while not states[-1].done:
        stored = ChunkState.model_validate_json(states[-1].model_dump_json())
        state = task_type.run_chunk(params, stored, ctx)
        if repeat:
            again = task_type.run_chunk(params, stored, ctx)
            assert again.model_dump(mode="json") == state.model_dump(mode="json")
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

    with pytest.raises(ValueError, match="uploads/alice/"):
        DATA_PROCESSING.start(DataProcessingParams(input_key="uploads/mallory/x.csv"), aws.ctx())
    with pytest.raises(InputNotFound, match="does not exist"):
        DATA_PROCESSING.start(DataProcessingParams(input_key="uploads/alice/none.csv"), aws.ctx())


# ---------------------------------------------------------------- EMAIL


class FailingFor:
    """SES that rejects chosen addresses and passes everything else to the real (moto) one."""

    def __init__(self, real: Any, bad: set[str]) -> None:
        self.real = real
        self.bad = bad

    def send_email(self, **kwargs: Any) -> Any:
        [address] = kwargs["Destination"]["ToAddresses"]
        if address in self.bad:
            error = {"Error": {"Code": "MessageRejected", "Message": f"{address} bounced"}}
            raise ClientError(error, "SendEmail")  # type: ignore[arg-type]
        return self.real.send_email(**kwargs)


def sent_messages() -> list[Any]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return list(ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages)


def no_wait_email() -> Email:
    return Email(sleep=lambda seconds: None)


def test_one_failing_recipient_is_recorded_and_the_rest_are_sent(aws: Aws) -> None:
    recipients = [f"r{n}@example.com" for n in range(7)]
    params = EmailParams(
        recipients=recipients,
        subject="Hello {name}",
        body="You are number {index}. Plan: {plan}",
        fields={"r0@example.com": {"name": "Zero", "plan": "gold"}},
        batch_size=3,
    )
    ctx = aws.ctx(sesv2=FailingFor(aws.sesv2, {"r4@example.com"}))

    result, states = drive(no_wait_email(), params, ctx, repeat=False)

    assert len(states) - 1 == 3
    assert result.summary["sent"] == 6
    assert result.summary["failed"] == 1
    assert result.summary["failures"] == [
        {
            "index": 5,
            "email": "r4@example.com",
            "code": "MessageRejected",
            "message": "r4@example.com bounced",
        }
    ]
    assert result.summary["failure_codes"] == {"MessageRejected": 1}
    messages = sent_messages()
    assert [m.destinations["ToAddresses"] for m in messages] == [
        [r] for r in recipients if r != "r4@example.com"
    ]
    assert (messages[0].subject, messages[0].body) == ("Hello Zero", "You are number 1. Plan: gold")
    assert (messages[1].subject, messages[1].body) == ("Hello r1", "You are number 2. Plan: ")
    assert read_json(aws, result.location or "")["sent"] == 6


def test_a_rejected_sender_fails_every_message_without_aborting(aws: Aws) -> None:
    params = EmailParams(recipient_count=5, subject="s", body="b", batch_size=2)
    ctx = aws.ctx()
    ctx.email_sender = "unverified@elsewhere.test"

    result, _ = drive(no_wait_email(), params, ctx, repeat=False)

    assert (result.summary["sent"], result.summary["failed"]) == (0, 5)
    assert [f["email"] for f in result.summary["failures"]] == [
        f"user{n}@example.com" for n in range(1, 6)
    ]
    assert result.summary["failure_codes"] == {"MessageRejected": 5}


def test_email_state_stays_small_when_thousands_fail(aws: Aws) -> None:
    params = EmailParams(recipient_count=2000, subject="s" * 200, body="b", batch_size=50)
    everyone = {f"user{n}@example.com" for n in range(1, 2001)}
    ctx = aws.ctx(sesv2=FailingFor(aws.sesv2, everyone))

    result, states = drive(no_wait_email(), params, ctx, repeat=False)

    assert result.summary["failed"] == 2000
    assert len(result.summary["failures"]) == 20
    assert result.summary["failures_truncated"] is True
    assert max(len(s.model_dump_json()) for s in states) < STATE_LIMIT


def test_a_repeated_email_chunk_gives_the_same_state(aws: Aws) -> None:
    params = EmailParams(recipient_count=4, subject="s", body="b", batch_size=2)

    result, _ = drive(no_wait_email(), params, aws.ctx(), repeat=True)

    assert result.summary["sent"] == 4  # counted once, though at-least-once delivery resent


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
    with pytest.raises(ValueError, match="uploads/alice/"):
        IMAGE_PROCESSING.start(ImageProcessingParams(input_prefix="uploads/bob/"), aws.ctx())
    with pytest.raises(ValueError, match="no images"):
        IMAGE_PROCESSING.start(ImageProcessingParams(input_prefix="uploads/alice/x/"), aws.ctx())


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
