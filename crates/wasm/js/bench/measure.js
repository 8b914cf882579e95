// The measurement both benchmarks run, in Node and in the page: seal and open a 60 MB
// payload in 64 KiB chunks through the package's public API, opening both ways: pure
// wasm (`open`, `Opener`) and WebCrypto (`openAsync`, `AsyncOpener`). Median of
// several runs.
export async function measure(api, kekPem, log) {
  const SIZE = 60_000_000;
  const RUNS = 5;
  const PUSH = 1 << 20;
  const plain = new Uint8Array(SIZE);
  for (let at = 0; at < SIZE; at += 65536) {
    crypto.getRandomValues(plain.subarray(at, Math.min(at + 65536, SIZE)));
  }
  const dek = api.generateDek();
  const options = {
    kekId: "kek-a", orgId: "org", recordingId: "bench", mediaKind: "call",
    contentType: "audio/wav", dek,
  };
  const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const time = async (fn) => {
    const times = [];
    let result;
    for (let i = 0; i < RUNS; i++) {
      const t0 = performance.now();
      result = await fn();
      times.push(performance.now() - t0);
    }
    return { ms: median(times), result };
  };
  const same = (a, what) => {
    if (a.length !== SIZE) throw new Error(`${what} returned ${a.length} bytes`);
    for (let i = 0; i < SIZE; i += 4093) {
      if (a[i] !== plain[i]) throw new Error(`${what} returned other bytes`);
    }
  };
  const streamed = async (opener, finish) => {
    let n = 0;
    for (let at = 0; at < envelope.length; at += PUSH) {
      n += (await opener.push(envelope.subarray(at, at + PUSH))).length;
    }
    n += (await finish()).length;
    opener.free();
    return n;
  };

  const seal = await time(() => api.seal(plain, kekPem, options));
  const envelope = seal.result;
  const open = await time(() => api.open(envelope, dek));
  same(open.result, "open");
  const openAsync = await time(() => api.openAsync(envelope, dek));
  same(openAsync.result, "openAsync");
  const streaming = await time(() => {
    const opener = new api.Opener(dek);
    return streamed(opener, () => opener.finish());
  });
  const asyncStreaming = await time(() => {
    const opener = new api.AsyncOpener(dek);
    return streamed(opener, () => opener.finish());
  });
  for (const [what, r] of [["Opener", streaming], ["AsyncOpener", asyncStreaming]]) {
    if (r.result !== SIZE) throw new Error(`${what} returned ${r.result} bytes`);
  }
  const mbps = (ms) => Math.round(SIZE / 1e6 / (ms / 1000));
  const rows = [
    ["seal (one-shot)", seal.ms, mbps(seal.ms)],
    ["open (one-shot, pure wasm)", open.ms, mbps(open.ms)],
    ["openAsync (one-shot, WebCrypto)", openAsync.ms, mbps(openAsync.ms)],
    ["open (Opener, 1 MiB pushes, pure wasm)", streaming.ms, mbps(streaming.ms)],
    ["open (AsyncOpener, 1 MiB pushes, WebCrypto)", asyncStreaming.ms, mbps(asyncStreaming.ms)],
  ];
  for (const [name, ms, rate] of rows) log(`${name}: ${ms.toFixed(0)} ms, ${rate} MB/s`);
  return rows;
}
