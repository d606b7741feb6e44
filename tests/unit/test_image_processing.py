"""IMAGE_PROCESSING's image work: reduced-scale decoding, which library resizes what, EXIF
orientation from the header, the memory-derived pixel limit, and quality against a
full-quality resize over a grid of sizes (all of it with IMAGE_QUALITY_GRID=full)."""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from PIL import Image, ImageOps
from PIL.JpegImagePlugin import JpegImageFile

from bench.work_media import GridPoint, grid_points, psnr, reference_image
from taskqueue.errors import ImageRejected
from taskqueue.task_types.image_processing import (
    BYTES_PER_PIXEL,
    MIN_MAX_PIXELS,
    RESERVED_MEMORY_MB,
    ImageProcessingParams,
    _pyvips,
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


@dataclass
class Decodes:
    """What each library decoded: libvips' JPEG scales (1/n) and sizes, Pillow's JPEG sizes."""

    vips: list[tuple[int, tuple[int, int]]] = field(default_factory=list)
    pillow: list[tuple[int, int]] = field(default_factory=list)


@contextlib.contextmanager
def recorded_decodes() -> Iterator[Decodes]:
    """Spies on libvips' JPEG loader and on Pillow's JPEG plugin's load."""
    decodes = Decodes()
    pyvips = _pyvips()
    vips_load = pyvips.Image.jpegload_buffer
    pillow_load = JpegImageFile.load

    def vips_spy(data: bytes, **options: Any) -> Any:
        decoded = vips_load(data, **options)
        decodes.vips.append((options["shrink"], (decoded.width, decoded.height)))
        return decoded

    def pillow_spy(self: JpegImageFile) -> Any:
        if self.tile:  # not yet decoded: later calls return the pixels already there
            decodes.pillow.append(self.size)
        return pillow_load(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pyvips.Image, "jpegload_buffer", vips_spy)
        patch.setattr(JpegImageFile, "load", pillow_spy)
        yield decodes


def test_a_large_jpeg_is_decoded_at_a_reduced_scale() -> None:
    # Given a 1600x1200 JPEG
    # When it is fitted into 150x150 (stored sideways) and stretched to 160x120
    with recorded_decodes() as decoded:
        fitted = fitted_image(_jpeg((1600, 1200), 6), _box(150, 150), max_pixels(1024))
        stretched = fitted_image(_jpeg((1600, 1200)), _box(160, 120, keep_aspect=False), 10**8)

    # Then libvips decoded 1/4 of each side, never the full size: 1/8 would leave only
    # 1.25 times the target (200x150 for 160x120), too little for lanczos3 to remove aliasing
    assert decoded.vips == [(4, (400, 300)), (4, (400, 300))] and decoded.pillow == []
    assert fitted.size == (112, 150) and stretched.size == (160, 120)


def _cmyk_jpeg(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("CMYK", size, (0, 200, 200, 20)).save(out, format="JPEG", quality=95)
    return out.getvalue()


def _png(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (0, 0, 255)).save(out, format="PNG")
    return out.getvalue()


# (input, box, keep_aspect, libvips' decodes, Pillow's JPEG decodes, output size and mode)
WHICH_LIBRARY = [
    ("RGB JPEG", lambda: _jpeg((800, 600)), (200, 200), True, [(2, (400, 300))], [], ((200, 150), "RGB")),
    ("greyscale JPEG", lambda: _grey_jpeg((800, 600)), (100, 100), True, [(4, (200, 150))], [], ((100, 75), "L")),
    ("MPO, its first picture", lambda: _mpo((800, 600)), (100, 100), True, [(4, (200, 150))], [], ((100, 75), "RGB")),
    ("CMYK JPEG, to RGB", lambda: _cmyk_jpeg((800, 600)), (100, 100), True, [], [(200, 150)], ((100, 75), "RGB")),
    ("JPEG whose sides do not divide by its scale", lambda: _jpeg((1000, 750)), (100, 100), True, [], [(250, 188)], ((100, 75), "RGB")),
    ("JPEG enlarged on one side", lambda: _jpeg((800, 600)), (100, 900), False, [], [(800, 600)], ((100, 900), "RGB")),
    ("PNG", lambda: _png((800, 600)), (100, 100), True, [], [], ((100, 75), "RGB")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "box", "keep_aspect", "vips", "pillow", "output"),
    [case[1:] for case in WHICH_LIBRARY],
    ids=[case[0] for case in WHICH_LIBRARY],
)
def test_libvips_resizes_rgb_and_greyscale_jpegs_and_pillow_the_rest(
    data: Any,
    box: tuple[int, int],
    keep_aspect: bool,
    vips: list[Any],
    pillow: list[Any],
    output: tuple[tuple[int, int], str],
) -> None:
    # Given an input
    source = data()

    # When it is fitted into the box
    with recorded_decodes() as decoded:
        image = fitted_image(source, _box(*box, keep_aspect=keep_aspect), max_pixels(1024))

    # Then the library that decoded it, at the scale given, and the result's size and mode
    assert (decoded.vips, decoded.pillow) == (vips, pillow)
    assert (image.size, image.mode) == output


def _grey_jpeg(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(_jpeg(size))).convert("L").save(out, format="JPEG", quality=95)
    return out.getvalue()


def _mpo(size: tuple[int, int]) -> bytes:
    """A camera's MPO: a red picture, then a blue one (the second view)."""
    out = io.BytesIO()
    red, blue = Image.new("RGB", size, (255, 0, 0)), Image.new("RGB", size, (0, 0, 255))
    red.save(out, format="MPO", save_all=True, append_images=[blue])
    return out.getvalue()


def test_a_cmyk_jpeg_has_the_colours_pillow_converts_it_to() -> None:
    data = _cmyk_jpeg((800, 600))

    image = fitted_image(data, _box(100, 100), max_pixels(1024))

    expected = Image.open(io.BytesIO(data)).convert("RGB").resize((100, 75))
    assert psnr(image, expected) >= 40.0


def test_a_jpeg_cut_short_is_rejected_with_libvips_reason() -> None:
    # Given a JPEG whose header is whole but whose picture data stops halfway
    data = _jpeg((800, 600))
    cut = data[: len(data) // 2]

    # When it is fitted, Then it is a per-image failure that says why
    with pytest.raises(
        ImageRejected, match=r"^not a readable image: VipsJpeg: premature end of JPEG image$"
    ):
        fitted_image(cut, _box(100, 100), max_pixels(1024))


def test_a_jpegs_colour_profile_goes_into_a_png_output_as_before() -> None:
    # Given a JPEG with an ICC profile (sRGB, as Pillow's ImageCms builds it)
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out = io.BytesIO()
    Image.open(io.BytesIO(_jpeg((800, 600)))).save(out, format="JPEG", icc_profile=profile)

    # When it is converted to PNG
    body, _ = convert_image(out.getvalue(), _box(100, 100, output_format="PNG"))

    # Then the PNG carries the profile, as Pillow's own path always did
    assert Image.open(io.BytesIO(body)).info["icc_profile"] == profile


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


# Sizes whose last DCT block is partial at the scale they decode at: (size, box, scale).
PARTIAL_BLOCKS = [
    ((1000, 750), 100, 4),  # 187.5 rows
    ((1500, 1125), 160, 4),  # 281.25 rows
    ((1203, 901), 100, 4),  # 300.75 x 225.25
    ((1500, 1125), 100, 8),  # 187.5 x 140.625
]


def _stripes(size: tuple[int, int], across: bool) -> bytes:
    """A JPEG of 25 px white stripes every 100 px: across (horizontal) or down (vertical)."""
    image = Image.new("L", size)
    for start in range(0, size[1] if across else size[0], 100):
        image.paste(
            255, (0, start, size[0], start + 25) if across else (start, 0, start + 25, size[1])
        )
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=95)
    return out.getvalue()


@pytest.mark.parametrize("across", [True, False], ids=["across", "down"])
@pytest.mark.parametrize(("size", "box", "scale"), PARTIAL_BLOCKS, ids=str)
def test_a_partial_block_at_the_edge_does_not_shift_the_picture(
    size: tuple[int, int], box: int, scale: int, across: bool
) -> None:
    # Given stripes in a JPEG whose last DCT block is partial at its scale
    data = _stripes(size, across)

    # When it is fitted into the box
    with recorded_decodes() as decoded:
        fitted = fitted_image(data, _box(box, box), max_pixels(1024))

    # Then Pillow decoded it at that scale, the partial block's last pixel with it, and the
    # stripes are where a full decode puts them, to the last row and column: the scaled
    # decode's own aliasing of hard edges leaves 37.3 dB or more; libvips, which drops that
    # pixel and centres what is left, left 21 to 34 dB on the side that does not divide
    assert decoded.vips == []
    assert decoded.pillow == [(math.ceil(size[0] / scale), math.ceil(size[1] / scale))]
    assert psnr(reference_image(data, (box, box)), fitted) >= 37.0


# A representative part of the grid in bench/work_media.py, with the scale each decodes at and
# the library that resizes it: partial blocks (1500x1125, 1000x750, 1500 rows at 1/8), every
# scale, portrait, and EXIF orientations 6 and 8.
GRID_SAMPLE = [
    (GridPoint((1500, 1125), 300, "detailed"), 2, "Pillow"),  # 31 dB before the box was kept
    (GridPoint((1500, 1125), 160, "typical", orientation=6), 4, "Pillow"),
    (GridPoint((1000, 750), 100, "typical"), 4, "Pillow"),
    (GridPoint((1000, 750), 400, "detailed", portrait=True), 1, "libvips"),
    (GridPoint((2000, 1500), 400, "detailed", portrait=True, orientation=8), 2, "libvips"),
    (GridPoint((2000, 1500), 100, "detailed", portrait=True), 8, "Pillow"),
    (GridPoint((3000, 2000), 300, "detailed", orientation=6), 4, "libvips"),
]
FULL_GRID = os.environ.get("IMAGE_QUALITY_GRID") == "full"


@functools.lru_cache(maxsize=1)
def _source(point: GridPoint) -> bytes:
    return point.jpeg()


def _grid_case(point: GridPoint) -> tuple[float, int, str, tuple[int, int]]:
    """(PSNR against a full decode and LANCZOS, the scale (1/n) and the library that decoded
    it, stored target size)."""
    data = _source(GridPoint(point.source, 0, point.detail, point.portrait, point.orientation))
    with recorded_decodes() as decoded:
        image = fitted_image(data, _box(point.box, point.box), max_pixels(1024))
    turned = point.orientation in (5, 6, 7, 8)
    quality = psnr(reference_image(data, (point.box, point.box)), image)
    stored = point.stored
    if decoded.vips:
        [(scale, size)] = decoded.vips
        assert size == (stored[0] // scale, stored[1] // scale)
        library = "libvips"
    else:
        [size] = decoded.pillow
        [scale] = [n for n in (1, 2, 4, 8) if size == (-(-stored[0] // n), -(-stored[1] // n))]
        library = "Pillow"
    return quality, scale, library, image.size[::-1] if turned else image.size


@pytest.mark.parametrize(("point", "scale", "library"), GRID_SAMPLE, ids=str)
def test_quality_stays_above_40_db_across_sizes_and_orientations(
    point: GridPoint, scale: int, library: str
) -> None:
    # Given a photo-like JPEG from the grid, When it is fitted into the point's box
    quality, decoded_scale, decoded_by, _ = _grid_case(point)

    # Then it was decoded at the expected scale, by the expected library, and is within
    # 40 dB of a full-quality resize
    assert (decoded_scale, decoded_by) == (scale, library)
    assert quality >= 40.0


@pytest.mark.skipif(not FULL_GRID, reason="the whole grid: set IMAGE_QUALITY_GRID=full")
@pytest.mark.parametrize("point", grid_points() if FULL_GRID else [], ids=str)
def test_quality_stays_above_40_db_on_the_whole_grid(point: GridPoint) -> None:
    quality, decoded_scale, decoded_by, stored_target = _grid_case(point)
    assert decoded_scale == draft_scale(point.stored, stored_target)
    whole = point.stored[0] % decoded_scale == 0 and point.stored[1] % decoded_scale == 0
    assert decoded_by == ("libvips" if whole else "Pillow")
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
