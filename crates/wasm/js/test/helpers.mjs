// Shared helpers for the package tests: the repository's vectors and KEKs.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

export const vectorsDir = process.env.TAPESEAL_VECTORS;
if (!vectorsDir) throw new Error("TAPESEAL_VECTORS must name tests/vectors");

export function vectors() {
  return readdirSync(vectorsDir)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((f) => JSON.parse(readFileSync(join(vectorsDir, f), "utf8")));
}

export const b64 = (s) => new Uint8Array(Buffer.from(s, "base64"));
export const kekPublic = (id) => readFileSync(join(vectorsDir, "keys", `${id}.public.pem`), "utf8");
export const kekPrivate = (id) => readFileSync(join(vectorsDir, "keys", `${id}.private.pem`), "utf8");

/** The vector outcome name for an error code. */
export function category(err) {
  if (err === undefined) return "success";
  switch (err.code) {
    case "DECRYPT_FAILED":
      return "decrypt failure";
    case "UNSUPPORTED_VERSION":
      return "unsupported version";
    case "MALFORMED_HEADER":
    case "UNSUPPORTED_SUITE":
    case "INCOMPLETE_HEADER":
      return "header failure";
    default:
      return `unexpected ${err.name}: ${err.code} ${err.message}`;
  }
}

export function outcome(fn) {
  try {
    return { value: fn(), category: "success" };
  } catch (err) {
    return { error: err, category: category(err) };
  }
}

export function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
