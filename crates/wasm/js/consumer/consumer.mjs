// What a Node user writes: seal with a KEK, open with the DEK (also through
// WebCrypto), decrypt a shared vector.
import { readFileSync } from "node:fs";
import { generateDek, seal, open, openAsync, inspect } from "tapeseal";

const [kekPem, vectorPath] = process.argv.slice(2);
const kek = readFileSync(kekPem, "utf8");

const dek = generateDek();
const recording = new TextEncoder().encode("Agent: thank you for calling.");
const envelope = seal(recording, kek, {
  kekId: "kek-a",
  orgId: "org-1",
  recordingId: "rec-1",
  mediaKind: "transcript",
  contentType: "text/plain",
  dek,
});
const text = new TextDecoder().decode(open(envelope, dek));
if (text !== "Agent: thank you for calling.") throw new Error(`round trip gave ${text}`);
const viaWebCrypto = new TextDecoder().decode(await openAsync(envelope, dek));
if (viaWebCrypto !== text) throw new Error(`openAsync gave ${viaWebCrypto}`);

const vector = JSON.parse(readFileSync(vectorPath, "utf8"));
const plain = open(Buffer.from(vector.envelope, "base64"), vector.dek);
if (plain.length !== vector.plaintext_len) throw new Error("vector plaintext length differs");
console.log(`esm: sealed and opened ${envelope.length} bytes; vector ${vector.name} (${inspect(Buffer.from(vector.envelope, "base64")).mediaKind}) decrypted: ${plain.length} bytes`);
