"""IMAGE_PROCESSING's image work: reduced-scale decoding, EXIF orientation from the header,
the memory-derived pixel limit, and quality against a full-quality resize over a grid of
sizes (all of it with IMAGE_QUALITY_GRID=full)."""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image, ImageOps
from PIL.JpegImagePlugin import JpegImageFile

from bench.work_media import GridPoint, grid_points, psnr, reference_image
from taskqueue.task_types.image_processing import (
    BYTES_PER_PIXEL,
    MIN_MAX_PIXELS,
    RESERVED_MEMORY_MB,
    ImageProcessingParams,
    ImageRejected,
    convert_image,
    draft_scale,
    fitted_image,
    max_pixels,
)


def _jpeg(size: tuple[int, int], orientation: int = 1) -> bytes:
    """A JPEG whose left half is red and right half blue, as stored, with an orientation."""
    image = Image.new("RGB", size, (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, size[0] // 2, size[1]))
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=95, exif=exif.tobytes())
    return out.getvalue()


def _box(width: int, height: int, **more: Any) -> ImageProcessingParams:
    return ImageProcessingParams(generate_count=1, width=width, height=height, **more)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pillow_does_it_on_the_full_image(orientation: int) -> None:
    # Given a 400x200 photo stored with each EXIF orientation
    data = _jpeg((400, 200), orientation)

    # When it is fitted into a 100x100 box
    image = fitted_image(data, _box(100, 100), max_pixels(1024))

    # Then it comes out upright, as a full decode plus exif_transpose would show it
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    expected = upright.resize(image.size, Image.Resampling.LANCZOS)
    assert image.size == ((50, 100) if orientation >= 5 else (100, 50))
    assert psnr(image, expected) > 30


@contextlib.contextmanager
def recorded_decodes() -> Iterator[list[tuple[int, int]]]:
    """The sizes libjpeg decodes at, in order (a spy on the JPEG plugin's load)."""
    sizes: list[tuple[int, int]] = []
    load = JpegImageFile.load

    def spy(self: JpegImageFile) -> Any:
        sizes.append(self.size)
        return load(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(JpegImageFile, "load", spy)
        yield sizes


def test_a_large_jpeg_is_decoded_at_a_reduced_scale() -> None:
    # Given a 1600x1200 JPEG
    # When it is fitted into 150x150 (stored sideways) and stretched to 160x120
    with recorded_decodes() as decoded:
        fitted = fitted_image(_jpeg((1600, 1200), 6), _box(150, 150), max_pixels(1024))
        stretched = fitted_image(_jpeg((1600, 1200)), _box(160, 120, keep_aspect=False), 10**8)

    # Then libjpeg decoded 1/4 of each side, never the full size: 1/8 would leave only
    # 1.25 times the target (200x150 for 160x120), too little for LANCZOS to remove aliasing
    assert decoded[0] == (400, 300) and fitted.size == (112, 150)
    assert decoded[1] == (400, 300) and stretched.size == (160, 120)


# (stored size, target, scale): the rule, row by row. Each side must keep at least 1.75x.
DRAFT_SCALES = [
    ((4000, 3000), (800, 600), 2),  # the photo: 1/4 would leave 1.25x
    ((6000, 4000), (800, 533), 4),
    ((4000, 3000), (100, 75), 8),
    ((1400, 1400), (100, 100), 8),  # exactly 1.75x at 1/8
    ((1399, 1400), (100, 100), 4),  # just under it on one side
    ((1600, 1200), (160, 120), 4),
    ((1000, 750), (400, 300), 1),  # 1/2 would leave 1.25x: decoded at full size
    ((300, 200), (300, 200), 1),
]


@pytest.mark.parametrize(("size", "target", "scale"), DRAFT_SCALES)
def test_the_decoding_scale_leaves_lanczos_at_least_1_75x(
    size: tuple[int, int], target: tuple[int, int], scale: int
) -> None:
    assert draft_scale(size, target) == scale


def test_a_partial_block_at_the_edge_does_not_shift_the_picture() -> None:
    # Given 1000x750 stripes (750 rows are 187.5 at 1/4: libjpeg decodes 188)
    image = Image.new("L", (1000, 750))
    for row in range(0, 750, 50):
        image.paste(255, (0, row, 1000, row + 25))
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=95)
    data = out.getvalue()

    # When it is fitted into 100 px (decoded at 1/4)
    fitted = fitted_image(data, _box(100, 100), max_pixels(1024))

    # Then the stripes are where a full decode puts them, to the last row
    assert draft_scale((1000, 750), fitted.size) == 4
    assert psnr(reference_image(data, (100, 100)), fitted) >= 40.0


# A representative part of the grid in bench/work_media.py, with the scale each decodes at:
# partial blocks (1500x1125, 1000x750), every scale, portrait, and EXIF orientations 6 and 8.
GRID_SAMPLE = [
    (GridPoint((1500, 1125), 300, "detailed"), 2),  # 31 dB before the decoded box was kept
    (GridPoint((1500, 1125), 160, "typical", orientation=6), 4),
    (GridPoint((1000, 750), 100, "typical"), 4),
    (GridPoint((1000, 750), 400, "detailed", portrait=True), 1),
    (GridPoint((2000, 1500), 400, "detailed", portrait=True, orientation=8), 2),
    (GridPoint((2000, 1500), 100, "detailed", portrait=True), 8),
]
FULL_GRID = os.environ.get("IMAGE_QUALITY_GRID") == "full"


@functools.lru_cache(maxsize=1)
def _source(point: GridPoint) -> bytes:
    return point.jpeg()


def _grid_case(point: GridPoint) -> tuple[float, tuple[int, int], tuple[int, int]]:
    """(PSNR against a full decode and LANCZOS, decoded size, stored target size)."""
    data = _source(GridPoint(point.source, 0, point.detail, point.portrait, point.orientation))
    with recorded_decodes() as sizes:
        image = fitted_image(data, _box(point.box, point.box), max_pixels(1024))
    turned = point.orientation in (5, 6, 7, 8)
    quality = psnr(reference_image(data, (point.box, point.box)), image)
    return quality, sizes[0], image.size[::-1] if turned else image.size


@pytest.mark.parametrize(("point", "scale"), GRID_SAMPLE, ids=str)
def test_quality_stays_above_40_db_across_sizes_and_orientations(
    point: GridPoint, scale: int
) -> None:
    # Given a photo-like JPEG from the grid, When it is fitted into the point's box
    quality, decoded_size, _ = _grid_case(point)

    # Then it was decoded at the expected scale and is within 40 dB of a full-quality resize
    stored = point.stored
    assert decoded_size == (math.ceil(stored[0] / scale), math.ceil(stored[1] / scale))
    assert quality >= 40.0


@pytest.mark.skipif(not FULL_GRID, reason="the whole grid: set IMAGE_QUALITY_GRID=full")
@pytest.mark.parametrize("point", grid_points() if FULL_GRID else [], ids=str)
def test_quality_stays_above_40_db_on_the_whole_grid(point: GridPoint) -> None:
    quality, decoded_size, stored_target = _grid_case(point)
    scale = draft_scale(point.stored, stored_target)
    assert decoded_size == (math.ceil(point.stored[0] / scale), math.ceil(point.stored[1] / scale))
    assert quality >= 40.0


def test_the_pixel_limit_follows_the_functions_memory() -> None:
    assert BYTES_PER_PIXEL == 12 and RESERVED_MEMORY_MB == 256
    assert max_pixels(1024) == 768 * 2**20 // 12 == 67_108_864
    assert max_pixels(3008) == 2752 * 2**20 // 12
    assert max_pixels(128) == MIN_MAX_PIXELS


def test_an_image_over_the_limit_is_rejected_before_it_is_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a PNG of 2,000,000 pixels, and a limit of 1,999,999
    out = io.BytesIO()
    Image.new("L", (2000, 1000)).save(out, format="PNG")
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded"))

    # When it is converted, it is refused without a pixel decoded
    with pytest.raises(ImageRejected, match="2000x1000 is 2000000 pixels, more than the 1999999"):
        convert_image(out.getvalue(), _box(10, 10), pixel_limit=1_999_999)


def test_pillows_own_bomb_guard_is_reported_as_too_large() -> None:
    # Given a PNG header claiming 20000x20000 pixels (Pillow refuses over 2x its 89 MP)
    out = io.BytesIO()
    Image.new("1", (20000, 20000)).save(out, format="PNG")

    # Then it is a per-image failure with a clear reason, whatever the memory
    with pytest.raises(ImageRejected, match="too large to decode"):
        convert_image(out.getvalue(), _box(10, 10), pixel_limit=10**9)
