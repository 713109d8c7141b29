import { describe, expect, it } from "vitest";
import { mockIPC } from "@tauri-apps/api/mocks";
import { AppModel } from "./app.svelte";
import { member, pending, rollout, T0 } from "../fixtures.test-util";

describe("AppModel.reload", () => {
  it("keeps an event that arrives while the reload's answers are in flight (the answers can be older)", async () => {
    let release = () => {};
    const gate = new Promise<void>((r) => (release = r));
    mockIPC(async (cmd) => {
      switch (cmd) {
        case "pending":
          // The engine answered before the offer below existed.
          await gate;
          return [];
        case "app_status":
          return { version: "0", demo: true, keychain: { state: "available" }, notifications_paused: false, data_dir: "/d", autostart: null, demo_firmware: null, engine_owner: "app", demo_available: true, notifications: "granted", mobile: false };
        case "policies":
          return { auto_approve: [], quiet_hours: null, skipped: [], snoozed: [] };
        default:
          return [];
      }
    });
    const m = new AppModel();
    const reloading = m.reload();
    m.apply({ type: "pending_added", pending: pending("p2", "Porch Sensor", { kind: "cloud_approval" }) });
    release();
    await reloading;
    expect(m.pending.map((p) => p.node_id)).toEqual(["p2"]);
  });
});

describe("AppModel.reload right after launch", () => {
  it("asks nothing but the status while the data is opening, and everything once it is open", async () => {
    let owner = "opening";
    const asked: string[] = [];
    mockIPC(async (cmd) => {
      asked.push(cmd);
      switch (cmd) {
        case "app_status":
          return { version: "0", demo: false, keychain: { state: "available" }, notifications_paused: false, data_dir: "/d", autostart: null, demo_firmware: null, engine_owner: owner, demo_available: true, notifications: "granted", mobile: false };
        case "accounts":
          return [{ name: "home", state: { state: "connected" }, freshness: {}, cloud_url: null, user: null, pinned_fingerprint: null, mqtt_url: "mqtts://broker.local:8883" }];
        case "policies":
          return { auto_approve: [], quiet_hours: null, skipped: [], snoozed: [] };
        default:
          return [];
      }
    });
    const m = new AppModel();
    await m.reload();
    expect(m.status?.engine_owner).toBe("opening");
    // The engine's commands would only answer "opening" errors as notices.
    expect(asked).toEqual(["app_status"]);
    expect(m.notices).toEqual([]);
    // `app_changed` once it opened: the reload it triggers shows the accounts.
    owner = "app";
    await m.reload();
    expect(m.status?.engine_owner).toBe("app");
    expect(m.accounts.map((a) => a.name)).toEqual(["home"]);
  });
});

describe("AppModel.apply", () => {
  it("follows a pause and quiet hours set elsewhere (the tray, `greenlight notifications pause`)", () => {
    const m = new AppModel();
    m.status = { version: "0", demo: false, keychain: { state: "available" }, notifications_paused: false, data_dir: "/d", autostart: null, demo_firmware: null, engine_owner: "daemon", demo_available: true, notifications: "granted", mobile: false };
    m.policies = { auto_approve: [], quiet_hours: null, skipped: [], snoozed: [] };
    m.apply({ type: "notifications_paused", paused: true });
    expect(m.status.notifications_paused).toBe(true);
    const quiet = { start_minute: 1320, end_minute: 420, utc_offset_minutes: 60 };
    m.apply({ type: "quiet_hours_changed", quiet_hours: quiet });
    expect(m.policies.quiet_hours).toEqual(quiet);
  });
});

describe("AppModel rollouts", () => {
  const status = { version: "0", demo: true, keychain: { state: "available" }, notifications_paused: false, data_dir: "/d", autostart: null, demo_firmware: null, engine_owner: "app", demo_available: true, notifications: "granted", mobile: false };

  it("loads the rollouts with everything else, and follows rollout_changed: the active one first, newest next", async () => {
    const ended = rollout(1, { state: "done" }, [], { created_at: T0, headline: "Done: 3 updated" });
    mockIPC(async (cmd) => {
      switch (cmd) {
        case "app_status":
          return status;
        case "policies":
          return { auto_approve: [], quiet_hours: null, skipped: [], snoozed: [] };
        case "rollouts":
          return [ended];
        default:
          return [];
      }
    });
    const m = new AppModel();
    await m.reload();
    expect(m.rollouts.map((r) => r.id)).toEqual([1]);
    expect(m.activeRollout).toBeNull();

    const running = rollout(2, { state: "running" }, [member("a1", "Kitchen Plug", { state: "running" }, 0)], {
      created_at: T0 + 60_000,
      updated_at: T0 + 61_000,
      headline: "Kitchen Plug goes first: updating",
    });
    m.apply({ type: "rollout_changed", rollout: running });
    expect(m.rollouts.map((r) => r.id)).toEqual([2, 1]);
    expect(m.activeRollout?.headline).toBe("Kitchen Plug goes first: updating");

    // A later save replaces it; an older copy arriving after it does not.
    const watched = { ...running, updated_at: T0 + 70_000, headline: "Kitchen Plug goes first: updated; must stay online 5 min before the rest" };
    m.apply({ type: "rollout_changed", rollout: watched });
    m.apply({ type: "rollout_changed", rollout: running });
    expect(m.rollouts).toHaveLength(2);
    expect(m.activeRollout?.headline).toBe(watched.headline);

    // Cancelled: no longer active; still listed, newest first.
    m.apply({ type: "rollout_changed", rollout: { ...watched, state: { state: "cancelled" }, updated_at: T0 + 80_000 } });
    expect(m.activeRollout).toBeNull();
    expect(m.rollouts.map((r) => [r.id, r.state.state])).toEqual([
      [2, "cancelled"],
      [1, "done"],
    ]);
  });

  it("starts a rollout with the plan as given, says so and shows Activity; a refusal is a notice", async () => {
    const calls: Array<[string, unknown]> = [];
    let refuse = false;
    const started = rollout(3, { state: "running" }, [member("a1", "Kitchen Plug", { state: "running" }, 0)], {
      headline: "Kitchen Plug goes first: updating",
    });
    mockIPC((cmd, args) => {
      calls.push([cmd, args]);
      if (cmd === "start_rollout") {
        if (refuse) throw { kind: "invalid", message: "a batch is 1 to 100 devices, not 0" };
        return started;
      }
      return null;
    });
    const m = new AppModel();
    const plan = { nodes: [], canary: null, batch: 2, soak_secs: 30, window: null };
    expect(await m.startRollout(plan)).toEqual(started);
    expect(calls).toEqual([["start_rollout", { plan }]]);
    expect(m.tab).toBe("activity");
    expect(m.activeRollout?.id).toBe(3);
    expect(m.notices.at(-1)?.text).toBe("Careful update started: Kitchen Plug goes first: updating.");

    refuse = true;
    m.tab = "inbox";
    expect(await m.startRollout({ ...plan, batch: 0 })).toBeUndefined();
    expect(m.notices.at(-1)).toMatchObject({ kind: "error", text: "a batch is 1 to 100 devices, not 0" });
    expect(m.tab).toBe("inbox");
    expect(m.rolloutBusy).toBe(false);
  });
});
