// The installed package in a browser: a page imports "tapeseal" (through an import
// map, as a bundler would resolve it) from a consumer project's node_modules, seals
// and opens, decrypts a shared vector, and checks an error code.
// Usage: node browser.mjs <consumer project dir> <kek public PEM> <vector JSON>
import { join, resolve } from "node:path";
import { launchChromium, runPage, serve } from "../lib/browser.mjs";

const [project, kekPath, vectorPath] = process.argv.slice(2);
const page = `<!doctype html><meta charset="utf-8"><title>tapeseal consumer</title>
<script type="importmap">{ "imports": { "tapeseal": "/node_modules/tapeseal/web/index.js" } }</script>
<script type="module">
import { generateDek, seal, open, inspect, Opener } from "tapeseal";
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
  window.done = { sealed: envelope.length, vector: vector.name, kind: inspect(bytes).mediaKind, plain };
} catch (err) {
  window.failed = String(err && err.stack || err);
}
</script>`;
const root = resolve(project);
const server = await serve((path) => {
  if (path === "/") return { body: page, type: "text/html" };
  if (path === "/kek.pem") return kekPath;
  if (path === "/vector.json") return vectorPath;
  if (path.startsWith("/node_modules/tapeseal/") && !path.includes("..")) return join(root, path);
  return undefined;
});
const browser = await launchChromium();
try {
  const r = await runPage(browser, `${server.url}/`, "  page:");
  console.log(`browser (Chromium ${browser.version()}): sealed and opened ${r.sealed} bytes; vector ${r.vector} (${r.kind}) decrypted: ${r.plain} bytes`);
} finally {
  await browser.close();
  server.close();
}
