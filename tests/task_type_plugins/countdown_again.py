"""A plugin that takes the name another plugin already registered."""

from tests.task_type_plugins.countdown import Countdown

TASK_TYPES = [Countdown("COUNTDOWN")]
