// Loopback HTTP serving and a headless Debian Chromium, for the browser test and the
// browser benchmark.
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { extname } from "node:path";
import { chromium } from "playwright-core";

const TYPES = {
  ".js": "text/javascript",
  ".mjs": "text/javascript",
  ".wasm": "application/wasm",
  ".html": "text/html",
  ".json": "application/json",
  ".pem": "text/plain",
};

/**
 * Serves on 127.0.0.1: `resolve(pathname)` returns a file path, a string or Buffer
 * body with `{ body, type }`, or undefined for 404. Returns the base URL and a close().
 */
export async function serve(resolve) {
  const server = createServer((req, res) => {
    const path = new URL(req.url, "http://127.0.0.1").pathname;
    let found;
    try {
      found = resolve(path);
      if (typeof found === "string") found = { body: readFileSync(found), type: TYPES[extname(found)] };
    } catch {
      found = undefined;
    }
    if (!found) {
      res.writeHead(path === "/favicon.ico" ? 204 : 404).end();
      return;
    }
    res.writeHead(200, { "content-type": found.type ?? "application/octet-stream" }).end(found.body);
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

/** Debian's Chromium, headless, with no background traffic off the machine. */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
}

/** Opens `url`, forwards the page's console, and waits for `window.done`'s value. */
export async function runPage(browser, url, prefix) {
  const tab = await browser.newPage();
  const errors = [];
  tab.on("console", (msg) => console.log(`${prefix} ${msg.text()}`));
  tab.on("pageerror", (err) => errors.push(err.message));
  await tab.goto(url);
  await tab.waitForFunction(() => window.done !== undefined || window.failed !== undefined, null, {
    timeout: 120_000,
  });
  const failed = await tab.evaluate(() => window.failed);
  if (failed || errors.length) throw new Error(`page failed: ${failed ?? errors.join("; ")}`);
  return tab.evaluate(() => window.done);
}
