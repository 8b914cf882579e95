// Envelopes cross between the npm package (Node) and the wasmtime-hosted `tapeseal`
// binary, both ways, with keys made by `tapeseal keygen` and unwrapped by the other
// side (OpenSSL in Node, aws-lc-rs in the host).
// Usage (inside a project with tapeseal installed): node cross-host.mjs <tapeseal binary>
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { privateDecrypt, constants, randomBytes } from "node:crypto";
import { generateDek, seal, open, inspect } from "tapeseal";

const [binary] = process.argv.slice(2);
const dir = mkdtempSync(join(tmpdir(), "tapeseal-cross-"));
const run = (...args) => execFileSync(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
const same = (a, b, what) => {
  if (Buffer.compare(Buffer.from(a), Buffer.from(b)) !== 0) throw new Error(`${what}: bytes differ`);
};

try {
  run("keygen", "--out", dir, "--id", "kek-cross");
  const publicPem = readFileSync(join(dir, "kek-cross.public.pem"), "utf8");
  const privatePem = readFileSync(join(dir, "kek-cross.private.pem"), "utf8");

  // Node seals, the host opens with the private key and with the DEK.
  const plain = randomBytes(300_000);
  const dek = generateDek();
  const fromNode = seal(plain, publicPem, {
    kekId: "kek-cross", orgId: "org-1", recordingId: "from-node", mediaKind: "email",
    contentType: "message/rfc822", wrapAlgorithm: "rsa-oaep-sha1", chunkSize: 4096, dek,
  });
  writeFileSync(join(dir, "from-node.tapeseal"), fromNode);
  run("open", "--key", join(dir, "kek-cross.private.pem"), "--in", join(dir, "from-node.tapeseal"), "--out", join(dir, "a.out"));
  same(readFileSync(join(dir, "a.out")), plain, "host open --key of a Node envelope");
  run("open", "--dek", Buffer.from(dek).toString("base64"), "--in", join(dir, "from-node.tapeseal"), "--out", join(dir, "b.out"));
  same(readFileSync(join(dir, "b.out")), plain, "host open --dek of a Node envelope");

  // The host seals, Node unwraps with OpenSSL and opens.
  writeFileSync(join(dir, "plain.bin"), plain);
  run("seal", "--kek", join(dir, "kek-cross.public.pem"), "--in", join(dir, "plain.bin"), "--out", join(dir, "from-host.tapeseal"), "--media-kind", "call");
  const fromHost = readFileSync(join(dir, "from-host.tapeseal"));
  const info = inspect(fromHost);
  const unwrapped = privateDecrypt(
    { key: privatePem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" },
    Buffer.from(info.stanzas[0].wrappedDek, "base64"),
  );
  same(open(fromHost, new Uint8Array(unwrapped)), plain, "Node open of a host envelope");
  console.log(`cross-host: Node -> tapeseal (key and DEK) and tapeseal -> Node agree on ${plain.length} bytes (${info.mediaKind}, ${info.chunkCount} chunks)`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
