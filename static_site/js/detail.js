// The detail panel of one task: params, timings, its timeline of attempts, events, the result
// drawn for its type (with units), partial failures, the error, and the Cancel / Resume /
// Restart actions behind a confirmation dialog. The open task is a history entry.

import { api, ApiError } from "./api.js";
import { navigate, onNavigate } from "./nav.js";
import { eventText, timelineView } from "./timeline.js";
import {
  el, clear, statusBadge, progressBar, failedItemsBadge, formatDateTime, relativeTime, formatDuration,
  formatValue, formatNumber, formatUnits, kvTable, objectsTable, valueView, isPlainObject, shortId, toast,
  announce, confirmDialog, safeUrl, unitOf, zoneName, ACTIVE_STATUSES, toDate,
} from "./util.js";

const IMAGE_RE = /\.(png|jpe?g|webp|gif|avif|bmp)$/i;
const RETRYABLE = new Set(["FAILED", "CANCELLED"]);

function section(title, testid, ...children) {
  return el("section", { class: "detail-section", testid }, el("h3", null, title), ...children);
}

function fileName(key) {
  return String(key).split("/").pop() || String(key);
}

// ---------------------------------------------------------------- results by type

/** result.columns as a list of {name, ...stats} or a map name -> stats, as one table. */
function columnStats(columns) {
  let rows = null;
  if (Array.isArray(columns) && columns.every(isPlainObject)) {
    rows = columns;
  } else if (isPlainObject(columns) && Object.values(columns).every(isPlainObject)) {
    rows = Object.entries(columns).map(([name, stats]) => ({ column: name, ...stats }));
  }
  if (!rows || !rows.length) return null;
  return objectsTable(rows, { testid: "column-stats", class: "sticky-first" });
}

// The unit of each number in a type's result summary: rules as data, read by summaryTable.
const RESULT_UNITS = {
  DATA_PROCESSING: { bytes: "bytes", rows: "rows", columns: "columns", columns_ignored: "columns", ragged_rows: "rows" },
  EMAIL: { recipients: "recipients", sent: "recipients", failed: "recipients" },
  IMAGE_PROCESSING: {
    images: "images", processed: "images", failed: "images", input_bytes: "bytes", output_bytes: "bytes",
    width: "px", height: "px",
  },
};

/** A key/value table of a result summary, numbers with their unit ("4.8 MB", "2,000 rows"). */
function summaryTable(type, summary) {
  const units = RESULT_UNITS[type] || {};
  const shown = Object.fromEntries(
    Object.entries(summary).map(([key, value]) => {
      const unit = units[key];
      if (typeof value !== "number" || !unit) return [key, value];
      return [key, unit === "px" ? `${formatNumber(value)} px` : formatUnits(value, unit)];
    }),
  );
  return kvTable(shown, 0, { testid: "result-summary" });
}

function countTiles(testid, tiles) {
  return el(
    "div",
    { class: "summary-tiles", testid },
    tiles.map(([count, label, kind]) =>
      el("div", { class: ["tile", count && kind ? `tile-${kind}` : null] },
        el("span", { class: "tile-value" }, formatNumber(Number(count) || 0)), el("span", { class: "tile-label" }, label)),
    ),
  );
}

function dataProcessingResult(result) {
  const { column_stats: columns, top_columns: top, ...rest } = result;
  const table = columnStats(columns) || columnStats(top);
  const parts = [];
  if (table) parts.push(el("h4", null, top && !columns ? "Column statistics (the 10 fullest columns)" : "Column statistics"), table);
  if (Object.keys(rest).length) parts.push(el("h4", null, "Summary"), summaryTable("DATA_PROCESSING", rest));
  return parts;
}

function failuresTable(failures, testid) {
  if (!Array.isArray(failures) || !failures.length) return [];
  const rows = failures.map((f) => (isPlainObject(f) ? f : { item: f }));
  return [el("h4", null, "Failures"), objectsTable(rows, { testid })];
}

/** A type that works item by item: tiles of done and failed items, the failures, the rest. */
function itemsResult(type, prefix, doneKey, doneLabel, items = (r) => failuresTable(r.failures, `${prefix}-failures`)) {
  return (result) => {
    // The items view shows failures and the recipients' CSV: not again in the summary.
    const { [doneKey]: done, failed, failures, recipients_csv: csv, ...rest } = result;
    return [
      countTiles(`${prefix}-summary`, [[done, doneLabel, "success"], [failed, "failed", "failed"]]),
      ...items(result),
      Object.keys(rest).length ? summaryTable(type, rest) : null,
    ];
  };
}

/** The key of an s3://bucket/key location. */
function keyOf(location) {
  const match = /^s3:\/\/[^/]+\/(.+)$/.exec(String(location || ""));
  return match ? match[1] : null;
}

/** The result's location: a download link when the API offers one for its key. */
function locationView(task) {
  if (!task.result_location) return null;
  const key = keyOf(task.result_location);
  const link = (task.downloads || []).find((d) => d.key === key && safeUrl(d.url));
  return el(
    "p",
    { class: "muted small", testid: "result-location" },
    "Full result: ",
    link
      ? el("a", { href: link.url, target: "_blank", rel: "noopener noreferrer", download: fileName(key), testid: "result-location-link" }, fileName(key))
      : el("code", null, task.result_location),
  );
}

function downloadsView(downloads) {
  const links = (downloads || []).filter((d) => d && safeUrl(d.url));
  if (!links.length) return null;
  const images = links.filter((d) => IMAGE_RE.test(d.key || ""));
  const files = links.filter((d) => !IMAGE_RE.test(d.key || ""));
  return section(
    "Downloads",
    "detail-downloads",
    images.length
      ? el(
          "ul",
          { class: "thumbs" },
          images.map((d) =>
            el(
              "li",
              null,
              el(
                "a",
                { href: d.url, target: "_blank", rel: "noopener noreferrer", class: "thumb", testid: "download-link" },
                el("img", { src: d.url, alt: fileName(d.key), loading: "lazy", testid: "thumbnail" }),
                el("span", { class: "thumb-name" }, fileName(d.key)),
              ),
            ),
          ),
        )
      : null,
    files.length
      ? el(
          "ul",
          { class: "downloads" },
          files.map((d) =>
            el("li", null, el("a", { href: d.url, target: "_blank", rel: "noopener noreferrer", download: fileName(d.key), testid: "download-link" }, fileName(d.key))),
          ),
        )
      : null,
  );
}

// ---------------------------------------------------------------- EMAIL: each recipient

const RECIPIENT_ROWS = 100; // shown in the page; the CSV download has them all
const RECIPIENT_BYTES = 64 * 1024; // read of the CSV for those rows (a Range request)
const recipientPreviews = new Map(); // csv download URL -> Promise<{rows, more}>

/** RFC 4180 records of `text` (quoted fields, "" for a quote inside one). */
export function parseCsv(text) {
  const records = [];
  let record = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i += 1;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      record.push(field);
      field = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i += 1;
      record.push(field);
      records.push(record);
      record = [];
      field = "";
    } else field += c;
  }
  if (field || record.length) records.push([...record, field]);
  return records;
}

/** The first RECIPIENT_ROWS recipients from the start of the CSV (a partial last line is
 * dropped); {rows: [{index, email, status, code, reason}], more}. */
function recipientPreview(url) {
  if (!recipientPreviews.has(url)) {
    const loading = fetch(url, { headers: { Range: `bytes=0-${RECIPIENT_BYTES - 1}` } }).then(async (response) => {
      if (!response.ok) throw new Error(`${response.status}`);
      let text = await response.text();
      const partial = response.status === 206 && text.length >= RECIPIENT_BYTES - 4;
      if (partial) text = text.slice(0, text.lastIndexOf("\n") + 1);
      const [header, ...records] = parseCsv(text).filter((r) => r.length > 1);
      const rows = records.slice(0, RECIPIENT_ROWS).map((r) =>
        Object.fromEntries((header || []).map((name, i) => [name, r[i] ?? ""])));
      return { rows, more: partial || records.length > RECIPIENT_ROWS };
    });
    loading.catch(() => recipientPreviews.delete(url));
    recipientPreviews.set(url, loading);
  }
  return recipientPreviews.get(url);
}

/** Each recipient's outcome (from the downloadable CSV), with the download itself. */
function recipientsView(task, result) {
  const key = result.recipients_csv;
  const link = (task.downloads || []).find((d) => d.key === key && safeUrl(d.url));
  if (!link) return [...failuresTable(result.failures, "email-failures")];
  const host = el("div", { class: "recipients", testid: "email-recipients" }, el("p", { class: "muted small" }, "Loading recipients…"));
  recipientPreview(link.url).then(
    ({ rows, more }) => {
      const table = objectsTable(
        rows.map((r) => ({ index: Number(r.index) || r.index, email: r.email, status: r.status, code: r.code, reason: r.reason })),
        { testid: "email-recipient-table" },
      );
      const note = more ? [el("p", { class: "muted small" }, `The first ${formatNumber(rows.length)} recipients; the CSV has them all.`)] : [];
      host.replaceChildren(table, ...note);
    },
    () => host.replaceChildren(...failuresTable(result.failures, "email-failures")),
  );
  return [
    el("h4", null, "Recipients"),
    el(
      "p",
      { class: "small" },
      el("a", { href: link.url, download: fileName(key), testid: "email-csv-link" }, `Download every recipient's outcome (${fileName(key)})`),
    ),
    host,
  ];
}

const RESULT_VIEWS = {
  DATA_PROCESSING: () => dataProcessingResult,
  EMAIL: (task) => itemsResult("EMAIL", "email", "sent", "sent", (r) => recipientsView(task, r)),
  IMAGE_PROCESSING: () => itemsResult("IMAGE_PROCESSING", "image", "processed", "processed"),
};

function resultView(task) {
  const result = task.result;
  if (result == null) return null;
  let body;
  if (!isPlainObject(result)) body = [valueView(result)];
  else body = (RESULT_VIEWS[task.type]?.(task) || ((r) => [kvTable(r)]))(result);
  body = body.filter(Boolean);
  if (!body.length) return null;
  return section("Result", "detail-result", ...body, locationView(task));
}

/** Some items failed in a SUCCESS, or all of them in a FAILED: said in words at the top. */
function partialView(task) {
  const failed = Number(task.failed_items) || 0;
  if (!failed) return null;
  const unit = unitOf(task.type) || "items";
  const total = Number(task.units_total) || 0;
  const text = task.status === "FAILED"
    ? `All ${formatUnits(failed, unit)} failed: nothing was done. The result below lists why.`
    : `${formatUnits(failed, unit)}${total ? ` of ${formatNumber(total)}` : ""} failed; the others succeeded. The result below lists the failures.`;
  return el("p", { class: "warning-box", role: "note", testid: "partial-failure" }, text);
}

function eventsView(events, unit) {
  const list = (events || []).slice().sort((a, b) => (toDate(a.time)?.getTime() ?? 0) - (toDate(b.time)?.getTime() ?? 0));
  return section(
    "Event log",
    "detail-events",
    list.length
      ? el(
          "ol",
          { class: "events" },
          list.map((e) =>
            el(
              "li",
              { class: `event event-${String(e.level || "INFO").toLowerCase()}`, testid: "event" },
              el("time", { datetime: e.time }, formatDateTime(e.time)),
              el("span", { class: `level level-${String(e.level || "INFO").toLowerCase()}` }, e.level || "INFO"),
              el("span", { class: "event-message" }, eventText(e.message, unit)),
            ),
          ),
        )
      : el("p", { class: "muted" }, "No events yet."),
  );
}

function timingsView(task) {
  const rows = [
    ["Created", task.created_at],
    ["Scheduled for", task.run_at],
    ["Started", task.started_at],
    ["Finished", task.finished_at],
    ["Updated", task.updated_at],
  ].filter(([, v]) => v);
  return section(
    `Timings (${zoneName()})`,
    "detail-timings",
    el(
      "table",
      { class: "kv" },
      el(
        "tbody",
        null,
        rows.map(([label, value]) =>
          el("tr", null, el("th", { scope: "row" }, label), el("td", null, formatDateTime(value), el("span", { class: "muted" }, ` (${relativeTime(value)})`))),
        ),
        el("tr", null, el("th", { scope: "row" }, "Duration"), el("td", null, formatDuration(task.duration_seconds))),
        el("tr", null, el("th", { scope: "row" }, "Attempts"), el("td", { testid: "detail-attempts" }, `${task.attempts ?? 0} of ${task.max_attempts ?? "?"}`)),
        el("tr", null, el("th", { scope: "row" }, "Priority"), el("td", null, task.priority || "normal")),
      ),
    ),
  );
}

// ---------------------------------------------------------------- the panel

export function createDetailPanel({ onChanged, onClosed }) {
  const panel = document.getElementById("detail-panel");
  const body = document.getElementById("detail-body");
  const title = document.getElementById("detail-title");
  const closeButton = document.getElementById("detail-close");

  let task = null;
  let currentId = null;
  let opener = null;
  let generation = 0;

  function signature(t) {
    return t ? JSON.stringify([t.status, t.progress, t.units_done, t.updated_at, t.attempts, t.cancel_requested, (t.events || []).length]) : "";
  }

  function actions(t) {
    const active = ACTIVE_STATUSES.has(t.status);
    const retryable = RETRYABLE.has(t.status);
    return el(
      "div",
      { class: "detail-actions" },
      el("button", {
        type: "button", class: "btn btn-danger-outline", testid: "cancel-button", disabled: !active || t.cancel_requested,
        onclick: () => act("cancel"),
      }, t.cancel_requested && active ? "Cancelling…" : "Cancel"),
      el("button", {
        type: "button", class: "btn btn-secondary", testid: "resume-button", disabled: !retryable,
        title: "Retry from the last checkpoint", onclick: () => act("resume"),
      }, "Resume"),
      el("button", {
        type: "button", class: "btn btn-secondary", testid: "restart-button", disabled: !retryable,
        title: "Retry from the beginning", onclick: () => act("restart"),
      }, "Restart"),
    );
  }

  function render() {
    clear(body);
    if (!task) return;
    const t = task;
    title.textContent = `${t.type} task`;
    panel.dataset.taskId = t.id;
    panel.dataset.status = t.status;
    const errorNode = t.error
      ? section(
          "Error",
          "detail-error",
          el("div", { class: "error-box", role: "note" }, el("strong", null, t.error.type || "Error"), el("p", null, t.error.message || formatValue(t.error))),
        )
      : null;
    const parts = [
      el(
        "div",
        { class: "detail-head" },
        el(
          "div",
          { class: "detail-status", testid: "detail-status" },
          statusBadge(t.status),
          t.cancel_requested && ACTIVE_STATUSES.has(t.status) ? el("span", { class: "chip" }, "cancel requested") : null,
          failedItemsBadge(t),
        ),
        el("p", { class: "detail-id" }, "ID ", el("code", { testid: "detail-id", class: "mono" }, t.id)),
        progressBar(t, "Task progress"),
      ),
      actions(t),
      partialView(t),
      errorNode,
      resultView(t),
      downloadsView(t.downloads),
      section("Parameters", "detail-params", isPlainObject(t.params) && Object.keys(t.params).length ? kvTable(t.params) : el("p", { class: "muted" }, "No parameters.")),
      timingsView(t),
      section("Timeline", "detail-timeline", timelineView(t)),
      eventsView(t.events, unitOf(t.type)),
    ];
    body.append(...parts.filter(Boolean));
  }

  function renderLoading() {
    clear(body).append(el("div", { class: "state state-loading", testid: "detail-loading" }, el("span", { class: "spinner", "aria-hidden": "true" }), "Loading task…"));
  }

  function renderError(err) {
    clear(body).append(
      el(
        "div",
        { class: "state state-error", role: "alert", testid: "detail-load-error" },
        el("p", null, err instanceof ApiError && err.status === 404 ? "This task does not exist, or it has expired." : `Could not load the task: ${err.message}`),
        el("button", { type: "button", class: "btn btn-secondary btn-small", onclick: () => open(currentId) }, "Try again"),
      ),
    );
  }

  async function fetchTask(id) {
    const mine = ++generation;
    const data = await api.getTask(id);
    return mine === generation && currentId === id ? data : null;
  }

  async function open(id, known = null, { fromHistory = false } = {}) {
    if (!id) return;
    if (!panel.hidden && currentId === id && task) {
      title.focus();
      return;
    }
    opener = document.activeElement && document.activeElement !== document.body ? document.activeElement : opener;
    currentId = id;
    task = null;
    panel.hidden = false;
    document.body.classList.add("detail-open");
    if (!fromHistory) navigate({ task: id });
    title.textContent = `Task ${shortId(id)}`;
    if (known && known.events) {
      task = known;
      render();
    } else {
      renderLoading();
    }
    title.focus();
    try {
      const data = await fetchTask(id);
      if (!data) return;
      task = data;
      render();
      onChanged?.(task, { quiet: true });
    } catch (err) {
      if (currentId === id) renderError(err);
    }
  }

  function close({ fromHistory = false } = {}) {
    if (panel.hidden) return;
    const closedId = currentId;
    panel.hidden = true;
    document.body.classList.remove("detail-open");
    currentId = null;
    task = null;
    generation += 1;
    if (!fromHistory) navigate({ task: "" });
    onClosed?.();
    if (opener && document.contains(opener) && opener !== document.body) opener.focus();
    else {
      // The row that opened the panel may have been redrawn since; focus its successor.
      const id = opener?.dataset?.taskId || closedId;
      const row = id && document.querySelector(`.task-open[data-task-id="${CSS.escape(id)}"]`);
      (row || document.getElementById("main")).focus();
    }
    opener = null;
  }

  /** Polled while the task is active (`force`: a pushed change says it changed, whatever its
   * status); resolves true when something changed. */
  async function refresh({ force = false } = {}) {
    if (panel.hidden || !currentId || !task || (!force && !ACTIVE_STATUSES.has(task.status))) return false;
    const id = currentId;
    const data = await fetchTask(id);
    if (!data) return false;
    const changed = signature(data) !== signature(task);
    if (changed) {
      const hadFocus = body.contains(document.activeElement);
      const focused = hadFocus ? document.activeElement.dataset?.testid : null;
      const was = task.status;
      task = data;
      render();
      if (hadFocus) {
        const again = focused && body.querySelector(`[data-testid="${CSS.escape(focused)}"]`);
        (again && !again.disabled ? again : title).focus();
      }
      // The list announces status changes of its rows; speak only for tasks it does not show.
      const listed = onChanged?.(task, { quiet: true });
      if (was !== data.status && !listed) announce(`Task ${shortId(id)} is now ${data.status.toLowerCase()}`);
    }
    return changed;
  }

  const WORDS = {
    cancel: {
      title: "Cancel this task?",
      message: (t) => t.status === "RUNNING"
        ? "The task stops at its next checkpoint. Work done so far is kept."
        : "The task has not started yet; it will not run.",
      confirm: "Cancel task",
      danger: true,
    },
    resume: {
      title: "Resume this task?",
      message: () => "It is queued again and continues from its last checkpoint.",
      confirm: "Resume",
    },
    restart: {
      title: "Restart this task?",
      message: () => "It is queued again and starts over from the beginning; earlier progress is discarded.",
      confirm: "Restart",
      danger: true,
    },
  };

  async function act(kind) {
    if (!task) return;
    const t = task;
    const words = WORDS[kind];
    const ok = await confirmDialog({
      title: words.title,
      message: `${t.type} ${shortId(t.id)}: ${words.message(t)}`,
      confirmLabel: words.confirm,
      danger: Boolean(words.danger),
    });
    if (!ok || currentId !== t.id) return;
    const buttons = body.querySelectorAll(".detail-actions button");
    for (const b of buttons) b.disabled = true;
    try {
      const answer = kind === "cancel" ? await api.cancelTask(t.id) : await api.retryTask(t.id, kind === "restart");
      const label = kind === "cancel"
        ? answer?.status === "CANCELLED" ? "Task cancelled." : "Cancel requested; the task stops at its next checkpoint."
        : kind === "restart" ? "Task restarted." : "Task resumed.";
      toast(label, "success");
      announce(label);
      if (answer && answer.id === t.id) onChanged?.(answer, { quiet: false });
    } catch (err) {
      toast(err instanceof ApiError && err.status === 409 ? `Not possible now: ${err.message}` : err.message || "The action failed.", "error");
    }
    try {
      const data = await fetchTask(t.id);
      if (data) {
        task = data;
        render();
        onChanged?.(task, { quiet: false });
      }
    } catch {
      render();
    }
    title.focus();
  }

  closeButton.addEventListener("click", () => close());
  onNavigate((state) => {
    if (state.task && state.task !== currentId) open(state.task, null, { fromHistory: true });
    else if (!state.task) close({ fromHistory: true });
  });
  document.addEventListener("timezonechange", () => render());
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !document.querySelector("dialog[open]")) {
      event.preventDefault();
      close();
    }
  });

  return {
    open,
    close,
    refresh,
    isActive: () => !panel.hidden && Boolean(task) && ACTIVE_STATUSES.has(task.status),
    redraw: () => render(),
    currentId: () => currentId,
  };
}

