"""URL_CHECK, a task type from outside the core layer: ``TASK_TYPE_MODULES=url_check`` (this
module's ``TASK_TYPES``) or the entry point ``URL_CHECK`` of this distribution registers it."""

from __future__ import annotations

from taskqueue.task_types.base import TaskType

from url_check.task import URL_CHECK

TASK_TYPES: list[TaskType] = [URL_CHECK]
