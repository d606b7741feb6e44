"""A plugin module that forgot to export TASK_TYPES."""

from tests.task_type_plugins.countdown import Countdown

COUNTDOWN = Countdown("LIFTOFF")
