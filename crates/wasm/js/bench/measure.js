// The measurement both benchmarks run, in Node and in the page: seal and open a 60 MB
// payload in 64 KiB chunks through the package's public API. Median of several runs.
export async function measure(api, kekPem, log) {
  const SIZE = 60_000_000;
  const RUNS = 5;
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
  const time = (fn) => {
    const times = [];
    let result;
    for (let i = 0; i < RUNS; i++) {
      const t0 = performance.now();
      result = fn();
      times.push(performance.now() - t0);
    }
    return { ms: median(times), result };
  };
  const seal = time(() => api.seal(plain, kekPem, options));
  const envelope = seal.result;
  const open = time(() => api.open(envelope, dek));
  if (open.result.length !== SIZE) throw new Error("open returned the wrong length");
  const streaming = time(() => {
    const opener = new api.Opener(dek);
    let n = 0;
    for (let at = 0; at < envelope.length; at += 1 << 20) {
      n += opener.push(envelope.subarray(at, at + (1 << 20))).length;
    }
    n += opener.finish().length;
    opener.free();
    return n;
  });
  if (streaming.result !== SIZE) throw new Error("streaming open returned the wrong length");
  const mbps = (ms) => Math.round(SIZE / 1e6 / (ms / 1000));
  const rows = [
    ["seal (one-shot)", seal.ms, mbps(seal.ms)],
    ["open (one-shot)", open.ms, mbps(open.ms)],
    ["open (Opener, 1 MiB pushes)", streaming.ms, mbps(streaming.ms)],
  ];
  for (const [name, ms, rate] of rows) log(`${name}: ${ms.toFixed(0)} ms, ${rate} MB/s`);
  return rows;
}
