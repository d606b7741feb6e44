"""Parallel tasks through the worker and moto: parts planned, counted in exactly once, merged
once; duplicates, crashes between a part's finish and its count, racing counts, cancel and
retry; DATA_PROCESSING in byte-range parts equal to the csv module and to one whole run."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from pydantic import BaseModel, Field

from devstack.sim_time import simulated_time
from taskqueue import aws, wiring
from taskqueue.dispatch import message_group
from taskqueue.errors import InvalidInput
from taskqueue.models import (
    ChunkState,
    SubmitTaskRequest,
    TaskMessage,
    TaskResult,
    TaskStatus,
    part_id,
)
from taskqueue.task_types.base import Plan, TaskContext
from taskqueue.task_types.data_processing import DATA_PROCESSING
from tests.csv_awkward import assert_same, awkward_csv, mixed_columns, reference
from tests.pipeline_world import OWNER, Crash, World, countdown, crash_once

# ---------------------------------------------------------------- a type that splits


class SummingParams(BaseModel):
    parts: int = Field(ge=1, le=50)
    chunks: int = Field(default=2, ge=1, le=20)  # chunks per part
    max_parallel: int = Field(default=2, ge=1, le=50)
    fail_part: int | None = None  # this part fails permanently, `fail_times` times
    fail_times: int = 1
    # Seconds each part's first invocation is held back (the plan's start_after).
    start_after: list[float] = Field(default_factory=list, max_length=50)


@dataclass
class SummingType:
    """Each part sums its chunk numbers; the merge adds the parts' sums. Every chunk, part
    finish and merge is recorded, so a test sees exactly what ran."""

    name: str = "SUMMING"
    description: str = "sums in parallel parts"
    progress_unit: str = "chunks"
    params_model: type[BaseModel] = SummingParams
    executions: list[tuple[str, int]] = field(default_factory=list)
    merges: list[str] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)

    def start(self, params: SummingParams, ctx: TaskContext) -> ChunkState:
        return ChunkState(units_total=1, cursor=0, data={"phase": "whole"})

    def plan(self, params: SummingParams, state: ChunkState, ctx: TaskContext) -> Plan | None:
        parts = [
            ChunkState(
                units_total=params.chunks,
                cursor=index * 100,
                data={
                    "phase": "part",
                    "index": index,
                    "sum": 0,
                    "end": index * 100 + params.chunks,
                },
            )
            for index in range(params.parts)
        ]
        return Plan(
            parts=parts, max_parallel=params.max_parallel, start_after=tuple(params.start_after)
        )

    def run_chunk(self, params: SummingParams, state: ChunkState, ctx: TaskContext) -> ChunkState:
        data = state.data
        self.executions.append((ctx.task_id, int(state.cursor)))
        if data["index"] == params.fail_part and self.failures[ctx.task_id] < params.fail_times:
            self.failures[ctx.task_id] += 1
            raise InvalidInput(f"part {data['index']} cannot be read")
        cursor = int(state.cursor) + 1
        return ChunkState(
            units_total=state.units_total,
            units_done=state.units_done + 1,
            cursor=cursor,
            data={**data, "sum": data["sum"] + state.cursor},
            done=cursor >= data["end"],
        )

    def finish(self, params: SummingParams, state: ChunkState, ctx: TaskContext) -> TaskResult:
        raise AssertionError("a split task finishes by its merge")

    def finish_part(self, params: SummingParams, state: ChunkState, ctx: TaskContext) -> TaskResult:
        return TaskResult(summary={"index": state.data["index"], "sum": state.data["sum"]})

    def verify(
        self, params: SummingParams, results: list[dict[str, Any]], ctx: TaskContext
    ) -> dict[int, ChunkState]:
        return {}

    def merge(
        self,
        params: SummingParams,
        state: ChunkState,
        results: list[dict[str, Any]],
        ctx: TaskContext,
    ) -> TaskResult:
        self.merges.append(ctx.task_id)
        assert [result["index"] for result in results] == list(range(params.parts))
        return TaskResult(summary={"sum": sum(result["sum"] for result in results)})


def expected_sum(parts: int, chunks: int) -> int:
    return sum(index * 100 + k for index in range(parts) for k in range(chunks))


@pytest.fixture
def summing(world: World) -> SummingType:
    summing = SummingType()
    engine = wiring.engine()
    engine.registry = {**engine.registry, "SUMMING": summing}
    wiring.service().registry = engine.registry
    return summing


def part_ids(task_id: str, parts: int) -> list[str]:
    return [part_id(task_id, index) for index in range(parts)]


# ---------------------------------------------------------------- fan-out, fan-in


def test_parts_run_in_lanes_and_one_merge_gives_the_result(
    world: World, summing: SummingType
) -> None:
    # Given a task split into 5 parts of 3 chunks, at most 2 at once
    task_id = world.submit({"parts": 5, "chunks": 3, "max_parallel": 2}, task_type="SUMMING")
    # When the worker drains the queues
    world.pipeline().run()
    # Then it succeeded with the sum of every part's chunks, merged once
    task = world.task(task_id)
    assert task.status == TaskStatus.SUCCESS
    assert task.result == {"sum": expected_sum(5, 3)}
    assert summing.merges == [task_id]
    assert task.parts_total == 5 and task.parts_in == [0, 1, 2, 3, 4]
    # and each part ran each of its chunks once, as a task of its own
    assert sorted(summing.executions) == sorted(
        (part_id(task_id, i), i * 100 + k) for i in range(5) for k in range(3)
    )
    assert [world.task(p).status for p in part_ids(task_id, 5)] == [TaskStatus.SUCCESS] * 5


def test_no_more_parts_run_at_once_than_max_parallel(world: World, summing: SummingType) -> None:
    # Given a task of 6 parts with max_parallel 2
    task_id = world.submit({"parts": 6, "max_parallel": 2}, task_type="SUMMING")
    pipeline = world.pipeline()
    # When the first messages after the split are looked at
    pipeline.invoke(pipeline.receive())  # the parent: plans and starts the lanes
    queued = [json.loads(m["Body"])["task_id"] for _, m in pipeline.receive(10)]
    # Then exactly the first part of each lane was sent
    assert sorted(queued) == [part_id(task_id, 0), part_id(task_id, 1)]


def test_the_last_parts_count_sends_the_parents_message_to_the_parts_queue(
    world: World, summing: SummingType
) -> None:
    # Given a task of 2 parts, split, its parts run one at a time
    task_id = world.submit({"parts": 2, "max_parallel": 2}, task_type="SUMMING")
    pipeline = world.pipeline()
    pipeline.invoke(pipeline.receive())  # the parent: plans and starts both parts
    for _ in range(2):
        pipeline.invoke(pipeline.receive(1))
    # When the queues are looked at after the last part
    queued = {
        url: [json.loads(m["Body"]) for m in world.sqs.receive_message(QueueUrl=url)["Messages"]]
        if url == world.parts_queue_url
        else world.sqs.receive_message(QueueUrl=url).get("Messages", [])
        for url in (world.queue_url, world.high_queue_url, world.parts_queue_url)
    }
    # Then the parent's message waits on the parts' queue (no batching window), nowhere else
    assert queued[world.queue_url] == queued[world.high_queue_url] == []
    assert [(m["task_id"], m.get("resume")) for m in queued[world.parts_queue_url]] == [
        (task_id, True)
    ]


def queued_ids(world: World) -> dict[str, list[str]]:
    """The task ids of the messages waiting on each worker queue (left visible)."""
    names = {
        "normal": world.queue_url,
        "high": world.high_queue_url,
        "parts": world.parts_queue_url,
    }
    return {
        name: [
            json.loads(m["Body"])["task_id"]
            for m in world.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0
            ).get("Messages", [])
        ]
        for name, url in names.items()
    }


def submitted(task_type: str, params: dict[str, Any], priority: str = "normal") -> str:
    """POST /tasks, as the API does it (its message included)."""
    request = SubmitTaskRequest.model_validate(
        {"type": task_type, "params": params, "priority": priority}
    )
    task, _ = wiring.service().submit(OWNER, request)
    return task.task_id


def test_a_parallel_tasks_first_claim_skips_the_priority_queues_batching_window(
    world: World, summing: SummingType
) -> None:
    # Given tasks submitted through the API: two asking for parts (one of high priority),
    # one asking for none
    parallel = submitted("SUMMING", {"parts": 3, "max_parallel": 3})
    urgent = submitted("SUMMING", {"parts": 2, "max_parallel": 2}, priority="high")
    whole = submitted("DATA_PROCESSING", {"rows": 50, "max_parallel": 1})
    # When the queues are looked at
    queued = queued_ids(world)
    # Then the parallel tasks' messages wait on the parts' queue (read at once, one per
    # invocation), the other on its priority's queue (batched: up to 1 s on AWS)
    assert sorted(queued["parts"]) == sorted([parallel, urgent])
    assert queued["normal"] == [whole] and queued["high"] == []
    # and as their owner's tenant of the fair queue: one owner's many parallel tasks do not
    # hold up another's parts there
    received = world.sqs.receive_message(
        QueueUrl=world.parts_queue_url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=0,
        MessageSystemAttributeNames=["MessageGroupId"],
    )["Messages"]
    assert {m["Attributes"]["MessageGroupId"] for m in received} == {message_group(OWNER)}


def test_a_parallel_task_that_does_not_split_goes_on_from_its_prioritys_queue(
    world: World,
) -> None:
    # Given a DATA_PROCESSING task asking for 4 parts of a file too small to split, whose
    # first chunk hands over (one chunk an invocation)
    task_id = submitted(
        "DATA_PROCESSING", {"rows": 20_000, "max_parallel": 4, "chunk_bytes": 65_536}
    )
    assert queued_ids(world)["parts"] == [task_id]
    pipeline = world.pipeline(countdown(1))
    # When its first claim runs (from the parts' queue)
    pipeline.invoke(pipeline.receive())
    # Then it was not split, and its continuation waits on its priority's queue
    task = world.task(task_id)
    assert task.parts_total == 0 and task.status == TaskStatus.RUNNING
    assert queued_ids(world) == {"normal": [task_id], "high": [], "parts": []}
    # and it finishes from there
    world.pipeline(countdown(100)).run()
    assert world.task(task_id).status == TaskStatus.SUCCESS


@pytest.mark.parametrize(("failing_chunk", "queue"), [(0, "parts"), (1, "normal")])
def test_a_retry_goes_where_the_saved_state_says(
    world: World, failing_chunk: int, queue: str
) -> None:
    # Given a task asking for parts whose type does not split, one of its chunks failing once
    params = {"chunks": 3, "fail_on_chunk": failing_chunk, "fail_times": 1, "max_parallel": 4}
    task_id = world.submit(params)
    assert queued_ids(world)["parts"] == [task_id]
    # When its first invocation runs until the failure
    pipeline = world.pipeline()
    pipeline.invoke(pipeline.receive())
    # Then the retry waits on the parts' queue while nothing was saved (its next claim may
    # still plan it), on its priority's queue once it has started
    assert world.task(task_id).status == TaskStatus.PENDING
    assert queued_ids(world)[queue] == [task_id]
    world.pipeline().run()
    assert world.task(task_id).status == TaskStatus.SUCCESS


def test_a_planned_start_delay_holds_a_lanes_first_part_back_at_most_15_minutes(
    world: World, summing: SummingType
) -> None:
    # Given a task of 3 parts at once, planned to start at once, after 2.4 s and after 2000 s
    params = {"parts": 3, "chunks": 1, "max_parallel": 3, "start_after": [0, 2.4, 2000]}
    engine = wiring.engine()
    with simulated_time(engine, [engine.store, world.store]) as sim:
        task_id = world.submit(params, task_type="SUMMING")
        pipeline = world.pipeline()
        pipeline.invoke(pipeline.receive())  # the parent: plans and starts the lanes

        def delivered_after(seconds: float) -> list[str]:
            sim.advance(seconds)
            return sorted(json.loads(m["Body"])["task_id"] for _, m in pipeline.receive(10))

        # When time passes, Then each part's message is delivered when its wait is over
        # (whole seconds, rounded up: never early), and after SQS's 15 minutes at the most
        assert delivered_after(0) == [part_id(task_id, 0)]
        assert delivered_after(2.4) == []
        assert delivered_after(1.5) == [part_id(task_id, 1)]
        assert delivered_after(890) == []
        assert delivered_after(10) == [part_id(task_id, 2)]


def test_duplicate_part_messages_count_once_and_merge_once(
    world: World, summing: SummingType
) -> None:
    # Given a parallel task that has succeeded
    task_id = world.submit({"parts": 4}, task_type="SUMMING")
    world.pipeline().run()
    # When every part's message and the parent's are delivered again, twice
    engine = wiring.engine()
    for _ in range(2):
        for part in part_ids(task_id, 4):
            engine.dispatcher.send(TaskMessage.of(world.task(part)))
        engine.dispatcher.send(TaskMessage.of(world.task(task_id), resume=True))
    world.pipeline().run()
    # Then nothing ran again: one merge, each part counted once
    assert summing.merges == [task_id]
    assert world.task(task_id).parts_in == [0, 1, 2, 3]
    assert len(summing.executions) == 4 * 2


def test_a_crash_between_a_parts_finish_and_its_count_still_merges_once(
    world: World, summing: SummingType
) -> None:
    # Given a worker that dies right before its part's count is written, the first time
    client = wiring.engine().store.table.client
    crashed: list[str] = []

    def before(params: dict[str, Any], **_: Any) -> None:
        if "ADD #parts_in" in (params.get("UpdateExpression") or "") and not crashed:
            crashed.append(params["Key"]["pk"]["S"])
            raise Crash("worker killed between the part's finish and its count")

    client.meta.events.register("before-parameter-build.dynamodb.UpdateItem", before)
    task_id = world.submit({"parts": 3, "max_parallel": 3}, task_type="SUMMING")
    try:
        world.pipeline().run()
    finally:
        client.meta.events.unregister("before-parameter-build.dynamodb.UpdateItem", before)
    assert crashed and world.task(task_id).status == TaskStatus.RUNNING
    # When SQS redelivers the dead worker's message (its part is SUCCESS already)
    world.redeliver_after_crash()
    world.pipeline().run()
    # Then the part was counted from the redelivery and the task merged exactly once
    task = world.task(task_id)
    assert task.status == TaskStatus.SUCCESS
    assert task.result == {"sum": expected_sum(3, 2)}
    assert summing.merges == [task_id]


def test_a_count_racing_the_parents_release_is_not_lost(world: World, summing: SummingType) -> None:
    # Given a split task whose parent a worker holds, having read it with 2 of 3 parts in
    task_id = world.submit({"parts": 3, "max_parallel": 3}, task_type="SUMMING")
    pipeline = world.pipeline()
    pipeline.invoke(pipeline.receive())  # the split
    for _ in range(2):
        pipeline.invoke(pipeline.receive(1))  # parts 0 and 1
    store = wiring.engine().store
    from taskqueue.engine import RESUME

    held = store.tasks.claim(RESUME, task_id, OWNER, "SUMMING", "holder", 300)
    assert held.parts_done == 2
    # When the last part finishes and is counted meanwhile (its message to the parent is
    # dropped: the parent is held)
    pipeline.run()
    assert world.task(task_id).parts_done == 3 and summing.merges == []
    # Then the holder, releasing on what it read, is refused and merges instead
    params = SummingParams(parts=3, max_parallel=3)
    fanout = wiring.engine().fanout
    result = fanout.gather(held, "holder", summing, params, wiring.engine().context_factory)
    assert result is not None and result.summary == {"sum": expected_sum(3, 2)}
    assert summing.merges == [task_id]


def test_cancel_stops_every_part_and_the_parent_merges_nothing(
    world: World, summing: SummingType
) -> None:
    # Given a split task whose first two parts have started (and checkpointed once)
    task_id = world.submit({"parts": 4, "chunks": 3, "max_parallel": 2}, task_type="SUMMING")
    pipeline = world.pipeline()
    pipeline.invoke(pipeline.receive())  # the split
    # When its owner cancels it
    world.cancel(task_id)
    world.pipeline().run()
    # Then every part finished CANCELLED, the parent too, and no merge ran
    assert world.task(task_id).status == TaskStatus.CANCELLED
    assert {world.task(p).status for p in part_ids(task_id, 4)} == {TaskStatus.CANCELLED}
    assert summing.merges == []
    assert world.task(task_id).parts_done == 4


def test_a_failed_part_fails_the_parent_and_resume_reruns_only_that_part(
    world: World, summing: SummingType
) -> None:
    # Given a task whose part 2 fails permanently once
    task_id = world.submit({"parts": 4, "fail_part": 2}, task_type="SUMMING")
    world.pipeline().run()
    failed = world.task(task_id)
    assert failed.status == TaskStatus.FAILED
    assert failed.error is not None
    assert failed.error.type == "part_failed"
    assert failed.error.message.startswith("part 3 of 4 failed: invalid_input: part 2")
    ran_before = list(summing.executions)
    # When its owner retries it (resume)
    world.retry(task_id, restart=False)
    world.pipeline().run()
    # Then only part 2 ran again, and the merge gave the whole sum once
    task = world.task(task_id)
    assert task.status == TaskStatus.SUCCESS
    assert task.result == {"sum": expected_sum(4, 2)}
    again = summing.executions[len(ran_before) :]
    assert {task for task, _ in again} == {part_id(task_id, 2)}
    assert summing.merges == [task_id]


def test_restart_runs_every_part_again(world: World, summing: SummingType) -> None:
    # Given a task that failed in one part
    task_id = world.submit({"parts": 3, "fail_part": 1}, task_type="SUMMING")
    world.pipeline().run()
    assert world.task(task_id).status == TaskStatus.FAILED
    before = len(summing.executions)
    # When it is retried from scratch
    world.retry(task_id, restart=True)
    world.pipeline().run()
    # Then every part ran again and it succeeded
    again = summing.executions[before:]
    assert {task for task, _ in again} == set(part_ids(task_id, 3))
    assert world.task(task_id).status == TaskStatus.SUCCESS
    assert summing.merges == [task_id]


def test_parts_are_no_list_rows_and_the_detail_shows_them(
    world: World, summing: SummingType
) -> None:
    # Given a parallel task that has finished
    task_id = world.submit({"parts": 3}, task_type="SUMMING")
    world.pipeline().run()
    # When its owner lists tasks and looks at it
    from taskqueue.models import ListTasksQuery

    page = wiring.service().list_tasks(OWNER, ListTasksQuery())
    detail = wiring.service().get(OWNER, task_id)
    # Then the list has the parent only, folded with its parts' count, and the detail its parts
    assert [(view.id, view.parts_total, view.parts_done) for view in page.items] == [
        (task_id, 3, 3)
    ]
    assert [(p.index, p.status, p.progress) for p in detail.parts] == [
        (i, TaskStatus.SUCCESS, 100) for i in range(3)
    ]


# ---------------------------------------------------------------- DATA_PROCESSING in parts


def analyse(world: World, body: bytes, **params: Any) -> tuple[str, dict[str, Any]]:
    """Upload body, run DATA_PROCESSING on it through the worker, return the result document."""
    s3 = boto3.client("s3")
    bucket = wiring.settings().data_bucket
    key = f"uploads/{OWNER}/input-{len(body)}-{params.get('parts')}.csv"
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    task_id = world.submit({"input_key": key, **params}, task_type="DATA_PROCESSING")
    world.pipeline().run(max_invocations=400)
    task = world.task(task_id)
    assert task.status == TaskStatus.SUCCESS, task.error
    result_key = f"results/{OWNER}/{task_id}/result.json"
    document = json.loads(s3.get_object(Bucket=bucket, Key=result_key)["Body"].read())
    return task_id, document


@pytest.mark.parametrize("seed", range(4))
def test_statistics_in_parts_equal_the_csv_module_and_the_whole_run(
    world: World, seed: int
) -> None:
    # Given an awkward file (quoted line breaks, CRLF, blank lines, ragged rows, stray quotes)
    text, delimiter = awkward_csv(seed, rows=300)
    body = text.encode()
    expected = reference(text, delimiter)
    # When it is analysed whole, and in 7 parts 3 at a time
    _, whole = analyse(world, body, delimiter=delimiter)
    _, split = analyse(world, body, delimiter=delimiter, parts=7, max_parallel=3)
    # Then both equal the csv module's figures, and each other
    assert_same(split, expected)
    assert_same(whole, expected)
    assert split["rows"] == whole["rows"] and split["parts"] == 7


def test_parts_reading_columns_for_their_sampled_type_through_the_worker_stay_exact(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given columns the head shows as numbers but the whole file as text (one only by the
    # 90 % rule over all the parts), and columns specialising after 8 cells
    monkeypatch.setattr(DATA_PROCESSING, "specialise_after", 8)
    text = mixed_columns(3000, 8)
    # When it is analysed whole and in 6 parts that read the columns as the head's sample says
    _, whole = analyse(world, text.encode(), chunk_bytes=64 * 1024)
    task_id, split = analyse(world, text.encode(), chunk_bytes=64 * 1024, parts=6, max_parallel=3)
    # Then both equal the csv module's figures, the parts having run again with `n` in full
    expected = reference(text, ",")
    assert_same(split, expected)
    assert_same(whole, expected)
    assert [column["type"] for column in split["column_stats"]] == [
        "text", "text", "float", "text", "boolean"
    ]  # fmt: skip
    events = wiring.engine().store.tasks.get_with_events(part_id(task_id, 5), OWNER)[1]
    assert any("runs again" in event.message for event in events)


def test_a_split_point_inside_a_quoted_cell_reruns_only_that_part(world: World) -> None:
    # Given a file whose middle falls inside a quoted cell holding line breaks
    header = "id,note\n"
    for count in range(40, 80):
        rows = [f'{i},"line a\nline b\nline c {i}"\n' for i in range(count)]
        body = (header + "".join(rows)).encode()
        middle = len(header) + (len(body) - len(header)) // 2
        last_break = body.rfind(b"\n", 0, middle)
        if body.count(b'"', 0, last_break) % 2 == 1:
            break  # the line break a guess would start after is inside quotes
    else:
        raise AssertionError("no such file")
    # When it is analysed in 2 parts
    task_id, split = analyse(world, body, parts=2, max_parallel=2)
    # Then the figures are exact and the part that guessed wrong was run again
    expected = reference(body.decode(), ",")
    assert_same(split, expected)
    events = [e.message for e in wiring.service().get(OWNER, task_id).events]
    second = wiring.engine().store.tasks.get_with_events(part_id(task_id, 1), OWNER)[1]
    assert any("runs again" in event.message for event in second), events


# ---------------------------------------------------------------- the parts' objects


def objects_under(prefix: str) -> list[str]:
    s3 = boto3.client("s3")
    listing = s3.list_objects_v2(Bucket=wiring.settings().data_bucket, Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def test_the_parts_objects_are_deleted_once_the_merged_result_is_written(world: World) -> None:
    # Given a file analysed in 3 parts (each part keeps its accumulators in S3 as it goes)
    text, delimiter = awkward_csv(1, rows=200)
    # When it has succeeded
    task_id, document = analyse(world, text.encode(), delimiter=delimiter, parts=3)
    # Then no object of its parts is left, and the merged result is
    assert objects_under(f"results/{OWNER}/{task_id}.") == []
    assert objects_under(f"results/{OWNER}/{task_id}/") == [
        f"results/{OWNER}/{task_id}/result.json"
    ]
    assert document["parts"] == 3


def test_a_crash_before_the_parts_objects_are_deleted_loses_nothing_and_a_redelivery_deletes_them(
    world: World,
) -> None:
    # Given a worker that dies right after the parent's SUCCESS, before deleting its parts'
    # objects
    text, delimiter = awkward_csv(2, rows=200)
    key = f"uploads/{OWNER}/crash.csv"
    boto3.client("s3").put_object(Bucket=wiring.settings().data_bucket, Key=key, Body=text.encode())
    task_id = world.submit(
        {"input_key": key, "delimiter": delimiter, "parts": 3}, task_type="DATA_PROCESSING"
    )
    # (the worker's S3 client: the one the task types use)
    with crash_once(aws.client("s3"), "s3.DeleteObjects", lambda _: True) as crashed:
        world.pipeline().run(max_invocations=400)
    # Then the task succeeded with its merged result, and its parts' objects are still there
    assert crashed and world.task(task_id).status == TaskStatus.SUCCESS
    left = objects_under(f"results/{OWNER}/{task_id}.")
    assert left
    result = objects_under(f"results/{OWNER}/{task_id}/")
    # When SQS redelivers the dead worker's message
    world.redeliver_after_crash()
    world.pipeline().run()
    # Then the parts' objects are gone, the result is untouched, and nothing ran again
    assert objects_under(f"results/{OWNER}/{task_id}.") == []
    assert objects_under(f"results/{OWNER}/{task_id}/") == result
    assert world.task(task_id).status == TaskStatus.SUCCESS
