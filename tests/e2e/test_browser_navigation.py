"""The page's navigation in a real browser (Playwright, Debian's Chromium, the shared local
stack): filters and the open task in the history, look-up by id and short id, tiles that
filter, several tasks cancelled or retried at once, the time zone, dark mode, the phone layout,
axe-core's accessibility checks, and the README's screenshots.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.browser_support import (
    TASK_TIMEOUT_MS,
    act_as,
    axe_violations,
    confirm,
    expect,
    open_app,
    open_detail,
    task_row,
    wait_for_row,
)
from tests.e2e.devstack_process import Stack, submit, wait_for

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.e2e

# Midnight UTC some months ahead: the tasks stay PENDING, inside run_at's one-year cap.
FAR_FUTURE = f"{(datetime.now(UTC) + timedelta(days=200)).date()}T00:00:00Z"
EMAIL = {"recipient_count": 1, "subject": "Hi {name}", "body": "Hello."}


def new_user(page: Page, stack: Stack, name: str, groups: tuple[str, ...] = ()) -> dict[str, str]:
    return act_as(page, stack, f"e2e-{name}-{uuid.uuid4().hex[:8]}", groups)


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


def test_a_short_id_from_the_list_finds_the_task(page: Page, stack: Stack) -> None:
    headers = new_user(page, stack, "short")
    task = submit(stack, "EMAIL", EMAIL, headers, run_at=FAR_FUTURE)
    open_app(page)
    short = task_row(page, task["id"]).get_by_test_id("task-short-id")
    expect(short).to_have_text(task["id"][:8])

    page.get_by_test_id("lookup-id").fill(task["id"][:8].upper())
    page.get_by_test_id("lookup-button").click()

    panel = page.get_by_test_id("detail-panel")
    expect(panel).to_have_attribute("data-task-id", task["id"])
    page.get_by_test_id("detail-close").click()
    page.get_by_test_id("lookup-id").fill("0123abcd")
    page.get_by_test_id("lookup-button").click()
    expect(page.get_by_test_id("lookup-error")).to_have_text(
        "No task with an id starting 0123abcd."
    )
    page.get_by_test_id("lookup-id").fill("42")
    page.get_by_test_id("lookup-button").click()
    expect(page.get_by_test_id("lookup-error")).to_contain_text("give at least its first 8")


def test_back_and_forward_step_through_filters_and_the_open_task(page: Page, stack: Stack) -> None:
    headers = new_user(page, stack, "history")
    done = submit(stack, "EMAIL", EMAIL, headers)
    wait_for(stack, done["id"], "SUCCESS", headers=headers)
    later = submit(stack, "EMAIL", EMAIL, headers, run_at=FAR_FUTURE)
    open_app(page)
    rows = page.get_by_test_id("task-row")
    expect(rows).to_have_count(2)

    page.get_by_test_id("filter-status").select_option("SUCCESS")
    expect(rows).to_have_count(1)
    open_detail(page, done["id"], "SUCCESS")
    expect(page).to_have_url(re.compile(rf"status=SUCCESS&task={done['id']}$"))

    page.go_back()  # the task closes, the filter stays
    expect(page.get_by_test_id("detail-panel")).to_be_hidden()
    expect(page.get_by_test_id("filter-status")).to_have_value("SUCCESS")
    page.go_back()  # the filter goes
    expect(page.get_by_test_id("filter-status")).to_have_value("")
    expect(rows).to_have_count(2)
    expect(task_row(page, later["id"])).to_be_visible()

    page.go_forward()
    expect(page.get_by_test_id("filter-status")).to_have_value("SUCCESS")
    expect(rows).to_have_count(1)
    page.go_forward()
    expect(page.get_by_test_id("detail-panel")).to_have_attribute("data-task-id", done["id"])
    expect(task_row(page, done["id"])).to_have_attribute("aria-current", "true")


def test_tiles_filter_the_list_by_status(page: Page, stack: Stack) -> None:
    headers = new_user(page, stack, "tiles")
    done = submit(stack, "EMAIL", EMAIL, headers)
    wait_for(stack, done["id"], "SUCCESS", headers=headers)
    submit(stack, "EMAIL", EMAIL, headers, run_at=FAR_FUTURE)
    open_app(page)
    rows = page.get_by_test_id("task-row")
    expect(rows).to_have_count(2)
    tile = page.get_by_test_id("stat-status-PENDING")
    expect(tile).to_have_attribute("data-count", "1", timeout=TASK_TIMEOUT_MS)

    tile.click()

    expect(page).to_have_url(re.compile(r"[?&]status=PENDING(&|$)"))
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-status", "PENDING")
    expect(page.get_by_test_id("stat-status-PENDING")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_test_id("filter-status")).to_have_value("PENDING")
    page.get_by_test_id("stat-status-PENDING").click()  # again: every status
    expect(rows).to_have_count(2)
    expect(page.get_by_test_id("stat-status-PENDING")).to_have_attribute("aria-pressed", "false")
    # The tiles and the chart say what they count, so a re-run task does not look doubled.
    expect(page.get_by_test_id("dashboard")).to_contain_text("Each task counts once")
    expect(page.get_by_test_id("dashboard")).to_contain_text("Counts runs, not tasks")


def test_several_tasks_are_cancelled_then_retried_at_once(page: Page, stack: Stack) -> None:
    headers = new_user(page, stack, "bulk")
    finished = submit(stack, "EMAIL", EMAIL, headers)
    wait_for(stack, finished["id"], "SUCCESS", headers=headers)
    pending = [submit(stack, "EMAIL", EMAIL, headers, run_at=FAR_FUTURE) for _ in range(3)]
    open_app(page)
    rows = page.get_by_test_id("task-row")
    expect(rows).to_have_count(4)

    page.get_by_test_id("select-all").check()
    expect(page.get_by_test_id("bulk-count")).to_have_text("4 selected")
    page.get_by_test_id("bulk-cancel").click()
    confirm(page, "Cancel 3 tasks?")

    toast = page.get_by_test_id("toast").filter(has_text="cancelled or stopping")
    expect(toast).to_have_text(re.compile(r"^3 tasks cancelled or stopping\."))
    for task in pending:
        wait_for_row(page, task["id"], "CANCELLED")
    wait_for_row(page, finished["id"], "SUCCESS")
    expect(page.get_by_test_id("bulk-count")).to_have_text("1 selected")  # the one left as it was

    page.get_by_test_id("bulk-clear").click()
    expect(page.get_by_test_id("bulk-bar")).to_be_hidden()
    for task in pending[:2]:
        task_row(page, task["id"]).get_by_test_id("task-select").check()
    page.get_by_test_id("bulk-retry").click()
    confirm(page, "Retry 2 tasks?")
    expect(page.get_by_test_id("toast").filter(has_text="queued again")).to_have_text(
        re.compile(r"^2 tasks queued again\.")
    )
    for task in pending[:2]:
        wait_for_row(page, task["id"], "PENDING")
    wait_for_row(page, pending[2]["id"], "CANCELLED")


# ------------------------------------------------------------------------------- time zone


@pytest.mark.parametrize("context_options", [{"timezone_id": "Asia/Tokyo"}])
def test_times_show_their_zone_and_switch_between_local_and_utc(page: Page, stack: Stack) -> None:
    headers = new_user(page, stack, "zone")
    task = submit(stack, "EMAIL", EMAIL, headers, run_at=FAR_FUTURE)
    open_app(page)
    zone = page.get_by_test_id("zone-select")
    expect(zone).to_have_value("local")
    expect(zone.locator("option").first).to_have_text("Local (Asia/Tokyo)")
    panel = open_detail(page, task["id"], "PENDING")
    timings = panel.get_by_test_id("detail-timings")
    expect(timings.locator("h3")).to_have_text("Timings (Asia/Tokyo)")
    expect(timings).to_contain_text("9:00:00 AM GMT+9")  # midnight UTC, in Tokyo

    zone.select_option("UTC")

    expect(timings.locator("h3")).to_have_text("Timings (UTC)")
    expect(timings).to_contain_text("12:00:00 AM UTC")
    expect(page.get_by_test_id("run-at-help")).to_have_text("In UTC time; empty runs now.")
    page.reload()
    expect(page.get_by_test_id("zone-select")).to_have_value("UTC")
    # (a day inside run_at's one-year cap: one past it was refused with a 422 that failed the
    # test whenever the answer came before the page was closed)
    day = FAR_FUTURE[:10]
    page.get_by_test_id("submit-run-at").fill(f"{day}T12:00")
    page.get_by_test_id("type-select").select_option("EMAIL")
    page.get_by_test_id("source-generate").check()
    page.get_by_test_id("field-recipient_count").fill("1")
    page.get_by_test_id("field-subject").fill("s")
    page.get_by_test_id("field-body").fill("b")
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/tasks")
    ) as answered:
        page.get_by_test_id("submit-button").click()
    assert f'"run_at":"{day}T12:00:00.000Z"' in (answered.value.request.post_data or "")
    assert answered.value.status == 201


# ------------------------------------------------------------------------------- looks


@pytest.mark.parametrize("context_options", [{"color_scheme": "dark", "bypass_csp": True}])
def test_dark_mode_follows_the_system_and_passes_axe(page: Page, stack: Stack) -> None:
    headers = new_user(page, stack, "dark")
    task = submit(stack, "EMAIL", EMAIL, headers)
    wait_for(stack, task["id"], "SUCCESS", headers=headers)
    open_app(page)
    wait_for_row(page, task["id"], "SUCCESS")

    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    red, green, blue = (int(v) for v in re.findall(r"\d+", background)[:3])
    assert red + green + blue < 120, background
    assert axe_violations(page) == []
    open_detail(page, task["id"], "SUCCESS")
    assert axe_violations(page) == []


@pytest.mark.parametrize("context_options", [{"bypass_csp": True}])
def test_axe_finds_no_violations_in_the_light_page_form_and_detail(
    page: Page, stack: Stack
) -> None:
    headers = new_user(page, stack, "axe")
    task = submit(stack, "EMAIL", EMAIL, headers)
    wait_for(stack, task["id"], "SUCCESS", headers=headers)
    open_app(page)
    wait_for_row(page, task["id"], "SUCCESS")
    page.get_by_test_id("submit-button").click()  # the form with its errors shown
    expect(page.get_by_test_id("form-error")).to_be_visible()
    task_row(page, task["id"]).get_by_test_id("task-select").check()

    assert axe_violations(page) == []
    open_detail(page, task["id"], "SUCCESS")
    assert axe_violations(page) == []


@pytest.mark.parametrize("context_options", [{"viewport": {"width": 390, "height": 844}}])
def test_on_a_phone_the_form_and_list_come_first(page: Page, stack: Stack) -> None:
    new_user(page, stack, "phone", ("admin",))  # an operator: the queue table is shown
    open_app(page)

    def top(testid: str) -> float:
        box = page.get_by_test_id(testid).bounding_box()
        assert box, testid
        return float(box["y"])

    assert top("submit-form") < 200
    assert top("submit-form") < top("filters") < top("dashboard")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    # The queue table, its header included, fits: nothing hidden beyond the right edge.
    expect(page.get_by_test_id("stats-queues")).to_be_visible()
    fits = page.evaluate(
        """() => {
            const table = document.querySelector('[data-testid=stats-queues]');
            const box = table.parentElement;
            const cut = [...table.querySelectorAll('th')]
              .filter((th) => th.scrollWidth > th.clientWidth + 1).map((th) => th.textContent);
            return {overflow: table.scrollWidth - box.clientWidth, cut};
        }"""
    )
    assert fits == {"overflow": 0, "cut": []}


# ------------------------------------------------------------------------------- screenshots


def test_screenshots_of_list_and_detail(browser: Browser, stack: Stack, tmp_path: Path) -> None:
    """The scenario of `python -m tests.e2e.screenshots`, into a temporary directory."""
    from tests.e2e.screenshots import take_screenshots

    problems, files = take_screenshots(browser, stack, tmp_path)

    assert problems == []
    for path in files:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
        assert path.stat().st_size > 20_000, path
