"""The page in a real browser: Playwright driving Debian's Chromium (headless) against the shared
local stack (the `stack` fixture of tests/e2e/conftest.py): the form, the results, the actions.

Every test gets a fresh browser context; the test fails when the page logged a console error,
threw an uncaught exception or opened a dialog (alert/confirm/prompt). Tests that need a list
of known content act as a user of their own (a bearer token the devstack decodes without
verifying), added by a route to the page's requests to the stack.
"""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import requests

from taskqueue.models import successor_id
from tests.e2e.browser_support import (
    TASK_TIMEOUT_MS,
    WatchedPage,
    act_as,
    choose_type,
    confirm,
    expect,
    open_app,
    open_detail,
    submit_form,
    wait_for_row,
    wait_until_done,
)
from tests.e2e.devstack_process import (
    Stack,
    get_task,
    put_upload,
    submit,
    unreadable_like,
    upload_ticket,
    wait_for,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.e2e

CSV = "city,temperature,rain\nOslo,4.5,12\nRome,17.25,3\nLima,19,0\nNuuk,-6.5,7\n"
XSS = "<img src=x onerror=alert(1)>"
# Far enough that the tasks stay PENDING, inside run_at's one-year cap.
FAR_FUTURE = (datetime.now(UTC) + timedelta(days=300)).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------- submit


def test_data_processing_through_the_form_shows_column_stats_with_units(page: Page) -> None:
    open_app(page)
    choose_type(page, "DATA_PROCESSING", "generate")
    page.get_by_test_id("field-rows").fill("2000")
    page.get_by_test_id("field-columns").fill("4")

    task_id = submit_form(page)
    row = wait_until_done(page, task_id)
    # Progress in bytes, as KB/MB, not a bare count.
    expect(row.get_by_test_id("progress-text")).to_have_text(
        re.compile(r"^\d+(\.\d)? KB / \d+(\.\d)? KB$")
    )
    panel = open_detail(page, task_id, "SUCCESS")

    result = panel.get_by_test_id("detail-result")
    expect(result.get_by_test_id("column-stats")).to_be_visible()
    # One row per generated column, with a header row of statistic names.
    expect(result.locator("[data-testid=column-stats] tbody tr")).to_have_count(4)
    expect(result.locator("[data-testid=column-stats] thead")).to_contain_text("Mean")
    summary = result.get_by_test_id("result-summary")
    expect(summary.get_by_role("row", name="Rows 2,000 rows", exact=True)).to_be_visible()
    expect(summary.get_by_role("row", name="Columns 4 columns", exact=True)).to_be_visible()
    expect(summary.get_by_role("row", name=re.compile(r"^Bytes \d+\.\d KB$"))).to_be_visible()
    expect(panel.get_by_test_id("progress-bar")).to_have_attribute("aria-valuenow", "100")
    expect(panel.get_by_test_id("download-link")).to_have_count(1)
    expect(panel.get_by_test_id("download-link")).to_have_text("result.json")
    # The result's location is a link to the same download, not an s3:// text.
    location = panel.get_by_test_id("result-location-link")
    expect(location).to_have_text("result.json")
    assert (location.get_attribute("href") or "").startswith("http")
    assert "/result.json" in (location.get_attribute("href") or "")
    # The progress event line is shown in its unit too.
    expect(panel.get_by_test_id("event").filter(has_text="% done")).to_contain_text(
        re.compile(r"% done \(\d+(\.\d)? KB / \d+(\.\d)? KB\)")
    )
    expect(panel.get_by_test_id("cancel-button")).to_be_disabled()
    expect(panel.get_by_test_id("resume-button")).to_be_disabled()
    expect(panel.get_by_test_id("event")).not_to_have_count(0)


def test_a_parallel_task_shows_its_parts_as_a_grid_of_small_bars(page: Page) -> None:
    # Given a DATA_PROCESSING task submitted through the form in 4 parts, 2 at a time
    open_app(page)
    choose_type(page, "DATA_PROCESSING")
    page.get_by_test_id("field-rows").fill("2000")
    page.get_by_test_id("field-max_parallel").fill("2")
    page.get_by_test_id("advanced-options").locator("summary").click()
    page.get_by_test_id("field-parts").fill("4")
    task_id = submit_form(page)
    # When it has finished and its detail is open
    row = wait_until_done(page, task_id)
    panel = open_detail(page, task_id, "SUCCESS")
    # Then its list row folds its parts into a count
    expect(row.get_by_test_id("parts-badge")).to_have_text("4/4 parts")
    # Then the detail shows one full bar per part, in a grid, and the merged result
    parts = panel.get_by_test_id("detail-parts")
    expect(parts).to_contain_text("Parts (4 of 4 done)")
    bars = parts.get_by_test_id("part-bar")
    expect(bars).to_have_count(4)
    for index in range(4):
        expect(bars.nth(index)).to_have_attribute("data-status", "SUCCESS")
        expect(bars.nth(index)).to_have_attribute("aria-valuenow", "100")
    expect(panel.get_by_test_id("detail-result")).to_contain_text("2,000")


def test_a_chain_shows_each_steps_position_and_its_steps_in_the_detail(
    page: Page, stack: Stack
) -> None:
    # Given a chain of two DATA_PROCESSING tasks submitted through the API
    first = submit(
        stack,
        "DATA_PROCESSING",
        {"rows": 100},
        then=[{"type": "DATA_PROCESSING", "params": {"rows": 200}}],
    )["id"]
    # When both steps have finished (the chain, read from its first step, says so) and the
    # first step's detail is open
    deadline = time.monotonic() + TASK_TIMEOUT_MS / 1000
    while get_task(stack, first)["chain"]["status"] != "SUCCESS":
        assert time.monotonic() < deadline, "the chain did not finish"
        time.sleep(0.2)
    second = successor_id(first)
    open_app(page)
    row = wait_until_done(page, first)
    expect(row.get_by_test_id("chain-badge")).to_have_text("step 1 of 2")
    panel = open_detail(page, first, "SUCCESS")
    # Then the detail lists both steps, succeeded, the one shown marked
    chain = panel.get_by_test_id("detail-chain")
    expect(chain).to_contain_text("all 2 steps succeeded")
    steps = chain.get_by_test_id("chain-step")
    expect(steps).to_have_count(2)
    expect(steps.nth(1)).to_have_attribute("data-status", "SUCCESS", timeout=TASK_TIMEOUT_MS)
    expect(steps.nth(0)).to_have_attribute("aria-current", "step")
    # And a click on the second step opens it, as step 2 of 2, given the first's result
    steps.nth(1).get_by_test_id("chain-step-open").click()
    expect(panel).to_have_attribute("data-task-id", second)
    expect(panel.get_by_test_id("chain-badge")).to_have_text("step 2 of 2")
    expect(panel.get_by_test_id("detail-result")).to_contain_text("200")


def test_email_subject_with_markup_is_shown_as_text_and_runs_nothing(
    page: Page, watched: WatchedPage
) -> None:
    open_app(page)
    choose_type(page, "EMAIL", "generate")
    page.get_by_test_id("field-recipient_count").fill("3")
    page.get_by_test_id("field-subject").fill(XSS)
    page.get_by_test_id("field-body").fill("Hello {name}, you are number {index}.")

    task_id = submit_form(page)
    row = wait_until_done(page, task_id)
    expect(row.get_by_test_id("progress-text")).to_have_text("3 / 3 recipients")
    panel = open_detail(page, task_id, "SUCCESS")

    summary = panel.get_by_test_id("email-summary")
    expect(summary).to_contain_text("3sent")
    expect(summary).to_contain_text("0failed")
    # Each recipient's outcome, read from the downloadable CSV, which is offered as a link.
    recipients = panel.get_by_test_id("email-recipient-table").locator("tbody tr")
    expect(recipients).to_have_count(3)
    expect(panel.get_by_test_id("email-recipients")).not_to_contain_text("null")
    for index in range(3):
        expect(recipients.nth(index)).to_contain_text(
            f"success+{index + 1}@simulator.amazonses.com"
        )
        expect(recipients.nth(index)).to_contain_text("sent")
    csv_link = panel.get_by_test_id("email-csv-link")
    expect(csv_link).to_contain_text("recipients.csv")
    assert (csv_link.get_attribute("href") or "").startswith("http")
    params = panel.get_by_test_id("detail-params")
    expect(params.get_by_text(XSS, exact=True)).to_be_visible()
    # Rendered as text: no element was made from it, no handler ran, no dialog opened.
    assert page.locator("img[src='x']").count() == 0
    assert page.locator("[onerror]").count() == 0
    assert watched.dialogs == []


def test_image_processing_shows_thumbnails_and_download_links(page: Page) -> None:
    open_app(page)
    choose_type(page, "IMAGE_PROCESSING", "generate")
    page.get_by_test_id("field-generate_count").fill("2")
    page.get_by_test_id("field-width").fill("64")
    page.get_by_test_id("field-height").fill("64")

    task_id = submit_form(page)
    row = wait_until_done(page, task_id)
    expect(row.get_by_test_id("progress-text")).to_have_text("2 / 2 images")
    panel = open_detail(page, task_id, "SUCCESS")
    expect(panel.get_by_test_id("image-summary")).to_contain_text("2processed")

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
    choose_type(page, "DATA_PROCESSING", "upload")
    expect(page.get_by_test_id("field-rows")).to_be_hidden()

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
    choose_type(page, "DATA_PROCESSING", "generate")
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
    choose_type(page, "DATA_PROCESSING", "upload")
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
    # The timeline: the first run's wait and failed attempt, the resume, the second attempt.
    timeline = panel.get_by_test_id("timeline-row")
    expect(timeline).to_have_count(4)
    expect(timeline.nth(0)).to_have_attribute("data-kind", "queued")
    expect(timeline.nth(1)).to_have_attribute("data-outcome", "failed")
    expect(timeline.nth(1).get_by_test_id("timeline-label")).to_have_text("Attempt 1 of 1")
    expect(timeline.nth(2).get_by_test_id("timeline-label")).to_have_text("Queued again (resume)")
    expect(timeline.nth(3)).to_have_attribute("data-outcome", "finished")


# ------------------------------------------------------------------------------- the form


def test_input_source_is_an_explicit_choice_and_only_its_fields_are_sent(page: Page) -> None:
    open_app(page)
    choose_type(page, "EMAIL")
    # Given: the first source that needs no upload is chosen; the other's fields are hidden.
    expect(page.get_by_test_id("source-list")).to_be_checked()
    expect(page.get_by_test_id("field-recipients")).to_be_visible()
    expect(page.get_by_test_id("field-recipient_count")).to_be_hidden()
    expect(page.locator('label[for="param-recipients"] .req')).to_have_count(1)
    # Advanced fields are folded away.
    advanced = page.get_by_test_id("advanced-options")
    expect(advanced).not_to_have_attribute("open", "")
    expect(page.get_by_test_id("field-batch_size")).to_be_hidden()
    page.get_by_test_id("field-recipients").fill("ada@example.com")

    # When the other source is chosen and the form is sent
    page.get_by_test_id("source-generate").check()
    expect(page.get_by_test_id("field-recipients")).to_be_hidden()
    page.get_by_test_id("field-recipient_count").fill("2")
    page.get_by_test_id("field-subject").fill("Hi {name}")
    page.get_by_test_id("field-body").fill("Hello.")
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/tasks")) as sent:
        task_id = submit_form(page)

    # Then only the chosen source's field went out, not the hidden recipients list
    params = json.loads(sent.value.post_data or "{}")["params"]
    assert "recipients" not in params and params["recipient_count"] == 2
    assert params["subject"] == "Hi {name}" and isinstance(params["batch_size"], int)
    wait_until_done(page, task_id)


def test_an_empty_source_field_is_required_at_the_field_and_nothing_is_sent(page: Page) -> None:
    open_app(page)
    choose_type(page, "DATA_PROCESSING", "generate")
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)

    page.get_by_test_id("submit-button").click()

    expect(page.get_by_test_id("error-rows")).to_have_text("Required")
    expect(page.get_by_test_id("field-rows")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("form-error")).to_have_text(
        "1 field needs attention: see the message beside it."
    )
    expect(page.get_by_test_id("field-rows")).to_be_focused()
    assert posts == []


def test_a_server_error_is_shown_at_its_field(page: Page, watched: WatchedPage) -> None:
    watched.allow("status of 422")
    open_app(page)
    choose_type(page, "EMAIL", "generate")
    page.get_by_test_id("field-recipient_count").fill("2")
    page.get_by_test_id("field-subject").fill("Hi {nickname}")
    page.get_by_test_id("field-body").fill("Hello.")

    page.get_by_test_id("submit-button").click()

    # The API's 422 names params.subject: the message sits under the subject, not at the bottom.
    error = page.get_by_test_id("error-subject")
    expect(error).to_contain_text("unknown field {nickname}")
    expect(page.get_by_test_id("field-subject")).to_be_focused()
    expect(page.get_by_test_id("form-error")).to_be_hidden()


def test_a_submit_over_quota_says_which_quota_and_when_to_try_again(
    page: Page, watched: WatchedPage
) -> None:
    watched.allow("status of 429")
    # Given an API that answers the submit with its 429 (the local stack runs quotas off;
    # the API side of it is tests/integration/test_quotas.py): the body and header as sent
    refusal = {
        "error": {
            "code": "quota_exceeded",
            "message": "quota exceeded: at most 2 tasks not yet finished",
            "details": {"quota": "active_tasks", "limit": 2, "retry_after": 5},
        }
    }

    def over_quota(route: Any) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        route.fulfill(status=429, headers={"Retry-After": "5"}, json=refusal)

    page.route("**/tasks", over_quota)
    open_app(page)
    choose_type(page, "EMAIL", "generate")
    page.get_by_test_id("field-recipient_count").fill("2")
    page.get_by_test_id("field-subject").fill("Hi")
    page.get_by_test_id("field-body").fill("Hello.")
    # When it is submitted
    page.get_by_test_id("submit-button").click()
    # Then the form says plainly which quota refused it and when to try again
    expect(page.get_by_test_id("form-error")).to_have_text(
        "Not submitted: quota exceeded: at most 2 tasks not yet finished. Try again in 5 s."
    )


def test_a_click_on_submit_is_not_lost_when_a_blur_error_moves_the_button(page: Page) -> None:
    open_app(page)
    choose_type(page, "IMAGE_PROCESSING", "generate")
    page.get_by_test_id("field-generate_count").fill("2")
    # An invalid value whose error appears when the field loses focus, above the button.
    page.get_by_test_id("submit-max-attempts").fill("12")
    button = page.get_by_test_id("submit-button")
    button.scroll_into_view_if_needed()
    top = "(b) => b.getBoundingClientRect().top + window.scrollY"
    before = button.evaluate(top)

    # One click: the press takes the focus away from the field (blur), the release follows
    button.click()

    # The click reached the form: it checked every field and said what needs attention
    expect(page.get_by_test_id("form-error")).to_have_text(
        "1 field needs attention: see the message beside it."
    )
    expect(page.get_by_test_id("error-max_attempts")).to_have_text("A whole number from 1 to 10")
    assert button.evaluate(top) > before, "the errors did move the button"


def test_run_times_in_the_past_or_far_ahead_are_warned_about(page: Page) -> None:
    open_app(page)
    run_at = page.get_by_test_id("submit-run-at")
    warning = page.get_by_test_id("warning-run_at")
    expect(warning).to_be_hidden()
    expect(page.get_by_test_id("run-at-help")).to_have_text(
        re.compile(r"^In \S+ time; empty runs now\.$")
    )

    run_at.fill("2020-01-01T09:00")  # whichever the zone, long gone
    expect(warning).to_have_text("This time has passed: the task will run at once.")
    soon = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    run_at.fill(soon)
    expect(warning).to_be_hidden()
    run_at.fill("2099-01-01T09:00")
    expect(warning).to_contain_text("days from now. Is the date right?")
    run_at.fill("")
    expect(warning).to_be_hidden()


def test_file_pickers_accept_only_their_content_types(page: Page) -> None:
    open_app(page)
    choose_type(page, "IMAGE_PROCESSING", "upload")
    picker = page.get_by_test_id("upload-input_prefix")
    accept = picker.get_attribute("accept") or ""
    assert "image/png" in accept and ".jpg" in accept and "csv" not in accept

    picker.set_input_files(
        files=[{"name": "weather.csv", "mimeType": "text/csv", "buffer": CSV.encode()}]
    )

    expect(page.get_by_test_id("upload-status-input_prefix")).to_have_text(
        "weather.csv is not a PNG, JPEG, WebP or GIF file."
    )
    expect(page.get_by_test_id("field-input_prefix")).to_have_value("")
    choose_type(page, "DATA_PROCESSING", "upload")
    csv_accept = page.get_by_test_id("upload-input_key").get_attribute("accept") or ""
    assert csv_accept == "text/csv,.csv"


# ------------------------------------------------------------------------------- results


def upload_images(stack: Stack, headers: dict[str, str], files: dict[str, bytes]) -> str:
    """Uploads the files side by side; returns their folder (an IMAGE_PROCESSING input)."""
    prefix = None
    for name, content in files.items():
        body = {"filename": name, "content_type": "image/png", "size": len(content)}
        answer = requests.post(
            f"{stack.url}/uploads",
            json={**body, **({"prefix": prefix} if prefix else {})},
            headers=headers,
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
        prefix = answer.json()["prefix"]
        put_upload(answer.json(), content)
    assert prefix
    return str(prefix)


def png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 60, 20)).save(out, format="PNG")
    return out.getvalue()


def test_partial_and_total_failures_show_as_such_in_the_list_and_the_detail(
    page: Page, stack: Stack
) -> None:
    headers = act_as(page, stack, f"e2e-partial-{uuid.uuid4().hex[:8]}")
    broken = b"this is not an image"
    some = upload_images(stack, headers, {"good.png": png(), "broken.png": broken})
    partial = submit(stack, "IMAGE_PROCESSING", {"input_prefix": some}, headers)
    none = upload_images(stack, headers, {"broken.png": broken})
    failed = submit(stack, "IMAGE_PROCESSING", {"input_prefix": none}, headers, max_attempts=1)
    wait_for(stack, partial["id"], "SUCCESS", headers=headers)
    wait_for(stack, failed["id"], "FAILED", headers=headers)

    open_app(page)

    # Some failed: a SUCCESS with a warning, not a plain green success
    row = wait_for_row(page, partial["id"], "SUCCESS")
    expect(row.get_by_test_id("failed-items-badge")).to_have_text("1 image failed")
    panel = open_detail(page, partial["id"], "SUCCESS")
    expect(panel.get_by_test_id("failed-items-badge")).to_have_text("1 image failed")
    expect(panel.get_by_test_id("partial-failure")).to_have_text(
        "1 image of 2 failed; the others succeeded. The result below lists the failures."
    )
    expect(panel.get_by_test_id("image-failures")).to_contain_text("broken.png")
    # All failed: FAILED, its error says so, the result (why each failed) is kept
    page.get_by_test_id("detail-close").click()
    row = wait_for_row(page, failed["id"], "FAILED")
    expect(row.get_by_test_id("failed-items-badge")).to_have_text("all 1 image failed")
    panel = open_detail(page, failed["id"], "FAILED")
    expect(panel.get_by_test_id("detail-error")).to_contain_text("all_items_failed")
    expect(panel.get_by_test_id("image-failures")).to_contain_text("broken.png")
