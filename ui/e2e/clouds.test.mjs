// End to end: what a new user meets with real (simulated) clouds instead of
// the demo. Two RainMaker simulators (the greenlight-sim binary, each with
// its embedded broker, the same demo devices — so the same node ids — in
// both) are added as two accounts through the Accounts form, with the URL
// pasted in two different forms. Then, with the screen as the judge:
// the cloud's user-approval offer is in the inbox within seconds; one
// device id in two accounts is two devices; a device going offline while
// its card is on screen; one cloud going down (its devices become
// "unknown", not online or offline; an approval made meanwhile waits) and
// coming back (the approval goes out and the update finishes).
// Started by scripts/e2e.sh (see demo.test.mjs for the environment); also
// uses GREENLIGHT_SIM, the simulator binary. Loopback only.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { remote } from "webdriverio";

const shots = process.env.SCREENSHOT_DIR ?? "target/e2e-screenshots";
const app = process.env.GREENLIGHT_APP;
const simBin = process.env.GREENLIGHT_SIM ?? (app ? join(dirname(app), "greenlight-sim") : "");
const PASSWORD = "e2e-password-1";
const PLUG = "7CDFA1000001"; // Kitchen Plug: node-side offer
const PORCH = "7CDFA1000002"; // Porch Sensor: the cloud's "User Approval" job
const FAN = "7CDFA1000004"; // Bedroom Fan: node-side offer

let browser;
let dataDir;
const sims = {};

function screenshot(name) {
  // The WebDriver screenshot call hangs with WebKitWebDriver here; the Xvfb
  // screen is what a user would see anyway.
  mkdirSync(shots, { recursive: true });
  const file = `${shots}/${name}.png`;
  execFileSync("import", ["-window", "root", file], { env: process.env, timeout: 20_000 });
  console.log(`screenshot: ${file}`);
}

async function until(what, f, timeout = 60_000) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    last = await f();
    if (last) return last;
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Starts a simulator on fixed ports (so it can come back on the same ones) and reads its ready line. */
function startSim(http, broker) {
  const child = spawn(
    simBin,
    [
      "rainmaker",
      "--http", `127.0.0.1:${http}`,
      "--embedded-broker", `127.0.0.1:${broker}`,
      "--scenario", "demo",
      "--speed", "fast",
      "--password", PASSWORD,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the simulator did not print its ready line within 60 s")), 60_000);
    child.on("exit", (code) => reject(new Error(`the simulator exited early (${code})`)));
    createInterface({ input: child.stdout }).once("line", (line) => {
      clearTimeout(timer);
      resolve({ child, http, broker, info: JSON.parse(line) });
    });
  });
}

function stopSim(sim) {
  return new Promise((resolve) => {
    if (sim.child.exitCode !== null) return resolve();
    sim.child.once("exit", () => resolve());
    sim.child.kill("SIGTERM");
  });
}

async function simControl(sim, path, body) {
  const r = await fetch(`${sim.info.http}/sim/${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${sim.info.admin_token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(r.status, 200, `sim ${path}: ${await r.text()}`);
}

const card = (account, node) => `[data-testid="pending-card"][data-account="${account}"][data-node="${node}"]`;

async function attr(selector, name) {
  const el = await browser.$(selector);
  return (await el.isExisting()) ? el.getAttribute(name) : null;
}

async function text(selector) {
  const el = await browser.$(selector);
  return (await el.isExisting()) ? el.getText() : null;
}

async function tab(id) {
  await (await browser.$(`[data-testid="tab-${id}"]`)).click();
}

async function addAccount(name, url, sim) {
  await tab("accounts");
  await (await browser.$('[data-testid="account-name"]')).setValue(name);
  await (await browser.$('[data-testid="account-url"]')).setValue(url);
  await (await browser.$('[data-testid="account-user"]')).setValue(sim.info.user);
  await (await browser.$('[data-testid="account-password"]')).setValue(PASSWORD);
  await (await browser.$('[data-testid="account-mqtt"]')).setValue(sim.info.mqtt);
  await (await browser.$('[data-testid="account-add"]')).click();
  return until(`account ${name} in the list`, async () => {
    const err = await text('[data-testid="account-error"]');
    if (err) throw new Error(`adding ${name} failed: ${err}`);
    return (await browser.$(`[data-testid="account"][data-name="${name}"]`).isExisting()) ? true : null;
  });
}

before(async () => {
  assert.ok(simBin, "GREENLIGHT_SIM or GREENLIGHT_APP must be set");
  dataDir = mkdtempSync(join(tmpdir(), "greenlight-e2e-clouds-"));
  const [h1, b1, h2, b2] = [await freePort(), await freePort(), await freePort(), await freePort()];
  [sims.home, sims.office] = await Promise.all([startSim(h1, b1), startSim(h2, b2)]);
  browser = await remote({
    hostname: "127.0.0.1",
    port: Number(process.env.WEBDRIVER_PORT ?? 4444),
    logLevel: "error",
    connectionRetryTimeout: 120_000,
    capabilities: {
      "tauri:options": { application: app, args: ["--data-dir", dataDir] },
    },
  });
  await (await browser.$('[data-testid="tab-accounts"]')).waitForDisplayed({ timeout: 60_000 });
});

after(async () => {
  await browser?.deleteSession().catch(() => {});
  await Promise.all(Object.values(sims).map(stopSim));
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

test("the account form: the default URL is the public cloud's, pasted URLs work with or without /v1 and a slash, and the cloud offer is in the inbox within seconds", async () => {
  await tab("accounts");
  const def = await (await browser.$('[data-testid="account-url"]')).getValue();
  assert.equal(def, "https://api.rainmaker.espressif.com", "the default is the public cloud's base");
  screenshot("clouds-1-default-url");

  // Pasted with /v1/ (as the RainMaker docs print it): stored and shown canonical.
  const added = Date.now();
  await addAccount("home", `${sims.home.info.http}/v1/`, sims.home);
  const shown = await text('[data-testid="account"][data-name="home"] [data-testid="account-url-shown"]');
  assert.equal(shown, sims.home.info.http);

  // The cloud's user-approval job is found by the first look, not minutes later.
  await tab("inbox");
  await until("the Porch Sensor's cloud offer in the inbox", async () => (await browser.$(card("home", PORCH)).isExisting()) || null, 30_000);
  console.log(`cloud offer in the inbox ${((Date.now() - added) / 1000).toFixed(1)} s after Add was pressed`);
  screenshot("clouds-2-cloud-offer");

  // A bare base with a trailing slash works too.
  await addAccount("office", `${sims.office.info.http}/`, sims.office);
  assert.equal(
    await text('[data-testid="account"][data-name="office"] [data-testid="account-url-shown"]'),
    sims.office.info.http,
  );
  screenshot("clouds-3-two-accounts");
});

test("one device id in two accounts is two devices: approving one leaves the other alone", async () => {
  await tab("inbox");
  await until("the Kitchen Plug's card in both accounts", async () =>
    (await browser.$(card("home", PLUG)).isExisting()) && (await browser.$(card("office", PLUG)).isExisting()) ? true : null,
  );
  await (await browser.$(`${card("office", PLUG)} [data-testid="approve"]`)).click();
  await until("the office plug's card to leave the inbox", async () => !(await browser.$(card("office", PLUG)).isExisting()) || null);
  // Home's plug is untouched: still there, still approvable, not "requesting".
  const home = await browser.$(card("home", PLUG));
  assert.ok(await home.isExisting(), "home's Kitchen Plug is still offered");
  assert.ok(await (await home.$('[data-testid="approve"]')).isEnabled(), "and can still be approved");
  assert.ok(!(await (await home.$('[data-testid="requesting"]')).isExisting()));
  await tab("activity");
  const acct = await until("the office plug's job on the Activity page", async () => {
    for (const j of await browser.$$(`[data-node="${PLUG}"]`)) {
      const a = await j.$('[data-testid="job-account"]');
      if (await a.isExisting()) return a.getText();
    }
    return null;
  });
  assert.equal(acct, "office");
  screenshot("clouds-4-same-id-two-accounts");
});

test("a device that goes offline while its card is on screen: the card and Approve all say so", async () => {
  await tab("inbox");
  await until("home's Bedroom Fan online", async () => (await attr(card("home", FAN), "data-presence")) === "online" || null);
  await simControl(sims.home, `nodes/${FAN}/online`, { online: false });
  await until("the fan's card to say offline", async () => (await attr(card("home", FAN), "data-presence")) === "offline" || null, 30_000);
  const fan = await browser.$(card("home", FAN));
  assert.ok(await (await fan.$('[data-testid="install-when-online"]')).isExisting(), "Install when online is offered");
  assert.ok(!(await (await fan.$('[data-testid="approve"]')).isExisting()), "Approve is not");
  assert.equal(await (await fan.$('[data-testid="online-state"]')).getText(), "Offline");
  await (await browser.$('[data-testid="approve-all"]')).click();
  const confirm = await browser.$('[data-testid="confirm-all"]');
  await confirm.waitForDisplayed({ timeout: 10_000 });
  // "All at once" leaves offline devices out ("Carefully", the default, waits for them).
  await (await confirm.$('[data-testid="choice-all"]')).click();
  // Named with its account: two accounts here hold the same devices.
  assert.match(await confirm.getText(), /not known to be online are left out \(.*Bedroom Fan \(home\)/);
  screenshot("clouds-5-device-offline");
  await (await confirm.$("button=Cancel")).click();
  await simControl(sims.home, `nodes/${FAN}/online`, { online: true });
});

test("a cloud that goes down and comes back: unknown while down, an approval made then goes out when it is back", async () => {
  await tab("inbox");
  await until("home's plug online", async () => (await attr(card("home", PLUG), "data-presence")) === "online" || null);
  await stopSim(sims.home);

  // Nobody can say whether home's devices are online: the cards say unknown, not online.
  await until("home's cards to say unknown", async () => (await attr(card("home", PLUG), "data-presence")) === "unknown" || null, 60_000);
  assert.match(await text(`${card("home", PLUG)} [data-testid="presence-detail"]`), /the cloud cannot be reached/);
  // The other account is not affected.
  assert.equal(await attr(card("office", FAN), "data-presence"), "online");
  screenshot("clouds-6-cloud-down-inbox");
  await tab("accounts");
  const reason = await until("home's account to say why", async () => text('[data-testid="account"][data-name="home"] [data-testid="account-reason"]'));
  assert.match(reason, /refused the connection/, "in plain words, not 'os error 111'");
  assert.doesNotMatch(reason, /os error|tcp connect/);
  screenshot("clouds-7-cloud-down-accounts");

  // Approved while down: it waits, and says so.
  await tab("inbox");
  await (await browser.$(`${card("home", PLUG)} [data-testid="install-when-online"]`)).click();
  await tab("activity");
  const waiting = await until("the queued approval on the Activity page", async () => {
    for (const j of await browser.$$(`[data-testid="job-running"][data-node="${PLUG}"]`)) {
      if ((await j.getAttribute("data-state")) === "queued") return j.getText();
    }
    return null;
  });
  assert.match(waiting, /will be delivered when the device is online/);
  screenshot("clouds-8-approved-while-down");

  // The cloud comes back (same ports, same jobs): the approval goes out once and the update finishes.
  sims.home = await startSim(sims.home.http, sims.home.broker);
  await tab("history");
  await until(
    "home's plug to update after the cloud came back",
    async () => {
      for (const r of await browser.$$(`[data-testid="history-row"][data-node="${PLUG}"]`)) {
        if ((await r.getAttribute("data-state")) === "success" && (await r.getText()).includes("home")) return true;
      }
      return null;
    },
    180_000,
  );
  await tab("inbox");
  await until("home's devices known again", async () => (await attr(card("home", FAN), "data-presence")) === "online" || null, 60_000);
  screenshot("clouds-9-cloud-back");
});
