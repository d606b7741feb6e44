"""`tq`, the command line, against the API handler and the worker in this process."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from taskqueue_client import Client
from taskqueue_client.auth import TokenStore
from taskqueue_client.cli import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE, main
from taskqueue_client.config import Profile
from tests.client.support import IMAGES, step, unreadable_upload
from tests.pipeline_world import World


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty profile folder, and no TQ_* variables from the shell."""
    for name in ("TQ_URL", "TQ_TOKEN", "TQ_PROFILE", "TQ_COGNITO_DOMAIN", "TQ_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TQ_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path / "config"


@pytest.fixture
def tq(make_client: Callable[..., Client], config_home: Path) -> Callable[..., Run]:
    """`tq(*args)` runs the command line with a client of the in-process API."""
    profiles: list[Profile] = []

    def run(*args: str, client: Client | None = None) -> Run:
        out, err = io.StringIO(), io.StringIO()

        def make(profile: Profile) -> Client:
            profiles.append(profile)
            return client or make_client()

        code = main(
            list(args),
            out=Console(file=out, width=200, color_system=None),
            err=Console(file=err, width=200, color_system=None),
            make_client=make,
            tokens=TokenStore(config_home / "tokens.json"),
        )
        return Run(code, out.getvalue(), err.getvalue())

    run.profiles = profiles  # type: ignore[attr-defined]
    return run


def test_submit_json_prints_the_pending_task(tq: Callable[..., Run]) -> None:
    run = tq("submit", "DATA_PROCESSING", "-p", "rows=250", "--priority", "high", "--json")
    assert run.code == EXIT_OK
    assert run.json["status"] == "PENDING"
    assert run.json["params"]["rows"] == 250
    assert run.json["priority"] == "high"


def test_submit_reads_params_from_json_and_key_values_over_it(
    tq: Callable[..., Run], tmp_path: Path
) -> None:
    file = tmp_path / "params.json"
    file.write_text(json.dumps({"rows": 5, "columns": 3}))
    run = tq("submit", "DATA_PROCESSING", "--params", f"@{file}", "-p", "columns=4", "--json")
    assert (run.json["params"]["rows"], run.json["params"]["columns"]) == (5, 4)


def test_submit_then_chains_the_tasks_given_in_order(tq: Callable[..., Run]) -> None:
    # Given a submit with two further steps, one with params, one without
    run = tq(
        "submit",
        "DATA_PROCESSING",
        "-p",
        "rows=10",
        "--then",
        'DATA_PROCESSING={"rows": 20}',
        "--then",
        'DATA_PROCESSING={"rows": 30}',
        "--json",
    )
    # Then the task created is the first of a chain of three
    assert run.code == EXIT_OK
    assert (run.json["chain_position"], run.json["chain_length"]) == (1, 3)
    assert run.json["chain_id"] == run.json["id"]


def test_a_chain_step_without_the_params_its_type_needs_is_refused_at_its_place(
    tq: Callable[..., Run],
) -> None:
    # Given a submit whose second step names a type and no params
    run = tq("submit", "DATA_PROCESSING", "-p", "rows=10", "--then", "DATA_PROCESSING")
    # Then the API's 422 points at that step, and the command fails
    assert run.code != EXIT_OK
    assert "body.then.0.params" in run.err


def test_submit_with_wait_shows_progress_and_exits_0_on_success(
    tq: Callable[..., Run], make_client: Callable[..., Client], world: World
) -> None:
    client = make_client(sleep=lambda seconds: step(world))
    run = tq("submit", "IMAGE_PROCESSING", "--params", json.dumps(IMAGES), "--wait", client=client)
    assert run.code == EXIT_OK
    task_id = run.out.split()[1]
    assert f"{task_id} SUCCESS" in run.out


def test_watch_exits_1_when_a_task_failed(
    tq: Callable[..., Run], client: Client, make_client: Callable[..., Client], world: World
) -> None:
    ok = client.submit("DATA_PROCESSING", {"rows": 10})
    bad = client.submit(
        "DATA_PROCESSING",
        {"input_key": unreadable_upload(world, "uploads/user-123/x/utf16.csv")},
        max_attempts=1,
    )
    run = tq("watch", ok.id, bad.id, "--json", client=make_client(sleep=lambda s: step(world, 5)))
    assert run.code == EXIT_FAILED
    assert [(t["id"], t["status"]) for t in run.json] == [(ok.id, "SUCCESS"), (bad.id, "FAILED")]


def test_watch_exits_3_when_it_times_out(
    tq: Callable[..., Run], client: Client, make_client: Callable[..., Client]
) -> None:
    now = [0.0]
    slow = make_client(clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s + 1))
    task = client.submit("DATA_PROCESSING", {"rows": 10})
    run = tq("watch", task.id, "--timeout", "5", client=slow)
    assert run.code == EXIT_TIMEOUT
    assert f"task {task.id} is still PENDING after 5 s" in run.err


def test_list_shows_a_table_and_json_with_filters(tq: Callable[..., Run], client: Client) -> None:
    kept = client.submit("DATA_PROCESSING", {"rows": 10})
    gone = client.submit("DATA_PROCESSING", {"rows": 10})
    client.cancel(gone)
    table = tq("list")
    assert table.code == EXIT_OK
    assert table.out.splitlines()[0].split() == [
        "ID", "TYPE", "STATUS", "PROGRESS", "CREATED", "DURATION"
    ]  # fmt: skip
    assert [line.split()[:3] for line in table.out.splitlines()[1:]] == [
        [gone.id, "DATA_PROCESSING", "CANCELLED"],
        [kept.id, "DATA_PROCESSING", "PENDING"],
    ]
    assert [t["id"] for t in tq("list", "--status", "PENDING", "--json").json] == [kept.id]
    assert [t["id"] for t in tq("list", "--since", "1h", "--limit", "1", "--json").json] == [
        gone.id
    ]


def test_show_prints_the_task_with_its_result_and_events(
    tq: Callable[..., Run], client: Client, world: World
) -> None:
    task = client.submit("DATA_PROCESSING", {"rows": 10})
    world.pipeline().run()
    run = tq("show", task.id)
    assert run.code == EXIT_OK
    fields = dict(line.split(maxsplit=1) for line in run.out.splitlines()[:12] if line.strip())
    assert fields["id"].strip() == task.id
    assert fields["status"].strip() == "SUCCESS"
    assert '"rows": 10' in run.out
    assert "finished" in run.out
    assert tq("show", task.id, "--json").json["status"] == "SUCCESS"


def test_an_api_error_exits_1_with_its_code_on_stderr(tq: Callable[..., Run]) -> None:
    run = tq("show", "0" * 32)
    assert run.code == EXIT_FAILED
    assert run.out == ""
    assert run.err.startswith("error 404 not_found:")


def test_validation_errors_list_each_field(tq: Callable[..., Run]) -> None:
    run = tq("submit", "DATA_PROCESSING", "-p", "rows=0")
    assert run.code == EXIT_FAILED
    assert "body.params.rows" in run.err


def test_cancel_and_retry(tq: Callable[..., Run], client: Client) -> None:
    task = client.submit("DATA_PROCESSING", {"rows": 10})
    assert f"{task.id} CANCELLED" in tq("cancel", task.id).out
    again = tq("cancel", task.id)
    assert again.code == EXIT_FAILED and "409 conflict" in again.err
    retried = tq("retry", task.id, "--restart")
    assert f"{task.id} PENDING (from the start)" in retried.out


def test_logs_prints_the_events_and_follows_until_the_end(
    tq: Callable[..., Run], client: Client, world: World
) -> None:
    task = client.submit("DATA_PROCESSING", {"rows": 10})
    world.pipeline().run()
    run = tq("logs", task.id, "--follow", "--json")
    messages = [event["message"] for event in run.json]
    assert messages[0] == "submitted" and messages[-1] == "finished"
    assert "INFO    submitted" in tq("logs", task.id).out


def test_upload_puts_several_files_in_one_folder_then_download_saves_outputs(
    tq: Callable[..., Run], client: Client, world: World, tmp_path: Path
) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("x\n1\n")
    second.write_text("x\n2\n")
    run = tq("upload", str(first), str(second), "--json")
    keys = [entry["key"] for entry in run.json]
    assert keys[0].rsplit("/", 1)[0] == keys[1].rsplit("/", 1)[0]
    task = client.submit("DATA_PROCESSING", {"input_key": keys[1]})
    world.pipeline().run()
    saved = tq("download", task.id, str(tmp_path / "out"))
    assert saved.out.split() == [str(tmp_path / "out" / "result.json")]


def test_stats_types_dead_letters_and_health(tq: Callable[..., Run], client: Client) -> None:
    client.submit("DATA_PROCESSING", {"rows": 10})
    stats = tq("stats")
    assert stats.code == EXIT_OK and "DATA_PROCESSING" in stats.out
    # The queues' depths (every owner's work) are for operators: a user's stats show none
    assert "tasks-normal" not in stats.out
    assert tq("stats", "--json").json["queues"] == {}
    types = tq("types")
    assert "DATA_PROCESSING" in types.out and "    rows: integer|null" in types.out
    assert tq("dead-letters", "--json").json == []
    assert tq("dead-letters", "--redrive", "--json").json == {"redriven": 0, "skipped": 0}
    health = tq("health")
    assert health.code == EXIT_OK and "ok: True" in health.out


def test_without_a_url_the_cli_says_how_to_configure_it(config_home: Path) -> None:
    err = io.StringIO()
    code = main(["list"], err=Console(file=err, width=200), tokens=TokenStore(config_home / "t"))
    assert code == EXIT_USAGE
    assert "no API URL: pass --url, set TQ_URL" in err.getvalue()


def test_configure_writes_a_profile_that_later_commands_use(
    tq: Callable[..., Run], config_home: Path
) -> None:
    run = tq("--profile", "prod", "configure", "--url", "https://api.example.com")
    assert run.code == EXIT_OK
    assert (config_home / "config.toml").read_text() == '[prod]\nurl = "https://api.example.com"\n'
    tq("--profile", "prod", "health")
    assert tq.profiles[-1].url == "https://api.example.com"  # type: ignore[attr-defined]


def test_login_with_a_token_keeps_it_for_the_profile_and_logout_forgets_it(
    tq: Callable[..., Run], config_home: Path
) -> None:
    assert tq("login", "--with-token", "eyJ.abc.def").code == EXIT_OK
    stored = json.loads((config_home / "tokens.json").read_text())
    assert stored["default"]["id_token"] == "eyJ.abc.def"
    assert (config_home / "tokens.json").stat().st_mode & 0o777 == 0o600
    assert "signed out" in tq("logout").err
    assert json.loads((config_home / "tokens.json").read_text()) == {}


def test_login_without_cognito_settings_says_what_is_missing(tq: Callable[..., Run]) -> None:
    run = tq("login")
    assert run.code == EXIT_USAGE
    assert "tq configure --cognito-domain DOMAIN --client-id ID" in run.err
