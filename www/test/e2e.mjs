// End-to-end test of the browser pages against the real tapeseal server and reference
// LKM, in Debian's Chromium (headless, via playwright-core). Starts everything itself
// on 127.0.0.1 in temporary directories and stops it all at the end, also on failure.
//
//   TAPESEAL_BIN=target/debug/tapeseal TAPESEAL_WWW=<assembled www dir> \
//   TAPESEAL_E2E_OUT=target/www-e2e node www/test/e2e.mjs
//
// Without TAPESEAL_WWW the directory is assembled from www/ and target/npm/tapeseal/web.
import { chromium } from "playwright-core";
import { createServer } from "node:http";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, openSync, readSync, writeSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import {
  api, apiOk, assembleWww, assert, assertEqual, check, cli, findFile, killAll, lkmHttp, outcomesSoFar,
  motoCreateKey, sha256, sleep, spkiPin, startMoto, startService, step, stopService, wav,
} from "./harness.mjs";
import { audio, checkAudio, expectPlaying, pick, signIn, waitState } from "./pages.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, "../..");
// Short enough that check 5 can wait for a grant to expire; long enough that a page
// under a loaded CI machine redeems its grant well before (iat is whole seconds, so a
// grant lives between GRANT_TTL - 1 and GRANT_TTL seconds).
const GRANT_TTL = 8;
const MiB = 1 << 20;
const AUTH_CODES = ["DECRYPT_FAILED", "MALFORMED_HEADER", "INCOMPLETE_HEADER", "decrypt_failed"];

const BIN = process.env.TAPESEAL_BIN && resolve(process.env.TAPESEAL_BIN);
if (!BIN) {
  console.error("set TAPESEAL_BIN to the tapeseal binary (e.g. target/debug/tapeseal)");
  process.exit(2);
}
const OUT = resolve(process.env.TAPESEAL_E2E_OUT ?? join(REPO, "target/www-e2e"));
mkdirSync(OUT, { recursive: true });
const TMP = mkdtempSync(join(tmpdir(), "tapeseal-www-e2e-"));
const WWW = process.env.TAPESEAL_WWW
  ? resolve(process.env.TAPESEAL_WWW)
  : assembleWww(join(REPO, "www"), join(REPO, "target/npm/tapeseal/web"), join(TMP, "www"));
const LOG = join(OUT, "services.log");
writeFileSync(LOG, "");

const results = { grantTtlSecs: GRANT_TTL };
const env = {}; // what setup made: urls, tokens, ids
const started = Date.now();

// ---- setup -----------------------------------------------------------------------

async function makeOrg(name) {
  const data = join(TMP, "server");
  const made = await cli(BIN, ["org", "create", "--data", data, name]);
  const id = /(org-[0-9a-f]+)/.exec(made.stdout + made.stderr)?.[1];
  const token = async (role) =>
    (await cli(BIN, ["token", "create", "--data", data, "--org", name, "--role", role, "--label", "e2e"])).stdout.trim();
  return { name, id, admin: await token("admin"), recorder: await token("recorder"), player: await token("player") };
}

function serveArgs(listen) {
  return ["serve", "--data", join(TMP, "server"), "--listen", listen, "--www", WWW, "--config", join(TMP, "server.toml")];
}

async function setup() {
  env.moto = await startMoto({ logFile: LOG });
  step(`moto's KMS on ${env.moto.url}`);
  writeFileSync(
    join(TMP, "server.toml"),
    `shutdown_grace_secs = 2\n\n[grants]\nttl_secs = ${GRANT_TTL}\n\n` +
      `[kms]\nendpoint_url = "${env.moto.url}"\nregion = "us-east-1"\n`,
  );
  step("organisations and tokens (CLI)");
  env.managed = await makeOrg("e2e-managed");
  env.lkmOrg = await makeOrg("e2e-lkm");
  env.kmsOrg = await makeOrg("e2e-kms");
  step("server");
  env.server = await startService(BIN, serveArgs("127.0.0.1:0"), { name: "server", logFile: LOG });
  env.base = env.server.url;
  env.origin = new URL(env.base).origin;
  step(`server on ${env.base}`);

  const lkmData = join(TMP, "lkm");
  const creds = JSON.parse((await cli(BIN, ["lkm", "credentials", "add", "tapeseal-e2e", "--data", lkmData])).stdout);
  env.lkm = await startService(
    BIN,
    ["lkm", "serve", "--data", lkmData, "--listen", "127.0.0.1:0", "--allow-origin", env.origin],
    { name: "lkm", logFile: LOG, tls: true },
  );
  env.lkmAdmin = readFileSync(join(lkmData, "admin.token"), "utf8").trim();
  env.spki = spkiPin(readFileSync(join(lkmData, "tls-cert.pem"), "utf8"));
  step(`LKM on ${env.lkm.url} (certificate ${env.lkm.fingerprint.slice(0, 16)}…, SPKI pin ${env.spki})`);
  const kp = await lkmHttp(`${env.lkm.url}/key-management/v1/keypair`, env.lkm.fingerprint, "POST", {
    headers: { Authorization: `Bearer ${env.lkmAdmin}` },
  });
  assertEqual(kp.status, 200, `POST /keypair (${kp.text})`);
  const admin = env.lkmOrg.admin;
  await apiOk(env.base, "PUT", "/v1/lkm", admin, {
    json: {
      decrypt_url: `${env.lkm.url}/key-management/v1/decrypt`,
      hawk_id: creds.id,
      hawk_key: creds.authKey,
      fingerprint: env.lkm.fingerprint,
    },
  });
  await apiOk(env.base, "POST", "/v1/lkm/keypairs", admin, { json: { id: kp.json.id, public_key: kp.json.publicKey } });
  env.kmsKey = await motoCreateKey(env.moto.url);
  const kms = await apiOk(env.base, "PUT", "/v1/kms", env.kmsOrg.admin, {
    json: { key_id: env.kmsKey, access_key_id: "e2e", secret_access_key: "e2e-secret" },
  });
  step(`PUT /v1/kms: key_mode ${kms.key_mode}, key ${kms.key_arn}`);
  const lkm = await apiOk(env.base, "GET", "/v1/lkm", admin);
  step(`GET /v1/lkm: key_mode ${lkm.key_mode}, browser_grants ${lkm.browser_grants}`);
  assertEqual(lkm.browser_grants, true, "the LKM org takes browser grants");

  step("ingest (recorder tokens)");
  env.data = {
    lkmCall: { org: env.lkmOrg, kind: "call", type: "audio/wav", bytes: wav(20, { seed: 1 }) },
    managedCall: { org: env.managed, kind: "call", type: "audio/wav", bytes: wav(20, { seed: 2 }) },
    lkmEmail: {
      org: env.lkmOrg,
      kind: "email",
      type: "text/plain",
      bytes: Buffer.from(
        "From: customer@example.com\nSubject: Refund <urgent>\n\nHello,\n<script>alert(1)</script> is just text.\nNaïve café — 日本語\n",
      ),
    },
    tamperPayload: { org: env.lkmOrg, kind: "call", type: "audio/wav", bytes: wav(20, { seed: 4 }) },
    tamperHeader: { org: env.lkmOrg, kind: "call", type: "audio/wav", bytes: wav(5, { seed: 5 }) },
    tamperEmail: { org: env.lkmOrg, kind: "email", type: "text/plain", bytes: Buffer.from("Subject: altered\n\nsecret words\n") },
  };
  for (const [name, s] of Object.entries(env.data)) await ingest(name, s);
  env.data.hour = { org: env.lkmOrg, kind: "call", type: "audio/wav", bytes: wav(3600, { seed: 3 }) };
  const hourStarted = Date.now();
  await ingest("hour", env.data.hour);
  results.hourCall = {
    plaintextBytes: env.data.hour.bytes.length,
    envelopeBytes: env.data.hour.meta.stored_size,
    ingestMs: Date.now() - hourStarted,
  };
  step(`one-hour call: ${env.data.hour.bytes.length} bytes, envelope ${env.data.hour.meta.stored_size} bytes`);

  tamper(env.data.tamperPayload, "payload");
  tamper(env.data.tamperHeader, "header");
  tamper(env.data.tamperEmail, "payload");
}

async function ingest(name, s) {
  s.meta = await apiOk(
    env.base,
    "POST",
    `/v1/recordings?kind=${s.kind}&conversation_id=e2e-${name}`,
    s.org.recorder,
    { body: s.bytes, headers: { "Content-Type": s.type } },
    [201],
  );
  s.id = s.meta.id;
  step(`${name}: ${s.id} (${s.bytes.length} bytes, kek ${s.meta.kek_id})`);
}

/** Flips one bit of the stored envelope: in chunk 0's ciphertext, or in the header MAC. */
function tamper(s, where) {
  const path = findFile(join(TMP, "server"), `${s.id}.tseal`);
  assert(path, `stored file of ${s.id}`);
  const fd = openSync(path, "r+");
  try {
    const prefix = Buffer.alloc(14);
    readSync(fd, prefix, 0, 14, 0);
    const headerLen = prefix.readUInt32BE(10);
    const at = where === "header" ? headerLen - 1 : headerLen + 20;
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, at);
    b[0] ^= 0x01;
    writeSync(fd, b, 0, 1, at);
  } finally {
    closeSync(fd);
  }
  step(`tampered ${where} of ${s.id} (${path.slice(join(TMP, "server").length + 1)})`);
}

// ---- checks ------------------------------------------------------------------------

async function main() {
  await check("setup: server, LKM, organisations, recordings", setup, { fatal: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--mute-audio",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--autoplay-policy=no-user-gesture-required",
      `--ignore-certificate-errors-spki-list=${env.spki}`,
    ],
  });
  try {
    await browserChecks(browser);
  } finally {
    await browser.close();
  }
}

async function browserChecks(browser) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const pageErrors = [];
  page.on("pageerror", (err) => pageErrors.push(err.message));
  page.on("console", (msg) => {
    if (msg.type() === "error") console.log(`  [page console] ${msg.text()}`);
  });
  // Every request the service worker sends for an envelope, seen by Chromium itself.
  const swEnvelope = [];
  context.on("request", (request) => {
    if (request.serviceWorker() && /\/v1\/recordings\/[^/]+\/envelope$/.test(new URL(request.url()).pathname)) {
      swEnvelope.push(request);
    }
  });
  const { data } = env;

  await check("1. LKM-mode call plays through the grant, the LKM and the service worker", async () => {
    await signIn(page, env.lkmOrg.player, `${env.base}/`);
    await pick(page, data.lkmCall.id);
    await expectPlaying(page, "the LKM call");
    const t = await page.evaluate(() => window.__e2e);
    results.clickToFirstPlayingMs = Math.round(t.playing - t.click);
    step(`click to first 'playing': ${results.clickToFirstPlayingMs} ms`);
    const stats = await page.evaluate(() => window.tapesealPage.stats());
    assert(stats.envelopeRequests > 0 && stats.contentRequests === 0, `played from the envelope: ${JSON.stringify(stats)}`);
    await checkAudio(page, data.lkmCall, 20);
    await page.screenshot({ path: join(OUT, "playback.png"), fullPage: true });
    const log = await lkmHttp(`${env.lkm.url}/key-management/v1/request-log?maxEntries=50`, env.lkm.fingerprint, "GET", {
      headers: { Authorization: `Bearer ${env.lkmAdmin}` },
    });
    const browserDecrypts = (log.json ?? []).filter((e) => e.path?.endsWith("/browser-decrypt") && e.status === 200);
    assert(browserDecrypts.length >= 1, `the LKM's request log shows a browser decrypt: ${log.text.slice(0, 300)}`);
  });

  await check("2. managed-org call plays through the server's content URL", async () => {
    await signIn(page, env.managed.player, `${env.base}/`);
    await pick(page, data.managedCall.id);
    await expectPlaying(page, "the managed call");
    const stats = await page.evaluate(() => window.tapesealPage.stats());
    assert(stats.contentRequests > 0 && stats.envelopeRequests === 0, `played from content: ${JSON.stringify(stats)}`);
    await checkAudio(page, data.managedCall, 20);
  });

  await check("3. email is shown as text equal to the original", async () => {
    await signIn(page, env.lkmOrg.player, `${env.base}/`);
    await pick(page, data.lkmEmail.id);
    const s = await waitState(page, ["ready", "error"]);
    assertEqual(s.state, "ready", `state (${s.code}: ${s.error})`);
    assertEqual(await page.evaluate(() => document.getElementById("text").textContent), data.lkmEmail.bytes.toString("utf8"), "shown text");
    assertEqual(await page.evaluate(() => document.querySelectorAll("#text *").length), 0, "elements inside the text");
    assertEqual(await page.evaluate(() => window.tapesealPage.digest()), sha256(data.lkmEmail.bytes), "digest of the text");
  });

  await check("3b. a sign-in link (as cargo xtask demo prints it) opens the named recording", async () => {
    const linked = await context.newPage();
    linked.on("pageerror", (err) => pageErrors.push(err.message));
    await linked.goto(`${env.base}/#token=${env.lkmOrg.player}&recording=${data.lkmCall.id}`);
    await linked.waitForFunction(() => document.documentElement.dataset.loaded === "true");
    const s = await waitState(linked, ["ready", "playing", "error"]);
    assert(s.state !== "error", `the linked recording opened (${s.code}: ${s.error})`);
    assertEqual(await linked.evaluate(() => location.hash), "", "the token left the address bar");
    assertEqual(await linked.evaluate(() => window.tapesealPage.digest()), sha256(data.lkmCall.bytes), "digest of the linked call");
    await linked.close();
  });

  await check("4. seeking in the one-hour call fetches only the chunks it needs", async () => {
    await pick(page, data.hour.id);
    await expectPlaying(page, "the one-hour call");
    const first = await audio(page);
    assert(Math.abs(first.duration - 3600) <= 0.1, `duration ${first.duration} is 3600 ± 0.1 s`);
    await sleep(1000);
    const metricBefore = await envelopeMetric();
    const seek = await page.evaluate(async () => {
      const a = document.getElementById("audio");
      const before = await window.tapesealPage.stats();
      const startedAt = Date.now();
      await new Promise((ok) => {
        a.addEventListener("seeked", ok, { once: true });
        a.currentTime = 1800;
      });
      const seekedAt = Date.now();
      const atSeeked = await window.tapesealPage.stats();
      return { before, atSeeked, startedAt, seekedAt };
    });
    await page.waitForFunction(() => document.getElementById("audio").currentTime > 1800.3, null, { timeout: 15000 });
    await sleep(300);
    const metricAfter = await envelopeMetric();
    const during = swEnvelope.filter((r) => {
      const at = r.timing().startTime;
      return at >= seek.startedAt - 5 && at <= seek.seekedAt + 5;
    });
    let independentBytes = 0;
    for (const r of during) {
      const response = await r.response();
      independentBytes += Number((await response?.allHeaders())?.["content-length"] ?? 0);
    }
    await sleep(1500);
    const later = await page.evaluate(() => window.tapesealPage.stats());
    results.seek = {
      to: 1800,
      msToSeeked: seek.seekedAt - seek.startedAt,
      envelopeRequests: seek.atSeeked.envelopeRequests - seek.before.envelopeRequests,
      envelopeBytes: seek.atSeeked.envelopeBytes - seek.before.envelopeBytes,
      independent: { envelopeRequests: during.length, envelopeBytes: independentBytes, source: "playwright context 'request' events of the service worker" },
      serverEnvelope206UntilResumed: metricAfter - metricBefore,
      twoSecondsLater: {
        envelopeRequests: later.envelopeRequests - seek.before.envelopeRequests,
        envelopeBytes: later.envelopeBytes - seek.before.envelopeBytes,
      },
      rangesDuringSeek: during.map((r) => r.headers().range),
    };
    step(`seek: ${JSON.stringify(results.seek)}`);
    const r = results.seek;
    assert(r.envelopeRequests >= 1 && r.envelopeRequests < 10, `stats hook: ${r.envelopeRequests} requests for the seek`);
    assert(r.envelopeBytes > 0 && r.envelopeBytes < 2 * MiB, `stats hook: ${r.envelopeBytes} bytes for the seek`);
    assert(r.independent.envelopeRequests >= 1 && r.independent.envelopeRequests < 10, "independent request count");
    assert(r.independent.envelopeBytes > 0 && r.independent.envelopeBytes < 2 * MiB, "independent byte count");
    assert(r.twoSecondsLater.envelopeBytes < 16 * MiB, "no download of the rest of the hour");

    step("service worker stopped (memory lost); seeking again recovers the session from the page");
    const cdp = await context.newCDPSession(page);
    await cdp.send("ServiceWorker.enable");
    await cdp.send("ServiceWorker.stopAllWorkers");
    await cdp.detach();
    await page.evaluate(() => (document.getElementById("audio").currentTime = 3000));
    await page.waitForFunction(() => document.getElementById("audio").currentTime > 3000.3, null, { timeout: 15000 });
    const s = await page.evaluate(() => document.body.dataset.state);
    assertEqual(s, "playing", "state after the worker restarted");
    const handovers = await page.evaluate(() => window.tapesealPage.handovers);
    assert(handovers >= 1, `the restarted worker asked the page for the session (${handovers})`);
    results.seek.sessionHandoversAfterWorkerStop = handovers;
  });

  await check("5. the LKM refuses expired, mismatched and replayed grants (from the page, with CORS)", async () => {
    const playback = (id) =>
      page.evaluate(async (id) => {
        const token = sessionStorage.getItem("tapeseal.playerToken");
        const r = await fetch(`/v1/recordings/${id}/playback`, { method: "POST", headers: { Authorization: `Bearer ${token}` } });
        return r.json();
      }, id);
    const post = (target, grant, body) =>
      target.evaluate(
        async ({ grant, body }) => {
          try {
            const r = await fetch(grant.lkm_url, {
              method: "POST",
              headers: { "Content-Type": "application/json" },
              body: JSON.stringify({ grant: grant.token, keypairId: grant.keypair_id, body }),
            });
            return { status: r.status, json: await r.json().catch(() => null) };
          } catch (err) {
            return { failed: String(err) };
          }
        },
        { grant, body },
      );
    const expiring = (await playback(data.lkmCall.id)).grant;
    assert(expiring?.token?.startsWith("tsg1."), `a grant: ${JSON.stringify(expiring)}`);
    const waitUntil = expiring.expires_at + 1000;

    const a = (await playback(data.lkmCall.id)).grant;
    const b = (await playback(data.lkmEmail.id)).grant;
    const mismatch = await post(page, a, b.wrapped_dek);
    step(`grant of A with B's wrapped DEK: ${JSON.stringify(mismatch)}`);
    assertEqual(mismatch.status, 403, "status for a mismatched grant");
    assertEqual(mismatch.json?.code, "grant_mismatch", "code for a mismatched grant");

    const c = (await playback(data.lkmCall.id)).grant;
    const once = await post(page, c, c.wrapped_dek);
    assertEqual(once.status, 200, `first use of a grant (${JSON.stringify(once)})`);
    assertEqual(Buffer.from(once.json.body, "base64").length, 32, "DEK length");
    const twice = await post(page, c, c.wrapped_dek);
    step(`replayed grant: ${JSON.stringify(twice)}`);
    assertEqual(twice.json?.code, "grant_replayed", "code for a replayed grant");
    assert(twice.status === 401 || twice.status === 403, `status ${twice.status} for a replayed grant`);

    await sleep(Math.max(0, waitUntil - Date.now()));
    const expired = await post(page, expiring, expiring.wrapped_dek);
    step(`expired grant: ${JSON.stringify(expired)}`);
    assertEqual(expired.status, 401, "status for an expired grant");
    assertEqual(expired.json?.code, "grant_expired", "code for an expired grant");

    // The page, handed a grant that expired on the way, asks for a fresh one once and
    // plays (the server's answer is swapped for one carrying the expired grant).
    const stale = await apiOk(env.base, "POST", `/v1/recordings/${data.lkmCall.id}/playback`, env.lkmOrg.player);
    stale.grant = expiring;
    let swapped = 0;
    await page.route(`**/v1/recordings/${data.lkmCall.id}/playback`, async (route) => {
      if (swapped++ === 0) await route.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify(stale) });
      else await route.continue();
    });
    try {
      await pick(page, data.lkmCall.id);
      await expectPlaying(page, "the call after a stale grant");
      assertEqual(swapped, 2, "playback plans asked for (the stale one, then a fresh one)");
    } finally {
      await page.unroute(`**/v1/recordings/${data.lkmCall.id}/playback`);
    }

    // An origin the LKM was not started with: no CORS permission, so the browser refuses.
    const other = createServer((req, res) => res.writeHead(200, { "content-type": "text/html" }).end("<!doctype html><title>other</title>"));
    await new Promise((ok) => other.listen(0, "127.0.0.1", ok));
    const otherOrigin = `http://127.0.0.1:${other.address().port}`;
    try {
      const stranger = await context.newPage();
      await stranger.goto(`${otherOrigin}/`);
      const d = (await apiOk(env.base, "POST", `/v1/recordings/${data.lkmCall.id}/playback`, env.lkmOrg.player)).grant;
      const refused = await post(stranger, d, d.wrapped_dek);
      step(`POST from ${otherOrigin}: ${JSON.stringify(refused)}`);
      assert(refused.failed, "the browser refused the cross-origin answer");
      await stranger.close();
      const preflight = async (origin) =>
        (
          await lkmHttp(d.lkm_url, env.lkm.fingerprint, "OPTIONS", {
            headers: { Origin: origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type" },
          })
        ).headers["access-control-allow-origin"];
      assertEqual(await preflight(otherOrigin), undefined, "Access-Control-Allow-Origin for another origin");
      assertEqual(await preflight(env.origin), env.origin, "Access-Control-Allow-Origin for the page's origin");
    } finally {
      other.close();
    }
  });

  await check("6. tampered envelopes fail authentication and nothing plays or shows", async () => {
    await signIn(page, env.lkmOrg.player, `${env.base}/`);
    for (const [what, s] of [
      ["payload of a call", data.tamperPayload],
      ["header of a call", data.tamperHeader],
      ["payload of an email", data.tamperEmail],
    ]) {
      await pick(page, s.id);
      const state = await waitState(page, ["error", "playing"]);
      await sleep(500);
      const after = await page.evaluate(() => ({
        state: document.body.dataset.state,
        played: window.__e2e.played,
        text: document.getElementById("text").textContent,
        textHidden: document.getElementById("text").hidden,
        audioSrc: document.getElementById("audio").getAttribute("src"),
      }));
      step(`${what}: ${state.code}: ${state.error}`);
      assertEqual(state.state, "error", `state for the tampered ${what}`);
      assert(AUTH_CODES.includes(state.code), `error code ${state.code} is an authentication failure`);
      assert(/failed authentication/.test(state.error), "the message says it failed authentication");
      assertEqual(after.state, "error", "still in error");
      assertEqual(after.played, false, "the audio element never reached 'playing'");
      assertEqual(after.text, "", "no text shown");
      assertEqual(after.audioSrc, null, "the audio element was emptied");
    }
  });

  await check("7. Encryption Keys admin page: change key, guarded delete, rewrap, schedule across a restart", async () => {
    const admin = await context.newPage();
    admin.on("pageerror", (err) => pageErrors.push(err.message));
    await signIn(admin, env.managed.admin, `${env.base}/admin.html`);
    const rows = () => admin.evaluate(() => [...document.querySelectorAll("#keks tr[data-kek-id]")].map((r) => ({ ...r.dataset })));
    const before = await rows();
    step(`KEKs before: ${JSON.stringify(before)}`);
    assertEqual(await admin.evaluate(() => document.body.dataset.keyMode), "managed", "key mode");
    const old = before.find((r) => r.current === "true");
    assert(old && Number(old.recordings) >= 1, "a current KEK wrapping the managed call");

    await admin.click("#rotate");
    await waitState(admin, ["ready", "error"]);
    const afterRotate = await rows();
    assertEqual(afterRotate.length, before.length + 1, "rows after 'Change key now'");
    assert(afterRotate.find((r) => r.current === "true").kekId !== old.kekId, "a new current KEK");

    await admin.click(`tr[data-kek-id="${old.kekId}"] [data-action=delete]`);
    await admin.click(`tr[data-kek-id="${old.kekId}"] [data-action=confirm-delete]`);
    const refused = await waitState(admin, ["ready", "error"]);
    step(`delete of a KEK in use: ${refused.code}: ${refused.error}`);
    assertEqual(refused.code, "kek_in_use", "error code of the refused delete");
    assert(refused.error.includes(old.kekId) && /recording/.test(refused.error), "the server's reason is shown");
    assert((await rows()).some((r) => r.kekId === old.kekId), "the KEK is still listed");
    await admin.screenshot({ path: join(OUT, "admin.png"), fullPage: true });

    await admin.click(`tr[data-kek-id="${old.kekId}"] [data-action=rewrap]`);
    await admin.waitForFunction(() => ["done", "failed"].includes(document.getElementById("jobs").dataset.jobState), null, { timeout: 20000 });
    step(await admin.textContent("#job-text"));
    assertEqual(await admin.evaluate(() => document.getElementById("jobs").dataset.jobState), "done", "rewrap job state");
    await admin.waitForFunction((id) => document.querySelector(`tr[data-kek-id="${id}"]`)?.dataset.state === "retired", old.kekId);
    await admin.click(`tr[data-kek-id="${old.kekId}"] [data-action=delete]`);
    await admin.click(`tr[data-kek-id="${old.kekId}"] [data-action=confirm-delete]`);
    const deleted = await waitState(admin, ["ready", "error"]);
    assertEqual(deleted.state, "ready", `delete after rewrap (${deleted.error})`);
    assert(!(await rows()).some((r) => r.kekId === old.kekId), "the retired KEK is gone");

    await admin.selectOption("#period", "WEEKLY");
    await admin.click("#save-schedule");
    await waitState(admin, ["ready", "error"]);
    assertEqual(await admin.evaluate(() => document.body.dataset.period), "WEEKLY", "schedule after saving");

    step("restart the server (same data directory, same port)");
    await stopService(env.server);
    env.server = await startService(BIN, serveArgs(new URL(env.base).host), { name: "server (restarted)", logFile: LOG });
    assertEqual(env.server.url, env.base, "the restarted server's URL");
    await admin.reload();
    await waitState(admin, ["ready", "error"]);
    assertEqual(await admin.inputValue("#period"), "WEEKLY", "schedule after the restart");

    step("LKM organisation: mode shown, 'Change key now' refused with the server's message");
    await signIn(admin, env.lkmOrg.admin, `${env.base}/admin.html`);
    assertEqual(await admin.evaluate(() => document.body.dataset.keyMode), "lkm", "key mode of the LKM org");
    assert((await admin.textContent("#lkm-url")).startsWith(env.lkm.url), "the LKM's URL is shown");
    await admin.click("#rotate");
    const conflict = await waitState(admin, ["ready", "error"]);
    step(`change key in LKM mode: ${conflict.code}: ${conflict.error}`);
    assertEqual(conflict.code, "conflict", "error code of 'Change key now' in LKM mode");

    step("AWS KMS organisation: mode and KMS key shown, 'Change key now' makes a KEK under KMS");
    await signIn(admin, env.kmsOrg.admin, `${env.base}/admin.html`);
    assertEqual(await admin.evaluate(() => document.body.dataset.keyMode), "aws-kms", "key mode of the KMS org");
    assertEqual((await admin.textContent("#lkm-url")).trim(), env.kmsKey, "the KMS key's ARN is shown");
    assert((await admin.textContent("#key-mode")).includes("KMS"), "the mode says KMS");
    const kmsRows = () => admin.evaluate(() => [...document.querySelectorAll("#keks tr[data-kek-id]")].length);
    const kmsBefore = await kmsRows();
    await admin.click("#rotate");
    const rotated = await waitState(admin, ["ready", "error"]);
    assertEqual(rotated.state, "ready", `change key in KMS mode (${rotated.error})`);
    assertEqual(await kmsRows(), kmsBefore + 1, "a new KEK row in KMS mode");
    await admin.close();
  });

  await check("8. an LKM the browser cannot reach is named in the error", async () => {
    await stopService(env.lkm);
    await signIn(page, env.lkmOrg.player, `${env.base}/`);
    await pick(page, data.lkmCall.id);
    const s = await waitState(page, ["error", "playing"]);
    step(`${s.code}: ${s.error}`);
    assertEqual(s.code, "lkm_unreachable", "error code with the LKM down");
    assert(s.error.includes(env.lkm.url), "the message names the LKM's URL");
    assertEqual(await page.evaluate(() => window.__e2e.played), false, "nothing played");
  });

  await check("no uncaught errors in the pages", async () => {
    assertEqual(pageErrors.length, 0, `uncaught page errors: ${pageErrors.join(" | ")}`);
  });
}

async function envelopeMetric() {
  const text = (await api(env.base, "GET", "/metrics")).bytes.toString("utf8");
  const line = text.split("\n").find((l) => l.startsWith("tapeseal_http_requests_total{") && l.includes('route="/v1/recordings/{id}/envelope"') && l.includes('status="206"'));
  return line ? Number(line.trim().split(/\s+/).pop()) : 0;
}

// ---- run ---------------------------------------------------------------------------

let failed = false;
try {
  await main();
} catch (err) {
  failed = true;
  console.log(`\nstopped: ${err?.message ?? err}`);
} finally {
  for (const s of [env.server, env.lkm]) if (s) await stopService(s).catch(() => {});
  killAll();
  results.totalMs = Date.now() - started;
  results.checks = outcomesSoFar();
  writeFileSync(join(OUT, "results.json"), `${JSON.stringify(results, null, 2)}\n`);
  rmSync(TMP, { recursive: true, force: true });
}
const outcomes = outcomesSoFar();
const passed = outcomes.filter((o) => o.ok).length;
failed ||= passed !== outcomes.length;
console.log(`\nresults (${join(OUT, "results.json")}):`);
console.log(JSON.stringify({ ...results, checks: undefined }, null, 2));
console.log(`screenshots: ${join(OUT, "playback.png")} ${join(OUT, "admin.png")}`);
console.log(`service logs: ${LOG}`);
console.log(`\n${passed} passed, ${outcomes.length - passed} failed`);
process.exit(failed ? 1 : 0);
