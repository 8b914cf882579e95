// The package's JavaScript API: error codes, the byte-range helper, streaming, DEK
// handling and interoperability with OpenSSL's RSA-OAEP.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes, privateDecrypt, constants, generateKeyPairSync } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import {
  generateDek, seal, open, inspect, headerLength, Sealer, Opener, Layout, errorCodes,
} from "tapeseal";
import { kekPublic, kekPrivate, concat } from "./helpers.mjs";

const kek = kekPublic("kek-a");
const options = (extra = {}) => ({
  kekId: "kek-a",
  orgId: "org-1",
  recordingId: "rec-1",
  mediaKind: "call",
  contentType: "audio/wav",
  createdAt: 1767225600000,
  chunkSize: 1024,
  ...extra,
});

function throwsCode(fn, code) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof Error, `not an Error: ${err}`);
    assert.equal(err.code, code, `${err.message}`);
    assert.equal(err.name, "TapesealError");
    assert.ok(errorCodes().includes(err.code), `${err.code} is not in errorCodes()`);
    return true;
  });
}

test("generateDek gives 32 fresh bytes every call", () => {
  const a = generateDek();
  const b = generateDek();
  assert.ok(a instanceof Uint8Array);
  assert.equal(a.length, 32);
  assert.notDeepEqual(a, b);
});

test("seal, then unwrap with OpenSSL and open with the unwrapped DEK", () => {
  for (const [wrapAlgorithm, oaepHash] of [["rsa-oaep-sha256", "sha256"], ["rsa-oaep-sha1", "sha1"]]) {
    const plain = randomBytes(5000);
    const envelope = seal(plain, kek, options({ wrapAlgorithm }));
    const info = inspect(envelope);
    assert.equal(info.stanzas[0].algorithm, wrapAlgorithm);
    const dek = privateDecrypt(
      { key: kekPrivate("kek-a"), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash },
      Buffer.from(info.stanzas[0].wrappedDek, "base64"),
    );
    assert.deepEqual(open(envelope, new Uint8Array(dek)), new Uint8Array(plain));
    assert.deepEqual(open(envelope, dek.toString("base64")), new Uint8Array(plain));
  }
});

test("a caller-supplied DEK, as bytes or base64, seals and opens", () => {
  const dek = generateDek();
  const asBase64 = Buffer.from(dek).toString("base64");
  const envelope = seal(new TextEncoder().encode("hello"), kek, options({ dek: asBase64 }));
  assert.equal(new TextDecoder().decode(open(envelope, dek)), "hello");
});

test("the streaming Sealer emits the header then whole chunks, and opens", () => {
  const plain = randomBytes(10_000);
  const sealer = new Sealer(kek, options({ mediaKind: "transcript", contentType: "text/plain" }));
  assert.equal(sealer.header.recordingId, "rec-1");
  const parts = [];
  for (let at = 0; at < plain.length; at += 777) parts.push(sealer.push(plain.subarray(at, at + 777)));
  parts.push(sealer.finish());
  const envelope = concat(parts);
  throwsCode(() => sealer.finish(), "INVALID_STATE");
  throwsCode(() => sealer.push(new Uint8Array(1)), "INVALID_STATE");
  assert.equal(inspect(envelope).mediaKind, "transcript");
  assert.equal(headerLength(envelope.subarray(0, 14)), inspect(envelope).headerLength);
});

test("the byte-range helper names exactly the chunks a plaintext range needs", () => {
  const plain = randomBytes(50_000);
  const dek = generateDek();
  const envelope = seal(plain, kek, options({ dek }));
  const header = envelope.subarray(0, headerLength(envelope.subarray(0, 14)));
  const layout = Layout.fromHeader(header, envelope.length);
  assert.equal(layout.plaintextLength, 50_000);
  assert.equal(layout.chunkCount, Math.ceil(50_000 / 1024));
  assert.equal(layout.envelopeLength, envelope.length);
  const opener = Opener.forHeader(header, dek, envelope.length);
  for (let trial = 0; trial < 200; trial++) {
    const a = Math.floor(Math.random() * 50_000);
    const b = a + 1 + Math.floor(Math.random() * (50_000 - a));
    const r = layout.byteRange(a, b);
    assert.equal(r.firstChunk, Math.floor(a / 1024));
    assert.equal(r.lastChunk, Math.floor((b - 1) / 1024));
    assert.equal(r.start, layout.headerLength + r.firstChunk * (1024 + 16));
    // Decrypt only the fetched bytes, chunk by chunk, and cut out the range.
    const fetched = envelope.subarray(r.start, r.end);
    const parts = [];
    for (let i = r.firstChunk; i <= r.lastChunk; i++) {
      const c = layout.chunkRange(i);
      parts.push(opener.openChunk(i, fetched.subarray(c.start - r.start, c.end - r.start)));
    }
    const got = concat(parts).subarray(a - r.firstChunk * 1024, b - r.firstChunk * 1024);
    assert.deepEqual(got, new Uint8Array(plain.subarray(a, b)));
  }
  throwsCode(() => layout.byteRange(0, 50_001), "OUT_OF_RANGE");
  throwsCode(() => layout.byteRange(10, 10), "OUT_OF_RANGE");
  throwsCode(() => layout.byteRange(-1, 10), "OUT_OF_RANGE");
  throwsCode(() => layout.byteRange(0.5, 10), "OUT_OF_RANGE");
  throwsCode(() => layout.chunkRange(layout.chunkCount), "OUT_OF_RANGE");
  throwsCode(() => opener.openChunk(layout.chunkCount, new Uint8Array(100)), "OUT_OF_RANGE");
  const c1 = layout.chunkRange(1);
  throwsCode(() => opener.openChunk(2, envelope.subarray(c1.start, c1.end)), "DECRYPT_FAILED");
  throwsCode(() => Layout.fromHeader(header, envelope.length - 854), "OUT_OF_RANGE");
});

test("errorCodes() is the one list; the shipped declarations and README agree with it", () => {
  const codes = errorCodes();
  assert.ok(Array.isArray(codes));
  assert.equal(new Set(codes).size, codes.length, "no code twice");
  for (const code of codes) assert.match(code, /^[A-Z]+(_[A-Z]+)*$/);
  for (const code of ["DECRYPT_FAILED", "INVALID_PARAMETER", "FORMAT_LIMIT", "RESOURCE_LIMIT", "INTERNAL"]) {
    assert.ok(codes.includes(code), code);
  }
  for (const gone of ["INVALID_OPTIONS", "LIMIT_EXCEEDED"]) assert.ok(!codes.includes(gone), gone);

  const pkg = dirname(createRequire(import.meta.url).resolve("tapeseal/package.json"));
  for (const dts of ["web/tapeseal.d.ts", "node/tapeseal.d.ts"]) {
    const lines = readFileSync(join(pkg, dts), "utf8").split("\n");
    const start = lines.findIndex((l) => l.startsWith("export type TapesealErrorCode ="));
    assert.ok(start >= 0, `${dts} declares TapesealErrorCode`);
    const union = [];
    for (const line of lines.slice(start + 1)) {
      const m = /^\s*\| "([A-Z_]+)";?$/.exec(line);
      if (!m) break;
      union.push(m[1]);
    }
    assert.deepEqual(union, codes, `${dts}: TapesealErrorCode`);
  }

  const readme = readFileSync(join(pkg, "README.md"), "utf8");
  const errors = readme.slice(readme.indexOf("## Errors"));
  const table = errors.split("\n").filter((l) => l.startsWith("| `"));
  const documented = table.flatMap((row) => [...row.split("|")[1].matchAll(/`([A-Z_]+)`/g)].map((m) => m[1]));
  assert.ok(documented.includes("DECRYPT_FAILED"));
  for (const code of documented) assert.ok(codes.includes(code), `README documents ${code}`);
});

test("every error carries a stable code", () => {
  const dek = generateDek();
  const envelope = seal(randomBytes(3000), kek, options({ dek }));
  throwsCode(() => open(envelope, generateDek()), "DECRYPT_FAILED");
  const tampered = envelope.slice();
  tampered[tampered.length - 1] ^= 1;
  throwsCode(() => open(tampered, dek), "DECRYPT_FAILED");
  throwsCode(() => open(envelope.subarray(0, envelope.length - 1), dek), "DECRYPT_FAILED");
  throwsCode(() => open(new TextEncoder().encode("definitely not an envelope"), dek), "MALFORMED_HEADER");
  const v2 = envelope.slice();
  v2[9] = 2;
  throwsCode(() => inspect(v2), "UNSUPPORTED_VERSION");
  throwsCode(() => inspect(envelope.subarray(0, 100)), "INCOMPLETE_HEADER");
  throwsCode(() => headerLength(envelope.subarray(0, 5)), "INCOMPLETE_HEADER");
  throwsCode(() => open(envelope, new Uint8Array(31)), "INVALID_DEK");
  throwsCode(() => open(envelope, "not base64!"), "INVALID_DEK");
  throwsCode(() => open(envelope, 42), "INVALID_DEK");
  throwsCode(() => seal(new Uint8Array(1), "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", options()), "INVALID_KEY");
  const small = generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey.export({ type: "spki", format: "pem" });
  throwsCode(() => seal(new Uint8Array(1), small, options()), "INVALID_KEY");
  throwsCode(() => seal(new Uint8Array(1), kek, options({ mediaKind: "video" })), "INVALID_PARAMETER");
  throwsCode(() => seal(new Uint8Array(1), kek, options({ colour: "blue" })), "INVALID_PARAMETER");
  throwsCode(() => seal(new Uint8Array(1), kek, options({ chunkSize: 8 })), "INVALID_PARAMETER");
  throwsCode(() => seal(new Uint8Array(1), kek, options({ orgId: "" })), "INVALID_PARAMETER");
  throwsCode(() => seal(new Uint8Array(1), kek, { kekId: "k" }), "INVALID_PARAMETER");
  throwsCode(() => seal(new Uint8Array(1), kek, options({ dek: new Uint8Array(3) })), "INVALID_DEK");
  const streaming = new Opener(dek);
  throwsCode(() => streaming.openChunk(0, new Uint8Array(10)), "INVALID_STATE");
  const random = Opener.forHeader(envelope, dek, envelope.length);
  throwsCode(() => random.push(envelope), "INVALID_STATE");
  throwsCode(() => Opener.forHeader(envelope, generateDek(), envelope.length), "DECRYPT_FAILED");
});

test("a failed stream keeps failing and released nothing unauthenticated", () => {
  const dek = generateDek();
  const envelope = seal(randomBytes(4096), kek, options({ dek }));
  const tampered = envelope.slice();
  tampered[envelope.length - 2000] ^= 1;
  const opener = new Opener(dek);
  let released = 0;
  let failed = false;
  for (let at = 0; at < tampered.length && !failed; at += 500) {
    try {
      released += opener.push(tampered.subarray(at, at + 500)).length;
    } catch (err) {
      assert.equal(err.code, "DECRYPT_FAILED");
      failed = true;
    }
  }
  assert.ok(failed, "the tampered chunk was refused during push");
  assert.ok(released <= 2048, `released ${released} bytes, all from chunks before the tampered one`);
  throwsCode(() => opener.finish(), "DECRYPT_FAILED");
});

test("hostile input never crashes the module", () => {
  const dek = generateDek();
  const good = seal(randomBytes(2000), kek, options({ dek }));
  for (let i = 0; i < 300; i++) {
    const junk = i % 2 ? randomBytes(Math.floor(Math.random() * 3000)) : good.slice();
    if (i % 2 === 0) junk[Math.floor(Math.random() * junk.length)] ^= 1 << (i % 8);
    for (const fn of [() => open(junk, dek), () => inspect(junk), () => new Opener(dek).push(junk)]) {
      try {
        fn();
      } catch (err) {
        assert.equal(err.name, "TapesealError", `${err.name}: ${err.message}`);
        assert.equal(typeof err.code, "string");
      }
    }
  }
  assert.equal(open(good, dek).length, 2000, "the module still works");
});
