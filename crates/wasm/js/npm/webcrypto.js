// The WebCrypto path: openAsync, AsyncOpener and AsyncChunkOpener. WebAssembly does
// everything except the chunks' AES-256-GCM: the header, the DEK check, the payload
// key, the framing, the nonces and AAD, the truncation rules and every error. This file
// only imports the payload key into crypto.subtle as a non-extractable key, runs
// crypto.subtle.decrypt on exactly the bytes and parameters the wasm side names, and
// hands out plaintext once it (and everything before it) has been authenticated.
// `cargo xtask npm` ships it as web/webcrypto.js and, rewritten to CommonJS, as
// node/webcrypto.cjs.
import { DetachedChunks, DetachedStream, webCryptoError } from "./tapeseal.js";

/** Most chunks one call has in crypto.subtle at once. */
const IN_FLIGHT = 32;

function subtle() {
  const s = globalThis.crypto?.subtle;
  if (!s) throw webCryptoError(undefined, "importKey");
  return s;
}

/** The payload key as a non-extractable AES-GCM key; its bytes are zeroed at once. */
async function importKey(raw) {
  try {
    const key = subtle().importKey("raw", raw, "AES-GCM", false, ["decrypt"]);
    raw.fill(0);
    return await key;
  } catch (err) {
    throw webCryptoError(err, "importKey");
  } finally {
    raw.fill(0);
  }
}

/** Opens one sealed chunk (ciphertext, then tag) with the nonce and AAD of `job`. */
function decrypt(key, job, sealed) {
  const run = (cryptoKey) =>
    subtle()
      .decrypt({ name: "AES-GCM", iv: job.iv, additionalData: job.additionalData, tagLength: 128 }, cryptoKey, sealed)
      .then(
        (plain) => new Uint8Array(plain),
        (err) => {
          throw webCryptoError(err, "decrypt");
        },
      );
  // With the key at hand, crypto.subtle copies `sealed` before this returns.
  return key instanceof Promise ? key.then(run) : run(key);
}

/**
 * `open(job)` for every job, at most IN_FLIGHT at once; the results in order. On a
 * failure it starts nothing more, waits for what is in flight, zeroes what was opened
 * and rejects with the first error.
 */
async function mapInFlight(jobs, open) {
  const results = new Array(jobs.length);
  let next = 0;
  let failure;
  const worker = async () => {
    while (failure === undefined && next < jobs.length) {
      const i = next++;
      try {
        results[i] = await open(jobs[i]);
      } catch (err) {
        failure ??= [err];
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, jobs.length) }, worker));
  if (failure) {
    for (const r of results) r?.fill(0);
    throw failure[0];
  }
  return results;
}

function concat(parts) {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Bytes as a Uint8Array (a view of them where they already are one). */
function asBytes(bytes) {
  return bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
}

/**
 * Opens a whole envelope with its DEK, like `open`, with each chunk's AES-256-GCM in
 * crypto.subtle. Resolves to the plaintext; rejects with the same error `open` throws.
 * Do not change `envelope` before the promise settles.
 */
async function openAsync(envelope, dek) {
  const bytes = asBytes(envelope);
  const chunks = DetachedChunks.forEnvelope(bytes, dek);
  try {
    const plain = new Uint8Array(chunks.plaintextLength);
    const key = importKey(chunks.takeKey());
    try {
      await mapInFlight(chunks.jobs(), async (job) => {
        plain.set(await decrypt(key, job, bytes.subarray(job.start, job.end)), job.at);
      });
    } catch (err) {
      plain.fill(0);
      throw err;
    }
    return plain;
  } finally {
    chunks.free();
  }
}

/**
 * Streaming decryption with crypto.subtle: `push` envelope bytes in order, get back
 * only authenticated plaintext, and `finish` to check the stream was complete. The
 * same rules and errors as `Opener`; calls may overlap, and each resolves only after
 * the calls before it, so plaintext comes out in order and nothing after a failure.
 */
class AsyncOpener {
  #stream;
  #key;
  #tail = Promise.resolve();

  /** A streaming opener for envelopes sealed under `dek`. */
  constructor(dek) {
    this.#stream = new DetachedStream(dek);
  }

  /** Takes envelope bytes; resolves to the plaintext of every chunk now authenticated and known not to be the last. */
  push(bytes) {
    return this.#step(() => this.#stream.push(bytes));
  }

  /** Opens the final chunk; rejects with DECRYPT_FAILED if the stream was truncated or has trailing bytes. */
  finish() {
    return this.#step(() => this.#stream.finish());
  }

  /** Releases the WebAssembly memory now rather than at garbage collection. */
  free() {
    this.#stream.free();
    this.#key = undefined;
  }

  #step(frame) {
    let frames;
    try {
      frames = frame();
    } catch (err) {
      // Refused by the framer: the stream has finished, or failed before (its first
      // error again), or these bytes break its rules.
      return Promise.reject(err);
    }
    if (frames.key) {
      this.#key = importKey(frames.key);
      // A failed import surfaces through the chunks that need the key.
      this.#key.catch(() => {});
    }
    const key = this.#key;
    const opened = mapInFlight(frames.jobs, (job) => decrypt(key, job, job.sealed));
    // Handled below once the calls before this one have settled; never unhandled.
    opened.catch(() => {});
    const result = this.#tail
      .then(() => opened)
      .then(concat, (err) => {
        throw this.#stream.fail(err);
      });
    this.#tail = result;
    return result;
  }
}

const CREATE = Symbol("AsyncChunkOpener");

/**
 * Random access with crypto.subtle, for seeking and HTTP Range playback:
 * `await AsyncChunkOpener.forHeader(header, dek, envelopeLength)`, then `openChunk`.
 * The same checks and errors as `Opener.forHeader` and `openChunk`.
 */
class AsyncChunkOpener {
  #chunks;
  #key;

  /** Use `AsyncChunkOpener.forHeader`. */
  constructor(token, chunks, key) {
    if (token !== CREATE) throw new TypeError("use AsyncChunkOpener.forHeader(header, dek, envelopeLength)");
    this.#chunks = chunks;
    this.#key = key;
  }

  /**
   * Verifies `dek` against `header` (the first `headerLength` bytes, or more) of an
   * envelope of `envelopeLength` bytes, and imports its payload key.
   */
  static async forHeader(header, dek, envelopeLength) {
    const chunks = DetachedChunks.forHeader(header, dek, envelopeLength);
    try {
      return new AsyncChunkOpener(CREATE, chunks, await importKey(chunks.takeKey()));
    } catch (err) {
      chunks.free();
      throw err;
    }
  }

  /** The envelope's geometry (a new `Layout` each time). */
  get layout() {
    return this.#chunks.layout;
  }

  /** Opens chunk `index` from exactly the bytes `layout.chunkRange(index)` names. */
  async openChunk(index, sealedChunk) {
    const sealed = asBytes(sealedChunk);
    return decrypt(this.#key, this.#chunks.job(index, sealed.length), sealed);
  }

  /** Releases the WebAssembly memory now rather than at garbage collection. */
  free() {
    this.#chunks.free();
    this.#key = undefined;
  }
}

// `using` declarations free them, where the platform has them (as wasm-bindgen's classes).
for (const type of [AsyncOpener, AsyncChunkOpener]) {
  if (Symbol.dispose) type.prototype[Symbol.dispose] = type.prototype.free;
}

export { openAsync, AsyncOpener, AsyncChunkOpener };
