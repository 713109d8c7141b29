import { describe, expect, it } from "vitest";
import { render, screen, within } from "@testing-library/svelte";
import Activity from "./Activity.svelte";
import { AppModel } from "../lib/app.svelte";
import { isTerminal } from "../lib/format";
import { job, node } from "../fixtures.test-util";

function withJobs(...jobs: ReturnType<typeof job>[]) {
  const m = new AppModel();
  m.loaded = true;
  m.now = jobs[0]?.created_at + 95_000;
  m.nodes = [node("a1", "Kitchen Plug"), node("b2", "Porch Sensor"), node("c3", "Bedroom Fan"), node("d4", "Hall Thermostat")];
  m.jobs = jobs.filter((j) => !isTerminal(j.state));
  m.history = jobs;
  return m;
}

const running = (nodeId: string) => screen.getAllByTestId("job-running").find((c) => c.dataset.node === nodeId)!;

describe("Activity", () => {
  it("shows the requested state in core's words, with an indeterminate bar and elapsed time", () => {
    render(Activity, { model: withJobs(job(1, "a1", { state: "requested" }, { headline: "Requested — sending to the device" })) });
    const card = screen.getByTestId("job-running");
    expect(within(card).getByTestId("job-state").textContent).toBe("Requested — sending to the device");
    expect(card.querySelector(".bar.indeterminate")).toBeTruthy();
    expect(within(card).getByText("1m 35s")).toBeTruthy();
  });

  it("shows a progress bar only when the device gave a percentage, and the device's own words", () => {
    render(Activity, {
      model: withJobs(
        job(1, "a1", { state: "in_progress", attempt: null }, { headline: "Installing", progress_text: "Downloading 40%", percent: 40 }),
        job(2, "b2", { state: "in_progress", attempt: null }, { headline: "Installing", progress_text: "Verifying image" }),
      ),
    });
    const [a, b] = [running("a1"), running("b2")];
    expect(a.querySelector('[role="progressbar"]')!.getAttribute("aria-valuenow")).toBe("40");
    expect(within(a).getByTestId("job-text").textContent).toBe("“Downloading 40%”");
    expect(b.querySelector('[role="progressbar"]')!.hasAttribute("aria-valuenow")).toBe(false);
    expect(b.querySelector(".bar.indeterminate")).toBeTruthy();
    expect(within(b).getByTestId("job-text").textContent).toBe("“Verifying image”");
  });

  it("shows where each job is from its headline: a failed attempt, a restart, a download window", () => {
    const m = withJobs(
      job(
        1,
        "c3",
        { state: "retrying", attempt: { n: 1, of: 3 }, reason: "download failed" },
        { headline: "Attempt 1 of 3 failed: download failed; the device tries again", progress_text: "OTA Attempt 1/3 failed" },
      ),
      job(2, "d4", { state: "verifying" }, { headline: "Restarting — checking the new firmware" }),
      job(
        3,
        "a1",
        { state: "delayed", delay: { why: "download_window", window: { start_minute: 120, end_minute: 270 } } },
        {
          headline: "Outside the download window (02:00–04:30 device time); it starts when the window opens",
          progress_text: "Not within download window.",
        },
      ),
      job(4, "b2", { state: "in_progress", attempt: { n: 2, of: 3 } }, { headline: "Installing (attempt 2 of 3)" }),
    );
    render(Activity, { model: m });
    expect(within(running("c3")).getByTestId("job-state").textContent).toBe(
      "Attempt 1 of 3 failed: download failed; the device tries again",
    );
    expect(within(running("c3")).getByTestId("job-text").textContent).toBe("“OTA Attempt 1/3 failed”");
    expect(within(running("d4")).getByTestId("job-state").textContent).toBe("Restarting — checking the new firmware");
    expect(within(running("a1")).getByTestId("job-state").textContent).toBe(
      "Outside the download window (02:00–04:30 device time); it starts when the window opens",
    );
    // A device that waits for its window shows no progress bar.
    expect(running("a1").querySelector('[role="progressbar"]')).toBeNull();
    expect(within(running("b2")).getByTestId("job-state").textContent).toBe("Installing (attempt 2 of 3)");
    // Retrying and verifying are on their way, not failures: nothing is in "Finished", nothing warns.
    expect(screen.queryByTestId("job-finished")).toBeNull();
    expect(screen.queryByText("Finished recently")).toBeNull();
    expect(screen.queryByRole("alert")).toBeNull();
  });

  it("keeps a retrying job out of “Finished recently” even when history lists it", () => {
    const now = Date.now();
    const retrying = job(
      1,
      "c3",
      { state: "retrying", attempt: { n: 1, of: 3 }, reason: "download failed" },
      { headline: "Attempt 1 of 3 failed: download failed; the device tries again", created_at: now - 60_000, updated_at: now - 1000 },
    );
    const done = job(2, "a1", { state: "success" }, { headline: "Updated", created_at: now - 60_000, finished_at: now - 2000 });
    const m = withJobs(retrying, done);
    m.now = now;
    render(Activity, { model: m });
    expect(screen.getAllByTestId("job-running").map((c) => c.dataset.node)).toEqual(["c3"]);
    expect(screen.getAllByTestId("job-finished").map((c) => c.dataset.node)).toEqual(["a1"]);
  });

  it("adds the time core leaves out: when quiet hours end", () => {
    const until = new Date(2026, 10, 24, 7, 0).getTime();
    render(Activity, {
      model: withJobs(job(1, "a1", { state: "queued", reason: { why: "quiet_hours", until } }, { headline: "Waiting for quiet hours to end" })),
    });
    const text = screen.getByTestId("job-state").textContent!;
    expect(text.startsWith("Waiting for quiet hours to end (")).toBe(true);
    expect(text).toMatch(/07[:.]00/);
    expect(screen.getByTestId("job-running").querySelector('[role="progressbar"]')).toBeNull();
  });

  it("warns about a stuck job and says what to do", () => {
    render(Activity, { model: withJobs(job(1, "a1", { state: "stuck" }, { headline: "No news for a long time — check the device" })) });
    const alert = screen.getByRole("alert");
    expect(alert.textContent).toContain("Check that it is powered and connected");
    expect(screen.getByTestId("job-state").textContent).toBe("No news for a long time — check the device");
  });

  it("shows results with their plain reasons, from the headline", () => {
    const now = Date.now();
    const m = withJobs(
      job(
        1,
        "c3",
        { state: "failed", reason: "download failed: the device could not fetch the image" },
        { headline: "Failed: download failed: the device could not fetch the image", created_at: now - 60_000, finished_at: now - 1000 },
      ),
      job(
        2,
        "d4",
        { state: "rolled_back", reason: "MQTT did not connect within 90 seconds; the device went back to its previous firmware" },
        {
          headline: "Rolled back: MQTT did not connect within 90 seconds; the device went back to its previous firmware",
          created_at: now - 60_000,
          finished_at: now - 2000,
        },
      ),
      job(3, "a1", { state: "success" }, { headline: "Updated", created_at: now - 60_000, finished_at: now - 3000 }),
    );
    m.now = now;
    render(Activity, { model: m });
    const done = screen.getAllByTestId("job-finished");
    expect(done.map((d) => within(d).getByTestId("job-result").textContent)).toEqual([
      "Failed: download failed: the device could not fetch the image",
      "Rolled back: MQTT did not connect within 90 seconds; the device went back to its previous firmware",
      "Updated",
    ]);
    expect(done.map((d) => d.querySelector(".badge")!.textContent)).toEqual(["Not updated", "Not updated", "Updated"]);
    expect(screen.queryByTestId("job-running")).toBeNull();
  });

  it("falls back to the state's name for a job recorded without a headline", () => {
    render(Activity, { model: withJobs(job(1, "a1", { state: "sent" })) });
    expect(screen.getByTestId("job-state").textContent).toBe("Sent");
  });
});
