// The fetch wrapper: base URL and bearer token from window.TASKQUEUE_CONFIG (config.js),
// JSON in and out, only the routes and fields contract.js declares, and every failure turned
// into an ApiError with the server's error body.

import { CONTRACT } from "./contract.js";

export const config = Object.freeze({ apiBaseUrl: "", ...(window.TASKQUEUE_CONFIG || {}) });

const BASE = String(config.apiBaseUrl || "").replace(/\/+$/, "");

let tokenProvider = null;
let unauthorizedHandler = null;

/** auth.js registers how to get a bearer token (may refresh) and what to do on 401. */
export function setAuth({ getToken, onUnauthorized }) {
  tokenProvider = getToken || null;
  unauthorizedHandler = onUnauthorized || null;
}

export class ApiError extends Error {
  constructor(status, code, message, details = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export function apiUrl(path, query) {
  const url = `${BASE}${path.startsWith("/") ? path : `/${path}`}`;
  if (!query) return url;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value != null && value !== "") params.set(key, String(value));
  }
  const qs = params.toString();
  return qs ? `${url}?${qs}` : url;
}

const ROUTES = Object.entries(CONTRACT.routes).map(([key, route]) => {
  const [method, template] = key.split(" ");
  const pattern = new RegExp(`^${template.replace(/\{[^}]+\}/g, "[^/]+")}$`);
  return { key, method, template, pattern, ...route };
});

/** The declared route of a request; an undeclared one is a programming error. */
export function routeOf(method, path) {
  const route = ROUTES.find((r) => r.method === method && r.pattern.test(path));
  if (!route) throw new Error(`${method} ${path} is not declared in contract.js`);
  return route;
}

/**
 * `value` with only the fields `shape` declares (see contract.js). Whatever else the API
 * sends is dropped here, so the page cannot come to depend on an undeclared field.
 */
export function project(value, shape) {
  if (shape === true || value == null) return value;
  if (typeof shape === "string") return project(value, CONTRACT.shapes[shape]);
  if (shape.$extends) {
    const { $extends: base, ...own } = shape;
    return project(value, { ...CONTRACT.shapes[base], ...own });
  }
  if (Array.isArray(shape)) return Array.isArray(value) ? value.map((v) => project(v, shape[0])) : null;
  if (typeof value !== "object" || Array.isArray(value)) return null;
  const kept = {};
  if ("*" in shape) {
    for (const [key, v] of Object.entries(value)) kept[key] = project(v, shape["*"]);
    return kept;
  }
  for (const [key, fieldShape] of Object.entries(shape)) {
    if (key in value) kept[key] = project(value[key], fieldShape);
  }
  return kept;
}

function checkDeclared(route, what, names) {
  const declared = route[what] || [];
  const extra = names.filter((name) => !declared.includes(name));
  if (extra.length) throw new Error(`${route.key}: ${what} ${extra.join(", ")} not declared in contract.js`);
}

/**
 * request("GET", "/tasks", {query: {...}}) -> the parsed JSON answer, projected on the shape
 * contract.js declares for the route (null for an empty body).
 * Throws ApiError: status 0 for a network failure, otherwise the HTTP status and the
 * `{"error": {code, message, details}}` body when the server sent one.
 */
export async function request(method, path, { query, body, headers = {}, signal } = {}) {
  const route = routeOf(method, path);
  checkDeclared(route, "query", Object.keys(query || {}));
  checkDeclared(route, "body", body && typeof body === "object" ? Object.keys(body) : []);
  checkDeclared(route, "headers", Object.keys(headers));
  const init = { method, headers: { Accept: "application/json", ...headers }, signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (tokenProvider) {
    const token = await tokenProvider();
    if (token) init.headers.Authorization = `Bearer ${token}`;
  }
  let response;
  try {
    response = await fetch(apiUrl(path, query), init);
  } catch (err) {
    if (err?.name === "AbortError") throw err;
    throw new ApiError(0, "network", "Cannot reach the server. Check your connection and try again.");
  }
  const raw = await response.text();
  let data = null;
  if (raw) {
    try {
      data = JSON.parse(raw);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    // API Gateway's own answers (the JWT authorizer's 401, a 503) are not ours: only the
    // status is certain then.
    const err = project(data, CONTRACT.error)?.error || {};
    const message = (typeof err.message === "string" && err.message) || `${response.status} ${response.statusText || "error"}`;
    const error = new ApiError(response.status, err.code || `http_${response.status}`, message, err.details ?? null);
    if (response.status === 401 && unauthorizedHandler) unauthorizedHandler(error);
    throw error;
  }
  return project(data, route.response);
}

export const api = {
  taskTypes: () => request("GET", "/task-types"),
  listTasks: (query, opts) => request("GET", "/tasks", { query, ...opts }),
  getTask: (id, opts) => request("GET", `/tasks/${encodeURIComponent(id)}`, opts),
  submitTask: (body, idempotencyKey) =>
    request("POST", "/tasks", { body, headers: { "Idempotency-Key": idempotencyKey } }),
  cancelTask: (id) => request("DELETE", `/tasks/${encodeURIComponent(id)}`),
  retryTask: (id, restart) => request("POST", `/tasks/${encodeURIComponent(id)}/retry`, { body: { restart } }),
  stats: () => request("GET", "/stats"),
  deadLetters: () => request("GET", "/dead-letters"),
  redrive: () => request("POST", "/dead-letters/redrive", { body: {} }),
  createUpload: (body) => request("POST", "/uploads", { body }),
  /** action "cancel" or "retry" (resuming) on up to 50 tasks; one result per task. */
  bulk: (action, ids) => request("POST", "/tasks/bulk", { body: { action, ids, restart: false } }),
};

/**
 * PUT a file to a presigned upload URL with XMLHttpRequest so progress can be shown.
 * `onProgress(loaded, total)`; resolves when S3 answers 2xx.
 */
export function putFile(ticket, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(ticket.method || "PUT", ticket.url);
    for (const [name, value] of Object.entries(ticket.headers || {})) {
      // The browser sets these itself and refuses them from scripts.
      if (["host", "content-length"].includes(name.toLowerCase())) continue;
      xhr.setRequestHeader(name, value);
    }
    xhr.upload.onprogress = (event) => {
      if (onProgress) onProgress(event.loaded, event.lengthComputable ? event.total : file.size);
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        if (onProgress) onProgress(file.size, file.size);
        resolve();
      } else {
        reject(new ApiError(xhr.status, "upload_failed", `Upload of ${file.name} failed (${xhr.status}).`));
      }
    };
    xhr.onerror = () => reject(new ApiError(0, "network", `Upload of ${file.name} failed: network error.`));
    xhr.onabort = () => reject(new ApiError(0, "aborted", `Upload of ${file.name} was cancelled.`));
    xhr.send(file);
  });
}
