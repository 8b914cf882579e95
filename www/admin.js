// The Encryption Keys admin page: the organisation's key mode, its KEKs (and how many
// recordings each still wraps), the rotation schedule, "change key now", rewrap jobs
// and guarded deletion. Every rule is the server's; this page shows its answers.

import {
  PageError,
  clearError as clearErrorIn,
  showError as showErrorIn,
  callJson,
  checkToken,
  el,
  formatTime,
  setState,
  takeLink,
  toPageError,
  tokens,
} from "./api.js";

const TOKEN_KEY = "tapeseal.adminToken";
const POLL_MS = 500;

const $ = (id) => document.getElementById(id);
const ui = {
  signin: $("signin"),
  form: $("signin-form"),
  tokenInput: $("token"),
  console: $("console"),
  refresh: $("refresh"),
  signout: $("signout"),
  keyMode: $("key-mode"),
  lkmUrl: $("lkm-url"),
  lkmGrants: $("lkm-grants"),
  scheduleForm: $("schedule-form"),
  period: $("period"),
  lastRotated: $("last-rotated"),
  nextRotation: $("next-rotation"),
  rotate: $("rotate"),
  tbody: document.querySelector("#keks tbody"),
  noKeys: $("no-keys"),
  jobs: $("jobs"),
  jobText: $("job-text"),
  jobProgress: $("job-progress"),
  error: $("error"),
  status: $("status"),
};

let keyMode = "managed";
let polling = null;

const token = () => tokens.get(TOKEN_KEY);
const api = (path, options) => callJson(token(), path, options);

const showError = (err) => showErrorIn(ui, err);
const clearError = () => clearErrorIn(ui);

/** Runs an action with the page's state hooks: loading, then ready or error. */
async function act(label, action) {
  clearError();
  setState("loading");
  ui.status.textContent = `${label}…`;
  try {
    const done = await action();
    ui.status.textContent = done ?? "";
    setState("ready");
  } catch (err) {
    showError(err);
  }
}

// ---- loading ---------------------------------------------------------------------

async function loadAll() {
  await Promise.all([loadMode(), loadSchedule(), loadKeks()]);
}

/** The settings at `path`, or null where the organisation has none (404). */
async function settingsAt(path) {
  try {
    return await api(path);
  } catch (err) {
    if (err instanceof PageError && err.code === "not_found") return null;
    throw err;
  }
}

async function loadMode() {
  const [lkm, kms] = await Promise.all([settingsAt("/v1/lkm"), settingsAt("/v1/kms")]);
  // Both views carry the organisation's current key mode.
  keyMode = lkm?.key_mode ?? kms?.key_mode ?? "managed";
  document.body.dataset.keyMode = keyMode;
  if (keyMode === "aws-kms") {
    ui.keyMode.textContent =
      "AWS KMS: tapeseal holds this organisation's private keys only encrypted under its own KMS key.";
    ui.lkmUrl.textContent = kms?.key_arn ?? "—";
    ui.lkmGrants.textContent = "Through the server (it decrypts for the player).";
  } else if (!lkm || keyMode !== "lkm") {
    ui.keyMode.textContent = "Managed: tapeseal holds this organisation's private keys, sealed under its master key.";
    ui.lkmUrl.textContent = "—";
    ui.lkmGrants.textContent = "Through the server (it decrypts for the player).";
  } else {
    ui.keyMode.textContent = "Local Key Manager: the organisation's own key manager holds the private keys.";
    ui.lkmUrl.textContent = lkm.decrypt_url ?? "—";
    ui.lkmGrants.textContent = lkm.browser_grants
      ? "In the browser: the key manager releases each recording's key to the player with a short-lived grant."
      : "Through the server: the key manager does not accept browser grants.";
  }
  // In LKM mode the server refuses (409) and says why; the page shows its answer.
  ui.rotate.title = keyMode === "lkm" ? "In LKM mode, keys are created in the LKM and registered here" : "";
}

async function loadSchedule() {
  const schedule = await api("/v1/rotation-schedule");
  ui.period.value = schedule.period;
  ui.lastRotated.textContent = formatTime(schedule.last_rotated_at) || "never";
  ui.nextRotation.textContent =
    schedule.period === "DISABLED" ? "not scheduled" : formatTime(schedule.next_rotation_at) || "when the first key exists";
  document.body.dataset.period = schedule.period;
}

async function loadKeks() {
  const keks = await api("/v1/keks");
  ui.tbody.replaceChildren(...keks.map(kekRow));
  ui.noKeys.hidden = keks.length > 0;
}

function kekRow(kek) {
  const actions = el("div", { class: "row-actions" });
  const tr = el(
    "tr",
    {
      "data-kek-id": kek.id,
      "data-current": String(kek.current),
      "data-state": kek.state,
      "data-recordings": String(kek.recordings),
    },
    el("th", { scope: "row", class: "mono", text: kek.id }),
    el("td", { text: formatTime(kek.created_at) }),
    el(
      "td",
      {},
      el("span", { class: `badge ${kek.state}`, text: kek.state }),
      kek.current ? el("span", { class: "badge current", text: "current" }) : null,
    ),
    el("td", { text: kek.mode }),
    el("td", { class: "mono", text: kek.wrap_algorithm }),
    el("td", { class: "num", "data-field": "recordings", text: String(kek.recordings) }),
    el("td", {}, actions),
  );
  if (!kek.current && kek.recordings > 0) {
    const rewrap = el("button", {
      type: "button",
      text: "Rewrap",
      "data-action": "rewrap",
      "aria-label": `Rewrap the ${kek.recordings} recording(s) of ${kek.id} onto the current key`,
    });
    rewrap.addEventListener("click", () => act("Starting rewrap", () => startRewrap(kek)));
    actions.append(rewrap);
  }
  const del = el("button", {
    type: "button",
    class: "danger",
    text: "Delete",
    "data-action": "delete",
    disabled: kek.current,
    title: kek.current ? "The current key cannot be deleted; change key first" : undefined,
    "aria-label": `Delete ${kek.id}`,
  });
  del.addEventListener("click", () => confirmDelete(kek, actions));
  actions.append(del);
  return tr;
}

/** Replaces the row's actions with an explicit confirmation. */
function confirmDelete(kek, cell) {
  const before = [...cell.childNodes];
  const yes = el("button", { type: "button", class: "danger", text: "Yes, delete", "data-action": "confirm-delete" });
  const no = el("button", { type: "button", class: "secondary", text: "Cancel", "data-action": "cancel-delete" });
  const question = el("span", { class: "confirm", text: `Delete ${kek.id}? ` });
  cell.replaceChildren(question, yes, no);
  no.addEventListener("click", () => cell.replaceChildren(...before));
  yes.addEventListener("click", () =>
    act(`Deleting ${kek.id}`, async () => {
      try {
        await api(`/v1/keks/${encodeURIComponent(kek.id)}`, { method: "DELETE" });
      } finally {
        await loadKeks().catch(() => {});
      }
      return `Deleted ${kek.id}.`;
    }),
  );
  yes.focus();
}

// ---- actions -----------------------------------------------------------------------

async function startRewrap(kek) {
  const job = await api("/v1/jobs/rewrap", { method: "POST", json: { from_kek_id: kek.id } });
  showJob(job);
  poll(job.id);
  return `Rewrap job ${job.id} started.`;
}

function showJob(job) {
  const p = job.progress ?? {};
  const total = p.total ?? 0;
  ui.jobs.hidden = false;
  ui.jobs.dataset.jobId = job.id;
  ui.jobs.dataset.jobState = job.state;
  ui.jobProgress.max = Math.max(total, 1);
  ui.jobProgress.value = (p.done ?? 0) + (p.failed ?? 0);
  const from = job.params?.from_kek_id ?? "?";
  const to = job.params?.to_kek_id ?? "?";
  let text = `Job ${job.id}: ${job.state}, ${p.done ?? 0} of ${total} recording(s) moved from ${from} to ${to}`;
  if (p.failed) text += `, ${p.failed} failed (${(p.failed_ids ?? []).join(", ")})`;
  if (job.error ?? p.error) text += `. ${job.error ?? p.error}`;
  ui.jobText.textContent = `${text}.`;
}

function poll(id) {
  clearTimeout(polling);
  const tick = async () => {
    try {
      const job = await api(`/v1/jobs/${encodeURIComponent(id)}`);
      showJob(job);
      if (job.state === "done" || job.state === "failed") {
        await loadKeks();
        if (job.state === "failed") showError(new PageError("job_failed", ui.jobText.textContent, { source: "server" }));
        return;
      }
    } catch (err) {
      showError(err);
      return;
    }
    polling = setTimeout(tick, POLL_MS);
  };
  polling = setTimeout(tick, POLL_MS);
}

ui.rotate.addEventListener("click", () =>
  act("Changing key", async () => {
    const kek = await api("/v1/keks", { method: "POST" });
    await Promise.all([loadKeks(), loadSchedule()]);
    return `Key ${kek.id} is now current.`;
  }),
);

ui.scheduleForm.addEventListener("submit", (event) => {
  event.preventDefault();
  act("Saving schedule", async () => {
    const schedule = await api("/v1/rotation-schedule", { method: "PUT", json: { period: ui.period.value } });
    await loadSchedule();
    await loadKeks();
    return `Rotation schedule set to ${schedule.period}.`;
  });
});

// ---- sign in -----------------------------------------------------------------------

function showSignedIn(signedIn) {
  ui.signin.hidden = signedIn;
  ui.console.hidden = !signedIn;
}

ui.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    tokens.set(TOKEN_KEY, checkToken(ui.tokenInput.value));
    ui.tokenInput.value = "";
  } catch (err) {
    showError(err);
    return;
  }
  await start();
});

ui.signout.addEventListener("click", () => {
  clearTimeout(polling);
  tokens.clear(TOKEN_KEY);
  showSignedIn(false);
  setState("idle");
  ui.status.textContent = "Signed out.";
});

ui.refresh.addEventListener("click", () => act("Refreshing", async () => loadAll()));

async function start() {
  showSignedIn(true);
  await act("Loading", async () => {
    try {
      await loadAll();
    } catch (err) {
      if (toPageError(err).code === "unauthorized" || toPageError(err).code === "forbidden") {
        tokens.clear(TOKEN_KEY);
        showSignedIn(false);
      }
      throw err;
    }
  });
}

try {
  takeLink(TOKEN_KEY);
} catch (err) {
  showError(err);
}
if (token()) await start();
else showSignedIn(false);
document.documentElement.dataset.loaded = "true";
