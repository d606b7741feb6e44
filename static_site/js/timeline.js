// A task's timeline, read from its event log: the wait in the queue, then each attempt with
// its span, the progress it made and how it ended (retried, handed over, finished, failed,
// cancelled), drawn as bars on one time axis, as the Step Functions and Temporal consoles do.

import { CONTRACT } from "./contract.js";
import { el, formatClock, formatDateTime, formatDuration, formatProgress, toDate } from "./util.js";

const KINDS = Object.entries(CONTRACT.events).map(([kind, pattern]) => [kind, new RegExp(pattern)]);
const ENDINGS = {
  retrying: "failed, retried",
  finished: "finished",
  failed: "failed",
  cancelled: "cancelled",
};

/** {kind, match} of an event message; kind "note" for a line of no declared kind. */
export function kindOf(message) {
  for (const [kind, pattern] of KINDS) {
    const match = pattern.exec(message);
    if (match) return { kind, match };
  }
  return { kind: "note", match: null };
}

/**
 * An event message as the page shows it: a progress line's counts in the task type's unit
 * ("50% done (1.2 MB / 2.4 MB)"), any other line as it is.
 */
export function eventText(message, unit) {
  const { kind, match } = kindOf(String(message));
  if (kind !== "progress" || !unit) return message;
  return `${match[1]}% done (${formatProgress(Number(match[2]), Number(match[3]), unit)})`;
}

/**
 * Segments of the timeline, oldest first: {label, kind, start, end, outcome, marks: [events]}.
 * A segment "queued" runs from a submit or a retry request to the next start; an "attempt"
 * from its start to its end (or to now while it runs).
 */
export function segmentsOf(events, { status, now = new Date() } = {}) {
  const list = (events || [])
    .map((e) => ({ ...e, date: toDate(e.time), ...kindOf(String(e.message)) }))
    .filter((e) => e.date)
    .sort((a, b) => a.date - b.date);
  const segments = [];
  let current = null;
  const close = (end, outcome) => {
    if (!current) return;
    current.end = end;
    current.outcome = outcome || current.outcome;
    segments.push(current);
    current = null;
  };
  for (const e of list) {
    if (e.kind === "submitted" || e.kind === "retry_requested") {
      close(e.date, current?.kind === "attempt" ? "stopped" : null);
      current = { kind: "queued", label: e.kind === "submitted" ? "Queued" : `Queued again (${e.match[1]})`, start: e.date, marks: [] };
    } else if (e.kind === "started") {
      close(e.date, current?.kind === "attempt" ? "stopped" : null);
      current = { kind: "attempt", label: `Attempt ${e.match[1]} of ${e.match[2]}`, start: e.date, marks: [] };
    } else if (e.kind === "retrying") {
      current?.marks.push(e);
      close(e.date, ENDINGS.retrying);
      current = { kind: "queued", label: `Waiting ${e.match[3]} s to retry`, start: e.date, marks: [] };
    } else if (ENDINGS[e.kind]) {
      current?.marks.push(e);
      if (!current) current = { kind: "queued", label: "Queued", start: e.date, marks: [] };
      close(e.date, ENDINGS[e.kind]);
    } else if (current) {
      current.marks.push(e);
    } else {
      current = { kind: "queued", label: "Queued", start: e.date, marks: [e] };
    }
  }
  if (current) {
    const open = status === "PENDING" || status === "RUNNING";
    current.end = open ? now : current.marks.at(-1)?.date || current.start;
    current.outcome = open ? (current.kind === "attempt" ? "running" : "waiting") : current.outcome;
    segments.push(current);
  }
  return segments;
}

/** The timeline section's content: one row per segment with a bar on the task's time axis. */
export function timelineView(task) {
  const segments = segmentsOf(task.events, { status: task.status });
  if (!segments.length) return el("p", { class: "muted" }, "No events yet.");
  const first = segments[0].start.getTime();
  const last = Math.max(...segments.map((s) => s.end.getTime()));
  const span = Math.max(1, last - first);
  return el(
    "ol",
    { class: "timeline", testid: "timeline" },
    segments.map((s) => {
      const seconds = (s.end - s.start) / 1000;
      const left = ((s.start - first) / span) * 100;
      const width = Math.max(0.8, ((s.end - s.start) / span) * 100);
      const progress = s.marks.filter((m) => m.kind === "progress").map((m) => `${m.match[1]}%`);
      const notes = s.marks.filter((m) => m.kind === "took_over" || m.kind === "note" || m.kind === "cancel_requested");
      return el(
        "li",
        { class: `timeline-row timeline-${s.kind}`, testid: "timeline-row", dataset: { kind: s.kind, outcome: s.outcome || "" } },
        el(
          "div",
          { class: "timeline-head" },
          el("span", { class: "timeline-label", testid: "timeline-label" }, s.label),
          el(
            "span",
            { class: "timeline-when muted" },
            el("time", { datetime: s.start.toISOString(), title: formatDateTime(s.start) }, formatClock(s.start)),
            ` · ${formatDuration(seconds)}`,
            s.outcome ? ` · ${s.outcome}` : "",
          ),
        ),
        el(
          "div",
          { class: "timeline-track", "aria-hidden": "true" },
          el("span", { class: `timeline-bar timeline-bar-${s.kind} outcome-${(s.outcome || "").split(",")[0].replace(/\s+/g, "-")}`, style: { left: `${left}%`, width: `${Math.min(width, 100 - left)}%` } }),
        ),
        progress.length ? el("p", { class: "timeline-marks small muted" }, `Progress: ${progress.join(" → ")}`) : null,
        notes.map((n) => el("p", { class: "timeline-marks small" }, n.message)),
      );
    }),
  );
}
