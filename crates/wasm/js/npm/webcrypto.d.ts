// The WebCrypto path (webcrypto.js): the same results and errors as the synchronous
// API, with each chunk's AES-256-GCM in crypto.subtle under a non-extractable key.
import type { DekInput, Layout } from "./tapeseal.js";

/**
 * Opens a whole envelope with its DEK, like `open`, with each chunk's AES-256-GCM in
 * `crypto.subtle`. Resolves to the plaintext; rejects with the error `open` throws.
 * Do not change `envelope` before the promise settles.
 */
export function openAsync(envelope: Uint8Array, dek: DekInput): Promise<Uint8Array>;

/**
 * Streaming decryption with `crypto.subtle`: `push` envelope bytes in order and get
 * back only authenticated plaintext; `finish` checks the stream was complete. The
 * rules and errors of `Opener`. Calls may overlap; each resolves after the ones
 * before it.
 */
export class AsyncOpener {
  /** A streaming opener for envelopes sealed under `dek`. Throws `INVALID_DEK`. */
  constructor(dek: DekInput);
  /** Resolves to the plaintext of every chunk now authenticated and known not to be the last (maybe empty). */
  push(bytes: Uint8Array): Promise<Uint8Array>;
  /** Opens the final chunk; rejects with `DECRYPT_FAILED` if the stream was truncated or has trailing bytes. */
  finish(): Promise<Uint8Array>;
  /** Releases the WebAssembly memory now rather than at garbage collection. */
  free(): void;
  [Symbol.dispose](): void;
}

/**
 * Random access with `crypto.subtle`, for seeking and HTTP Range playback. The checks
 * and errors of `Opener.forHeader` and `Opener.openChunk`.
 */
export class AsyncChunkOpener {
  private constructor();
  /**
   * Verifies `dek` against `header` (the first `headerLength` bytes, or more) of an
   * envelope of `envelopeLength` bytes and imports its payload key.
   */
  static forHeader(header: Uint8Array, dek: DekInput, envelopeLength: number): Promise<AsyncChunkOpener>;
  /** The envelope's geometry (a new `Layout` each time). */
  readonly layout: Layout;
  /** Opens chunk `index` from exactly the bytes `layout.chunkRange(index)` names. */
  openChunk(index: number, sealedChunk: Uint8Array): Promise<Uint8Array>;
  /** Releases the WebAssembly memory now rather than at garbage collection. */
  free(): void;
  [Symbol.dispose](): void;
}
