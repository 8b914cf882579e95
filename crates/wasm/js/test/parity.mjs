// The WebCrypto path against the pure-wasm one on one vector: byte-identical
// plaintext and identical refusals (the same error name, code and message) for the
// one-shot, streaming and random-access openers, call by call. Runs in Node
// (webcrypto.test.mjs) and in Chromium (consumer/browser.mjs): no Node APIs here.

const bytesOf = (base64) => Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));

/** What a call gave: its value, or its error's shape. */
async function settle(fn) {
  try {
    return { value: await fn() };
  } catch (err) {
    return {
      error: { isError: err instanceof Error, name: err?.name, code: err?.code, message: err?.message },
    };
  }
}

function describe(outcome) {
  if (outcome.error) return `${outcome.error.name} ${outcome.error.code}: ${outcome.error.message}`;
  const v = outcome.value;
  return v instanceof Uint8Array ? `${v.length} bytes` : String(v);
}

function same(a, b) {
  if (a.error || b.error) return JSON.stringify(a.error) === JSON.stringify(b.error);
  if (!(a.value instanceof Uint8Array && b.value instanceof Uint8Array)) return a.value === b.value;
  return a.value.length === b.value.length && a.value.every((byte, i) => byte === b.value[i]);
}

function differ(sync, async) {
  return same(sync, async) ? undefined : `wasm ${describe(sync)}, WebCrypto ${describe(async)}`;
}

/**
 * Every way to open vector `v` (as its JSON has it), synchronously and through
 * WebCrypto. Returns the differences (none when the paths agree) and what the
 * one-shot opening gave.
 */
export async function compareVector(api, v) {
  const envelope = bytesOf(v.envelope);
  // The DEK both ways the API takes it.
  const dek = v.name.length % 2 ? v.dek : bytesOf(v.dek);
  const diffs = [];
  const check = (what, sync, async) => {
    const d = differ(sync, async);
    if (d) diffs.push(`${v.name}: ${what}: ${d}`);
  };

  const oneShot = await settle(() => api.open(envelope, dek));
  check("one-shot", oneShot, await settle(() => api.openAsync(envelope, dek)));

  for (const step of [997, 65552, envelope.length || 1]) {
    const pieces = [];
    for (let at = 0; at < envelope.length; at += step) pieces.push(envelope.subarray(at, at + step));
    const sync = new api.Opener(dek);
    const async = new api.AsyncOpener(dek);
    for (const [i, piece] of pieces.entries()) {
      check(`push ${i} of ${step}`, await settle(() => sync.push(piece)), await settle(() => async.push(piece)));
    }
    check(`finish after ${step}-byte pushes`, await settle(() => sync.finish()), await settle(() => async.finish()));
    check(`push after finish`, await settle(() => sync.push(envelope)), await settle(() => async.push(envelope)));
    check(`finish after finish`, await settle(() => sync.finish()), await settle(() => async.finish()));
  }

  let chunks;
  let asyncChunks;
  const length = envelope.length;
  check(
    "forHeader",
    await settle(() => {
      chunks = api.Opener.forHeader(envelope, dek, length);
      return "ok";
    }),
    await settle(async () => {
      asyncChunks = await api.AsyncChunkOpener.forHeader(envelope, dek, length);
      return "ok";
    }),
  );
  if (chunks && asyncChunks) {
    const layout = chunks.layout;
    check("layout", { value: layout.envelopeLength }, { value: asyncChunks.layout.envelopeLength });
    const count = layout.chunkCount;
    for (let i = 0; i <= count; i++) {
      const r = i < count ? layout.chunkRange(i) : { start: 0, end: 0 };
      const cases = [
        [`chunk ${i}`, i, envelope.subarray(r.start, r.end)],
        [`chunk ${i} one byte short`, i, envelope.subarray(r.start, Math.max(r.start, r.end - 1))],
        [`chunk ${i} as chunk ${i + 1}`, i + 1, envelope.subarray(r.start, r.end)],
        [`chunk ${i} as index ${i + 0.5}`, i + 0.5, envelope.subarray(r.start, r.end)],
      ];
      for (const [what, index, sealed] of cases) {
        check(what, await settle(() => chunks.openChunk(index, sealed)), await settle(() => asyncChunks.openChunk(index, sealed)));
      }
    }
    layout.free();
  }
  chunks?.free();
  asyncChunks?.free();
  return { diffs, oneShot };
}
