import { describe, expect, it } from "vitest";
import { fireEvent, render, screen } from "@testing-library/svelte";
import History from "./History.svelte";
import { AppModel } from "../lib/app.svelte";
import { job, node, T0 } from "../fixtures.test-util";

function model() {
  const m = new AppModel();
  m.loaded = true;
  m.nodes = [node("a1", "Kitchen Plug"), node("c3", "Bedroom Fan")];
  m.history = [
    job(1, "a1", { state: "success" }, { headline: "Updated", finished_at: T0 + 42_000 }),
    job(2, "c3", { state: "failed", reason: "download failed" }, { headline: "Failed: download failed", finished_at: T0 + 9_000, created_at: T0 + 1 }),
    job(3, "a1", { state: "in_progress", attempt: null }, { headline: "Installing", created_at: T0 + 2 }),
  ];
  return m;
}

// Picks an option the way a user does (Svelte reads the selected option).
async function choose(select: HTMLElement, value: string) {
  (select as HTMLSelectElement).value = value;
  await fireEvent.change(select);
}

describe("History", () => {
  it("lists every approval with device, versions, result, duration and who approved", () => {
    render(History, { model: model() });
    const rows = screen.getAllByTestId("history-row");
    expect(rows.map((r) => r.dataset.state)).toEqual(["in_progress", "failed", "success"]);
    const ok = rows[2];
    expect(ok.textContent).toContain("Kitchen Plug");
    expect(ok.textContent).toContain("1.0.0 → 1.1.0");
    expect(ok.textContent).toContain("Updated");
    expect(ok.textContent).toContain("42s");
    expect(ok.textContent).toContain("ana");
    expect(rows[1].textContent).toContain("Failed: download failed");
  });

  it("gives a rollback's reason and counts retrying and verifying as still running", async () => {
    const m = model();
    m.nodes = [...m.nodes, node("d4", "Hall Thermostat"), node("e5", "Porch Sensor")];
    m.history = [
      ...m.history,
      job(
        4,
        "d4",
        { state: "rolled_back", reason: "MQTT did not connect within 90 seconds; the device went back to its previous firmware" },
        {
          headline: "Rolled back: MQTT did not connect within 90 seconds; the device went back to its previous firmware",
          created_at: T0 + 3,
          finished_at: T0 + 120_000,
        },
      ),
      job(5, "e5", { state: "retrying", attempt: { n: 1, of: 3 }, reason: "download failed" }, {
        headline: "Attempt 1 of 3 failed: download failed; the device tries again",
        created_at: T0 + 4,
      }),
      job(6, "e5", { state: "verifying" }, { headline: "Restarting — checking the new firmware", created_at: T0 + 5 }),
    ];
    render(History, { model: m });
    const row = (n: string) => screen.getAllByTestId("history-row").find((r) => r.dataset.node === n)!;
    expect(row("d4").textContent).toContain(
      "Rolled back: MQTT did not connect within 90 seconds; the device went back to its previous firmware",
    );
    expect(row("d4").querySelector(".badge.bad")).toBeTruthy();
    await choose(screen.getByTestId("history-result"), "running");
    expect(screen.getAllByTestId("history-row").map((r) => r.dataset.state)).toEqual(["verifying", "retrying", "in_progress"]);
    expect(screen.getAllByTestId("history-row")[1].textContent).toContain("Attempt 1 of 3 failed: download failed; the device tries again");
  });

  it("filters by device and by result", async () => {
    render(History, { model: model() });
    await choose(screen.getByTestId("history-result"), "failure");
    expect(screen.getAllByTestId("history-row").map((r) => r.dataset.node)).toEqual(["c3"]);
    await choose(screen.getByTestId("history-result"), "");
    await choose(screen.getByTestId("history-device"), "home\u0000a1");
    expect(screen.getAllByTestId("history-row").map((r) => r.dataset.state)).toEqual(["in_progress", "success"]);
    await choose(screen.getByTestId("history-result"), "failure");
    expect(screen.getByText("Nothing matches")).toBeTruthy();
  });

  it("names the account of each row when there is more than one, and only then", () => {
    const one = model();
    const { unmount } = render(History, { model: one });
    expect(screen.queryAllByTestId("history-account")).toHaveLength(0);
    unmount();
    const two = model();
    two.history = [
      job(1, "a1", { state: "success" }, { headline: "Updated", account: "home" }),
      job(2, "a1", { state: "success" }, { headline: "Updated", account: "cabin", created_at: T0 + 5 }),
    ];
    render(History, { model: two });
    expect(screen.getAllByTestId("history-account").map((e) => e.textContent?.trim())).toEqual(["· cabin", "· home"]);
  });
});
