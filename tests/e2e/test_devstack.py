"""End to end: `python -m devstack dev` as a subprocess, used over HTTP like a browser would.

One stack serves the whole session (the `stack` fixture of tests/e2e/conftest.py, shared with
test_browser.py); the shutdown test starts its own so it can stop it.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.e2e.devstack_process import (
    Stack,
    descendants,
    put_upload,
    start_stack,
    stop_stack,
    submit,
    unreadable_like,
    upload_ticket,
    wait_for,
)

pytestmark = pytest.mark.e2e

CSV = "city,temperature,rain\nOslo,4.5,12\nRome,17.25,3\nLima,19,0\nNuuk,-6.5,7\n"


# ------------------------------------------------------------------------------- page


def test_page_and_generated_config_are_served(stack: Stack) -> None:
    page = requests.get(f"{stack.url}/", timeout=10)
    config = requests.get(f"{stack.url}/config.js", timeout=10)

    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "config.js" in page.text
    assert config.status_code == 200
    assert config.text.strip() == (
        'window.TASKQUEUE_CONFIG = {"apiBaseUrl": "", "websocketUrl": "/live"};'
    )


def test_unknown_file_is_404_and_api_preflight_is_answered(stack: Stack) -> None:
    missing = requests.get(f"{stack.url}/no-such-file.js", timeout=10)
    preflight = requests.options(
        f"{stack.url}/tasks",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,idempotency-key",
        },
        timeout=10,
    )

    assert missing.status_code == 404
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]


# ------------------------------------------------------------------------------- task types


def test_data_processing_task_succeeds_with_downloadable_result(stack: Stack) -> None:
    task = submit(stack, "DATA_PROCESSING", {"rows": 2000, "columns": 4, "seed": 7})

    done = wait_for(stack, task["id"], "SUCCESS", "FAILED")

    assert done["status"] == "SUCCESS", done["error"]
    assert done["result"]["rows"] == 2000
    assert done["result"]["columns"] == 4
    assert done["progress"] == 100
    [download] = done["downloads"]
    assert download["key"].endswith("/result.json")
    assert requests.get(download["url"], timeout=10).json()["rows"] == 2000


def test_email_task_sends_to_every_recipient(stack: Stack) -> None:
    task = submit(
        stack,
        "EMAIL",
        {"recipient_count": 5, "subject": "Hello {name}", "body": "You are number {index}."},
    )

    done = wait_for(stack, task["id"], "SUCCESS", "FAILED")

    assert done["status"] == "SUCCESS", done["error"]
    assert done["result"]["recipients"] == 5
    assert done["result"]["sent"] == 5
    assert done["result"]["failed"] == 0


def test_image_processing_task_offers_converted_images(stack: Stack) -> None:
    task = submit(stack, "IMAGE_PROCESSING", {"generate_count": 3, "width": 64, "height": 64})

    done = wait_for(stack, task["id"], "SUCCESS", "FAILED")

    assert done["status"] == "SUCCESS", done["error"]
    assert done["result"]["processed"] == 3
    assert len(done["outputs"]) == 3
    assert len(done["downloads"]) == 3
    for download in done["downloads"]:
        image = requests.get(download["url"], timeout=10)
        assert image.status_code == 200
        assert image.content[:3] == b"\xff\xd8\xff"  # JPEG, the default output format


# ------------------------------------------------------------------------------- uploads


def test_presigned_upload_url_allows_the_page_origin(stack: Stack) -> None:
    ticket = upload_ticket(stack, "cors.csv", CSV.encode(), "text/csv")

    preflight = requests.options(
        ticket["url"],
        headers={
            "Origin": stack.url,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=10,
    )

    assert ticket["url"].startswith(stack.moto_url)
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] in ("*", stack.url)
    assert "PUT" in preflight.headers["Access-Control-Allow-Methods"]


def test_uploaded_csv_is_processed(stack: Stack) -> None:
    ticket = upload_ticket(stack, "weather.csv", CSV.encode(), "text/csv")
    put_upload(ticket, CSV.encode())

    task = submit(stack, "DATA_PROCESSING", {"input_key": ticket["key"]})
    done = wait_for(stack, task["id"], "SUCCESS", "FAILED")

    assert ticket["key"].startswith("uploads/dev-user/")
    assert done["status"] == "SUCCESS", done["error"]
    assert done["result"]["rows"] == 4
    assert done["result"]["input"].endswith(ticket["key"])
    stats = {column["name"]: column for column in done["result"]["column_stats"]}
    assert stats["temperature"]["count"] == 4


# ------------------------------------------------------------------------------- control


def test_running_task_is_cancelled(stack: Stack) -> None:
    task = submit(stack, "DATA_PROCESSING", {"rows": 2_000_000})
    wait_for(stack, task["id"], "RUNNING")

    response = requests.delete(f"{stack.url}/tasks/{task['id']}", timeout=10)
    done = wait_for(stack, task["id"], "CANCELLED", "SUCCESS", "FAILED")

    assert response.status_code == 202
    assert response.json()["cancel_requested"] is True
    assert done["status"] == "CANCELLED"
    assert done["progress"] < 100


def test_failed_task_succeeds_after_retry(stack: Stack) -> None:
    ticket = upload_ticket(stack, f"late-{uuid.uuid4().hex[:8]}.csv", CSV.encode(), "text/csv")
    put_upload(ticket, unreadable_like(CSV.encode()))  # a missing one is refused at submit
    task = submit(stack, "DATA_PROCESSING", {"input_key": ticket["key"]}, max_attempts=1)
    failed = wait_for(stack, task["id"], "FAILED", "SUCCESS")
    put_upload(ticket, CSV.encode())

    response = requests.post(f"{stack.url}/tasks/{task['id']}/retry", json={}, timeout=10)
    done = wait_for(stack, task["id"], "SUCCESS", "FAILED")

    assert failed["status"] == "FAILED"
    assert failed["error"]["type"] == "unreadable_input"
    assert response.status_code == 200, response.text
    assert done["status"] == "SUCCESS", done["error"]
    assert done["result"]["rows"] == 4


def test_requests_and_task_transitions_are_logged(stack: Stack) -> None:
    task = submit(stack, "DATA_PROCESSING", {"rows": 10})
    wait_for(stack, task["id"], "SUCCESS")

    deadline = time.monotonic() + 5
    while f"task {task['id']} DATA_PROCESSING  SUCCESS" not in stack.output():
        assert time.monotonic() < deadline, stack.output()
        time.sleep(0.1)
    assert "POST    /tasks 201" in stack.output()


# ------------------------------------------------------------------------------- shutdown


def test_sigint_stops_everything_promptly(tmp_path: Path) -> None:
    running = start_stack(tmp_path / "devstack.log")
    task = submit(running, "DATA_PROCESSING", {"rows": 2_000_000})
    wait_for(running, task["id"], "RUNNING")
    children = descendants(running.process.pid)
    # The worker's and the DLQ handler's environments run as processes of their own
    assert len(children) >= 2

    started = time.monotonic()
    code = stop_stack(running, timeout=10)

    assert code == 0, running.output()
    assert time.monotonic() - started < 10
    assert "stopped" in running.output()
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{running.url}/health", timeout=2)
    with pytest.raises(requests.ConnectionError):
        requests.get(running.moto_url, timeout=2)
