// Shared by the playback page and the admin page: calls to the tapeseal server and to
// an organisation's Local Key Manager, and the one place that turns a failure into a
// message a person can act on.

/** A failure with a stable `code`, where it came from, and the HTTP status if any. */
export class PageError extends Error {
  /**
   * @param {string} code  stable code: the server's or the LKM's `code`, a wasm
   *   `TapesealError` code, or one of this file's own (`lkm_unreachable`, `network`, ...)
   * @param {string} message  what the other side said, for people
   * @param {{source?: string, status?: number, url?: string}} [info]
   */
  constructor(code, message, info = {}) {
    super(message);
    this.name = "PageError";
    this.code = code;
    this.source = info.source ?? "page";
    this.status = info.status;
    this.url = info.url;
  }
}

/** Codes the wasm opener uses when an envelope does not authenticate or parse. */
const AUTH_FAILURES = new Set([
  "DECRYPT_FAILED",
  "MALFORMED_HEADER",
  "INCOMPLETE_HEADER",
  "UNSUPPORTED_VERSION",
  "UNSUPPORTED_SUITE",
  "FORMAT_LIMIT",
  "OUT_OF_RANGE",
]);

/** True for errors that mean "this file failed authentication or is corrupt". */
export function isAuthFailure(code) {
  return AUTH_FAILURES.has(code) || code === "decrypt_failed" || code === "unreadable_recording";
}

/** Any thrown value as a PageError (wasm errors keep their `.code`). */
export function toPageError(err) {
  if (err instanceof PageError) return err;
  if (err && typeof err.code === "string" && err.name === "TapesealError") {
    return new PageError(err.code, err.message, { source: "wasm" });
  }
  return new PageError("internal", String(err?.message ?? err), { source: "page" });
}

/** What a person should read for `err`. */
export function describe(err) {
  const e = toPageError(err);
  const said = e.message ? ` (${e.code}: ${e.message})` : ` (${e.code})`;
  if (e.source === "wasm" || e.source === "sw-auth" || isAuthFailure(e.code)) {
    return (
      "This recording failed authentication: the file has been altered or is corrupt, " +
      `so nothing from it was played or shown${said}.`
    );
  }
  if (e.source === "lkm") {
    if (e.code === "lkm_unreachable") {
      return (
        `The browser could not reach or trust the Local Key Manager at ${e.url}. ` +
        "It may be down, blocked, not allow this page's origin, or use a certificate " +
        "this browser does not trust."
      );
    }
    if (e.code === "grant_expired") {
      return (
        "The playback grant expired before the Local Key Manager received it. " +
        `Select the recording again to get a fresh grant${said}.`
      );
    }
    if (e.code === "grant_replayed") {
      return `The Local Key Manager refused a grant that was already used; select the recording again${said}.`;
    }
    return `The Local Key Manager refused to release the recording's key${said}.`;
  }
  if (e.code === "network") {
    return `The browser could not reach the tapeseal server${e.message ? `: ${e.message}` : ""}.`;
  }
  if (e.code === "unauthorized") {
    return `The token was not accepted; sign in again${said}.`;
  }
  if (e.source === "server") {
    const status = e.status ? `HTTP ${e.status} ` : "";
    return `The server answered ${status}${e.code}: ${e.message}`;
  }
  return `Something went wrong${said}.`;
}

/** Shows `err` in a page's error box (`ui.error`) and sets the error state. */
export function showError(ui, err) {
  const e = toPageError(err);
  ui.error.textContent = describe(e);
  ui.error.hidden = false;
  ui.status.textContent = "";
  setState("error", e.code);
  return e;
}

/** Empties a page's error box. */
export function clearError(ui) {
  ui.error.hidden = true;
  ui.error.textContent = "";
}

/** Reads a `{"error":{"code","message"}}` body, or makes do with the status line. */
export async function serverError(response) {
  let code = `http_${response.status}`;
  let message = response.statusText || "no message";
  try {
    const body = await response.json();
    if (body?.error?.code) {
      code = body.error.code;
      message = body.error.message ?? message;
    }
  } catch {
    // not JSON: keep the status line
  }
  return new PageError(code, message, { source: "server", status: response.status });
}

/** The token a page keeps for this tab only. */
export const tokens = {
  get: (key) => sessionStorage.getItem(key),
  set: (key, value) => sessionStorage.setItem(key, value),
  clear: (key) => sessionStorage.removeItem(key),
};

/** Checks that what was typed looks like a tapeseal API token. */
export function checkToken(value) {
  const token = value.trim();
  if (!/^tsk_[A-Za-z0-9_-]{8,}$/.test(token)) {
    throw new PageError("bad_token", "an API token starts with tsk_", { source: "page" });
  }
  return token;
}

/**
 * A sign-in link (`#token=tsk_…&recording=…`, as `cargo xtask demo` prints it): keeps
 * the token for this tab and takes it out of the address bar and the history at once.
 * The fragment never reaches a server. Returns the link's other parameters.
 */
export function takeLink(key) {
  const params = new URLSearchParams(location.hash.slice(1));
  const value = params.get("token");
  if (value !== null) {
    history.replaceState(null, "", location.pathname + location.search);
    params.delete("token");
    tokens.set(key, checkToken(value));
  }
  return params;
}

/**
 * One request to the tapeseal server with the bearer token. Returns the Response on
 * 2xx; throws a PageError for an error status or a network failure.
 */
export async function call(token, path, { method = "GET", json, headers = {} } = {}) {
  const init = { method, headers: { Authorization: `Bearer ${token}`, ...headers }, cache: "no-store" };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new PageError("network", String(err?.message ?? err), { source: "network" });
  }
  if (!response.ok) throw await serverError(response);
  return response;
}

/** `call`, then the JSON body (or null for 204). */
export async function callJson(token, path, options) {
  const response = await call(token, path, options);
  return response.status === 204 ? null : response.json();
}

/**
 * Asks the organisation's LKM for a recording's DEK with a playback grant. Returns the
 * 32-byte DEK; the caller zeroes it when done. The browser sends no credentials of its
 * own: the grant is what authorises it.
 */
export async function lkmUnwrap(grant) {
  let response;
  try {
    response = await fetch(grant.lkm_url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ grant: grant.token, keypairId: grant.keypair_id, body: grant.wrapped_dek }),
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
  } catch {
    throw new PageError("lkm_unreachable", "", { source: "lkm", url: grant.lkm_url });
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // handled below
  }
  if (!response.ok) {
    const code = typeof body?.code === "string" ? body.code : `http_${response.status}`;
    const message = typeof body?.message === "string" ? body.message : response.statusText;
    throw new PageError(code, message, { source: "lkm", status: response.status, url: grant.lkm_url });
  }
  const dek = typeof body?.body === "string" ? fromBase64(body.body) : null;
  if (!dek || dek.length !== 32) {
    dek?.fill(0);
    throw new PageError("lkm_bad_answer", "the answer held no 32-byte key", {
      source: "lkm",
      status: response.status,
      url: grant.lkm_url,
    });
  }
  return dek;
}

/** Standard base64 to bytes; null if it is not base64. */
export function fromBase64(text) {
  try {
    const raw = atob(text);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes;
  } catch {
    return null;
  }
}

/** Lower-case hex SHA-256 of bytes. */
export async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** 1536000 -> "1.5 MB". */
export function formatBytes(n) {
  if (n == null) return "";
  if (n < 1000) return `${n} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let value = n;
  let unit = -1;
  do {
    value /= 1000;
    unit++;
  } while (value >= 1000 && unit < units.length - 1);
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** Unix milliseconds as local date and time, or "" for null. */
export function formatTime(ms) {
  if (ms == null) return "";
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** Sets the page's test hooks: `data-state` and `data-error-code` on <body>. */
export function setState(state, code) {
  document.body.dataset.state = state;
  if (code) document.body.dataset.errorCode = code;
  else delete document.body.dataset.errorCode;
}

/** Creates an element with text content and attributes (never HTML). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name.startsWith("data-")) node.setAttribute(name, value);
    else if (name === "class") node.className = value;
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}
