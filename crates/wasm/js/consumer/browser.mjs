// The installed package in a browser: a page imports "tapeseal" (through an import
// map, as a bundler would resolve it) from a consumer project's node_modules, seals
// and opens, decrypts a shared vector, and checks an error code. Then every vector
// of the vector's directory runs through both paths, pure wasm and WebCrypto
// (test/parity.mjs), which must agree byte for byte and error for error.
// Usage: node browser.mjs <consumer project dir> <kek public PEM> <vector JSON>
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { launchChromium, runPage, serve } from "../lib/browser.mjs";

const [project, kekPath, vectorPath] = process.argv.slice(2);
const page = `<!doctype html><meta charset="utf-8"><title>tapeseal consumer</title>
<script type="importmap">{ "imports": { "tapeseal": "/node_modules/tapeseal/web/index.js" } }</script>
<script type="module">
import * as api from "tapeseal";
import { compareVector } from "/parity.mjs";
const { generateDek, seal, open, inspect, Opener } = api;
try {
  const kek = await (await fetch("/kek.pem")).text();
  const vector = await (await fetch("/vector.json")).json();
  const dek = generateDek();
  const text = "chat transcript: hello from the browser";
  const envelope = seal(new TextEncoder().encode(text), kek, {
    kekId: "kek-a", orgId: "org-1", recordingId: "web-1", mediaKind: "chat",
    contentType: "text/plain", dek,
  });
  const back = new TextDecoder().decode(open(envelope, dek));
  if (back !== text) throw new Error("round trip gave " + back);
  const bytes = Uint8Array.from(atob(vector.envelope), (c) => c.charCodeAt(0));
  const opener = new Opener(vector.dek);
  const plain = [opener.push(bytes), opener.finish()].reduce((n, p) => n + p.length, 0);
  if (plain !== vector.plaintext_len) throw new Error("vector length " + plain);
  let code;
  try { open(envelope, generateDek()); } catch (err) { code = err.code; }
  if (code !== "DECRYPT_FAILED") throw new Error("wrong-DEK code " + code);
  // Count what reaches crypto.subtle.decrypt, to know the WebCrypto path ran.
  const subtle = crypto.subtle;
  const decrypt = subtle.decrypt;
  let decrypts = 0;
  subtle.decrypt = function (...args) {
    decrypts++;
    return decrypt.apply(this, args);
  };
  const diffs = [];
  const outcomes = {};
  const all = await (await fetch("/vectors.json")).json();
  for (const v of all) {
    const r = await compareVector(api, v);
    diffs.push(...r.diffs);
    const got = r.oneShot.error ? r.oneShot.error.code : "success";
    outcomes[got] = (outcomes[got] ?? 0) + 1;
    if ((v.expect === "success") !== (got === "success")) diffs.push(v.name + ": expected " + v.expect + ", got " + got);
  }
  if (diffs.length) throw new Error("WebCrypto and wasm differ: " + diffs.join("; "));
  if (decrypts === 0) throw new Error("nothing went through crypto.subtle.decrypt");
  window.done = {
    sealed: envelope.length, vector: vector.name, kind: inspect(bytes).mediaKind, plain,
    parity: all.length, decrypts, outcomes: JSON.stringify(outcomes),
  };
} catch (err) {
  window.failed = String(err && err.stack || err);
}
</script>`;
const root = resolve(project);
const here = new URL(".", import.meta.url).pathname;
const vectorDir = dirname(resolve(vectorPath));
const vectorFiles = readdirSync(vectorDir)
  .filter((f) => f.endsWith(".json"))
  .sort()
  .map((f) => join(vectorDir, f));
const server = await serve((path) => {
  if (path === "/") return { body: page, type: "text/html" };
  if (path === "/kek.pem") return kekPath;
  if (path === "/vector.json") return vectorPath;
  if (path === "/parity.mjs") return join(here, "../test/parity.mjs");
  if (path === "/vectors.json") return { body: `[${vectorFiles.map((f) => readFileSync(f, "utf8")).join(",")}]`, type: "application/json" };
  if (path.startsWith("/node_modules/tapeseal/") && !path.includes("..")) return join(root, path);
  return undefined;
});
const browser = await launchChromium();
try {
  const r = await runPage(browser, `${server.url}/`, "  page:");
  console.log(`browser (Chromium ${browser.version()}): sealed and opened ${r.sealed} bytes; vector ${r.vector} (${r.kind}) decrypted: ${r.plain} bytes`);
  console.log(`browser: ${r.parity} vectors agree between pure wasm and WebCrypto (one-shot, streaming, by chunk; ${r.decrypts} WebCrypto decrypts; outcomes ${r.outcomes})`);
} finally {
  await browser.close();
  server.close();
}
