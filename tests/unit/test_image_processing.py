"""IMAGE_PROCESSING's image work: reduced-scale decoding, EXIF orientation from the header,
the memory-derived pixel limit, and quality against a full-quality resize."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image, ImageOps
from PIL.JpegImagePlugin import JpegImageFile

from bench.work_media import photo_jpeg, psnr, reference_image
from taskqueue.task_types.image_processing import (
    BYTES_PER_PIXEL,
    MIN_MAX_PIXELS,
    RESERVED_MEMORY_MB,
    ImageProcessingParams,
    ImageRejected,
    convert_image,
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


def test_a_large_jpeg_is_decoded_at_a_reduced_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a 1600x1200 JPEG and a decoder that reports the size it decodes at
    decoded: list[tuple[int, int]] = []
    load = JpegImageFile.load

    def spy(self: JpegImageFile) -> Any:
        decoded.append(self.size)
        return load(self)

    monkeypatch.setattr(JpegImageFile, "load", spy)

    # When it is fitted into 150x150 (and stretched to 160x120)
    fitted = fitted_image(_jpeg((1600, 1200), 6), _box(150, 150), max_pixels(1024))
    stretched = fitted_image(_jpeg((1600, 1200)), _box(160, 120, keep_aspect=False), 10**8)

    # Then libjpeg decoded 1/8 of each side (1.25 times the box), never the full size
    assert decoded[0] == (200, 150) and fitted.size == (112, 150)
    assert decoded[1] == (200, 150) and stretched.size == (160, 120)


def test_quality_stays_above_40_db_against_a_full_quality_resize() -> None:
    # Given a photo-like JPEG, fitted as the 4000x3000 to 800 px is (a 1/4 decode)
    data = photo_jpeg(2000, 1500)

    # When fitted into 400 px
    image = fitted_image(data, _box(400, 400), max_pixels(1024))

    # Then it is within 40 dB of a full decode and one LANCZOS pass
    assert psnr(reference_image(data, (400, 400)), image) >= 40.0


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
