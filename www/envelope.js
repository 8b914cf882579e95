// Reading recordings for the playback page: the envelope's header by Range, the DEK
// from the LKM with a grant, the header authenticated against that DEK, whole small
// envelopes opened chunk by chunk, and how content is shown as text. Every function
// takes the playback `play` ({pb, token, pageStats}) it works for.

import { headerLength, inspect } from "./pkg/tapeseal.js";
import { AsyncChunkOpener } from "./pkg/webcrypto.js";
import { PageError, call, callJson, lkmUnwrap } from "./api.js";

/** "audio", "text" or "other", from the media kind and content type. */
export function kindOf(mediaKind, contentType = "") {
  const type = contentType.split(";")[0].trim().toLowerCase();
  if (mediaKind === "call" || type.startsWith("audio/")) return "audio";
  if (["email", "chat", "message", "transcript"].includes(mediaKind)) return "text";
  if (type.startsWith("text/") || type.endsWith("+json") || type === "application/json" || type === "message/rfc822") {
    return "text";
  }
  return "other";
}

/** In LKM mode: the header (by Range) and the DEK (from the LKM), fetched side by side. */
export async function headerAndDek(play, envelope) {
  const [header, dek] = await Promise.allSettled([envelope ?? fetchHeader(play), dekFromLkm(play)]);
  if (header.status === "rejected" || dek.status === "rejected") {
    if (dek.status === "fulfilled") dek.value.fill(0);
    throw dek.status === "rejected" ? dek.reason : header.reason;
  }
  return [header.value, dek.value];
}

/** The DEK from the LKM; a grant that expired on the way is replaced once. */
async function dekFromLkm(play) {
  try {
    return await lkmUnwrap(play.pb.grant);
  } catch (err) {
    if (err?.code !== "grant_expired") throw err;
    // A slow network or a clock that runs ahead: one fresh grant, then give up.
    const path = `/v1/recordings/${encodeURIComponent(play.pb.recording_id)}/playback`;
    const fresh = await callJson(play.token, path, { method: "POST" });
    if (fresh.mode !== "lkm" || !fresh.grant) throw err;
    play.pb = { ...play.pb, grant: fresh.grant };
    return lkmUnwrap(fresh.grant);
  }
}

async function fetchHeader(play) {
  const { pb } = play;
  const first = await envelopeRange(play, 0, Math.min(4096, pb.envelope_size) - 1);
  const length = headerLength(first.subarray(0, 14));
  if (length <= first.length) return first.slice(0, length);
  const rest = await envelopeRange(play, first.length, length - 1);
  const header = new Uint8Array(length);
  header.set(first);
  header.set(rest, first.length);
  return header;
}

async function envelopeRange(play, start, end) {
  play.pageStats.envelopeRequests++;
  const response = await call(play.token, play.pb.envelope_url, { headers: { Range: `bytes=${start}-${end}` } });
  const bytes = new Uint8Array(await response.arrayBuffer());
  play.pageStats.envelopeBytes += bytes.length;
  if (response.status !== 206 || bytes.length !== end - start + 1) {
    throw new PageError("unexpected_range", `asked for envelope bytes ${start}-${end}, got ${bytes.length} bytes`, {
      source: "server",
      status: response.status,
    });
  }
  return bytes;
}

/**
 * Authenticates the header with the DEK (AsyncChunkOpener.forHeader, which takes the
 * DEK at once); rejects before anything plays.
 */
export async function openerFor(pb, header, dek, envelopeSize) {
  const opener = await AsyncChunkOpener.forHeader(header, dek, envelopeSize);
  const info = inspect(header);
  const layout = opener.layout;
  const plaintextLength = layout.plaintextLength;
  layout.free();
  if (info.recordingId !== pb.recording_id || plaintextLength !== pb.size) {
    opener.free();
    throw new PageError("DECRYPT_FAILED", "the envelope belongs to another recording or has another length", {
      source: "wasm",
    });
  }
  return opener;
}

export async function wholeEnvelope(play) {
  play.pageStats.envelopeRequests++;
  const response = await call(play.token, play.pb.envelope_url);
  const sealed = new Uint8Array(await response.arrayBuffer());
  play.pageStats.envelopeBytes += sealed.length;
  if (sealed.length !== play.pb.envelope_size) {
    throw new PageError("DECRYPT_FAILED", "the envelope is not the length the server announced", { source: "wasm" });
  }
  return sealed;
}

/** Every chunk, each authenticated by openChunk; rejects if any fails, showing nothing. */
export async function openAll(opener, sealed) {
  const layout = opener.layout;
  try {
    const out = new Uint8Array(layout.plaintextLength);
    const opened = [];
    for (let i = 0; i < layout.chunkCount; i++) {
      const place = layout.chunkRange(i);
      const at = i * layout.chunkSize;
      opened.push(opener.openChunk(i, sealed.subarray(place.start, place.end)).then((plain) => out.set(plain, at)));
    }
    const settled = await Promise.allSettled(opened);
    const failure = settled.find((r) => r.status === "rejected");
    if (failure) {
      out.fill(0);
      throw failure.reason;
    }
    return out;
  } finally {
    layout.free();
  }
}

export function asText(bytes, contentType) {
  const charset = /charset=([^;]+)/i.exec(contentType)?.[1]?.trim() ?? "utf-8";
  let text;
  try {
    text = new TextDecoder(charset).decode(bytes);
  } catch {
    text = new TextDecoder().decode(bytes);
  }
  const type = contentType.split(";")[0].trim().toLowerCase();
  if (type === "application/json" || type.endsWith("+json")) {
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      return text;
    }
  }
  return text;
}
