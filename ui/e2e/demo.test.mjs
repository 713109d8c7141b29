// End to end: the real app (debug build) under Xvfb, driven through
// tauri-driver and WebKitWebDriver, on the built-in demo fleet. Started by
// scripts/e2e.sh, which provides the display, D-Bus, the driver and these
// environment variables:
//   GREENLIGHT_APP      path of the app binary
//   WEBDRIVER_PORT      tauri-driver's port
//   SCREENSHOT_DIR      where screenshots go
//   DISPLAY             the Xvfb display (screenshots are taken of it)
//   GREENLIGHT_LAUNCHER_LOG  what a dock on the session bus heard: one JSON
//                       line per launcher update (tests/src/bin/fake-dock.rs)
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { remote } from "webdriverio";

const shots = process.env.SCREENSHOT_DIR ?? "target/e2e-screenshots";
let browser;

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
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

// The badge the dock shows now (null: none). libunity sends only what
// changed, so a dock keeps the last count and visibility it was told.
function launcherCount() {
  const log = process.env.GREENLIGHT_LAUNCHER_LOG;
  assert.ok(log, "scripts/e2e.sh sets GREENLIGHT_LAUNCHER_LOG");
  let count = null;
  let visible = false;
  for (const line of readFileSync(log, "utf8").split("\n")) {
    if (!line.startsWith("{")) continue;
    const u = JSON.parse(line);
    if (u.count != null) count = u.count;
    if (u.count_visible != null) visible = u.count_visible;
  }
  return visible ? count : null;
}

async function attrs(selector, attr) {
  const els = await browser.$$(selector);
  const out = [];
  for (const el of els) out.push(await el.getAttribute(attr));
  return out;
}

async function tab(id) {
  await (await browser.$(`[data-testid="tab-${id}"]`)).click();
}

before(async () => {
  browser = await remote({
    hostname: "127.0.0.1",
    port: Number(process.env.WEBDRIVER_PORT ?? 4444),
    logLevel: "error",
    connectionRetryTimeout: 120_000,
    capabilities: {
      "tauri:options": { application: process.env.GREENLIGHT_APP },
    },
  });
});

after(async () => {
  await browser?.deleteSession().catch(() => {});
});

test("the demo fleet: pending updates appear, one is approved to success, approve-all reports the rest, history lists them", async () => {
  // No account yet: the app offers the demo fleet.
  const tryDemo = await browser.$('[data-testid="try-demo"]');
  await tryDemo.waitForDisplayed({ timeout: 60_000 });
  await tryDemo.click();

  const nodes = await until("five pending updates in the inbox", async () => {
    const n = await attrs('[data-testid="pending-card"]', "data-node");
    return n.length >= 5 ? n : null;
  });
  assert.ok(nodes.includes("7CDFA1000001"), `Kitchen Plug is pending: ${nodes}`);
  assert.ok(!nodes.includes("7CDFA1000000"), "the up-to-date Living Room Light is not");
  screenshot("inbox");
  // The same count on the app's icon in the dock, not only in the window.
  let shown;
  await until(`the dock badge to say as many as the inbox shows`, async () => {
    shown = (await attrs('[data-testid="pending-card"]', "data-node")).length;
    return launcherCount() === shown ? shown : null;
  }, 30_000).catch((e) => {
    const log = readFileSync(process.env.GREENLIGHT_LAUNCHER_LOG, "utf8");
    throw new Error(`${e.message}: the inbox shows ${shown}, the dock heard:\n${log.slice(-2000)}`);
  });

  // Approve the Kitchen Plug alone and follow it to success.
  const plug = await browser.$('[data-testid="pending-card"][data-node="7CDFA1000001"]');
  await (await plug.$('[data-testid="approve"]')).click();
  await tab("activity");
  await until("the plug's job on the Activity page", async () =>
    (await attrs('[data-testid="job-running"]', "data-node")).includes("7CDFA1000001") ||
    (await attrs('[data-testid="job-finished"]', "data-node")).includes("7CDFA1000001"),
  );
  await new Promise((r) => setTimeout(r, 1500));
  screenshot("activity");
  await until("the plug to be updated", async () => {
    const el = await browser.$('[data-testid="job-finished"][data-node="7CDFA1000001"]');
    return (await el.isExisting()) && (await el.getAttribute("data-state")) === "success";
  }, 90_000);

  // The Garage Door offered its update and then dropped off the network: its
  // card follows the node (not the moment the offer arrived) and offers
  // "Install when online" instead of Approve.
  await tab("inbox");
  const garage = '[data-testid="pending-card"][data-node="7CDFA1000003"]';
  await until("the Garage Door's card to say it is offline", async () => {
    const el = await browser.$(garage);
    return (await el.isExisting()) && (await el.getAttribute("data-online")) === "false";
  }, 90_000);
  assert.equal(await (await browser.$(`${garage} [data-testid="online-state"]`)).getText(), "Offline");
  assert.ok(await (await browser.$(`${garage} [data-testid="install-when-online"]`)).isExisting(), "the offline card offers Install when online");
  assert.ok(!(await (await browser.$(`${garage} [data-testid="approve"]`)).isExisting()), "the offline card offers no Approve");

  // Approve all: the rest, with the offline one left out and said so.
  await (await browser.$('[data-testid="approve-all"]')).click();
  const confirm = await browser.$('[data-testid="confirm-all"]');
  // "All at once": the careful way is rollout.test.mjs's.
  await (await confirm.$('[data-testid="choice-all"]')).click();
  assert.match(await confirm.getText(), /(offline device\(s\)|device\(s\) not known to be online) are left out \(.*Garage Door/, "the confirmation names the offline Garage Door");
  await (await browser.$('[data-testid="confirm-approve-all"]')).click();
  await tab("activity");
  // The fan's first download attempt fails and the second succeeds; the
  // thermostat's new firmware does not reach the cloud in time and it goes
  // back to the old one (reported by the device as `failed`). What Activity
  // said on the way is logged; the end states are asserted.
  const seen = new Set();
  const results = await until("the fan's update and the thermostat's rollback", async () => {
    for (const el of await browser.$$('[data-testid="job-running"][data-node="7CDFA1000004"] [data-testid="job-state"]')) {
      // The row re-renders as the job moves on: an element found a moment
      // ago may be gone by the time its text is read (asked again next round).
      const t = await el.getText().catch(() => null);
      if (t == null) continue;
      if (/^Attempt 1 of 3 failed/.test(t) && ![...seen].some((s) => /^Attempt 1 of 3 failed/.test(s))) {
        screenshot("activity-retry");
      }
      seen.add(t);
    }
    const fan = await browser.$('[data-testid="job-finished"][data-node="7CDFA1000004"]');
    const hall = await browser.$('[data-testid="job-finished"][data-node="7CDFA1000005"]');
    if (!(await fan.isExisting()) || !(await hall.isExisting())) return null;
    return {
      fan: await fan.getAttribute("data-state"),
      fanText: await (await fan.$('[data-testid="job-result"]')).getText(),
      hall: await hall.getAttribute("data-state"),
      hallText: await (await hall.$('[data-testid="job-result"]')).getText(),
    };
  }, 180_000);
  console.log("the fan's job on the way:", [...seen]);
  assert.equal(results.fan, "success", `the fan ends updated after its retry: ${results.fanText}`);
  assert.equal(results.fanText, "Updated");
  assert.equal(results.hall, "rolled_back", `the thermostat rolls back: ${results.hallText}`);
  assert.match(results.hallText, /^Rolled back: .*went back to its previous firmware/, "the rollback's reason is given");
  screenshot("activity-results");

  await tab("history");
  const hallRow = await browser.$('[data-testid="history-row"][data-node="7CDFA1000005"]');
  await hallRow.waitForExist({ timeout: 10_000 });
  assert.match(await hallRow.getText(), /went back to its previous firmware/, "History gives the rollback's reason");
  const rows = await until("history rows", async () => {
    const states = await attrs('[data-testid="history-row"]', "data-state");
    return states.length >= 3 ? states : null;
  });
  const byNode = {};
  for (const el of await browser.$$('[data-testid="history-row"]')) {
    byNode[await el.getAttribute("data-node")] = await el.getAttribute("data-state");
  }
  assert.equal(byNode["7CDFA1000001"], "success", JSON.stringify(byNode));
  assert.equal(byNode["7CDFA1000004"], "success", JSON.stringify(byNode));
  assert.equal(byNode["7CDFA1000005"], "rolled_back", JSON.stringify(byNode));
  assert.ok(rows.length >= 3);
  screenshot("history");

  await tab("devices");
  await (await browser.$('[data-testid="devices-table"]')).waitForDisplayed();
  screenshot("devices");
});

test("the demo Blynk server: an update to every device is tracked to updated, and a flash-failing device is caught looping", async () => {
  await tab("blynk");
  const fw = await browser.$('[data-testid="blynk-firmware"]');
  await fw.waitForDisplayed({ timeout: 30_000 });
  assert.match(await fw.getValue(), /demo-firmware-2\.0\.bin$/, "the demo offers its sample firmware");
  await (await browser.$("button=Check")).click();
  const info = await browser.$('[data-testid="blynk-fw-info"]');
  await info.waitForDisplayed({ timeout: 10_000 });
  assert.match(await info.getText(), /Build Nov 23 2026 09:00:00/);
  await (await browser.$('input[value="all"]')).click();
  await (await browser.$('[data-testid="blynk-start"]')).click();
  await (await browser.$("button=Update every device")).click();
  let states;
  try {
    states = await until("two devices updated and one looping", async () => {
      const s = await attrs('[data-testid="blynk-device"]', "data-state");
      return s.filter((x) => x === "updated").length === 2 && s.includes("looping") ? s : null;
    }, 120_000);
  } catch (e) {
    screenshot("blynk-failure");
    console.log("device states:", await attrs('[data-testid="blynk-device"]', "data-state"));
    throw e;
  }
  assert.equal(states.length, 3);
  screenshot("blynk");
});

test("phone width: the inbox and activity stay readable with their buttons in reach", async () => {
  await browser.setWindowSize(390, 740);
  await new Promise((r) => setTimeout(r, 1000));
  screenshot("phone-resized");
  await tab("activity");
  await new Promise((r) => setTimeout(r, 800));
  screenshot("phone-activity");
  await tab("inbox");
  const card = await browser.$('[data-testid="pending-card"]');
  await card.waitForDisplayed({ timeout: 10_000 });
  const { width } = await browser.execute(() => ({ width: document.documentElement.scrollWidth }));
  assert.ok(width <= 400, `no sideways scrolling at phone width (page is ${width} px wide)`);
  screenshot("phone-inbox");
});
