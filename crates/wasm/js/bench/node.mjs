// cargo xtask bench: the package's seal/open throughput in Node.
// Usage: node node.mjs <package dir> <kek public PEM>
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { measure } from "./measure.js";

const [pkg, kekPath] = process.argv.slice(2);
const api = createRequire(import.meta.url)(join(resolve(pkg), "node/index.cjs"));
console.log(`Node ${process.version}, 60 MB payload, 64 KiB chunks, median of 5`);
await measure(api, readFileSync(kekPath, "utf8"), (line) => console.log(`  node ${line}`));
