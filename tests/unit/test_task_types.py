"""Pure logic of the task types: registry, params, accumulators, line alignment, templates."""

from __future__ import annotations

import io
from itertools import pairwise
from typing import Any

import pytest
from PIL import Image
from pydantic import ValidationError

from taskqueue.errors import ImageRejected
from taskqueue.task_types import REGISTRY, get_task_type, task_types
from taskqueue.task_types.data_processing import (
    BLOCK_ROWS,
    DataProcessingParams,
    generate_part,
    generated_block,
    parse_number,
)
from taskqueue.task_types.email import EmailParams, render
from taskqueue.task_types.groups import contiguous_ranges
from taskqueue.task_types.image_processing import (
    ImageProcessingParams,
    convert_image,
    generated_image,
    output_name,
)

# ---------------------------------------------------------------- registry and schemas


def test_registry_holds_the_three_types_by_name() -> None:
    assert [t.name for t in task_types()] == ["DATA_PROCESSING", "EMAIL", "IMAGE_PROCESSING"]
    assert get_task_type("EMAIL") is REGISTRY["EMAIL"]


def test_unknown_type_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="NOPE"):
        get_task_type("NOPE")


@pytest.mark.parametrize("task_type", task_types(), ids=lambda t: t.name)
def test_every_param_is_described_and_extra_params_are_refused(task_type: Any) -> None:
    schema = task_type.params_model.model_json_schema()

    assert schema["additionalProperties"] is False
    assert task_type.description
    for name, prop in schema["properties"].items():
        assert prop.get("description"), name


@pytest.mark.parametrize(
    ("model", "params"),
    [
        (DataProcessingParams, {}),
        (DataProcessingParams, {"rows": 10, "input_key": "uploads/a/x.csv"}),
        (DataProcessingParams, {"rows": 0}),
        (DataProcessingParams, {"rows": 5_000_001}),
        (DataProcessingParams, {"rows": 10, "columns": 51}),
        (DataProcessingParams, {"rows": 10, "chunk_bytes": 1000}),
        (DataProcessingParams, {"rows": 10, "delimiter": ":"}),
        (DataProcessingParams, {"rows": 10, "surprise": 1}),
        (EmailParams, {"recipient_count": 1, "subject": "", "body": "b"}),
        (EmailParams, {"recipient_count": 10_001, "subject": "s", "body": "b"}),
        (EmailParams, {"recipients": ["not-an-address"], "subject": "s", "body": "b"}),
        (EmailParams, {"recipient_count": 1, "subject": "s", "body": "b", "batch_size": 51}),
        (EmailParams, {"recipient_count": 1, "subject": "s", "body": "b", "rate_per_second": 0}),
        (ImageProcessingParams, {}),
        (ImageProcessingParams, {"generate_count": 201}),
        (ImageProcessingParams, {"generate_count": 1, "width": 4097}),
        (ImageProcessingParams, {"generate_count": 1, "output_format": "GIF"}),
        (ImageProcessingParams, {"generate_count": 1, "images_per_chunk": 21}),
        (ImageProcessingParams, {"generate_count": 1, "max_parallel": 0}),
        (ImageProcessingParams, {"generate_count": 1, "max_parallel": 101}),
    ],
)
def test_params_out_of_limits_are_refused(model: Any, params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        model.model_validate(params)


# ---------------------------------------------------------------- DATA_PROCESSING logic


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("12", 12.0),
        ("-3.5", -3.5),
        ("1e3", 1000.0),
        (".5", 0.5),
        ("+7", 7.0),
        ("\u0661\u0662", 12.0),
    ],
)
def test_numbers_are_parsed(cell: str, expected: float) -> None:
    assert parse_number(cell) == expected


@pytest.mark.parametrize("cell", ["abc", "1.2.3", "NaN", "inf", "-infinity", "1_000", "1e999"])
def test_non_numbers_and_non_finite_values_are_invalid(cell: str) -> None:
    assert parse_number(cell) is None


def test_generated_blocks_are_deterministic_and_seeded() -> None:
    block = generated_block(42, 3, 50, 6, ",")

    assert block == generated_block(42, 3, 50, 6, ",")
    assert block != generated_block(43, 3, 50, 6, ",")
    assert block.count("\n") == 50
    assert all(line.count(",") == 5 for line in block.splitlines())


def test_generated_parts_start_with_the_header_and_end_on_a_block() -> None:
    params = DataProcessingParams(rows=2500, columns=3, seed=1, delimiter="|")

    body, next_row = generate_part(params, 0)

    assert next_row == 2500
    lines = body.decode().splitlines()
    assert lines[0] == "int_1|price_2|measure_3"
    assert len(lines) == 2501
    second_block = generated_block(1, 1, BLOCK_ROWS, 3, "|").splitlines()
    assert lines[1 + BLOCK_ROWS : 1 + 2 * BLOCK_ROWS] == second_block


# ---------------------------------------------------------------- EMAIL logic


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("Hi {nickname}", "unknown field {nickname}"),
        ("{name.__class__}", "not a plain name"),
        ("{email[0]}", "not a plain name"),
        ("{0} and {}", "not a plain name"),
        ("Broken {", "literal braces"),
        ("{name:d}", "Unknown format code"),
        ("{index:{name}}", "nested fields"),
    ],
)
def test_bad_templates_are_refused_at_validation(body: str, error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        EmailParams(recipient_count=1, subject="s", body=body)


def test_templates_fill_builtin_and_per_recipient_fields() -> None:
    params = EmailParams(
        recipients=["ada@example.com", "bob@example.com"],
        subject="Hi {name}",
        body="{index:03d} {email} {plan} {{literal}}",
        fields={"ada@example.com": {"name": "Ada", "plan": "pro"}},
    )

    assert render(params.body, params.values(0)) == "001 ada@example.com pro {literal}"
    assert render(params.subject, params.values(1)) == "Hi bob"
    assert render(params.body, params.values(1)) == "002 bob@example.com  {literal}"


def test_generated_recipients_are_simulator_addresses_numbered_from_one() -> None:
    params = EmailParams(recipient_count=3, subject="s", body="b")

    assert [params.recipient(i) for i in range(params.total)] == [
        "success+1@simulator.amazonses.com",
        "success+2@simulator.amazonses.com",
        "success+3@simulator.amazonses.com",
    ]


# ---------------------------------------------------------------- IMAGE_PROCESSING logic


def _png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (10, 200, 30, 128)[: len(mode)]).save(out, format="PNG")
    return out.getvalue()


def test_keep_aspect_fits_within_the_box_and_never_enlarges() -> None:
    params = ImageProcessingParams(generate_count=1, width=100, height=100, output_format="PNG")

    _, wide = convert_image(_png((400, 200)), params)
    _, small = convert_image(_png((40, 20)), params)

    assert wide == (100, 50)
    assert small == (40, 20)


def test_stretch_gives_exactly_the_box_in_the_chosen_format() -> None:
    params = ImageProcessingParams(
        generate_count=1, width=30, height=70, keep_aspect=False, output_format="WEBP"
    )

    body, size = convert_image(_png((400, 200)), params)

    with Image.open(io.BytesIO(body)) as image:
        assert (image.format, image.size, size) == ("WEBP", (30, 70), (30, 70))


def test_transparent_images_become_rgb_for_jpeg() -> None:
    params = ImageProcessingParams(generate_count=1, width=50, height=50, output_format="JPEG")

    body, _ = convert_image(_png((80, 80), "RGBA"), params)

    with Image.open(io.BytesIO(body)) as image:
        assert (image.format, image.mode) == ("JPEG", "RGB")


def test_undecodable_bytes_are_rejected_not_crashed_on() -> None:
    params = ImageProcessingParams(generate_count=1)

    with pytest.raises(ImageRejected, match="not a recognised image format"):
        convert_image(b"definitely not a picture", params)
    with pytest.raises(ImageRejected):
        convert_image(_png((50, 50))[:60], params)


def test_generated_images_are_deterministic_pngs() -> None:
    first = generated_image(3)

    assert first == generated_image(3)
    assert first != generated_image(4)
    with Image.open(io.BytesIO(first)) as image:
        assert image.format == "PNG"


def test_output_names_are_numbered_and_safe() -> None:
    assert output_name(7, "uploads/a/my photo (1).JPG", "WEBP") == "0007-my_photo_1_.webp"
    assert output_name(1, "uploads/a/.png", "JPEG") == "0001-image.jpg"


@pytest.mark.parametrize("step", [1, 2, 5, 50])
@pytest.mark.parametrize("parts", [1, 2, 3, 7, 64])
@pytest.mark.parametrize("total", [1, 2, 3, 10, 49, 50, 51, 101, 1000])
def test_contiguous_ranges_cover_every_unit_once_in_whole_steps(
    total: int, parts: int, step: int
) -> None:
    # When `total` units are cut into at most `parts` ranges of whole steps
    ranges = contiguous_ranges(total, parts, step)
    # Then they follow each other from 0 to total, none empty, each unit in exactly one
    assert ranges[0][0] == 0 and ranges[-1][1] == total
    assert all(end == begin for (_, end), (begin, _) in pairwise(ranges))
    assert all(begin < end for begin, end in ranges)
    # and there are as many as asked when there are steps enough, each starting on a step
    assert len(ranges) == min(parts, -(-total // step))
    assert all(begin % step == 0 for begin, _ in ranges)
    # and they are as even as whole steps allow
    sizes = [-(-(end - begin) // step) for begin, end in ranges]
    assert max(sizes) - min(sizes) <= 1
