"""Chains through the API's logic, the worker and moto: each step started once its predecessor
succeeded, given the predecessor's result location; a failure or cancel stops the chain and
says where; duplicates and crashes around the hand-off start the next step exactly once; a
retried step carries the chain on; submit validates every step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import BaseModel, Field, ValidationError

from taskqueue import wiring
from taskqueue.chains import chain_ids
from taskqueue.errors import InvalidRequest
from taskqueue.models import (
    ChunkState,
    ListTasksQuery,
    SubmitTaskRequest,
    TaskMessage,
    TaskResult,
    TaskStatus,
    successor_id,
)
from taskqueue.task_types.base import TaskContext
from tests.pipeline_world import OWNER, World, countdown, crash_once


class StepParams(BaseModel):
    name: str = Field(min_length=1, max_length=20)
    chunks: int = Field(default=1, ge=1, le=10)
    fail_times: int = 0  # the step's first chunk fails permanently this many times


@dataclass
class StepType:
    """Each run records the previous result location it was given; its result is at a
    location of its own, named after the step."""

    name: str = "STEP"
    description: str = "a chain step"
    progress_unit: str = "chunks"
    params_model: type[BaseModel] = StepParams
    runs: list[tuple[str, str | None]] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)

    def start(self, params: StepParams, ctx: TaskContext) -> ChunkState:
        return ChunkState(units_total=params.chunks)

    def run_chunk(self, params: StepParams, state: ChunkState, ctx: TaskContext) -> ChunkState:
        if self.failures.get(params.name, 0) < params.fail_times:
            self.failures[params.name] = self.failures.get(params.name, 0) + 1
            from taskqueue.errors import InvalidInput

            raise InvalidInput(f"{params.name} cannot run")
        done = state.units_done + 1
        return state.model_copy(update={"units_done": done, "done": done >= params.chunks})

    def finish(self, params: StepParams, state: ChunkState, ctx: TaskContext) -> TaskResult:
        self.runs.append((params.name, ctx.previous_result))
        return TaskResult(summary={"name": params.name}, location=f"s3://results/{params.name}")


@pytest.fixture
def step_type(world: World) -> StepType:
    step_type = StepType()
    engine = wiring.engine()
    engine.registry = {**engine.registry, "STEP": step_type}
    wiring.service().registry = engine.registry
    return step_type


def submit_chain(*steps: dict[str, Any]) -> str:
    """POST /tasks of a chain of STEP tasks with these params, as the API does it."""
    head, *rest = steps
    request = SubmitTaskRequest.model_validate(
        {"type": "STEP", "params": head, "then": [{"type": "STEP", "params": p} for p in rest]}
    )
    task, _ = wiring.service().submit(OWNER, request)
    return task.task_id


def named(*names: str) -> list[dict[str, Any]]:
    return [{"name": name} for name in names]


def steps_of(task_id: str) -> list[tuple[int, TaskStatus | None]]:
    chain = wiring.service().get(OWNER, task_id).chain
    assert chain is not None
    return [(step.position, step.status) for step in chain.steps]


def test_a_chain_runs_each_step_after_the_last_with_its_result_location(
    world: World, step_type: StepType
) -> None:
    # Given a chain of three steps
    first = submit_chain(*named("a", "b", "c"))
    # When the worker drains the queues
    world.pipeline().run()
    # Then the steps ran in order, each given the previous step's result location
    assert step_type.runs == [("a", None), ("b", "s3://results/a"), ("c", "s3://results/b")]
    # and the chain is one SUCCESS of three linked tasks, each knowing its position
    ids = chain_ids(first, 3)
    assert [world.task(i).chain_position for i in ids] == [1, 2, 3]
    assert [world.task(i).chain_previous for i in ids] == [None, ids[0], ids[1]]
    assert [world.task(i).previous_result for i in ids] == [
        None,
        "s3://results/a",
        "s3://results/b",
    ]
    chain = wiring.service().get(OWNER, ids[1]).chain
    assert chain is not None
    assert (chain.id, chain.status, chain.stopped_at) == (first, TaskStatus.SUCCESS, None)
    assert chain.message == "all 3 steps succeeded"
    assert [(s.position, s.id, s.status) for s in chain.steps] == [
        (n + 1, i, TaskStatus.SUCCESS) for n, i in enumerate(ids)
    ]


def test_a_failed_step_stops_the_chain_and_says_where(world: World, step_type: StepType) -> None:
    # Given a chain whose second step fails permanently
    first = submit_chain({"name": "a"}, {"name": "b", "fail_times": 1}, *named("c", "d"))
    # When the worker drains the queues
    world.pipeline().run()
    # Then no later step was created, and the chain names the failed step
    assert [name for name, _ in step_type.runs] == ["a"]
    ids = chain_ids(first, 4)
    assert world.task(ids[1]).status == TaskStatus.FAILED
    assert not world.store.tasks.batch_get(ids[2:])
    chain = wiring.service().get(OWNER, first).chain
    assert chain is not None
    assert (chain.status, chain.stopped_at) == (TaskStatus.FAILED, 2)
    assert chain.message == "step 2 of 4 (STEP) failed; steps 3 to 4 not run"
    assert [(s.position, s.type, s.id, s.status) for s in chain.steps] == [
        (1, "STEP", ids[0], TaskStatus.SUCCESS),
        (2, "STEP", ids[1], TaskStatus.FAILED),
        (3, "STEP", None, None),
        (4, "STEP", None, None),
    ]


def test_retrying_the_failed_step_carries_the_chain_on(world: World, step_type: StepType) -> None:
    # Given a chain stopped by its second step's failure
    first = submit_chain({"name": "a"}, {"name": "b", "fail_times": 1}, {"name": "c"})
    world.pipeline().run()
    failed = successor_id(first)
    assert world.task(failed).status == TaskStatus.FAILED
    # When its owner retries that step
    world.retry(failed, restart=False)
    world.pipeline().run()
    # Then the rest of the chain ran, given the retried step's result
    assert step_type.runs == [("a", None), ("b", "s3://results/a"), ("c", "s3://results/b")]
    assert steps_of(first) == [(n, TaskStatus.SUCCESS) for n in (1, 2, 3)]


def test_cancel_mid_chain_stops_it_there(world: World, step_type: StepType) -> None:
    # Given a chain whose second step is running (checkpointed after one of its 3 chunks)
    first = submit_chain({"name": "a"}, {"name": "b", "chunks": 3}, {"name": "c"})
    second = successor_id(first)
    pipeline = world.pipeline(budget=countdown(1))
    while not world.store.tasks.batch_get([second]) or world.task(second).units_done == 0:
        assert pipeline.step()
    assert world.task(second).status == TaskStatus.RUNNING
    running = wiring.service().get(OWNER, first).chain
    assert running is not None
    assert (running.status, running.message) == (TaskStatus.RUNNING, "at step 2 of 3 (STEP)")
    # When its owner cancels that step
    world.cancel(second)
    world.pipeline().run()
    # Then it stopped CANCELLED and the last step never ran
    assert [name for name, _ in step_type.runs] == ["a"]
    chain = wiring.service().get(OWNER, first).chain
    assert chain is not None
    assert (chain.status, chain.stopped_at) == (TaskStatus.CANCELLED, 2)
    assert chain.message == "step 2 of 3 (STEP) was cancelled; step 3 not run"


def test_duplicates_of_a_finished_steps_message_start_the_next_step_once(
    world: World, step_type: StepType
) -> None:
    # Given a chain that has finished
    first = submit_chain(*named("a", "b"))
    world.pipeline().run()
    sends = count_sends(world)
    # When the first step's message is delivered again, twice
    for _ in range(2):
        wiring.engine().dispatcher.send(TaskMessage.of(world.task(first)))
    world.pipeline().run()
    # Then no step was created or sent again, nor ran again
    assert sends() == 2
    assert step_type.runs == [("a", None), ("b", "s3://results/a")]


def test_a_crash_before_the_hand_off_starts_the_next_step_on_redelivery(
    world: World, step_type: StepType
) -> None:
    # Given a worker that dies right after the first step's SUCCESS, before the next's create
    first = submit_chain(*named("a", "b"))
    second = successor_id(first)
    client = wiring.engine().store.table.client
    with crash_once(
        client, "dynamodb.PutItem", lambda p: p["Item"]["pk"]["S"] == f"TASK#{second}"
    ) as crashed:
        world.pipeline().run()
    assert crashed and world.task(first).status == TaskStatus.SUCCESS
    assert not world.store.tasks.batch_get([second])
    # When SQS redelivers the dead worker's message
    world.redeliver_after_crash()
    world.pipeline().run()
    # Then the next step was created and ran once
    assert step_type.runs == [("a", None), ("b", "s3://results/a")]
    assert world.task(second).status == TaskStatus.SUCCESS


def test_a_crash_between_the_next_steps_create_and_its_send_is_swept(
    world: World, step_type: StepType
) -> None:
    # Given a worker that dies after creating the next step, before sending its message
    first = submit_chain(*named("a", "b"))
    second = successor_id(first)
    client = wiring.engine().dispatcher.client
    with crash_once(client, "sqs.SendMessage", lambda p: second in p["MessageBody"]) as crashed:
        world.pipeline().run()
    assert crashed and world.task(second).status == TaskStatus.PENDING
    # When the sweeper runs (a grace of 0 s: the dead worker's message is not back yet)
    assert wiring.service().send_unsent(grace_seconds=0) == 1
    world.pipeline().run()
    # Then the next step ran once
    assert step_type.runs == [("a", None), ("b", "s3://results/a")]


def test_each_step_is_a_list_row_with_its_position(world: World, step_type: StepType) -> None:
    # Given a finished chain of two steps
    first = submit_chain(*named("a", "b"))
    world.pipeline().run()
    # When its owner lists tasks
    page = wiring.service().list_tasks(OWNER, ListTasksQuery())
    # Then each step is a row saying where it stands in its chain, the newest first
    assert [(v.id, v.chain_id, v.chain_position, v.chain_length) for v in page.items] == [
        (successor_id(first), first, 2, 2),
        (first, first, 1, 2),
    ]


@pytest.mark.parametrize(
    ("then", "loc"),
    [
        ([{"type": "STEP", "params": {"name": ""}}], ["body", "then", "0", "params", "name"]),
        (
            [{"type": "STEP", "params": {"name": "b"}}, {"type": "STEP", "params": {"chunks": 0}}],
            ["body", "then", "1", "params", "name"],
        ),
        ([{"type": "NOPE", "params": {}}], ["body", "then", "0", "type"]),
    ],
)
def test_submit_refuses_a_chain_with_an_invalid_step_and_writes_nothing(
    world: World, step_type: StepType, then: list[dict[str, Any]], loc: list[str]
) -> None:
    # Given a chain one of whose steps is invalid for its type
    request = SubmitTaskRequest.model_validate(
        {"type": "STEP", "params": {"name": "a"}, "then": then}
    )
    # When it is submitted
    with pytest.raises(InvalidRequest) as refused:
        wiring.service().submit(OWNER, request)
    # Then the 422 points at the step's field, and no task was written
    assert refused.value.details[0]["loc"] == loc
    assert wiring.service().list_tasks(OWNER, ListTasksQuery()).items == []


def test_a_chain_longer_than_the_bound_is_refused() -> None:
    # Given a chain of one task and six more (the bound is five)
    body = {"type": "STEP", "params": {}, "then": [{"type": "STEP", "params": {}}] * 6}
    # When it is read as a submit, then it is refused at `then`
    with pytest.raises(ValidationError) as refused:
        SubmitTaskRequest.model_validate(body)
    assert [error["loc"] for error in refused.value.errors()] == [("then",)]


def count_sends(world: World) -> Callable[[], int]:
    """How many messages of chain steps after the first the dispatcher sends from now on."""
    sent: list[str] = []
    client = wiring.engine().dispatcher.client

    def before(params: dict[str, Any], **_: Any) -> None:
        sent.append(params.get("MessageBody", ""))

    client.meta.events.register("before-parameter-build.sqs.SendMessage", before)
    return lambda: len(sent)
