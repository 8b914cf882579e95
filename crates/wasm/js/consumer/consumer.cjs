// The same through require(), for CommonJS projects, with the WebCrypto path too.
const { readFileSync } = require("node:fs");
const { seal, open, generateDek, AsyncOpener } = require("tapeseal");

const kek = readFileSync(process.argv[2], "utf8");
const dek = generateDek();
const envelope = seal(Buffer.from("chat: hello"), kek, {
  kekId: "kek-a",
  orgId: "org-1",
  recordingId: "rec-2",
  mediaKind: "chat",
  contentType: "application/json",
  dek,
});
if (Buffer.from(open(envelope, dek)).toString() !== "chat: hello") throw new Error("round trip failed");
(async () => {
  const opener = new AsyncOpener(dek);
  const parts = [await opener.push(envelope), await opener.finish()];
  if (Buffer.concat(parts).toString() !== "chat: hello") throw new Error("AsyncOpener round trip failed");
  console.log(`cjs: sealed and opened ${envelope.length} bytes, also through WebCrypto`);
})().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
