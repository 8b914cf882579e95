// The playback service worker. The page hands it a playback session (the envelope's
// header and DEK, or the server's content URL, and the bearer token); it then answers
// the <audio> element's requests for `play/<session id>` itself. Each Range request
// becomes one Range request for exactly the sealed chunks that cover it, which are
// opened by an AsyncChunkOpener (wasm checks everything, crypto.subtle runs the
// AES-GCM under a non-extractable key); only bytes that `openChunk` authenticated are
// ever answered.
//
// A module service worker may not use top-level await: wasm is initialised lazily.

import init from "./pkg/tapeseal.js";
import { AsyncChunkOpener } from "./pkg/webcrypto.js";
import { serverError } from "./api.js";

/** Plaintext bytes answered for an open-ended range (`bytes=a-`): the element asks again. */
const WINDOW = 1 << 20;
/** The most plaintext bytes answered for any one request. */
const MAX_RANGE = 8 << 20;
/** How long to wait for the page to hand back a session this worker forgot. */
const RECOVER_MS = 3000;

/** @type {Map<string, object>} session id -> session */
const sessions = new Map();
/** session id -> counters, kept apart so the stats hook can read them after an error. */
const counters = new Map();
/** session id -> promise of a session being recovered from the page */
const recovering = new Map();

let wasmReady = null;
function wasm() {
  if (!wasmReady) {
    wasmReady = init({ module_or_path: new URL("./pkg/tapeseal_bg.wasm", import.meta.url) }).catch((err) => {
      wasmReady = null;
      throw err;
    });
  }
  return wasmReady;
}

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("message", (event) => {
  const msg = event.data ?? {};
  const port = event.ports[0];
  const reply = (value) => port?.postMessage(value);
  if (msg.type === "session") {
    event.waitUntil(
      install(msg.session).then(
        () => reply({ ok: true }),
        (err) => reply({ ok: false, code: errorCode(err), message: String(err?.message ?? err) }),
      ),
    );
  } else if (msg.type === "end") {
    end(msg.id);
    reply({ ok: true });
  } else if (msg.type === "stats") {
    reply({ ok: true, stats: { ...statsOf(msg.id) } });
  } else if (msg.type === "claim") {
    event.waitUntil(self.clients.claim().then(() => reply({ ok: true })));
  }
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (url.origin !== self.location.origin) return;
  const prefix = new URL("play/", self.registration.scope).pathname;
  if (!url.pathname.startsWith(prefix)) return;
  const id = decodeURIComponent(url.pathname.slice(prefix.length));
  event.respondWith(answer(event, id));
});

function statsOf(id) {
  let c = counters.get(id);
  if (!c) {
    c = { envelopeRequests: 0, envelopeBytes: 0, contentRequests: 0, contentBytes: 0 };
    counters.set(id, c);
  }
  return c;
}

/** Takes a session from the page; for LKM mode, authenticates its header with the DEK. */
async function install(s) {
  if (!s || typeof s.id !== "string") throw new Error("no session");
  end(s.id);
  const session = {
    id: s.id,
    mode: s.mode,
    envelopeUrl: s.envelopeUrl,
    envelopeSize: s.envelopeSize,
    contentUrl: s.contentUrl,
    size: s.size,
    contentType: s.contentType || "application/octet-stream",
    token: s.token,
    opener: null,
    layout: null,
  };
  if (s.mode === "lkm") {
    await wasm();
    try {
      // Rejects with DECRYPT_FAILED for a wrong DEK or an altered header.
      session.opener = await AsyncChunkOpener.forHeader(s.header, s.dek, s.envelopeSize);
    } finally {
      s.dek?.fill(0);
    }
    session.layout = session.opener.layout;
    if (session.layout.plaintextLength !== session.size) {
      end(s.id, session);
      throw Object.assign(new Error("the envelope's length does not match the recording's size"), {
        code: "DECRYPT_FAILED",
      });
    }
  } else if (s.mode !== "server") {
    throw new Error(`unknown mode ${s.mode}`);
  }
  sessions.set(session.id, session);
  statsOf(session.id);
}

function end(id, session = sessions.get(id)) {
  sessions.delete(id);
  if (!session) return;
  session.layout?.free();
  session.opener?.free();
  session.layout = null;
  session.opener = null;
  session.token = null;
}

/** A session this worker does not know (it was stopped and restarted): ask the page. */
async function recover(event, id) {
  if (recovering.has(id)) return recovering.get(id);
  const attempt = (async () => {
    let candidates = [];
    const own = event.clientId ? await self.clients.get(event.clientId) : null;
    if (own) candidates = [own];
    else candidates = await self.clients.matchAll({ type: "window" });
    for (const client of candidates) {
      const reply = await ask(client, { type: "need-session", id });
      if (reply?.session) {
        await install(reply.session);
        return sessions.get(id) ?? null;
      }
    }
    return null;
  })();
  recovering.set(id, attempt);
  try {
    return await attempt;
  } finally {
    recovering.delete(id);
  }
}

function ask(client, message) {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    const timer = setTimeout(() => resolve(null), RECOVER_MS);
    channel.port1.onmessage = (e) => {
      clearTimeout(timer);
      resolve(e.data);
    };
    client.postMessage(message, [channel.port2]);
  });
}

async function answer(event, id) {
  const request = event.request;
  let session = sessions.get(id);
  if (!session) {
    try {
      session = await recover(event, id);
    } catch (err) {
      return failed(event, id, err);
    }
  }
  if (!session) {
    return jsonError(404, "unknown_session", "this playback session has ended; select the recording again");
  }
  if (request.method !== "GET") {
    return jsonError(405, "method_not_allowed", "only GET", { Allow: "GET" });
  }
  const size = session.size;
  const range = parseRange(request.headers.get("Range"), size);
  const base = {
    "Content-Type": session.contentType,
    "Accept-Ranges": "bytes",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
  };
  if (range === "unsatisfiable") {
    return new Response(null, { status: 416, headers: { ...base, "Content-Range": `bytes */${size}` } });
  }
  if (!range) {
    return new Response(wholeBody(event, session), {
      status: 200,
      headers: { ...base, "Content-Length": String(size) },
    });
  }
  try {
    const body = await readPlain(session, range.start, range.end);
    return new Response(body, {
      status: 206,
      headers: {
        ...base,
        "Content-Length": String(body.length),
        "Content-Range": `bytes ${range.start}-${range.end}/${size}`,
      },
    });
  } catch (err) {
    return failed(event, id, err);
  }
}

/**
 * `bytes=a-b`, `bytes=a-` or `bytes=-n` as inclusive `{start, end}` within `size`,
 * capped (open-ended: WINDOW, else MAX_RANGE); null for no or an unusable Range (the
 * whole content), "unsatisfiable" for one outside it.
 */
function parseRange(value, size) {
  if (!value) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(value.trim());
  if (!m || (m[1] === "" && m[2] === "")) return null;
  let start;
  let end;
  let cap = MAX_RANGE;
  if (m[1] === "") {
    const n = Number(m[2]);
    if (n === 0 || size === 0) return "unsatisfiable";
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    if (m[2] === "") {
      end = Infinity;
      cap = WINDOW;
    } else {
      end = Number(m[2]);
      if (end < start) return null;
    }
    if (start >= size) return "unsatisfiable";
  }
  end = Math.min(end, size - 1, start + cap - 1);
  return { start, end };
}

/** Plaintext bytes `[start, end]` (inclusive) of the session's recording. */
async function readPlain(session, start, end) {
  if (session.mode === "server") return readContent(session, start, end);
  const layout = session.layout;
  if (!layout) throw Object.assign(new Error("session ended"), { code: "unknown_session" });
  const span = layout.byteRange(start, end + 1);
  const sealed = await fetchRange(session, session.envelopeUrl, span.start, span.end - 1, "envelope");
  const chunkSize = layout.chunkSize;
  const opener = session.opener;
  const opened = [];
  for (let i = span.firstChunk; i <= span.lastChunk; i++) {
    const place = layout.chunkRange(i);
    opened.push(opener.openChunk(i, sealed.subarray(place.start - span.start, place.end - span.start)));
  }
  // Every chunk must authenticate before any byte is answered.
  const settled = await Promise.allSettled(opened);
  sealed.fill(0);
  const failure = settled.find((r) => r.status === "rejected");
  if (failure) {
    for (const r of settled) r.value?.fill(0);
    throw failure.reason;
  }
  const out = new Uint8Array(end - start + 1);
  settled.forEach(({ value: plain }, k) => {
    const chunkStart = (span.firstChunk + k) * chunkSize;
    const from = Math.max(start, chunkStart);
    const to = Math.min(end + 1, chunkStart + plain.length);
    if (to > from) out.set(plain.subarray(from - chunkStart, to - chunkStart), from - start);
    plain.fill(0);
  });
  return out;
}

function readContent(session, start, end) {
  return fetchRange(session, session.contentUrl, start, end, "content");
}

/** Exactly bytes `[start, end]` of `url` with HTTP Range and the bearer token. */
async function fetchRange(session, url, start, end, what) {
  const c = statsOf(session.id);
  if (what === "envelope") c.envelopeRequests++;
  else c.contentRequests++;
  let response;
  try {
    response = await fetch(url, {
      headers: { Authorization: `Bearer ${session.token}`, Range: `bytes=${start}-${end}` },
      cache: "no-store",
    });
  } catch (err) {
    throw Object.assign(new Error(`the server could not be reached: ${err?.message ?? err}`), {
      code: "network",
      source: "network",
    });
  }
  if (response.status !== 206) {
    throw await serverError(response);
  }
  const bytes = new Uint8Array(await response.arrayBuffer());
  if (what === "envelope") c.envelopeBytes += bytes.length;
  else c.contentBytes += bytes.length;
  const total = what === "envelope" ? session.envelopeSize : session.size;
  if (response.headers.get("Content-Range") !== `bytes ${start}-${end}/${total}` || bytes.length !== end - start + 1) {
    throw Object.assign(new Error(`the server answered another range than bytes ${start}-${end}/${total}`), {
      code: "unexpected_range",
      source: "server",
    });
  }
  return bytes;
}


/** The whole content as a stream that fetches one window at a time, when read. */
function wholeBody(event, session) {
  let pos = 0;
  const clientId = event.clientId;
  return new ReadableStream(
    {
      async pull(controller) {
        if (pos >= session.size) {
          controller.close();
          return;
        }
        const end = Math.min(session.size, pos + WINDOW) - 1;
        try {
          const bytes = await readPlain(session, pos, end);
          pos = end + 1;
          controller.enqueue(bytes);
        } catch (err) {
          notify(clientId, session.id, err);
          controller.error(err);
        }
      },
    },
    { highWaterMark: 0 },
  );
}

function errorCode(err) {
  return typeof err?.code === "string" ? err.code : "internal";
}

function errorSource(err) {
  if (err?.name === "TapesealError") return "wasm";
  return err?.source ?? "sw";
}

/** Tells the page a session failed, and answers the request with an error, never bytes. */
function failed(event, id, err) {
  notify(event.clientId, id, err);
  const source = errorSource(err);
  const status = source === "server" && err.status >= 400 ? err.status : source === "network" ? 502 : 500;
  return jsonError(status, errorCode(err), String(err?.message ?? err));
}

async function notify(clientId, id, err) {
  const message = {
    type: "error",
    id,
    code: errorCode(err),
    source: errorSource(err),
    status: err?.status,
    message: String(err?.message ?? err),
  };
  const own = clientId ? await self.clients.get(clientId) : null;
  const targets = own ? [own] : await self.clients.matchAll({ type: "window" });
  for (const client of targets) client.postMessage(message);
}

function jsonError(status, code, message, headers = {}) {
  return new Response(JSON.stringify({ error: { code, message } }), {
    status,
    headers: { "Content-Type": "application/json", "Cache-Control": "no-store", ...headers },
  });
}
