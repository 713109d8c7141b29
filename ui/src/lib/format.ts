// Small pure helpers that turn engine values into words. Kept apart from the
// components so they are tested on their own.
import type { Job, JobState, PendingUpdate, Node, ApprovalOutcome } from "../bindings";

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

/** The words for a job's state, as the Activity page shows them. */
export function stateLabel(s: JobState): string {
  switch (s.state) {
    case "queued":
      switch (s.reason.why) {
        case "quiet_hours":
          return `Waiting for quiet hours to end (${new Date(s.reason.until).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })})`;
        case "scheduled":
          return `Scheduled for ${new Date(s.reason.at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}`;
        case "waiting_for_node":
          return "Will start when the device is online";
      }
      return "Queued";
    case "requested":
      return "Requested — waiting for the device";
    case "not_confirmed":
      return `Not confirmed: ${s.reason}`;
    case "sent":
      return "Sent — waiting for the device to start";
    case "started":
      return "Started";
    case "in_progress":
      return "Installing";
    case "delayed":
      return "Delayed by the device";
    case "success":
      return "Updated";
    case "failed":
      return `Failed: ${s.reason}`;
    case "rejected":
      return `Rejected: ${s.reason}`;
    case "rolled_back":
      return "Rolled back: the device went back to its previous firmware";
    case "stuck":
      return "No progress for a while";
    case "cancelled":
      return "Cancelled";
  }
}

export type Outcome = "success" | "failure" | "running";

/** Success, failure (any bad end, or stuck) or still running. */
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

export function isTerminal(s: JobState): boolean {
  return ["success", "failed", "rejected", "rolled_back", "cancelled"].includes(s.state);
}

export function kindLabel(p: PendingUpdate): string {
  return p.kind === "node_side" ? "Device asks" : "Cloud job";
}

export function modelOf(nodes: Node[], p: { account: string; node_id: string }): string | null {
  return nodes.find((n) => n.account === p.account && n.node_id === p.node_id)?.model ?? null;
}

/** One line about a batch of approval outcomes, e.g. after Approve all. */
export function summarize(outcomes: ApprovalOutcome[], name: (id: string) => string): string {
  const started: string[] = [];
  const left: string[] = [];
  for (const o of outcomes) {
    const r = o.result;
    const n = name(o.node_id);
    switch (r.result) {
      case "sent":
        started.push(n);
        break;
      case "queued":
        left.push(`${n} (queued)`);
        break;
      case "not_confirmed":
        left.push(`${n} (not confirmed)`);
        break;
      case "up_to_date":
        left.push(`${n} (already up to date)`);
        break;
      case "offline":
        left.push(`${n} (offline — use Install when online)`);
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
  if (left.length) parts.push(`Left out ${left.length}: ${left.join("; ")}.`);
  return parts.join(" ") || "Nothing to approve.";
}
