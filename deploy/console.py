"""Talking to the person running make deploy / make destroy: questions and messages on stderr
(stdout stays free for what a command prints for the next one)."""

from __future__ import annotations

import sys
from collections.abc import Callable

Ask = Callable[[str], str | None]  # the answer; None when there is no one to ask
Say = Callable[[str], None]


def ask_terminal(prompt: str) -> str | None:
    """One line from the terminal; None without a terminal (CI) or at end of input."""
    if not sys.stdin.isatty():
        return None
    sys.stderr.write(prompt)
    sys.stderr.flush()
    line = sys.stdin.readline()
    return line if line else None


def say_stderr(line: str) -> None:
    print(line, file=sys.stderr)
