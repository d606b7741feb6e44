"""Reliability under faults: hundreds of tasks through the in-process pipeline while workers
die between AWS calls, DynamoDB throttles, SQS fails sends and duplicates, reorders and delays
messages, workers race, and the user cancels and retries at random moments. Every task is
then checked against the invariants of docs/reliability.md.

Run alone, larger:  RELIABILITY_TASKS=1000 RELIABILITY_SEED=7 .venv/bin/pytest tests/reliability -q -s
"""

from __future__ import annotations

import functools
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from types import ModuleType
from typing import Any

import boto3
import pytest

from devstack.runtime import FUNCTIONS_DIR, load_handler_module
from taskqueue import wiring
from taskqueue.models import TaskStatus
from tests.csv_awkward import awkward_csv
from tests.helpers import (
    FakeLambdaContext,
    Pipeline,
    call_api,
    http_event,
)
from tests.reliability.chaos import (
    FAULT_KINDS,
    OWNER,
    Chaos,
    Delivery,
    Harness,
    Rates,
    TaskSpec,
    chain_steps,
    check_task,
    count_stream,
    counters,
    expected_sum,
    make_chaos,
    normalize,
    quiet_rates,
    recount,
)

TASKS = int(os.environ.get("RELIABILITY_TASKS", "300"))
# From this size on the workload holds every task type, so every fault kind has its chance.
FAULT_KINDS_TASKS = 200
REFERENCE_OWNER = "reliability-reference"
MAX_ROUNDS = 5000


# ------------------------------------------------------------------ the workload


# The first tasks: two CHUNKSUM (the storm and the poison), then one of each rarer type, so
# that every type, and every fault that only a type meets (SES errors), is in every run.
FIRST_DRAWS = (0.5, 0.5, 0.0, 0.05, 0.07, 0.1)


def make_specs(rng: random.Random, size: int) -> list[TaskSpec]:
    specs = []
    for n in range(size):
        draw = rng.random()
        if n < len(FIRST_DRAWS):
            draw = FIRST_DRAWS[n]
        if draw < 0.04:
            kind, params = (
                "EMAIL",
                {
                    "recipient_count": 3,
                    "subject": "Hello {name}",
                    "body": "Dear {name}, you are number {index}.",
                    "rate_per_second": 50,
                    "batch_size": 1,  # a SendBulkEmail per recipient: more SES faults drawn
                },
            )
        elif draw < 0.06:
            kind, params = "DATA_PROCESSING", {"rows": 200, "columns": 3, "seed": rng.randint(1, 2)}
        elif draw < 0.08:
            # An uploaded CSV with quoted line breaks, a quoted cell longer than a chunk among
            # them: records span the 64 KiB chunk edges.
            seed = rng.randint(1, AWKWARD_FILES)
            kind, params = (
                "DATA_PROCESSING",
                {
                    "input_key": awkward_key(OWNER, seed),
                    "chunk_bytes": 64 * 1024,
                    "delimiter": awkward_file(seed)[1],
                },
            )
        elif draw < 0.16:
            kind, params = (
                "PARTSUM",
                {
                    "chunks": rng.randint(2, 10),
                    "parts": rng.randint(2, 5),
                    "max_parallel": rng.randint(1, 3),
                    "salt": rng.randrange(10**9),
                },
            )
        else:
            kind, params = "CHUNKSUM", {"chunks": rng.randint(1, 8), "salt": rng.randrange(10**9)}
        then = []
        if kind == "CHUNKSUM" and rng.random() < 0.1:
            # A chain: one or two more CHUNKSUM tasks, each started once the one before it
            # succeeded, whatever faults hit the hand-off.
            then = [
                {
                    "type": "CHUNKSUM",
                    "params": {"chunks": rng.randint(1, 4), "salt": rng.randrange(10**9)},
                }
                for _ in range(rng.randint(1, 2))
            ]
        specs.append(TaskSpec(key=f"task-{n:05d}", task_type=kind, params=params, then=then))
    return specs


AWKWARD_FILES = 3


@functools.cache
def awkward_file(seed: int) -> tuple[str, str]:
    return awkward_csv(seed, rows=300, long_cell=70_000)


def awkward_key(owner: str, seed: int) -> str:
    return f"uploads/{owner}/awkward/{seed}.csv"


def upload_awkward_files(harness: Harness) -> None:
    """The awkward CSVs, uploaded by the workload's owner and the reference's."""
    s3 = boto3.client("s3")
    for seed in range(1, AWKWARD_FILES + 1):
        for owner in (OWNER, REFERENCE_OWNER):
            s3.put_object(
                Bucket=harness.env["DATA_BUCKET"],
                Key=awkward_key(owner, seed),
                Body=awkward_file(seed)[0].encode(),
            )


def fault_free_results(harness: Harness, specs: list[TaskSpec]) -> dict[str, Any]:
    """What each task must return: computed for CHUNKSUM, a clean run for the real types."""
    references: dict[str, Any] = {}
    sent: dict[str, str] = {}
    for spec in specs:
        if spec.task_type in ("CHUNKSUM", "PARTSUM"):
            continue
        signature = json.dumps([spec.task_type, spec.params], sort_keys=True)
        if signature not in sent:
            response = call_api(
                http_event(
                    "POST",
                    "/tasks",
                    body={"type": spec.task_type, "params": reference_params(spec.params)},
                    sub=REFERENCE_OWNER,
                )
            )
            assert response.status == 201, response.body
            sent[signature] = response.body["id"]
    queues = harness.queues("HighPriorityQueue", "TaskQueue", "PartsQueue")
    Pipeline(harness.sqs, [q.url for q in queues]).run()
    for signature, task_id in sent.items():
        task = harness.store.tasks.get(task_id)
        assert task.status == TaskStatus.SUCCESS, (signature, task.error)
        references[signature] = normalize(task.result, task_id)
    expected = {}
    for spec in specs:
        for position, step in enumerate(spec.then, start=2):
            params = step["params"]
            expected[f"{spec.key}/{position}"] = {
                "sum": expected_sum(params["salt"], params["chunks"]),
                "chunks": params["chunks"],
            }
        if spec.task_type in ("CHUNKSUM", "PARTSUM"):
            expected[spec.key] = {
                "sum": expected_sum(spec.params["salt"], spec.params["chunks"]),
                "chunks": spec.params["chunks"],
            }
        else:
            signature = json.dumps([spec.task_type, spec.params], sort_keys=True)
            expected[spec.key] = references[signature]
    return expected


def reference_params(params: dict[str, Any]) -> dict[str, Any]:
    """The params with the reference owner's uploads in place of the workload owner's."""
    text = json.dumps(params).replace(f"uploads/{OWNER}/", f"uploads/{REFERENCE_OWNER}/")
    return dict(json.loads(text))


def normalize_owner(value: Any) -> Any:
    return json.loads(json.dumps(value).replace(REFERENCE_OWNER, OWNER))


def drain(
    chaos: Chaos,
    delivery: Delivery,
    pending: list[TaskSpec] | None = None,
    submit: Callable[[TaskSpec], None] = lambda spec: None,
) -> None:
    pending = pending if pending is not None else []
    while delivery.rounds < MAX_ROUNDS:
        if pending:
            wave = chaos.rng.randint(10, 40)
            for spec in pending[:wave]:
                submit(spec)
            del pending[:wave]
        busy = delivery.round()
        if busy or pending:
            continue
        if chaos.actions:  # the user's remaining requests arrive now
            chaos.user_moment(force=True)
            continue
        # Quiet: the sweeper's next run sends what API calls that died never sent
        if chaos.sweep(wiring.settings().sweep_grace_seconds):
            continue
        return
    raise AssertionError(f"queues not drained after {MAX_ROUNDS} rounds")


@pytest.mark.usefixtures("atomic_dynamodb")  # also keeps moto's stream sequence numbers unique
def test_mixed_workload_under_faults_keeps_every_invariant(harness: Harness) -> None:
    seed = int(os.environ.get("RELIABILITY_SEED") or random.SystemRandom().randrange(10**6))
    print(f"\nreliability: RELIABILITY_SEED={seed} RELIABILITY_TASKS={TASKS}")
    rng = random.Random(seed)
    harness.engine.rng = random.Random(seed)
    started, cpu = time.monotonic(), time.process_time()
    specs = make_specs(rng, TASKS)
    upload_awkward_files(harness)
    expected = {k: normalize_owner(v) for k, v in fault_free_results(harness, specs).items()}
    rates = Rates()
    chaos, delivery = make_chaos(harness, rng, rates)

    def submit(spec: TaskSpec) -> None:
        body: dict[str, Any] = {
            "type": spec.task_type,
            "params": spec.params,
            "max_attempts": rng.randint(2, 4),
        }
        if rng.random() < 0.2:
            body["priority"] = "high"
        if spec.then:
            body["then"] = spec.then
        spec.task_id = chaos.submit(body, spec.key)
        # The first task gets a storm and the second is poison (`Chaos.draw`'s first chance)
        if rng.random() < rates.storm_share or not chaos.storm:
            chaos.storm[spec.task_id] = 6  # 3 deliveries and 3 more alone: to the DLQ
        elif rng.random() < rates.poison or not chaos.poison:
            chaos.poison.add(spec.task_id)
        if rng.random() < rates.cancel:
            delay = rng.randint(0, 600)
            chaos.schedule("cancel", spec.task_id, delay)
            if rng.random() < rates.retry_after_cancel:
                chaos.schedule(
                    "retry", spec.task_id, delay + rng.randint(1, 600), rng.random() < 0.5
                )
        if rng.random() < rates.random_retry:
            chaos.schedule("retry", spec.task_id, rng.randint(0, 800), rng.random() < 0.5)
        if rng.random() < rates.cancel_retry_storm:
            moment = rng.randint(0, 200)
            for cycle in range(rng.randint(10, 30)):
                moment += rng.randint(1, 30)
                kind = "cancel" if cycle % 2 == 0 else "retry"
                chaos.schedule(kind, spec.task_id, moment, rng.random() < 0.5)

    # Given the workload, submitted in waves while the workers run, with every fault on
    chaos.enabled = True
    try:
        drain(chaos, delivery, list(specs), submit)
        # And the user retries some of what failed or was cancelled, then all is drained
        for spec in specs:
            status = harness.store.tasks.get(spec.task_id).status
            if (
                status in (TaskStatus.FAILED, TaskStatus.CANCELLED)
                and rng.random() < rates.final_retry
            ):
                chaos.retry(spec.task_id, restart=rng.random() < 0.5)
        drain(chaos, delivery)
    finally:
        chaos.enabled = False
        chaos.close()
    elapsed = time.monotonic() - started
    checking = time.monotonic()

    # Then every task satisfies every invariant
    violations = []
    explained = 0
    tally: Counter[str] = Counter()
    steps, violations = chain_steps(specs, harness.store)
    tally["chain steps started"] = len(steps)
    for spec in [*specs, *steps]:
        problems = check_task(spec, harness.store, harness.ledger, expected, tally)
        violations += [f"{spec.task_id} {spec.task_type} {spec.params}: {p}" for p in problems]
        if problems and explained < 5:  # what happened to it, for whoever debugs this
            explained += 1
            violations.append(explain(spec, harness))
    listed, ids = recount(harness.store)
    if sorted(ids) != sorted(s.task_id for s in [*specs, *steps]):
        violations.append(
            f"the owner lists {len(ids)} tasks ({len(set(ids))} distinct), "
            f"{len(specs)} were submitted with distinct idempotency keys, "
            f"{len(steps)} chain steps started"
        )
    delivery.count_stream()  # what the stream still holds (the last round counted the rest)
    stats = counters(harness.store)
    if stats != listed:
        violations.append(f"stats counters {dict(stats)} differ from the recount {dict(listed)}")
    api_stats = call_api(http_event("GET", "/stats", sub=OWNER)).body["counts"]["by_status_type"]
    if counters_of(api_stats) != listed:
        violations.append(f"GET /stats {api_stats} differs from the recount {dict(listed)}")
    left = delivery.depth()
    if left:
        violations.append(f"{left} message(s) left on the queues")
    # And every kind of fault had its chance: one that never fired hits nothing it aims at
    never = sorted(set(FAULT_KINDS) - set(harness.ledger.faults))
    if never and TASKS >= FAULT_KINDS_TASKS:
        violations.append(f"fault kinds that never fired: {never}")

    elapsed = (elapsed, time.monotonic() - checking, time.process_time() - cpu)
    report(specs, harness, delivery, listed, tally, elapsed, seed)
    assert not violations, f"{len(violations)} violation(s) (seed {seed}):\n" + "\n".join(
        violations[:50]
    )


def explain(spec: TaskSpec, harness: Harness) -> str:
    task, events = harness.store.tasks.get_with_events(spec.task_id, OWNER, event_limit=2000)
    ledger = harness.ledger
    lines = [
        f"    --- {spec.task_id}: {task.status}, attempts {task.attempts}, "
        f"lease {task.lease_expires_at}, error {task.error}",
        f"    faults {dict(ledger.task_faults.get(spec.task_id, {}))}",
        f"    user {ledger.actions.get(spec.task_id, [])}",
        f"    chunks (seq, index) {ledger.executions.get(spec.task_id, [])}",
        *(f"    {e.time.isoformat()} {e.level} {e.message}" for e in events),
    ]
    return "\n".join(lines)


def counters_of(by_status_type: dict[str, dict[str, int]]) -> Counter[tuple[str, str]]:
    return Counter(
        {(s, t): n for s, by_type in by_status_type.items() for t, n in by_type.items() if n}
    )


def report(
    specs: list[TaskSpec],
    harness: Harness,
    delivery: Delivery,
    listed: Counter[tuple[str, str]],
    tally: Counter[str],
    elapsed: tuple[float, float, float],
    seed: int,
) -> None:
    ledger = harness.ledger
    types = Counter(s.task_type for s in specs)
    user = Counter(
        f"{kind} {status}" for acts in ledger.actions.values() for _, kind, status, _ in acts
    )
    lines = [
        f"reliability figures (seed {seed}, {len(specs)} tasks: {dict(sorted(types.items()))})",
        f"  faults injected: {sum(ledger.faults.values())} "
        + str(dict(sorted(ledger.faults.items()))),
        "  delivery: "
        + str(dict(sorted(delivery.figures.items())))
        + f", rounds {delivery.rounds}",
        "  user requests: " + str(dict(sorted(user.items()))),
        "  outcomes: " + str({f"{s} {t}": n for (s, t), n in sorted(listed.items())}),
        "  CHUNKSUM chunks: " + str(dict(tally)),
        f"  simulated time {harness.clock.offset}, wall time {elapsed[0]:.1f} s "
        f"+ {elapsed[1]:.1f} s of checks ({elapsed[2]:.1f} s of CPU in all)",
    ]
    print("\n".join(lines))


# ------------------------------------------------------------------ idempotent submit


def api_container(n: int) -> ModuleType:
    """A fresh copy of functions/api/app.py: what one Lambda execution environment holds.

    Powertools' resolver keeps the current request on the module's `app`, which is right for
    Lambda (one request at a time per environment) but not for threads sharing one module.
    """
    return load_handler_module(FUNCTIONS_DIR / "api", "app.lambda_handler", f"api_container_{n}")


@pytest.mark.usefixtures("atomic_dynamodb")
def test_simultaneous_submits_with_one_idempotency_key_make_one_task_and_one_message(
    harness: Harness,
) -> None:
    # Given 24 clients sending the same submit with one Idempotency-Key at the same moment:
    # each thread stops just before its write until all are there, so the writes collide
    from taskqueue.aws import client

    threads_per_key, keys = 24, 4
    containers = [api_container(n) for n in range(threads_per_key)]
    dynamodb = client("dynamodb")
    gates: dict[str, threading.Barrier] = {}

    def hold_until_all_arrive(params: dict[str, Any], **_: Any) -> None:
        items = params.get("TransactItems") or []
        for item in items:
            pk = item.get("Put", {}).get("Item", {}).get("pk", {}).get("S", "")
            if pk.startswith("IDEMP#") and pk in gates:
                gates[pk].wait(timeout=20)

    dynamodb.meta.events.register("before-call.dynamodb.TransactWriteItems", hold_until_all_arrive)
    results: dict[str, list[tuple[int, str]]] = {}
    try:
        for k in range(keys):
            key = f"same-key-{k}"
            gates[f"IDEMP#{OWNER}#{key}"] = threading.Barrier(threads_per_key)
            body = {"type": "CHUNKSUM", "params": {"chunks": 3, "salt": k}}
            answers: list[tuple[int, str]] = []

            def send(
                container: Any, body: dict[str, Any] = body, key: str = key, out: list = answers
            ) -> None:
                event = http_event(
                    "POST", "/tasks", body=body, headers={"Idempotency-Key": key}, sub=OWNER
                )
                response = container.lambda_handler(event, FakeLambdaContext())
                payload = json.loads(response["body"])
                out.append((response["statusCode"], payload.get("id", str(payload))))

            # When they all submit at once, each from its own Lambda execution environment
            threads = [threading.Thread(target=send, args=(c,)) for c in containers]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            results[key] = answers
    finally:
        dynamodb.meta.events.unregister(
            "before-call.dynamodb.TransactWriteItems", hold_until_all_arrive
        )

    # Then for each key exactly one request created the task and the others replayed it
    created_ids = set()
    for key, answers in results.items():
        statuses = Counter(status for status, _ in answers)
        assert statuses == {201: 1, 200: threads_per_key - 1}, (key, answers)
        assert len({task_id for _, task_id in answers}) == 1, (key, answers)
        created_ids.add(answers[0][1])
    # And the owner has exactly one task per key, one message per task, and counters agree
    listed, ids = recount(harness.store)
    assert sorted(ids) == sorted(created_ids)
    assert listed == {("PENDING", "CHUNKSUM"): keys}
    count_stream(harness)
    assert counters(harness.store) == listed
    messages = []
    for queue in harness.queues("TaskQueue", "HighPriorityQueue"):
        while got := harness.sqs.receive_message(
            QueueUrl=queue.url, MaxNumberOfMessages=10, VisibilityTimeout=600
        ).get("Messages", []):
            messages += [json.loads(m["Body"])["task_id"] for m in got]
    assert sorted(messages) == sorted(created_ids)
    print(
        f"\nidempotent submit: {keys} keys x {threads_per_key} simultaneous requests -> "
        f"{len(ids)} tasks, {len(messages)} messages"
    )


# ------------------------------------------------------------------ one fault at every call


SWEEP = ("kill-before", "kill-after", "error")


def test_a_fault_at_every_worker_aws_call_loses_nothing_and_repeats_at_most_one_chunk(
    harness: Harness,
) -> None:
    """The worker killed before or after, or failed at, each of its AWS calls in turn."""
    chaos, delivery = make_chaos(harness, random.Random(0), quiet_rates())
    chaos.chunks_per_invocation = 2  # a 5-chunk task takes three invocations (two handovers)
    chaos.enabled = True
    params = {"chunks": 5, "salt": 11}
    body = {"type": "CHUNKSUM", "params": params}
    # Given the number of AWS calls the worker makes for this task when nothing fails
    chaos.submit(body, "sweep-clean")
    drain(chaos, delivery)
    calls = chaos.worker_calls
    specs = []
    try:
        # When each call in turn is hit by each kind of fault (one fault per task)
        for kind in SWEEP:
            for call in range(1, calls + 1):
                chaos.worker_calls, chaos.forced = 0, (call, kind)
                spec = TaskSpec(key=f"sweep-{kind}-{call}", task_type="CHUNKSUM", params=params)
                spec.task_id = chaos.submit(body, spec.key)
                drain(chaos, delivery)
                specs.append(spec)
    finally:
        chaos.enabled = False
        chaos.close()
    # Then every task finished with the exact result, no chunk lost, at most one run twice
    expected = {s.key: {"sum": expected_sum(11, 5), "chunks": 5} for s in specs}
    tally: Counter[str] = Counter()
    violations = [
        f"{spec.key}: {problem}"
        for spec in specs
        for problem in check_task(spec, harness.store, harness.ledger, expected, tally)
    ]
    hit = [s.key for s in specs if sum(harness.ledger.task_faults[s.task_id].values()) == 1]
    assert len(hit) == len(specs), (
        f"the fault did not fire for {set(s.key for s in specs) - set(hit)}"
    )
    statuses = Counter(harness.store.tasks.get(s.task_id).status.value for s in specs)
    print(
        f"\nfault sweep: {calls} worker AWS calls x {len(SWEEP)} kinds = {len(specs)} tasks, "
        f"outcomes {dict(statuses)}, {dict(tally)}"
    )
    assert not violations, "\n".join(violations)
    assert statuses == {"SUCCESS": len(specs)}


API_DEATHS = ("kill-before", "kill-after")


def test_the_api_dying_at_any_aws_call_of_a_submit_or_a_retry_strands_no_task(
    harness: Harness,
) -> None:
    """The API dies before or after each AWS call of a submit, and of a retry, in turn, and
    its client never repeats the call: the sweeper sends what no one sent."""
    chaos, delivery = make_chaos(harness, random.Random(0), quiet_rates())
    chaos.enabled = True
    params = {"chunks": 3, "salt": 5}
    body = {"type": "CHUNKSUM", "params": params}
    specs: list[TaskSpec] = []
    never_written = 0
    try:
        # Given the AWS calls a submit and a retry make when nothing fails
        chaos.submit(body, "clean-submit")
        submit_calls = chaos.api_calls
        clean = chaos.submit(body, "clean-retry")
        chaos.cancel(clean)
        chaos.retry(clean, restart=False)
        retry_calls = chaos.api_calls
        drain(chaos, delivery)
        # When the API dies at each of those calls in turn (no queue drained in between)
        for kind in API_DEATHS:
            for call in range(1, submit_calls + 1):
                spec = TaskSpec(key=f"submit-{kind}-{call}", task_type="CHUNKSUM", params=params)
                chaos.forced_api = (call, kind)
                killed = chaos.api(
                    "POST", "/tasks", body=body, headers={"Idempotency-Key": spec.key}
                )
                chaos.forced_api = None
                assert killed.status == 0, killed
                task_id = chaos.written_by(spec.key)
                if task_id is None:
                    never_written += 1  # died before its write: there is no task to strand
                    continue
                spec.task_id = task_id
                specs.append(spec)
            for call in range(1, retry_calls + 1):
                spec = TaskSpec(key=f"retry-{kind}-{call}", task_type="CHUNKSUM", params=params)
                spec.task_id = chaos.submit(body, spec.key)
                chaos.cancel(spec.task_id)
                chaos.forced_api = (call, kind)
                killed = chaos.retry(spec.task_id, restart=False)
                chaos.forced_api = None
                assert killed.status == 0, killed
                specs.append(spec)
        stranded = sum(harness.store.tasks.get(s.task_id).enqueued_at is None for s in specs)
        # And the workers and the sweeper run until all is quiet
        drain(chaos, delivery)
    finally:
        chaos.enabled = False
        chaos.close()
    # Then every task that was written ran to completion with the exact sum, except a retry
    # that died before its write, which left its task CANCELLED as it was
    expected = {s.key: {"sum": expected_sum(5, 3), "chunks": 3} for s in specs}
    tally: Counter[str] = Counter()
    violations = [
        f"{spec.key}: {problem}"
        for spec in specs
        for problem in check_task(spec, harness.store, harness.ledger, expected, tally)
    ]
    outcomes = Counter()
    for spec in specs:
        task, events = harness.store.tasks.get_with_events(spec.task_id, OWNER)
        retried = any(e.message.startswith("retry requested") for e in events)
        outcomes[(spec.key.split("-")[0], task.status.value, retried)] += 1
        if spec.key.startswith("submit") or retried:
            assert task.status == TaskStatus.SUCCESS, (spec.key, explain(spec, harness))
        else:
            assert task.status == TaskStatus.CANCELLED, (spec.key, explain(spec, harness))
    print(
        f"\nAPI deaths: {submit_calls} submit calls and {retry_calls} retry calls x "
        f"{len(API_DEATHS)} = {len(specs) + never_written} requests; {never_written} died "
        f"before writing, {stranded} left their task unmarked (message not sent or not marked); "
        f"outcomes {dict(outcomes)}"
    )
    assert not violations, "\n".join(violations)
    assert stranded > 0  # the sweep did strand tasks: the sweeper is what saved them
    assert delivery.depth() == 0


def test_a_poison_record_fails_only_its_own_task_never_its_batch_neighbours(
    harness: Harness,
) -> None:
    """A record that kills every invocation that runs it (out of memory, a timeout) shares
    its batches with nine innocent tasks; only the poison's task may reach the DLQ."""
    rates = quiet_rates()
    chaos, delivery = make_chaos(harness, random.Random(3), rates)
    chaos.enabled = True
    params = {"chunks": 2, "salt": 9}
    body = {"type": "CHUNKSUM", "params": params}
    specs = [TaskSpec(key=f"poison-{n}", task_type="CHUNKSUM", params=params) for n in range(10)]
    try:
        # Given one poison task and nine innocent ones, all queued before any worker runs
        for spec in specs:
            spec.task_id = chaos.submit(body, spec.key)
        poison = specs[0].task_id
        chaos.poison.add(poison)
        # When the workers drain them, every batch as full as it can be (all that is left of
        # the ten: a quiet queue, the worst case for the neighbours)
        delivery.full_batches = True
        drain(chaos, delivery)
    finally:
        chaos.enabled = False
        chaos.close()
    # Then the poison's task is FAILED by its dead letter, and every innocent one succeeded
    statuses = {s.key: harness.store.tasks.get(s.task_id).status for s in specs}
    letters = harness.store.dead_letters.list(OWNER)
    print(
        f"\npoison record: {harness.ledger.faults['poison']} invocations killed, "
        f"{delivery.figures['worker invocations']} invocations, statuses "
        f"{dict(Counter(statuses.values()))}, dead letters {len(letters)}, messages dead "
        f"{delivery.figures['dead letters handled']}"
    )
    assert statuses == {
        s.key: TaskStatus.FAILED if s.task_id == poison else TaskStatus.SUCCESS for s in specs
    }
    assert [d.task_id for d in letters] == [poison]
    # And no innocent message reached the DLQ (even of a task finished before a kill)
    assert delivery.figures["dead letters handled"] == 1
    assert harness.ledger.faults["poison"] == 6  # 3 batches, then 3 times alone


def test_visibility_timeout_outlasts_the_longest_lease(
    transformed_template: dict[str, Any],
) -> None:
    """Redelivery resumes a dead worker's task only if its lease has expired by then."""
    from taskqueue.engine import Engine

    resources = transformed_template["Resources"]
    worker_timeout = int(resources["WorkerFunction"]["Properties"]["Timeout"])
    grace = Engine.__dataclass_fields__["lease_grace_seconds"].default
    for queue in ("TaskQueue", "HighPriorityQueue"):
        properties = resources[queue]["Properties"]
        assert int(properties["VisibilityTimeout"]) > worker_timeout + grace, queue
        assert int(properties["RedrivePolicy"]["maxReceiveCount"]) >= 3, queue
