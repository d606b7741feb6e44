"""IMAGE_PROCESSING: resize and convert uploaded (or generated) images: JPEG photos decoded
at a reduced DCT scale and resampled by libvips, everything else (and every encode) by Pillow."""

from __future__ import annotations

import functools
import io
import random
import re
import warnings
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from taskqueue.errors import ImageRejected, InvalidInput, aws_error_code
from taskqueue.form_hints import ADVANCED, Source, sources, upload
from taskqueue.models import ChunkState, TaskResult
from taskqueue.task_types import _s3
from taskqueue.task_types.base import Plan, TaskContext, Upload
from taskqueue.task_types.groups import group_of, merged_figures, plan_groups

if TYPE_CHECKING:
    from PIL.Image import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
# Bounds on one input, so a hostile upload cannot exhaust the function's memory.
MAX_INPUT_BYTES = 50 * 1024 * 1024
ORIENTATION_TAG = 0x0112
MAX_FAILURES_KEPT = 20
MAX_REASON_CHARS = 160
MAX_PARALLEL = 100
# The per-image figures a part adds up and the merge sums (its failures are kept apart).
TOTALS = ("processed", "failed", "input_bytes", "output_bytes")


class ImageProcessingParams(BaseModel):
    """Images under an upload prefix (or generated ones), resized to a box and re-encoded."""

    model_config = ConfigDict(
        extra="forbid",
        title="IMAGE_PROCESSING parameters",
        json_schema_extra=sources(
            Source("upload", "Upload images", ("input_prefix",)),
            Source("generate", "Generate test images", ("generate_count",)),
        ),
    )

    input_prefix: Annotated[str, Field(min_length=1, max_length=1024)] | None = Field(
        default=None,
        description="S3 prefix of uploaded images (under uploads/<you>/); files with an image "
        "extension are processed. Give this or generate_count.",
        examples=["uploads/alice/photos/"],
        json_schema_extra=upload(
            "image/png", "image/jpeg", "image/webp", "image/gif", target="prefix"
        ),
    )
    generate_count: Annotated[int, Field(ge=1, le=200)] | None = Field(
        default=None,
        description="Generate this many deterministic test images (1 to 200) instead of "
        "reading uploads. Give this or input_prefix.",
        examples=[12],
    )
    width: int = Field(default=256, ge=1, le=4096, description="Target width in pixels.")
    height: int = Field(default=256, ge=1, le=4096, description="Target height in pixels.")
    keep_aspect: bool = Field(
        default=True,
        description="Keep the aspect ratio and fit within width x height (never enlarging); "
        "if false, stretch to exactly width x height.",
    )
    output_format: Literal["PNG", "JPEG", "WEBP"] = Field(
        default="JPEG", description="Format of the output images."
    )
    quality: int = Field(
        default=85,
        ge=1,
        le=100,
        description="Encoder quality for JPEG and WEBP (1 to 100).",
    )
    images_per_chunk: int = Field(
        default=5,
        ge=1,
        le=20,
        description="Images processed per chunk (between checkpoints).",
        json_schema_extra=ADVANCED,
    )
    max_images: int = Field(
        default=1000,
        ge=1,
        le=1000,
        description="Process at most this many images.",
        json_schema_extra=ADVANCED,
    )
    max_parallel: int = Field(
        default=1,
        ge=1,
        le=MAX_PARALLEL,
        description="Groups of images processed at once (1: all in one run). Above 1, the "
        "images are split into that many contiguous groups (at least one chunk each), run in "
        "parallel and merged into the same result; the service may allow fewer at once.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ImageProcessingParams:
        if (self.input_prefix is None) == (self.generate_count is None):
            raise ValueError("give exactly one of input_prefix or generate_count")
        return self


# ---------------------------------------------------------------- pure image work


# What one image may cost in memory, per pixel of the stored image: a decoded RGBA copy (4),
# a converted copy (3), and a progressive JPEG's coefficient buffer (up to 2 per sample, 3
# samples) that libjpeg keeps at full size even when it decodes at a reduced scale.
BYTES_PER_PIXEL = 12
# Left to the runtime, the libraries, the input bytes and the encoded output.
RESERVED_MEMORY_MB = 256
MIN_MAX_PIXELS = 1_000_000
# The JPEG decoder can scale by 1/2, 1/4 or 1/8 while decoding (DCT scaling), far cheaper than
# a full decode. But a scaled decode is close to averaging blocks of pixels, which folds detail
# just finer than its own resolution back in (aliasing), and a Lanczos filter from the decoded
# size removes that only when it has room. So the decoder is given the largest reduction that
# still leaves MIN_RESAMPLE_RATIO between the decoded size and the target. Against a full
# decode and one LANCZOS pass, over sources of 1000 to 6000 px, targets of 100 to 1600 px and
# photo-like contents (docs/benchmarks.md), a ratio of 1.25 left as little as 35.5 dB, 1.5
# 39 dB, and 1.75 or more 42.6 dB or better everywhere. So the 4000x3000 photo to
# 800 px decodes at 1/2, not 1/4, and the resampling from 2000x1500 is most of the work.
DCT_SCALES = (8, 4, 2)
MIN_RESAMPLE_RATIO = 1.75
# Past twice this ratio, block averages (cheap) first bring the image within it; on the same
# grid that stays at 44.8 dB or better.
REDUCING_GAP = 2.0
JPEG_FORMATS = ("JPEG", "MPO")  # MPO: a JPEG with more pictures after the first (cameras)
# JPEGs that libvips decodes and resamples (vips_resizes): its lanczos3 takes 7 ms where
# Pillow's LANCZOS takes 34 (2000x1500 to 800x600), at the same quality. Pillow keeps the
# rest: other formats, CMYK JPEGs (converted to RGB as before), enlargements (libvips' reduce
# only shrinks), and JPEGs whose sides do not divide by their decoding scale.
VIPS_MODES = ("RGB", "L")
VIPS_KERNEL = "lanczos3"
# EXIF orientation -> the transpose that shows the image upright (as ImageOps.exif_transpose).
ORIENTATIONS = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
                6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}  # fmt: skip


def max_pixels(memory_mb: int) -> int:
    """The largest image (in pixels) a function with `memory_mb` of memory decodes safely."""
    return max(MIN_MAX_PIXELS, (memory_mb - RESERVED_MEMORY_MB) * 2**20 // BYTES_PER_PIXEL)


def convert_image(
    data: bytes, params: ImageProcessingParams, pixel_limit: int = max_pixels(1024)
) -> tuple[bytes, tuple[int, int]]:
    """The input re-encoded in the target format and size, and that size."""
    image = fitted_image(data, params, pixel_limit)
    return encode(image, params.output_format, params.quality), image.size


def fitted_image(data: bytes, params: ImageProcessingParams, pixel_limit: int) -> Image:
    """The input, upright, resized to the params' box. A JPEG is decoded at the most reduced
    scale that leaves the resampling room to filter (draft_scale): at full size only when the
    output is over 2/7 of the image's width or height."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # The limit below, tied to the function's memory, is the one that applies.
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            opened = PILImage.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise ImageRejected("not a recognised image format") from exc
    except PILImage.DecompressionBombError as exc:
        raise ImageRejected(f"too large to decode: {exc}") from exc
    except (OSError, SyntaxError, EOFError, ValueError) as exc:
        raise ImageRejected(f"not a readable image: {exc}") from exc
    # Not closed here: a loaded image that needs no conversion is the result itself.
    width, height = opened.size
    if width * height > pixel_limit:
        raise ImageRejected(
            f"{width}x{height} is {width * height} pixels, more than the {pixel_limit} "
            "this function's memory allows"
        )
    try:
        # Read from the file's header: no pixel is decoded yet.
        orientation = opened.getexif().get(ORIENTATION_TAG, 1)
        turned = orientation in (5, 6, 7, 8)
        target = target_size((height, width) if turned else (width, height), params)
        stored_target = (target[1], target[0]) if turned else target
        scale = draft_scale((width, height), stored_target) if opened.format in JPEG_FORMATS else 1
        if vips_resizes(opened.format, opened.mode, (width, height), stored_target, scale):
            image = _vips_fitted(data, opened, stored_target, scale)
        else:
            image = _pillow_fitted(opened, stored_target, scale)
    except ImageRejected:
        raise
    except (OSError, SyntaxError, EOFError, ValueError) as exc:
        # Pillow reports truncated or corrupt files with any of these.
        raise ImageRejected(f"not a readable image: {exc}") from exc
    if orientation in ORIENTATIONS:
        image = image.transpose(PILImage.Transpose[ORIENTATIONS[orientation]])
    return image


def vips_resizes(
    image_format: str | None,
    mode: str,
    size: tuple[int, int],
    target: tuple[int, int],
    scale: int,
) -> bool:
    """Whether libvips decodes and resizes an image (as stored) to `target`: an RGB or
    greyscale JPEG, shrunk on both sides, whose sides divide by its decoding scale (1/n).

    Where a side does not divide, the scaled decode ends in a fraction of a pixel (1125 rows
    at 1/4 are 281.25), which libvips drops and Pillow keeps. libvips' reduce centres the
    output on the whole pixels it has, shifting the picture by half the fraction, and even
    with that undone the last row or column is only a guess: a 1203x901 stripe pattern to
    100 px kept 25 dB, 34 with the shift undone, against Pillow's 46 from the exact extent."""
    return (
        image_format in JPEG_FORMATS
        and mode in VIPS_MODES
        and target[0] <= size[0]
        and target[1] <= size[1]
        and size[0] % scale == 0
        and size[1] % scale == 0
    )


def _pillow_fitted(opened: Image, target: tuple[int, int], scale: int) -> Image:
    """`opened` (as stored) resized to `target` by Pillow, a JPEG drafted at 1/`scale`."""
    from PIL import Image as PILImage

    width, height = opened.size
    # The part of the decoded image that holds the picture: a scaled decode rounds a partial
    # block at the right and bottom edges up to a whole pixel (1125 rows at 1/4 are 281.25,
    # decoded as 282), and stretching that over the target would shift every pixel by up to
    # 3/4 of one (31 dB instead of 43 for 1500x1125 to 300 px).
    region = None
    if scale > 1:
        drafted = opened.draft(None, (width // scale, height // scale))
        region = drafted[1] if drafted else None
    opened.load()
    image = _resizable(opened)
    if image.size != target:
        image = image.resize(
            target, PILImage.Resampling.LANCZOS, box=region, reducing_gap=REDUCING_GAP
        )
    return image


def _vips_fitted(data: bytes, opened: Image, target: tuple[int, int], scale: int) -> Image:
    """The JPEG `data` (`opened` its header, as stored) decoded by libvips at 1/`scale` and
    reduced to `target` with lanczos3 (vips_resizes says when)."""
    from PIL import Image as PILImage

    pyvips = _pyvips()
    width, height = opened.size
    try:
        decoded = pyvips.Image.jpegload_buffer(
            data, shrink=scale, access="sequential", fail_on="truncated"
        )
        reduced = decoded.reduce(
            width / scale / target[0],
            height / scale / target[1],
            kernel=VIPS_KERNEL,
            gap=REDUCING_GAP,
        )
        pixels = reduced.write_to_memory()
    except pyvips.Error as exc:
        raise ImageRejected(f"not a readable image: {_vips_reason(exc)}") from exc
    image = PILImage.frombytes(opened.mode, target, pixels)
    # What Pillow's path keeps with the pixels (a colour profile goes into PNG outputs).
    image.info.update(opened.info)
    return image


@functools.cache
def _pyvips() -> Any:
    """pyvips, imported at the first JPEG: other task types and cold starts never load it."""
    import pyvips  # type: ignore[import-untyped]

    # Each image is decoded once: libvips' operation cache would only keep its buffers alive.
    pyvips.cache_set_max(0)
    return pyvips


def _vips_reason(exc: Any) -> str:
    """libvips' first line about the input ("VipsJpeg: premature end of JPEG image")."""
    lines = [line.strip() for line in str(exc.detail or exc.message).splitlines()]
    return next((line for line in lines if line), "libvips could not decode it")


def draft_scale(size: tuple[int, int], target: tuple[int, int]) -> int:
    """The JPEG decoding scale (1/n) for an image of `size` resized to `target`: the largest
    reduction that leaves at least MIN_RESAMPLE_RATIO on both sides, else 1 (full size)."""
    for scale in DCT_SCALES:
        if min(size[0] / scale / target[0], size[1] / scale / target[1]) >= MIN_RESAMPLE_RATIO:
            return scale
    return 1


def target_size(size: tuple[int, int], params: ImageProcessingParams) -> tuple[int, int]:
    """The output size for an (upright) input of `size`: the box itself when stretching, else
    the largest size of the same aspect that fits in the box, never larger than the input."""
    box = (params.width, params.height)
    if not params.keep_aspect:
        return box
    width, height = size
    scale = min(box[0] / width, box[1] / height, 1.0)
    return max(1, min(box[0], round(width * scale))), max(1, min(box[1], round(height * scale)))


def encode(image: Image, output_format: str, quality: int) -> bytes:
    image = _encodable(image, output_format)
    out = io.BytesIO()
    options: dict[str, Any] = {}
    if output_format in ("JPEG", "WEBP"):
        options["quality"] = quality
    image.save(out, format=output_format, **options)
    return out.getvalue()


def _resizable(image: Image) -> Image:
    """A mode LANCZOS works in: palette and bilevel images would fall back to NEAREST."""
    if image.mode in ("P", "PA"):
        return image.convert("RGBA" if _has_alpha(image) else "RGB")
    if image.mode == "1":
        return image.convert("L")
    if image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return image.convert("RGB")
    if image.mode.startswith("I;16"):
        return image.convert("I")
    return image


def _has_alpha(image: Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def _encodable(image: Image, output_format: str) -> Image:
    """A mode the format can store; transparency becomes white where the format has none."""
    from PIL import Image as PILImage

    if output_format == "JPEG":
        if image.mode in ("RGB", "L"):
            return image
        if _has_alpha(image):
            rgba = image.convert("RGBA")
            flat = PILImage.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            return flat
        return image.convert("RGB")
    if output_format == "WEBP":
        if image.mode in ("RGB", "RGBA"):
            return image
        return image.convert("RGBA" if _has_alpha(image) else "RGB")
    if image.mode in ("1", "L", "LA", "I", "P", "RGB", "RGBA"):
        return image
    return image.convert("RGBA" if _has_alpha(image) else "RGB")


def generated_image(number: int) -> bytes:
    """Test image `number` as PNG: a pure function of the number.

    Sizes, aspect ratios and modes vary (some RGBA), so resizing and mode handling get used.
    """
    from PIL import Image, ImageDraw

    rng = random.Random(f"image:{number}")
    width = 64 + rng.randrange(0, 600)
    height = 64 + rng.randrange(0, 600)
    ramp = Image.linear_gradient("L").rotate(rng.choice((0, 90, 180, 270))).resize((width, height))
    tint = tuple(rng.randrange(0, 256) for _ in range(3))
    image = Image.merge(
        "RGB", [ramp, ramp.point(lambda v: 255 - v), Image.new("L", ramp.size, tint[2])]
    )
    if number % 3 == 0:
        image = image.convert("RGBA")
        image.putalpha(ramp)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randrange(2, 6)):
        x0, y0 = rng.randrange(0, width), rng.randrange(0, height)
        x1, y1 = x0 + rng.randrange(8, width // 2 + 9), y0 + rng.randrange(8, height // 2 + 9)
        color = (*tint[:2], rng.randrange(0, 256))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=color)
        else:
            draw.rectangle((x0, y0, x1, y1), outline=color, width=3)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def output_name(number: int, source_key: str, output_format: str) -> str:
    """Numbered, so two inputs with the same file name in different folders never collide."""
    stem = source_key.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:100] or "image"
    return f"{number:04d}-{safe}.{EXTENSIONS[output_format]}"


# ---------------------------------------------------------------- the task type


class ImageProcessing:
    name = "IMAGE_PROCESSING"
    description = "Resize images to fit a box and convert them to PNG, JPEG or WEBP."
    progress_unit = "images"
    params_model: type[BaseModel] = ImageProcessingParams
    # Checked by the API at submit (a 422 rather than a task that FAILS later).
    uploads: Mapping[str, Upload] = MappingProxyType({"input_prefix": Upload.FOLDER})

    def start(self, params: ImageProcessingParams, ctx: TaskContext) -> ChunkState:
        params = ImageProcessingParams.model_validate(params)
        data: dict[str, Any] = {
            "manifest": None,
            "processed": 0,
            "failed": 0,
            "failures": [],
            "input_bytes": 0,
            "output_bytes": 0,
        }
        if params.input_prefix is None:
            return ChunkState(units_total=params.generate_count or 0, cursor=0, data=data)
        _s3.require_under(params.input_prefix, ctx.uploads_prefix, "input_prefix")
        images: list[list[Any]] = []
        for key, size in _s3.iter_keys(ctx.s3, ctx.bucket, params.input_prefix):
            if key.lower().endswith(IMAGE_EXTENSIONS):
                images.append([key, size])
                if len(images) >= params.max_images:
                    break
        if not images:
            raise InvalidInput(
                f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {params.input_prefix!r}"
            )
        # Up to 1000 keys are far too many for the checkpoint; the cursor indexes this list.
        data["manifest"] = ctx.results_prefix + "manifest.json"
        _s3.put_json(ctx.s3, ctx.bucket, data["manifest"], {"images": images})
        return ChunkState(units_total=len(images), cursor=0, data=data)

    def run_chunk(
        self, params: ImageProcessingParams, state: ChunkState, ctx: TaskContext
    ) -> ChunkState:
        params = ImageProcessingParams.model_validate(params)
        data = dict(state.data)
        failures = list(data["failures"])
        images = (
            _s3.get_json(ctx.s3, ctx.bucket, data["manifest"])["images"]
            if data["manifest"]
            else None
        )
        pixel_limit = max_pixels(ctx.memory_mb)
        begin, end, prefix = group_of(state, state.units_total, ctx)
        first: int = state.cursor
        for index in range(first, min(first + params.images_per_chunk, end)):
            key = self._key(index, images, prefix)
            try:
                source = self._source(index, key, images, ctx)
                data["input_bytes"] += len(source)
                body, _ = convert_image(source, params, pixel_limit)
            except ImageRejected as exc:
                data["failed"] += 1
                if len(failures) < MAX_FAILURES_KEPT:
                    failures.append({"key": key, "reason": str(exc)[:MAX_REASON_CHARS]})
                continue
            out_key = prefix + "output/" + output_name(index + 1, key, params.output_format)
            ctx.s3.put_object(
                Bucket=ctx.bucket,
                Key=out_key,
                Body=body,
                ContentType=CONTENT_TYPES[params.output_format],
            )
            data["processed"] += 1
            data["output_bytes"] += len(body)
        cursor = min(first + params.images_per_chunk, end)
        data["failures"] = failures
        return ChunkState(
            units_total=state.units_total,
            units_done=cursor - begin,
            cursor=cursor,
            data=data,
            done=cursor >= end,
        )

    def finish(
        self, params: ImageProcessingParams, state: ChunkState, ctx: TaskContext
    ) -> TaskResult:
        return self._report(params, ctx, state.units_total, state.data)

    # ------------------------------------------------------------ in parallel groups

    def plan(
        self, params: ImageProcessingParams, state: ChunkState, ctx: TaskContext
    ) -> Plan | None:
        """Contiguous groups of the images listed by the start (whole chunks each), before
        any is processed; None to process them in one run. Each group writes its outputs
        (and generated sources) where the whole run would, numbered by the image's place in
        the whole list, so the merged result is the same, output for output."""
        params = ImageProcessingParams.model_validate(params)
        return plan_groups(
            state, ctx, state.units_total, params.max_parallel, params.images_per_chunk
        )

    def finish_part(
        self, params: ImageProcessingParams, state: ChunkState, ctx: TaskContext
    ) -> TaskResult:
        """The group's range and totals, and its first failures (no verdict of its own: a
        group whose every image failed fails the task only if every other group's did)."""
        data = state.data
        summary = {name: data[name] for name in ("begin", "end", *TOTALS, "failures")}
        return TaskResult(summary=summary)

    def verify(
        self, params: ImageProcessingParams, results: list[dict[str, Any]], ctx: TaskContext
    ) -> dict[int, ChunkState]:
        return {}  # groups begin where the listing says: no guess to check

    def merge(
        self,
        params: ImageProcessingParams,
        state: ChunkState,
        results: list[dict[str, Any]],
        ctx: TaskContext,
    ) -> TaskResult:
        """The groups' totals added up and their failures joined in image order (the first
        MAX_FAILURES_KEPT of all, as one run keeps them): the result of one run."""
        merged = merged_figures(results, TOTALS, MAX_FAILURES_KEPT)
        return self._report(params, ctx, merged["items"], merged)

    def _report(
        self,
        params: ImageProcessingParams,
        ctx: TaskContext,
        images: int,
        data: Mapping[str, Any],
    ) -> TaskResult:
        """The task's result of `images` images and their totals; result.json written."""
        params = ImageProcessingParams.model_validate(params)
        # The outputs are listed, not carried in the checkpoint, which must stay small.
        outputs = [
            key for key, _ in _s3.iter_keys(ctx.s3, ctx.bucket, ctx.results_prefix + "output/")
        ]
        summary = {
            "images": images,
            "processed": data["processed"],
            "failed": data["failed"],
            "input_bytes": data["input_bytes"],
            "output_bytes": data["output_bytes"],
            "width": params.width,
            "height": params.height,
            "keep_aspect": params.keep_aspect,
            "format": params.output_format,
            "failures": data["failures"],
        }
        key = ctx.results_prefix + "result.json"
        _s3.put_json(ctx.s3, ctx.bucket, key, {**summary, "outputs": outputs})
        return TaskResult(
            summary=summary,
            location=_s3.s3_uri(ctx.bucket, key),
            outputs=outputs,
            total_items=images,
            failed_items=data["failed"],
        )

    def _key(self, index: int, images: list[list[Any]] | None, prefix: str) -> str:
        if images is None:
            return prefix + f"source/image-{index + 1:03d}.png"
        return str(images[index][0])

    def _source(
        self, index: int, key: str, images: list[list[Any]] | None, ctx: TaskContext
    ) -> bytes:
        """The bytes of input `index`, or ImageRejected when it cannot be read whole."""
        if images is None:
            # Generated inputs are made here, one at a time, and kept beside the outputs.
            body = generated_image(index + 1)
            ctx.s3.put_object(Bucket=ctx.bucket, Key=key, Body=body, ContentType="image/png")
            return body
        if images[index][1] > MAX_INPUT_BYTES:
            raise ImageRejected(f"larger than {MAX_INPUT_BYTES} bytes")
        try:
            return _s3.read_bytes(ctx.s3, ctx.bucket, key)
        except ClientError as exc:
            if aws_error_code(exc) in _s3.MISSING_CODES:
                # Deleted since the listing: that image fails, the others go on.
                raise ImageRejected("no longer exists") from exc
            raise


IMAGE_PROCESSING = ImageProcessing()
