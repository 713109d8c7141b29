// Staged approvals ("Approve all, carefully") as the views show them: the
// engine writes the rollout's one-line headline and the reasons; these turn
// its members into stages and the soak's end time into a countdown (the
// engine sends no countdown text: it would be stale by the time it is read).
import type { DailyWindow, MemberState, Rollout, RolloutMember } from "../bindings";

/** The soak time the engine uses when none is picked (core's DEFAULT_SOAK_SECS). */
export const DEFAULT_SOAK_MINUTES = 5;
/** How many go at once after the first (core's DEFAULT_BATCH). */
export const DEFAULT_BATCH = 2;
/** The engine's limits (core's MAX_BATCH and MAX_SOAK_SECS), checked before asking it. */
export const MAX_BATCH = 100;
export const MAX_SOAK_MINUTES = 7 * 24 * 60;

/** Running or stopped: the user may still act on it. */
export function isActive(r: Rollout): boolean {
  return r.state.state === "running" || r.state.state === "stopped";
}

export type StageKind = "first" | "batch" | "waiting" | "left_out";

export type Stage = {
  /** "first", "batch-1"…, "waiting", "left-out": stable, for tests and keys. */
  key: string;
  kind: StageKind;
  title: string;
  members: RolloutMember[];
};

/**
 * The rollout as the stages a user thinks in: the first device, the
 * batches in order, then the devices not approved yet, then the ones left
 * out. Members keep the engine's order inside a stage.
 */
export function stagesOf(r: Rollout): Stage[] {
  const byStage = new Map<number, RolloutMember[]>();
  const waiting: RolloutMember[] = [];
  const left: RolloutMember[] = [];
  for (const m of r.members) {
    if (m.stage != null) {
      const list = byStage.get(m.stage) ?? [];
      list.push(m);
      byStage.set(m.stage, list);
    } else if (m.state.state === "skipped") {
      left.push(m);
    } else {
      waiting.push(m);
    }
  }
  const stages: Stage[] = [...byStage.entries()]
    .sort(([a], [b]) => a - b)
    .map(([n, members]) =>
      n === 0
        ? { key: "first", kind: "first", title: "First device", members }
        : { key: `batch-${n}`, kind: "batch", title: `Batch ${n}`, members },
    );
  if (waiting.length) stages.push({ key: "waiting", kind: "waiting", title: "Waiting", members: waiting });
  if (left.length) stages.push({ key: "left-out", kind: "left_out", title: "Left out", members: left });
  return stages;
}

/** Where a stage is, in one word, for its badge ("" for the waiting and left-out lists). */
export function stageStatus(s: Stage): { text: string; tone: "good" | "bad" | "warn" | "" } {
  if (s.kind === "waiting" || s.kind === "left_out") return { text: "", tone: "" };
  const states = s.members.map((m) => m.state.state);
  if (states.includes("failed")) return { text: "Failed", tone: "bad" };
  if (states.some((x) => x === "releasing" || x === "running")) return { text: "Updating", tone: "warn" };
  if (states.includes("soaking")) return { text: "Being watched", tone: "warn" };
  if (states.every((x) => x === "updated" || x === "skipped")) return { text: "Done", tone: "good" };
  return { text: "", tone: "" };
}

/** Time left, as a clock counts it: "4:05", "1:02:03"; never negative. */
export function countdown(ms: number): string {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/**
 * A watched device's time left ("4:05 left"), counted down from the soak's
 * end; `null` when not counting. `now` ticks once a second, so it can be up
 * to a second old: the time left is never shown longer than the soak itself.
 */
export function soakLeft(s: MemberState, now: number, soakSecs: number): string | null {
  if (s.state !== "soaking" || s.until == null) return null;
  return `${countdown(Math.min(s.until - now, soakSecs * 1000))} left`;
}

/** A soak time in words: "30 s", "5 min", "1 h 30 min" (as the engine's headline says it). */
export function soakWords(secs: number): string {
  if (secs <= 0) return "a moment";
  if (secs < 120) return `${secs} s`;
  const min = Math.round(secs / 60);
  if (min < 60) return `${min} min`;
  const h = Math.floor(min / 60);
  return min % 60 ? `${h} h ${min % 60} min` : `${h} h`;
}

/**
 * A member's state in words. `online`: whether its device is online now
 * (a device not approved yet waits until it is); `job`: its job's own
 * words while it updates. The soak's time left is `soakLeft`'s.
 */
export function memberWords(s: MemberState, online: boolean, job?: string): string {
  switch (s.state) {
    case "waiting":
      return online ? "Waiting for its turn" : "Offline — waits until online";
    case "releasing":
      return "Being approved";
    case "running":
      return job ? `Updating — ${job}` : "Updating";
    case "soaking":
      return s.until == null
        ? "Updated, now offline — its watch starts again when it is back"
        : "Updated — being watched to stay online";
    case "updated":
      return "Updated";
    case "failed":
    case "skipped":
      // The engine's reasons are clauses ("already runs 1.1.0"); here each stands alone.
      return s.reason.charAt(0).toUpperCase() + s.reason.slice(1);
  }
}

/** A daily window as `HH:MM–HH:MM` (core's `DailyWindow::describe`). */
export function windowWords(w: DailyWindow): string {
  const hm = (m: number) => `${String(Math.floor(m / 60)).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`;
  return `${hm(w.start_minute)}–${hm(w.end_minute)}`;
}

/** `HH:MM` (what a time field gives) as minutes after midnight; `null` if it is not a time of day. */
export function minutesOf(hhmm: string): number | null {
  const m = /^(\d{1,2}):(\d{2})$/.exec(hhmm.trim());
  if (!m) return null;
  const h = Number(m[1]);
  const min = Number(m[2]);
  return h < 24 && min < 60 ? h * 60 + min : null;
}

/**
 * The daily window from two time fields, in this computer's time zone
 * (`utcOffset`: minutes east of UTC, `-new Date().getTimezoneOffset()`),
 * or a sentence saying what is wrong with it.
 */
export function windowOf(start: string, end: string, utcOffset: number): DailyWindow | string {
  const a = minutesOf(start);
  const b = minutesOf(end);
  if (a == null || b == null) return "Give the window as two times of day, such as 02:00 and 06:00.";
  if (a === b) return "The window closes when it opens: give two different times, or leave the window off.";
  return { start_minute: a, end_minute: b, utc_offset_minutes: utcOffset };
}
