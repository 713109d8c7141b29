import { describe, expect, it } from "vitest";
import { fireEvent, render, screen, within } from "@testing-library/svelte";
import { mockIPC } from "@tauri-apps/api/mocks";
import Activity from "./Activity.svelte";
import { AppModel } from "../lib/app.svelte";
import { isTerminal } from "../lib/format";
import { job, member, node, rollout, T0 } from "../fixtures.test-util";

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

describe("Activity: a careful update", () => {
  const NOW = T0 + 600_000;

  function withRollout(r: ReturnType<typeof rollout>) {
    const m = withJobs(job(102, "b2", { state: "in_progress", attempt: null }, { headline: "Installing", created_at: T0 + 400_000 }));
    m.nodes = [
      node("a1", "Kitchen Plug"),
      node("b2", "Porch Sensor"),
      node("c3", "Garage Door", { online: false }),
      node("d4", "Hall Thermostat"),
      node("e5", "Bedroom Fan"),
      node("f6", "Desk Lamp"),
    ];
    m.now = NOW;
    m.rollouts = [r];
    return m;
  }

  const running = () =>
    rollout(
      7,
      { state: "running" },
      [
        member("a1", "Kitchen Plug", { state: "updated" }, 0),
        member("e5", "Bedroom Fan", { state: "soaking", since: NOW - 55_000, until: NOW + 245_000 }, 1),
        member("b2", "Porch Sensor", { state: "running" }, 1, { job_id: 102 }),
        member("c3", "Garage Door", { state: "waiting" }, null),
        member("d4", "Hall Thermostat", { state: "waiting" }, null),
        member("f6", "Desk Lamp", { state: "skipped", reason: "already runs 1.1.0" }, null),
      ],
      { headline: "Batch 1: 1 updating, 1 being watched; 1 updated, 2 waiting", updated_at: NOW - 1000 },
    );

  const stopped = (failed = true) =>
    rollout(
      8,
      { state: "stopped", account: "home", node_id: "d4", reason: "Hall Thermostat rolled back: MQTT did not connect within 90 seconds" },
      [
        member("a1", "Kitchen Plug", { state: "updated" }, 0),
        member("d4", "Hall Thermostat", failed ? { state: "failed", reason: "Hall Thermostat rolled back: MQTT did not connect within 90 seconds" } : { state: "waiting" }, failed ? 1 : null),
        member("c3", "Garage Door", { state: "waiting" }, null),
      ],
      { headline: "Stopped: Hall Thermostat rolled back: MQTT did not connect within 90 seconds", updated_at: NOW - 1000 },
    );

  const stage = (key: string) => screen.getAllByTestId("rollout-stage").find((s) => s.dataset.stage === key)!;
  const memberRow = (node: string) => screen.getAllByTestId("rollout-member").find((r) => r.dataset.node === node)!;

  it("shows the running rollout at the top, as stages, each device's state in words, with Cancel", () => {
    render(Activity, { model: withRollout(running()) });
    const card = screen.getByTestId("rollout");
    // Above the jobs.
    expect(card.compareDocumentPosition(screen.getByTestId("job-running")) & Node.DOCUMENT_POSITION_FOLLOWING).toBeTruthy();
    expect(within(card).getByTestId("rollout-headline").textContent).toBe("Batch 1: 1 updating, 1 being watched; 1 updated, 2 waiting");
    expect(within(card).getByTestId("rollout-state").textContent).toBe("Running");
    expect(within(card).getAllByTestId("stage-title").map((t) => t.textContent)).toEqual(["First device", "Batch 1", "Waiting", "Left out"]);
    expect(within(stage("first")).getByTestId("stage-status").textContent).toBe("Done");
    expect(within(stage("batch-1")).getByTestId("stage-status").textContent).toBe("Updating");
    const words = (n: string) => within(memberRow(n)).getByTestId("member-state").textContent;
    expect(words("a1")).toBe("Updated");
    expect(words("e5")).toBe("Updated — being watched to stay online");
    // The job's own words while it updates.
    expect(words("b2")).toBe("Updating — Installing");
    expect(words("c3")).toBe("Offline — waits until online");
    expect(words("d4")).toBe("Waiting for its turn");
    expect(words("f6")).toBe("Already runs 1.1.0");
    expect(within(stage("left-out")).getByText("Desk Lamp")).toBeTruthy();
    // Running: only Cancel.
    expect(within(card).getByTestId("rollout-cancel")).toBeTruthy();
    expect(within(card).queryByTestId("rollout-resume")).toBeNull();
    expect(within(card).queryByTestId("rollout-retry")).toBeNull();
    expect(within(card).queryByTestId("rollout-stopped")).toBeNull();
    expect(screen.queryByTestId("activity-empty")).toBeNull();
  });

  it("counts a watched device's time left down every second, from its end time", async () => {
    const m = withRollout(running());
    render(Activity, { model: m });
    const left = () => within(memberRow("e5")).getByTestId("soak-left");
    expect(left().textContent).toBe("4:05 left");
    expect(left().getAttribute("role")).toBe("timer");
    m.now = NOW + 5_000;
    await new Promise((r) => setTimeout(r, 0));
    expect(left().textContent).toBe("4:00 left");
    m.now = NOW + 300_000;
    await new Promise((r) => setTimeout(r, 0));
    expect(left().textContent).toBe("0:00 left");
    // No countdown for the others.
    expect(within(memberRow("a1")).queryByTestId("soak-left")).toBeNull();
  });

  it("a stopped rollout shows its reason first and offers Resume, Retry failed and Cancel, each sent as it is", async () => {
    const calls: Array<[string, unknown]> = [];
    mockIPC((cmd, args) => {
      calls.push([cmd, args]);
      if (cmd === "rollout_action") {
        const action = (args as { action: string }).action;
        const r = stopped();
        return {
          ...r,
          updated_at: NOW + calls.length,
          state: action === "cancel" ? { state: "cancelled" } : { state: "running" },
          headline: action === "cancel" ? "Cancelled: 1 updated, 1 failed, 1 left out" : "1 updated; 1 waiting",
        };
      }
      return null;
    });
    const m = withRollout(stopped());
    render(Activity, { model: m });
    const card = screen.getByTestId("rollout");
    expect(card.dataset.state).toBe("stopped");
    const alert = within(card).getByRole("alert");
    // The headline carries the reason: said once, in the alert.
    expect(within(alert).getByTestId("rollout-headline").textContent).toBe("Stopped: Hall Thermostat rolled back: MQTT did not connect within 90 seconds");
    expect(within(card).getAllByTestId("rollout-headline")).toHaveLength(1);
    expect(within(alert).queryByTestId("rollout-reason")).toBeNull();
    expect(alert.textContent).toContain("Retry failed approves it again first");
    expect(within(memberRow("d4")).getByTestId("member-state").textContent).toBe("Hall Thermostat rolled back: MQTT did not connect within 90 seconds");
    expect(within(stage("batch-1")).getByTestId("stage-status").textContent).toBe("Failed");

    for (const [id, action] of [
      ["rollout-resume", "resume"],
      ["rollout-retry", "retry_failed"],
      ["rollout-cancel", "cancel"],
    ]) {
      // Each answer is a new state; the buttons are asked for again.
      m.rollouts = [stopped()];
      await new Promise((r) => setTimeout(r, 0));
      await fireEvent.click(within(screen.getByTestId("rollout")).getByTestId(id));
      await new Promise((r) => setTimeout(r, 0));
      expect(calls.at(-1)).toEqual(["rollout_action", { id: 8, action }]);
    }
    expect(calls).toHaveLength(3);
    // The last answer (cancelled) is shown: no buttons, its outcome.
    expect(screen.getByTestId("rollout").dataset.state).toBe("cancelled");
    expect(screen.getByTestId("rollout-headline").textContent).toBe("Cancelled: 1 updated, 1 failed, 1 left out");
    expect(screen.queryByTestId("rollout-cancel")).toBeNull();
  });

  it("offers no Retry failed when no device failed, and gives the reason where the headline does not", () => {
    const m = withRollout({ ...stopped(false), headline: "Stopped" });
    render(Activity, { model: m });
    expect(screen.getByTestId("rollout-reason").textContent).toBe(
      "Stopped at Hall Thermostat: Hall Thermostat rolled back: MQTT did not connect within 90 seconds",
    );
    expect(screen.getByTestId("rollout-resume")).toBeTruthy();
    expect(screen.getByTestId("rollout-cancel")).toBeTruthy();
    expect(screen.queryByTestId("rollout-retry")).toBeNull();
    expect(screen.getByRole("alert").textContent).not.toContain("Retry failed");
  });

  it("shows a rollout that ended in the last hour, without buttons, and not an older one", () => {
    const done = rollout(9, { state: "done" }, [member("a1", "Kitchen Plug", { state: "updated" }, 0)], {
      headline: "Done: 1 updated",
      updated_at: NOW - 60_000,
    });
    const m = withRollout(done);
    const { unmount } = render(Activity, { model: m });
    expect(screen.getByTestId("rollout-state").textContent).toBe("Finished");
    expect(screen.getByTestId("rollout-headline").textContent).toBe("Done: 1 updated");
    expect(screen.queryByRole("button", { name: /Cancel|Resume|Retry/ })).toBeNull();
    unmount();
    m.rollouts = [{ ...done, updated_at: NOW - 2 * 3_600_000 }];
    render(Activity, { model: m });
    expect(screen.queryByTestId("rollout")).toBeNull();
  });
});
