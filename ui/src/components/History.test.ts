import { describe, expect, it } from "vitest";
import { fireEvent, render, screen } from "@testing-library/svelte";
import { mockIPC } from "@tauri-apps/api/mocks";
import History from "./History.svelte";
import { AppModel } from "../lib/app.svelte";
import { job, node, T0 } from "../fixtures.test-util";

function model() {
  const m = new AppModel();
  m.loaded = true;
  m.nodes = [node("a1", "Kitchen Plug"), node("c3", "Bedroom Fan")];
  m.history = [
    job(1, "a1", { state: "success" }, { finished_at: T0 + 42_000 }),
    job(2, "c3", { state: "failed", reason: "download failed" }, { finished_at: T0 + 9_000, created_at: T0 + 1 }),
    job(3, "a1", { state: "in_progress" }, { created_at: T0 + 2 }),
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

  it("filters by device and by result", async () => {
    render(History, { model: model() });
    await choose(screen.getByTestId("history-result"), "failure");
    expect(screen.getAllByTestId("history-row").map((r) => r.dataset.node)).toEqual(["c3"]);
    await choose(screen.getByTestId("history-result"), "");
    await choose(screen.getByTestId("history-device"), "a1");
    expect(screen.getAllByTestId("history-row").map((r) => r.dataset.state)).toEqual(["in_progress", "success"]);
    await choose(screen.getByTestId("history-result"), "failure");
    expect(screen.getByText("Nothing matches")).toBeTruthy();
  });

  it("exports CSV through the app and says where it went", async () => {
    const calls: Array<[string, unknown]> = [];
    mockIPC((cmd, args) => {
      calls.push([cmd, args]);
      return "/home/ana/Downloads/greenlight-history-1.csv";
    });
    const m = model();
    render(History, { model: m });
    await fireEvent.click(screen.getByText("Export CSV"));
    await new Promise((r) => setTimeout(r, 0));
    expect(calls[0]).toEqual(["export_history_csv", { query: { node_id: null, limit: null } }]);
    expect(m.notices.at(-1)?.text).toBe("History saved to /home/ana/Downloads/greenlight-history-1.csv");
  });
});
