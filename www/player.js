// The playback page. A player signs in with a token, picks a recording, and the
// server answers how to play it: in LKM mode with a short-lived, single-use grant that
// the organisation's Local Key Manager exchanges for the recording's DEK (the server
// never sees it); in server mode through the server's decrypting content URL. Audio is
// played through the service worker (sw.js), which fetches and opens only the sealed
// chunks each Range request needs; text is fetched whole and opened here. Nothing is
// played or shown unless it authenticated: wasm checks the header and every chunk's
// place, crypto.subtle each chunk's tag (the package's AsyncChunkOpener).

import init, { headerLength } from "./pkg/tapeseal.js";
import { asText, headerAndDek, kindOf, openAll, openerFor, wholeEnvelope } from "./envelope.js";
import {
  PageError,
  clearError as clearErrorIn,
  showError as showErrorIn,
  call,
  callJson,
  checkToken,
  el,
  formatBytes,
  formatTime,
  isAuthFailure,
  setState,
  sha256Hex,
  takeLink,
  toPageError,
  tokens,
} from "./api.js";

const TOKEN_KEY = "tapeseal.playerToken";
const PAGE_SIZE = 100;
/** Largest envelope shown as text (fetched and opened whole). */
const MAX_TEXT = 32 << 20;
/** Plaintext bytes per request when the digest hook reads audio through the worker. */
const DIGEST_STEP = 4 << 20;

const $ = (id) => document.getElementById(id);
const ui = {
  signin: $("signin"),
  form: $("signin-form"),
  tokenInput: $("token"),
  library: $("library"),
  tbody: document.querySelector("#recordings tbody"),
  empty: $("empty"),
  more: $("more"),
  refresh: $("refresh"),
  signout: $("signout"),
  viewer: $("viewer"),
  title: $("viewer-title"),
  meta: $("viewer-meta"),
  audio: $("audio"),
  text: $("text"),
  error: $("error"),
  status: $("status"),
};

/** The playback in progress: its session (shared with the worker), DEK and plaintext. */
let current = null;
/** Bumped on every pick, so a slow answer for an older pick is dropped. */
let generation = 0;
let lastId = null;
/** The listed recordings by id. */
const listed = new Map();
/** How often the worker asked for a session again (it had been stopped). */
let handovers = 0;

const wasmReady = init();
const workerReady = startWorker();
workerReady.catch(() => {});

// ---- service worker ----------------------------------------------------------------

async function startWorker() {
  if (!("serviceWorker" in navigator)) {
    throw new PageError("no_service_worker", "this browser offers no service worker here (a private window?)");
  }
  const registration = await navigator.serviceWorker.register("sw.js", { type: "module" });
  await navigator.serviceWorker.ready;
  if (!navigator.serviceWorker.controller) {
    const changed = new Promise((resolve) =>
      navigator.serviceWorker.addEventListener("controllerchange", resolve, { once: true }),
    );
    // An active worker claims pages at activation; a page loaded afterwards without
    // one (a hard reload) asks to be claimed.
    registration.active?.postMessage({ type: "claim" });
    await Promise.race([changed, new Promise((resolve) => setTimeout(resolve, 5000))]);
    if (!navigator.serviceWorker.controller) {
      throw new PageError("no_service_worker", "the playback service worker did not take control of this page");
    }
  }
  return registration;
}

/** Posts a message to the worker controlling this page and waits for its reply. */
async function ask(message) {
  await workerReady;
  const worker = navigator.serviceWorker.controller;
  if (!worker) throw new PageError("no_service_worker", "no service worker controls this page");
  return new Promise((resolve, reject) => {
    const channel = new MessageChannel();
    const timer = setTimeout(() => reject(new PageError("no_service_worker", "the service worker did not answer")), 10000);
    channel.port1.onmessage = (event) => {
      clearTimeout(timer);
      resolve(event.data);
    };
    worker.postMessage(message, [channel.port2]);
  });
}

navigator.serviceWorker?.addEventListener("message", (event) => {
  const msg = event.data ?? {};
  if (msg.type === "need-session") {
    // The worker was stopped and forgot the session: hand it over again.
    const s = current?.session;
    const alive = s && s.id === msg.id && !current.ended;
    if (alive) handovers++;
    event.ports[0]?.postMessage({ session: alive ? s : null });
  } else if (msg.type === "error" && current?.session?.id === msg.id) {
    const source = msg.source === "wasm" ? "sw-auth" : msg.source;
    fail(new PageError(msg.code, msg.message, { source, status: msg.status }));
  }
});
navigator.serviceWorker?.startMessages();

// ---- sign in and the list ------------------------------------------------------------

function token() {
  return tokens.get(TOKEN_KEY);
}

function showSignedIn(signedIn) {
  ui.signin.hidden = signedIn;
  ui.library.hidden = !signedIn;
  if (!signedIn) ui.viewer.hidden = true;
}

async function loadRecordings(append = false) {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (append && lastId) query.set("after", lastId);
  ui.status.textContent = "Loading recordings…";
  const list = await callJson(token(), `/v1/recordings?${query}`);
  if (!append) {
    ui.tbody.replaceChildren();
    listed.clear();
  }
  for (const rec of list) {
    listed.set(rec.id, rec);
    ui.tbody.append(row(rec));
  }
  lastId = list.length ? list[list.length - 1].id : lastId;
  ui.more.hidden = list.length < PAGE_SIZE;
  ui.empty.hidden = ui.tbody.children.length > 0;
  ui.status.textContent = `${ui.tbody.children.length} recording(s).`;
}

function row(rec) {
  const media = kindOf(rec.media_kind, rec.content_type);
  const verb = media === "audio" ? "Play" : media === "text" ? "Open" : "Open";
  const button = el("button", {
    type: "button",
    text: verb,
    "aria-label": `${verb} ${rec.media_kind} ${rec.conversation_id ?? rec.id}`,
    "data-recording-id": rec.id,
  });
  button.addEventListener("click", () => pick(rec));
  return el(
    "tr",
    { "data-recording-id": rec.id, "data-kind": rec.media_kind },
    el("td", { text: rec.media_kind }),
    el("td", { text: rec.conversation_id ?? "—", title: rec.id }),
    el("td", { text: formatTime(rec.created_at) }),
    el("td", { class: "num", text: formatBytes(rec.size) }),
    el("td", {}, button),
  );
}

// ---- playback ------------------------------------------------------------------------

async function pick(rec) {
  const mine = ++generation;
  for (const tr of ui.tbody.querySelectorAll("tr[aria-current]")) tr.removeAttribute("aria-current");
  ui.tbody.querySelector(`tr[data-recording-id="${CSS.escape(rec.id)}"]`)?.setAttribute("aria-current", "true");
  await stop();
  clearError();
  setState("loading");
  ui.viewer.hidden = false;
  ui.title.textContent = `${rec.media_kind} · ${rec.conversation_id ?? rec.id}`;
  ui.meta.textContent = `${rec.content_type} · ${formatBytes(rec.size)} · ${formatTime(rec.created_at)}`;
  ui.status.textContent = "Getting the recording…";
  try {
    const pb = await callJson(token(), `/v1/recordings/${encodeURIComponent(rec.id)}/playback`, { method: "POST" });
    if (mine !== generation) return;
    const media = kindOf(pb.media_kind, pb.content_type);
    ui.meta.textContent += pb.mode === "lkm"
      ? " · key released to this browser by your organisation's key manager"
      : " · decrypted by the server";
    current = { generation: mine, media, pb, token: token(), session: null, plaintext: null, ended: false, pageStats: newStats() };
    if (media === "audio") await playAudio(current);
    else if (media === "text") await showText(current);
    else throw new PageError("unsupported_kind", `a ${pb.media_kind} recording (${pb.content_type}) cannot be shown here`);
  } catch (err) {
    if (mine === generation) fail(err);
  }
}

function newStats() {
  return { envelopeRequests: 0, envelopeBytes: 0, contentRequests: 0, contentBytes: 0 };
}

async function playAudio(play) {
  const { pb } = play;
  await workerReady;
  let header = null;
  let dek = null;
  if (pb.mode === "lkm") {
    ui.status.textContent = "Asking the key manager for the recording's key…";
    [header, dek] = await headerAndDek(play);
    try {
      (await openerFor(pb, header, dek, pb.envelope_size)).free();
    } catch (err) {
      dek.fill(0);
      throw err;
    }
  } else if (pb.mode !== "server") {
    throw new PageError("unsupported_mode", `unknown playback mode ${pb.mode}`);
  }
  play.session = {
    id: crypto.randomUUID(),
    mode: pb.mode,
    header,
    dek,
    envelopeUrl: new URL(pb.envelope_url, location.href).href,
    envelopeSize: pb.envelope_size,
    contentUrl: new URL(pb.content_url, location.href).href,
    size: pb.size,
    contentType: pb.content_type,
    token: token(),
  };
  const reply = await ask({ type: "session", session: play.session });
  if (!reply?.ok) {
    play.session.dek?.fill(0);
    const code = reply?.code ?? "internal";
    throw new PageError(code, reply?.message ?? "", { source: isAuthFailure(code) ? "sw-auth" : "sw" });
  }
  if (play !== current || play.ended) {
    // Another recording was picked meanwhile: this session ends before it starts.
    play.session.dek?.fill(0);
    navigator.serviceWorker.controller?.postMessage({ type: "end", id: play.session.id });
    return;
  }
  ui.audio.src = `play/${encodeURIComponent(play.session.id)}`;
  ui.audio.hidden = false;
  setState("ready");
  ui.status.textContent = "Ready.";
  try {
    await ui.audio.play();
  } catch (err) {
    if (err?.name === "NotAllowedError") ui.status.textContent = "Ready: press play.";
  }
}

async function showText(play) {
  const { pb } = play;
  let plaintext;
  if (pb.mode === "lkm") {
    if (pb.envelope_size > MAX_TEXT) throw new PageError("too_large", "this recording is too large to show as text");
    ui.status.textContent = "Asking the key manager for the recording's key…";
    const envelope = wholeEnvelope(play);
    const [sealed, dek] = await headerAndDek(play, envelope);
    let opener;
    try {
      const length = headerLength(sealed.subarray(0, 14));
      opener = await openerFor(pb, sealed.subarray(0, length), dek, sealed.length);
    } finally {
      dek.fill(0);
    }
    try {
      plaintext = await openAll(opener, sealed);
    } finally {
      opener.free();
    }
  } else {
    if (pb.size > MAX_TEXT) throw new PageError("too_large", "this recording is too large to show as text");
    play.pageStats.contentRequests++;
    const response = await call(token(), pb.content_url);
    plaintext = new Uint8Array(await response.arrayBuffer());
    play.pageStats.contentBytes += plaintext.length;
  }
  if (play !== current || play.ended) return;
  play.plaintext = plaintext;
  ui.text.textContent = asText(plaintext, pb.content_type);
  ui.text.hidden = false;
  setState("ready");
  ui.status.textContent = "Shown.";
}

/** Ends the current playback: zeroes its DEK, tells the worker, stops the element. */
async function stop() {
  const play = current;
  current = null;
  ui.audio.pause();
  ui.audio.removeAttribute("src");
  ui.audio.load();
  ui.audio.hidden = true;
  ui.text.textContent = "";
  ui.text.hidden = true;
  if (!play) return;
  play.ended = true;
  play.plaintext?.fill(0);
  play.plaintext = null;
  const session = play.session;
  if (session) {
    session.dek?.fill(0);
    navigator.serviceWorker?.controller?.postMessage({ type: "end", id: session.id });
  }
}

function fail(err) {
  const e = toPageError(err);
  const play = current;
  stop();
  if (play) current = { ...play, ended: true, session: null, plaintext: null, failed: e };
  showErrorIn(ui, e);
}

const clearError = () => clearErrorIn(ui);

ui.audio.addEventListener("playing", () => {
  if (current && !current.ended) {
    setState("playing");
    ui.status.textContent = "Playing.";
  }
});
ui.audio.addEventListener("pause", () => {
  if (current && !current.ended && document.body.dataset.state === "playing") setState("ready");
});
ui.audio.addEventListener("ended", () => {
  if (current && !current.ended) setState("ready");
});
ui.audio.addEventListener("error", () => {
  const play = current;
  if (!play || play.ended || !ui.audio.getAttribute("src")) return;
  const code = ui.audio.error?.code;
  // The worker's own message (failed authentication, a server error) says more;
  // give it a moment to arrive before settling for the element's code.
  setTimeout(() => {
    if (current === play && !play.ended) {
      fail(new PageError(`media_error_${code}`, ui.audio.error?.message || "the audio could not be played", { source: "page" }));
    }
  }, 500);
});

// ---- test hooks ------------------------------------------------------------------------

window.tapesealPage = {
  /** Sessions handed to a restarted service worker so far. */
  get handovers() {
    return handovers;
  },
  /** Hex SHA-256 of the current recording's whole plaintext, read the way it plays. */
  async digest() {
    const play = current;
    if (!play || play.ended) throw new Error("nothing is playing");
    if (play.media === "text") return sha256Hex(play.plaintext);
    const { size, id } = play.session;
    const all = new Uint8Array(size);
    for (let pos = 0; pos < size; ) {
      const end = Math.min(size, pos + DIGEST_STEP) - 1;
      const response = await fetch(`play/${encodeURIComponent(id)}`, { headers: { Range: `bytes=${pos}-${end}` } });
      if (response.status !== 206) throw new Error(`play/${id} answered ${response.status}`);
      const match = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(response.headers.get("Content-Range") ?? "");
      const bytes = new Uint8Array(await response.arrayBuffer());
      if (!match || Number(match[1]) !== pos || bytes.length !== Number(match[2]) - pos + 1) {
        throw new Error(`play/${id} answered ${response.headers.get("Content-Range")} for bytes=${pos}-${end}`);
      }
      all.set(bytes, pos);
      pos += bytes.length;
    }
    return sha256Hex(all);
  },
  /** Requests and bytes the service worker fetched for the current session (text: this page). */
  async stats() {
    const play = current;
    if (!play) return newStats();
    if (!play.session) return { ...play.pageStats };
    const reply = await ask({ type: "stats", id: play.session.id });
    return reply.stats;
  },
};

// ---- wiring --------------------------------------------------------------------------

ui.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearError();
  try {
    const value = checkToken(ui.tokenInput.value);
    tokens.set(TOKEN_KEY, value);
    ui.tokenInput.value = "";
    await signedIn();
  } catch (err) {
    tokens.clear(TOKEN_KEY);
    showSignedIn(false);
    fail(err);
  }
});

ui.signout.addEventListener("click", async () => {
  await stop();
  tokens.clear(TOKEN_KEY);
  ui.tbody.replaceChildren();
  showSignedIn(false);
  setState("idle");
  ui.status.textContent = "Signed out.";
});

ui.refresh.addEventListener("click", () => loadRecordings().catch(fail));
ui.more.addEventListener("click", () => loadRecordings(true).catch(fail));
window.addEventListener("pagehide", () => stop());

async function signedIn() {
  showSignedIn(true);
  setState("loading");
  await loadRecordings();
  setState("idle");
}

try {
  const link = takeLink(TOKEN_KEY);
  await wasmReady;
  if (token()) {
    await signedIn();
    // A link naming a recording opens it (the element starts playing if the
    // browser allows it without a click, else it waits for the play button).
    const linked = listed.get(link.get("recording") ?? "");
    if (linked) await pick(linked);
  } else showSignedIn(false);
} catch (err) {
  if (toPageError(err).code === "unauthorized") {
    tokens.clear(TOKEN_KEY);
    showSignedIn(false);
  }
  fail(err);
} finally {
  document.documentElement.dataset.loaded = "true";
}
