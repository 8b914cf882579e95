// Type-checked (never run): the declarations shipped in the package describe the API.
import {
  generateDek, seal, open, inspect, headerLength, Sealer, Opener, Layout, errorCodes,
  openAsync, AsyncOpener, AsyncChunkOpener,
  type Inspection, type SealOptions, type ByteRange, type TapesealError, type TapesealErrorCode,
} from "tapeseal";

const options: SealOptions = {
  kekId: "kek-a",
  orgId: "org-1",
  recordingId: "rec-1",
  mediaKind: "email",
  contentType: "message/rfc822",
  encryptionContext: { queue: "billing" },
  wrapAlgorithm: "rsa-oaep-sha1",
};
declare const kekPem: string;
const dek: Uint8Array = generateDek();
const envelope: Uint8Array = seal(new Uint8Array(4), kekPem, { ...options, dek });
const plain: Uint8Array = open(envelope, dek);
const info: Inspection = inspect(envelope);
const kek: string = info.stanzas[0].kekId;
const len: number = headerLength(envelope.subarray(0, 14));
const sealer = new Sealer(kekPem, options);
const out: Uint8Array = sealer.push(plain);
const layout: Layout = Layout.fromHeader(envelope, envelope.length);
const range: ByteRange = layout.byteRange(0, 10);
const opener = Opener.forHeader(envelope, dek, envelope.length);
const chunk: Uint8Array = opener.openChunk(range.firstChunk, envelope.subarray(range.start, range.end));
const code: TapesealErrorCode = "DECRYPT_FAILED";
const codes: TapesealErrorCode[] = errorCodes();
function codeOf(err: unknown): TapesealErrorCode | undefined {
  return err instanceof Error && err.name === "TapesealError" ? (err as TapesealError).code : undefined;
}
void [kek, len, out, chunk, code, codes, codeOf, sealer.finish()];

async function viaWebCrypto(): Promise<Uint8Array[]> {
  const whole: Uint8Array = await openAsync(envelope, dek);
  const stream = new AsyncOpener("base64 DEK from an LKM");
  const first: Uint8Array = await stream.push(envelope);
  const last: Uint8Array = await stream.finish();
  stream.free();
  const chunks: AsyncChunkOpener = await AsyncChunkOpener.forHeader(envelope, dek, envelope.length);
  const layout: Layout = chunks.layout;
  const one: Uint8Array = await chunks.openChunk(0, envelope.subarray(layout.chunkRange(0).start, layout.chunkRange(0).end));
  chunks[Symbol.dispose]();
  return [whole, first, last, one];
}
void viaWebCrypto;

// @ts-expect-error an AsyncChunkOpener comes from forHeader only
new AsyncChunkOpener();

// @ts-expect-error the old spelling is not a code any more
const old: TapesealErrorCode = "INVALID_OPTIONS";
void old;

// @ts-expect-error mediaKind is a closed set
const bad: SealOptions = { ...options, mediaKind: "video" };
void bad;
