// Shared test data shaped exactly like the generated bindings' types.
import type { Job, MemberState, Node, PendingUpdate, Rollout, RolloutMember } from "./bindings";

export const T0 = Date.UTC(2026, 10, 23, 9, 0, 0);

export function node(id: string, name: string, over: Partial<Node> = {}): Node {
  return {
    account: "home",
    node_id: id,
    name,
    model: "ESP32 Smart Plug",
    fw_version: "1.0.0",
    online: true,
    known: { how: "live" },
    ota: null,
    ota_layout: "user_approval",
    ota_text: null,
    last_seen: T0,
    ...over,
  };
}

export function pending(id: string, name: string, over: Partial<PendingUpdate> = {}): PendingUpdate {
  return {
    account: "home",
    node_id: id,
    node_name: name,
    job_id: `job-${id}`,
    from_version: "1.0.0",
    to_version: "1.1.0",
    release_note: null,
    size: null,
    kind: "node_side",
    first_seen: T0,
    snoozed_until: null,
    node_online: true,
    node_known: { how: "live" },
    node_last_seen: null,
    warning: null,
    ...over,
  };
}

export function job(id: number, nodeId: string, state: Job["state"], over: Partial<Job> = {}): Job {
  return {
    id,
    account: "home",
    node_id: nodeId,
    ota_job_id: `job-${nodeId}`,
    kind: "node_side",
    from_version: "1.0.0",
    to_version: "1.1.0",
    state,
    progress_text: null,
    percent: null,
    approved_by: "ana",
    created_at: T0,
    sent_at: T0 + 500,
    updated_at: T0 + 1000,
    finished_at: null,
    headline: "",
    ...over,
  };
}

export function member(id: string, name: string, state: MemberState, stage: number | null, over: Partial<RolloutMember> = {}): RolloutMember {
  return {
    account: "home",
    node_id: id,
    name,
    to_version: "1.1.0",
    ota_job_id: `job-${id}`,
    stage,
    state,
    job_id: stage == null ? null : 100 + stage,
    retry: false,
    ...over,
  };
}

export function rollout(id: number, state: Rollout["state"], members: RolloutMember[], over: Partial<Rollout> = {}): Rollout {
  return {
    id,
    approved_by: "ana",
    created_at: T0,
    updated_at: T0 + 1000,
    batch: 2,
    soak_secs: 300,
    window: null,
    canary: null,
    state,
    members,
    headline: "",
    ...over,
  };
}
