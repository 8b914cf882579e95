// The same through require(), for CommonJS projects.
const { readFileSync } = require("node:fs");
const { seal, open, generateDek } = require("tapeseal");

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
console.log(`cjs: sealed and opened ${envelope.length} bytes`);
