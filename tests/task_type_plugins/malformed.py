"""A plugin exporting something that is not a task type."""


class HalfDone:
    name = "half done"
    description = "no params model, no run_chunk"

    def start(self, params: object, ctx: object) -> None: ...

    def finish(self, params: object, state: object, ctx: object) -> None: ...


TASK_TYPES = [HalfDone()]
