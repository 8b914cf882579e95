// cargo xtask bench: the package's seal/open throughput in headless Chromium, loading
// the browser build (web/index.js) as a page would.
// Usage: node browser.mjs <package dir> <kek public PEM>
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { extname, join, resolve } from "node:path";
import { chromium } from "playwright-core";

const [pkg, kekPath] = process.argv.slice(2);
const here = new URL(".", import.meta.url).pathname;
const files = {
  "/measure.js": join(here, "measure.js"),
  "/": null,
};
const types = { ".js": "text/javascript", ".wasm": "application/wasm", ".html": "text/html" };
const page = `<!doctype html><meta charset="utf-8"><title>tapeseal bench</title>
<script type="module">
import * as api from "/tapeseal/web/index.js";
import { measure } from "/measure.js";
const kek = await (await fetch("/kek.pem")).text();
window.benchResult = measure(api, kek, (line) => console.log(line));
</script>`;
const server = createServer((req, res) => {
  const url = new URL(req.url, "http://127.0.0.1");
  let body;
  let path = url.pathname;
  if (path === "/favicon.ico") {
    res.writeHead(204).end();
    return;
  }
  try {
    if (path === "/") body = page, path = "/index.html";
    else if (path === "/kek.pem") body = readFileSync(kekPath);
    else if (path.startsWith("/tapeseal/")) body = readFileSync(join(resolve(pkg), path.slice(10)));
    else if (files[path]) body = readFileSync(files[path]);
    else throw new Error("not found");
  } catch {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { "content-type": types[extname(path)] ?? "application/octet-stream" }).end(body);
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const tab = await browser.newPage();
  tab.on("console", (msg) => console.log(`  chromium ${msg.text()}`));
  tab.on("pageerror", (err) => console.error(`page error: ${err.message}`));
  console.log(`Chromium ${browser.version()}, 60 MB payload, 64 KiB chunks, median of 5`);
  await tab.goto(`http://127.0.0.1:${server.address().port}/`);
  await tab.waitForFunction(() => window.benchResult !== undefined, null, { timeout: 60_000 });
  await tab.evaluate(() => window.benchResult);
} finally {
  await browser.close();
  server.close();
}
