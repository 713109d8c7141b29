import { describe, expect, it } from "vitest";
import { countdown, memberWords, soakLeft, soakWords, stagesOf, stageStatus, windowOf, windowWords } from "./rollout";
import { member, rollout, T0 } from "../fixtures.test-util";

describe("stagesOf", () => {
  it("groups the members as the first device, the batches in order, then waiting, then left out", () => {
    const r = rollout(1, { state: "running" }, [
      member("a1", "Kitchen Plug", { state: "updated" }, 0),
      member("c3", "Garage Door", { state: "waiting" }, null),
      member("b2", "Porch Sensor", { state: "running" }, 2),
      member("e5", "Fan", { state: "updated" }, 1),
      member("d4", "Lamp", { state: "skipped", reason: "already runs 1.1.0" }, null),
      member("f6", "Heater", { state: "soaking", since: T0, until: T0 + 60_000 }, 1),
    ]);
    const stages = stagesOf(r);
    expect(stages.map((s) => [s.title, s.members.map((m) => m.node_id)])).toEqual([
      ["First device", ["a1"]],
      ["Batch 1", ["e5", "f6"]],
      ["Batch 2", ["b2"]],
      ["Waiting", ["c3"]],
      ["Left out", ["d4"]],
    ]);
    expect(stages.map((s) => stageStatus(s).text)).toEqual(["Done", "Being watched", "Updating", "", ""]);
  });

  it("says a stage with a failure failed, whatever else it holds", () => {
    const [s] = stagesOf(
      rollout(1, { state: "running" }, [
        member("a1", "A", { state: "updated" }, 1),
        member("b2", "B", { state: "failed", reason: "B rolled back" }, 1),
      ]),
    );
    expect(stageStatus(s)).toEqual({ text: "Failed", tone: "bad" });
  });
});

describe("countdown", () => {
  it("counts minutes and seconds, then hours, rounding up and never below zero", () => {
    expect(countdown(245_000)).toBe("4:05");
    expect(countdown(244_001)).toBe("4:05");
    expect(countdown(59_000)).toBe("0:59");
    expect(countdown(3_723_000)).toBe("1:02:03");
    expect(countdown(-5_000)).toBe("0:00");
  });

  it("is shown for a watched device from its end time, and not for one offline or done", () => {
    expect(soakLeft({ state: "soaking", since: T0, until: T0 + 90_000 }, T0 + 30_000, 90)).toBe("1:00 left");
    // The clock ticks once a second: a soak that began since the last tick shows its full length, not more.
    expect(soakLeft({ state: "soaking", since: T0, until: T0 + 30_000 }, T0 - 700, 30)).toBe("0:30 left");
    expect(soakLeft({ state: "soaking", since: null, until: null }, T0, 30)).toBeNull();
    expect(soakLeft({ state: "updated" }, T0, 30)).toBeNull();
  });
});

describe("memberWords", () => {
  it("says where a device is, offline ones waiting until online, with the engine's reasons", () => {
    expect(memberWords({ state: "waiting" }, true)).toBe("Waiting for its turn");
    expect(memberWords({ state: "waiting" }, false)).toBe("Offline — waits until online");
    expect(memberWords({ state: "running" }, true, "Installing 40%")).toBe("Updating — Installing 40%");
    expect(memberWords({ state: "soaking", since: T0, until: T0 + 1 }, true)).toBe("Updated — being watched to stay online");
    expect(memberWords({ state: "soaking", since: null, until: null }, false)).toContain("starts again when it is back");
    expect(memberWords({ state: "failed", reason: "Hall Thermostat rolled back: x" }, true)).toBe("Hall Thermostat rolled back: x");
    expect(memberWords({ state: "skipped", reason: "already runs 1.1.0" }, true)).toBe("Already runs 1.1.0");
  });
});

describe("the plan's words and window", () => {
  it("reads two time fields as a window in this computer's zone, and refuses one that never opens", () => {
    expect(windowOf("02:00", "06:30", 60)).toEqual({ start_minute: 120, end_minute: 390, utc_offset_minutes: 60 });
    expect(windowOf("23:00", "1:00", -300)).toEqual({ start_minute: 1380, end_minute: 60, utc_offset_minutes: -300 });
    expect(windowOf("05:00", "05:00", 0)).toMatch(/closes when it opens/);
    expect(windowOf("", "05:00", 0)).toMatch(/two times of day/);
    expect(windowOf("24:00", "05:00", 0)).toMatch(/two times of day/);
    expect(windowWords({ start_minute: 120, end_minute: 390, utc_offset_minutes: 0 })).toBe("02:00–06:30");
  });

  it("says soak times the way people do", () => {
    expect(soakWords(0)).toBe("a moment");
    expect(soakWords(30)).toBe("30 s");
    expect(soakWords(300)).toBe("5 min");
    expect(soakWords(5400)).toBe("1 h 30 min");
    expect(soakWords(7200)).toBe("2 h");
  });
});
