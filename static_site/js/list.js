// The task list: filters kept in the URL, pages with "Load more", cheap refreshes that the
// poller drives, and announcements when a visible task changes status.

import { api, ApiError } from "./api.js";
import {
  el, clear, statusBadge, progressBar, relativeTime, formatDateTime, formatDuration, shortId,
  announce, ACTIVE_STATUSES, STATUSES, toDate,
} from "./util.js";

const PAGE_SIZE = 20;
const MAX_LIMIT = 100;
const MAX_SINGLE_REFRESHES = 10;
const FILTER_KEYS = ["status", "type", "created_after", "created_before"];
// The list is read from an index that DynamoDB updates asynchronously: a task submitted just
// before a list request may still be missing from its answer.
const INDEX_LAG_MS = 5000;

/** Filters from the query string: status, type, created_after / created_before (YYYY-MM-DD). */
export function readFilters(search = window.location.search) {
  const params = new URLSearchParams(search);
  const filters = {};
  for (const key of FILTER_KEYS) filters[key] = params.get(key) || "";
  if (filters.status && !STATUSES.includes(filters.status.toUpperCase())) filters.status = "";
  filters.status = filters.status.toUpperCase();
  return filters;
}

/** Replaces only our keys in the query string, keeping the rest (e.g. the open task). */
export function writeUrlParams(values) {
  const url = new URL(window.location.href);
  for (const [key, value] of Object.entries(values)) {
    if (value) url.searchParams.set(key, value);
    else url.searchParams.delete(key);
  }
  const next = `${url.pathname}${url.search}${url.hash}`;
  if (next !== `${window.location.pathname}${window.location.search}${window.location.hash}`) {
    window.history.replaceState(window.history.state, "", next);
  }
}

function dayStart(dateText, offsetDays = 0) {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(dateText || "");
  if (!match) return null;
  const date = new Date(Number(match[1]), Number(match[2]) - 1, Number(match[3]) + offsetDays);
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
  return [task.status, task.progress, task.units_done, task.units_total, task.updated_at, task.cancel_requested, task.attempts].join("|");
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

  let filters = readFilters();
  let items = [];
  let nextCursor = null;
  let loading = false;
  let loadingMore = false;
  let error = null;
  let generation = 0; // a newer load makes older answers stale
  let selectedId = null;
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
    const button = el(
      "button",
      { type: "button", class: "task-open", testid: "task-open", dataset: { taskId: task.id }, onclick: () => onOpen(task.id) },
      el("span", { class: "cell cell-status" }, statusBadge(task.status)),
      el(
        "span",
        { class: "cell cell-type" },
        el("span", { class: "task-type", testid: "task-type" }, task.type),
        el("span", { class: "task-id mono", title: task.id }, shortId(task.id)),
        task.priority === "high" ? el("span", { class: "chip chip-high" }, "high") : null,
        task.cancel_requested && ACTIVE_STATUSES.has(task.status) ? el("span", { class: "chip" }, "cancelling") : null,
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
          ? `starts ${relativeTime(task.run_at)}`
          : formatDuration(task.duration_seconds),
      ),
    );
    return el(
      "li",
      { class: "task-row", testid: "task-row", dataset: { taskId: task.id, status: task.status }, "aria-current": task.id === selectedId ? "true" : null },
      button,
    );
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

  function applyFilters() {
    const next = {
      status: fStatus.value,
      type: fType.value,
      created_after: fAfter.value,
      created_before: fBefore.value,
    };
    if (next.created_after && next.created_before && next.created_after > next.created_before) {
      filterError.textContent = "The start date is after the end date.";
      filterError.hidden = false;
      return;
    }
    filterError.hidden = true;
    filters = next;
    writeUrlParams(filters);
    load();
  }

  function clearFilters() {
    filters = { status: "", type: "", created_after: "", created_before: "" };
    syncInputs();
    filterError.hidden = true;
    writeUrlParams(filters);
    load();
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

  lookupForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const id = lookupInput.value.trim();
    lookupError.hidden = true;
    lookupInput.removeAttribute("aria-invalid");
    if (!id) {
      lookupError.textContent = "Enter a task id.";
      lookupError.hidden = false;
      lookupInput.setAttribute("aria-invalid", "true");
      lookupInput.focus();
      return;
    }
    try {
      const task = await api.getTask(id);
      upsert(task);
      onOpen(task.id || id, task);
    } catch (err) {
      lookupError.textContent = err instanceof ApiError && (err.status === 404 || err.status === 422 || err.status === 400)
        ? `No task with id ${id}.`
        : `Look-up failed: ${err.message}`;
      lookupError.hidden = false;
      lookupInput.setAttribute("aria-invalid", "true");
      lookupInput.focus();
    }
  });

  window.addEventListener("popstate", () => {
    filters = readFilters();
    syncInputs();
    load();
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
