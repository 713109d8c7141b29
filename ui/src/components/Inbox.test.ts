import { describe, expect, it } from "vitest";
import { fireEvent, render, screen, within } from "@testing-library/svelte";
import { mockIPC } from "@tauri-apps/api/mocks";
import Inbox from "./Inbox.svelte";
import { AppModel } from "../lib/app.svelte";
import { job, member, node, pending, rollout } from "../fixtures.test-util";

function model() {
  const m = new AppModel();
  m.loaded = true;
  m.accounts = [{ name: "home", cloud_url: null, user: null, mqtt_url: null, pinned_fingerprint: null, state: { state: "connected" }, freshness: { live: true, last_sweep: null, unknown_since: null, checking: null } }];
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
    expect(calls).toContainEqual(["approve", { nodes: [{ account: "home", node_id: "a1" }] }]);
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
    await fireEvent.click(within(dialog).getByTestId("choice-all"));
    expect(within(dialog).getByText("Approve 2 update(s)?")).toBeTruthy();
    expect(dialog.textContent).toContain("1 device(s) not known to be online are left out (Garage Door)");
    await fireEvent.click(within(dialog).getByTestId("confirm-approve-all"));
    await new Promise((r) => setTimeout(r, 0));
    await new Promise((r) => setTimeout(r, 0));
    expect(m.notices.at(-1)?.text).toBe(
      "Started 2: Kitchen Plug, Porch Sensor. Left out 1: Garage Door (not known to be online — use Install when online).",
    );
  });

  it("Approve all… offers carefully (first) and all at once; carefully starts a rollout with the plan as set", async () => {
    const calls: Array<[string, unknown]> = [];
    mockIPC((cmd, args) => {
      calls.push([cmd, args]);
      if (cmd === "start_rollout")
        return rollout(4, { state: "running" }, [member("a1", "Kitchen Plug", { state: "running" }, 0)], { headline: "Kitchen Plug goes first: updating" });
      return null;
    });
    const m = model();
    render(Inbox, { model: m });
    const button = screen.getByTestId("approve-all");
    expect(button.textContent).toBe("Approve all…");
    await fireEvent.click(button);
    const dialog = screen.getByRole("dialog");
    const careful = within(dialog).getByTestId("choice-careful") as HTMLInputElement;
    const all = within(dialog).getByTestId("choice-all") as HTMLInputElement;
    expect(careful.checked).toBe(true);
    expect(all.checked).toBe(false);
    // The keyboard is in the choice at once.
    expect(document.activeElement).toBe(careful);
    expect(within(dialog).getByText("Carefully — one first, then 2 at a time")).toBeTruthy();
    expect(within(dialog).getByText("All at once")).toBeTruthy();
    // Carefully takes the offline Garage Door too: it waits, it is not left out.
    expect(within(dialog).getByText("Approve 3 update(s)?")).toBeTruthy();
    const summary = () => within(dialog).getByTestId("careful-summary").textContent!.replace(/\s+/g, " ").trim();
    expect(summary()).toBe(
      "Kitchen Plug goes first and must stay online on its new version for 5 min; then 2 at a time, each batch watched the same way. " +
        "1 offline device(s) wait until they are online (Garage Door); they do not hold up the others.",
    );
    expect((within(dialog).getByTestId("careful-first") as HTMLSelectElement).value).toBe("");
    expect(within(dialog).getByTestId("careful-first").textContent).toContain("The first online device");

    await fireEvent.input(within(dialog).getByTestId("careful-batch"), { target: { value: "3" } });
    await fireEvent.input(within(dialog).getByTestId("careful-soak"), { target: { value: "0.5" } });
    expect(within(dialog).getByText("Carefully — one first, then 3 at a time")).toBeTruthy();
    expect(summary()).toContain("for 30 s; then 3 at a time");
    await fireEvent.click(within(dialog).getByTestId("start-careful"));
    await new Promise((r) => setTimeout(r, 0));
    expect(calls).toEqual([["start_rollout", { plan: { nodes: [], canary: null, batch: 3, soak_secs: 30, window: null } }]]);
    await new Promise((r) => setTimeout(r, 0));
    // Started: the choice closes and Activity shows it.
    expect(m.confirmApproveAll).toBe(false);
    expect(m.tab).toBe("activity");
    expect(m.notices.at(-1)?.text).toBe("Careful update started: Kitchen Plug goes first: updating.");
  });

  it("the device to go first and a daily window in this computer's time go into the plan; a window that never opens is said, not sent", async () => {
    const calls: Array<[string, unknown]> = [];
    mockIPC((cmd, args) => {
      calls.push([cmd, args]);
      return cmd === "start_rollout" ? rollout(5, { state: "running" }, []) : null;
    });
    render(Inbox, { model: model() });
    await fireEvent.click(screen.getByTestId("approve-all"));
    const dialog = screen.getByTestId("confirm-all");
    const first = within(dialog).getByTestId("careful-first") as HTMLSelectElement;
    const options = [...first.options].map((o) => o.textContent);
    expect(options).toEqual(["The first online device", "Garage Door (offline: waits for it)", "Kitchen Plug", "Porch Sensor"]);
    first.value = [...first.options].find((o) => o.textContent === "Porch Sensor")!.value;
    await fireEvent.change(first);
    expect(within(dialog).getByTestId("careful-summary").textContent).toMatch(/^\s*Porch Sensor goes first/);

    const start = within(dialog).getByTestId("careful-window-start") as HTMLInputElement;
    expect(start.disabled).toBe(true);
    await fireEvent.click(within(dialog).getByTestId("careful-window"));
    expect(start.disabled).toBe(false);
    await fireEvent.input(start, { target: { value: "05:30" } });
    await fireEvent.input(within(dialog).getByTestId("careful-window-end"), { target: { value: "05:30" } });
    expect(within(dialog).getByTestId("careful-problem").textContent).toContain("closes when it opens");
    expect((within(dialog).getByTestId("start-careful") as HTMLButtonElement).disabled).toBe(true);

    await fireEvent.input(start, { target: { value: "22:00" } });
    expect(within(dialog).queryByTestId("careful-problem")).toBeNull();
    await fireEvent.click(within(dialog).getByTestId("start-careful"));
    await new Promise((r) => setTimeout(r, 0));
    expect(calls).toEqual([
      [
        "start_rollout",
        {
          plan: {
            nodes: [],
            canary: { account: "home", node_id: "b2" },
            batch: 2,
            soak_secs: 300,
            window: { start_minute: 1320, end_minute: 330, utc_offset_minutes: -new Date().getTimezoneOffset() },
          },
        },
      ],
    ]);
  });

  it("names the device the engine will take first: the first online one by id, not by the order the offers came in", async () => {
    const m = model();
    // The porch's offer came first; by id the plug (a1) is first while it is online.
    m.pending = [pending("b2", "Porch Sensor"), pending("a1", "Kitchen Plug"), pending("e5", "Attic Fan")];
    m.nodes = [...m.nodes, node("e5", "Attic Fan")];
    render(Inbox, { model: m });
    await fireEvent.click(screen.getByTestId("approve-all"));
    expect(screen.getByTestId("careful-summary").textContent).toMatch(/^\s*Kitchen Plug goes first/);
    m.apply({ type: "node_updated", node: node("a1", "Kitchen Plug", { online: false }) });
    await new Promise((r) => setTimeout(r, 0));
    expect(screen.getByTestId("careful-summary").textContent).toMatch(/^\s*Porch Sensor goes first/);
  });

  it("a batch outside 1 to 100 is said and nothing is sent; Escape closes the choice", async () => {
    const calls: string[] = [];
    mockIPC((cmd) => {
      calls.push(cmd);
      return null;
    });
    const m = model();
    render(Inbox, { model: m });
    await fireEvent.click(screen.getByTestId("approve-all"));
    const dialog = screen.getByTestId("confirm-all");
    await fireEvent.input(within(dialog).getByTestId("careful-batch"), { target: { value: "0" } });
    expect(within(dialog).getByTestId("careful-problem").textContent).toBe("Give how many go at once after the first: 1 to 100.");
    const start = within(dialog).getByTestId("start-careful") as HTMLButtonElement;
    expect(start.disabled).toBe(true);
    await fireEvent.click(start);
    expect(calls).toEqual([]);
    await fireEvent.keyDown(within(dialog).getByTestId("careful-batch"), { key: "Escape" });
    expect(screen.queryByTestId("confirm-all")).toBeNull();
    expect(m.confirmApproveAll).toBe(false);
  });

  it("while a careful update is under way, the inbox points to it and Approve all offers only all at once", async () => {
    const m = model();
    m.rollouts = [
      rollout(6, { state: "stopped", account: "home", node_id: "a1", reason: "Kitchen Plug rolled back: x" }, [], {
        headline: "Stopped: Kitchen Plug rolled back: x",
      }),
    ];
    render(Inbox, { model: m });
    expect(screen.getByTestId("inbox-rollout").textContent).toContain("A careful update is under way: Stopped: Kitchen Plug rolled back: x.");
    await fireEvent.click(screen.getByTestId("approve-all"));
    const dialog = screen.getByTestId("confirm-all");
    expect((within(dialog).getByTestId("choice-careful") as HTMLInputElement).disabled).toBe(true);
    expect((within(dialog).getByTestId("choice-all") as HTMLInputElement).checked).toBe(true);
    expect(dialog.textContent).toContain("finish or cancel it on the Activity page first");
    expect(within(dialog).getByTestId("confirm-approve-all")).toBeTruthy();
    await fireEvent.click(within(screen.getByTestId("inbox-rollout")).getByText("Follow it on Activity"));
    expect(m.tab).toBe("activity");
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
    expect(calls).toContainEqual(["approve", { nodes: [{ account: "home", node_id: "b2" }] }]);
  });

  it("shows both offers of a node that has a node-side and a cloud offer, and follows each by its own key", async () => {
    const m = model();
    m.pending = [pending("a1", "Kitchen Plug", { job_id: "node-offer", to_version: "1.4.0" })];
    render(Inbox, { model: m });
    // The cloud offer arrives for the same node: it is added, not swapped in.
    m.apply({
      type: "pending_added",
      pending: pending("a1", "Kitchen Plug", { job_id: "cloud-offer", kind: "cloud_approval", to_version: "1.5.0", release_note: "Cloud build" }),
    });
    await new Promise((r) => setTimeout(r, 0));
    let cards = screen.getAllByTestId("pending-card");
    expect(cards.map((c) => c.dataset.job)).toEqual(["node-offer", "cloud-offer"]);
    expect(within(cards[0]).getByText("Device asks")).toBeTruthy();
    expect(within(cards[1]).getByText("Cloud job")).toBeTruthy();
    expect(within(cards[1]).getByText("1.5.0")).toBeTruthy();
    expect(within(cards[0]).getByTestId("two-offers").textContent).toContain("2 updates waiting");
    // Each card has its own checkbox.
    await fireEvent.click(screen.getByLabelText("Select Kitchen Plug (Cloud job)"));
    expect((screen.getByLabelText("Select Kitchen Plug (Device asks)") as HTMLInputElement).checked).toBe(false);

    // A third offer for another node is added; an update of one offer replaces only that one.
    m.apply({ type: "pending_added", pending: pending("b2", "Porch Sensor") });
    m.apply({ type: "pending_added", pending: pending("a1", "Kitchen Plug", { job_id: "cloud-offer", kind: "cloud_approval", to_version: "1.5.1" }) });
    await new Promise((r) => setTimeout(r, 0));
    cards = screen.getAllByTestId("pending-card");
    expect(cards.map((c) => c.dataset.job)).toEqual(["node-offer", "cloud-offer", "job-b2"]);
    expect(within(cards[1]).getByText("1.5.1")).toBeTruthy();

    // Removing one offer leaves the other.
    m.apply({ type: "pending_removed", account: "home", node_id: "a1", job_id: "node-offer" });
    await new Promise((r) => setTimeout(r, 0));
    expect(screen.getAllByTestId("pending-card").map((c) => c.dataset.job)).toEqual(["cloud-offer", "job-b2"]);
    expect(screen.queryByTestId("two-offers")).toBeNull();
  });

  it("Skip this version on a node with two offers asks the engine what is left and names what was skipped", async () => {
    const nodeOffer = pending("a1", "Kitchen Plug", { job_id: "node-offer", to_version: "1.4.0" });
    const cloudOffer = pending("a1", "Kitchen Plug", { job_id: "cloud-offer", kind: "cloud_approval", to_version: "1.5.0" });
    const calls: string[] = [];
    mockIPC((cmd) => {
      calls.push(cmd);
      if (cmd === "pending") return [cloudOffer];
      if (cmd === "policies") return { auto_approve: [], quiet_hours: null, skipped: [], snoozed: [] };
      return null;
    });
    const m = model();
    m.pending = [nodeOffer, cloudOffer];
    render(Inbox, { model: m });
    await fireEvent.click(within(screen.getAllByTestId("pending-card")[0]).getByText("Skip this version"));
    await new Promise((r) => setTimeout(r, 0));
    await new Promise((r) => setTimeout(r, 0));
    expect(calls.slice(0, 2)).toEqual(["skip", "pending"]);
    expect(screen.getAllByTestId("pending-card").map((c) => c.dataset.job)).toEqual(["cloud-offer"]);
    expect(m.notices.at(-1)?.text).toBe("Kitchen Plug: skipping 1.4.0. A newer version will show again.");
  });

  it("takes the online state from the current node, not from the moment the offer arrived", async () => {
    const m = model();
    // The demo's Garage Door: the offer was recorded while online, the node is offline now.
    m.pending = [pending("c3", "Garage Door", { node_online: true }), pending("a1", "Kitchen Plug")];
    render(Inbox, { model: m });
    const card = (n: string) => screen.getAllByTestId("pending-card").find((c) => c.dataset.node === n)!;
    expect(within(card("c3")).getByTestId("online-state").textContent).toBe("Offline");
    expect(within(card("c3")).getByTestId("install-when-online")).toBeTruthy();
    expect(within(card("c3")).queryByTestId("approve")).toBeNull();

    // The plug goes offline: its card says so and offers Install when online.
    expect(within(card("a1")).getByTestId("approve")).toBeTruthy();
    m.apply({ type: "node_updated", node: node("a1", "Kitchen Plug", { online: false }) });
    await new Promise((r) => setTimeout(r, 0));
    expect(within(card("a1")).getByTestId("online-state").textContent).toBe("Offline");
    expect(within(card("a1")).queryByTestId("approve")).toBeNull();
    expect(within(card("a1")).getByTestId("install-when-online")).toBeTruthy();

    // The confirmation counts from the same live data.
    await fireEvent.click(screen.getByTestId("approve-all"));
    const dialog = screen.getByTestId("confirm-all");
    await fireEvent.click(within(dialog).getByTestId("choice-all"));
    expect(within(dialog).getByText("Approve 0 update(s)?")).toBeTruthy();
    expect(dialog.textContent).toContain("2 device(s) not known to be online are left out (Garage Door, Kitchen Plug)");

    // Back online: Approve again.
    m.apply({ type: "node_updated", node: node("a1", "Kitchen Plug", { online: true }) });
    await new Promise((r) => setTimeout(r, 0));
    expect(within(card("a1")).getByTestId("online-state").textContent).toBe("Online");
    expect(within(card("a1")).getByTestId("approve")).toBeTruthy();
    expect(within(dialog).getByText("Approve 1 update(s)?")).toBeTruthy();
  });

  it("says a device is unknown, not online, when its account cannot be reached, and offers Install when online", async () => {
    const m = model();
    m.pending = [pending("a1", "Kitchen Plug")];
    render(Inbox, { model: m });
    const card = screen.getByTestId("pending-card");
    expect(within(card).getByTestId("approve")).toBeTruthy();
    const since = Date.now() - 60_000;
    m.accounts = [{ ...m.accounts[0], freshness: { live: false, last_sweep: since - 60_000, unknown_since: since, checking: null } }];
    m.apply({ type: "node_updated", node: node("a1", "Kitchen Plug", { online: null, known: { how: "unknown", since } }) });
    await new Promise((r) => setTimeout(r, 0));
    expect(within(card).getByTestId("online-state").textContent).toBe("Unknown");
    expect(within(card).getByTestId("presence-detail").textContent).toContain("the cloud cannot be reached");
    expect(within(card).queryByTestId("approve")).toBeNull();
    expect(within(card).getByTestId("install-when-online")).toBeTruthy();
  });

  it("falls back to the offer's online flag for a node not in the node list", () => {
    const m = model();
    m.pending = [pending("z9", "Unknown Node", { node_online: false })];
    render(Inbox, { model: m });
    const card = screen.getByTestId("pending-card");
    expect(within(card).getByTestId("online-state").textContent).toBe("Offline");
    expect(within(card).getByTestId("install-when-online")).toBeTruthy();
  });

  it("shows an update's warning on the card as text, and Approve all leaves that update out", async () => {
    const warning =
      "This image already rolled back on this device (MQTT did not connect within 90 seconds). Approving it again will likely do the same; ask whoever publishes the firmware.";
    const m = model();
    m.pending = [pending("a1", "Kitchen Plug"), pending("b2", "Porch Sensor", { warning })];
    render(Inbox, { model: m });
    const porch = screen.getAllByTestId("pending-card").find((c) => c.dataset.node === "b2")!;
    const note = within(porch).getByTestId("pending-warning");
    expect(note.textContent).toContain(warning);
    expect(note.getAttribute("title")).toBeNull();
    // Still approvable one by one.
    expect(within(porch).getByTestId("approve")).toBeTruthy();
    const plug = screen.getAllByTestId("pending-card").find((c) => c.dataset.node === "a1")!;
    expect(within(plug).queryByTestId("pending-warning")).toBeNull();

    await fireEvent.click(screen.getByTestId("approve-all"));
    const dialog = screen.getByTestId("confirm-all");
    // Carefully leaves it out too.
    expect(within(dialog).getByTestId("careful-summary").textContent).toContain("1 update(s) with a warning are left out (Porch Sensor)");
    await fireEvent.click(within(dialog).getByTestId("choice-all"));
    expect(within(dialog).getByText("Approve 1 update(s)?")).toBeTruthy();
    expect(dialog.textContent).toContain("1 update(s) with a warning are left out (Porch Sensor)");
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

  it("does not call a fleet it has not heard of yet “up to date”", () => {
    const m = model();
    m.nodes = [];
    m.pending = [];
    // An MQTT-only account: devices announce themselves at boot only.
    render(Inbox, { model: m });
    expect(screen.queryByText("Everything is up to date")).toBeNull();
    expect(screen.getByText("No device has reported yet")).toBeTruthy();
    expect(screen.getByTestId("inbox-no-devices").textContent).toMatch(/\(home\).*restart a device/);
  });

  it("says it is asking a cloud account for its devices until the first answer, then that there are none", () => {
    const m = model();
    m.nodes = [];
    m.pending = [];
    const cloud = { ...m.accounts[0], cloud_url: "https://api.rainmaker.espressif.com", user: "a@b" };
    m.accounts = [cloud];
    const { unmount } = render(Inbox, { model: m });
    expect(screen.getByText("Asking your cloud for your devices…")).toBeTruthy();
    unmount();
    m.accounts = [{ ...cloud, freshness: { ...cloud.freshness, last_sweep: Date.now() } }];
    render(Inbox, { model: m });
    expect(screen.getByText("No devices in your account")).toBeTruthy();
    expect(screen.queryByText("Everything is up to date")).toBeNull();
  });

  it("says a command holds the data directory instead of inviting a first account", () => {
    const m = new AppModel();
    m.loaded = true;
    m.status = { version: "0", demo: false, keychain: { state: "available" }, notifications_paused: false, data_dir: "/home/me/.local/share/greenlight", autostart: null, demo_firmware: null, engine_owner: "waiting", demo_available: true, notifications: "granted", mobile: false };
    render(Inbox, { model: m });
    expect(screen.getByTestId("inbox-waiting")).toBeTruthy();
    expect(screen.getByText(/as soon as it is done/).textContent).toContain("/home/me/.local/share/greenlight");
    expect(screen.queryByTestId("try-demo")).toBeNull();
  });

  it("says it is opening the data right after launch, not that there are no devices", () => {
    const m = new AppModel();
    m.loaded = true;
    m.status = { version: "0", demo: false, keychain: { state: "available" }, notifications_paused: false, data_dir: "/home/me/.local/share/greenlight", autostart: null, demo_firmware: null, engine_owner: "opening", demo_available: true, notifications: "granted", mobile: false };
    render(Inbox, { model: m });
    expect(screen.getByTestId("inbox-opening").textContent).toContain("Opening your data");
    expect(screen.getByText(/unlock it to go on/).textContent).toContain("/home/me/.local/share/greenlight");
    expect(screen.queryByText("No devices yet")).toBeNull();
    expect(screen.queryByTestId("try-demo")).toBeNull();
  });

  it("offers the demo only where its simulator is installed", () => {
    const m = new AppModel();
    m.loaded = true;
    m.status = { version: "0", demo: false, keychain: { state: "available" }, notifications_paused: false, data_dir: "/d", autostart: null, demo_firmware: null, engine_owner: "app", demo_available: false, notifications: "granted", mobile: false };
    render(Inbox, { model: m });
    expect(screen.getByText("No devices yet")).toBeTruthy();
    expect(screen.queryByTestId("try-demo")).toBeNull();
    expect(screen.getByText("Add an account")).toBeTruthy();
  });
});
