import { describe, expect, it } from "vitest";
import { render, screen, within } from "@testing-library/svelte";
import Devices from "./Devices.svelte";
import { AppModel } from "../lib/app.svelte";
import { node } from "../fixtures.test-util";

describe("Devices", () => {
  it("says a stock-SDK device takes its updates from the cloud and shows its last OTA text", () => {
    const m = new AppModel();
    m.loaded = true;
    m.nodes = [
      node("a1", "Kitchen Plug"),
      node("s1", "Stock Switch", { ota_layout: "stock", ota_text: "OTA finished successfully (1.2.0)" }),
      node("s2", "Quiet Stock Lamp", { ota_layout: "stock", ota_text: null }),
    ];
    render(Devices, { model: m });
    const row = (n: string) => screen.getAllByTestId("device-row").find((r) => r.dataset.node === n)!;
    expect(within(row("s1")).getByTestId("device-ota-stock").textContent).toContain("from the cloud");
    expect(within(row("s1")).getByTestId("device-ota-text").textContent).toBe("Last OTA: “OTA finished successfully (1.2.0)”");
    expect(within(row("s2")).getByTestId("device-ota-stock")).toBeTruthy();
    expect(within(row("s2")).queryByTestId("device-ota-text")).toBeNull();
    expect(within(row("a1")).queryByTestId("device-ota-stock")).toBeNull();
  });

  it("says when the system has turned Greenlight's notifications off, and only then", () => {
    const status = (notifications: "granted" | "denied" | "not_asked") => ({
      version: "0", demo: false, keychain: { state: "available" as const }, notifications_paused: false, data_dir: "/d",
      autostart: null, demo_firmware: null, engine_owner: "app", demo_available: false, notifications, mobile: false,
    });
    const m = new AppModel();
    m.loaded = true;
    m.status = status("denied");
    const { unmount } = render(Devices, { model: m });
    expect(screen.getByTestId("notifications-denied").textContent).toContain("turned off for Greenlight in your system settings");
    unmount();
    for (const s of ["granted", "not_asked"] as const) {
      const ok = new AppModel();
      ok.loaded = true;
      ok.status = status(s);
      const r = render(Devices, { model: ok });
      expect(screen.queryByTestId("notifications-denied")).toBeNull();
      r.unmount();
    }
  });
});
