"""EMAIL templates: Python format strings over plain named fields, checked, and bounded in
size before anything is rendered (a width such as "{name:>999999999}", or one field repeated
thousands of times, must cost a 422, not the API's or the worker's memory)."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Widths and precisions above this are refused outright: nothing a person writes needs more.
MAX_SPEC_NUMBER = 1000
# The format-spec mini-language: [[fill]align][sign][z][#][0][width][grouping][.precision][type]
_SPEC = re.compile(
    r"(?:.?[<>=^])?[-+ ]?z?#?0?(?P<width>\d+)?[_,]?(?:\.(?P<precision>\d+))?[bcdeEfFgGnosxX%]?",
    re.DOTALL,
)
# A number formatted with a spec grows by at most this over its plain digits (sign, base
# prefix, grouping, exponent), times 4 for binary digits; precision digits are added on top.
_NUMBER_SLACK = 16


class _Formatter(string.Formatter):
    """Fills plain named fields only; a field a recipient lacks renders as ""."""

    def get_value(self, key: int | str, args: Any, kwargs: Mapping[str, Any]) -> Any:
        return kwargs.get(str(key), "")


_FORMATTER = _Formatter()


@dataclass(frozen=True)
class Slot:
    """One replacement field: its name and the numbers of its format spec."""

    name: str
    width: int
    precision: int | None
    has_spec: bool


@dataclass(frozen=True)
class Template:
    """A parsed template: what it says literally and which fields it fills, in order."""

    text: str
    literal_chars: int
    slots: tuple[Slot, ...]

    @classmethod
    def parse(cls, what: str, text: str, allowed: set[str]) -> Template:
        """The template, or ValueError naming what is wrong. Only plain names are allowed:
        "{name.__class__}" or "{email[0]}" would reach into objects."""
        try:
            parts = list(_FORMATTER.parse(text))
        except ValueError as exc:
            raise ValueError(f"{what}: {exc} (write {{{{ and }}}} for literal braces)") from None
        literal, slots = 0, []
        for before, name, spec, conversion in parts:
            literal += len(before)
            if name is None:
                continue
            if not name.isidentifier():
                raise ValueError(f"{what}: field {{{name}}} is not a plain name such as {{name}}")
            if name not in allowed:
                known = ", ".join("{" + each + "}" for each in sorted(allowed))
                raise ValueError(f"{what}: unknown field {{{name}}}; use one of {known}")
            if conversion is not None:
                raise ValueError(f"{what}: conversions such as {{{name}!r}} are not allowed")
            spec = spec or ""
            if "{" in spec:
                raise ValueError(f"{what}: nested fields in a format spec are not allowed")
            match = _SPEC.fullmatch(spec)
            if match is None:
                raise ValueError(f"{what}: invalid format spec {spec!r} for {{{name}}}")
            width = int(match["width"] or 0)
            precision = int(match["precision"]) if match["precision"] is not None else None
            if width > MAX_SPEC_NUMBER or (precision or 0) > MAX_SPEC_NUMBER:
                raise ValueError(
                    f"{what}: {{{name}:{spec}}} asks for more than {MAX_SPEC_NUMBER} characters"
                )
            slots.append(Slot(name, width, precision, bool(spec)))
        return cls(text, literal, tuple(slots))

    def size_bound(self, lengths: Mapping[str, int], numeric: frozenset[str]) -> int:
        """The most characters a rendering can have when each field's value is at most
        `lengths[name]` characters long (digits, for the `numeric` fields), computed without
        rendering anything."""
        total = self.literal_chars
        for slot in self.slots:
            value = lengths.get(slot.name, 0)
            if slot.name in numeric and slot.has_spec:
                value = 4 * value + _NUMBER_SLACK + (slot.precision or 0)
            elif slot.precision is not None:
                value = min(value, slot.precision)
            total += max(slot.width, value)
        return total

    def render(self, values: Mapping[str, Any]) -> str:
        return _FORMATTER.vformat(self.text, (), values)


def check_template(
    what: str,
    text: str,
    allowed: set[str],
    lengths: Mapping[str, int],
    numeric: frozenset[str],
    cap: int,
) -> Template:
    """Parse `text`, bound its rendered size by `cap`, then try it once with values of the
    real types (which catches specs such as "{name:d}"); ValueError says what is wrong."""
    template = Template.parse(what, text, allowed)
    bound = template.size_bound(lengths, numeric)
    if bound > cap:
        raise ValueError(
            f"{what}: a rendered message could reach {bound} characters, more than {cap} "
            "(format widths, repeated fields or long field values)"
        )
    sample = {name: "" for name in allowed} | {name: 1 for name in numeric}
    try:
        template.render(sample)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what}: {exc}") from None
    return template


def render(text: str, values: Mapping[str, Any]) -> str:
    """`text` filled with `values`; the caller has bounded its size (check_template)."""
    return _FORMATTER.vformat(text, (), values)
