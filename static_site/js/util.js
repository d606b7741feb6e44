// DOM building, formatting and small helpers shared by every module.
// Every piece of data reaches the page through text nodes or attributes: this module never
// parses HTML, so a value such as `<img src=x onerror=alert(1)>` always shows as text.

const SVG_NS = "http://www.w3.org/2000/svg";

/** A text node; `null`/`undefined` become an empty string. */
export function text(value) {
  return document.createTextNode(value == null ? "" : String(value));
}

function applyAttrs(node, attrs) {
  if (!attrs) return;
  for (const [name, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (name === "class" || name === "className") {
      node.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    } else if (name === "testid") {
      node.setAttribute("data-testid", value);
    } else if (name === "dataset") {
      for (const [key, v] of Object.entries(value)) if (v != null) node.dataset[key] = String(v);
    } else if (name === "style" && typeof value === "object") {
      for (const [prop, v] of Object.entries(value)) node.style.setProperty(prop, String(v));
    } else if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "text") {
      node.textContent = String(value);
    } else if (["value", "checked", "disabled", "selected", "multiple", "hidden"].includes(name)
               && name in node) {
      node[name] = value;
    } else if (name === "href" || name === "src") {
      const safe = safeUrl(value);
      if (safe) node.setAttribute(name, safe);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
}

function append(node, children) {
  for (const child of children) {
    if (child == null || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else if (child instanceof Node) node.appendChild(child);
    else node.appendChild(text(child));
  }
}

/** el("button", {class: "btn", onclick}, "Label", childNode, [more]) */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  applyAttrs(node, attrs);
  append(node, children);
  return node;
}

/** The same for SVG elements (createElementNS). */
export function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value == null) continue;
    if (name === "testid") node.setAttribute("data-testid", value);
    else if (name === "class") node.setAttribute("class", value);
    else node.setAttribute(name, String(value));
  }
  append(node, children);
  return node;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

/** Only http(s), blob and relative URLs may become an href or src. */
export function safeUrl(value) {
  if (value == null) return null;
  const raw = String(value).trim();
  try {
    const url = new URL(raw, window.location.href);
    if (["http:", "https:", "blob:"].includes(url.protocol)) return url.href;
  } catch {
    /* not a URL */
  }
  return null;
}

export function uuid() {
  if (window.crypto?.randomUUID) return window.crypto.randomUUID();
  const bytes = window.crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// ------------------------------------------------------------------ formatting

export function toDate(value) {
  if (value == null || value === "") return null;
  const date = value instanceof Date ? value : new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

const RELATIVE = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const UNITS = [
  ["year", 365 * 24 * 3600],
  ["month", 30 * 24 * 3600],
  ["week", 7 * 24 * 3600],
  ["day", 24 * 3600],
  ["hour", 3600],
  ["minute", 60],
  ["second", 1],
];

/** "3 minutes ago", "in 2 hours", "now". */
export function relativeTime(value, now = Date.now()) {
  const date = toDate(value);
  if (!date) return "—";
  const seconds = Math.round((date.getTime() - now) / 1000);
  if (Math.abs(seconds) < 5) return "just now";
  for (const [unit, size] of UNITS) {
    if (Math.abs(seconds) >= size || unit === "second") {
      // Rounded: a task due in 1 h 59 min "starts in 2 hours", not "in 1 hour".
      return RELATIVE.format(Math.round(seconds / size), unit);
    }
  }
  return "—";
}

// ------------------------------------------------------------------ time zone: local or UTC

const ZONE_KEY = "taskqueue.timeZone";
let zone = "local";
try {
  zone = localStorage.getItem(ZONE_KEY) === "UTC" ? "UTC" : "local";
} catch {
  /* storage may be unavailable */
}
const formatters = new Map();

/** "local" or "UTC": the zone every time on the page is shown in. */
export function timeZone() {
  return zone;
}

/** The name of the zone times are shown in: "UTC" or the browser's, e.g. "Europe/Oslo". */
export function zoneName(which = zone) {
  return which === "UTC" ? "UTC" : Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
}

/** Switches the zone; listeners of the document's "timezonechange" event redraw. */
export function setTimeZone(next) {
  zone = next === "UTC" ? "UTC" : "local";
  try {
    localStorage.setItem(ZONE_KEY, zone);
  } catch {
    /* storage may be unavailable */
  }
  document.dispatchEvent(new CustomEvent("timezonechange", { detail: zone }));
}

function formatter(options) {
  const key = `${zone}|${JSON.stringify(options)}`;
  if (!formatters.has(key)) {
    formatters.set(key, new Intl.DateTimeFormat(undefined, { ...options, timeZone: zone === "UTC" ? "UTC" : undefined }));
  }
  return formatters.get(key);
}

/** Date and time with the zone's short name ("UTC", "GMT+2"), in the chosen zone. */
export function formatDateTime(value) {
  const date = toDate(value);
  return date ? formatter({ dateStyle: "medium", timeStyle: "long" }).format(date) : "—";
}

/** The time of day with seconds ("14:03:07"), in the chosen zone. */
export function formatClock(value, { seconds = true } = {}) {
  const date = toDate(value);
  if (!date) return "—";
  return formatter({ hour: "2-digit", minute: "2-digit", second: seconds ? "2-digit" : undefined }).format(date);
}

/** The wall-clock parts of `date` in the chosen zone, as a datetime-local input holds them. */
export function toInputValue(date) {
  const d = zone === "UTC" ? new Date(date.getTime()) : new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}

/** A datetime-local input's "YYYY-MM-DDTHH:MM" read in the chosen zone; null if invalid. */
export function fromInputValue(text) {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(text || "")) return null;
  const date = new Date(zone === "UTC" ? `${text}Z` : text);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** 0.4 -> "0.4 s", 75 -> "1 min 15 s", 7300 -> "2 h 1 min". */
export function formatDuration(seconds) {
  if (seconds == null || Number.isNaN(Number(seconds))) return "—";
  const s = Number(seconds);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const total = Math.round(s);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = total % 60;
  if (h) return `${h} h ${m} min`;
  return sec ? `${m} min ${sec} s` : `${m} min`;
}

const NUMBER = new Intl.NumberFormat(undefined, { maximumFractionDigits: 4 });
const COMPACT = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });

export function formatNumber(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return String(value ?? "—");
  return NUMBER.format(value);
}

/** 1234 -> "1,234"; from 100,000 on, compact: 47351064 -> "47.4M" (the exact value in a title). */
export function formatCount(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return String(value ?? "—");
  return Math.abs(value) >= 100_000 ? COMPACT.format(value) : NUMBER.format(value);
}

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let size = bytes;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return `${unit ? size.toFixed(1) : size} ${units[unit]}`;
}

// ------------------------------------------------------------------ units of progress

const unitsByType = new Map();

/** Remembers each type's progress_unit (GET /task-types) for unitOf. */
export function setTaskTypes(types) {
  for (const t of types) unitsByType.set(t.name, t.progress_unit);
}

/** What units_done / units_total of a task of this type count; "" while unknown. */
export function unitOf(typeName) {
  return unitsByType.get(typeName) || "";
}

function singular(unit) {
  return unit.endsWith("s") ? unit.slice(0, -1) : unit;
}

/** A count in its unit: bytes as "4.8 MB", anything else as "12 recipients" / "1 image". */
export function formatUnits(count, unit) {
  if (unit === "bytes") return formatBytes(count);
  const number = formatCount(count);
  if (!unit) return number;
  return `${number} ${count === 1 ? singular(unit) : unit}`;
}

/** "1.2 MB / 4.8 MB", "3 / 12 recipients": done and total, the unit said once. */
export function formatProgress(done, total, unit) {
  if (unit === "bytes") return `${formatBytes(done)} / ${formatBytes(total)}`;
  return `${formatCount(done)} / ${formatUnits(total, unit)}`;
}

/** A scalar as display text; objects as compact JSON. */
export function formatValue(value) {
  if (value == null) return "—";
  if (typeof value === "number") return formatNumber(value);
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

export function shortId(id) {
  return id ? String(id).slice(0, 8) : "";
}

export function humanize(name) {
  const s = String(name).replace(/_/g, " ").trim();
  return s ? s.charAt(0).toUpperCase() + s.slice(1) : s;
}

export function isPlainObject(value) {
  return value != null && typeof value === "object" && !Array.isArray(value);
}

export const ACTIVE_STATUSES = new Set(["PENDING", "RUNNING"]);
export const STATUSES = ["PENDING", "RUNNING", "SUCCESS", "FAILED", "CANCELLED"];

// ------------------------------------------------------------------ shared widgets

export function statusBadge(status, attrs = {}) {
  const value = String(status || "UNKNOWN").toUpperCase();
  return el(
    "span",
    { class: `badge badge-${value.toLowerCase()}`, testid: "status-badge", dataset: { status: value }, ...attrs },
    value.charAt(0) + value.slice(1).toLowerCase(),
  );
}

/** A progress bar with role=progressbar; `label` names it for screen readers. */
export function progressBar(task, label) {
  const pct = Math.max(0, Math.min(100, Number(task.progress) || 0));
  const done = task.units_done ?? 0;
  const total = task.units_total ?? 0;
  const unit = unitOf(task.type);
  const status = String(task.status || "").toLowerCase();
  const units = total ? formatProgress(done, total, unit) : `${pct}%`;
  const exact = total ? `${formatNumber(done)} of ${formatNumber(total)} ${unit} (${pct}%)` : `${pct}%`;
  return el(
    "span",
    { class: "progress-wrap" },
    el(
      "span",
      {
        class: `progress progress-${status}`,
        role: "progressbar",
        "aria-valuemin": "0",
        "aria-valuemax": "100",
        "aria-valuenow": String(pct),
        "aria-valuetext": `${pct}% (${units})`,
        "aria-label": label || "Progress",
        testid: "progress-bar",
        dataset: { progress: pct },
      },
      el("span", { class: "progress-fill", style: { width: `${pct}%` } }),
    ),
    el("span", { class: "progress-text", testid: "progress-text", title: exact }, units),
  );
}

/** A warning chip when some items (recipients, images) of the task failed; else null. */
export function failedItemsBadge(task) {
  const failed = Number(task.failed_items) || 0;
  if (!failed) return null;
  const unit = unitOf(task.type) || "items";
  const total = Number(task.units_total) || 0;
  const all = task.status === "FAILED" && total && failed >= total;
  const text = all ? `all ${formatUnits(failed, unit)} failed` : `${formatUnits(failed, unit)} failed`;
  return el("span", { class: "chip chip-warning", testid: "failed-items-badge", dataset: { failed } }, text);
}

/** A table of key/value rows; nested objects become nested tables, arrays of objects tables. */
export function valueView(value, depth = 0) {
  if (Array.isArray(value)) {
    if (value.length && value.every(isPlainObject)) return objectsTable(value);
    if (value.every((v) => v == null || typeof v !== "object")) {
      return el("span", { class: "value" }, value.map(formatValue).join(", ") || "—");
    }
    return el("pre", { class: "json" }, JSON.stringify(value, null, 2));
  }
  if (isPlainObject(value)) {
    if (depth > 3) return el("pre", { class: "json" }, JSON.stringify(value, null, 2));
    return kvTable(value, depth);
  }
  return el("span", { class: "value" }, formatValue(value));
}

export function kvTable(object, depth = 0, attrs = {}) {
  const entries = Object.entries(object || {});
  if (!entries.length) return el("p", { class: "muted" }, "Nothing to show.");
  return el(
    "table",
    { class: "kv", ...attrs },
    el(
      "tbody",
      null,
      entries.map(([key, value]) =>
        el("tr", null, el("th", { scope: "row" }, humanize(key)), el("td", null, valueView(value, depth + 1))),
      ),
    ),
  );
}

export function objectsTable(rows, attrs = {}) {
  const columns = [];
  for (const row of rows) for (const key of Object.keys(row)) if (!columns.includes(key)) columns.push(key);
  // A column whose values are all numbers (or missing) is right-aligned, header included.
  const numeric = new Set(
    columns.filter((c) => rows.some((r) => typeof r[c] === "number") && rows.every((r) => r[c] == null || typeof r[c] === "number")),
  );
  const { class: extraClass, ...rest } = attrs;
  return el(
    "div",
    { class: "table-scroll" },
    el(
      "table",
      { class: ["grid-table", extraClass], ...rest },
      el("thead", null, el("tr", null, columns.map((c) => el("th", { scope: "col", class: numeric.has(c) ? "num" : null }, humanize(c))))),
      el(
        "tbody",
        null,
        rows.map((row) =>
          el(
            "tr",
            null,
            columns.map((c) => {
              const v = row[c];
              return el("td", { class: typeof v === "number" ? "num" : null },
                v != null && typeof v === "object" ? valueView(v, 4) : formatValue(v));
            }),
          ),
        ),
      ),
    ),
  );
}

// ------------------------------------------------------------------ toasts and announcements

export function toast(message, kind = "info", timeout = 5000) {
  const host = document.getElementById("toasts");
  if (!host) return;
  const item = el(
    "div",
    { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status", testid: "toast", dataset: { kind } },
    el("span", { class: "toast-text" }, message),
    el("button", { type: "button", class: "toast-close", "aria-label": "Dismiss", onclick: () => item.remove() }, "×"),
  );
  host.appendChild(item);
  while (host.children.length > 4) host.firstElementChild.remove();
  if (timeout) setTimeout(() => item.remove(), kind === "error" ? timeout * 2 : timeout);
}

let announceTimer = null;
const pendingAnnouncements = [];

/** Speak through the polite live region; bursts are joined into one message. */
export function announce(message) {
  pendingAnnouncements.push(message);
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => {
    const region = document.getElementById("live-region");
    if (!region) return;
    region.textContent = pendingAnnouncements.splice(0).map((m) => String(m).replace(/[.\s]+$/, "")).join(". ");
  }, 250);
}

export function debounce(fn, wait) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), wait);
  };
}

// ------------------------------------------------------------------ confirmation dialog

/** Ask with the page's <dialog>; resolves true when the user confirms. */
export function confirmDialog({ title, message, confirmLabel = "Confirm", danger = false }) {
  const dialog = document.getElementById("confirm-dialog");
  const titleNode = document.getElementById("confirm-title");
  const messageNode = document.getElementById("confirm-message");
  const ok = document.getElementById("confirm-ok");
  titleNode.textContent = title;
  messageNode.textContent = message;
  ok.textContent = confirmLabel;
  ok.classList.toggle("btn-danger", danger);
  ok.classList.toggle("btn-primary", !danger);
  const opener = document.activeElement;
  return new Promise((resolve) => {
    dialog.returnValue = "";
    const onClose = () => {
      dialog.removeEventListener("close", onClose);
      if (opener && typeof opener.focus === "function" && document.contains(opener)) opener.focus();
      resolve(dialog.returnValue === "confirm");
    };
    dialog.addEventListener("close", onClose);
    if (typeof dialog.showModal === "function") dialog.showModal();
    else dialog.setAttribute("open", "");
    ok.focus();
  });
}
