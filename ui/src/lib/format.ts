// Small pure helpers that turn engine values into words. Kept apart from the
// components so they are tested on their own.
import type { Job, JobState, PendingUpdate, Node, ApprovalOutcome, Known, Freshness, AccountView } from "../bindings";

export function deviceName(n: { node_id: string; name?: string | null; node_name?: string | null }): string {
  const name = ("name" in n ? n.name : null) ?? ("node_name" in n ? n.node_name : null);
  return name && name.trim() !== "" ? name : n.node_id;
}

export function bytes(n: number | null | undefined): string {
  if (n == null) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  return `${h}h ${m % 60}m`;
}

export function when(ms: number | null | undefined): string {
  if (ms == null) return "";
  return new Date(ms).toLocaleString(undefined, {
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  });
}

const clock = (ms: number) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

/** "10:42" today, "Nov 29, 10:42" on another day. */
export function at(ms: number, now: number = Date.now()): string {
  return new Date(ms).toDateString() === new Date(now).toDateString() ? clock(ms) : when(ms);
}

/** Whether a device is online, and how Greenlight knows it. */
export type Presence = {
  state: "online" | "offline" | "unknown";
  /** "Online", "Offline", "Unknown", "Was online" (remembered from before a restart). */
  label: string;
  /** "live", "as of 10:42", "since 10:40 — the cloud cannot be reached", with the last time seen online when it is not now. */
  detail: string;
};

/**
 * The views never claim more than they know: live over MQTT, as of the last
 * sweep, or unknown since the sources went quiet (`fresh` is the account's).
 */
export function presence(
  online: boolean | null,
  knownOrOld: Known | undefined,
  lastSeen: number | null | undefined,
  fresh: Freshness | undefined,
  now: number = Date.now(),
): Presence {
  // Records from before Greenlight kept freshness carry none: not known.
  const known: Known = knownOrOld ?? { how: "unknown", since: 0 };
  const seen = lastSeen != null && online !== true ? `last seen online ${at(lastSeen, now)}` : "";
  const join = (...parts: string[]) => parts.filter((x) => x !== "").join(" · ");
  if (known.how === "remembered") {
    // Last heard before Greenlight restarted: shown, but vouched for by nobody.
    const label = known.online ? "Was online" : "Was offline";
    return { state: "unknown", label, detail: `at ${at(known.at, now)}, before a restart — not confirmed yet` };
  }
  if (online == null || known.how === "unknown") {
    let why: string;
    if (fresh && fresh.unknown_since == null) {
      // The account answers; this device has not said anything yet.
      why = "not reported yet";
    } else if (fresh && fresh.last_sweep == null && !fresh.live) {
      why = "checking…";
    } else {
      const since = fresh?.unknown_since ?? (known.how === "unknown" ? known.since : now);
      why = `since ${at(since, now)} — the cloud cannot be reached`;
    }
    return { state: "unknown", label: "Unknown", detail: join(why, seen) };
  }
  const label = online ? "Online" : "Offline";
  const state = online ? "online" : "offline";
  // Live needs saying only for "online"; an offline device's last time online says more.
  if (known.how === "live") return { state, label, detail: online ? "live" : seen };
  const asOf = Math.max(known.at, fresh?.last_sweep ?? 0);
  return { state, label, detail: join(`as of ${at(asOf, now)}`, seen) };
}

/** How fresh an account's device states are, in a few words. */
export function freshnessWords(f: Freshness | undefined, now: number = Date.now()): string {
  if (!f) return "";
  const parts: string[] = [];
  if (f.unknown_since != null) parts.push(`devices unknown since ${at(f.unknown_since, now)}`);
  else if (f.live) parts.push("live");
  else if (f.last_sweep != null) parts.push(`as of ${at(f.last_sweep, now)}`);
  if (f.checking) parts.push(`checking ${f.checking.total} device${f.checking.total === 1 ? "" : "s"} for updates… (${f.checking.done} done)`);
  return parts.join(" · ");
}

/**
 * A bare state in a few words, only for a job that carries no headline (one
 * recorded before core wrote headlines). Core's table (crates/core/src/words.rs)
 * is the one source of the words; this does not repeat it.
 */
export function stateWords(s: JobState): string {
  const name = s.state.replace(/_/g, " ");
  const words = name.charAt(0).toUpperCase() + name.slice(1);
  const reason = "reason" in s && typeof s.reason === "string" && s.reason !== "" ? s.reason : "";
  return reason ? `${words}: ${reason}` : words;
}

/**
 * Where a job is, in core's words (its `headline`, the same line the CLI
 * prints), plus the times core leaves to the views: when quiet hours end, when
 * a scheduled install starts.
 */
export function jobWords(j: Job): string {
  const base = j.headline && j.headline.trim() !== "" ? j.headline : stateWords(j.state);
  const s = j.state;
  if (s.state === "queued") {
    if (s.reason.why === "quiet_hours") return `${base} (${clock(s.reason.until)})`;
    if (s.reason.why === "scheduled") return `${base} for ${clock(s.reason.at)}`;
    if (s.reason.why === "not_taken" && s.reason.offline) return `${base} — offline since ${clock(s.reason.since)}`;
  }
  return base;
}

export type Outcome = "success" | "failure" | "running";

/**
 * Success, failure (a bad end, or stuck) or still running. Retrying,
 * verifying and delayed are running: the device is still at it.
 */
export function outcomeOf(j: Job): Outcome {
  switch (j.state.state) {
    case "success":
      return "success";
    case "failed":
    case "rejected":
    case "rolled_back":
    case "cancelled":
    case "stuck":
      return "failure";
    default:
      return "running";
  }
}

/** No further change is expected (core's `JobState::is_terminal`). */
export function isTerminal(s: JobState): boolean {
  switch (s.state) {
    case "success":
    case "failed":
    case "rejected":
    case "rolled_back":
    case "cancelled":
      return true;
    default:
      return false;
  }
}

export function kindLabel(p: PendingUpdate): string {
  return p.kind === "node_side" ? "Device asks" : "Cloud job";
}

export function modelOf(nodes: Node[], p: { account: string; node_id: string }): string | null {
  return nodes.find((n) => n.account === p.account && n.node_id === p.node_id)?.model ?? null;
}

/** One line about a batch of approval outcomes, e.g. after Approve all. */
export function summarize(outcomes: ApprovalOutcome[], name: (account: string, id: string) => string): string {
  const started: string[] = [];
  const waiting: string[] = [];
  const left: string[] = [];
  for (const o of outcomes) {
    const r = o.result;
    const n = name(o.account, o.node_id);
    switch (r.result) {
      case "sent":
        started.push(n);
        break;
      case "queued":
        // Approved: it waits (for the device, quiet hours or its time), it
        // is not left out.
        waiting.push(`${n} (${jobWords(r.job).replace(/^Approved — /, "")})`);
        break;
      case "not_confirmed":
        left.push(`${n} (not confirmed)`);
        break;
      case "up_to_date":
        left.push(`${n} (already up to date)`);
        break;
      case "offline":
        left.push(`${n} (not known to be online — use Install when online)`);
        break;
      case "skipped":
      case "refused":
      case "failed":
        left.push(`${n} (${r.reason})`);
        break;
    }
  }
  const parts: string[] = [];
  if (started.length) parts.push(`Started ${started.length}: ${started.join(", ")}.`);
  if (waiting.length) parts.push(`Approved ${waiting.length}, waiting: ${waiting.join("; ")}.`);
  if (left.length) parts.push(`Left out ${left.length}: ${left.join("; ")}.`);
  return parts.join(" ") || "Nothing to approve.";
}

/**
 * What to say when accounts exist but no device is known yet: the Inbox
 * must not call that "up to date". Devices on a broker announce themselves
 * once, at boot, not retained (docs/rainmaker.md), so an MQTT-only account
 * added beside running devices hears of each only at its next report.
 */
export function noDevicesWords(accounts: AccountView[]): { title: string; text: string } {
  const brokerOnly = accounts.filter((a) => a.cloud_url == null);
  const unswept = accounts.filter((a) => a.cloud_url != null && a.freshness.last_sweep == null);
  if (unswept.length > 0) {
    return {
      title: "Asking your cloud for your devices…",
      text: "They show here as soon as the cloud answers.",
    };
  }
  if (brokerOnly.length > 0) {
    const names = brokerOnly.map((a) => a.name).join(", ");
    return {
      title: "No device has reported yet",
      text:
        `Devices on an MQTT broker (${names}) announce themselves when they start, not while Greenlight is away. ` +
        "Each shows up at its next report; restart a device to see it now.",
    };
  }
  return {
    title: "No devices in your account",
    text: "Your cloud lists no devices yet. Add them with the ESP RainMaker phone app; they show here within a minute.",
  };
}
