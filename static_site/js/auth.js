// Sign-in through the Cognito hosted UI: authorization code + PKCE (S256), tokens kept in
// sessionStorage and refreshed before they expire. Without `cognito` in config.js (the local
// stack) there is no sign-in at all and requests go out without a token.

import { config, setAuth } from "./api.js";

const TOKENS_KEY = "taskqueue.tokens";
const PKCE_KEY = "taskqueue.pkce";
const EXPIRY_MARGIN_MS = 60_000;

const cognito = config.cognito && config.cognito.clientId && config.cognito.domain ? config.cognito : null;

let refreshing = null;
const listeners = new Set();

export const authEnabled = Boolean(cognito);

function domainUrl() {
  const domain = String(cognito.domain).replace(/\/+$/, "");
  return /^https?:\/\//.test(domain) ? domain : `https://${domain}`;
}

function redirectUri() {
  return cognito.redirectUri || `${window.location.origin}${window.location.pathname}`;
}

function base64url(bytes) {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(byteCount = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(byteCount)));
}

async function challengeFor(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

function readTokens() {
  try {
    return JSON.parse(sessionStorage.getItem(TOKENS_KEY) || "null");
  } catch {
    return null;
  }
}

function saveTokens(response, previous = null) {
  const tokens = {
    id_token: response.id_token || previous?.id_token || null,
    access_token: response.access_token || previous?.access_token || null,
    // Cognito does not send a new refresh token when refreshing; keep the old one.
    refresh_token: response.refresh_token || previous?.refresh_token || null,
    expires_at: Date.now() + Number(response.expires_in || 3600) * 1000,
  };
  sessionStorage.setItem(TOKENS_KEY, JSON.stringify(tokens));
  notify();
  return tokens;
}

function clearTokens() {
  sessionStorage.removeItem(TOKENS_KEY);
  notify();
}

function notify() {
  for (const listener of listeners) listener(currentUser());
}

export function onAuthChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function decodeJwt(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(
      [...atob(payload)].map((c) => `%${c.charCodeAt(0).toString(16).padStart(2, "0")}`).join(""),
    );
    return JSON.parse(json);
  } catch {
    return null;
  }
}

/** {name} of the signed-in user, or null. */
export function currentUser() {
  if (!cognito) return null;
  const tokens = readTokens();
  if (!tokens || (!tokens.refresh_token && tokens.expires_at <= Date.now())) return null;
  const claims = decodeJwt(tokens.id_token || tokens.access_token || "") || {};
  return { name: claims.email || claims["cognito:username"] || claims.username || claims.sub || "signed in" };
}

async function tokenRequest(params) {
  const response = await fetch(`${domainUrl()}/oauth2/token`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ client_id: cognito.clientId, ...params }).toString(),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error_description || data.error || `token endpoint answered ${response.status}`);
  return data;
}

async function refresh(tokens) {
  if (!refreshing) {
    refreshing = tokenRequest({ grant_type: "refresh_token", refresh_token: tokens.refresh_token })
      .then((data) => saveTokens(data, tokens))
      .catch(() => {
        clearTokens();
        return null;
      })
      .finally(() => {
        refreshing = null;
      });
  }
  return refreshing;
}

/** The bearer token for the API, refreshed when close to expiry; null when signed out. */
export async function getToken() {
  if (!cognito) return null;
  let tokens = readTokens();
  if (!tokens) return null;
  if (tokens.expires_at - EXPIRY_MARGIN_MS <= Date.now()) {
    if (!tokens.refresh_token) {
      clearTokens();
      return null;
    }
    tokens = await refresh(tokens);
    if (!tokens) return null;
  }
  return cognito.tokenUse === "access" ? tokens.access_token : tokens.id_token || tokens.access_token;
}

export async function signIn() {
  const verifier = randomString(48);
  const state = randomString(16);
  sessionStorage.setItem(
    PKCE_KEY,
    JSON.stringify({ verifier, state, returnTo: window.location.search + window.location.hash }),
  );
  const params = new URLSearchParams({
    response_type: "code",
    client_id: cognito.clientId,
    redirect_uri: redirectUri(),
    scope: (cognito.scopes || ["openid", "email", "profile"]).join(" "),
    state,
    code_challenge_method: "S256",
    code_challenge: await challengeFor(verifier),
  });
  window.location.assign(`${domainUrl()}/oauth2/authorize?${params}`);
}

export function signOut() {
  clearTokens();
  if (!cognito) return;
  const params = new URLSearchParams({
    client_id: cognito.clientId,
    logout_uri: cognito.logoutUri || redirectUri(),
  });
  window.location.assign(`${domainUrl()}/logout?${params}`);
}

/**
 * Call once at start-up: finishes a sign-in when the hosted UI sent us back with ?code=,
 * and wires the token into api.js. Resolves to the current user (or null).
 */
export async function initAuth() {
  if (!cognito) return null;
  setAuth({
    getToken,
    onUnauthorized: () => {
      const tokens = readTokens();
      if (tokens) clearTokens();
    },
  });
  const url = new URL(window.location.href);
  const code = url.searchParams.get("code");
  const returnedState = url.searchParams.get("state");
  const oauthError = url.searchParams.get("error");
  if (code || oauthError) {
    let pending = null;
    try {
      pending = JSON.parse(sessionStorage.getItem(PKCE_KEY) || "null");
    } catch {
      pending = null;
    }
    sessionStorage.removeItem(PKCE_KEY);
    window.history.replaceState(null, "", `${url.pathname}${pending?.returnTo || ""}`);
    if (oauthError) throw new Error(url.searchParams.get("error_description") || oauthError);
    if (!pending || pending.state !== returnedState) throw new Error("Sign-in failed: the state did not match. Try again.");
    const data = await tokenRequest({
      grant_type: "authorization_code",
      code,
      redirect_uri: redirectUri(),
      code_verifier: pending.verifier,
    });
    saveTokens(data);
  }
  if (readTokens()) await getToken();
  return currentUser();
}
