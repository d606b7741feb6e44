"""Task-type plugins the tests register from outside the core layer (``TASK_TYPE_MODULES``,
entry points): one that works and one for each way a plugin can be wrong."""
