"""What a params model declares for the page's submit form beyond plain JSON Schema: upload
fields, a choice between input sources, and advanced fields. The page reads these `x-` keys
from GET /task-types and detects nothing by a field's name.

    class Params(BaseModel):
        model_config = ConfigDict(json_schema_extra=sources(
            Source("upload", "Upload a CSV file", ("input_key",)),
            Source("generate", "Generate test data", ("rows", "columns", "seed")),
        ))
        input_key: str | None = Field(default=None, json_schema_extra=upload("text/csv"))
        chunk_bytes: int = Field(default=1024, json_schema_extra=ADVANCED)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

UploadTarget = Literal["key", "prefix"]
ADVANCED: dict[str, Any] = {"x-advanced": True}


class Source(NamedTuple):
    """One way of giving a task its input: the fields that belong to it, given together."""

    name: str
    label: str
    fields: Sequence[str]


def upload(*content_types: str, target: UploadTarget = "key") -> dict[str, Any]:
    """A field filled by uploading through POST /uploads: with the object's key, or (target
    "prefix") with the folder of several files. Only these content types may be chosen."""
    if not content_types:
        raise ValueError("an upload field accepts at least one content type")
    return {"x-upload": {"accept": list(content_types), "target": target}}


def sources(*choices: Source) -> dict[str, Any]:
    """Exactly one of these sources is given; the form offers them as an explicit choice and
    sends the fields of the chosen one only."""
    if len(choices) < 2:
        raise ValueError("a choice needs at least two sources")
    return {
        "x-sources": [{"name": c.name, "label": c.label, "fields": list(c.fields)} for c in choices]
    }


def error_at(model: str, field: str, message: str, value: Any) -> ValidationError:
    """A validation error located at `field`, for a rule checked across fields (a model
    validator), so that the API's error `loc` names the field and the page shows it there."""
    return ValidationError.from_exception_data(
        model,
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", "{message}", {"message": message}),
                loc=(field,),
                input=value,
            )
        ],
    )
