"""Counts in the unit a task type's progress counts (its `progress_unit`), for event lines:
bytes as KB, MB, GB (as the page shows them), anything else as a count of that noun."""

from __future__ import annotations

BYTE_UNITS = ("B", "KB", "MB", "GB", "TB")


def describe(count: int, unit: str) -> str:
    """4_980_736 bytes -> "4.8 MB"; 1 image -> "1 image"; 12 recipients -> "12 recipients"."""
    if unit == "bytes":
        size, step = float(count), 0
        while size >= 1024 and step < len(BYTE_UNITS) - 1:
            size /= 1024
            step += 1
        return f"{count} B" if step == 0 else f"{size:.1f} {BYTE_UNITS[step]}"
    noun = unit.removesuffix("s") if count == 1 else unit
    return f"{count:,} {noun}"


def progress_text(done: int, total: int, unit: str) -> str:
    """ "125.8 MB of 495.1 MB", "6 of 12 recipients": done and total, the unit said once."""
    if unit == "bytes":
        return f"{describe(done, unit)} of {describe(total, unit)}"
    return f"{done:,} of {describe(total, unit)}"
