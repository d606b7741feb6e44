// The page's place in the URL: the list's filters and the open task. Each change the user
// makes is a history entry, so Back and Forward step through filters and opened tasks, and a
// reload or a shared link shows the same.

import { STATUSES } from "./util.js";

export const FILTER_KEYS = ["status", "type", "created_after", "created_before"];
const KEYS = [...FILTER_KEYS, "task"];
const listeners = new Set();

/** {status, type, created_after, created_before, task} from the query string ("" when absent). */
export function readState(search = window.location.search) {
  const params = new URLSearchParams(search);
  const state = {};
  for (const key of KEYS) state[key] = params.get(key) || "";
  const status = state.status.toUpperCase();
  state.status = STATUSES.includes(status) ? status : "";
  return state;
}

/**
 * Sets or (with "") removes keys of the query string, keeping the others. A new history entry
 * unless `replace`; nothing when the URL stays the same. Listeners are not called: the caller
 * has applied the change already.
 */
export function navigate(changes, { replace = false } = {}) {
  const url = new URL(window.location.href);
  for (const [key, value] of Object.entries(changes)) {
    if (value) url.searchParams.set(key, value);
    else url.searchParams.delete(key);
  }
  const next = `${url.pathname}${url.search}${url.hash}`;
  if (next === `${window.location.pathname}${window.location.search}${window.location.hash}`) return false;
  if (replace) window.history.replaceState(null, "", next);
  else window.history.pushState(null, "", next);
  return true;
}

/** `listener(state)` after Back or Forward. */
export function onNavigate(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

window.addEventListener("popstate", () => {
  const state = readState();
  for (const listener of listeners) listener(state);
});
