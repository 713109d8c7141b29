import { describe, expect, it } from "vitest";
import { render, screen, within } from "@testing-library/svelte";
import Activity from "./Activity.svelte";
import { AppModel } from "../lib/app.svelte";
import { job, node } from "../fixtures.test-util";

function withJobs(...jobs: ReturnType<typeof job>[]) {
  const m = new AppModel();
  m.loaded = true;
  m.now = jobs[0]?.created_at + 95_000;
  m.nodes = [node("a1", "Kitchen Plug"), node("b2", "Porch Sensor"), node("c3", "Bedroom Fan"), node("d4", "Hall Thermostat")];
  m.jobs = jobs.filter((j) => !["success", "failed", "rejected", "rolled_back", "cancelled"].includes(j.state.state));
  m.history = jobs;
  return m;
}

describe("Activity", () => {
  it("shows the requested state distinctly, with an indeterminate bar and elapsed time", () => {
    render(Activity, { model: withJobs(job(1, "a1", { state: "requested" })) });
    const card = screen.getByTestId("job-running");
    expect(within(card).getByTestId("job-state").textContent).toBe("Requested — waiting for the device");
    expect(card.querySelector(".bar.indeterminate")).toBeTruthy();
    expect(within(card).getByText("1m 35s")).toBeTruthy();
  });

  it("shows a progress bar only when the device gave a percentage, and the device's own words", () => {
    render(Activity, {
      model: withJobs(
        job(1, "a1", { state: "in_progress" }, { progress_text: "Downloading 40%", percent: 40 }),
        job(2, "b2", { state: "in_progress" }, { progress_text: "Verifying image" }),
      ),
    });
    const [a, b] = ["a1", "b2"].map((n) => screen.getAllByTestId("job-running").find((c) => c.dataset.node === n)!);
    expect(a.querySelector('[role="progressbar"]')!.getAttribute("aria-valuenow")).toBe("40");
    expect(within(a).getByTestId("job-text").textContent).toBe("“Downloading 40%”");
    expect(b.querySelector('[role="progressbar"]')!.hasAttribute("aria-valuenow")).toBe(false);
    expect(b.querySelector(".bar.indeterminate")).toBeTruthy();
    expect(within(b).getByTestId("job-text").textContent).toBe("“Verifying image”");
  });

  it("warns about a stuck job and says what to do", () => {
    render(Activity, { model: withJobs(job(1, "a1", { state: "stuck" })) });
    const alert = screen.getByRole("alert");
    expect(alert.textContent).toContain("Check that it is powered and connected");
  });

  it("shows results with their plain reasons", () => {
    const now = Date.now();
    const m = withJobs(
      job(1, "c3", { state: "failed", reason: "download failed: the device could not fetch the image" }, { created_at: now - 60_000, finished_at: now - 1000 }),
      job(2, "d4", { state: "rolled_back" }, { created_at: now - 60_000, finished_at: now - 2000 }),
      job(3, "a1", { state: "success" }, { created_at: now - 60_000, finished_at: now - 3000 }),
    );
    m.now = now;
    render(Activity, { model: m });
    const done = screen.getAllByTestId("job-finished");
    expect(done.map((d) => within(d).getByTestId("job-result").textContent)).toEqual([
      "Failed: download failed: the device could not fetch the image",
      "Rolled back: the device went back to its previous firmware",
      "Updated",
    ]);
    expect(screen.queryByTestId("job-running")).toBeNull();
  });
});
