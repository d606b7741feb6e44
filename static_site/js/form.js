// The submit form: a type selector from GET /task-types and, for the chosen type, fields built
// from its JSON Schema (as pydantic writes it) and the form hints the type declares in it:
// `x-sources` (an explicit choice of input), `x-upload` (a file picker for a field, accepting
// only the declared content types), `x-advanced` (folded away). Client-side validation mirrors
// the schema; every error, the client's or the server's (matched by its `loc`), is shown
// beside its field.

import { api, putFile, ApiError } from "./api.js";
import {
  el, clear, humanize, toast, announce, uuid, formatBytes, isPlainObject, fromInputValue, zoneName,
} from "./util.js";

// File name extensions of each content type POST /uploads takes, for the file picker's filter
// and for files the browser gives no type.
const EXTENSIONS = {
  "text/csv": ["csv"],
  "image/png": ["png"],
  "image/jpeg": ["jpg", "jpeg"],
  "image/webp": ["webp"],
  "image/gif": ["gif"],
};
const TYPE_NAMES = { "text/csv": "CSV", "image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WebP", "image/gif": "GIF" };
const MAX_UPLOAD_BYTES = 100 * 1024 * 1024;
const META_FIELDS = { priority: "priority", run_at: "run_at", max_attempts: "max_attempts", delay_seconds: "run_at" };
// A run time further ahead than this is accepted, with a warning: is the year right?
const FAR_AHEAD_DAYS = 30;
const DAY_MS = 24 * 3600 * 1000;
const EMAIL_RE = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;

// ------------------------------------------------------------------ schema -> field descriptors

function resolveRef(schema, root, seen = new Set()) {
  if (!isPlainObject(schema)) return {};
  let current = schema;
  while (current && typeof current.$ref === "string" && !seen.has(current.$ref)) {
    seen.add(current.$ref);
    const path = current.$ref.replace(/^#\//, "").split("/");
    let target = root;
    for (const part of path) target = target?.[part];
    const { $ref, ...rest } = current;
    current = { ...(isPlainObject(target) ? target : {}), ...rest };
  }
  // pydantic wraps a $ref with siblings (default, description) in a one-element allOf.
  if (Array.isArray(current.allOf) && current.allOf.length === 1) {
    const { allOf, ...rest } = current;
    current = { ...resolveRef(allOf[0], root, seen), ...rest };
  }
  return current;
}

function typesOf(schema) {
  if (Array.isArray(schema.type)) return schema.type;
  return schema.type ? [schema.type] : [];
}

/** Strips `anyOf: [X, {type: null}]` down to X and says whether null was allowed. */
function unwrapNullable(schema, root) {
  let resolved = resolveRef(schema, root);
  let nullable = false;
  const branches = resolved.anyOf || resolved.oneOf;
  if (Array.isArray(branches)) {
    const nonNull = branches.map((b) => resolveRef(b, root)).filter((b) => !(b.type === "null" || b.const === null));
    nullable = nonNull.length !== branches.length;
    const { anyOf, oneOf, ...outer } = resolved;
    resolved = nonNull.length === 1 ? { ...nonNull[0], ...outer } : { ...outer, anyOf: nonNull };
  }
  const types = typesOf(resolved);
  if (types.includes("null")) {
    nullable = true;
    const rest = types.filter((t) => t !== "null");
    resolved = { ...resolved, type: rest.length === 1 ? rest[0] : rest };
  }
  return { schema: resolved, nullable };
}

function kindOf(schema) {
  if (Array.isArray(schema.enum)) return "enum";
  if ("const" in schema) return "enum";
  const [type] = typesOf(schema);
  if (["string", "integer", "number", "boolean"].includes(type)) return type;
  if (type === "array") return "array";
  return "json";
}

/** The field's x-upload hint: {accept: [content types], target: "key" | "prefix"}, or null. */
function uploadHint(schema) {
  const hint = schema["x-upload"];
  if (!isPlainObject(hint) || !Array.isArray(hint.accept)) return null;
  return { accept: hint.accept.filter((t) => EXTENSIONS[t]), multiple: hint.target === "prefix" };
}

export function describeFields(paramsSchema) {
  const root = isPlainObject(paramsSchema) ? paramsSchema : {};
  const top = resolveRef(root, root);
  const required = new Set(Array.isArray(top.required) ? top.required : []);
  return Object.entries(top.properties || {}).map(([name, raw]) => {
    const { schema, nullable } = unwrapNullable(raw, root);
    const kind = kindOf(schema);
    let items = null;
    let itemKind = null;
    if (kind === "array") {
      items = unwrapNullable(schema.items || {}, root).schema;
      itemKind = kindOf(items);
      if (!["string", "integer", "number", "enum"].includes(itemKind)) itemKind = "json";
    }
    const rawResolved = resolveRef(raw, root);
    const hasDefault = "default" in rawResolved || "default" in schema;
    return {
      name,
      label: rawResolved.title || schema.title || humanize(name),
      help: rawResolved.description || schema.description || "",
      required: required.has(name),
      nullable,
      kind: kind === "array" && itemKind === "json" ? "json" : kind,
      schema,
      items,
      itemKind,
      enumValues: Array.isArray(schema.enum) ? schema.enum : "const" in schema ? [schema.const] : null,
      default: hasDefault ? ("default" in rawResolved ? rawResolved.default : schema.default) : undefined,
      examples: rawResolved.examples || schema.examples,
      upload: uploadHint(schema),
      advanced: schema["x-advanced"] === true,
    };
  });
}

// ------------------------------------------------------------------ validation mirroring the schema

function length(text) {
  return [...text].length;
}

function compilePattern(pattern) {
  try {
    return new RegExp(pattern, "u");
  } catch {
    try {
      return new RegExp(pattern);
    } catch {
      return null;
    }
  }
}

/** A message for a scalar that breaks the schema, or null. */
function checkScalar(value, kind, schema, enumValues) {
  if (kind === "enum") {
    return enumValues.some((v) => String(v) === String(value)) ? null : `Choose one of ${enumValues.join(", ")}`;
  }
  if (kind === "string") {
    if (schema.minLength != null && length(value) < schema.minLength) {
      return schema.minLength === 1 ? "Must not be empty" : `At least ${schema.minLength} characters`;
    }
    if (schema.maxLength != null && length(value) > schema.maxLength) return `At most ${schema.maxLength} characters`;
    if (schema.pattern) {
      const re = compilePattern(schema.pattern);
      if (re && !re.test(value)) return `Does not match the expected format (${schema.pattern})`;
    }
    if (schema.format === "email" && !EMAIL_RE.test(value)) return "Not a valid email address";
    if (schema.format === "uri" || schema.format === "url") {
      try {
        new URL(value);
      } catch {
        return "Not a valid URL";
      }
    }
    return null;
  }
  if (kind === "integer" || kind === "number") {
    if (typeof value !== "number" || Number.isNaN(value)) return "Enter a number";
    if (kind === "integer" && !Number.isInteger(value)) return "Enter a whole number";
    if (schema.minimum != null && value < schema.minimum) return `Must be at least ${schema.minimum}`;
    if (schema.maximum != null && value > schema.maximum) return `Must be at most ${schema.maximum}`;
    if (schema.exclusiveMinimum != null && value <= schema.exclusiveMinimum) return `Must be greater than ${schema.exclusiveMinimum}`;
    if (schema.exclusiveMaximum != null && value >= schema.exclusiveMaximum) return `Must be less than ${schema.exclusiveMaximum}`;
    if (schema.multipleOf && Math.abs(value / schema.multipleOf - Math.round(value / schema.multipleOf)) > 1e-9) {
      return `Must be a multiple of ${schema.multipleOf}`;
    }
  }
  return null;
}

function parseNumber(text) {
  const trimmed = String(text).trim();
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(trimmed)) return NaN;
  return Number(trimmed);
}

// ------------------------------------------------------------------ widgets

function helpText(field) {
  const parts = [];
  if (field.help) parts.push(field.help);
  const s = field.schema;
  const limits = [];
  if (s.minimum != null) limits.push(`min ${s.minimum}`);
  if (s.maximum != null) limits.push(`max ${s.maximum}`);
  if (s.exclusiveMinimum != null) limits.push(`> ${s.exclusiveMinimum}`);
  if (s.exclusiveMaximum != null) limits.push(`< ${s.exclusiveMaximum}`);
  if (s.minLength != null && s.minLength > 1) limits.push(`at least ${s.minLength} characters`);
  if (s.maxLength != null) limits.push(`up to ${s.maxLength} character${s.maxLength === 1 ? "" : "s"}`);
  if (s.minItems != null) limits.push(`at least ${s.minItems} item${s.minItems === 1 ? "" : "s"}`);
  if (s.maxItems != null) limits.push(`up to ${s.maxItems} items`);
  if (field.kind === "array" && field.itemKind !== "enum") {
    const item = field.items || {};
    if (item.minimum != null && item.maximum != null) limits.push(`each ${item.minimum} to ${item.maximum}`);
    else if (item.minimum != null) limits.push(`each at least ${item.minimum}`);
    else if (item.maximum != null) limits.push(`each at most ${item.maximum}`);
    if (item.format === "email") limits.push("email addresses");
    limits.push(item.format === "email" ? "one per line or comma-separated" : "one per line");
  }
  if (field.kind === "json") limits.push("JSON");
  if (limits.length) parts.push(`(${limits.join(", ")})`);
  return parts.join(" ");
}

function defaultText(field) {
  const d = field.default;
  if (d == null) return "";
  if (Array.isArray(d)) return d.map((v) => (typeof v === "object" ? JSON.stringify(v) : String(v))).join("\n");
  if (typeof d === "object") return JSON.stringify(d, null, 2);
  return String(d);
}

const NAMED_CHARACTERS = { "\t": "Tab", " ": "Space", ",": ", (comma)", ";": "; (semicolon)", "|": "| (pipe)" };

/** Enum values as readable option text: a tab delimiter must not look like an empty option. */
function optionLabel(value) {
  const text = String(value);
  if (NAMED_CHARACTERS[text]) return NAMED_CHARACTERS[text];
  return /^\s*$/.test(text) ? JSON.stringify(text) : text;
}

// A field's error shown on blur can push the Submit button down between the press and the
// release of a click on it, and the click is lost. So while a pointer is down, errors from
// blur wait until the click is over.
let pointerDown = false;
const waiting = [];
document.addEventListener("pointerdown", () => {
  pointerDown = true;
}, true);
for (const type of ["pointerup", "pointercancel"]) {
  document.addEventListener(type, () => {
    pointerDown = false;
    // After the click that this release makes: a task queued now runs once it is dispatched.
    setTimeout(() => waiting.splice(0).forEach((show) => show()), 0);
  }, true);
}

function afterClick(show) {
  if (pointerDown) waiting.push(show);
  else show();
}

/** Builds one field; returns {node, read(), setError(msg), focus(), setValue(v)}. */
function buildField(field, { onUploadState }) {
  const id = `param-${field.name}`;
  const helpId = `${id}-help`;
  const errorId = `${id}-error`;
  const describedBy = `${helpId} ${errorId}`;
  const common = { id, name: field.name, testid: `field-${field.name}`, "aria-describedby": describedBy };
  if (field.required) common["aria-required"] = "true";
  const s = field.schema;
  let input;

  if (field.kind === "boolean" && !field.nullable) {
    input = el("input", { ...common, type: "checkbox", checked: field.default === true });
  } else if (field.kind === "boolean") {
    input = el(
      "select",
      common,
      el("option", { value: "" }, "— not set —"),
      el("option", { value: "true", selected: field.default === true }, "Yes"),
      el("option", { value: "false", selected: field.default === false }, "No"),
    );
  } else if (field.kind === "enum") {
    const options = field.enumValues.map((v) =>
      el("option", { value: String(v), selected: field.default != null && String(field.default) === String(v) }, optionLabel(v)),
    );
    const blank = !field.required || field.nullable || field.default === undefined;
    input = el("select", common, blank ? el("option", { value: "" }, field.required ? "— choose —" : "— default —") : null, options);
  } else if (field.kind === "array" && field.itemKind === "enum") {
    const values = field.items.enum || ("const" in field.items ? [field.items.const] : []);
    const defaults = Array.isArray(field.default) ? field.default.map(String) : [];
    input = el(
      "select",
      { ...common, multiple: true, size: String(Math.min(6, Math.max(2, values.length))) },
      values.map((v) => el("option", { value: String(v), selected: defaults.includes(String(v)) }, optionLabel(v))),
    );
  } else if (field.kind === "array" || field.kind === "json") {
    input = el("textarea", { ...common, rows: field.kind === "json" ? "4" : "3", spellcheck: "false" });
    input.value = defaultText(field);
  } else if (field.kind === "integer" || field.kind === "number") {
    input = el("input", {
      ...common,
      type: "number",
      inputmode: field.kind === "integer" ? "numeric" : "decimal",
      step: field.kind === "integer" ? String(s.multipleOf || 1) : String(s.multipleOf || "any"),
      min: s.minimum ?? (s.exclusiveMinimum != null && field.kind === "integer" ? s.exclusiveMinimum + 1 : null),
      max: s.maximum ?? (s.exclusiveMaximum != null && field.kind === "integer" ? s.exclusiveMaximum - 1 : null),
    });
    input.value = defaultText(field);
  } else {
    const long = !field.upload && (s.maxLength ?? 0) >= 2000;
    const type = s.format === "email" ? "email" : s.format === "uri" ? "url" : "text";
    input = long ? el("textarea", { ...common, rows: "5" }) : el("input", { ...common, type, autocomplete: "off" });
    if (s.maxLength != null) input.setAttribute("maxlength", String(s.maxLength + 1)); // let validation explain
    input.value = defaultText(field);
  }
  if (Array.isArray(field.examples) && field.examples.length && "placeholder" in input && input.tagName !== "SELECT") {
    const example = field.examples[0];
    input.placeholder = field.kind === "array" && Array.isArray(example)
      ? `e.g.\n${example.join("\n")}`
      : `e.g. ${typeof example === "object" ? JSON.stringify(example) : example}`;
  }

  const error = el("p", { class: "field-error", id: errorId, testid: `error-${field.name}`, hidden: true });
  const help = el("p", { class: "help", id: helpId }, helpText(field));
  const labelNode = el(
    "label",
    { for: id, class: "label" },
    field.label,
    field.required ? el("span", { class: "req", "aria-hidden": "true" }, " *") : el("span", { class: "optional" }, " (optional)"),
  );

  let uploadNode = null;
  if (field.upload) uploadNode = buildUpload(field, input, onUploadState);

  const wrapper = el(
    "div",
    { class: ["field", field.kind === "boolean" && !field.nullable ? "field-check" : null], dataset: { field: field.name } },
    field.kind === "boolean" && !field.nullable ? [input, labelNode] : [labelNode, input],
    uploadNode,
    help,
    error,
  );

  function read() {
    if (field.kind === "boolean" && !field.nullable) return { present: true, value: input.checked };
    if (field.kind === "array" && field.itemKind === "enum") {
      const chosen = [...input.selectedOptions].map((o) => o.value);
      const values = field.items.enum || [];
      const typed = chosen.map((c) => values.find((v) => String(v) === c) ?? c);
      return { present: typed.length > 0 || field.required, value: typed };
    }
    const raw = input.value;
    if (raw.trim() === "") return { present: false, value: null, empty: true };
    if (field.kind === "boolean") return { present: true, value: raw === "true" };
    if (field.kind === "enum") return { present: true, value: field.enumValues.find((v) => String(v) === raw) ?? raw };
    if (field.kind === "integer" || field.kind === "number") return { present: true, value: parseNumber(raw, field.kind) };
    if (field.kind === "json") {
      try {
        return { present: true, value: JSON.parse(raw) };
      } catch {
        return { present: true, value: undefined, invalid: "Not valid JSON" };
      }
    }
    if (field.kind === "array") {
      let lines = raw.split(/\r?\n/);
      if (field.items?.format === "email") lines = lines.flatMap((l) => l.split(/[,;]/));
      lines = lines.map((l) => l.trim()).filter((l) => l !== "");
      if (field.itemKind === "integer" || field.itemKind === "number") {
        return { present: true, value: lines.map((l) => parseNumber(l, field.itemKind)) };
      }
      return { present: true, value: lines };
    }
    return { present: true, value: raw };
  }

  function validate() {
    const result = read();
    if (result.invalid) return result.invalid;
    if (!result.present || (field.kind === "array" && result.value.length === 0)) {
      const needed = field.mustGive || (field.required && !field.nullable && field.default === undefined);
      return needed ? "Required" : null;
    }
    const v = result.value;
    if (field.kind === "array") {
      if (s.minItems != null && v.length < s.minItems) return `Give at least ${s.minItems} item${s.minItems === 1 ? "" : "s"}`;
      if (s.maxItems != null && v.length > s.maxItems) return `Give at most ${s.maxItems} items`;
      if (s.uniqueItems && new Set(v.map(String)).size !== v.length) return "Items must be unique";
      const itemValues = field.items.enum || null;
      for (let i = 0; i < v.length; i += 1) {
        const problem = checkScalar(v[i], field.itemKind, field.items, itemValues);
        if (problem) return `Item ${i + 1} (${v[i]}): ${problem}`;
      }
      return null;
    }
    if (field.kind === "json" || field.kind === "boolean") return null;
    return checkScalar(v, field.kind, s, field.enumValues);
  }

  function setError(message) {
    error.textContent = message || "";
    error.hidden = !message;
    wrapper.classList.toggle("has-error", Boolean(message));
    if (message) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }

  input.addEventListener("blur", () => {
    if (input.value !== "" || wrapper.classList.contains("has-error")) afterClick(() => setError(validate()));
  });
  input.addEventListener("input", () => {
    if (wrapper.classList.contains("has-error")) setError(validate());
  });

  /** Required by the chosen input source (a field the schema itself leaves optional). */
  function setRequired(required) {
    field.required = required;
    field.mustGive = required;
    labelNode.replaceChildren(
      field.label,
      required ? el("span", { class: "req", "aria-hidden": "true" }, " *") : el("span", { class: "optional" }, " (optional)"),
    );
    if (required) input.setAttribute("aria-required", "true");
    else input.removeAttribute("aria-required");
  }

  return { field, node: wrapper, input, read, validate, setError, setRequired, focus: () => input.focus() };
}

// ------------------------------------------------------------------ uploads

/** The file's content type if `accept` lists it (by the browser's type or the extension). */
function contentTypeOf(file, accept) {
  if (accept.includes(file.type)) return file.type;
  const ext = (file.name.split(".").pop() || "").toLowerCase();
  return accept.find((type) => EXTENSIONS[type].includes(ext)) || null;
}

function acceptAttribute(accept) {
  return [...accept, ...accept.flatMap((type) => EXTENSIONS[type].map((ext) => `.${ext}`))].join(",");
}

/** The API accepts `^[A-Za-z0-9][A-Za-z0-9._ -]*$`, at most 200 characters. */
export function safeFilename(name) {
  let clean = String(name).normalize("NFKD").replace(/[^A-Za-z0-9._ -]/g, "_");
  clean = clean.replace(/^[^A-Za-z0-9]+/, "");
  if (!clean) clean = "file";
  if (clean.length > 200) {
    const dot = clean.lastIndexOf(".");
    const ext = dot > 0 && clean.length - dot <= 10 ? clean.slice(dot) : "";
    clean = clean.slice(0, 200 - ext.length) + ext;
  }
  return clean;
}

function dirOf(key) {
  const i = key.lastIndexOf("/");
  return i >= 0 ? key.slice(0, i + 1) : "";
}

function commonPrefix(keys) {
  if (!keys.length) return "";
  let prefix = dirOf(keys[0]);
  for (const key of keys.slice(1)) {
    while (prefix && !key.startsWith(prefix)) prefix = dirOf(prefix.slice(0, -1));
  }
  return prefix;
}

function requestTicket(file, contentType, prefix) {
  const body = { filename: safeFilename(file.name), content_type: contentType, size: file.size };
  return api.createUpload(prefix ? { ...body, prefix } : body);
}

function buildUpload(field, target, onUploadState) {
  const fileId = `upload-${field.name}`;
  const fileInput = el("input", {
    type: "file",
    id: fileId,
    class: "file-input",
    testid: `upload-${field.name}`,
    accept: acceptAttribute(field.upload.accept),
    multiple: field.upload.multiple,
  });
  const bar = el("progress", { max: "100", value: "0", class: "upload-progress", testid: `upload-progress-${field.name}`, hidden: true });
  const status = el("span", { class: "upload-status", testid: `upload-status-${field.name}`, "aria-live": "polite" });
  const label = el(
    "label",
    { for: fileId, class: "btn btn-small btn-secondary file-label" },
    field.upload.multiple ? "Upload files…" : "Upload a file…",
  );

  fileInput.addEventListener("change", async () => {
    const files = [...fileInput.files];
    if (!files.length) return;
    const names = field.upload.accept.map((t) => TYPE_NAMES[t]);
    for (const file of files) {
      const type = contentTypeOf(file, field.upload.accept);
      if (!type) {
        status.textContent = `${file.name} is not a ${names.length > 1 ? `${names.slice(0, -1).join(", ")} or ${names.at(-1)}` : names[0]} file.`;
        status.classList.add("upload-refused");
        fileInput.value = "";
        announce(status.textContent);
        return;
      }
      if (file.size > MAX_UPLOAD_BYTES) {
        status.textContent = `${file.name} is larger than ${formatBytes(MAX_UPLOAD_BYTES)}.`;
        return;
      }
      if (file.size === 0) {
        status.textContent = `${file.name} is empty.`;
        return;
      }
    }
    status.classList.remove("upload-refused");
    const total = files.reduce((sum, f) => sum + f.size, 0);
    const loaded = new Array(files.length).fill(0);
    const update = () => {
      const sum = loaded.reduce((a, b) => a + b, 0);
      bar.value = total ? Math.round((sum / total) * 100) : 100;
    };
    bar.hidden = false;
    bar.value = 0;
    fileInput.disabled = true;
    onUploadState(field.name, true);
    status.textContent = `Uploading ${files.length === 1 ? files[0].name : `${files.length} files`}…`;
    try {
      const keys = [];
      let prefix = null;
      for (let i = 0; i < files.length; i += 1) {
        const ticket = await requestTicket(files[i], contentTypeOf(files[i], field.upload.accept), prefix);
        if (!ticket || !ticket.url || !ticket.key) throw new Error("The server did not return an upload URL.");
        if (i === 0) prefix = ticket.prefix || dirOf(ticket.key);
        keys.push(ticket.key);
        await putFile(ticket, files[i], (done) => {
          loaded[i] = done;
          update();
        });
      }
      target.value = field.upload.multiple ? commonPrefix(keys) : keys[0];
      target.dispatchEvent(new Event("input", { bubbles: true }));
      status.textContent = `Uploaded ${files.length === 1 ? files[0].name : `${files.length} files`} (${formatBytes(total)}).`;
      if (field.upload.multiple && keys.length > 1 && keys.some((k) => dirOf(k) !== dirOf(keys[0]))) {
        status.textContent += " The server stored them in separate folders, so the prefix covers all your uploads.";
      }
      announce(status.textContent);
    } catch (err) {
      status.textContent = err.message || "Upload failed.";
      toast(status.textContent, "error");
    } finally {
      fileInput.disabled = false;
      fileInput.value = "";
      onUploadState(field.name, false);
    }
  });

  return el("div", { class: "upload" }, fileInput, label, bar, status);
}

// ------------------------------------------------------------------ the submit form

/** The x-sources of a params schema: [{name, label, fields}] (empty when the type has none). */
function sourcesOf(schema) {
  const raw = isPlainObject(schema) ? schema["x-sources"] : null;
  if (!Array.isArray(raw)) return [];
  return raw.filter((s) => isPlainObject(s) && s.name && Array.isArray(s.fields));
}

/** The source offered first: the first one that needs no upload (it works at once). */
function defaultSource(sources, widgets) {
  const needsUpload = (source) => source.fields.some((name) => widgets.find((w) => w.field.name === name)?.field.upload);
  return (sources.find((source) => !needsUpload(source)) || sources[0])?.name || "";
}

/**
 * Wires the static submit form in index.html. `onSubmitted(task)` is called after a 2xx.
 * Returns {load(): Promise<types>} so app.js can share the type list with the filters.
 */
export function setupSubmitForm({ onSubmitted, onTypes }) {
  const form = document.getElementById("submit-form");
  const select = document.getElementById("type-select");
  const typeError = document.getElementById("type-error");
  const description = document.getElementById("type-description");
  const fieldsHost = document.getElementById("param-fields");
  const button = document.getElementById("submit-button");
  const formError = document.getElementById("form-error");
  const state = document.getElementById("submit-state");
  const runAtHelp = document.getElementById("run-at-help");
  const runAtWarning = document.getElementById("run-at-warning");
  const meta = {
    priority: document.getElementById("priority"),
    run_at: document.getElementById("run-at"),
    max_attempts: document.getElementById("max-attempts"),
  };
  const metaErrors = {
    priority: document.getElementById("priority-error"),
    run_at: document.getElementById("run-at-error"),
    max_attempts: document.getElementById("max-attempts-error"),
  };

  let types = [];
  let widgets = [];
  let sources = [];
  let source = ""; // the chosen source's name
  let paramsError = null; // where errors about the params as a whole go
  let advancedBox = null;
  let uploading = new Set();
  let submitting = false;
  let lastAttempt = null; // {fingerprint, key}: an identical resubmission reuses its key

  function updateButton() {
    button.disabled = submitting || uploading.size > 0 || !select.value;
    button.textContent = submitting ? "Submitting…" : uploading.size ? "Uploading…" : "Submit task";
  }

  function onUploadState(name, busy) {
    if (busy) uploading.add(name);
    else uploading.delete(name);
    updateButton();
  }

  function setMetaError(name, message) {
    const node = metaErrors[name];
    node.textContent = message || "";
    node.hidden = !message;
    meta[name].closest(".field").classList.toggle("has-error", Boolean(message));
    if (message) meta[name].setAttribute("aria-invalid", "true");
    else meta[name].removeAttribute("aria-invalid");
  }

  function setTypeError(message) {
    typeError.textContent = message || "";
    typeError.hidden = !message;
  }

  function setParamsError(message) {
    if (!paramsError) return false;
    paramsError.textContent = message || "";
    paramsError.hidden = !message;
    return true;
  }

  function setFormError(messages) {
    clear(formError);
    const list = (Array.isArray(messages) ? messages : [messages]).filter(Boolean);
    formError.hidden = list.length === 0;
    if (list.length === 1) formError.append(list[0]);
    else if (list.length) formError.append(el("ul", null, list.map((m) => el("li", null, m))));
  }

  function clearErrors() {
    for (const w of widgets) w.setError(null);
    for (const name of Object.keys(meta)) setMetaError(name, null);
    setTypeError(null);
    setParamsError(null);
    setFormError(null);
  }

  /** The widgets whose values are sent: the chosen source's and those of no source. */
  function activeWidgets() {
    const inSources = new Set(sources.flatMap((s) => s.fields));
    const chosen = new Set(sources.find((s) => s.name === source)?.fields || []);
    return widgets.filter((w) => !inSources.has(w.field.name) || chosen.has(w.field.name));
  }

  function chooseSource(name) {
    source = name;
    const chosen = new Set(sources.find((s) => s.name === name)?.fields || []);
    for (const s of sources) {
      for (const fieldName of s.fields) {
        const widget = widgets.find((w) => w.field.name === fieldName);
        if (!widget) continue;
        widget.node.hidden = !chosen.has(fieldName);
        // Within the chosen source a field without a default must be given.
        widget.setRequired(chosen.has(fieldName) && widget.field.default == null);
        widget.setError(null);
      }
    }
    setParamsError(null);
    lastAttempt = null;
  }

  function sourceChoice(typeName) {
    const errorNode = el("p", { class: "field-error", id: "error-params", testid: "error-params", hidden: true, role: "alert" });
    const fieldset = el(
      "fieldset",
      { class: "source-choice", testid: "source-choice", "aria-describedby": "error-params" },
      el("legend", null, "Input"),
      el(
        "div",
        { class: "segmented", role: "radiogroup", "aria-label": "Input" },
        sources.map((s) =>
          el(
            "label",
            { class: "segment" },
            el("input", {
              type: "radio",
              name: `source-${typeName}`,
              value: s.name,
              testid: `source-${s.name}`,
              checked: s.name === source,
              onchange: () => chooseSource(s.name),
            }),
            el("span", null, s.label),
          ),
        ),
      ),
      errorNode,
    );
    paramsError = errorNode;
    return fieldset;
  }

  function renderFields() {
    const type = types.find((t) => t.name === select.value);
    clear(fieldsHost);
    widgets = [];
    sources = [];
    source = "";
    paramsError = null;
    advancedBox = null;
    uploading = new Set();
    clearErrors();
    description.textContent = type?.description || "";
    if (!type) {
      updateButton();
      return;
    }
    try {
      localStorage.setItem("taskqueue.lastType", type.name);
    } catch {
      /* storage may be unavailable */
    }
    const schema = type.params_schema || {};
    const fields = describeFields(schema);
    if (!fields.length) fieldsHost.append(el("p", { class: "muted" }, "This type takes no parameters."));
    widgets = fields.map((f) => buildField(f, { onUploadState }));
    sources = sourcesOf(schema);
    const inSources = new Set(sources.flatMap((s) => s.fields));
    const byName = new Map(widgets.map((w) => [w.field.name, w]));
    if (sources.length) {
      source = defaultSource(sources, widgets);
      fieldsHost.append(sourceChoice(type.name));
      for (const s of sources) for (const name of s.fields) if (byName.has(name)) fieldsHost.append(byName.get(name).node);
      chooseSource(source);
    } else {
      const errorNode = el("p", { class: "field-error", id: "error-params", testid: "error-params", hidden: true, role: "alert" });
      fieldsHost.append(errorNode);
      paramsError = errorNode;
    }
    const plain = widgets.filter((w) => !inSources.has(w.field.name) && !w.field.advanced);
    const advanced = widgets.filter((w) => !inSources.has(w.field.name) && w.field.advanced);
    fieldsHost.append(...plain.map((w) => w.node));
    if (advanced.length) {
      advancedBox = el(
        "details",
        { class: "advanced", testid: "advanced-options" },
        el("summary", null, `Advanced options (${advanced.length})`),
        advanced.map((w) => w.node),
      );
      fieldsHost.append(advancedBox);
    }
    lastAttempt = null;
    updateButton();
  }

  /** Shows an error at a widget; one inside the folded advanced options unfolds them. */
  function showAt(widget, message) {
    widget.setError(message);
    if (message && advancedBox && advancedBox.contains(widget.node)) advancedBox.open = true;
  }

  function runAtProblem() {
    const text = meta.run_at.value;
    if (!text) return { date: null };
    const date = fromInputValue(text);
    if (!date) return { error: "Not a valid date and time" };
    const ahead = date.getTime() - Date.now();
    if (ahead <= 0) return { date, warning: "This time has passed: the task will run at once." };
    if (ahead > FAR_AHEAD_DAYS * DAY_MS) {
      const days = Math.round(ahead / DAY_MS);
      return { date, warning: `That is ${days.toLocaleString()} days from now. Is the date right?` };
    }
    return { date };
  }

  function showRunAt() {
    const { error, warning } = runAtProblem();
    setMetaError("run_at", error || null);
    runAtWarning.textContent = warning || "";
    runAtWarning.hidden = !warning;
    return !error;
  }

  function describeZone() {
    runAtHelp.textContent = `In ${zoneName()} time; empty runs now.`;
    showRunAt();
  }

  function validateMeta() {
    let ok = showRunAt();
    const attempts = meta.max_attempts.value.trim();
    if (attempts) {
      const n = Number(attempts);
      if (!Number.isInteger(n) || n < 1 || n > 10) {
        setMetaError("max_attempts", "A whole number from 1 to 10");
        ok = false;
      } else setMetaError("max_attempts", null);
    } else setMetaError("max_attempts", null);
    return ok;
  }

  function buildBody() {
    const params = {};
    for (const w of activeWidgets()) {
      const { present, value } = w.read();
      if (present) params[w.field.name] = value;
    }
    const body = { type: select.value, params, priority: meta.priority.value || "normal" };
    const { date } = runAtProblem();
    if (date) body.run_at = date.toISOString();
    if (meta.max_attempts.value.trim()) body.max_attempts = Number(meta.max_attempts.value);
    return body;
  }

  /**
   * Puts each 422 detail beside what it is about, by its loc: ["body", "params", field, ...]
   * at the field, ["body", "params"] (a rule across fields) at the input choice,
   * ["body", "run_at"] at the scheduling field, ["body", "type"] at the type.
   */
  function showServerErrors(details, fallback) {
    const general = [];
    let first = null;
    const items = Array.isArray(details) ? details : [];
    for (const item of items) {
      const loc = Array.isArray(item?.loc) ? [...item.loc] : [];
      const msg = String(item?.msg || fallback || "Invalid value").replace(/^Value error, /, "");
      if (loc[0] === "body") loc.shift();
      if (loc[0] === "params" && loc.length > 1) {
        const widget = widgets.find((w) => w.field.name === String(loc[1]));
        if (widget) {
          const rest = loc.slice(2);
          const where = rest.length ? `${rest.map((p) => (typeof p === "number" ? `item ${p + 1}` : p)).join(" › ")}: ` : "";
          showAt(widget, `${where}${msg}`);
          first = first || widget.input;
          continue;
        }
      }
      if (loc.length === 1 && loc[0] === "params" && setParamsError(msg)) {
        first = first || paramsError;
        continue;
      }
      if (loc.length === 1 && loc[0] === "type") {
        setTypeError(msg);
        first = first || select;
        continue;
      }
      if (loc.length && META_FIELDS[loc[0]]) {
        const name = META_FIELDS[loc[0]];
        setMetaError(name, msg);
        first = first || meta[name];
        continue;
      }
      general.push(loc.length ? `${loc.join(".")}: ${msg}` : msg);
    }
    if (!items.length && fallback) general.push(fallback);
    setFormError(general);
    if (first === paramsError) paramsError.closest("fieldset")?.querySelector("input:checked")?.focus();
    else (first || (general.length ? formError : null))?.focus?.();
  }

  async function submit(event) {
    event.preventDefault();
    if (submitting || uploading.size) return;
    clearErrors();
    let firstInvalid = null;
    let invalid = 0;
    for (const w of activeWidgets()) {
      const problem = w.validate();
      showAt(w, problem);
      if (problem) invalid += 1;
      if (problem && !firstInvalid) firstInvalid = w;
    }
    const metaOk = validateMeta();
    if (!metaOk) invalid += 1;
    if (invalid) {
      setFormError(`${invalid} field${invalid === 1 ? " needs" : "s need"} attention: see the message${invalid === 1 ? "" : "s"} beside ${invalid === 1 ? "it" : "them"}.`);
      if (firstInvalid) firstInvalid.focus();
      else form.querySelector("[aria-invalid=true]")?.focus();
      announce("The form has errors. Please correct the highlighted fields.");
      return;
    }
    const body = buildBody();
    const fingerprint = JSON.stringify(body);
    if (!lastAttempt || lastAttempt.fingerprint !== fingerprint) lastAttempt = { fingerprint, key: uuid() };
    submitting = true;
    updateButton();
    form.setAttribute("aria-busy", "true");
    try {
      const task = await api.submitTask(body, lastAttempt.key);
      lastAttempt = null;
      toast(`Task ${task.id.slice(0, 8)} submitted (${body.type}).`, "success");
      announce(`Task submitted: ${body.type}`);
      state.textContent = `Last submitted: ${task.id}`;
      onSubmitted?.(task);
    } catch (err) {
      if (err instanceof ApiError && err.status === 422) {
        showServerErrors(err.details, err.message);
        announce("The server rejected some fields.");
      } else if (err instanceof ApiError && err.status === 401) {
        setFormError("Your session has expired. Sign in again.");
      } else if (err instanceof ApiError && err.status === 429) {
        // Over one of the owner's quotas: say which, and when to try again.
        const wait = Number(err.details?.retry_after);
        const text = `Not submitted: ${err.message}.${wait > 0 ? ` Try again in ${wait} s.` : ""}`;
        setFormError(text);
        toast(text, "error");
        announce(text);
      } else {
        setFormError(err.message || "Submitting failed.");
        toast(err.message || "Submitting failed.", "error");
      }
    } finally {
      submitting = false;
      form.removeAttribute("aria-busy");
      updateButton();
    }
  }

  form.addEventListener("submit", submit);
  select.addEventListener("change", renderFields);
  meta.run_at.addEventListener("input", showRunAt);
  meta.run_at.addEventListener("change", showRunAt);
  meta.max_attempts.addEventListener("blur", () => afterClick(validateMeta));
  document.addEventListener("timezonechange", describeZone);
  describeZone();

  async function load() {
    select.disabled = true;
    clear(select).append(el("option", { value: "" }, "Loading types…"));
    setFormError(null);
    try {
      types = (await api.taskTypes()) || [];
    } catch (err) {
      clear(select).append(el("option", { value: "" }, "Types unavailable"));
      clear(fieldsHost).append(
        el(
          "div",
          { class: "state state-error", testid: "types-error" },
          el("p", null, `Could not load task types: ${err.message}`),
          el("button", { type: "button", class: "btn btn-secondary btn-small", onclick: load }, "Try again"),
        ),
      );
      updateButton();
      return [];
    }
    clear(select);
    if (!types.length) {
      select.append(el("option", { value: "" }, "No task types registered"));
    } else {
      select.append(el("option", { value: "" }, "— choose a type —"));
      for (const t of types) select.append(el("option", { value: t.name }, t.name));
      let remembered = null;
      try {
        remembered = localStorage.getItem("taskqueue.lastType");
      } catch {
        remembered = null;
      }
      select.value = types.some((t) => t.name === remembered) ? remembered : types[0].name;
    }
    select.disabled = false;
    renderFields();
    onTypes?.(types);
    return types;
  }

  updateButton();
  return { load };
}
