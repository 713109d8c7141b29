import { describe, expect, it } from "vitest";
import { fireEvent, render, screen, within } from "@testing-library/svelte";
import { mockIPC } from "@tauri-apps/api/mocks";
import Inbox from "./Inbox.svelte";
import { AppModel } from "../lib/app.svelte";
import { job, node, pending } from "../fixtures.test-util";

function model() {
  const m = new AppModel();
  m.loaded = true;
  m.accounts = [{ name: "home", cloud_url: null, user: null, mqtt_url: null, pinned_fingerprint: null, state: { state: "connected" } }];
  m.nodes = [node("a1", "Kitchen Plug"), node("b2", "Porch Sensor", { model: "ESP32-C3 Sensor" }), node("c3", "Garage Door", { online: false })];
  m.pending = [
    pending("a1", "Kitchen Plug", { from_version: "1.3.2", to_version: "1.4.0", size: 1_258_291 }),
    pending("b2", "Porch Sensor", { kind: "cloud_approval", release_note: "Fixes the battery drain seen since 0.9. ".repeat(10) }),
    pending("c3", "Garage Door", { node_online: false }),
    pending("d4", "Snoozed Lamp", { snoozed_until: Date.now() + 3_600_000 }),
  ];
  return m;
}

describe("Inbox", () => {
  it("shows each waiting update with device, model, versions, kind, size and online state", () => {
    render(Inbox, { model: model() });
    const cards = screen.getAllByTestId("pending-card");
    expect(cards).toHaveLength(3); // the snoozed one is hidden
    expect(screen.getByText("3 updates waiting")).toBeTruthy();
    expect(screen.getByText(/1 snoozed/)).toBeTruthy();
    const plug = cards.find((c) => c.dataset.node === "a1")!;
    expect(within(plug).getByText("Kitchen Plug")).toBeTruthy();
    expect(within(plug).getByText("ESP32 Smart Plug")).toBeTruthy();
    expect(within(plug).getByText("1.3.2")).toBeTruthy();
    expect(within(plug).getByText("1.4.0")).toBeTruthy();
    expect(within(plug).getByText("1.2 MB")).toBeTruthy();
    expect(within(plug).getByText("Device asks")).toBeTruthy();
    const porch = cards.find((c) => c.dataset.node === "b2")!;
    expect(within(porch).getByText("Cloud job")).toBeTruthy();
    // Offline devices offer "Install when online" instead of Approve.
    const garage = cards.find((c) => c.dataset.node === "c3")!;
    expect(within(garage).getByText("Offline")).toBeTruthy();
    expect(within(garage).queryByTestId("approve")).toBeNull();
    expect(within(garage).getByTestId("install-when-online")).toBeTruthy();
  });

  it("shortens a long release note, expands it on request, and keeps the buttons", async () => {
    render(Inbox, { model: model() });
    const porch = screen.getAllByTestId("pending-card").find((c) => c.dataset.node === "b2")!;
    const note = within(porch).getByTestId("release-note");
    expect(note.textContent!.length).toBeLessThan(200);
    expect(note.textContent).toContain("…");
    await fireEvent.click(within(porch).getByText("More"));
    expect(within(porch).getByTestId("release-note").textContent!.length).toBeGreaterThan(300);
    expect(within(porch).getByTestId("approve")).toBeTruthy();
  });

  it("says “Requested — waiting for the device” right after a tap, then shows the outcome", async () => {
    const calls: Array<[string, unknown]> = [];
    let answer!: (v: unknown) => void;
    mockIPC((cmd, args) => {
      calls.push([cmd, args]);
      if (cmd === "approve") return new Promise((r) => (answer = r));
      return null;
    });
    const m = model();
    render(Inbox, { model: m });
    const plug = screen.getAllByTestId("pending-card").find((c) => c.dataset.node === "a1")!;
    await fireEvent.click(within(plug).getByTestId("approve"));
    expect(calls).toContainEqual(["approve", { nodeIds: ["a1"] }]);
    expect(await within(plug).findByTestId("requesting")).toBeTruthy();
    expect(within(plug).getByText("Requested — waiting for the device")).toBeTruthy();
    answer([{ account: "home", node_id: "a1", result: { result: "sent", job: job(7, "a1", { state: "requested" }) } }]);
    await new Promise((r) => setTimeout(r, 0));
    await new Promise((r) => setTimeout(r, 0));
    expect(m.jobs.map((j) => j.id)).toEqual([7]);
    expect(m.notices.at(-1)?.text).toBe("Started 1: Kitchen Plug.");
  });

  it("Approve all asks first, names the offline devices it leaves out, and reports what happened", async () => {
    mockIPC((cmd) => {
      if (cmd === "approve_all")
        return [
          { account: "home", node_id: "a1", result: { result: "sent", job: job(1, "a1", { state: "requested" }) } },
          { account: "home", node_id: "b2", result: { result: "sent", job: job(2, "b2", { state: "requested" }) } },
          { account: "home", node_id: "c3", result: { result: "offline" } },
        ];
      return null;
    });
    const m = model();
    render(Inbox, { model: m });
    await fireEvent.click(screen.getByTestId("approve-all"));
    const dialog = screen.getByTestId("confirm-all");
    expect(within(dialog).getByText("Approve 2 update(s)?")).toBeTruthy();
    expect(dialog.textContent).toContain("1 offline device(s) are left out (Garage Door)");
    await fireEvent.click(within(dialog).getByTestId("confirm-approve-all"));
    await new Promise((r) => setTimeout(r, 0));
    await new Promise((r) => setTimeout(r, 0));
    expect(m.notices.at(-1)?.text).toBe(
      "Started 2: Kitchen Plug, Porch Sensor. Left out 1: Garage Door (offline — use Install when online).",
    );
  });

  it("approves only the selected devices", async () => {
    const calls: Array<[string, unknown]> = [];
    mockIPC((cmd, args) => {
      calls.push([cmd, args]);
      return cmd === "approve" ? [] : null;
    });
    render(Inbox, { model: model() });
    await fireEvent.click(screen.getByLabelText("Select Porch Sensor"));
    await fireEvent.click(screen.getByTestId("approve-selected"));
    expect(calls).toContainEqual(["approve", { nodeIds: ["b2"] }]);
  });

  it("shows hostile device names and release notes as text, never as markup", () => {
    const m = model();
    const evil = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>';
    m.pending = [pending("a1", evil, { release_note: `<b>bold</b> ${evil}` })];
    render(Inbox, { model: m });
    const card = screen.getByTestId("pending-card");
    expect(card.querySelector("img")).toBeNull();
    expect(card.querySelector("script")).toBeNull();
    expect(card.querySelector("b")).toBeNull();
    expect(card.textContent).toContain(evil);
    expect((window as unknown as { __pwned?: number }).__pwned).toBeUndefined();
  });

  it("explains the next step when there is nothing to show", () => {
    const m = new AppModel();
    m.loaded = true;
    render(Inbox, { model: m });
    expect(screen.getByText("No devices yet")).toBeTruthy();
    expect(screen.getByTestId("try-demo")).toBeTruthy();
  });
});
