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
  type NodeRef,
  type PendingUpdate,
  type Policies,
  type Rollout,
  type RolloutAction,
  type RolloutPlan,
} from "../bindings";

type Result<T, E> = { status: "ok"; data: T } | { status: "error"; error: E };
import { deviceName, isTerminal, presence, summarize, type Presence } from "./format";
import { isActive } from "./rollout";

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

/** A device is (account, node id): one id can be in two accounts. */
export type DeviceRef = { account: string; node_id: string };

export function key(a: DeviceRef): string {
  return `${a.account}\u0000${a.node_id}`;
}

function ref(a: DeviceRef): NodeRef {
  return { account: a.account, node_id: a.node_id };
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
  /** Staged approvals: the running or stopped one first, then recent ended ones, newest first. */
  rollouts = $state<Rollout[]>([]);
  /** A rollout action (Resume, Retry failed, Cancel) or start is waiting for its answer. */
  rolloutBusy = $state(false);
  loaded = $state(false);
  /** Devices (by `key`) whose approval was tapped and not yet answered. */
  requesting = $state<Record<string, boolean>>({});
  notices = $state<Notice[]>([]);
  /** Set by the tray's "Approve all pending…". */
  confirmApproveAll = $state(false);
  now = $state(Date.now());
  private noticeId = 0;
  private unlisten: Array<() => void> = [];

  nameOf = (d: DeviceRef): string => {
    const n = this.nodes.find((n) => key(n) === key(d));
    if (n) return deviceName(n);
    const p = this.pending.find((p) => key(p) === key(d));
    return p ? deviceName(p) : d.node_id;
  };

  /** The name, with the account when there is more than one (two accounts can hold the same device id or name). */
  labelOf = (d: DeviceRef): string => (this.manyAccounts ? `${this.nameOf(d)} (${d.account})` : this.nameOf(d));

  /** `labelOf` for callbacks that get the two parts. */
  private nameOf2 = (account: string, node_id: string): string => this.labelOf({ account, node_id });

  /** The node as the engine knows it now (kept current by node_updated). */
  nodeOf = (p: { account: string; node_id: string }): Node | undefined => this.nodes.find((n) => key(n) === key(p));

  /**
   * Whether the device is online now: the current node list decides; the
   * offer's own flag (its state when the offer was last sent) only when the
   * node is not in the list.
   */
  isOnline = (p: PendingUpdate): boolean => this.presenceOf(p).state === "online";

  /** Whether a device is online and how that is known (the node list first). */
  presenceOf = (d: Node | PendingUpdate): Presence => {
    const n = "known" in d ? d : this.nodeOf(d);
    const fresh = this.accounts.find((a) => a.name === d.account)?.freshness;
    if (n) return presence(n.online, n.known, n.last_seen, fresh, this.now);
    const p = d as PendingUpdate;
    return presence(p.node_online, p.node_known, p.node_last_seen, fresh, this.now);
  };

  /** Is this device's approval being requested right now? */
  isRequesting = (d: DeviceRef): boolean => !!this.requesting[key(d)];

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

  /** The rollout the user can still act on (running or stopped); the engine keeps one at a time. */
  get activeRollout(): Rollout | null {
    return this.rollouts.find(isActive) ?? null;
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

  /**
   * Events that arrive while a reload's answers are in flight, per reload:
   * the answers can predate them, so they are applied again on top of the
   * answers (in order, each the newest word on its key) instead of being
   * overwritten by an older snapshot.
   */
  private recorders = new Set<EngineEventBody[]>();

  async reload() {
    const during: EngineEventBody[] = [];
    this.recorders.add(during);
    try {
      await this.reloadOnce();
      for (const ev of during) this.applyNow(ev);
    } finally {
      this.recorders.delete(during);
    }
    this.loaded = true;
  }

  private async reloadOnce() {
    await this.act(async () => {
      // Just launched (the keychain and the data directory still opening),
      // or a one-shot `greenlight` command holds the directory: there is
      // nothing else to ask yet; `app_changed` comes once the engine opens.
      const first = await call(commands.appStatus());
      if ((first.engine_owner === "waiting" || first.engine_owner === "opening") && !first.demo) {
        this.status = first;
        return;
      }
      const [status, accounts, nodes, pending, jobs, history, policies, rollouts] = await Promise.all([
        call(commands.appStatus()),
        call(commands.accounts()),
        call(commands.nodes()),
        call(commands.pending()),
        call(commands.jobs()),
        call(commands.history({ account: null, node_id: null, limit: 500 })),
        call(commands.policies()),
        call(commands.rollouts()),
      ]);
      this.status = status;
      this.accounts = accounts;
      this.nodes = nodes;
      this.pending = pending;
      this.jobs = jobs;
      this.history = history;
      this.policies = policies;
      this.rollouts = rollouts;
    });
  }

  /** Folds one engine event into the state. */
  apply(ev: EngineEventBody) {
    for (const r of this.recorders) r.push(ev);
    this.applyNow(ev);
  }

  private applyNow(ev: EngineEventBody) {
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
      case "account_freshness": {
        const i = this.accounts.findIndex((a) => a.name === ev.account);
        if (i >= 0) this.accounts[i] = { ...this.accounts[i], freshness: ev.freshness };
        break;
      }
      case "approval":
        break;
      case "rollout_changed":
        this.putRollout(ev.rollout);
        break;
      // Settings changed anywhere (this window, the tray, another process
      // such as `greenlight notifications pause`).
      case "notifications_paused":
        if (this.status) this.status = { ...this.status, notifications_paused: ev.paused };
        break;
      case "quiet_hours_changed":
        if (this.policies) this.policies = { ...this.policies, quiet_hours: ev.quiet_hours };
        break;
    }
  }

  /**
   * Puts a rollout in the list (an event, or a command's answer): the
   * active one first, then by start, newest first. An answer and its event
   * carry the same record; the later `updated_at` wins, so an older answer
   * cannot undo an event that arrived before it.
   */
  private putRollout(r: Rollout) {
    const old = this.rollouts.find((x) => x.id === r.id);
    if (old && old.updated_at > r.updated_at) return;
    const rest = this.rollouts.filter((x) => x.id !== r.id);
    this.rollouts = [r, ...rest].sort(
      (a, b) => Number(isActive(b)) - Number(isActive(a)) || b.created_at - a.created_at,
    );
  }

  /** Starts a careful approval ("Approve all…", "Carefully") and shows it on Activity. */
  async startRollout(plan: RolloutPlan): Promise<Rollout | undefined> {
    this.rolloutBusy = true;
    try {
      const r = await this.act(() => call(commands.startRollout(plan)));
      if (r) {
        this.putRollout(r);
        this.notify("info", `Careful update started: ${r.headline}.`);
        this.tab = "activity";
      }
      return r;
    } finally {
      this.rolloutBusy = false;
    }
  }

  /** Resume, Retry failed or Cancel, on the rollout the user is looking at. */
  async rolloutAction(r: Rollout, action: RolloutAction): Promise<Rollout | undefined> {
    this.rolloutBusy = true;
    try {
      const out = await this.act(() => call(commands.rolloutAction(r.id, action)));
      if (out) this.putRollout(out);
      return out;
    } finally {
      this.rolloutBusy = false;
    }
  }

  private mark(devices: DeviceRef[], on: boolean) {
    const r = { ...this.requesting };
    for (const d of devices) {
      if (on) r[key(d)] = true;
      else delete r[key(d)];
    }
    this.requesting = r;
  }

  private async approveWith(devices: DeviceRef[], f: () => Promise<ApprovalOutcome[]>) {
    this.mark(devices, true);
    try {
      const out = await this.act(f);
      if (out) {
        for (const o of out) {
          if ("job" in o.result) this.apply({ type: "job_changed", job: o.result.job });
        }
        // Left-out devices (offline, up to date) are information, not errors.
        const bad = out.filter((o) => ["refused", "failed", "not_confirmed"].includes(o.result.result));
        this.notify(bad.length ? "error" : "info", summarize(out, this.nameOf2));
      }
      return out;
    } finally {
      this.mark(devices, false);
    }
  }

  approve(devices: DeviceRef[]) {
    return this.approveWith(devices, () => call(commands.approve(devices.map(ref))));
  }

  approveAll() {
    const devices = [...new Map(this.visiblePending.map((p): [string, DeviceRef] => [key(p), p])).values()];
    return this.approveWith(devices, () => call(commands.approveAll()));
  }

  async installWhenOnline(d: DeviceRef) {
    const o = await this.act(() => call(commands.installWhenOnline(ref(d))));
    if (o) {
      if ("job" in o.result) this.apply({ type: "job_changed", job: o.result.job });
      this.notify("info", summarize([o], this.nameOf2));
    }
  }

  async snooze(d: DeviceRef, hours: number) {
    if ((await this.act(() => call(commands.snooze(ref(d), hours)))) !== undefined) {
      this.notify("info", `${this.labelOf(d)}: reminding you in ${hours < 24 ? `${hours} h` : `${hours / 24} d`}.`);
      this.pending = await call(commands.pending());
    }
  }

  async skip(d: DeviceRef) {
    const before = this.pending.filter((p) => key(p) === key(d));
    if ((await this.act(() => call(commands.skip(ref(d))))) !== undefined) {
      // The engine skips the version it would install; ask it what is left
      // rather than guess (a node can hold two offers).
      const now = await this.act(() => call(commands.pending()));
      if (now) this.pending = now;
      const left = new Set((now ?? []).filter((p) => key(p) === key(d)).map(offerKey));
      const gone = [...new Set(before.filter((p) => !left.has(offerKey(p))).map((p) => p.to_version))];
      this.notify("info", `${this.labelOf(d)}: skipping ${gone.length ? gone.join(", ") : "this version"}. A newer version will show again.`);
      this.policies = (await this.act(() => call(commands.policies()))) ?? this.policies;
    }
  }

  async checkNow(d: DeviceRef) {
    if ((await this.act(() => call(commands.checkNow(ref(d))))) !== undefined) {
      this.notify("info", `Asked ${this.labelOf(d)} to check for an update.`);
    }
  }

  async setAutoApprove(d: DeviceRef, on: boolean) {
    if ((await this.act(() => call(commands.setAutoApprove(ref(d), on)))) !== undefined) {
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
