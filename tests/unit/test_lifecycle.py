"""The lifecycle table, row by row: `decide` allows exactly the table's moves and refuses the
rest; the event lines; and no code but the store's transition executor writes `status`."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from taskqueue import lifecycle
from taskqueue.errors import GuardFailed, InvalidTransition
from taskqueue.lifecycle import TABLE, Action, Guard, Transition, decide, number_attempts
from taskqueue.models import Task, TaskStatus

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
EPOCH = int(NOW.timestamp())
TOKEN = "lease-1"
GENERATION = "0123456789abcdef"  # the generation of the message a decision is made for
PACKAGE = Path(lifecycle.__file__).parent


def task_in(status: TaskStatus, guard: Guard, *, meets: bool = True) -> Task:
    """A task in `status` whose fields meet (or break) `guard` at NOW, for token TOKEN and
    a message of generation GENERATION."""
    fields: dict[str, object] = {
        "lease_token": TOKEN,
        "lease_expires_at": EPOCH + 60,
        "generation": GENERATION,
    }
    if guard == Guard.DUE:
        fields = {"run_at": NOW - timedelta(seconds=1) if meets else NOW + timedelta(hours=1)}
    elif guard == Guard.LEASE_RELEASED:
        fields["lease_expires_at"] = 0 if meets else EPOCH + 60
    elif guard == Guard.LEASE_EXPIRED:
        fields["lease_expires_at"] = EPOCH - 1 if meets else EPOCH + 60
    elif guard == Guard.LEASE_HELD:
        fields["lease_token"] = TOKEN if meets else "another-worker"
    elif guard == Guard.CURRENT_MESSAGE:
        fields["generation"] = GENERATION if meets else "fedcba9876543210"
    elif guard == Guard.CURRENT_UNLEASED:
        fields["generation"] = GENERATION if meets else "fedcba9876543210"
        fields["lease_expires_at"] = EPOCH - 1  # its worker died
    return Task(
        task_id="0" * 32,
        owner="alice",
        task_type="EMAIL",
        params={},
        status=status,
        created_at=NOW - timedelta(hours=1),
        updated_at=NOW - timedelta(minutes=1),
        **fields,  # type: ignore[arg-type]
    )


MOVES = [(r, source) for r in TABLE for source in sorted(r.sources)]


def move_id(move: tuple[Transition, TaskStatus]) -> str:
    row, source = move
    return f"{row.action}-{source}-{row.guard.name}"


@pytest.mark.parametrize("move", MOVES, ids=[move_id(m) for m in MOVES])
def test_each_row_is_the_decision_for_its_action_from_its_status(
    move: tuple[Transition, TaskStatus],
) -> None:
    # Given a task in the row's status that meets the row's guard
    row, source = move
    task = task_in(source, row.guard)
    # When its action is decided, then this very row is the answer
    assert decide(task, row.action, NOW, TOKEN, GENERATION) is row


GUARDED = [(r, s) for r, s in MOVES if r.guard != Guard.NONE]


@pytest.mark.parametrize("move", GUARDED, ids=[move_id(m) for m in GUARDED])
def test_each_guarded_row_refuses_a_task_that_breaks_its_guard(
    move: tuple[Transition, TaskStatus],
) -> None:
    # Given a task in the row's status that breaks the row's guard (and so every row's of
    # that action from that status: a live lease is neither released nor expired)
    row, source = move
    task = task_in(source, row.guard, meets=False)
    # Then the move is refused, as a guard's refusal (a 409 in the API)
    with pytest.raises(GuardFailed):
        decide(task, row.action, NOW, TOKEN, GENERATION)


def test_a_dead_copy_of_the_message_a_live_worker_runs_fails_nothing() -> None:
    # Given a RUNNING task whose worker holds a live lease, driven by message GENERATION
    task = task_in(TaskStatus.RUNNING, Guard.LEASE_HELD)
    # When a dead copy of that very message reaches the DLQ, then it may not fail the task
    with pytest.raises(GuardFailed):
        decide(task, Action.DEAD_LETTER, NOW, generation=GENERATION)
    # And once that worker's lease has expired (it died), the dead message fails it
    expired = task.model_copy(update={"lease_expires_at": EPOCH - 1})
    assert decide(expired, Action.DEAD_LETTER, NOW, generation=GENERATION).target == "FAILED"
    # And a message older than generations (none in its body) is taken as the current one
    assert decide(expired, Action.DEAD_LETTER, NOW).target == "FAILED"


REFUSED = [
    (action, status)
    for action in Action
    if action != Action.SUBMIT
    for status in TaskStatus
    if not any(status in r.sources for r in lifecycle.rows(action))
]


@pytest.mark.parametrize("refused", REFUSED, ids=[f"{a}-{s}" for a, s in REFUSED])
def test_every_move_the_table_lacks_is_refused(refused: tuple[Action, TaskStatus]) -> None:
    action, status = refused
    with pytest.raises(InvalidTransition) as raised:
        decide(task_in(status, Guard.NONE), action, NOW, TOKEN)
    assert not isinstance(raised.value, GuardFailed)


def test_the_table_is_the_design_table() -> None:
    # DESIGN.md's lifecycle: cancel, retry and the worker from each status
    allowed = {(r.action, s): r.target or "unchanged" for r in TABLE for s in sorted(r.sources)}
    assert allowed[(Action.CANCEL, TaskStatus.PENDING)] == TaskStatus.CANCELLED
    assert allowed[(Action.CANCEL, TaskStatus.RUNNING)] == "unchanged"
    assert allowed[(Action.CLAIM, TaskStatus.PENDING)] == TaskStatus.RUNNING
    assert allowed[(Action.RETRY, TaskStatus.FAILED)] == TaskStatus.PENDING
    assert allowed[(Action.RETRY, TaskStatus.CANCELLED)] == TaskStatus.PENDING
    assert {s for (a, s) in allowed if a == Action.CANCEL} == {"PENDING", "RUNNING"}
    assert {s for (a, s) in allowed if a == Action.RETRY} == {"FAILED", "CANCELLED"}
    for finished in (TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.CANCELLED):
        assert not [a for (a, s) in allowed if s == finished and a != Action.RETRY] or (
            # a part of a parallel task whose start was guessed wrong runs again (its parent's
            # merge asks for it): the one move out of SUCCESS
            [a for (a, s) in allowed if s == finished] == [Action.REDO]
        )
    # only a claim from PENDING starts an attempt; only a cancel sets a flag
    assert [r for r in TABLE if r.starts_attempt] == [
        lifecycle.row(Action.CLAIM, TaskStatus.PENDING)
    ]
    assert [r.action for r in TABLE if r.flag] == [Action.CANCEL]


def test_the_api_refusals_keep_their_wording() -> None:
    done = task_in(TaskStatus.SUCCESS, Guard.NONE)
    with pytest.raises(InvalidTransition, match=f"task {done.task_id} is SUCCESS and cannot be"):
        decide(done, Action.CANCEL, NOW)
    pending = task_in(TaskStatus.PENDING, Guard.NONE)
    with pytest.raises(
        InvalidTransition, match="is PENDING; only FAILED or CANCELLED tasks can be retried"
    ):
        decide(pending, Action.RETRY, NOW)


def test_event_lines_fill_their_fields_and_a_checkpoint_writes_one_only_at_a_milestone() -> None:
    fail = lifecycle.row(Action.FAIL, TaskStatus.RUNNING)
    assert fail.line({"attempts": 2, "error": "X: y"}) == "failed after 2 attempt(s): X: y"
    checkpoint = lifecycle.row(Action.CHECKPOINT, TaskStatus.RUNNING)
    assert checkpoint.line() is None
    assert checkpoint.line({"percent": 50, "done": 5, "total": 10}) == "50% done (5 of 10)"
    resume = lifecycle.row(Action.CLAIM, TaskStatus.RUNNING, Guard.LEASE_RELEASED)
    assert resume.line() is None
    with pytest.raises(KeyError):
        fail.line()  # a mandatory line without its fields is a bug, not a silent gap


def test_started_lines_are_numbered_within_each_run_of_attempts() -> None:
    messages = [
        "submitted",
        "started",
        "attempt 1 failed (X: y); retry in 5 s",
        "started",
        "failed after 2 attempt(s): X: y",
        "retry requested: resume",
        "started (attempt 1 of 3)",  # written by an older version: kept as it was
        "started",
    ]
    assert number_attempts(messages, 3) == [
        "submitted",
        "started (attempt 1 of 3)",
        "attempt 1 failed (X: y); retry in 5 s",
        "started (attempt 2 of 3)",
        "failed after 2 attempt(s): X: y",
        "retry requested: resume",
        "started (attempt 1 of 3)",
        "started (attempt 2 of 3)",
    ]


def test_a_log_whose_older_lines_moved_off_the_item_numbers_on_from_its_first_numbered_line() -> (
    None
):
    # Given the kept end of a bounded log: its retry line moved out, its lines stored numbered
    kept = ["started (attempt 2 of 4)", "attempt 2 failed (X: y); retry in 5 s", "started"]

    # Then the next claim is the third attempt, not the first
    assert number_attempts(kept, 4) == [
        "started (attempt 2 of 4)",
        "attempt 2 failed (X: y); retry in 5 s",
        "started (attempt 3 of 4)",
    ]


# ------------------------------------------------------------------ only the executor writes status

EXECUTOR = PACKAGE / "store" / "transitions.py"
ASSIGNS_STATUS = re.compile(r"#?\bstatus\s*=\s*:")


def status_writes(path: Path) -> list[str]:
    """Places in `path` that could write a task's status: an update builder's
    `.set(status=...)`, a stored item built with `status=`, a dict with a "status" key (an
    item, or `model_copy(update=...)`), an expression string assigning it, or `x.status = `."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        where = f"{path.relative_to(PACKAGE)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("set", "TaskItem", "new", "model_copy") and any(
                k.arg == "status" for k in node.keywords
            ):
                found.append(f"{where} {name}(status=...)")
        elif isinstance(node, ast.Dict):
            keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
            if any(str(k).lstrip("#:") == "status" for k in keys):
                found.append(f"{where} a dict with a status key")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if ASSIGNS_STATUS.search(node.value):
                found.append(f"{where} {node.value!r}")
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Attribute) and t.attr == "status" for t in targets):
                found.append(f"{where} .status = ...")
    return found


def test_no_code_but_the_transition_executor_writes_a_status() -> None:
    # Given every module of the package
    modules = sorted(PACKAGE.rglob("*.py"))
    assert EXECUTOR in modules and len(modules) > 20
    # Then only the executor has code that could write a status
    elsewhere = [place for m in modules if m != EXECUTOR for place in status_writes(m)]
    assert elsewhere == []
    # and the check does see the executor's own writes (a check that finds nothing proves
    # nothing)
    assert len(status_writes(EXECUTOR)) >= 2
