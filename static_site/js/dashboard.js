// The overview: tasks by current status (tiles that filter the list) and type, queue and
// dead-letter depths, runs finished per minute over the last hour as an inline SVG chart, and
// the dead-letter list with its Redrive action. Both parts hide themselves when the API
// answers 404 (not deployed yet).

import { api, ApiError } from "./api.js";
import {
  el, svg, clear, formatNumber, formatDateTime, formatClock, relativeTime, shortId, toast, announce,
  confirmDialog, STATUSES, humanize, toDate, statusBadge,
} from "./util.js";

const CHART_MINUTES = 60;
// Delays of the follow-up reads of the counts after a change: past the local and the AWS
// batching windows of the counters (1 s and 10 s).
const COUNTS_SETTLE_MS = [3_000, 12_000];

/** The last hour's finishes per minute, one point per minute up to now (missing ones 0). */
function throughputOf(stats) {
  const byMinute = new Map();
  for (const point of stats.throughput) {
    const date = toDate(point.minute);
    if (date) byMinute.set(Math.floor(date.getTime() / 60000), point);
  }
  const now = Math.floor(Date.now() / 60000);
  const points = [];
  for (let m = now - CHART_MINUTES + 1; m <= now; m += 1) {
    const point = byMinute.get(m);
    points.push({
      minute: new Date(m * 60000),
      succeeded: point?.succeeded ?? 0,
      failed: point?.failed ?? 0,
      cancelled: point?.cancelled ?? 0,
    });
  }
  return points;
}

function chart(points) {
  const width = 600;
  const height = 120;
  const pad = { top: 8, bottom: 18, left: 4, right: 4 };
  const max = Math.max(1, ...points.map((p) => p.succeeded + p.failed + p.cancelled));
  const slot = (width - pad.left - pad.right) / points.length;
  const barWidth = Math.max(1, slot - 2);
  const plotHeight = height - pad.top - pad.bottom;
  const totalOk = points.reduce((s, p) => s + p.succeeded, 0);
  const totalFailed = points.reduce((s, p) => s + p.failed, 0);
  const totalCancelled = points.reduce((s, p) => s + p.cancelled, 0);
  const busiest = Math.max(0, ...points.map((p) => p.succeeded + p.failed + p.cancelled));
  const label = `Runs finished over the last hour: ${formatNumber(totalOk)} succeeded, ${formatNumber(totalFailed)} failed, ${formatNumber(totalCancelled)} cancelled; busiest minute ${formatNumber(busiest)}.`;
  const bars = points.map((p, i) => {
    const x = pad.left + i * slot + 1;
    const okHeight = (p.succeeded / max) * plotHeight;
    const failHeight = (p.failed / max) * plotHeight;
    const cancelHeight = (p.cancelled / max) * plotHeight;
    const base = height - pad.bottom;
    const time = formatClock(p.minute, { seconds: false });
    return svg(
      "g",
      { class: "bar" },
      svg("title", null, `${time}: ${p.succeeded} succeeded, ${p.failed} failed, ${p.cancelled} cancelled`),
      svg("rect", { x: x.toFixed(1), y: (base - okHeight).toFixed(1), width: barWidth.toFixed(1), height: okHeight.toFixed(1), class: "bar-ok" }),
      svg("rect", { x: x.toFixed(1), y: (base - okHeight - failHeight).toFixed(1), width: barWidth.toFixed(1), height: failHeight.toFixed(1), class: "bar-failed" }),
      svg("rect", { x: x.toFixed(1), y: (base - okHeight - failHeight - cancelHeight).toFixed(1), width: barWidth.toFixed(1), height: cancelHeight.toFixed(1), class: "bar-cancelled" }),
      // An invisible full-height target so the tooltip works on empty minutes too.
      svg("rect", { x: x.toFixed(1), y: pad.top, width: barWidth.toFixed(1), height: plotHeight, class: "bar-hit" }),
    );
  });
  const axis = [0, 30, 59].map((i) =>
    svg(
      "text",
      { x: (pad.left + i * slot + slot / 2).toFixed(1), y: height - 4, class: "axis-label", "text-anchor": i === 0 ? "start" : i === 59 ? "end" : "middle" },
      i === 59 ? "now" : `-${CHART_MINUTES - i} min`,
    ),
  );
  return el(
    "figure",
    { class: "chart" },
    svg(
      "svg",
      { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label, testid: "throughput-chart", preserveAspectRatio: "none", class: "chart-svg" },
      svg("line", { x1: pad.left, x2: width - pad.right, y1: height - pad.bottom, y2: height - pad.bottom, class: "axis" }),
      bars,
      axis,
    ),
    el(
      "figcaption",
      { class: "chart-caption" },
      el("span", { class: "legend legend-ok" }, `${formatNumber(totalOk)} succeeded`),
      el("span", { class: "legend legend-failed" }, `${formatNumber(totalFailed)} failed`),
      el("span", { class: "legend legend-cancelled" }, `${formatNumber(totalCancelled)} cancelled`),
      el("span", { class: "muted" }, "runs per minute, last 60 minutes"),
    ),
  );
}

export function createDashboard({ onOpenTask, onFilterStatus, currentStatus } = {}) {
  const section = document.getElementById("dashboard");
  const host = document.getElementById("dashboard-body");
  const refreshButton = document.getElementById("dashboard-refresh");
  const updated = document.getElementById("dashboard-updated");
  const dlqSection = document.getElementById("dead-letters");
  const dlqHost = document.getElementById("dead-letters-body");
  const redriveButton = document.getElementById("redrive-button");
  const dlqRefresh = document.getElementById("dead-letters-refresh");

  let statsAvailable = true;
  let dlqAvailable = true;
  let loadingStats = false;
  let lastLoad = 0;
  let followUps = [];
  let lastStats = null;

  /**
   * The counts follow the tasks through the table's stream, in batches gathered for up to
   * 10 s on AWS (1 s locally): after a change, look again once a batch has surely been counted.
   */
  function followUp() {
    followUps.forEach(clearTimeout);
    followUps = COUNTS_SETTLE_MS.map((delay) =>
      setTimeout(() => {
        if (!document.hidden) loadStats();
      }, delay),
    );
  }

  function renderStats(stats) {
    lastStats = stats;
    clear(host);
    const byStatus = stats.counts.by_status;
    const byType = stats.counts.by_type;
    const queues = Object.entries(stats.queues).map(([name, q]) => ({ name, ...q }));
    const points = throughputOf(stats);
    const active = currentStatus?.() || "";

    const names = [...STATUSES, ...Object.keys(byStatus).filter((k) => !STATUSES.includes(k))];
    host.append(
      el("h3", { class: "visually-hidden" }, "Tasks by current status"),
      el(
        "ul",
        { class: "stat-cards", "aria-label": "Tasks by current status; choose one to list only those" },
        names.map((name) =>
          el(
            "li",
            null,
            el(
              "button",
              {
                type: "button",
                class: `stat-card stat-${name.toLowerCase()}`,
                testid: `stat-status-${name}`,
                dataset: { count: byStatus[name] ?? 0 },
                "aria-pressed": active === name ? "true" : "false",
                title: active === name ? "Show tasks of every status" : `List only ${name.toLowerCase()} tasks`,
                onclick: () => onFilterStatus?.(active === name ? "" : name),
              },
              el("span", { class: "stat-value" }, formatNumber(byStatus[name] ?? 0)),
              el("span", { class: "stat-label" }, humanize(name.toLowerCase())),
            ),
          ),
        ),
      ),
      el("p", { class: "muted small stat-note" }, "Each task counts once, by its current status."),
    );

    const panels = [];
    if (Object.keys(byType).length) {
      panels.push(
        el(
          "div",
          { class: "dash-panel" },
          el("h3", null, "By type"),
          el(
            "table",
            { class: "grid-table compact", testid: "stats-by-type" },
            el("thead", null, el("tr", null, el("th", { scope: "col" }, "Type"), el("th", { scope: "col", class: "num" }, "Tasks"))),
            el(
              "tbody",
              null,
              Object.entries(byType).map(([name, count]) =>
                el("tr", { testid: `stat-type-${name}` }, el("td", null, name), el("td", { class: "num" }, formatNumber(count))),
              ),
            ),
          ),
        ),
      );
    }
    if (queues.length) {
      panels.push(
        el(
          "div",
          { class: "dash-panel" },
          el("h3", null, "Queues"),
          el(
            "div",
            { class: "table-scroll" },
            el(
              "table",
              { class: "grid-table compact", testid: "stats-queues" },
              el(
                "thead",
                null,
                el("tr", null, el("th", { scope: "col" }, "Queue"), el("th", { scope: "col", class: "num" }, "Waiting"), el("th", { scope: "col", class: "num" }, "In flight"), el("th", { scope: "col", class: "num" }, "Delayed")),
              ),
              el(
                "tbody",
                null,
                queues.map((q) =>
                  el(
                    "tr",
                    { testid: "queue-row", dataset: { queue: q.name }, class: q.dead_letter && q.visible > 0 ? "row-alert" : null },
                    el("td", null, q.name, q.dead_letter ? el("span", { class: "chip chip-dlq" }, "DLQ") : null),
                    el("td", { class: "num" }, formatNumber(q.visible)),
                    el("td", { class: "num" }, formatNumber(q.in_flight)),
                    el("td", { class: "num" }, formatNumber(q.delayed)),
                  ),
                ),
              ),
            ),
          ),
        ),
      );
    }
    panels.push(
      el(
        "div",
        { class: "dash-panel dash-chart" },
        el("h3", null, "Runs finished per minute"),
        chart(points),
        el("p", { class: "muted small" }, "Counts runs, not tasks: a task retried after it finished counts once per finish."),
      ),
    );
    host.append(el("div", { class: "dash-panels" }, panels));
  }

  async function loadStats() {
    if (!statsAvailable || loadingStats) return;
    loadingStats = true;
    lastLoad = Date.now();
    section.setAttribute("aria-busy", "true");
    if (!host.children.length) {
      host.append(el("div", { class: "state state-loading" }, el("span", { class: "spinner", "aria-hidden": "true" }), "Loading statistics…"));
    }
    try {
      const stats = await api.stats();
      section.hidden = false;
      renderStats(stats);
      updated.textContent = `Updated ${formatClock(new Date())}`;
    } catch (err) {
      if (err instanceof ApiError && (err.status === 404 || err.status === 501)) {
        statsAvailable = false;
        section.hidden = true;
      } else {
        clear(host).append(
          el("div", { class: "state state-error", testid: "dashboard-error" }, el("p", null, `Could not load statistics: ${err.message}`)),
        );
      }
    } finally {
      loadingStats = false;
      section.removeAttribute("aria-busy");
    }
  }

  // ---------------------------------------------------------------- dead letters

  function renderDeadLetters(items) {
    clear(dlqHost);
    redriveButton.disabled = items.length === 0;
    if (!items.length) {
      dlqHost.append(el("p", { class: "state state-empty", testid: "dead-letters-empty" }, "No dead letters. Every message was processed."));
      return;
    }
    dlqHost.append(
      el(
        "div",
        { class: "table-scroll" },
        el(
          "table",
          { class: "grid-table" },
          el(
            "thead",
            null,
            el("tr", null, ["Task", "Queue", "Dead since", "Receives", "Reason", "Task status"].map((h) => el("th", { scope: "col" }, h))),
          ),
          el(
            "tbody",
            null,
            items.map((m) =>
              el(
                "tr",
                { testid: "dead-letter-row", dataset: { id: m.id, taskId: m.task_id } },
                el(
                  "td",
                  null,
                  onOpenTask
                    ? el("button", { type: "button", class: "link-button mono", onclick: () => onOpenTask(m.task_id) }, shortId(m.task_id))
                    : el("span", { class: "mono" }, shortId(m.task_id)),
                  el("span", { class: "muted small" }, ` ${m.task_type}`),
                ),
                el("td", null, m.queue),
                el("td", { title: formatDateTime(m.dead_at) }, relativeTime(m.dead_at)),
                el("td", { class: "num" }, formatNumber(m.receive_count)),
                el("td", { class: "dlq-body" }, el("span", { title: m.reason }, m.reason.length > 160 ? `${m.reason.slice(0, 160)}…` : m.reason || "—")),
                el("td", null, m.task_status ? statusBadge(m.task_status) : "—"),
              ),
            ),
          ),
        ),
      ),
    );
  }

  async function loadDeadLetters() {
    if (!dlqAvailable) return;
    try {
      const data = await api.deadLetters();
      dlqSection.hidden = false;
      renderDeadLetters(data.items);
    } catch (err) {
      if (err instanceof ApiError && (err.status === 404 || err.status === 501)) {
        dlqAvailable = false;
        dlqSection.hidden = true;
      } else {
        dlqSection.hidden = false;
        clear(dlqHost).append(el("div", { class: "state state-error" }, el("p", null, `Could not load dead letters: ${err.message}`)));
      }
    }
  }

  async function redrive() {
    const ok = await confirmDialog({
      title: "Redrive dead letters?",
      message: "Every message in the dead-letter queues is sent back to its task queue to be processed again.",
      confirmLabel: "Redrive",
    });
    if (!ok) return;
    redriveButton.disabled = true;
    try {
      const answer = await api.redrive();
      const count = answer.redriven;
      const message = `Redrove ${formatNumber(count)} task${count === 1 ? "" : "s"}${answer.skipped ? `; ${formatNumber(answer.skipped)} were handled already` : ""}.`;
      toast(message, "success");
      announce(message);
    } catch (err) {
      toast(`Redrive failed: ${err.message}`, "error");
    }
    await Promise.all([loadDeadLetters(), loadStats()]);
  }

  refreshButton.addEventListener("click", () => {
    loadStats();
    loadDeadLetters();
  });
  dlqRefresh.addEventListener("click", loadDeadLetters);
  redriveButton.addEventListener("click", redrive);

  document.addEventListener("timezonechange", () => {
    if (lastStats) renderStats(lastStats);
  });

  return {
    /** Redraws the tiles (which one is pressed follows the list's status filter). */
    redraw: () => {
      if (lastStats) renderStats(lastStats);
    },
    load() {
      followUp();
      return Promise.all([loadStats(), loadDeadLetters()]);
    },
    /** After a change in the list; at most every 10 s, and again once the counts settled. */
    maybeRefresh() {
      if (document.hidden) return;
      followUp();
      if (Date.now() - lastLoad >= 10_000) {
        loadStats();
        loadDeadLetters();
      }
    },
  };
}
