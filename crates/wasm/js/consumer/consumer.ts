// Type-checked (never run): the declarations shipped in the package describe the API.
import {
  generateDek, seal, open, inspect, headerLength, Sealer, Opener, Layout, errorCodes,
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

// @ts-expect-error the old spelling is not a code any more
const old: TapesealErrorCode = "INVALID_OPTIONS";
void old;

// @ts-expect-error mediaKind is a closed set
const bad: SealOptions = { ...options, mediaKind: "video" };
void bad;
