// End to end: "Approve all…", carefully, on the built-in demo fleet, in the
// real app (debug build) under Xvfb through tauri-driver. The first device
// updates alone and is watched for the soak time (a countdown on Activity),
// then the batches go, until the Hall Thermostat's rollback stops the
// rollout with its reason and the user's three choices. Its own data
// directory. Started by scripts/e2e.sh (see demo.test.mjs for the
// environment).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { remote } from "webdriverio";

const shots = process.env.SCREENSHOT_DIR ?? "target/e2e-screenshots";
const HALL_THERMOSTAT = "7CDFA1000005";
const GARAGE_DOOR = "7CDFA1000003";
let browser;
let dataDir;

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
    if (last && !last.notYet) return last;
    if (Date.now() > end) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${last?.notYet ? `: ${last.notYet}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Resolves once the page has painted twice since the call (what is on the screen is current). */
async function painted() {
  await browser.executeAsync((done) => requestAnimationFrame(() => requestAnimationFrame(() => done(true))));
}

async function resize(width) {
  await browser.setWindowSize(width, 700);
  await until(`the page to be ${width} px wide`, async () => {
    const w = await browser.execute(() => window.innerWidth);
    return Math.abs(w - width) <= 2 ? true : { notYet: `innerWidth ${w}` };
  }, 20_000);
}

/** No sideways scrolling, and nothing in the page past its right edge. */
async function assertNoSideways(where) {
  const o = await browser.execute(() => {
    const root = document.documentElement;
    const vw = root.clientWidth;
    const out = [];
    for (const el of document.querySelectorAll("main *")) {
      const r = el.getBoundingClientRect();
      if (r.width <= 1 || r.height <= 1) continue;
      let clipped = false;
      for (let a = el.parentElement; a && a !== root; a = a.parentElement) {
        const ov = getComputedStyle(a).overflowX;
        if (ov === "hidden" || ov === "clip") clipped = true;
      }
      if ((r.right > vw + 0.5 || r.left < -0.5) && !clipped) {
        out.push(`${el.tagName.toLowerCase()}[${el.getAttribute("data-testid") ?? el.className}] ${Math.round(r.left)}..${Math.round(r.right)}`);
      }
    }
    return { scrollWidth: root.scrollWidth, clientWidth: vw, outside: out };
  });
  assert.ok(o.scrollWidth <= o.clientWidth, `${where}: the page scrolls sideways (${o.scrollWidth} > ${o.clientWidth})`);
  assert.deepEqual(o.outside, [], `${where}: elements past the edge`);
}

/** What the rollout card says now: its state, headline, stages and members. */
async function rolloutNow() {
  return browser.execute(() => {
    const card = document.querySelector('[data-testid="rollout"]');
    if (!card) return null;
    const text = (sel, root = card) => root.querySelector(sel)?.textContent?.trim() ?? null;
    return {
      state: card.getAttribute("data-state"),
      headline: text('[data-testid="rollout-headline"]'),
      stop: text('[data-testid="rollout-stopped"]'),
      stages: [...card.querySelectorAll('[data-testid="rollout-stage"]')].map((s) => ({
        title: text('[data-testid="stage-title"]', s),
        members: [...s.querySelectorAll('[data-testid="rollout-member"]')].map((m) => ({
          node: m.getAttribute("data-node"),
          state: m.getAttribute("data-state"),
          words: text('[data-testid="member-state"]', m),
          left: text('[data-testid="soak-left"]', m),
        })),
      })),
      buttons: [...card.querySelectorAll("button")].map((b) => b.textContent.trim()),
    };
  });
}

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "greenlight-e2e-rollout-"));
  browser = await remote({
    hostname: "127.0.0.1",
    port: Number(process.env.WEBDRIVER_PORT ?? 4444),
    logLevel: "error",
    connectionRetryTimeout: 120_000,
    capabilities: {
      "tauri:options": { application: process.env.GREENLIGHT_APP, args: ["--data-dir", dataDir] },
    },
  });
});

after(async () => {
  await browser?.deleteSession().catch(() => {});
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

test("Approve all, carefully: one first and watched with a countdown, then batches, stopped at the thermostat's rollback with its reason", async () => {
  const tryDemo = await browser.$('[data-testid="try-demo"]');
  await tryDemo.waitForDisplayed({ timeout: 60_000 });
  await tryDemo.click();
  await until("the demo's five updates in the inbox", async () => (await browser.$$('[data-testid="pending-card"]')).length >= 5, 120_000);
  // The Garage Door offers its update, then drops off the network: once it
  // has, the choice says it will wait for it.
  await until("the Garage Door's card to say it is offline", async () => {
    const el = await browser.$(`[data-testid="pending-card"][data-node="${GARAGE_DOOR}"]`);
    return (await el.isExisting()) && (await el.getAttribute("data-online")) === "false";
  }, 90_000);

  // The choice: "Carefully" first, and the keyboard is in it.
  await (await browser.$('[data-testid="approve-all"]')).click();
  const choice = await browser.$('[data-testid="confirm-all"]');
  await choice.waitForDisplayed({ timeout: 10_000 });
  const focus = await browser.execute(() => document.activeElement?.getAttribute("data-testid"));
  assert.equal(focus, "choice-careful", "the focus is on the careful choice");
  assert.ok(await (await choice.$('[data-testid="choice-careful"]')).isSelected(), "carefully is the default");
  assert.match(await choice.getText(), /Carefully — one first, then 2 at a time/);
  assert.match(await choice.getText(), /All at once/);
  const batch = await choice.$('[data-testid="careful-batch"]');
  await batch.setValue("2");
  // Half a minute: long enough to see the watch, short enough for a test.
  await (await choice.$('[data-testid="careful-soak"]')).setValue("0.5");
  const summary = await choice.$('[data-testid="careful-summary"]');
  await until("the summary to say 30 s", async () => /for 30 s; then 2 at a time/.test(await summary.getText()) || { notYet: await summary.getText() }, 10_000);
  assert.match(await summary.getText(), /^Kitchen Plug goes first/);
  assert.match(await summary.getText(), /offline device\(s\) wait until they are online \(Garage Door\)/);
  await painted();
  screenshot("rollout-choice");
  // The same choice at a phone's width: nothing past the edge.
  await resize(390);
  await painted();
  screenshot("rollout-choice-390");
  await assertNoSideways("the careful choice at 390 px");
  await resize(980);

  await (await choice.$('[data-testid="start-careful"]')).click();
  // Started: Activity shows it.
  await until("Activity to be shown", async () => (await (await browser.$('[data-testid="tab-activity"]')).getAttribute("aria-selected")) === "true", 10_000);
  await (await browser.$('[data-testid="rollout"]')).waitForDisplayed({ timeout: 10_000 });

  // The first device is watched: a countdown, under "First device".
  const heard = new Set();
  const watched = await until("the first device to be watched, with its time left", async () => {
    const r = await rolloutNow();
    if (r?.headline) heard.add(r.headline);
    const first = r?.stages.find((s) => s.title === "First device");
    const m = first?.members.find((x) => x.state === "soaking" && x.left);
    return m ? { r, m } : { notYet: JSON.stringify(r) };
  }, 180_000);
  console.log("while the first device is watched:", JSON.stringify(watched.r, null, 1));
  assert.match(watched.m.left, /^\d+:\d\d left$/);
  assert.equal(watched.m.words, "Updated — being watched to stay online");
  assert.match(watched.r.headline, /^.* goes first: updated; must stay online 30 s before the rest$/);
  assert.equal(watched.r.state, "running");
  assert.deepEqual(watched.r.buttons, ["Cancel the rest"]);
  const titles = watched.r.stages.map((s) => s.title);
  assert.deepEqual(titles.slice(0, 2), ["First device", "Waiting"], `stages: ${titles}`);
  const garage = watched.r.stages.find((s) => s.title === "Waiting").members.find((m) => m.node === GARAGE_DOOR);
  assert.equal(garage?.words, "Offline — waits until online", "the offline Garage Door waits until online");
  // The countdown moves on its own (the engine sends no new text for it).
  await until("the countdown to move", async () => {
    const r = await rolloutNow();
    const m = r?.stages[0]?.members.find((x) => x.node === watched.m.node);
    return m?.left && m.left !== watched.m.left ? true : { notYet: m?.left };
  }, 10_000);
  // The notice "Careful update started" has gone by now or is about to: wait
  // for it, so the screenshot shows the page itself.
  await until("the notices to go", async () => (await browser.$$(".notice")).length === 0 || { notYet: "a notice is up" }, 15_000);
  await painted();
  screenshot("rollout-activity");

  // Then a batch runs (never more than two at once).
  const batch1 = await until("batch 1 to run", async () => {
    const r = await rolloutNow();
    if (r?.headline) heard.add(r.headline);
    const b = r?.stages.find((s) => s.title === "Batch 1");
    return b ? { r, b } : { notYet: r?.headline };
  }, 180_000);
  assert.ok(batch1.b.members.length >= 1 && batch1.b.members.length <= 2, `batch 1 holds 1 or 2: ${JSON.stringify(batch1.b)}`);
  await painted();
  screenshot("rollout-activity-batch");

  // The Hall Thermostat rolls back: the rollout stops, with the reason and the three choices.
  const stopped = await until("the rollout to stop at the thermostat", async () => {
    const r = await rolloutNow();
    if (r?.headline) heard.add(r.headline);
    return r?.state === "stopped" ? r : { notYet: r?.headline };
  }, 400_000);
  console.log("headlines on the way:", [...heard]);
  console.log("stopped:", JSON.stringify(stopped, null, 1));
  // Said once, in the alert: the headline carries the reason.
  assert.match(stopped.headline, /^Stopped: Hall Thermostat rolled back/);
  assert.ok(stopped.stop.startsWith(stopped.headline), `the alert leads with the headline: ${stopped.stop}`);
  assert.match(stopped.stop, /Nothing more is approved until you choose/);
  assert.deepEqual(stopped.buttons, ["Resume", "Retry failed", "Cancel the rest"]);
  const failed = stopped.stages.flatMap((s) => s.members).find((m) => m.node === HALL_THERMOSTAT);
  assert.equal(failed.state, "failed");
  assert.ok(stopped.stages.some((s) => s.title === "Batch 2" || s.title === "Batch 1"));
  await until("the notices to go", async () => (await browser.$$(".notice")).length === 0 || { notYet: "a notice is up" }, 15_000);
  await browser.execute(() => window.scrollTo(0, 0));
  await painted();
  screenshot("rollout-stopped");
  await resize(390);
  await browser.execute(() => window.scrollTo(0, 0));
  await painted();
  screenshot("rollout-stopped-390");
  await assertNoSideways("a stopped rollout at 390 px");
  await resize(980);

  // Cancel: nothing more is approved; the offline Garage Door is left out, said why.
  await (await browser.$('[data-testid="rollout-cancel"]')).click();
  const cancelled = await until("the rollout to be cancelled", async () => {
    const r = await rolloutNow();
    return r?.state === "cancelled" ? r : { notYet: r?.state };
  }, 20_000);
  assert.match(cancelled.headline, /^Cancelled: /);
  assert.deepEqual(cancelled.buttons, []);
  const left = cancelled.stages.find((s) => s.title === "Left out");
  assert.equal(left?.members.find((m) => m.node === GARAGE_DOOR)?.words, "The rollout was cancelled before its turn");
  await painted();
  screenshot("rollout-cancelled");
});
