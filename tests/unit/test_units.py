"""Counts in their unit, as event lines say them ("25% done (125.8 MB of 495.1 MB)")."""

from __future__ import annotations

import pytest

from taskqueue.units import describe, progress_text


@pytest.mark.parametrize(
    ("count", "unit", "text"),
    [
        (0, "bytes", "0 B"),
        (1023, "bytes", "1023 B"),
        (1024, "bytes", "1.0 KB"),
        (131_959_859, "bytes", "125.8 MB"),
        (5 * 1024**3, "bytes", "5.0 GB"),
        (1, "images", "1 image"),
        (12, "recipients", "12 recipients"),
        (2_000_000, "rows", "2,000,000 rows"),
    ],
)
def test_a_count_is_described_in_its_unit(count: int, unit: str, text: str) -> None:
    assert describe(count, unit) == text


def test_progress_says_the_unit_once_for_counts_and_twice_for_sizes() -> None:
    assert progress_text(131_959_859, 519_186_330, "bytes") == "125.8 MB of 495.1 MB"
    assert progress_text(3, 12, "recipients") == "3 of 12 recipients"
    assert progress_text(1, 1, "images") == "1 of 1 image"
