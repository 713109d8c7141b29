// The front end's state: one reactive copy of what the engine knows, kept up
// to date by its events. Components read it and call its actions; the
// actions only call commands (the engine decides everything).
import {
  commands,
  events,
  type AccountView,
  type AppError,
  type AppStatus,
  type ApprovalOutcome,
  type Event as EngineEventBody,
  type Job,
  type Node,
  type PendingUpdate,
  type Policies,
} from "../bindings";

type Result<T, E> = { status: "ok"; data: T } | { status: "error"; error: E };
import { deviceName, isTerminal, summarize } from "./format";

export type Tab = "inbox" | "activity" | "history" | "devices" | "blynk" | "accounts";

/** A command's error, thrown so callers can `try`. */
export class Failure extends Error {
  constructor(public readonly error: AppError) {
    super(error.message);
  }
}

export async function call<T>(p: Promise<Result<T, AppError>>): Promise<T> {
  const r = await p;
  if (r.status === "error") throw new Failure(r.error);
  return r.data;
}

export type Notice = { kind: "info" | "error"; text: string; id: number };

function key(a: { account: string; node_id: string }): string {
  return `${a.account}\u0000${a.node_id}`;
}

/** One offer: a node can hold a node-side and a cloud offer at once. */
export function offerKey(p: { account: string; node_id: string; job_id: string }): string {
  return `${key(p)}\u0000${p.job_id}`;
}

export class AppModel {
  tab = $state<Tab>("inbox");
  status = $state<AppStatus | null>(null);
  accounts = $state<AccountView[]>([]);
  nodes = $state<Node[]>([]);
  pending = $state<PendingUpdate[]>([]);
  jobs = $state<Job[]>([]);
  history = $state<Job[]>([]);
  policies = $state<Policies | null>(null);
  loaded = $state(false);
  /** Nodes whose approval was tapped and not yet answered. */
  requesting = $state<Record<string, boolean>>({});
  notices = $state<Notice[]>([]);
  /** Set by the tray's "Approve all pending…". */
  confirmApproveAll = $state(false);
  now = $state(Date.now());
  private noticeId = 0;
  private unlisten: Array<() => void> = [];

  nameOf = (nodeId: string): string => {
    const n = this.nodes.find((n) => n.node_id === nodeId);
    if (n) return deviceName(n);
    const p = this.pending.find((p) => p.node_id === nodeId);
    return p ? deviceName(p) : nodeId;
  };

  /** The node as the engine knows it now (kept current by node_updated). */
  nodeOf = (p: { account: string; node_id: string }): Node | undefined => this.nodes.find((n) => key(n) === key(p));

  /**
   * Whether the device is online now: the current node list decides; the
   * offer's own flag (its state when the offer was last sent) only when the
   * node is not in the list.
   */
  isOnline = (p: PendingUpdate): boolean => this.nodeOf(p)?.online ?? p.node_online;

  /** More than one account: rows then say which account they belong to. */
  get manyAccounts(): boolean {
    const names = new Set<string>(this.accounts.map((a) => a.name));
    for (const j of this.history) names.add(j.account);
    for (const j of this.jobs) names.add(j.account);
    return names.size > 1;
  }

  get visiblePending(): PendingUpdate[] {
    return this.pending.filter((p) => p.snoozed_until == null || p.snoozed_until <= this.now);
  }

  get runningJobs(): Job[] {
    return this.jobs.filter((j) => !isTerminal(j.state));
  }

  notify(kind: Notice["kind"], text: string) {
    const id = ++this.noticeId;
    this.notices = [...this.notices.slice(-3), { kind, text, id }];
    setTimeout(() => this.dismiss(id), kind === "error" ? 12000 : 6000);
  }

  dismiss(id: number) {
    this.notices = this.notices.filter((n) => n.id !== id);
  }

  /** Runs an action, turning its failure into a notice. */
  async act<T>(f: () => Promise<T>): Promise<T | undefined> {
    try {
      return await f();
    } catch (e) {
      this.notify("error", e instanceof Error ? e.message : String(e));
      return undefined;
    }
  }

  async start() {
    const timer = setInterval(() => (this.now = Date.now()), 1000);
    this.unlisten.push(() => clearInterval(timer));
    this.unlisten.push(await events.engineEvent.listen((e) => this.apply(e.payload.event)));
    this.unlisten.push(await events.appChanged.listen(() => void this.reload()));
    this.unlisten.push(
      await events.trayRequest.listen((e) => {
        if (e.payload.action === "approve_all") {
          this.tab = "inbox";
          this.confirmApproveAll = true;
        }
      }),
    );
    await this.reload();
  }

  stop() {
    for (const u of this.unlisten) u();
    this.unlisten = [];
  }

  async reload() {
    await this.act(async () => {
      const [status, accounts, nodes, pending, jobs, history, policies] = await Promise.all([
        call(commands.appStatus()),
        call(commands.accounts()),
        call(commands.nodes()),
        call(commands.pending()),
        call(commands.jobs()),
        call(commands.history({ node_id: null, limit: 500 })),
        call(commands.policies()),
      ]);
      this.status = status;
      this.accounts = accounts;
      this.nodes = nodes;
      this.pending = pending;
      this.jobs = jobs;
      this.history = history;
      this.policies = policies;
    });
    this.loaded = true;
  }

  /** Folds one engine event into the state. */
  apply(ev: EngineEventBody) {
    switch (ev.type) {
      case "node_updated": {
        const i = this.nodes.findIndex((n) => key(n) === key(ev.node));
        if (i >= 0) this.nodes[i] = ev.node;
        else this.nodes = [...this.nodes, ev.node];
        break;
      }
      case "pending_added": {
        // An upsert by (account, node, job): a node's node-side and cloud
        // offers are two entries.
        const p = ev.pending;
        const i = this.pending.findIndex((q) => offerKey(q) === offerKey(p));
        if (i >= 0) this.pending[i] = p;
        else this.pending = [...this.pending, p];
        break;
      }
      case "pending_removed":
        this.pending = this.pending.filter((q) => offerKey(q) !== offerKey(ev));
        break;
      case "job_changed": {
        const j = ev.job;
        const upsert = (list: Job[]) => {
          const i = list.findIndex((x) => x.id === j.id);
          if (i >= 0) {
            const copy = [...list];
            copy[i] = j;
            return copy;
          }
          return [j, ...list];
        };
        this.jobs = upsert(this.jobs);
        this.history = upsert(this.history);
        break;
      }
      case "account_state": {
        const i = this.accounts.findIndex((a) => a.name === ev.account);
        if (i >= 0) this.accounts[i] = { ...this.accounts[i], state: ev.state };
        break;
      }
      case "approval":
        break;
    }
  }

  private mark(ids: string[], on: boolean) {
    const r = { ...this.requesting };
    for (const id of ids) {
      if (on) r[id] = true;
      else delete r[id];
    }
    this.requesting = r;
  }

  private async approveWith(ids: string[], f: () => Promise<ApprovalOutcome[]>) {
    this.mark(ids, true);
    try {
      const out = await this.act(f);
      if (out) {
        for (const o of out) {
          if ("job" in o.result) this.apply({ type: "job_changed", job: o.result.job });
        }
        // Left-out devices (offline, up to date) are information, not errors.
        const bad = out.filter((o) => ["refused", "failed", "not_confirmed"].includes(o.result.result));
        this.notify(bad.length ? "error" : "info", summarize(out, this.nameOf));
      }
      return out;
    } finally {
      this.mark(ids, false);
    }
  }

  approve(ids: string[]) {
    return this.approveWith(ids, () => call(commands.approve(ids)));
  }

  approveAll() {
    const ids = [...new Set(this.visiblePending.map((p) => p.node_id))];
    return this.approveWith(ids, () => call(commands.approveAll()));
  }

  async installWhenOnline(id: string) {
    const o = await this.act(() => call(commands.installWhenOnline(id)));
    if (o) {
      if ("job" in o.result) this.apply({ type: "job_changed", job: o.result.job });
      this.notify("info", summarize([o], this.nameOf));
    }
  }

  async snooze(id: string, hours: number) {
    if ((await this.act(() => call(commands.snooze(id, hours)))) !== undefined) {
      this.notify("info", `${this.nameOf(id)}: reminding you in ${hours < 24 ? `${hours} h` : `${hours / 24} d`}.`);
      this.pending = await call(commands.pending());
    }
  }

  async skip(id: string) {
    const before = this.pending.filter((p) => p.node_id === id);
    if ((await this.act(() => call(commands.skip(id)))) !== undefined) {
      // The engine skips the version it would install; ask it what is left
      // rather than guess (a node can hold two offers).
      const now = await this.act(() => call(commands.pending()));
      if (now) this.pending = now;
      const left = new Set((now ?? []).filter((p) => p.node_id === id).map(offerKey));
      const gone = [...new Set(before.filter((p) => !left.has(offerKey(p))).map((p) => p.to_version))];
      this.notify("info", `${this.nameOf(id)}: skipping ${gone.length ? gone.join(", ") : "this version"}. A newer version will show again.`);
      this.policies = (await this.act(() => call(commands.policies()))) ?? this.policies;
    }
  }

  async setAutoApprove(id: string, on: boolean) {
    if ((await this.act(() => call(commands.setAutoApprove(id, on)))) !== undefined) {
      this.policies = (await this.act(() => call(commands.policies()))) ?? this.policies;
    }
  }

  async startDemo() {
    this.notify("info", "Starting the demo fleet…");
    if ((await this.act(() => call(commands.demoStart()))) !== undefined) await this.reload();
  }

  async stopDemo() {
    if ((await this.act(() => call(commands.demoStop()))) !== undefined) await this.reload();
  }
}
