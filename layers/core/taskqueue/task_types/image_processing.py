"""IMAGE_PROCESSING: resize and convert uploaded (or generated) images with Pillow."""

from __future__ import annotations

import io
import random
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from taskqueue.form_hints import ADVANCED, Source, sources, upload
from taskqueue.models import ChunkState, TaskResult
from taskqueue.task_types import _s3
from taskqueue.task_types.base import TaskContext

if TYPE_CHECKING:
    from PIL.Image import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
# Bounds on one input, so a hostile upload cannot exhaust the function's memory.
MAX_INPUT_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 60_000_000
MAX_FAILURES_KEPT = 20
MAX_REASON_CHARS = 160


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

    @model_validator(mode="after")
    def _one_source(self) -> ImageProcessingParams:
        if (self.input_prefix is None) == (self.generate_count is None):
            raise ValueError("give exactly one of input_prefix or generate_count")
        return self


# ---------------------------------------------------------------- pure image work


class ImageRejected(ValueError):
    """An input that cannot be turned into an output; recorded, never fatal to the task."""


def convert_image(data: bytes, params: ImageProcessingParams) -> tuple[bytes, tuple[int, int]]:
    """The input re-encoded in the target format and size, and that size."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            if opened.width * opened.height > MAX_PIXELS:
                raise ImageRejected(
                    f"{opened.width}x{opened.height} has more than {MAX_PIXELS} pixels"
                )
            # Rotate by the EXIF orientation first, so the box applies to the image as seen.
            image = ImageOps.exif_transpose(opened)
            image.load()
    except UnidentifiedImageError as exc:
        raise ImageRejected("not a recognised image format") from exc
    except ImageRejected:
        raise
    except (OSError, SyntaxError, EOFError, ValueError, Image.DecompressionBombError) as exc:
        # Pillow reports truncated or corrupt files with any of these.
        raise ImageRejected(f"not a readable image: {exc}") from exc
    image = _resizable(image)
    box = (params.width, params.height)
    if params.keep_aspect:
        image.thumbnail(box, Image.Resampling.LANCZOS)
    else:
        image = image.resize(box, Image.Resampling.LANCZOS)
    image = _encodable(image, params.output_format)
    out = io.BytesIO()
    options: dict[str, Any] = {}
    if params.output_format in ("JPEG", "WEBP"):
        options["quality"] = params.quality
    image.save(out, format=params.output_format, **options)
    return out.getvalue(), image.size


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
            raise ValueError(
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
        first: int = state.cursor
        for index in range(first, min(first + params.images_per_chunk, state.units_total)):
            key, source = self._source(index, images, ctx)
            data["input_bytes"] += len(source) if source is not None else 0
            try:
                if source is None:
                    raise ImageRejected(f"larger than {MAX_INPUT_BYTES} bytes")
                body, _ = convert_image(source, params)
            except ImageRejected as exc:
                data["failed"] += 1
                if len(failures) < MAX_FAILURES_KEPT:
                    failures.append({"key": key, "reason": str(exc)[:MAX_REASON_CHARS]})
                continue
            out_key = (
                ctx.results_prefix + "output/" + output_name(index + 1, key, params.output_format)
            )
            ctx.s3.put_object(
                Bucket=ctx.bucket,
                Key=out_key,
                Body=body,
                ContentType=CONTENT_TYPES[params.output_format],
            )
            data["processed"] += 1
            data["output_bytes"] += len(body)
        cursor = min(first + params.images_per_chunk, state.units_total)
        data["failures"] = failures
        return ChunkState(
            units_total=state.units_total,
            units_done=cursor,
            cursor=cursor,
            data=data,
            done=cursor >= state.units_total,
        )

    def finish(
        self, params: ImageProcessingParams, state: ChunkState, ctx: TaskContext
    ) -> TaskResult:
        params = ImageProcessingParams.model_validate(params)
        data = state.data
        # The outputs are listed, not carried in the checkpoint, which must stay small.
        outputs = [
            key for key, _ in _s3.iter_keys(ctx.s3, ctx.bucket, ctx.results_prefix + "output/")
        ]
        summary = {
            "images": state.units_total,
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
        return TaskResult(summary=summary, location=_s3.s3_uri(ctx.bucket, key), outputs=outputs)

    def _source(
        self, index: int, images: list[list[Any]] | None, ctx: TaskContext
    ) -> tuple[str, bytes | None]:
        """The key and bytes of input `index`; None for bytes when it is too big to read."""
        if images is None:
            # Generated inputs are made here, one at a time, and kept beside the outputs.
            key = ctx.results_prefix + f"source/image-{index + 1:03d}.png"
            body = generated_image(index + 1)
            ctx.s3.put_object(Bucket=ctx.bucket, Key=key, Body=body, ContentType="image/png")
            return key, body
        key, size = images[index]
        if size > MAX_INPUT_BYTES:
            return key, None
        return key, _s3.read_bytes(ctx.s3, ctx.bucket, key)


IMAGE_PROCESSING = ImageProcessing()
