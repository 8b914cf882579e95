// cargo xtask bench: the package's seal/open throughput in headless Chromium, loading
// the browser build (web/index.js) as a page would.
// Usage: node browser.mjs <package dir> <kek public PEM>
import { join, resolve } from "node:path";
import { launchChromium, runPage, serve } from "../lib/browser.mjs";

const [pkg, kekPath] = process.argv.slice(2);
const here = new URL(".", import.meta.url).pathname;
const page = `<!doctype html><meta charset="utf-8"><title>tapeseal bench</title>
<script type="module">
import * as api from "/tapeseal/web/index.js";
import { measure } from "/measure.js";
try {
  const kek = await (await fetch("/kek.pem")).text();
  window.done = await measure(api, kek, (line) => console.log(line));
} catch (err) {
  window.failed = String(err);
}
</script>`;
const server = await serve((path) => {
  if (path === "/") return { body: page, type: "text/html" };
  if (path === "/kek.pem") return kekPath;
  if (path === "/measure.js") return join(here, "measure.js");
  if (path.startsWith("/tapeseal/") && !path.includes("..")) return join(resolve(pkg), path.slice(10));
  return undefined;
});
const browser = await launchChromium();
try {
  console.log(`Chromium ${browser.version()}, 60 MB payload, 64 KiB chunks, median of 5`);
  await runPage(browser, `${server.url}/`, "  chromium");
} finally {
  await browser.close();
  server.close();
}
