// Every shared vector through the package's public JavaScript API, with the outcome
// the vector file states.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, privateDecrypt, constants } from "node:crypto";
import { open, Opener, inspect, Layout } from "tapeseal";
import { vectors, b64, outcome, concat, kekPrivate } from "./helpers.mjs";

const all = vectors();

test("the vectors are all here", () => {
  assert.ok(all.length >= 40, `only ${all.length} vectors`);
});

for (const v of all) {
  test(`vector ${v.name}: ${v.expect}`, () => {
    const envelope = b64(v.envelope);
    const dek = b64(v.dek);
    const oneShot = outcome(() => open(envelope, dek));
    assert.equal(oneShot.category, v.expect, oneShot.error?.message);

    for (const step of [997, 65552, envelope.length || 1]) {
      const streamed = outcome(() => {
        const opener = new Opener(v.dek);
        const parts = [];
        for (let at = 0; at < envelope.length; at += step) {
          parts.push(opener.push(envelope.subarray(at, at + step)));
        }
        parts.push(opener.finish());
        return concat(parts);
      });
      assert.equal(streamed.category, v.expect, `push ${step}: ${streamed.error?.message}`);
    }
    if (v.expect !== "success") return;

    const plain = oneShot.value;
    assert.equal(plain.length, v.plaintext_len);
    assert.equal(createHash("sha256").update(plain).digest("hex"), v.plaintext_sha256);
    if (v.plaintext) assert.deepEqual(plain, b64(v.plaintext));

    const info = inspect(envelope);
    assert.equal(info.orgId, v.header.org_id);
    assert.equal(info.recordingId, v.header.recording_id);
    assert.equal(info.mediaKind, v.header.media_kind);
    assert.equal(info.contentType, v.header.content_type);
    assert.equal(info.createdAt, v.header.created_at_ms);
    assert.equal(info.chunkSize, v.header.chunk_size);
    assert.deepEqual(info.encryptionContext, v.header.context);
    assert.equal(info.plaintextLength, v.plaintext_len);
    assert.deepEqual(
      info.stanzas.map((s) => ({ kek_id: s.kekId, algorithm: s.algorithm })),
      v.header.stanzas,
    );
    // Each stanza unwraps to the vector's DEK with OpenSSL (Node's crypto).
    for (const s of info.stanzas) {
      const unwrapped = privateDecrypt(
        {
          key: kekPrivate(s.kekId),
          padding: constants.RSA_PKCS1_OAEP_PADDING,
          oaepHash: s.algorithm === "rsa-oaep-sha1" ? "sha1" : "sha256",
        },
        Buffer.from(s.wrappedDek, "base64"),
      );
      assert.deepEqual(new Uint8Array(unwrapped), dek);
    }

    const chunks = Opener.forHeader(envelope, dek, envelope.length);
    const layout = Layout.fromHeader(envelope, envelope.length);
    assert.equal(layout.chunkCount, info.chunkCount);
    const parts = [];
    for (let i = layout.chunkCount - 1; i >= 0; i--) {
      const r = layout.chunkRange(i);
      parts.unshift(chunks.openChunk(i, envelope.subarray(r.start, r.end)));
    }
    assert.deepEqual(concat(parts), plain);
  });
}

test("header failures are found by inspect alone", () => {
  for (const v of all.filter((v) => v.expect === "header failure" || v.expect === "unsupported version")) {
    const r = outcome(() => inspect(b64(v.envelope)));
    assert.equal(r.category, v.expect, v.name);
  }
});
