// The task list: filters kept in the URL (each change a history entry), pages with "Load
// more", cheap refreshes that the poller drives, announcements when a visible task changes
// status, a look-up by id or short id, and a selection of tasks to cancel or retry at once.

import { api, ApiError } from "./api.js";
import { FILTER_KEYS, navigate, onNavigate, readState } from "./nav.js";
import {
  el, clear, statusBadge, progressBar, failedItemsBadge, relativeTime, formatDateTime, formatDuration,
  shortId, announce, toast, confirmDialog, timeZone, ACTIVE_STATUSES, STATUSES, toDate,
} from "./util.js";

const PAGE_SIZE = 20;
const MAX_LIMIT = 100;
const MAX_SINGLE_REFRESHES = 10;
const MAX_BULK = 50; // POST /tasks/bulk takes at most this many ids
const RETRYABLE = new Set(["FAILED", "CANCELLED"]);
// The list is read from an index that DynamoDB updates asynchronously: a task submitted just
// before a list request may still be missing from its answer.
const INDEX_LAG_MS = 5000;
const FULL_ID = /^[0-9a-f]{32}$/;
const ID_PREFIX = /^[0-9a-f]{8,31}$/;

/** Filters from the query string: status, type, created_after / created_before (YYYY-MM-DD). */
export function readFilters(search = window.location.search) {
  const state = readState(search);
  return Object.fromEntries(FILTER_KEYS.map((key) => [key, state[key]]));
}

/** The start of a day ("YYYY-MM-DD") in the zone the page shows times in, as ISO 8601. */
function dayStart(dateText, offsetDays = 0) {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(dateText || "");
  if (!match) return null;
  const [year, month, day] = [Number(match[1]), Number(match[2]) - 1, Number(match[3]) + offsetDays];
  const date = timeZone() === "UTC" ? new Date(Date.UTC(year, month, day)) : new Date(year, month, day);
  return date.toISOString();
}

function toQuery(filters) {
  return {
    status: filters.status || null,
    type: filters.type || null,
    created_after: dayStart(filters.created_after),
    // The end date is inclusive: everything before the start of the next day.
    created_before: dayStart(filters.created_before, 1),
  };
}

function signature(task) {
  return [
    task.status, task.progress, task.units_done, task.units_total, task.updated_at, task.cancel_requested,
    task.attempts, task.failed_items,
  ].join("|");
}

function byNewest(a, b) {
  const ta = toDate(a.created_at)?.getTime() ?? 0;
  const tb = toDate(b.created_at)?.getTime() ?? 0;
  return tb - ta || String(b.id).localeCompare(String(a.id));
}

export function createTaskList({ onOpen, onChange }) {
  const listNode = document.getElementById("task-list");
  const stateNode = document.getElementById("list-state");
  const loadMore = document.getElementById("load-more");
  const filtersForm = document.getElementById("filters");
  const fStatus = document.getElementById("filter-status");
  const fType = document.getElementById("filter-type");
  const fAfter = document.getElementById("filter-created-after");
  const fBefore = document.getElementById("filter-created-before");
  const clearButton = document.getElementById("filter-clear");
  const filterError = document.getElementById("filter-error");
  const lookupForm = document.getElementById("lookup");
  const lookupInput = document.getElementById("lookup-id");
  const lookupError = document.getElementById("lookup-error");
  const refreshButton = document.getElementById("list-refresh");
  const countNode = document.getElementById("list-count");
  const bulkBar = document.getElementById("bulk-bar");
  const bulkCount = document.getElementById("bulk-count");
  const bulkCancel = document.getElementById("bulk-cancel");
  const bulkRetry = document.getElementById("bulk-retry");
  const bulkClear = document.getElementById("bulk-clear");
  const selectAll = document.getElementById("select-all");

  let filters = readFilters();
  let items = [];
  let nextCursor = null;
  let loading = false;
  let loadingMore = false;
  let error = null;
  let generation = 0; // a newer load makes older answers stale
  let selectedId = null;
  let bulkBusy = false;
  const checked = new Set(); // ids ticked for a bulk action
  const rows = new Map(); // id -> {node, sig}
  // Tasks added by upsert (a submit, a look-up) with the time they were added: a list answer
  // requested before that time (or just after: INDEX_LAG_MS) may lack them, so load() and
  // refresh() keep them.
  const upserted = new Map(); // id -> {task, at}

  for (const status of STATUSES) {
    fStatus.append(el("option", { value: status }, status.charAt(0) + status.slice(1).toLowerCase()));
  }

  function syncInputs() {
    fStatus.value = filters.status;
    ensureTypeOption(filters.type);
    fType.value = filters.type;
    fAfter.value = filters.created_after;
    fBefore.value = filters.created_before;
  }

  function ensureTypeOption(name) {
    if (name && ![...fType.options].some((o) => o.value === name)) fType.append(el("option", { value: name }, name));
  }

  function setTypes(types) {
    const current = fType.value || filters.type;
    clear(fType).append(el("option", { value: "" }, "All types"));
    for (const t of types) fType.append(el("option", { value: t.name }, t.name));
    ensureTypeOption(current);
    fType.value = current;
  }

  function hasFilters() {
    return FILTER_KEYS.some((k) => filters[k]);
  }

  // ---------------------------------------------------------------- rendering

  function buildRow(task) {
    const created = toDate(task.created_at);
    const label = `${task.type} ${shortId(task.id)}`;
    const box = el("input", {
      type: "checkbox",
      class: "task-check",
      testid: "task-select",
      "aria-label": `Select ${label}`,
      checked: checked.has(task.id),
      onchange: (event) => {
        if (event.target.checked) checked.add(task.id);
        else checked.delete(task.id);
        renderBulk();
      },
    });
    const button = el(
      "button",
      { type: "button", class: "task-open", testid: "task-open", dataset: { taskId: task.id }, onclick: () => onOpen(task.id) },
      el("span", { class: "cell cell-status" }, statusBadge(task.status)),
      el(
        "span",
        { class: "cell cell-type" },
        el("span", { class: "task-type", testid: "task-type" }, task.type),
        el("span", { class: "task-id mono", title: task.id, testid: "task-short-id" }, shortId(task.id)),
        task.priority === "high" ? el("span", { class: "chip chip-high" }, "high") : null,
        task.cancel_requested && ACTIVE_STATUSES.has(task.status) ? el("span", { class: "chip" }, "cancelling") : null,
        failedItemsBadge(task),
      ),
      el("span", { class: "cell cell-progress" }, progressBar(task, `Progress of task ${shortId(task.id)}`)),
      el(
        "span",
        { class: "cell cell-created" },
        el("span", { class: "cell-label" }, "Created "),
        el("time", { datetime: created ? created.toISOString() : null, title: formatDateTime(created), dataset: { relative: task.created_at } },
          relativeTime(created)),
      ),
      el(
        "span",
        { class: "cell cell-duration" },
        el("span", { class: "cell-label" }, "Duration "),
        task.status === "PENDING" && task.run_at && toDate(task.run_at) > new Date()
          ? el("span", { title: formatDateTime(task.run_at) }, `starts ${relativeTime(task.run_at)}`)
          : formatDuration(task.duration_seconds),
      ),
    );
    return el(
      "li",
      { class: "task-row", testid: "task-row", dataset: { taskId: task.id, status: task.status }, "aria-current": task.id === selectedId ? "true" : null },
      box,
      button,
    );
  }

  // ---------------------------------------------------------------- selection and bulk actions

  function selectedTasks() {
    return items.filter((t) => checked.has(t.id));
  }

  function renderBulk() {
    for (const id of [...checked]) if (!items.some((t) => t.id === id)) checked.delete(id);
    const chosen = selectedTasks();
    bulkBar.hidden = chosen.length === 0;
    bulkCount.textContent = `${chosen.length} selected`;
    bulkCancel.disabled = bulkBusy || !chosen.some((t) => ACTIVE_STATUSES.has(t.status) && !t.cancel_requested);
    bulkRetry.disabled = bulkBusy || !chosen.some((t) => RETRYABLE.has(t.status));
    selectAll.checked = items.length > 0 && chosen.length === items.length;
    selectAll.indeterminate = chosen.length > 0 && chosen.length < items.length;
    selectAll.disabled = items.length === 0;
    for (const box of listNode.querySelectorAll(".task-check")) {
      const id = box.closest(".task-row")?.dataset.taskId;
      box.checked = checked.has(id);
    }
  }

  async function bulk(action) {
    const eligible = selectedTasks().filter((t) =>
      action === "cancel" ? ACTIVE_STATUSES.has(t.status) && !t.cancel_requested : RETRYABLE.has(t.status),
    );
    const skipped = checked.size - eligible.length;
    if (!eligible.length) return;
    if (eligible.length > MAX_BULK) {
      toast(`Select at most ${MAX_BULK} tasks at a time.`, "error");
      return;
    }
    const verb = action === "cancel" ? "Cancel" : "Retry";
    const ok = await confirmDialog({
      title: `${verb} ${eligible.length} task${eligible.length === 1 ? "" : "s"}?`,
      message: action === "cancel"
        ? "Pending tasks will not run; running ones stop at their next checkpoint."
          + (skipped ? ` ${skipped} selected task${skipped === 1 ? " is" : "s are"} finished already and stay as they are.` : "")
        : "They are queued again and continue from their last checkpoint."
          + (skipped ? ` ${skipped} selected task${skipped === 1 ? " is" : "s are"} not failed or cancelled and stay as they are.` : ""),
      confirmLabel: `${verb} ${eligible.length}`,
      danger: action === "cancel",
    });
    if (!ok) return;
    bulkBusy = true;
    renderBulk();
    try {
      const answer = await api.bulk(action, eligible.map((t) => t.id));
      const results = answer?.results || [];
      const done = results.filter((r) => r.ok);
      const failed = results.filter((r) => !r.ok);
      for (const r of done) {
        const known = items.find((t) => t.id === r.id);
        if (known) upsert({ ...known, status: r.status, cancel_requested: action === "cancel" && r.status === "RUNNING" ? true : known.cancel_requested });
        checked.delete(r.id);
      }
      const past = action === "cancel" ? "cancelled or stopping" : "queued again";
      let message = `${done.length} task${done.length === 1 ? "" : "s"} ${past}.`;
      if (failed.length) {
        message += ` ${failed.length} not: ${failed.map((r) => `${shortId(r.id)} (${r.error?.message || "refused"})`).join("; ")}.`;
      }
      toast(message, failed.length ? "error" : "success", failed.length ? 0 : 5000);
      announce(message);
    } catch (err) {
      toast(`${verb} failed: ${err.message}`, "error");
    } finally {
      bulkBusy = false;
      renderBulk();
      onChange?.();
    }
  }

  function renderState() {
    clear(stateNode);
    stateNode.hidden = true;
    listNode.setAttribute("aria-busy", loading ? "true" : "false");
    if (loading && !items.length) {
      stateNode.hidden = false;
      stateNode.append(el("div", { class: "state state-loading", testid: "list-loading" }, el("span", { class: "spinner", "aria-hidden": "true" }), "Loading tasks…"));
    } else if (error && !items.length) {
      stateNode.hidden = false;
      stateNode.append(
        el(
          "div",
          { class: "state state-error", testid: "list-error", role: "alert" },
          el("p", null, `Could not load tasks: ${error.message}`),
          el("button", { type: "button", class: "btn btn-secondary btn-small", onclick: () => load() }, "Try again"),
        ),
      );
    } else if (!loading && !items.length) {
      stateNode.hidden = false;
      stateNode.append(
        el(
          "div",
          { class: "state state-empty", testid: "list-empty" },
          hasFilters()
            ? [el("p", null, "No tasks match these filters."), el("button", { type: "button", class: "btn btn-secondary btn-small", onclick: clearFilters }, "Clear filters")]
            : el("p", null, "No tasks yet. Submit one with the form."),
        ),
      );
    }
    loadMore.hidden = !nextCursor;
    loadMore.disabled = loadingMore;
    loadMore.textContent = loadingMore ? "Loading…" : "Load more";
    countNode.textContent = items.length ? `${items.length}${nextCursor ? "+" : ""} task${items.length === 1 ? "" : "s"}` : "";
  }

  function render() {
    const focusedId = listNode.contains(document.activeElement) ? document.activeElement.dataset.taskId : null;
    const nodes = items.map((task) => {
      const sig = `${signature(task)}|${task.id === selectedId}`;
      const known = rows.get(task.id);
      if (known && known.sig === sig) return known.node;
      const node = buildRow(task);
      rows.set(task.id, { node, sig });
      return node;
    });
    const ids = new Set(items.map((t) => t.id));
    for (const id of rows.keys()) if (!ids.has(id)) rows.delete(id);
    const same = nodes.length === listNode.children.length && nodes.every((n, i) => listNode.children[i] === n);
    if (!same) listNode.replaceChildren(...nodes);
    renderBulk();
    if (focusedId && !listNode.contains(document.activeElement)) {
      listNode.querySelector(`.task-open[data-task-id="${CSS.escape(focusedId)}"]`)?.focus();
    }
    renderState();
  }

  function announceChanges(before, after) {
    const old = new Map(before.map((t) => [t.id, t.status]));
    for (const t of after) {
      const was = old.get(t.id);
      if (was && was !== t.status) announce(`Task ${shortId(t.id)} (${t.type}) is now ${t.status.toLowerCase()}`);
    }
  }

  function matchesFilters(task) {
    return (!filters.status || filters.status === task.status) && (!filters.type || filters.type === task.type) && !filters.created_before;
  }

  /** `list` plus the tasks upserted since `since` that it lacks (and that match the filters). */
  function withUpserted(list, since) {
    const ids = new Set(list.map((t) => t.id));
    const extra = [];
    for (const [id, { task, at }] of upserted) {
      if (at < since - 60_000) upserted.delete(id);
      else if (at >= since - INDEX_LAG_MS && !ids.has(id) && matchesFilters(task)) extra.push(task);
    }
    return extra.length ? list.concat(extra) : list;
  }

  // ---------------------------------------------------------------- loading

  async function load() {
    const mine = ++generation;
    loading = true;
    error = null;
    items = [];
    nextCursor = null;
    render();
    const since = Date.now();
    try {
      const page = await api.listTasks({ ...toQuery(filters), limit: PAGE_SIZE });
      if (mine !== generation) return;
      items = withUpserted(page?.items || [], since).slice().sort(byNewest);
      nextCursor = page?.next_cursor || null;
    } catch (err) {
      if (mine !== generation) return;
      error = err;
    } finally {
      if (mine === generation) {
        loading = false;
        render();
        onChange?.();
      }
    }
  }

  async function more() {
    if (!nextCursor || loadingMore) return;
    const mine = generation;
    loadingMore = true;
    renderState();
    try {
      const page = await api.listTasks({ ...toQuery(filters), limit: PAGE_SIZE, cursor: nextCursor });
      if (mine !== generation) return;
      const known = new Set(items.map((t) => t.id));
      items = items.concat((page?.items || []).filter((t) => !known.has(t.id)));
      nextCursor = page?.next_cursor || null;
      onChange?.();
    } catch (err) {
      if (mine === generation) announce(`Could not load more tasks: ${err.message}`);
      error = err;
    } finally {
      loadingMore = false;
      render();
    }
  }

  /**
   * One cheap refresh: the first page again, as long as what is loaded (up to 100 rows),
   * plus single GETs for active rows that fell out of it. Resolves true when anything changed.
   */
  async function refresh() {
    if (loading || loadingMore) return false;
    const mine = generation;
    const before = items;
    const since = Date.now();
    const limit = Math.min(MAX_LIMIT, Math.max(PAGE_SIZE, items.length));
    const page = await api.listTasks({ ...toQuery(filters), limit });
    if (mine !== generation) return false;
    const fresh = page?.items || [];
    const freshIds = new Set(fresh.map((t) => t.id));
    const missingActive = before.filter((t) => !freshIds.has(t.id) && ACTIVE_STATUSES.has(t.status)).slice(0, MAX_SINGLE_REFRESHES);
    const refreshed = await Promise.all(
      missingActive.map((t) => api.getTask(t.id).catch((err) => (err instanceof ApiError && err.status === 404 ? null : t))),
    );
    if (mine !== generation) return false;
    let merged;
    if (before.length <= limit) {
      merged = fresh.concat(refreshed.filter(Boolean));
      nextCursor = page?.next_cursor || null;
    } else {
      const byId = new Map(before.map((t) => [t.id, t]));
      for (const t of fresh) byId.set(t.id, t);
      for (const t of refreshed) if (t) byId.set(t.id, t);
      merged = [...byId.values()];
    }
    merged = withUpserted(merged, since);
    const unique = new Map(merged.map((t) => [t.id, t]));
    items = [...unique.values()].sort(byNewest);
    error = null;
    const changed =
      items.length !== before.length || items.some((t, i) => before[i]?.id !== t.id || signature(before[i]) !== signature(t));
    if (changed) {
      announceChanges(before, items);
      render();
    } else {
      renderState();
    }
    return changed;
  }

  /** Puts a task we learned about elsewhere (submit, detail, action) into the list. */
  function upsert(task) {
    if (!task?.id) return false;
    const index = items.findIndex((t) => t.id === task.id);
    const matches = matchesFilters(task);
    if (index < 0 && matches) upserted.set(task.id, { task, at: Date.now() });
    if (index >= 0) {
      const merged = { ...items[index], ...task };
      if (signature(merged) === signature(items[index])) return true;
      announceChanges([items[index]], [merged]);
      items[index] = merged;
    } else if (matches) {
      items = [task, ...items].sort(byNewest);
      render();
      return false;
    } else {
      return false;
    }
    render();
    return true;
  }

  function setSelected(id) {
    selectedId = id;
    render();
  }

  // ---------------------------------------------------------------- filters and look-up

  function sameFilters(a, b) {
    return FILTER_KEYS.every((key) => (a[key] || "") === (b[key] || ""));
  }

  /** Shows the list for `next` filters; a history entry unless `fromHistory`. */
  function setFilters(next, { fromHistory = false } = {}) {
    if (next.created_after && next.created_before && next.created_after > next.created_before) {
      filterError.textContent = "The start date is after the end date.";
      filterError.hidden = false;
      return;
    }
    filterError.hidden = true;
    const changed = !sameFilters(filters, next);
    filters = { ...next };
    syncInputs();
    if (!fromHistory) navigate(filters);
    if (changed) {
      checked.clear();
      load();
    }
  }

  function applyFilters() {
    setFilters({ status: fStatus.value, type: fType.value, created_after: fAfter.value, created_before: fBefore.value });
  }

  function clearFilters() {
    setFilters({ status: "", type: "", created_after: "", created_before: "" });
  }

  filtersForm.addEventListener("change", applyFilters);
  filtersForm.addEventListener("submit", (event) => {
    event.preventDefault();
    applyFilters();
  });
  clearButton.addEventListener("click", clearFilters);
  loadMore.addEventListener("click", more);
  refreshButton.addEventListener("click", () => {
    load();
  });
  selectAll.addEventListener("change", () => {
    if (selectAll.checked) for (const t of items) checked.add(t.id);
    else checked.clear();
    renderBulk();
  });
  bulkCancel.addEventListener("click", () => bulk("cancel"));
  bulkRetry.addEventListener("click", () => bulk("retry"));
  bulkClear.addEventListener("click", () => {
    checked.clear();
    renderBulk();
  });

  function lookupFailed(message) {
    lookupError.textContent = message;
    lookupError.hidden = false;
    lookupInput.setAttribute("aria-invalid", "true");
    lookupInput.focus();
  }

  /** A full id opens its task; a short id (8 or more of its first characters) finds it. */
  async function lookup(event) {
    event.preventDefault();
    const id = lookupInput.value.trim().toLowerCase();
    lookupError.hidden = true;
    lookupInput.removeAttribute("aria-invalid");
    if (!id) return lookupFailed("Enter a task id, or the first 8 characters of one.");
    if (!FULL_ID.test(id) && !ID_PREFIX.test(id)) {
      return lookupFailed("A task id is 32 characters 0-9 and a-f; give at least its first 8.");
    }
    try {
      let task;
      if (FULL_ID.test(id)) {
        task = await api.getTask(id);
      } else {
        const page = await api.listTasks({ id_prefix: id, limit: 2 });
        const found = page?.items || [];
        if (found.length > 1) return lookupFailed(`More than one task starts with ${id}: give more characters.`);
        [task] = found;
      }
      if (!task) return lookupFailed(`No task with an id starting ${id}.`);
      upsert(task);
      onOpen(task.id, task);
    } catch (err) {
      lookupFailed(err instanceof ApiError && err.status === 404 ? `No task with id ${id}.` : `Look-up failed: ${err.message}`);
    }
  }
  lookupForm.addEventListener("submit", lookup);

  onNavigate((state) => {
    const next = Object.fromEntries(FILTER_KEYS.map((key) => [key, state[key]]));
    if (!sameFilters(filters, next)) setFilters(next, { fromHistory: true });
  });

  document.addEventListener("timezonechange", () => {
    rows.clear();
    render();
  });

  // Relative times age; refresh their text without refetching.
  setInterval(() => {
    if (document.hidden) return;
    for (const node of listNode.querySelectorAll("time[data-relative]")) node.textContent = relativeTime(node.dataset.relative);
  }, 30_000);

  syncInputs();

  return {
    load,
    refresh,
    upsert,
    setTypes,
    setSelected,
    /** The overview's tiles: show tasks of this status ("" for all), as a history entry. */
    filterStatus: (status) => setFilters({ ...filters, status }),
    status: () => filters.status,
    /** Redraws the rows (progress units known once the types are loaded). */
    redraw: () => {
      rows.clear();
      render();
    },
    hasActive: () => items.some((t) => ACTIVE_STATUSES.has(t.status)),
    items: () => items,
  };
}

/**
 * Polls while `isActive()` says something may still change: 2 s, doubling to 30 s while
 * nothing changes, back to 2 s on a change or `kick()`, and paused while the tab is hidden.
 */
export function createPoller({ tick, isActive, min = 2000, max = 30000 }) {
  let delay = min;
  let timer = null;
  let running = false;

  function schedule() {
    clearTimeout(timer);
    timer = null;
    if (running || document.hidden || !isActive()) return;
    timer = setTimeout(run, delay);
  }

  async function run() {
    timer = null;
    if (running || document.hidden || !isActive()) return;
    running = true;
    let changed = false;
    try {
      changed = await tick();
    } catch {
      changed = false;
    } finally {
      running = false;
    }
    delay = changed ? min : Math.min(max, delay * 2);
    schedule();
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      clearTimeout(timer);
      timer = null;
    } else {
      delay = min;
      run();
    }
  });

  return {
    /** Something happened (user action, new task): poll soon again. */
    kick() {
      delay = min;
      schedule();
    },
    get delay() {
      return delay;
    },
  };
}
