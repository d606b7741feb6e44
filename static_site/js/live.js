// Push updates over the WebSocket API. The page opens one connection with the signed-in
// user's token; every change to one of that user's tasks arrives within about a second as
// {"type": "tasks", "tasks": [summary, ...], "more": bool} ("more": changes were left out,
// read the list again). While the socket is down the page polls (app.js) and reconnects with
// backoff; after each (re)connect it reads everything again, so nothing missed stays missing.
// The other modules subscribe: onTaskChange(callback), onConnect(callback), onStateChange(callback).

import { config } from "./api.js";
import { authEnabled, getToken } from "./auth.js";

// API Gateway closes a connection that is idle for 10 minutes: ping well before that.
const PING_MS = 4 * 60_000;
const PONG_TIMEOUT_MS = 15_000;
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30_000;
// A message holds at most 50 tasks; anything beyond a generous bound is ignored.
const MAX_TASKS_PER_MESSAGE = 200;
const MAX_MESSAGE_CHARS = 256 * 1024;

/**
 * The WebSocket URL from config.js: absolute (wss://<api>.execute-api.../live on AWS), or a
 * path on this page's origin (the local stack: "/live").
 */
export function websocketUrl(configured = config.websocketUrl, location = window.location) {
  if (!configured || typeof configured !== "string") return null;
  if (/^wss?:\/\//i.test(configured)) return configured;
  if (!configured.startsWith("/")) return null;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${configured}`;
}

function withToken(url, token) {
  return `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
}

/**
 * One connection for the page. States: "off" (no WebSocket configured: the page polls),
 * "connecting", "live", "offline" (dropped; polling, and a reconnect is scheduled).
 */
export function createLive({ url = websocketUrl(), tokenProvider = authEnabled ? getToken : null } = {}) {
  const taskListeners = new Set();
  const connectListeners = new Set();
  const stateListeners = new Set();
  let state = url ? "connecting" : "off";
  let socket = null;
  let retryDelay = RETRY_MIN_MS;
  let retryTimer = null;
  let pingTimer = null;
  let pongTimer = null;

  function setState(next) {
    if (next === state) return;
    state = next;
    for (const listener of stateListeners) listener(state);
  }

  function scheduleRetry() {
    clearTimeout(retryTimer);
    // Jitter, so the pages of a fleet do not all come back in the same second.
    const delay = Math.round(retryDelay * (0.75 + Math.random() * 0.5));
    retryDelay = Math.min(RETRY_MAX_MS, retryDelay * 2);
    retryTimer = setTimeout(connect, delay);
  }

  function stopPing() {
    clearInterval(pingTimer);
    clearTimeout(pongTimer);
    pingTimer = pongTimer = null;
  }

  function startPing(ws) {
    stopPing();
    pingTimer = setInterval(() => {
      if (ws.readyState !== WebSocket.OPEN) return;
      ws.send(JSON.stringify({ action: "ping" }));
      clearTimeout(pongTimer);
      // No pong: the connection is dead without having said so; start over.
      pongTimer = setTimeout(() => ws.close(4000, "no pong"), PONG_TIMEOUT_MS);
    }, PING_MS);
  }

  function receive(text) {
    if (typeof text !== "string" || text.length > MAX_MESSAGE_CHARS) return;
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (message?.type === "pong") {
      clearTimeout(pongTimer);
      return;
    }
    if (message?.type !== "tasks" || !Array.isArray(message.tasks)) return;
    const tasks = message.tasks
      .filter((task) => task && typeof task.id === "string" && typeof task.status === "string")
      .slice(0, MAX_TASKS_PER_MESSAGE);
    const more = Boolean(message.more);
    for (const listener of taskListeners) listener(tasks, { more });
  }

  async function connect() {
    clearTimeout(retryTimer);
    if (!url || socket) return;
    let target = url;
    if (tokenProvider) {
      const token = await tokenProvider().catch(() => null);
      if (!token) {
        setState("offline");
        scheduleRetry();
        return;
      }
      target = withToken(url, token);
    }
    let ws;
    try {
      ws = new WebSocket(target);
    } catch {
      setState("offline");
      scheduleRetry();
      return;
    }
    socket = ws;
    ws.addEventListener("open", () => {
      retryDelay = RETRY_MIN_MS;
      setState("live");
      startPing(ws);
      for (const listener of connectListeners) listener();
    });
    ws.addEventListener("message", (event) => receive(event.data));
    ws.addEventListener("close", () => {
      if (socket !== ws) return;
      socket = null;
      stopPing();
      setState("offline");
      scheduleRetry();
    });
  }

  return {
    start: connect,
    /** callback(tasks, {more}) for every pushed message: the user's tasks that changed. */
    onTaskChange(callback) {
      taskListeners.add(callback);
      return () => taskListeners.delete(callback);
    },
    /** callback() after every (re)connect: read what may have changed while disconnected. */
    onConnect(callback) {
      connectListeners.add(callback);
      return () => connectListeners.delete(callback);
    },
    onStateChange(callback) {
      stateListeners.add(callback);
      return () => stateListeners.delete(callback);
    },
    isLive: () => state === "live",
    state: () => state,
  };
}

/**
 * Shows "Live" while pushed updates arrive, otherwise "Updated N s ago" (the last time the
 * page read its tasks, which `noteFetched` records).
 */
export function createLiveStatus(node, live) {
  let fetchedAt = null;

  function describe() {
    if (live.isLive()) return "Live";
    if (fetchedAt == null) return live.state() === "connecting" ? "Connecting…" : "";
    const seconds = Math.max(0, Math.round((Date.now() - fetchedAt) / 1000));
    const age = seconds < 60 ? `${seconds} s` : `${Math.floor(seconds / 60)} min`;
    return `Updated ${age} ago`;
  }

  function render() {
    if (!node) return;
    const text = describe();
    if (node.textContent !== text) node.textContent = text;
    node.dataset.state = live.state();
    node.title = live.isLive()
      ? "Changes to your tasks appear as they happen."
      : "Not connected for live updates: the page checks for changes every few seconds.";
  }

  live.onStateChange(render);
  setInterval(() => {
    if (!document.hidden) render();
  }, 1000);
  render();

  return {
    /** The page just read its tasks (a load, a poll). */
    noteFetched() {
      fetchedAt = Date.now();
      render();
    },
  };
}
