// Sign-in through the Cognito hosted UI: the authorization code flow with PKCE (S256), a nonce
// and state, and the refresh token grant, all by oauth4webapi (vendor/, MIT), which also checks
// the ID token's issuer, audience, times and nonce. Tokens are kept in sessionStorage and
// refreshed before they expire. Without `cognito` in config.js (the local stack) there is no
// sign-in at all and requests go out without a token.

import * as oauth from "../vendor/oauth4webapi/index.js";
import { config, setAuth } from "./api.js";

const TOKENS_KEY = "taskqueue.tokens";
const PENDING_KEY = "taskqueue.pkce";
const EXPIRY_MARGIN_MS = 60_000;

const cognito = config.cognito && config.cognito.clientId && config.cognito.domain ? config.cognito : null;

let refreshing = null;
const listeners = new Set();

export const authEnabled = Boolean(cognito);

function domainUrl() {
  const domain = String(cognito.domain).replace(/\/+$/, "");
  return /^https?:\/\//.test(domain) ? domain : `https://${domain}`;
}

/** Where the hosted UI sends the browser back: the configured URL, else this page. */
export function redirectUri() {
  return cognito.redirectUri || `${window.location.origin}${window.location.pathname}`;
}

/** The user pool as an OAuth authorization server (Cognito's documented endpoints). */
function authorizationServer() {
  return {
    issuer: `https://cognito-idp.${cognito.region}.amazonaws.com/${cognito.userPoolId}`,
    authorization_endpoint: `${domainUrl()}/oauth2/authorize`,
    token_endpoint: `${domainUrl()}/oauth2/token`,
  };
}

function client() {
  return { client_id: cognito.clientId };
}

function readJson(key) {
  try {
    return JSON.parse(sessionStorage.getItem(key) || "null");
  } catch {
    return null;
  }
}

function readTokens() {
  return readJson(TOKENS_KEY);
}

/** Keeps a token answer; Cognito sends no new refresh token on a refresh: the old one stays. */
function saveTokens(answer, previous = null) {
  const tokens = {
    id_token: answer.id_token || previous?.id_token || null,
    access_token: answer.access_token || previous?.access_token || null,
    refresh_token: answer.refresh_token || previous?.refresh_token || null,
    expires_at: Date.now() + Number(answer.expires_in || 3600) * 1000,
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

/** The payload of a JWT the token endpoint gave us (already checked there), for its name. */
function claimsOf(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(payload), (c) => c.charCodeAt(0))));
  } catch {
    return null;
  }
}

/** {name} of the signed-in user, or null. */
export function currentUser() {
  if (!cognito) return null;
  const tokens = readTokens();
  if (!tokens || (!tokens.refresh_token && tokens.expires_at <= Date.now())) return null;
  const claims = claimsOf(tokens.id_token || tokens.access_token || "") || {};
  return { name: claims.email || claims["cognito:username"] || claims.username || claims.sub || "signed in" };
}

async function refresh(tokens) {
  if (!refreshing) {
    const as = authorizationServer();
    refreshing = oauth
      .refreshTokenGrantRequest(as, client(), oauth.None(), tokens.refresh_token)
      .then((response) => oauth.processRefreshTokenResponse(as, client(), response))
      .then((answer) => saveTokens(answer, tokens))
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
  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const nonce = oauth.generateRandomNonce();
  sessionStorage.setItem(
    PENDING_KEY,
    JSON.stringify({ verifier, state, nonce, returnTo: window.location.search + window.location.hash }),
  );
  const url = new URL(authorizationServer().authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: cognito.clientId,
    redirect_uri: redirectUri(),
    scope: (cognito.scopes || ["openid", "email", "profile"]).join(" "),
    state,
    nonce,
    code_challenge_method: "S256",
    code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
  });
  window.location.assign(url.href);
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

/** The message of a failed sign-in: the server's own words when it gave some. */
function signInError(err) {
  const detail = err?.error_description || err?.cause?.error_description || err?.error || err?.message;
  return `Sign-in failed: ${detail || "unknown error"}. Try again.`;
}

/** Back from the hosted UI with ?code= (or ?error=): the code for tokens, checked. */
async function finishSignIn(url) {
  const pending = readJson(PENDING_KEY);
  sessionStorage.removeItem(PENDING_KEY);
  window.history.replaceState(null, "", `${url.pathname}${pending?.returnTo || ""}`);
  if (!pending) throw new Error("Sign-in failed: this browser tab did not start it. Try again.");
  const as = authorizationServer();
  let callback;
  try {
    callback = oauth.validateAuthResponse(as, client(), url, pending.state);
  } catch (err) {
    if (err instanceof oauth.AuthorizationResponseError) throw new Error(signInError(err));
    throw new Error("Sign-in failed: the state did not match. Try again.");
  }
  try {
    const response = await oauth.authorizationCodeGrantRequest(
      as, client(), oauth.None(), callback, redirectUri(), pending.verifier,
    );
    const answer = await oauth.processAuthorizationCodeResponse(as, client(), response, {
      expectedNonce: pending.nonce,
      requireIdToken: true,
    });
    saveTokens(answer);
  } catch (err) {
    throw new Error(signInError(err));
  }
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
      if (readTokens()) clearTokens();
    },
  });
  const url = new URL(window.location.href);
  if (url.searchParams.has("code") || url.searchParams.has("error")) await finishSignIn(url);
  if (readTokens()) await getToken();
  return currentUser();
}
