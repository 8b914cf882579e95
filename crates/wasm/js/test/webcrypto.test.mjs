// The WebCrypto path (openAsync, AsyncOpener, AsyncChunkOpener) in Node: on every
// shared vector the same bytes and the same refusals as the pure-wasm path; the
// payload key only ever as a non-extractable CryptoKey; the streaming rules with
// overlapping calls; what happens without crypto.subtle.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import * as api from "tapeseal";
import { compareVector } from "./parity.mjs";
import { vectors, kekPublic, concat } from "./helpers.mjs";

const { generateDek, seal, open, openAsync, Opener, AsyncOpener, AsyncChunkOpener } = api;

const all = vectors();

for (const v of all) {
  test(`vector ${v.name}: WebCrypto and wasm agree (${v.expect})`, async () => {
    const { diffs, oneShot } = await compareVector(api, v);
    assert.deepEqual(diffs, []);
    const category = oneShot.error ? oneShot.error.code : "success";
    if (v.expect === "success") assert.equal(category, "success");
    if (v.expect === "decrypt failure") assert.equal(category, "DECRYPT_FAILED");
  });
}

const kek = kekPublic("kek-a");
function sealed(plain, chunkSize = 1024) {
  const dek = generateDek();
  const envelope = seal(plain, kek, {
    kekId: "kek-a", orgId: "org-1", recordingId: "rec-1", mediaKind: "call",
    contentType: "audio/wav", chunkSize, dek,
  });
  return { dek, envelope };
}

async function rejectsCode(promise, code) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof Error, `not an Error: ${err}`);
    assert.equal(err.name, "TapesealError");
    assert.equal(err.code, code, err.message);
    return true;
  });
}

/** Calls `fn` with crypto.subtle's importKey and decrypt watched. */
async function watchingSubtle(fn) {
  const subtle = globalThis.crypto.subtle;
  const seen = { imports: [], decrypts: [] };
  const importKey = subtle.importKey;
  const decrypt = subtle.decrypt;
  subtle.importKey = function (format, keyData, algorithm, extractable, usages) {
    const call = { format, keyData, algorithm, extractable, usages };
    call.result = importKey.call(this, format, keyData, algorithm, extractable, usages);
    call.bytesAtCall = Array.from(keyData);
    seen.imports.push(call);
    return call.result;
  };
  subtle.decrypt = function (params, key, data) {
    seen.decrypts.push({ params, key, length: data.byteLength });
    return decrypt.call(this, params, key, data);
  };
  try {
    await fn(seen);
  } finally {
    delete subtle.importKey;
    delete subtle.decrypt;
  }
  return seen;
}

test("the payload key is imported non-extractable for decrypt only, and its bytes are zeroed", async () => {
  const plain = randomBytes(5000);
  const { dek, envelope } = sealed(plain);
  const seen = await watchingSubtle(async () => {
    assert.deepEqual(await openAsync(envelope, dek), new Uint8Array(plain));
    const opener = new AsyncOpener(dek);
    assert.deepEqual(concat([await opener.push(envelope), await opener.finish()]), new Uint8Array(plain));
    const chunks = await AsyncChunkOpener.forHeader(envelope, dek, envelope.length);
    const r = chunks.layout.chunkRange(2);
    assert.deepEqual(await chunks.openChunk(2, envelope.subarray(r.start, r.end)), new Uint8Array(plain.subarray(2048, 3072)));
  });
  assert.equal(seen.imports.length, 3, "one import per opener");
  for (const call of seen.imports) {
    assert.equal(call.format, "raw");
    assert.equal(call.algorithm, "AES-GCM");
    assert.equal(call.extractable, false);
    assert.deepEqual(call.usages, ["decrypt"]);
    assert.equal(call.keyData.length, 32);
    assert.ok(call.bytesAtCall.some((b) => b !== 0), "a real key was imported");
    assert.ok(call.keyData.every((b) => b === 0), "the JS copy of the key is zeroed");
    const key = await call.result;
    assert.equal(key.extractable, false);
    assert.deepEqual(key.usages, ["decrypt"]);
    await assert.rejects(globalThis.crypto.subtle.exportKey("raw", key), /not extractable|InvalidAccess/);
  }
  for (const { params, length } of seen.decrypts) {
    assert.equal(params.name, "AES-GCM");
    assert.equal(params.tagLength, 128);
    assert.equal(params.iv.length, 12);
    assert.equal(params.additionalData.length, 0);
    assert.ok(length >= 16 && length <= 1024 + 16);
  }
  assert.equal(seen.decrypts.length, 2 * 5 + 1);
});

test("overlapping pushes resolve in order, and nothing after a tampered chunk", async () => {
  const plain = randomBytes(20 * 1024);
  const { dek, envelope } = sealed(plain);
  const pieces = [];
  for (let at = 0; at < envelope.length; at += 1500) pieces.push(envelope.subarray(at, at + 1500));

  const good = new AsyncOpener(dek);
  const calls = [...pieces.map((p) => good.push(p)), good.finish()];
  assert.deepEqual(concat(await Promise.all(calls)), new Uint8Array(plain));

  const tampered = envelope.slice();
  const bad = 10 * 1040 + 500; // inside chunk 9 or 10 of the payload, after the header
  tampered[tampered.length - bad] ^= 1;
  const opener = new AsyncOpener(dek);
  const results = await Promise.allSettled([
    ...pieces.map((_, i) => opener.push(tampered.subarray(i * 1500, i * 1500 + 1500))),
    opener.finish(),
  ]);
  const firstFailure = results.findIndex((r) => r.status === "rejected");
  assert.ok(firstFailure > 0, "the tampered chunk is refused");
  for (const r of results.slice(firstFailure)) {
    assert.equal(r.status, "rejected");
    assert.equal(r.reason.code, "DECRYPT_FAILED");
  }
  const released = concat(results.slice(0, firstFailure).map((r) => r.value));
  assert.deepEqual(released, new Uint8Array(plain.subarray(0, released.length)));
  assert.ok(released.length <= plain.length - bad + 1040, "only chunks before the tampered one");
  await rejectsCode(opener.push(envelope), "INVALID_STATE");
});

test("the async openers refuse misuse as the sync ones do", async () => {
  const { dek, envelope } = sealed(randomBytes(3000));
  assert.throws(() => new AsyncOpener(new Uint8Array(31)), { code: "INVALID_DEK" });
  assert.throws(() => new Opener(new Uint8Array(31)), { code: "INVALID_DEK" });
  await rejectsCode(openAsync(envelope, "not base64!"), "INVALID_DEK");
  await rejectsCode(openAsync(envelope, generateDek()), "DECRYPT_FAILED");
  await rejectsCode(openAsync(envelope.subarray(0, 100), dek), "INCOMPLETE_HEADER");
  await rejectsCode(AsyncChunkOpener.forHeader(envelope, generateDek(), envelope.length), "DECRYPT_FAILED");
  // A length that would leave a final chunk of 5 bytes, shorter than its tag.
  const impossible = envelope.length - (3000 - 2 * 1024 + 16) + 5;
  assert.throws(() => Opener.forHeader(envelope, dek, impossible), { code: "OUT_OF_RANGE" });
  await rejectsCode(AsyncChunkOpener.forHeader(envelope, dek, impossible), "OUT_OF_RANGE");
  await rejectsCode(AsyncChunkOpener.forHeader(envelope, dek, -1), "OUT_OF_RANGE");
  const chunks = await AsyncChunkOpener.forHeader(envelope, dek, envelope.length);
  await rejectsCode(chunks.openChunk(3, new Uint8Array(100)), "OUT_OF_RANGE");
  await rejectsCode(chunks.openChunk(0, new Uint8Array(1040)), "DECRYPT_FAILED");
  assert.throws(() => new AsyncChunkOpener(), TypeError);
  const opener = new AsyncOpener(dek);
  await rejectsCode(opener.finish(), "INCOMPLETE_HEADER");
  await rejectsCode(opener.finish(), "INVALID_STATE");
  await rejectsCode(opener.push(envelope), "INVALID_STATE");
  assert.equal(open(envelope, dek).length, 3000, "the sync path is untouched");
});

test("without crypto.subtle the async path says so and the sync path still works", async () => {
  const { dek, envelope } = sealed(randomBytes(2000));
  const descriptor = Object.getOwnPropertyDescriptor(globalThis, "crypto");
  const real = globalThis.crypto;
  const getRandomValues = (a) => real.getRandomValues(a);
  Object.defineProperty(globalThis, "crypto", { value: { getRandomValues }, configurable: true });
  try {
    await rejectsCode(openAsync(envelope, dek), "UNAVAILABLE");
    await rejectsCode(AsyncChunkOpener.forHeader(envelope, dek, envelope.length), "UNAVAILABLE");
    const opener = new AsyncOpener(dek);
    // The header arrives (its key cannot be imported), then the chunks need the key.
    const header = api.headerLength(envelope.subarray(0, 14));
    assert.equal((await opener.push(envelope.subarray(0, header + 10))).length, 0);
    await rejectsCode(opener.push(envelope.subarray(header + 10)), "UNAVAILABLE");
    await rejectsCode(opener.finish(), "UNAVAILABLE");
    assert.equal(open(envelope, dek).length, 2000);
  } finally {
    Object.defineProperty(globalThis, "crypto", descriptor);
  }
  assert.equal((await openAsync(envelope, dek)).length, 2000);
});
