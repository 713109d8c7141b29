// End to end: what a new user sees at the default window width (980 px) and
// at a phone's (390 px): no page scrolls sideways, nothing sticks out past
// the right edge, the "unknown certificate" box shows its fingerprint once
// and inside the form, a form error is in view, and approving by keyboard
// leaves the focus on a card. Its own data directory and, for the
// certificate, its own simulated HTTPS RainMaker cloud (self-signed).
// Started by scripts/e2e.sh (see demo.test.mjs for the environment); also
// uses GREENLIGHT_SIM, the simulator binary.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { remote } from "webdriverio";

const shots = process.env.SCREENSHOT_DIR ?? "target/e2e-screenshots";
const app = process.env.GREENLIGHT_APP;
const simBin = process.env.GREENLIGHT_SIM ?? (app ? join(dirname(app), "greenlight-sim") : "");
const WIDTHS = [980, 390];
const HEIGHT = 700; // the app's default window height
const TABS = ["inbox", "activity", "history", "devices", "blynk", "accounts"];

let browser;
let dataDir;
let sim;
let simReady;

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
  await browser.setWindowSize(width, HEIGHT);
  await until(`the page to be ${width} px wide`, async () => {
    const w = await browser.execute(() => window.innerWidth);
    return Math.abs(w - width) <= 2 ? true : { notYet: `innerWidth ${w}` };
  }, 20_000);
}

async function tab(id) {
  await (await browser.$(`[data-testid="tab-${id}"]`)).click();
  await until(`the ${id} tab to be selected`, async () =>
    (await (await browser.$(`[data-testid="tab-${id}"]`)).getAttribute("aria-selected")) === "true");
}

/**
 * The page's sideways overflow: the document's scroll width against its
 * client width, and every visible element whose box reaches past the
 * viewport's left or right edge (a table scrolling inside its own box counts:
 * what is past the edge is off the screen; what an overflow:hidden box clips,
 * like the moving stripe of a progress bar, does not).
 */
async function overflow() {
  return browser.execute(() => {
    const root = document.documentElement;
    const vw = root.clientWidth;
    const out = [];
    const clipped = (el) => {
      for (let a = el.parentElement; a && a !== root; a = a.parentElement) {
        const o = getComputedStyle(a).overflowX;
        if (o === "hidden" || o === "clip") {
          const r = a.getBoundingClientRect();
          return r.left >= -0.5 && r.right <= vw + 0.5;
        }
      }
      return false;
    };
    for (const el of document.querySelectorAll("main *")) {
      const r = el.getBoundingClientRect();
      if (r.width <= 1 || r.height <= 1) continue; // hidden, or the sr-only 1 px boxes
      if ((r.right > vw + 0.5 || r.left < -0.5) && !clipped(el)) {
        const id = el.getAttribute("data-testid") ?? el.className ?? "";
        out.push(`${el.tagName.toLowerCase()}${id ? `[${id}]` : ""} ${Math.round(r.left)}..${Math.round(r.right)} "${(el.textContent ?? "").trim().slice(0, 30)}"`);
      }
    }
    return { scrollWidth: root.scrollWidth, clientWidth: vw, outside: out };
  });
}

async function assertNoSideways(where) {
  const o = await overflow();
  assert.ok(o.scrollWidth <= o.clientWidth, `${where}: the page scrolls sideways (${o.scrollWidth} > ${o.clientWidth})`);
  assert.deepEqual(o.outside, [], `${where}: elements past the edge of a ${o.clientWidth} px window`);
}

/** Whether the element lies entirely in the visible part of the page (below the sticky header). */
async function inView(el) {
  return browser.execute((e) => {
    const r = e.getBoundingClientRect();
    const header = document.querySelector("header")?.getBoundingClientRect().bottom ?? 0;
    return r.top >= header - 1 && r.bottom <= window.innerHeight + 1 && r.left >= -1 && r.right <= document.documentElement.clientWidth + 1;
  }, el);
}

/** Runs f; when it throws, a screenshot and the notices on the page go with the error. */
async function explained(name, f) {
  try {
    return await f();
  } catch (e) {
    screenshot(`layout-failure-${name}`);
    const notices = await browser.execute(() => [...document.querySelectorAll(".notice")].map((n) => n.textContent?.trim()));
    console.log(`notices at the failure (${name}):`, notices);
    throw e;
  }
}

async function focused() {
  return browser.execute(() => {
    const a = document.activeElement;
    const card = a?.closest('[data-testid="pending-card"]');
    return {
      testid: a?.getAttribute("data-testid") ?? null,
      tag: a?.tagName.toLowerCase() ?? null,
      node: card?.getAttribute("data-node") ?? null,
      text: (a?.textContent ?? "").trim().slice(0, 40),
    };
  });
}

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "greenlight-e2e-layout-"));
  if (simBin && existsSync(simBin)) {
    sim = spawn(simBin, ["rainmaker", "--https", "--embedded-broker", "127.0.0.1:0", "--password", "right-password", "--speed", "fast"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    simReady = await new Promise((resolve, reject) => {
      const lines = createInterface({ input: sim.stdout });
      lines.once("line", (l) => resolve(JSON.parse(l)));
      sim.once("exit", (code) => reject(new Error(`the simulator exited (${code}) before it was ready`)));
    });
    assert.match(simReady.http, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.match(simReady.fingerprint, /^[0-9a-f]{64}$/);
  }
  browser = await remote({
    hostname: "127.0.0.1",
    port: Number(process.env.WEBDRIVER_PORT ?? 4444),
    logLevel: "error",
    connectionRetryTimeout: 120_000,
    capabilities: {
      "tauri:options": { application: app, args: ["--data-dir", dataDir] },
    },
  });
  await (await browser.$('[data-testid="tab-inbox"]')).waitForDisplayed({ timeout: 60_000 });
});

after(async () => {
  await browser?.deleteSession().catch(() => {});
  sim?.kill("SIGTERM");
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

test("an unknown certificate: its fingerprint is shown once, in groups, inside the form; an error after Add is in view and wraps", async (t) => {
  if (!simReady) {
    t.skip(`no simulator at ${simBin || "(GREENLIGHT_SIM unset)"}`);
    return;
  }
  const fp = simReady.fingerprint;
  const pairs = fp.toUpperCase().match(/../g);
  for (const width of WIDTHS) {
    await resize(width);
    await tab("accounts");
    const form = await browser.$("form.form");
    await form.waitForDisplayed({ timeout: 20_000 });
    await browser.execute(() => window.scrollTo(0, 0));
    // Name, Cloud URL, Email, Password (setValue replaces what is there).
    const inputs = await form.$$("label > input:not([type=radio])");
    await inputs[0].setValue(`Home ${width}`);
    await inputs[1].setValue(simReady.http);
    await inputs[2].setValue(simReady.user);
    await inputs[3].setValue("wrong-password");
    await (await form.$('button[type="submit"]')).click();

    const box = await browser.$('[data-testid="unknown-cert"]');
    await box.waitForDisplayed({ timeout: 30_000 });
    await until("the box to be scrolled into view", async () => (await inView(box)) || { notYet: "the box is off the screen" }, 10_000);
    await painted();
    screenshot(`layout-accounts-cert-${width}`);
    const seen = await browser.execute((b) => {
      const text = b.textContent ?? "";
      const form = b.closest("form").getBoundingClientRect();
      const r = b.getBoundingClientRect();
      const fpEl = b.querySelector('[data-testid="unknown-cert-fingerprint"]');
      return {
        text,
        fpText: fpEl?.textContent ?? "",
        box: { left: r.left, right: r.right },
        form: { left: form.left, right: form.right },
        fpOverflows: fpEl ? fpEl.scrollWidth > fpEl.clientWidth + 1 : true,
        boxOverflows: b.scrollWidth > b.clientWidth + 1,
      };
    }, box);
    // Once: the whole fingerprint, however written (AB:CD:…, ABCD, spaces), occurs one time.
    const hex = seen.text.toUpperCase().replace(/[^0-9A-F]/g, "");
    const count = hex.split(fp.toUpperCase()).length - 1;
    assert.equal(count, 1, `the fingerprint appears once in the box (${count} times): ${seen.text}`);
    assert.equal(seen.fpText.toUpperCase().replace(/[^0-9A-F]/g, ""), fp.toUpperCase(), "the fingerprint element holds all of it");
    assert.ok(seen.fpText.includes(`${pairs[0]}:${pairs[1]}`), `grouped in pairs: ${seen.fpText}`);
    assert.ok(!seen.fpOverflows && !seen.boxOverflows, `nothing spills out of the box: ${JSON.stringify(seen)}`);
    assert.ok(seen.box.left >= seen.form.left - 0.5 && seen.box.right <= seen.form.right + 0.5, `the box is inside the form: ${JSON.stringify(seen)}`);
    await assertNoSideways(`accounts with the certificate box at ${width} px`);

    // Trusting it with a wrong password: the error shows in view, next to the button, wrapped.
    await (await box.$("button=Trust this certificate")).click();
    const error = await browser.$('[data-testid="account-error"]');
    await error.waitForDisplayed({ timeout: 30_000 });
    // Whatever the app says (a wrong password, or no keychain to keep it in).
    assert.ok((await error.getText()).length > 0);
    await until("the error to be scrolled into view", async () => (await inView(error)) || { notYet: "error below the fold" }, 10_000);
    await painted();
    screenshot(`layout-accounts-error-${width}`);
    const wraps = await browser.execute((e) => e.scrollWidth <= e.clientWidth + 1, error);
    assert.ok(wraps, "the error wraps inside the form");
    assert.ok(await inView(await form.$('button[type="submit"]')), "the Add button is in view with it");
    await assertNoSideways(`accounts with an error at ${width} px`);

    // Cancel: nothing was added.
    await (await box.$("button=Cancel")).click();
    await until("the certificate box to close", async () => !(await (await browser.$('[data-testid="unknown-cert"]')).isExisting()));
  }
  assert.equal((await browser.$$('[data-testid="account"]')).length, 0, "no account was added");
});

test("approving by keyboard leaves the focus on the next card's Approve button (or the heading)", async () => {
  await resize(980);
  await tab("inbox");
  const tryDemo = await browser.$('[data-testid="try-demo"]');
  await tryDemo.waitForDisplayed({ timeout: 60_000 });
  await tryDemo.click();
  // All five of the demo's offers in (a card arriving later could move the
  // focused one and take its focus), two or more of them approvable.
  await explained("demo", () =>
    until("the demo's five updates in the inbox", async () =>
      (await browser.$$('[data-testid="pending-card"]')).length >= 5 &&
      (await browser.$$('[data-testid="pending-card"] [data-testid="approve"]')).length >= 2, 120_000));

  // Tab from the top of the page to the first Approve button.
  await browser.execute(() => {
    document.activeElement?.blur?.();
    window.scrollTo(0, 0);
  });
  let first;
  for (let i = 0; i < 40; i++) {
    await browser.keys(["Tab"]);
    first = await focused();
    if (first.testid === "approve") break;
  }
  assert.equal(first.testid, "approve", `Tab reaches an Approve button: ${JSON.stringify(first)}`);
  console.log("approving by keyboard:", first);
  await browser.keys(["Enter"]);

  // The card leaves the inbox; the focus is on another card's Approve or the heading.
  let said = "";
  const after = await explained("keyboard-approve", () => until("the approved card to leave and the focus to land on the next card", async () => {
    const gone = !(await (await browser.$(`[data-testid="pending-card"][data-node="${first.node}"]`)).isExisting());
    const f = await focused();
    const ok = (f.testid === "approve" && f.node !== first.node) || f.testid === "inbox-heading";
    const notices = await browser.execute(() => [...document.querySelectorAll(".notice")].map((n) => n.textContent?.trim()));
    const now = JSON.stringify({ gone, focus: f, notices });
    if (now !== said) console.log("after Enter:", (said = now));
    return gone && ok ? f : { notYet: `card gone: ${gone}, focus: ${JSON.stringify(f)}` };
  }, 60_000));
  console.log(`approved ${first.node} by keyboard; the focus moved to`, after);
  await painted();
  screenshot("layout-inbox-keyboard-approve");
});

test("every page at 980 px and at 390 px: no sideways scrolling, nothing past the right edge", async () => {
  // History shows its table once there is an approval (the keyboard one above).
  await tab("history");
  await (await browser.$('[data-testid="history-row"]')).waitForDisplayed({ timeout: 90_000 });
  const ready = {
    inbox: '[data-testid="pending-card"]',
    activity: '[data-testid="job-finished"], [data-testid="job-running"]',
    history: '[data-testid="history-row"]',
    devices: '[data-testid="device-row"]',
    blynk: '[data-testid="blynk-firmware"]',
    accounts: '[data-testid="account"]',
  };
  for (const width of WIDTHS) {
    await resize(width);
    for (const id of TABS) {
      await tab(id);
      await (await browser.$(ready[id])).waitForDisplayed({ timeout: 30_000 });
      await browser.execute(() => window.scrollTo(0, 0));
      await painted();
      screenshot(`layout-${id}-${width}`);
      await assertNoSideways(`${id} at ${width} px`);
    }
    // Devices: every "Check now" is on the screen.
    await tab("devices");
    const buttons = await browser.$$('[data-testid="device-row"] button');
    assert.ok(buttons.length > 0);
    for (const b of buttons) {
      const inside = await browser.execute((e) => {
        const r = e.getBoundingClientRect();
        return r.left >= 0 && r.right <= document.documentElement.clientWidth;
      }, b);
      assert.ok(inside, `"Check now" is within the ${width} px window`);
    }
  }
  await resize(980);
});
