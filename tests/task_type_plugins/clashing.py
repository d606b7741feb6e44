"""A plugin that takes the name of a built-in type."""

from tests.task_type_plugins.countdown import Countdown

TASK_TYPES = [Countdown("EMAIL")]
