// Helpers for the end-to-end test: the tapeseal processes it starts (and always
// stops), the CLI, HTTP to the server and to the LKM (pinned by certificate
// fingerprint), test data, and a small check runner.
import { spawn, execFile } from "node:child_process";
import { createWriteStream, readdirSync, statSync, mkdirSync, cpSync, existsSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { createHash, X509Certificate } from "node:crypto";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileP = promisify(execFile);

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
export const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");

// ---- checks --------------------------------------------------------------------------

const outcomes = [];

/** Runs one named check; records pass or fail and never throws (unless `fatal`). */
export async function check(name, fn, { fatal = false } = {}) {
  const started = Date.now();
  console.log(`\n▶ ${name}`);
  try {
    const value = await fn();
    const ms = Date.now() - started;
    console.log(`✔ ${name} (${ms} ms)`);
    outcomes.push({ name, ok: true, ms });
    return value;
  } catch (err) {
    const ms = Date.now() - started;
    console.log(`✘ ${name} (${ms} ms): ${err?.stack ?? err}`);
    outcomes.push({ name, ok: false, ms, error: String(err?.message ?? err) });
    if (fatal) throw err;
    return undefined;
  }
}

export function outcomesSoFar() {
  return outcomes;
}

export function assert(condition, message) {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}

export function assertEqual(actual, expected, what) {
  if (actual !== expected) {
    throw new Error(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}

export function step(text) {
  console.log(`  · ${text}`);
}

// ---- processes -----------------------------------------------------------------------

const children = new Set();

/** Kills every process this test started (used on exit, also after a failure). */
export function killAll(signal = "SIGKILL") {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        child.kill(signal);
      } catch {
        // already gone
      }
    }
  }
}

process.on("exit", () => killAll());
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    killAll();
    process.exit(130);
  });
}

/**
 * Starts moto's KMS (`moto_server`, from TAPESEAL_MOTO_SERVER or PATH) on a free
 * loopback port without IAM enforcement, and resolves with its URL once it answers.
 */
export function startMoto({ logFile, timeoutMs = 30000 }) {
  const bin = process.env.TAPESEAL_MOTO_SERVER || "moto_server";
  const log = createWriteStream(logFile, { flags: "a" });
  log.write(`\n=== moto: ${bin}\n`);
  const child = spawn(bin, ["-H", "127.0.0.1", "-p", "0"], { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  child.on("exit", () => children.delete(child));
  return new Promise((resolve, reject) => {
    let text = "";
    const timer = setTimeout(() => reject(new Error(`moto did not start (log: ${logFile})`)), timeoutMs);
    const seen = (data) => {
      log.write(data);
      text += data;
      const m = /Running on (http:\/\/127\.0\.0\.1:\d+)/.exec(text);
      if (m) {
        clearTimeout(timer);
        resolve({ name: "moto", child, url: m[1] });
      }
    };
    child.stdout.on("data", seen);
    child.stderr.on("data", seen);
    child.on("error", (err) => reject(new Error(`cannot start ${bin}: ${err.message}`)));
  });
}

/** Creates a symmetric key in moto's KMS; resolves with its ARN. */
export async function motoCreateKey(url) {
  const response = await fetch(`${url}/`, {
    method: "POST",
    headers: {
      "Content-Type": "application/x-amz-json-1.1",
      "X-Amz-Target": "TrentService.CreateKey",
      // moto picks the service from the credential scope; it checks no signature here.
      Authorization: "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=0",
    },
    body: "{}",
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`moto CreateKey: ${response.status} ${text}`);
  return JSON.parse(text).KeyMetadata.Arn;
}

/**
 * Starts `bin args` and waits for `listening on URL` on stdout (and, for the LKM,
 * the certificate fingerprint on stderr). Output goes to `logFile`.
 */
export function startService(bin, args, { name, logFile, env = {}, tls = false, timeoutMs = 30000 }) {
  const log = createWriteStream(logFile, { flags: "a" });
  log.write(`\n=== ${name}: ${bin} ${args.join(" ")}\n`);
  const child = spawn(bin, args, {
    env: { ...process.env, TAPESEAL_LOG: process.env.TAPESEAL_LOG ?? "warn", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  child.on("exit", () => children.delete(child));
  return new Promise((resolve, reject) => {
    let url = null;
    let fingerprint = null;
    let out = "";
    let err = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${name} did not start within ${timeoutMs} ms (log: ${logFile})`));
    }, timeoutMs);
    const settle = () => {
      if (url && (!tls || fingerprint)) {
        clearTimeout(timer);
        resolve({ name, child, url, fingerprint, args });
      }
    };
    child.stdout.on("data", (data) => {
      log.write(data);
      out += data;
      const m = /listening on (\S+)/.exec(out);
      if (m && !url) {
        url = m[1];
        settle();
      }
    });
    child.stderr.on("data", (data) => {
      log.write(data);
      err += data;
      const m = /certificate sha256 fingerprint: ([0-9a-f]{64})/.exec(err);
      if (m && !fingerprint) {
        fingerprint = m[1];
        settle();
      }
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      if (!url || (tls && !fingerprint)) {
        reject(new Error(`${name} exited (${code ?? signal}) before it was ready; log: ${logFile}\n${err.slice(-2000)}`));
      }
    });
  });
}

/** SIGTERM, then waits for the process to exit (SIGKILL after `graceMs`). */
export async function stopService(service, graceMs = 10000) {
  const { child } = service;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Runs the tapeseal CLI; returns `{stdout, stderr}` or throws with its stderr. */
export async function cli(bin, args) {
  try {
    return await execFileP(bin, args, { maxBuffer: 16 << 20 });
  } catch (err) {
    throw new Error(`tapeseal ${args.join(" ")} failed: ${err.stderr || err.message}`);
  }
}

// ---- HTTP ----------------------------------------------------------------------------

/**
 * A request to the tapeseal server with a bearer token; returns `{status, headers,
 * json, bytes}`. A fresh connection each time: a kept-alive one that the server
 * closes as idle while a request starts on it would fail the request (EPIPE).
 */
export function api(base, method, path, token, { json, body, headers = {} } = {}) {
  const sendHeaders = { ...headers };
  if (token) sendHeaders.Authorization = `Bearer ${token}`;
  let payload = body;
  if (json !== undefined) {
    sendHeaders["Content-Type"] = "application/json";
    payload = Buffer.from(JSON.stringify(json));
  }
  if (payload !== undefined) sendHeaders["Content-Length"] = payload.length;
  return new Promise((resolve, reject) => {
    const req = httpRequest(new URL(path, base), { method, headers: sendHeaders, agent: false }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => {
        const bytes = Buffer.concat(chunks);
        let parsed = null;
        try {
          parsed = JSON.parse(bytes.toString("utf8"));
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode, headers: res.headers, json: parsed, bytes });
      });
    });
    req.on("error", (err) => reject(new Error(`${method} ${path} failed: ${err.code ?? ""} ${err.message}`)));
    req.end(payload);
  });
}

/** `api`, asserting the status; returns the JSON body. */
export async function apiOk(base, method, path, token, options, expected = [200, 201, 202, 204]) {
  const r = await api(base, method, path, token, options);
  if (!expected.includes(r.status)) {
    throw new Error(`${method} ${path}: HTTP ${r.status} ${r.bytes.toString("utf8").slice(0, 500)}`);
  }
  return r.json;
}

/**
 * HTTPS to the LKM, trusting exactly the certificate with `fingerprint` (hex SHA-256
 * of its DER), as the server pins it. Returns `{status, headers, json}`.
 */
export function lkmHttp(url, fingerprint, method, { headers = {}, json } = {}) {
  return new Promise((resolve, reject) => {
    const body = json === undefined ? undefined : Buffer.from(JSON.stringify(json));
    const req = httpsRequest(
      url,
      {
        method,
        rejectUnauthorized: false,
        agent: false, // no TLS session reuse: a resumed session shows no certificate to pin
        headers: { ...headers, ...(body ? { "Content-Type": "application/json", "Content-Length": body.length } : {}) },
      },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed = null;
          try {
            parsed = JSON.parse(text);
          } catch {
            // not JSON
          }
          resolve({ status: res.statusCode, headers: res.headers, json: parsed, text });
        });
      },
    );
    req.on("socket", (socket) => {
      socket.on("secureConnect", () => {
        const seen = socket.getPeerCertificate().fingerprint256?.replaceAll(":", "").toLowerCase();
        if (seen !== fingerprint) req.destroy(new Error(`LKM certificate ${seen} is not the pinned ${fingerprint}`));
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** base64 SHA-256 of a PEM certificate's SubjectPublicKeyInfo: what Chromium's SPKI pin list takes. */
export function spkiPin(pem) {
  const der = new X509Certificate(pem).publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(der).digest("base64");
}

// ---- data --------------------------------------------------------------------------

/**
 * A mono 16-bit PCM WAV of `seconds` at `rate` Hz: a tone whose pitch drifts, plus a
 * little noise from `seed`, so no two chunks of it are alike.
 */
export function wav(seconds, { rate = 8000, seed = 1 } = {}) {
  const samples = Math.round(seconds * rate);
  const buf = Buffer.alloc(44 + samples * 2);
  buf.write("RIFF", 0, "ascii");
  buf.writeUInt32LE(36 + samples * 2, 4);
  buf.write("WAVE", 8, "ascii");
  buf.write("fmt ", 12, "ascii");
  buf.writeUInt32LE(16, 16);
  buf.writeUInt16LE(1, 20);
  buf.writeUInt16LE(1, 22);
  buf.writeUInt32LE(rate, 24);
  buf.writeUInt32LE(rate * 2, 28);
  buf.writeUInt16LE(2, 32);
  buf.writeUInt16LE(16, 34);
  buf.write("data", 36, "ascii");
  buf.writeUInt32LE(samples * 2, 40);
  const pcm = new Int16Array(buf.buffer, buf.byteOffset + 44, samples);
  let x = seed >>> 0 || 1;
  let phase = 0;
  for (let i = 0; i < samples; i++) {
    const freq = 300 + 200 * Math.sin((2 * Math.PI * i) / (rate * 7));
    phase += (2 * Math.PI * freq) / rate;
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    pcm[i] = Math.round(6000 * Math.sin(phase)) + ((x >>> 24) - 128);
  }
  return buf;
}

/** The path of the file named `name` anywhere under `dir`, or null. */
export function findFile(dir, name) {
  if (!existsSync(dir)) return null;
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) {
      const found = findFile(path, name);
      if (found) return found;
    } else if (entry === name) {
      return path;
    }
  }
  return null;
}

/** Assembles the served directory like the server expects: www/ (less tests) plus pkg/. */
export function assembleWww(wwwSource, pkgSource, into) {
  mkdirSync(into, { recursive: true });
  for (const entry of readdirSync(wwwSource)) {
    if (["test", "node_modules", "package.json", "package-lock.json", "README.md"].includes(entry)) continue;
    cpSync(join(wwwSource, entry), join(into, entry), { recursive: true });
  }
  cpSync(pkgSource, join(into, "pkg"), { recursive: true });
  return into;
}
