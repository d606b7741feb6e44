"""The page in a real browser: Playwright driving Debian's Chromium (headless) against the shared
local stack (the `stack` fixture of tests/e2e/conftest.py).

Every test gets a fresh browser context; the test fails when the page logged a console error,
threw an uncaught exception or opened a dialog (alert/confirm/prompt). Tests that need a list
of known content act as a user of their own (a bearer token the devstack decodes without
verifying), added by a route to the page's requests to the stack.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.browser_support import WatchedPage, act_as
from tests.e2e.devstack_process import (
    Stack,
    put_upload,
    submit,
    unreadable_like,
    upload_ticket,
    wait_for,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

pytestmark = pytest.mark.e2e

CSV = "city,temperature,rain\nOslo,4.5,12\nRome,17.25,3\nLima,19,0\nNuuk,-6.5,7\n"
XSS = "<img src=x onerror=alert(1)>"
TASK_TIMEOUT_MS = 30_000
# Far enough that the tasks stay PENDING, inside run_at's one-year cap.
FAR_FUTURE = (datetime.now(UTC) + timedelta(days=300)).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------- helpers


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def open_app(page: Page, path: str = "/") -> None:
    page.goto(path)
    expect(page.get_by_test_id("type-select")).to_be_enabled()


def choose_type(page: Page, name: str) -> None:
    page.get_by_test_id("type-select").select_option(name)
    expect(page.get_by_test_id("type-select")).to_have_value(name)


def submit_form(page: Page) -> str:
    """Clicks Submit, waits for the success toast; returns the new task's id."""
    state = page.get_by_test_id("submit-state")
    before = state.text_content() or ""
    page.get_by_test_id("submit-button").click()
    expect(state).not_to_have_text(before)
    expect(state).to_have_text(re.compile(r"Last submitted: \S+"))
    expect(page.get_by_test_id("toast").filter(has_text="submitted").last).to_be_visible()
    return (state.text_content() or "").split(":", 1)[1].strip()


def task_row(page: Page, task_id: str) -> Locator:
    return page.locator(f'[data-testid="task-row"][data-task-id="{task_id}"]')


def wait_for_row(page: Page, task_id: str, status: str) -> Locator:
    row = task_row(page, task_id)
    expect(row).to_have_attribute("data-status", status, timeout=TASK_TIMEOUT_MS)
    return row


def wait_until_done(page: Page, task_id: str) -> Locator:
    """Waits for SUCCESS with the row's progress bar at 100% (units done = units total)."""
    row = wait_for_row(page, task_id, "SUCCESS")
    bar = row.get_by_test_id("progress-bar")
    expect(bar).to_have_attribute("aria-valuenow", "100")
    expect(bar).to_have_attribute("data-progress", "100")
    expect(row.get_by_test_id("status-badge")).to_have_text("Success")
    done, _, total = (row.get_by_test_id("progress-text").text_content() or "").partition(" / ")
    assert total and done == total, f"units done/total: {done!r} / {total!r}"
    return row


def open_detail(page: Page, task_id: str, status: str | None = None) -> Locator:
    task_row(page, task_id).get_by_test_id("task-open").click()
    panel = page.get_by_test_id("detail-panel")
    expect(panel).to_be_visible()
    expect(panel).to_have_attribute("data-task-id", task_id)
    if status:
        expect(panel).to_have_attribute("data-status", status, timeout=TASK_TIMEOUT_MS)
    return panel


def confirm(page: Page, expected_title: str) -> None:
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(expected_title)
    page.get_by_test_id("confirm-ok").click()
    expect(dialog).to_be_hidden()


# ------------------------------------------------------------------------------- submit


def test_data_processing_through_the_form_shows_column_stats(page: Page) -> None:
    open_app(page)
    choose_type(page, "DATA_PROCESSING")
    page.get_by_test_id("field-rows").fill("2000")
    page.get_by_test_id("field-columns").fill("4")

    task_id = submit_form(page)
    row = wait_until_done(page, task_id)
    expect(row.get_by_test_id("progress-text")).not_to_have_text("0 / 0")
    panel = open_detail(page, task_id, "SUCCESS")

    result = panel.get_by_test_id("detail-result")
    expect(result.get_by_test_id("column-stats")).to_be_visible()
    # One row per generated column, with a header row of statistic names.
    expect(result.locator("[data-testid=column-stats] tbody tr")).to_have_count(4)
    expect(result.locator("[data-testid=column-stats] thead")).to_contain_text("Mean")
    expect(result).to_contain_text("2,000")
    expect(panel.get_by_test_id("progress-bar")).to_have_attribute("aria-valuenow", "100")
    expect(panel.get_by_test_id("download-link")).to_have_count(1)
    expect(panel.get_by_test_id("download-link")).to_have_text("result.json")
    expect(panel.get_by_test_id("cancel-button")).to_be_disabled()
    expect(panel.get_by_test_id("resume-button")).to_be_disabled()
    expect(panel.get_by_test_id("event")).not_to_have_count(0)


def test_email_subject_with_markup_is_shown_as_text_and_runs_nothing(
    page: Page, watched: WatchedPage
) -> None:
    open_app(page)
    choose_type(page, "EMAIL")
    page.get_by_test_id("field-recipient_count").fill("3")
    page.get_by_test_id("field-subject").fill(XSS)
    page.get_by_test_id("field-body").fill("Hello {name}, you are number {index}.")

    task_id = submit_form(page)
    wait_until_done(page, task_id)
    panel = open_detail(page, task_id, "SUCCESS")

    summary = panel.get_by_test_id("email-summary")
    expect(summary).to_contain_text("3sent")
    expect(summary).to_contain_text("0failed")
    params = panel.get_by_test_id("detail-params")
    expect(params.get_by_text(XSS, exact=True)).to_be_visible()
    # Rendered as text: no element was made from it, no handler ran, no dialog opened.
    assert page.locator("img[src='x']").count() == 0
    assert page.locator("[onerror]").count() == 0
    assert watched.dialogs == []


def test_image_processing_shows_thumbnails_and_download_links(page: Page) -> None:
    open_app(page)
    choose_type(page, "IMAGE_PROCESSING")
    page.get_by_test_id("field-generate_count").fill("2")
    page.get_by_test_id("field-width").fill("64")
    page.get_by_test_id("field-height").fill("64")

    task_id = submit_form(page)
    wait_until_done(page, task_id)
    panel = open_detail(page, task_id, "SUCCESS")

    downloads = panel.get_by_test_id("detail-downloads")
    thumbnails = downloads.get_by_test_id("thumbnail")
    expect(thumbnails).to_have_count(2)
    expect(downloads.get_by_test_id("download-link")).to_have_count(2)
    for index in range(2):
        thumbnail = thumbnails.nth(index)
        thumbnail.scroll_into_view_if_needed()
        expect(thumbnail).to_be_visible()
        # The image really loaded from the presigned URL (moto), and is not broken.
        page.wait_for_function(
            "(img) => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle()
        )
        href = downloads.get_by_test_id("download-link").nth(index).get_attribute("href") or ""
        assert href.startswith("http"), href


# ------------------------------------------------------------------------------- upload


def test_uploaded_csv_is_processed(page: Page) -> None:
    open_app(page)
    choose_type(page, "DATA_PROCESSING")

    page.get_by_test_id("upload-input_key").set_input_files(
        files=[{"name": "weather.csv", "mimeType": "text/csv", "buffer": CSV.encode()}]
    )
    expect(page.get_by_test_id("upload-status-input_key")).to_contain_text("Uploaded weather.csv")
    expect(page.get_by_test_id("upload-progress-input_key")).to_have_js_property("value", 100)
    key = page.get_by_test_id("field-input_key").input_value()
    assert key.startswith("uploads/dev-user/") and key.endswith(".csv"), key
    expect(page.get_by_test_id("submit-button")).to_be_enabled()

    task_id = submit_form(page)
    wait_until_done(page, task_id)
    panel = open_detail(page, task_id, "SUCCESS")

    stats = panel.get_by_test_id("column-stats")
    # One row per column (a text column's top values are a table nested in its row).
    expect(stats.locator(":scope > tbody > tr")).to_have_count(3)
    expect(stats.locator(":scope > tbody > tr").filter(has_text="temperature")).to_be_visible()
    expect(panel.get_by_test_id("detail-params")).to_contain_text(key)


# ------------------------------------------------------------------------------- control


def test_running_task_is_cancelled_after_confirmation(page: Page) -> None:
    open_app(page)
    choose_type(page, "DATA_PROCESSING")
    page.get_by_test_id("field-rows").fill("5000000")

    task_id = submit_form(page)
    wait_for_row(page, task_id, "RUNNING")
    panel = open_detail(page, task_id, "RUNNING")
    cancel = panel.get_by_test_id("cancel-button")
    expect(cancel).to_be_enabled()
    expect(panel.get_by_test_id("resume-button")).to_be_disabled()

    cancel.click()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_be_visible()
    page.get_by_test_id("confirm-cancel").click()  # "Keep as is" first: nothing happens
    expect(dialog).to_be_hidden()
    expect(panel).to_have_attribute("data-status", "RUNNING")

    cancel.click()
    confirm(page, "Cancel this task?")
    expect(page.get_by_test_id("toast").filter(has_text="Cancel")).to_be_visible()
    expect(panel).to_have_attribute("data-status", "CANCELLED", timeout=TASK_TIMEOUT_MS)
    progress = int(panel.get_by_test_id("progress-bar").get_attribute("aria-valuenow") or "100")
    assert progress < 100
    expect(panel.get_by_test_id("cancel-button")).to_be_disabled()
    expect(panel.get_by_test_id("resume-button")).to_be_enabled()
    wait_for_row(page, task_id, "CANCELLED")
    expect(page.get_by_test_id("live-region")).to_contain_text("cancelled", timeout=TASK_TIMEOUT_MS)


def test_failed_task_is_resumed(page: Page, stack: Stack) -> None:
    # An upload saved as UTF-16: the task fails (a missing upload is refused at submit).
    ticket = upload_ticket(stack, f"late-{uuid.uuid4().hex[:8]}.csv", CSV.encode(), "text/csv")
    assert ticket["key"].startswith("uploads/dev-user/")
    put_upload(ticket, unreadable_like(CSV.encode()))
    open_app(page)
    choose_type(page, "DATA_PROCESSING")
    page.get_by_test_id("field-input_key").fill(ticket["key"])
    page.get_by_test_id("submit-max-attempts").fill("1")

    task_id = submit_form(page)
    wait_for_row(page, task_id, "FAILED")
    panel = open_detail(page, task_id, "FAILED")
    expect(panel.get_by_test_id("detail-error")).to_contain_text("save it as UTF-8")
    expect(panel.get_by_test_id("detail-attempts")).to_have_text("1 of 1")
    expect(panel.get_by_test_id("cancel-button")).to_be_disabled()
    expect(panel.get_by_test_id("restart-button")).to_be_enabled()

    put_upload(ticket, CSV.encode())  # the file, saved as UTF-8 this time
    panel.get_by_test_id("resume-button").click()
    confirm(page, "Resume this task?")
    expect(page.get_by_test_id("toast").filter(has_text="Task resumed.")).to_be_visible()

    expect(panel).to_have_attribute("data-status", "SUCCESS", timeout=TASK_TIMEOUT_MS)
    expect(panel.get_by_test_id("column-stats")).to_be_visible()
    expect(panel.get_by_test_id("detail-error")).to_have_count(0)
    wait_until_done(page, task_id)


# ------------------------------------------------------------------------------- list


def test_filters_and_load_more_survive_reload(page: Page, stack: Stack) -> None:
    user = f"e2e-list-{uuid.uuid4().hex[:8]}"
    headers = act_as(page, stack, user)
    email = {"recipient_count": 1, "subject": "Hi {name}", "body": "Hello."}
    done = [submit(stack, "EMAIL", email, headers) for _ in range(2)]
    for task in done:
        wait_for(stack, task["id"], "SUCCESS", headers=headers)
    # Scheduled far ahead: they stay PENDING and cost the workers nothing.
    for _ in range(2):
        submit(stack, "EMAIL", email, headers, run_at=FAR_FUTURE)
    for seed in range(21):
        submit(stack, "DATA_PROCESSING", {"rows": 10, "seed": seed}, headers, run_at=FAR_FUTURE)

    open_app(page)
    rows = page.get_by_test_id("task-row")
    expect(rows).to_have_count(20)
    expect(page.get_by_test_id("stat-status-PENDING")).to_have_attribute("data-count", "23")
    expect(page.get_by_test_id("stat-status-SUCCESS")).to_have_attribute("data-count", "2")
    expect(page.get_by_test_id("throughput-chart")).to_be_visible()
    load_more = page.get_by_test_id("load-more")
    expect(load_more).to_be_visible()
    load_more.click()
    expect(rows).to_have_count(25)
    expect(load_more).to_be_hidden()
    expect(page.get_by_test_id("list-count")).to_have_text("25 tasks")

    page.get_by_test_id("filter-status").select_option("SUCCESS")
    expect(page).to_have_url(re.compile(r"[?&]status=SUCCESS(&|$)"))
    expect(rows).to_have_count(2)
    expect(page.locator('[data-testid="task-row"][data-status="SUCCESS"]')).to_have_count(2)

    page.get_by_test_id("filter-status").select_option("PENDING")
    page.get_by_test_id("filter-type").select_option("EMAIL")
    expect(page).to_have_url(re.compile(r"[?&]type=EMAIL(&|$)"))
    expect(page).to_have_url(re.compile(r"[?&]status=PENDING(&|$)"))
    expect(rows).to_have_count(2)

    page.reload()
    expect(page.get_by_test_id("filter-status")).to_have_value("PENDING")
    expect(page.get_by_test_id("filter-type")).to_have_value("EMAIL")
    expect(rows).to_have_count(2)
    for index in range(2):
        expect(rows.nth(index)).to_have_attribute("data-status", "PENDING")
        expect(rows.nth(index).get_by_test_id("task-type")).to_have_text("EMAIL")

    page.get_by_test_id("filter-type").select_option("DATA_PROCESSING")
    expect(rows).to_have_count(20)
    expect(load_more).to_be_visible()
    load_more.click()
    expect(rows).to_have_count(21)

    page.get_by_test_id("filter-clear").click()
    expect(page).not_to_have_url(re.compile(r"status=|type="))
    expect(rows).to_have_count(20)


def test_lookup_by_id_opens_the_task(page: Page, stack: Stack) -> None:
    user = f"e2e-lookup-{uuid.uuid4().hex[:8]}"
    headers = act_as(page, stack, user)
    task = submit(stack, "EMAIL", {"recipient_count": 1, "subject": "s", "body": "b"}, headers)
    wait_for(stack, task["id"], "SUCCESS", headers=headers)

    open_app(page, "/?status=FAILED")
    expect(page.get_by_test_id("list-empty")).to_be_visible()
    page.get_by_test_id("lookup-id").fill(task["id"])
    page.get_by_test_id("lookup-button").click()

    panel = page.get_by_test_id("detail-panel")
    expect(panel).to_have_attribute("data-task-id", task["id"])
    expect(panel).to_have_attribute("data-status", "SUCCESS")
    expect(page).to_have_url(re.compile(rf"[?&]task={task['id']}"))
    page.reload()  # the open task is in the URL too
    expect(page.get_by_test_id("detail-panel")).to_have_attribute("data-task-id", task["id"])


# ------------------------------------------------------------------------------- screenshots


def test_screenshots_of_list_and_detail(browser: Browser, stack: Stack, tmp_path: Path) -> None:
    """The scenario of `python -m tests.e2e.screenshots`, into a temporary directory."""
    from tests.e2e.screenshots import take_screenshots

    problems, files = take_screenshots(browser, stack, tmp_path)

    assert problems == []
    for path in files:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
        assert path.stat().st_size > 20_000, path
