"""Pure logic of the task types: registry, params, accumulators, line alignment, templates."""

from __future__ import annotations

import io
import math
import random
import statistics
from typing import Any

import pytest
from PIL import Image
from pydantic import ValidationError

from taskqueue.task_types import REGISTRY, get_task_type, task_types
from taskqueue.task_types.data_processing import (
    BLOCK_ROWS,
    ColumnStats,
    DataProcessingParams,
    Moments,
    complete_lines_length,
    generate_part,
    generated_block,
    parse_number,
    parse_records,
    tally_rows,
)
from taskqueue.task_types.email import EmailParams, render
from taskqueue.task_types.image_processing import (
    ImageProcessingParams,
    ImageRejected,
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
    ],
)
def test_params_out_of_limits_are_refused(model: Any, params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        model.model_validate(params)


# ---------------------------------------------------------------- DATA_PROCESSING logic


@pytest.mark.parametrize(
    ("cell", "expected"),
    [("12", 12.0), ("-3.5", -3.5), ("1e3", 1000.0), (".5", 0.5), ("+7", 7.0)],
)
def test_numbers_are_parsed(cell: str, expected: float) -> None:
    assert parse_number(cell) == expected


@pytest.mark.parametrize("cell", ["abc", "1.2.3", "NaN", "inf", "-infinity", "1_000", "1e999"])
def test_non_numbers_and_non_finite_values_are_invalid(cell: str) -> None:
    assert parse_number(cell) is None


def _moments(values: list[float]) -> Moments:
    moments = Moments()
    for value in values:
        moments.add(value)
    return moments


def test_merged_chunk_moments_equal_the_whole_stream() -> None:
    rng = random.Random(7)
    values = [rng.gauss(1e6, 50) for _ in range(5000)]
    cuts = sorted(rng.sample(range(1, len(values)), 40))
    merged = Moments()
    for a, b in zip([0, *cuts], [*cuts, len(values)], strict=True):
        merged = merged.merge(_moments(values[a:b]))

    assert merged.count == len(values)
    assert merged.mean == pytest.approx(statistics.fmean(values), rel=1e-12)
    assert merged.total == pytest.approx(math.fsum(values), rel=1e-12)
    assert merged.std_population == pytest.approx(statistics.pstdev(values), rel=1e-9)
    assert merged.std_sample == pytest.approx(statistics.stdev(values), rel=1e-9)
    assert (merged.minimum, merged.maximum) == (min(values), max(values))


def test_merging_with_an_empty_side_changes_nothing() -> None:
    some = _moments([1.0, 2.0, 4.0])

    assert Moments().merge(some) == some
    assert some.merge(Moments()) == some
    assert _moments([5.0]).std_sample is None
    assert Moments().std_population is None


def test_column_stats_survive_their_json_form() -> None:
    column = ColumnStats(_moments([1.5, -2.0]), empty=3, invalid=1)

    assert ColumnStats.from_json(column.to_json()) == column
    assert ColumnStats.from_json(ColumnStats(Moments()).to_json()) == ColumnStats(Moments())


@pytest.mark.parametrize(
    ("data", "at_eof", "expected"),
    [
        (b"a,b\n1,2\n3,", False, 8),
        (b"a,b\r\n1,2\r\n3", False, 10),
        (b"no newline yet", False, 0),
        (b"1,2\n3,4", True, 7),
        (b"1,2\n", False, 4),
        (b"", True, 0),
    ],
)
def test_a_chunk_ends_after_its_last_newline(data: bytes, at_eof: bool, expected: int) -> None:
    assert complete_lines_length(data, at_eof) == expected


def test_records_parse_crlf_quotes_and_a_byte_order_mark() -> None:
    data = '\ufeffa;b\r\n"x;y";2\r\n\r\n3;"4"'.encode()

    assert parse_records(data, ";", first=True) == [["a", "b"], ["x;y", "2"], [], ["3", "4"]]


def test_tally_counts_empty_invalid_missing_and_ragged_cells() -> None:
    records = [["1", " ", "x"], ["2"], [], ["3", "4", "5", "6"]]

    tally = tally_rows(records, width=3)

    assert (tally.rows, tally.ragged_rows) == (3, 2)
    first, second, third = tally.columns
    assert (first.moments.count, first.moments.total, first.empty) == (3, 6.0, 0)
    assert (second.moments.count, second.empty) == (1, 2)
    assert (third.moments.count, third.empty, third.invalid) == (1, 1, 1)


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


def test_generated_recipients_are_numbered_from_one() -> None:
    params = EmailParams(recipient_count=3, subject="s", body="b")

    assert [params.recipient(i) for i in range(params.total)] == [
        "user1@example.com",
        "user2@example.com",
        "user3@example.com",
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
