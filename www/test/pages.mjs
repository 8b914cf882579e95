// Driving the playback and admin pages from the end-to-end test: sign in, wait for
// the pages' state hooks, pick a recording, and check what the audio element does.
import { assert, assertEqual, sha256, sleep, step } from "./harness.mjs";

/** Opens a page, signs out if a token is kept, and signs in with `token`. */
export async function signIn(page, token, url) {
  await page.goto(url);
  await page.waitForFunction(() => document.documentElement.dataset.loaded === "true");
  if (await page.isVisible("#signout")) await page.click("#signout");
  await page.fill("#token", token);
  await page.click("#signin-form button[type=submit]");
  await page.waitForFunction(() => document.getElementById("signin").hidden || document.body.dataset.state === "error");
  const s = await waitState(page, ["idle", "ready", "error"]);
  if (s.state === "error") throw new Error(`sign-in failed: ${s.code}: ${s.error}`);
}

export async function waitState(page, states, timeout = 20000) {
  await page.waitForFunction((s) => s.includes(document.body.dataset.state), states, { timeout });
  return page.evaluate(() => ({
    state: document.body.dataset.state,
    code: document.body.dataset.errorCode,
    error: document.getElementById("error").textContent,
  }));
}

/** Clicks a recording's button; the page records click and first `playing` times. */
export async function pick(page, id) {
  await page.evaluate(() => {
    window.__e2e = { played: false };
    document.addEventListener("click", () => (window.__e2e.click = performance.now()), { capture: true, once: true });
    const audio = document.getElementById("audio");
    if (!audio.__e2e) {
      audio.__e2e = true;
      audio.addEventListener("playing", () => {
        window.__e2e.played = true;
        window.__e2e.playing ??= performance.now();
      });
    }
  });
  await page.click(`#recordings tr[data-recording-id="${id}"] button`);
}

export async function expectPlaying(page, what) {
  const s = await waitState(page, ["playing", "error"]);
  if (s.state !== "playing") throw new Error(`${what} did not play: ${s.code}: ${s.error}`);
}

export const audio = (page) =>
  page.evaluate(() => {
    const a = document.getElementById("audio");
    return { currentTime: a.currentTime, duration: a.duration, paused: a.paused };
  });

export async function checkAudio(page, s, seconds) {
  const first = await audio(page);
  assert(Math.abs(first.duration - seconds) <= 0.1, `duration ${first.duration} is ${seconds} ± 0.1 s`);
  await sleep(800);
  const later = await audio(page);
  assert(later.currentTime > first.currentTime + 0.3, `currentTime advanced (${first.currentTime} -> ${later.currentTime})`);
  const digest = await page.evaluate(() => window.tapesealPage.digest());
  assertEqual(digest, sha256(s.bytes), "sha256 of the played bytes");
  step(`duration ${first.duration} s, currentTime ${first.currentTime.toFixed(2)} -> ${later.currentTime.toFixed(2)}, digest matches`);
}
