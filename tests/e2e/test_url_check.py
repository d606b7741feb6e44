"""End to end: URL_CHECK, the example type from outside the core layer, on the local stack.

The stack finds it the way docs/task-types.md tells a developer to run their own type: its
package's ``src`` on PYTHONPATH and ``--parameter TaskTypeModules=url_check``. Checks may
reach loopback (``URL_CHECK_ALLOW_LOOPBACK``) so that a server of this test can answer them;
the metadata service stays unreachable. Driven through the Python client and ``tq``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rich.console import Console

from taskqueue_client import Client, TaskStatus, ValidationFailed
from taskqueue_client.cli import main as tq_main
from tests.client.support import jwt_for
from tests.e2e.devstack_process import ROOT, Stack, StackError, start_stack, stop_stack

pytestmark = pytest.mark.e2e

USER = "url-check-e2e"
SOURCE = ROOT / "examples" / "task_types" / "url_check" / "src"
METADATA = "http://169.254.169.254/latest/meta-data/"


class _Pages(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        status, body = (200, b"hello") if self.path == "/ok" else (404, b"no")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def pages() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host!s}:{port}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def url_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with pytest.MonkeyPatch.context() as patch:
        paths = [str(SOURCE), *filter(None, [os.environ.get("PYTHONPATH")])]
        patch.setenv("PYTHONPATH", os.pathsep.join(paths))
        patch.setenv("URL_CHECK_ALLOW_LOOPBACK", "true")
        log = tmp_path_factory.mktemp("devstack-url-check") / "devstack.log"
        try:
            running = start_stack(log, "--parameter", "TaskTypeModules=url_check")
        except StackError as error:
            pytest.fail(str(error), pytrace=False)
    yield running
    assert stop_stack(running) == 0, running.output()


@pytest.fixture
def client(url_stack: Stack) -> Client:
    return Client(url_stack.url, jwt_for(USER), timeout=10)


def test_the_stack_says_it_loaded_the_plugin_and_lists_it(url_stack: Stack, client: Client) -> None:
    assert "task types from plugins: URL_CHECK" in url_stack.output()
    types = {t.name: t for t in client.task_types()}
    assert {"DATA_PROCESSING", "EMAIL", "IMAGE_PROCESSING", "URL_CHECK"} <= set(types)
    assert types["URL_CHECK"].params_schema["properties"]["timeout_seconds"]["maximum"] == 30


def test_a_check_submitted_through_the_client_runs_to_an_exact_result(
    client: Client, pages: str, tmp_path: Path
) -> None:
    urls = [f"{pages}/ok", f"{pages}/missing", METADATA]
    done = client.submit("URL_CHECK", {"urls": urls, "urls_per_chunk": 2}).wait(timeout=60)
    assert done.status is TaskStatus.SUCCESS, done.view.error
    assert (done.view.units_done, done.view.failed_items) == (3, 2)
    assert done.result is not None
    assert (done.result["ok"], done.result["by_status"]) == (1, {"200": 1, "404": 1})
    assert done.result["failure_codes"] == {"blocked_address": 1, "http_error": 1}
    (saved,) = done.download(tmp_path)
    rows = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert [(r["url"], r["status"], r["error_code"]) for r in rows] == [
        (urls[0], "200", ""),
        (urls[1], "404", "http_error"),
        (METADATA, "", "blocked_address"),
    ]


def test_params_out_of_bounds_are_refused_at_their_field(client: Client) -> None:
    with pytest.raises(ValidationFailed) as refused:
        client.submit("URL_CHECK", {"urls": ["https://example.com/"], "timeout_seconds": 300})
    assert refused.value.details[0]["loc"] == ["body", "params", "timeout_seconds"]


def test_tq_submits_and_waits_for_a_check(url_stack: Stack, pages: str) -> None:
    out = io.StringIO()
    code = tq_main(
        [
            *("--url", url_stack.url, "--token", jwt_for(USER), "submit", "URL_CHECK"),
            *("--params", json.dumps({"urls": [f"{pages}/ok"]}), "--wait", "--json"),
        ],
        out=Console(file=out, width=200, color_system=None),
        err=Console(file=io.StringIO(), width=200, color_system=None),
    )
    assert code == 0, out.getvalue()
    (task,) = json.loads(out.getvalue())
    assert (task["status"], task["result"]["ok"]) == ("SUCCESS", 1)
