"""Writes the client's models (`taskqueue_client/models.py`) from the API's OpenAPI document.

The API's pydantic models are the source of truth; `GET /openapi.json` is their published form;
this turns every schema a route takes or returns into a frozen stdlib dataclass (the client
depends on no model library). A test regenerates the file from the document the code serves and
fails while the two differ, so the client cannot drift from the API.

    .venv/bin/python client/tools/generate_models.py            # document built in-process
    .venv/bin/python client/tools/generate_models.py URL|FILE   # a served or saved document
"""

from __future__ import annotations

import json
import keyword
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "client" / "src" / "taskqueue_client" / "models.py"
EXTRA_FIELD = "extra"
HEADER = '''\
"""Models of the tasks API, generated from its OpenAPI document: do not edit.

Regenerate with `python client/tools/generate_models.py` after the API's models change (a test
fails until this file matches the document). Responses keep fields this client does not know
yet in `extra`, so an API that gained a field still decodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal
'''

Schema = dict[str, Any]


class UnsupportedSchema(ValueError):
    """A schema shape this generator does not turn into a type (say which, never guess)."""


def ref_name(ref: str) -> str:
    prefix = "#/components/schemas/"
    if not ref.startswith(prefix):
        raise UnsupportedSchema(f"reference outside the components: {ref}")
    return ref[len(prefix) :]


def refs_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield ref_name(value)
            else:
                yield from refs_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs_in(item)


def used_schemas(document: Schema) -> list[str]:
    """Schemas the routes take or return, and those they refer to, in the document's order.

    Powertools also lists its own validation-error schemas, which no route of this API uses
    (errors are all `ErrorResponse`): they are left out."""
    schemas: dict[str, Schema] = document.get("components", {}).get("schemas", {})
    seen: set[str] = set()
    pending = list(refs_in(document.get("paths", {})))
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        if name not in schemas:
            raise UnsupportedSchema(f"a route refers to {name}, which the document lacks")
        seen.add(name)
        pending.extend(refs_in(schemas[name]))
    return [name for name in schemas if name in seen]


def member_name(value: str) -> str:
    name = "".join(c if c.isalnum() else "_" for c in value).upper()
    if not name.isidentifier() or keyword.iskeyword(name):
        raise UnsupportedSchema(f"enum value {value!r} makes no member name")
    return name


class Renderer:
    def __init__(self, document: Schema) -> None:
        self.schemas: dict[str, Schema] = document.get("components", {}).get("schemas", {})

    def is_enum(self, name: str) -> bool:
        return "enum" in self.schemas[name] and "properties" not in self.schemas[name]

    def type_of(self, schema: Schema) -> str:
        """The Python annotation of a JSON schema, as text."""
        if "$ref" in schema:
            return ref_name(schema["$ref"])
        if "anyOf" in schema:
            options = [self.type_of(option) for option in schema["anyOf"]]
            return " | ".join(dict.fromkeys(options))
        if "const" in schema:
            return f"Literal[{json.dumps(schema['const'])}]"
        if "enum" in schema:
            return f"Literal[{', '.join(json.dumps(value) for value in schema['enum'])}]"
        kind = schema.get("type")
        if kind is None:
            return "Any"
        if kind == "null":
            return "None"
        if kind == "string":
            return "datetime" if schema.get("format") == "date-time" else "str"
        if kind in ("integer", "number", "boolean"):
            return {"integer": "int", "number": "float", "boolean": "bool"}[kind]
        if kind == "array":
            return f"list[{self.type_of(schema.get('items', {}))}]"
        if kind == "object":
            if "properties" in schema:
                raise UnsupportedSchema("an inline object with properties: give it a model")
            values = schema.get("additionalProperties", True)
            inner = "Any" if values is True or values == {} else self.type_of(values)
            return f"dict[str, {inner}]"
        raise UnsupportedSchema(f"type {kind!r}")

    def default_of(self, schema: Schema, annotation: str) -> str:
        """The Python default of an optional field: the schema's own, else empty or None."""
        if "default" in schema:
            value = schema["default"]
            if "$ref" in schema and self.is_enum(ref_name(schema["$ref"])):
                return f"{ref_name(schema['$ref'])}.{member_name(value)}"
            if isinstance(value, list | dict):
                factory = f"lambda: {value!r}" if value else type(value).__name__
                return f"field(default_factory={factory})"
            return repr(value)
        if annotation.endswith("| None"):
            return "None"  # absent, not empty: a request leaves it out (drop_none)
        if annotation.startswith("list["):
            return "field(default_factory=list)"
        if annotation.startswith("dict["):
            return "field(default_factory=dict)"
        return "None"

    def render_enum(self, name: str, schema: Schema) -> str:
        if schema.get("type") != "string":
            raise UnsupportedSchema(f"{name}: only string enums")
        members = "\n".join(
            f"    {member_name(value)} = {json.dumps(value)}" for value in schema["enum"]
        )
        return f"class {name}(StrEnum):\n{members}\n"

    def base_of(self, name: str, candidates: list[str]) -> str | None:
        """The model this one extends: pydantic flattens a subclass (TaskDetail(TaskView)) into
        one schema whose properties start with all of the base's, alike. The largest such
        model (of two properties at least) becomes the dataclass's base again."""
        schema = self.schemas[name]
        properties = list(schema.get("properties", {}).items())
        required = set(schema.get("required", ()))
        best: str | None = None
        for other in candidates:
            base = self.schemas[other]
            base_properties = list(base.get("properties", {}).items())
            if (
                other != name
                and 2 <= len(base_properties) < len(properties)
                and properties[: len(base_properties)] == base_properties
                and set(base.get("required", ())) == required & dict(base_properties).keys()
                and base.get("additionalProperties") == schema.get("additionalProperties")
                and (best is None or len(base_properties) > len(self.schemas[best]["properties"]))
            ):
                best = other
        return best

    def render_model(self, name: str, schema: Schema, base: str | None) -> str:
        if schema.get("type") != "object":
            raise UnsupportedSchema(f"{name}: a component that is neither object nor enum")
        properties: dict[str, Schema] = schema.get("properties", {})
        inherited = set(self.schemas[base]["properties"]) if base else set()
        properties = {k: v for k, v in properties.items() if k not in inherited}
        required = set(schema.get("required", ())) & set(properties)
        lines = [
            f"@dataclass(frozen=True, kw_only=True)\nclass {name}{f'({base})' if base else ''}:"
        ]
        description = schema.get("description")
        if description:
            lines.append(f'    """{description.strip()}"""\n')
        for prop, prop_schema in properties.items():
            if not prop.isidentifier() or keyword.iskeyword(prop) or prop == EXTRA_FIELD:
                raise UnsupportedSchema(f"{name}.{prop} is not usable as a field name")
            annotation = self.type_of(prop_schema)
            if prop_schema.get("description"):
                for text in textwrap.wrap(prop_schema["description"], 90):
                    lines.append(f"    # {text}")
            if prop in required:
                lines.append(f"    {prop}: {annotation}")
                continue
            default = self.default_of(prop_schema, annotation)
            if default == "None" and not {"None", "Any"} & set(annotation.split(" | ")):
                annotation += " | None"
            lines.append(f"    {prop}: {annotation} = {default}")
        if base:
            if not properties:
                lines.append("    pass")
        elif schema.get("additionalProperties") is not False:
            lines.append("    # Fields the API has that this client was generated without.")
            lines.append(
                f"    {EXTRA_FIELD}: dict[str, Any] = field(default_factory=dict, repr=False)"
            )
        elif not properties:
            lines.append("    pass")
        return "\n".join(lines) + "\n"

    def render(self, names: list[str]) -> str:
        # Enums first, so that defaults such as `Priority.NORMAL` refer to defined names.
        enums = [n for n in names if self.is_enum(n)]
        models = [n for n in names if not self.is_enum(n)]
        parts = [HEADER]
        parts += [self.render_enum(n, self.schemas[n]) for n in enums]
        bases = {n: self.base_of(n, models) for n in models}
        done: set[str] = set()
        while len(done) < len(models):  # a base before the models extending it
            for n in models:
                if n not in done and (bases[n] is None or bases[n] in done):
                    parts.append(self.render_model(n, self.schemas[n], bases[n]))
                    done.add(n)
        listing = ", ".join(f'"{n}"' for n in sorted(names))
        parts.append(f"__all__ = [{listing}]\n")
        return "\n\n".join(parts)


def format_source(source: str) -> str:
    """ruff's formatting, so the committed file is exactly what `make format` keeps."""
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(OUTPUT), "-"],
        input=source,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return done.stdout


def render(document: Schema) -> str:
    """The text of models.py for this OpenAPI document."""
    return format_source(Renderer(document).render(used_schemas(document)))


def served_document() -> Schema:
    """The document ApiFunction serves, built in-process against a fresh moto stack."""
    sys.path.insert(0, str(ROOT))
    from devstack.invoke import invoke

    answer = invoke("ApiFunction", ROOT / "events" / "api_openapi.json")
    document: Schema = json.loads(answer["body"])
    return document


def load_document(source: str) -> Schema:
    if source.startswith(("http://", "https://")):
        from urllib.request import urlopen

        with urlopen(source, timeout=30) as response:
            loaded: Schema = json.load(response)
            return loaded
    loaded = json.loads(Path(source).read_text(encoding="utf-8"))
    return loaded


def main(argv: list[str]) -> int:
    document = load_document(argv[0]) if argv else served_document()
    OUTPUT.write_text(render(document), encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
