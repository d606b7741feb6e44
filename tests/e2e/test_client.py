"""End to end: the Python client, `tq` and the example script against the local stack, every
route through the client; and `pip install ./client` into a fresh virtualenv.

The tests act as their own user (a bearer token naming `client-e2e`), so the tasks they make
never show in the page the browser tests look at (they act as the stack's dev user).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid
import venv
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from taskqueue_client import Client, Conflict, NotFound, Task, TaskStatus
from taskqueue_client.cli import main as tq_main
from tests.client.support import jwt_for
from tests.e2e.devstack_process import ROOT, Stack

pytestmark = pytest.mark.e2e

USER = "client-e2e"
SUBMIT_MANY = int(os.environ.get("SUBMIT_MANY_E2E_COUNT", "30"))
CSV = "city,temperature\nOslo,4.5\nRome,17.25\nNuuk,-6.5\n"


@pytest.fixture
def client(stack: Stack) -> Client:
    return Client(stack.url, jwt_for(USER), timeout=10)


def wait_until(client: Client, task: Task, *statuses: TaskStatus, timeout: float = 30) -> Task:
    deadline = time.monotonic() + timeout
    while (current := client.get(task)).status not in statuses:
        assert time.monotonic() < deadline, f"{task.id} is {current.status}, not {statuses}"
        time.sleep(0.1)
    return current


def test_submit_and_wait_with_progress_until_success(client: Client) -> None:
    seen: list[tuple[str, int]] = []
    task = client.submit("DATA_PROCESSING", {"rows": 20_000})
    done = task.wait(timeout=60, on_progress=lambda t: seen.append((t.status.value, t.progress)))
    assert done.status is TaskStatus.SUCCESS
    assert done.result is not None and done.result["rows"] == 20_000
    assert seen[-1] == ("SUCCESS", 100)
    assert [p for _, p in seen] == sorted(p for _, p in seen)


def test_upload_process_and_download(client: Client, tmp_path: Path) -> None:
    source = tmp_path / f"cities-{uuid.uuid4().hex[:6]}.csv"
    source.write_text(CSV)
    key = client.upload(source)
    assert key.startswith(f"uploads/{USER}/")
    done = client.submit("DATA_PROCESSING", {"input_key": key}).wait(timeout=60)
    assert done.status is TaskStatus.SUCCESS, done.view.error
    (saved,) = done.download(tmp_path / "out")
    assert json.loads(saved.read_text())["rows"] == 3


def test_image_outputs_download_as_files(client: Client, tmp_path: Path) -> None:
    params = {"generate_count": 2, "width": 32, "height": 32, "output_format": "PNG"}
    done = client.submit("IMAGE_PROCESSING", params).wait(timeout=60)
    assert done.status is TaskStatus.SUCCESS
    images = [p for p in client.download(done, tmp_path) if p.suffix == ".png"]
    assert len(images) == 2
    assert all(image.read_bytes().startswith(b"\x89PNG") for image in images)


def test_list_pages_and_filters(client: Client) -> None:
    started = client.submit("DATA_PROCESSING", {"rows": 10}, delay_seconds=600)
    ids = [started.id] + [
        client.submit("DATA_PROCESSING", {"rows": 10}, delay_seconds=600).id for _ in range(2)
    ]
    since = started.view.created_at
    assert [t.id for t in client.list(created_after=since, page_size=1)][-3:] == ids[::-1][-3:]
    assert {t.id for t in client.list(status="PENDING", type="DATA_PROCESSING")} >= set(ids)
    for task_id in ids:
        client.cancel(task_id)


def test_cancel_retry_and_conflicts(client: Client) -> None:
    # A scheduled task is cancelled at once; a second cancel conflicts; a retry queues it again.
    task = client.submit("DATA_PROCESSING", {"rows": 10}, delay_seconds=600)
    assert task.cancel().status is TaskStatus.CANCELLED
    with pytest.raises(Conflict):
        task.cancel()
    retried = client.retry(task, restart=True)
    assert retried.status is TaskStatus.PENDING
    assert wait_until(client, task, TaskStatus.SUCCESS).status is TaskStatus.SUCCESS


def test_a_running_task_stops_at_its_next_checkpoint(client: Client) -> None:
    task = client.submit("DATA_PROCESSING", {"rows": 2_000_000})
    wait_until(client, task, TaskStatus.RUNNING)
    requested = client.cancel(task)
    assert requested.view.cancel_requested is True
    done = client.wait(task, timeout=60)
    assert done.status is TaskStatus.CANCELLED and done.progress < 100


def test_idempotency_and_isolation(client: Client, stack: Stack) -> None:
    key = f"e2e-{uuid.uuid4().hex}"
    first = client.submit("DATA_PROCESSING", {"rows": 10}, idempotency_key=key)
    assert client.submit("DATA_PROCESSING", {"rows": 10}, idempotency_key=key).id == first.id
    stranger = Client(stack.url, jwt_for("someone-else"))
    with pytest.raises(NotFound):
        stranger.get(first.id)


def test_the_remaining_routes(client: Client, stack: Stack) -> None:
    assert {"DATA_PROCESSING", "EMAIL", "IMAGE_PROCESSING"} <= {t.name for t in client.task_types()}
    assert set(client.stats().counts.by_status) == {s.value for s in TaskStatus}
    assert client.dead_letters().items == []
    assert (client.redrive().redriven, client.redrive().skipped) == (0, 0)
    anonymous = Client(stack.url)
    assert anonymous.health()["ok"] is True
    assert "/uploads" in anonymous.openapi()["paths"]


def run_tq(stack: Stack, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = tq_main(
        ["--url", stack.url, "--token", jwt_for(USER), *args],
        out=Console(file=out, width=200, color_system=None),
        err=Console(file=err, width=200, color_system=None),
    )
    return code, out.getvalue(), err.getvalue()


def test_tq_submit_wait_show_logs(stack: Stack) -> None:
    code, out, _ = run_tq(stack, "submit", "DATA_PROCESSING", "-p", "rows=500", "--wait", "--json")
    assert code == 0
    (task,) = json.loads(out)
    assert task["status"] == "SUCCESS"
    code, out, _ = run_tq(stack, "logs", task["id"], "--json")
    assert [e["message"] for e in json.loads(out)][-1] == "finished"
    code, out, _ = run_tq(stack, "show", task["id"])
    assert code == 0 and "SUCCESS" in out


def env_for(stack: Stack) -> dict[str, str]:
    return {**os.environ, "TQ_URL": stack.url, "TQ_TOKEN": jwt_for(USER), "PYTHONPATH": ""}


def test_example_submits_many_tasks_and_summarises_them(stack: Stack) -> None:
    # The stack runs a few tasks a second on a loaded 2-CPU machine: by default fewer tasks
    # than the example's 100, still more than its 8 submits in flight and enough for wait_all
    # to poll by listing (SUBMIT_MANY_E2E_COUNT=100 for the example's own count).
    done = subprocess.run(
        [
            *(sys.executable, "examples/submit_many.py", "--count", str(SUBMIT_MANY)),
            *("--params", '{"rows": 200}'),
        ],
        cwd=ROOT,
        env={**env_for(stack), "PYTHONPATH": str(ROOT / "client" / "src")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{SUBMIT_MANY} DATA_PROCESSING tasks in" in done.stdout
    assert f"SUCCESS   {SUBMIT_MANY}\n" in done.stdout


@pytest.mark.slow
def test_pip_install_of_the_client_gives_a_working_client_and_tq(
    stack: Stack, tmp_path: Path
) -> None:
    # Given a fresh virtualenv with nothing but pip
    home = tmp_path / "venv"
    venv.create(home, with_pip=True)
    python, tq = home / "bin" / "python", home / "bin" / "tq"
    run: Callable[..., subprocess.CompletedProcess[str]] = lambda *cmd, **kw: subprocess.run(  # noqa: E731
        [str(c) for c in cmd], capture_output=True, text=True, timeout=600, env=env_for(stack), **kw
    )
    # When the client is installed from the repository
    installed = run(python, "-m", "pip", "install", "--quiet", str(ROOT / "client"))
    assert installed.returncode == 0, installed.stderr
    # Then it brought httpx and rich only, with its type information
    shown = run(python, "-m", "pip", "show", "taskqueue-client")
    requires = next(line for line in shown.stdout.splitlines() if line.startswith("Requires:"))
    assert sorted(requires.split(":", 1)[1].replace(" ", "").split(",")) == ["httpx", "rich"]
    typed = run(
        python,
        "-c",
        "import importlib.resources as r; print(r.files('taskqueue_client').joinpath('py.typed').is_file())",
    )
    assert typed.stdout.strip() == "True"
    # And tq works against the stack
    submitted = run(tq, "submit", "DATA_PROCESSING", "-p", "rows=300", "--wait", "--json")
    assert submitted.returncode == 0, submitted.stderr
    assert json.loads(submitted.stdout)[0]["status"] == "SUCCESS"
    # And so does the library, from a program of the user's
    program = (
        "from taskqueue_client import Client\n"
        "import os\n"
        "client = Client(os.environ['TQ_URL'], os.environ['TQ_TOKEN'])\n"
        "print(client.submit('DATA_PROCESSING', {'rows': 50}).wait(timeout=60).status)\n"
    )
    used = run(python, "-c", program, cwd=tmp_path)
    assert used.stdout.strip() == "SUCCESS", used.stderr
