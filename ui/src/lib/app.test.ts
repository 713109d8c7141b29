import { describe, expect, it } from "vitest";
import { mockIPC } from "@tauri-apps/api/mocks";
import { AppModel } from "./app.svelte";
import { pending } from "../fixtures.test-util";

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
