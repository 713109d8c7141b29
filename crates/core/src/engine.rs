//! The engine: one actor that owns the state (nodes, pending updates,
//! jobs, policies), folds the sources' facts into it, turns the views'
//! requests into commands, writes every change to the store and only then
//! broadcasts an [`Event`].
//!
//! Network commands never run inside the actor: it records the intent,
//! spawns the command, and folds its result back in as a message, so a slow
//! cloud never stalls the watching of other nodes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{broadcast, mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::event::{AccountState, Event};
use crate::model::{
    now_ms, secret_keys, AccountConfig, ApprovalOutcome, ApprovalResult, HistoryFilter, Job,
    JobEvent, JobState, Millis, Node, OtaNames, PendingUpdate, Policies, QueueReason, QuietHours,
    UpdateKind,
};
use crate::policy::quiet_until;
use crate::rainmaker::mqtt::{self, MqttLink};
use crate::rainmaker::parse::{self, classify_status, percent_from_text, StatusClass};
use crate::rainmaker::rest::{CloudOffer, RestClient, RetryPolicy};
use crate::rainmaker::sweep::{self, CheckRequest, PollTarget, SweepRequest};
use crate::rainmaker::{Fact, InfoReport, NodeReport, Via};
use crate::secrets::SecretStore;
use crate::store::{AuditEntry, NewJob, Store};

/// How far a status report's time may lie before its job was created, or
/// after now, and still be used to order reports (clocks of nodes and clouds
/// differ a little; more than this is a wrong clock).
const CLOCK_SLACK_MS: i64 = 3_600_000;

/// How the engine runs.
#[derive(Clone)]
pub struct EngineConfig {
    /// Where the database lives.
    pub data_dir: PathBuf,
    /// Passwords and tokens.
    pub secrets: Arc<dyn SecretStore>,
    /// Who approves (for the audit).
    pub actor_name: String,
    /// A running job with no change for this long is reported stuck.
    pub stuck_after: Duration,
    /// Node sweep period while no job runs (REST accounts).
    pub sweep_interval: Duration,
    /// Node sweep period while a job runs.
    pub sweep_interval_busy: Duration,
    /// Each node's cloud user-approval check comes round once per this period.
    pub cloud_check_interval: Duration,
    /// `ota_status` period while a job is started or in progress.
    pub status_poll_fast: Duration,
    /// `ota_status` period while delayed, stuck, the node offline, or MQTT
    /// already delivers the node's own status.
    pub status_poll_slow: Duration,
    /// After "success", how long to wait for the node to report its running
    /// version before deciding between success and rolled back.
    pub rollback_grace: Duration,
    /// How long to wait for a broker's PUBACK.
    pub mqtt_ack_timeout: Duration,
    /// REST timeouts and retries.
    pub retry: RetryPolicy,
    /// Start the accounts saved in the database.
    pub load_saved_accounts: bool,
}

impl EngineConfig {
    /// Defaults: stuck after 10 min, sweep every 60 s (5 s while busy),
    /// cloud checks every 15 min per node, status every 2 s / 30 s.
    pub fn new(
        data_dir: impl Into<PathBuf>,
        secrets: Arc<dyn SecretStore>,
        actor_name: &str,
    ) -> EngineConfig {
        EngineConfig {
            data_dir: data_dir.into(),
            secrets,
            actor_name: actor_name.to_string(),
            stuck_after: Duration::from_secs(600),
            sweep_interval: Duration::from_secs(60),
            sweep_interval_busy: Duration::from_secs(5),
            cloud_check_interval: Duration::from_secs(15 * 60),
            status_poll_fast: Duration::from_secs(2),
            status_poll_slow: Duration::from_secs(30),
            rollback_grace: Duration::from_secs(120),
            mqtt_ack_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            load_saved_accounts: true,
        }
    }
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("data_dir", &self.data_dir)
            .field("actor_name", &self.actor_name)
            .field("stuck_after", &self.stuck_after)
            .finish_non_exhaustive()
    }
}

/// Opens engines.
pub struct Engine;

impl Engine {
    /// Opens the store, resumes every unfinished job, starts the saved
    /// accounts and returns a handle.
    pub async fn open(cfg: EngineConfig) -> Result<EngineHandle> {
        let dir = cfg.data_dir.clone();
        let store = tokio::task::spawn_blocking(move || Store::open(&dir))
            .await
            .map_err(|e| Error::Config(format!("store task: {e}")))??;
        let (req_tx, req_rx) = mpsc::channel(64);
        let (fact_tx, fact_rx) = mpsc::channel(1024);
        let (int_tx, int_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(1024);
        let secrets = cfg.secrets.clone();
        let mut actor = Actor {
            cfg: cfg.clone(),
            store,
            events: events.clone(),
            facts: fact_tx,
            internal: int_tx,
            sends: Arc::new(Semaphore::new(4)),
            accounts: BTreeMap::new(),
            nodes: BTreeMap::new(),
            node_pending: HashMap::new(),
            cloud_pending: HashMap::new(),
            jobs: BTreeMap::new(),
            approved: HashSet::new(),
            skips: HashMap::new(),
            snoozes: HashMap::new(),
            auto: HashSet::new(),
            quiet: None,
            sources_stale: HashSet::new(),
        };
        actor.load().await?;
        tokio::spawn(actor.run(req_rx, fact_rx, int_rx));
        Ok(EngineHandle {
            tx: req_tx,
            events,
            secrets,
        })
    }
}

type Reply<T> = oneshot::Sender<Result<T>>;

enum Request {
    AddAccount(Box<AccountConfig>, Reply<()>),
    RemoveAccount(String, Reply<()>),
    Accounts(Reply<Vec<(AccountConfig, AccountState)>>),
    Login(String, String, Reply<()>),
    Nodes(Reply<Vec<Node>>),
    Pending(Reply<Vec<PendingUpdate>>),
    Jobs(Reply<Vec<Job>>),
    History(HistoryFilter, Reply<Vec<Job>>),
    JobEvents(i64, Reply<Vec<JobEvent>>),
    Audit(u32, Reply<Vec<AuditEntry>>),
    Approve(Vec<String>, Mode, oneshot::Sender<Vec<ApprovalOutcome>>),
    ApproveAt(Vec<String>, Millis, oneshot::Sender<Vec<ApprovalOutcome>>),
    Policies(Reply<Policies>),
    InstallWhenOnline(String, oneshot::Sender<ApprovalOutcome>),
    Resend(i64, oneshot::Sender<ApprovalOutcome>),
    Cancel(i64, Reply<Job>),
    Snooze(String, Option<Millis>, Reply<()>),
    Skip(String, Reply<()>),
    AutoApprove(String, bool, Reply<()>),
    QuietHours(Option<QuietHours>, Reply<()>),
    CheckNow(String, Reply<oneshot::Receiver<()>>),
    Refresh(Reply<Vec<oneshot::Receiver<std::result::Result<(), String>>>>),
    Shutdown(oneshot::Sender<()>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The user named these nodes: snoozes and skips do not apply.
    Explicit,
    /// Approve-all: snoozed and skipped updates are left out.
    All,
    /// Per-node auto-approve.
    Auto,
}

enum Internal {
    CommandDone {
        job_id: i64,
        result: Result<()>,
        reply: Option<oneshot::Sender<ApprovalOutcome>>,
    },
}

/// The views' handle on the engine. Cheap to clone; the engine stops when
/// the last handle is dropped or [`EngineHandle::shutdown`] is called.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Request>,
    events: broadcast::Sender<Event>,
    secrets: Arc<dyn SecretStore>,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle").finish_non_exhaustive()
    }
}

impl EngineHandle {
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| Error::EngineStopped)?;
        rx.await.map_err(|_| Error::EngineStopped)?
    }

    async fn ask_plain<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| Error::EngineStopped)?;
        rx.await.map_err(|_| Error::EngineStopped)
    }

    /// The secret store this engine reads passwords from, so a view can save
    /// a new account's password where the engine will find it.
    pub fn secrets(&self) -> Arc<dyn SecretStore> {
        self.secrets.clone()
    }

    /// Subscribes to events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Adds (or replaces) an account, saves its config and starts its sources.
    pub async fn add_account(&self, cfg: AccountConfig) -> Result<()> {
        self.ask(|r| Request::AddAccount(Box::new(cfg), r)).await
    }

    /// Stops and forgets an account (its job history stays).
    pub async fn remove_account(&self, name: &str) -> Result<()> {
        self.ask(|r| Request::RemoveAccount(name.into(), r)).await
    }

    /// Every account with its state.
    pub async fn accounts(&self) -> Result<Vec<(AccountConfig, AccountState)>> {
        self.ask(Request::Accounts).await
    }

    /// Stores a new password for an account and leaves "needs login".
    pub async fn login(&self, account: &str, password: &str) -> Result<()> {
        self.ask(|r| Request::Login(account.into(), password.into(), r))
            .await
    }

    /// Every known node.
    pub async fn nodes(&self) -> Result<Vec<Node>> {
        self.ask(Request::Nodes).await
    }

    /// Updates waiting for approval (skipped versions left out; snoozed ones
    /// carry `snoozed_until`).
    pub async fn pending(&self) -> Result<Vec<PendingUpdate>> {
        self.ask(Request::Pending).await
    }

    /// Jobs not finished yet.
    pub async fn jobs(&self) -> Result<Vec<Job>> {
        self.ask(Request::Jobs).await
    }

    /// Every job, newest first.
    pub async fn history(&self, filter: HistoryFilter) -> Result<Vec<Job>> {
        self.ask(|r| Request::History(filter, r)).await
    }

    /// A job's state changes, oldest first.
    pub async fn job_events(&self, job_id: i64) -> Result<Vec<JobEvent>> {
        self.ask(|r| Request::JobEvents(job_id, r)).await
    }

    /// The approvals audit, newest first.
    pub async fn audit(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        self.ask(|r| Request::Audit(limit, r)).await
    }

    /// Approves the pending update of each node. Up-to-date and offline
    /// nodes are skipped (offline: "install when online" is offered);
    /// failures do not stop the others. One outcome per node.
    pub async fn approve(&self, node_ids: &[String]) -> Result<Vec<ApprovalOutcome>> {
        self.ask_plain(|r| Request::Approve(node_ids.to_vec(), Mode::Explicit, r))
            .await
    }

    /// Approves now, to be sent at `at` ("install tonight"). Nodes offline
    /// at that time get it when they come online.
    pub async fn approve_at(
        &self,
        node_ids: &[String],
        at: Millis,
    ) -> Result<Vec<ApprovalOutcome>> {
        self.ask_plain(|r| Request::ApproveAt(node_ids.to_vec(), at, r))
            .await
    }

    /// Approves every visible pending update that is not snoozed or skipped.
    pub async fn approve_all(&self) -> Result<Vec<ApprovalOutcome>> {
        self.ask_plain(|r| Request::Approve(vec![], Mode::All, r))
            .await
    }

    /// Approves a node's update now, to be sent when the node comes online.
    pub async fn install_when_online(&self, node_id: &str) -> Result<ApprovalOutcome> {
        self.ask_plain(|r| Request::InstallWhenOnline(node_id.into(), r))
            .await
    }

    /// The user confirms re-sending a job whose command could not be
    /// confirmed (state `not_confirmed`).
    pub async fn confirm_resend(&self, job_id: i64) -> Result<ApprovalOutcome> {
        self.ask_plain(|r| Request::Resend(job_id, r)).await
    }

    /// Cancels a job that has not been sent (queued or not confirmed) or is stuck.
    pub async fn cancel(&self, job_id: i64) -> Result<Job> {
        self.ask(|r| Request::Cancel(job_id, r)).await
    }

    /// "Remind me later": approve-all leaves the node out until `until`
    /// (`None` clears).
    pub async fn snooze(&self, node_id: &str, until: Option<Millis>) -> Result<()> {
        self.ask(|r| Request::Snooze(node_id.into(), until, r))
            .await
    }

    /// Skips the version now offered to a node (cleared when another version appears).
    pub async fn skip(&self, node_id: &str) -> Result<()> {
        self.ask(|r| Request::Skip(node_id.into(), r)).await
    }

    /// Per-node auto-approve (opt-in).
    pub async fn set_auto_approve(&self, node_id: &str, on: bool) -> Result<()> {
        self.ask(|r| Request::AutoApprove(node_id.into(), on, r))
            .await
    }

    /// Every policy in force (auto-approve, quiet hours, skips, snoozes).
    pub async fn policies(&self) -> Result<Policies> {
        self.ask(Request::Policies).await
    }

    /// Sets or clears quiet hours.
    pub async fn set_quiet_hours(&self, q: Option<QuietHours>) -> Result<()> {
        self.ask(|r| Request::QuietHours(q, r)).await
    }

    /// Checks one node for updates now (cloud jobs through REST; node-side
    /// through `Operation=check` over MQTT); returns when the answer is in.
    pub async fn check_now(&self, node_id: &str) -> Result<()> {
        let rx = self.ask(|r| Request::CheckNow(node_id.into(), r)).await?;
        let _ = rx.await;
        Ok(())
    }

    /// One node sweep of every REST account now; returns when applied.
    pub async fn refresh(&self) -> Result<()> {
        let waits = self.ask(Request::Refresh).await?;
        let mut errors = vec![];
        for w in waits {
            match w.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(e),
                Err(_) => errors.push("the sweep stopped".into()),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Network(errors.join("; ")))
        }
    }

    /// Stops the engine and its sources.
    pub async fn shutdown(&self) {
        let _ = self.ask_plain(Request::Shutdown).await;
    }
}

// ---------------------------------------------------------------------------

type Key = (String, String);

struct AccountRt {
    cfg: AccountConfig,
    rest: Option<RestClient>,
    mqtt: Option<Arc<MqttLink>>,
    tasks: Vec<JoinHandle<()>>,
    sweep_ask: Option<mpsc::Sender<SweepRequest>>,
    check_ask: Option<mpsc::Sender<CheckRequest>>,
    sweep_interval: watch::Sender<Duration>,
    check_nodes: watch::Sender<Vec<String>>,
    poll_targets: watch::Sender<Vec<PollTarget>>,
    sources: HashMap<&'static str, AccountState>,
    state: AccountState,
}

impl Drop for AccountRt {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct JobRt {
    job: Job,
    last_change: Instant,
    last_ts: i64,
    /// When "success" came while the node still reported its old version.
    success_at: Option<(Instant, Millis)>,
}

struct Actor {
    cfg: EngineConfig,
    store: Store,
    events: broadcast::Sender<Event>,
    facts: mpsc::Sender<Fact>,
    internal: mpsc::UnboundedSender<Internal>,
    sends: Arc<Semaphore>,
    accounts: BTreeMap<String, AccountRt>,
    nodes: BTreeMap<Key, Node>,
    node_pending: HashMap<Key, PendingUpdate>,
    cloud_pending: HashMap<Key, PendingUpdate>,
    /// Unfinished jobs.
    jobs: BTreeMap<i64, JobRt>,
    /// (account, node, ota_job_id) approved and not failed/cancelled.
    approved: HashSet<(String, String, String)>,
    skips: HashMap<Key, String>,
    snoozes: HashMap<Key, Millis>,
    auto: HashSet<Key>,
    quiet: Option<QuietHours>,
    /// Accounts that gained nodes since their REST sources last heard of
    /// it; brought up to date on the next tick.
    sources_stale: HashSet<String>,
}

/// What a node report means for its account's REST sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SourcesImpact {
    /// Nothing they use changed (by far the most common: a param report).
    None,
    /// A node appeared: the cloud checker's list grows, within a tick.
    NodeAdded,
    /// A node with a running job went on- or offline: its poll pace changes now.
    Now,
}

/// A command ready to run outside the actor.
struct Command {
    kind: UpdateKind,
    node_id: String,
    ota_job_id: String,
    names: OtaNames,
    rest: Option<RestClient>,
    mqtt: Option<Arc<MqttLink>>,
    ack_timeout: Duration,
}

impl Command {
    async fn run(self) -> Result<()> {
        match self.kind {
            UpdateKind::NodeSide => {
                let payload = json!({ self.names.service.clone(): { self.names.operation.clone(): "start" } });
                if let Some(rest) = &self.rest {
                    rest.put_params(&self.node_id, &payload).await
                } else if let Some(m) = &self.mqtt {
                    m.publish_params(&self.node_id, &payload, self.ack_timeout)
                        .await
                } else {
                    Err(Error::Config("the account has no REST or MQTT side".into()))
                }
            }
            UpdateKind::CloudApproval => match &self.rest {
                Some(rest) => {
                    rest.ota_update_approve(&self.node_id, &self.ota_job_id)
                        .await
                }
                None => Err(Error::Config(
                    "a cloud user-approval job needs the account's REST side".into(),
                )),
            },
        }
    }
}

fn combine(sources: &HashMap<&'static str, AccountState>, expected: usize) -> AccountState {
    let mut degraded = None;
    let mut reconnecting = None;
    for s in sources.values() {
        match s {
            AccountState::NeedsLogin { .. } => return s.clone(),
            AccountState::Reconnecting { .. } => reconnecting = Some(s.clone()),
            AccountState::Degraded { .. } => degraded = Some(s.clone()),
            _ => {}
        }
    }
    if let Some(r) = reconnecting {
        return r;
    }
    if let Some(d) = degraded {
        return d;
    }
    if sources.len() >= expected {
        AccountState::Connected
    } else {
        AccountState::Connecting
    }
}

impl Actor {
    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    async fn load(&mut self) -> Result<()> {
        self.skips = self.store.skips()?;
        self.snoozes = self.store.snoozes()?;
        self.auto = self.store.auto_approve()?.into_iter().collect();
        self.quiet = self.store.quiet_hours()?;
        self.approved = self.store.approved_keys()?.into_iter().collect();
        // What was last heard of each node: names and versions at once, but
        // nothing is believed online until a source says so now.
        for mut n in self.store.nodes()? {
            n.online = false;
            self.nodes.insert((n.account.clone(), n.node_id.clone()), n);
        }
        for mut job in self.store.unfinished_jobs()? {
            if job.state == JobState::Requested {
                // The intent was recorded but the program stopped before the
                // command was confirmed: never re-send silently.
                job.state = JobState::NotConfirmed {
                    reason: "Greenlight stopped before the command was confirmed sent; needs your confirmation".into(),
                };
                job.updated_at = now_ms();
                self.store.save_job(&job, true)?;
            }
            self.jobs.insert(
                job.id,
                JobRt {
                    job,
                    last_change: Instant::now(),
                    last_ts: 0,
                    success_at: None,
                },
            );
        }
        if self.cfg.load_saved_accounts {
            for a in self.store.accounts()? {
                let name = a.name.clone();
                if let Err(e) = self.start_account(a).await {
                    tracing::warn!(account = %name, error = %e, "saved account did not start");
                }
            }
        }
        Ok(())
    }

    async fn run(
        mut self,
        mut reqs: mpsc::Receiver<Request>,
        mut facts: mpsc::Receiver<Fact>,
        mut internal: mpsc::UnboundedReceiver<Internal>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                r = reqs.recv() => match r {
                    None => break,
                    Some(Request::Shutdown(done)) => {
                        self.stop_all();
                        let _ = done.send(());
                        return;
                    }
                    Some(r) => self.on_request(r).await,
                },
                Some(f) = facts.recv() => self.on_fact(f),
                Some(i) = internal.recv() => self.on_internal(i),
                _ = tick.tick() => self.on_tick(),
            }
        }
        self.stop_all();
    }

    fn stop_all(&mut self) {
        for (name, _) in std::mem::take(&mut self.accounts) {
            self.emit(Event::AccountState {
                account: name,
                state: AccountState::Stopped,
            });
        }
    }

    // ---- accounts -----------------------------------------------------------

    async fn start_account(&mut self, cfg: AccountConfig) -> Result<()> {
        if cfg.name.trim().is_empty() {
            return Err(Error::Config("an account needs a name".into()));
        }
        if cfg.rest.is_none() && cfg.mqtt.is_none() {
            return Err(Error::Config(format!(
                "account {} has neither REST nor MQTT",
                cfg.name
            )));
        }
        self.accounts.remove(&cfg.name);
        let name = cfg.name.clone();
        let (sweep_interval, sweep_rx) = watch::channel(self.cfg.sweep_interval);
        let (check_nodes, check_rx) = watch::channel(Vec::new());
        let (poll_targets, poll_rx) = watch::channel(Vec::new());
        let mut rt = AccountRt {
            cfg: cfg.clone(),
            rest: None,
            mqtt: None,
            tasks: vec![],
            sweep_ask: None,
            check_ask: None,
            sweep_interval,
            check_nodes,
            poll_targets,
            sources: HashMap::new(),
            state: AccountState::Connecting,
        };
        if let Some(m) = &cfg.mqtt {
            let password = match &m.username {
                Some(_) => {
                    let (s, a) = (self.cfg.secrets.clone(), name.clone());
                    tokio::task::spawn_blocking(move || s.get(&a, secret_keys::MQTT_PASSWORD))
                        .await
                        .map_err(|e| Error::Config(format!("secret task: {e}")))??
                }
                None => None,
            };
            let opts = mqtt::options(m, password)?;
            rt.mqtt = Some(Arc::new(MqttLink::spawn(
                name.clone(),
                m.clone(),
                opts,
                self.facts.clone(),
            )));
        }
        if let Some(r) = &cfg.rest {
            let rest = RestClient::new(&name, r, self.cfg.secrets.clone(), self.cfg.retry.clone())?;
            let (sweep_tx, sweep_asks) = mpsc::channel(16);
            let (check_tx, check_asks) = mpsc::channel(64);
            rt.tasks.push(sweep::spawn_sweeper(
                rest.clone(),
                sweep_rx,
                sweep_asks,
                self.facts.clone(),
            ));
            rt.tasks.push(sweep::spawn_cloud_checker(
                rest.clone(),
                check_rx,
                self.cfg.cloud_check_interval,
                check_asks,
                self.facts.clone(),
            ));
            rt.tasks.push(sweep::spawn_poller(
                rest.clone(),
                poll_rx,
                self.facts.clone(),
            ));
            rt.sweep_ask = Some(sweep_tx);
            rt.check_ask = Some(check_tx);
            rt.rest = Some(rest);
        }
        self.accounts.insert(name.clone(), rt);
        self.emit(Event::AccountState {
            account: name.clone(),
            state: AccountState::Connecting,
        });
        self.update_account_sources(&name);
        Ok(())
    }

    fn set_source_state(&mut self, account: &str, source: &'static str, state: AccountState) {
        let Some(rt) = self.accounts.get_mut(account) else {
            return;
        };
        rt.sources.insert(source, state);
        let expected = usize::from(rt.cfg.rest.is_some()) + usize::from(rt.cfg.mqtt.is_some());
        let combined = combine(&rt.sources, expected);
        if combined != rt.state {
            rt.state = combined.clone();
            self.emit(Event::AccountState {
                account: account.to_string(),
                state: combined,
            });
        }
        // MQTT up or down changes how fast the poller needs to go.
        if source == "mqtt" {
            self.update_account_sources(account);
        }
    }

    /// Recomputes what the account's REST sources should do: the nodes to
    /// check, the jobs to poll and how often, the sweep pace.
    fn update_account_sources(&mut self, account: &str) {
        let Some(rt) = self.accounts.get(account) else {
            return;
        };
        let mqtt_live = rt.mqtt.as_ref().is_some_and(|m| m.connected());
        let nodes: Vec<String> = self
            .nodes
            .keys()
            .filter(|k| k.0 == account)
            .map(|k| k.1.clone())
            .collect();
        let mut targets = vec![];
        let mut busy = false;
        for j in self.jobs.values().map(|r| &r.job) {
            if j.account != account || !j.state.is_running() {
                continue;
            }
            busy = true;
            let online = self
                .nodes
                .get(&(j.account.clone(), j.node_id.clone()))
                .is_none_or(|n| n.online);
            let slow =
                !online || mqtt_live || matches!(j.state, JobState::Delayed | JobState::Stuck);
            targets.push(PollTarget {
                node_id: j.node_id.clone(),
                job_id: j.ota_job_id.clone(),
                every: if slow {
                    self.cfg.status_poll_slow
                } else {
                    self.cfg.status_poll_fast
                },
            });
        }
        rt.check_nodes.send_if_modified(|v| {
            if *v != nodes {
                *v = nodes;
                true
            } else {
                false
            }
        });
        rt.poll_targets.send_if_modified(|v| {
            if *v != targets {
                *v = targets;
                true
            } else {
                false
            }
        });
        let every = if busy {
            self.cfg.sweep_interval_busy
        } else {
            self.cfg.sweep_interval
        };
        rt.sweep_interval.send_if_modified(|v| {
            if *v != every {
                *v = every;
                true
            } else {
                false
            }
        });
    }

    // ---- requests -------------------------------------------------------------

    async fn on_request(&mut self, r: Request) {
        match r {
            Request::AddAccount(cfg, reply) => {
                let res = match self.store.save_account(&cfg) {
                    Ok(()) => self.start_account(*cfg).await,
                    Err(e) => Err(e),
                };
                let _ = reply.send(res);
            }
            Request::RemoveAccount(name, reply) => {
                let existed = self.accounts.remove(&name).is_some();
                let res = self.store.remove_account(&name).and_then(|_| {
                    if existed {
                        Ok(())
                    } else {
                        Err(Error::UnknownAccount(name.clone()))
                    }
                });
                let keys: Vec<Key> = self.nodes.keys().filter(|k| k.0 == name).cloned().collect();
                for k in keys {
                    let before = self.visible_ids(&k);
                    self.nodes.remove(&k);
                    self.node_pending.remove(&k);
                    self.cloud_pending.remove(&k);
                    self.pending_diff(&k, before);
                }
                if existed {
                    // A removed account's password and tokens leave the
                    // keychain with it; nothing is kept for an account the
                    // user no longer has. Keychain calls may block (D-Bus).
                    let secrets = self.cfg.secrets.clone();
                    let account = name.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        for k in [
                            crate::model::secret_keys::PASSWORD,
                            crate::model::secret_keys::REFRESH_TOKEN,
                            crate::model::secret_keys::MQTT_PASSWORD,
                        ] {
                            if let Err(e) = secrets.delete(&account, k) {
                                tracing::warn!(%account, error = %e, "could not delete a secret");
                            }
                        }
                    })
                    .await;
                }
                self.emit(Event::AccountState {
                    account: name,
                    state: AccountState::Stopped,
                });
                let _ = reply.send(res);
            }
            Request::Accounts(reply) => {
                let v = self
                    .accounts
                    .values()
                    .map(|a| (a.cfg.clone(), a.state.clone()))
                    .collect();
                let _ = reply.send(Ok(v));
            }
            Request::Login(account, password, reply) => {
                let res = self.login(&account, &password).await;
                let _ = reply.send(res);
            }
            Request::Nodes(reply) => {
                let _ = reply.send(Ok(self.nodes.values().cloned().collect()));
            }
            Request::Pending(reply) => {
                let mut v = vec![];
                for k in self.nodes.keys() {
                    v.extend(self.visible(k));
                }
                let _ = reply.send(Ok(v));
            }
            Request::Jobs(reply) => {
                let _ = reply.send(Ok(self.jobs.values().map(|r| r.job.clone()).collect()));
            }
            Request::History(f, reply) => {
                let _ = reply.send(self.store.history(&f));
            }
            Request::JobEvents(id, reply) => {
                let _ = reply.send(self.store.job_events(id));
            }
            Request::Audit(limit, reply) => {
                let _ = reply.send(self.store.audit(limit));
            }
            Request::Approve(ids, mode, reply) => {
                let ids = if mode == Mode::All {
                    self.nodes
                        .keys()
                        .filter(|k| !self.visible(k).is_empty())
                        .map(|k| k.1.clone())
                        .collect()
                } else {
                    ids
                };
                self.approve(ids, mode, Some(reply));
            }
            Request::Policies(reply) => {
                let _ = reply.send(self.store.policies());
            }
            Request::ApproveAt(ids, at, reply) => {
                let outcomes = ids.iter().map(|id| self.schedule(id, at)).collect();
                let _ = reply.send(outcomes);
            }
            Request::InstallWhenOnline(id, reply) => {
                let o = self.install_when_online(&id);
                let _ = reply.send(o);
            }
            Request::Resend(job_id, reply) => self.resend(job_id, reply),
            Request::Cancel(job_id, reply) => {
                let _ = reply.send(self.cancel(job_id));
            }
            Request::Snooze(id, until, reply) => {
                let res = self.find(&id).and_then(|k| {
                    self.store.set_snooze(&k.0, &k.1, until)?;
                    match until {
                        Some(u) => self.snoozes.insert(k.clone(), u),
                        None => self.snoozes.remove(&k),
                    };
                    for p in self.visible(&k) {
                        self.emit(Event::PendingAdded { pending: p });
                    }
                    Ok(())
                });
                let _ = reply.send(res);
            }
            Request::Skip(id, reply) => {
                let res = self.find(&id).and_then(|k| {
                    let Some(p) = self.visible(&k).into_iter().next() else {
                        return Err(Error::Config(format!("{id} has no pending update to skip")));
                    };
                    let before = self.visible_ids(&k);
                    self.store.set_skip(&k.0, &k.1, Some(&p.to_version))?;
                    self.skips.insert(k.clone(), p.to_version);
                    self.pending_diff(&k, before);
                    Ok(())
                });
                let _ = reply.send(res);
            }
            Request::AutoApprove(id, on, reply) => {
                let res = self.find(&id).and_then(|k| {
                    self.store.set_auto_approve(&k.0, &k.1, on)?;
                    if on {
                        self.auto.insert(k.clone());
                        self.maybe_auto(&k);
                    } else {
                        self.auto.remove(&k);
                    }
                    Ok(())
                });
                let _ = reply.send(res);
            }
            Request::QuietHours(q, reply) => {
                let res = self.store.set_quiet_hours(q.as_ref()).map(|_| {
                    self.quiet = q;
                });
                let _ = reply.send(res);
            }
            Request::CheckNow(id, reply) => {
                let _ = reply.send(self.check_now(&id));
            }
            Request::Refresh(reply) => {
                let mut waits = vec![];
                for rt in self.accounts.values() {
                    if let Some(ask) = &rt.sweep_ask {
                        let (tx, rx) = oneshot::channel();
                        if ask.try_send(tx).is_ok() {
                            waits.push(rx);
                        }
                    }
                }
                let _ = reply.send(Ok(waits));
            }
            Request::Shutdown(_) => {}
        }
    }

    async fn login(&mut self, account: &str, password: &str) -> Result<()> {
        let rest = self
            .accounts
            .get(account)
            .ok_or_else(|| Error::UnknownAccount(account.into()))?
            .rest
            .clone();
        let (s, a, p) = (
            self.cfg.secrets.clone(),
            account.to_string(),
            password.to_string(),
        );
        tokio::task::spawn_blocking(move || {
            s.delete(&a, secret_keys::REFRESH_TOKEN)?;
            s.set(&a, secret_keys::PASSWORD, &p)
        })
        .await
        .map_err(|e| Error::Config(format!("secret task: {e}")))??;
        if let Some(r) = rest {
            r.reset_login().await;
        }
        if let Some(ask) = self.accounts.get(account).and_then(|a| a.sweep_ask.clone()) {
            let (tx, _rx) = oneshot::channel();
            let _ = ask.try_send(tx);
        }
        Ok(())
    }

    fn find(&self, node_id: &str) -> Result<Key> {
        self.nodes
            .keys()
            .find(|k| k.1 == node_id)
            .cloned()
            .ok_or_else(|| Error::UnknownNode(parse::clean(node_id, 64)))
    }

    fn check_now(&mut self, node_id: &str) -> Result<oneshot::Receiver<()>> {
        let k = self.find(node_id)?;
        let rt = self
            .accounts
            .get(&k.0)
            .ok_or_else(|| Error::UnknownAccount(k.0.clone()))?;
        let (tx, rx) = oneshot::channel();
        if let Some(ask) = &rt.check_ask {
            ask.try_send((k.1.clone(), Some(tx)))
                .map_err(|_| Error::Network("too many checks queued".into()))?;
        } else if let Some(m) = rt.mqtt.clone() {
            let names = self
                .nodes
                .get(&k)
                .and_then(|n| n.ota.clone())
                .unwrap_or_default();
            let payload = json!({ names.service: { names.operation: "check" } });
            let wait = self.cfg.mqtt_ack_timeout;
            let node = k.1.clone();
            tokio::spawn(async move {
                if let Err(e) = m.publish_params(&node, &payload, wait).await {
                    tracing::debug!(%node, error = %e, "check not sent");
                }
                let _ = tx.send(());
            });
        }
        Ok(rx)
    }

    // ---- pending --------------------------------------------------------------

    /// The updates of a node that are offered for approval now.
    fn visible(&self, k: &Key) -> Vec<PendingUpdate> {
        let node = self.nodes.get(k);
        [self.node_pending.get(k), self.cloud_pending.get(k)]
            .into_iter()
            .flatten()
            .filter(|p| {
                !self
                    .approved
                    .contains(&(k.0.clone(), k.1.clone(), p.job_id.clone()))
            })
            .filter(|p| self.skips.get(k) != Some(&p.to_version))
            .filter(|p| node.and_then(|n| n.fw_version.as_ref()) != Some(&p.to_version))
            .map(|p| {
                let mut p = p.clone();
                p.snoozed_until = self.snoozes.get(k).copied().filter(|u| *u > now_ms());
                p.node_online = node.is_some_and(|n| n.online);
                p.node_name = node.and_then(|n| n.name.clone());
                p.from_version = node.and_then(|n| n.fw_version.clone()).or(p.from_version);
                p
            })
            .collect()
    }

    fn visible_ids(&self, k: &Key) -> Vec<String> {
        self.visible(k).into_iter().map(|p| p.job_id).collect()
    }

    fn pending_diff(&self, k: &Key, before: Vec<String>) {
        let now = self.visible(k);
        for p in &now {
            if !before.contains(&p.job_id) {
                self.emit(Event::PendingAdded { pending: p.clone() });
            }
        }
        for j in before {
            if !now.iter().any(|p| p.job_id == j) {
                self.emit(Event::PendingRemoved {
                    account: k.0.clone(),
                    node_id: k.1.clone(),
                    job_id: j,
                });
            }
        }
    }

    // ---- approvals --------------------------------------------------------------

    fn outcome(k: &Key, result: ApprovalResult) -> ApprovalOutcome {
        ApprovalOutcome {
            account: k.0.clone(),
            node_id: k.1.clone(),
            result,
        }
    }

    /// Decides for each node, records intents, and sends the commands off
    /// the actor; `reply` gets every outcome once all commands answered.
    fn approve(
        &mut self,
        ids: Vec<String>,
        mode: Mode,
        reply: Option<oneshot::Sender<Vec<ApprovalOutcome>>>,
    ) {
        let mut outcomes: Vec<Option<ApprovalOutcome>> = vec![];
        let mut to_send: Vec<(usize, i64)> = vec![];
        for id in ids {
            let idx = outcomes.len();
            let k = match self.find(&id) {
                Ok(k) => k,
                Err(e) => {
                    outcomes.push(Some(ApprovalOutcome {
                        account: String::new(),
                        node_id: parse::clean(&id, 64),
                        result: ApprovalResult::Refused {
                            reason: e.to_string(),
                        },
                    }));
                    continue;
                }
            };
            match self.decide(&k, mode, None) {
                Ok(job) if job.state == JobState::Requested => {
                    to_send.push((idx, job.id));
                    outcomes.push(None);
                }
                Ok(job) => outcomes.push(Some(Self::outcome(&k, ApprovalResult::Queued { job }))),
                Err(result) => outcomes.push(Some(Self::outcome(&k, result))),
            }
        }
        for o in outcomes.iter().flatten() {
            self.emit(Event::Approval { outcome: o.clone() });
        }
        let mut waits = vec![];
        for (idx, job_id) in to_send {
            if let Some(rx) = self.spawn_send(job_id, true) {
                waits.push((idx, rx));
            }
        }
        let Some(reply) = reply else { return };
        tokio::spawn(async move {
            for (idx, rx) in waits {
                if let Ok(o) = rx.await {
                    outcomes[idx] = Some(o);
                }
            }
            let _ = reply.send(outcomes.into_iter().flatten().collect());
        });
    }

    /// Checks one node and records its intent. `Err`: the outcome without a job.
    // The error is the outcome itself, built once per node: boxing it buys nothing.
    #[allow(clippy::result_large_err)]
    fn decide(
        &mut self,
        k: &Key,
        mode: Mode,
        force_state: Option<JobState>,
    ) -> std::result::Result<Job, ApprovalResult> {
        let pend = self.visible(k);
        let Some(p) = pend
            .iter()
            .find(|p| p.kind == UpdateKind::NodeSide)
            .or_else(|| pend.first())
            .cloned()
        else {
            if let Some(j) = self
                .jobs
                .values()
                .find(|r| r.job.account == k.0 && r.job.node_id == k.1)
            {
                let reason = format!(
                    "an update of this node is already {}",
                    j.job.state.name().replace('_', " ")
                );
                let _ = self.store.audit_refusal(
                    &self.cfg.actor_name,
                    &k.0,
                    &k.1,
                    &format!("refused: {reason}"),
                );
                return Err(ApprovalResult::Refused { reason });
            }
            return Err(ApprovalResult::UpToDate);
        };
        if mode != Mode::Explicit {
            if let Some(u) = p.snoozed_until {
                return Err(ApprovalResult::Skipped {
                    reason: format!("snoozed until {u}"),
                });
            }
        }
        let online = self.nodes.get(k).is_some_and(|n| n.online);
        let state = match force_state {
            Some(s) => s,
            None => {
                if !online {
                    let _ = self.store.audit_refusal(
                        &self.cfg.actor_name,
                        &k.0,
                        &k.1,
                        "offline: install when online offered",
                    );
                    return Err(ApprovalResult::Offline);
                }
                match self.quiet.as_ref().and_then(|q| quiet_until(q, now_ms())) {
                    Some(until) => JobState::Queued {
                        reason: QueueReason::QuietHours { until },
                    },
                    None => JobState::Requested,
                }
            }
        };
        let actor = if mode == Mode::Auto {
            format!("{} (auto-approve)", self.cfg.actor_name)
        } else {
            self.cfg.actor_name.clone()
        };
        let new = NewJob {
            account: k.0.clone(),
            node_id: k.1.clone(),
            ota_job_id: p.job_id.clone(),
            kind: p.kind,
            from_version: p.from_version.clone(),
            to_version: p.to_version.clone(),
            state,
            actor,
        };
        let before = self.visible_ids(k);
        match self.store.insert_intent(&new) {
            Ok(Ok(job)) => {
                self.approved
                    .insert((k.0.clone(), k.1.clone(), job.ota_job_id.clone()));
                self.jobs.insert(
                    job.id,
                    JobRt {
                        job: job.clone(),
                        last_change: Instant::now(),
                        last_ts: 0,
                        success_at: None,
                    },
                );
                self.emit(Event::JobChanged { job: job.clone() });
                self.pending_diff(k, before);
                self.update_account_sources(&k.0);
                Ok(job)
            }
            Ok(Err(reason)) => {
                // Another engine on this data directory got there first.
                self.approved
                    .insert((k.0.clone(), k.1.clone(), p.job_id.clone()));
                self.pending_diff(k, before);
                Err(ApprovalResult::Refused { reason })
            }
            Err(e) => Err(ApprovalResult::Failed {
                reason: format!("could not record the approval: {e}"),
            }),
        }
    }

    fn command_for(&self, job: &Job) -> Option<Command> {
        let rt = self.accounts.get(&job.account)?;
        Some(Command {
            kind: job.kind,
            node_id: job.node_id.clone(),
            ota_job_id: job.ota_job_id.clone(),
            names: self
                .nodes
                .get(&(job.account.clone(), job.node_id.clone()))
                .and_then(|n| n.ota.clone())
                .unwrap_or_default(),
            rest: rt.rest.clone(),
            mqtt: rt.mqtt.clone(),
            ack_timeout: self.cfg.mqtt_ack_timeout,
        })
    }

    /// Sends a `Requested` job's command in a task; the result comes back as
    /// [`Internal::CommandDone`] and the outcome through the returned receiver.
    fn spawn_send(
        &mut self,
        job_id: i64,
        want: bool,
    ) -> Option<oneshot::Receiver<ApprovalOutcome>> {
        let job = self.jobs.get(&job_id)?.job.clone();
        let (tx, rx) = oneshot::channel();
        let reply = want.then_some(tx);
        let Some(cmd) = self.command_for(&job) else {
            let _ = self.internal.send(Internal::CommandDone {
                job_id,
                result: Err(Error::UnknownAccount(job.account.clone())),
                reply,
            });
            return want.then_some(rx);
        };
        let internal = self.internal.clone();
        let sem = self.sends.clone();
        tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            let result = cmd.run().await;
            let _ = internal.send(Internal::CommandDone {
                job_id,
                result,
                reply,
            });
        });
        want.then_some(rx)
    }

    fn on_internal(&mut self, i: Internal) {
        match i {
            Internal::CommandDone {
                job_id,
                result,
                reply,
            } => {
                let Some(rt) = self.jobs.get_mut(&job_id) else {
                    return;
                };
                let k = (rt.job.account.clone(), rt.job.node_id.clone());
                let new_state = match &result {
                    Ok(()) => {
                        rt.job.sent_at = Some(now_ms());
                        JobState::Sent
                    }
                    Err(e) if e.maybe_delivered() => JobState::NotConfirmed {
                        reason: format!(
                            "{}; it may or may not have reached the node, needs your confirmation",
                            e.plain()
                        ),
                    },
                    Err(e) => JobState::Failed { reason: e.plain() },
                };
                // Facts may already have moved the job on (MQTT can be quicker than the PUT's answer).
                let keep = result.is_ok()
                    && !matches!(
                        rt.job.state,
                        JobState::Requested | JobState::NotConfirmed { .. }
                    );
                if !keep {
                    self.set_state(job_id, new_state, None);
                } else if let Some(rt) = self.jobs.get(&job_id) {
                    let job = rt.job.clone();
                    let _ = self.store.save_job(&job, false);
                }
                let job = self
                    .jobs
                    .get(&job_id)
                    .map(|r| r.job.clone())
                    .or_else(|| self.store.job(job_id).ok().flatten());
                let result = match (job, result) {
                    (Some(job), Ok(())) => ApprovalResult::Sent { job },
                    (Some(job), Err(e)) if e.maybe_delivered() => {
                        ApprovalResult::NotConfirmed { job }
                    }
                    (_, Err(e)) => ApprovalResult::Failed { reason: e.plain() },
                    (None, Ok(())) => ApprovalResult::Failed {
                        reason: "the job disappeared".into(),
                    },
                };
                let o = Self::outcome(&k, result);
                self.emit(Event::Approval { outcome: o.clone() });
                if let Some(r) = reply {
                    let _ = r.send(o);
                }
            }
        }
    }

    fn install_when_online(&mut self, id: &str) -> ApprovalOutcome {
        let k = match self.find(id) {
            Ok(k) => k,
            Err(e) => {
                return ApprovalOutcome {
                    account: String::new(),
                    node_id: parse::clean(id, 64),
                    result: ApprovalResult::Refused {
                        reason: e.to_string(),
                    },
                }
            }
        };
        let online = self.nodes.get(&k).is_some_and(|n| n.online);
        let o = match self.decide(
            &k,
            Mode::Explicit,
            Some(JobState::Queued {
                reason: QueueReason::WaitingForNode,
            }),
        ) {
            Ok(job) => {
                let id = job.id;
                if online {
                    self.release(id);
                }
                Self::outcome(&k, ApprovalResult::Queued { job })
            }
            Err(r) => Self::outcome(&k, r),
        };
        self.emit(Event::Approval { outcome: o.clone() });
        o
    }

    /// Records an approval to be sent at `at`.
    fn schedule(&mut self, id: &str, at: Millis) -> ApprovalOutcome {
        let k = match self.find(id) {
            Ok(k) => k,
            Err(e) => {
                return ApprovalOutcome {
                    account: String::new(),
                    node_id: parse::clean(id, 64),
                    result: ApprovalResult::Refused {
                        reason: e.to_string(),
                    },
                }
            }
        };
        let state = JobState::Queued {
            reason: QueueReason::Scheduled { at },
        };
        let o = match self.decide(&k, Mode::Explicit, Some(state)) {
            Ok(job) => Self::outcome(&k, ApprovalResult::Queued { job }),
            Err(r) => Self::outcome(&k, r),
        };
        self.emit(Event::Approval { outcome: o.clone() });
        o
    }

    /// A queued job whose wait is over: record it as requested, then send.
    fn release(&mut self, job_id: i64) {
        self.set_state(job_id, JobState::Requested, None);
        self.spawn_send(job_id, false);
    }

    fn resend(&mut self, job_id: i64, reply: oneshot::Sender<ApprovalOutcome>) {
        let Some(rt) = self.jobs.get(&job_id) else {
            let _ = reply.send(ApprovalOutcome {
                account: String::new(),
                node_id: String::new(),
                result: ApprovalResult::Refused {
                    reason: "no such unfinished job".into(),
                },
            });
            return;
        };
        let k = (rt.job.account.clone(), rt.job.node_id.clone());
        if !matches!(rt.job.state, JobState::NotConfirmed { .. }) {
            let _ = reply.send(Self::outcome(
                &k,
                ApprovalResult::Refused {
                    reason: format!(
                        "the job is {}, not waiting for confirmation",
                        rt.job.state.name()
                    ),
                },
            ));
            return;
        }
        let _ = self
            .store
            .audit_refusal(&self.cfg.actor_name, &k.0, &k.1, "confirmed re-send");
        self.set_state(job_id, JobState::Requested, None);
        if let Some(rx) = self.spawn_send(job_id, true) {
            tokio::spawn(async move {
                if let Ok(o) = rx.await {
                    let _ = reply.send(o);
                }
            });
        }
    }

    fn cancel(&mut self, job_id: i64) -> Result<Job> {
        let rt = self
            .jobs
            .get(&job_id)
            .ok_or_else(|| Error::Config("no such unfinished job".into()))?;
        if !matches!(
            rt.job.state,
            JobState::Queued { .. } | JobState::NotConfirmed { .. } | JobState::Stuck
        ) {
            return Err(Error::Config(format!(
                "a job that is {} cannot be cancelled: RainMaker has no cancel once a node started",
                rt.job.state.name().replace('_', " ")
            )));
        }
        self.set_state(job_id, JobState::Cancelled, None);
        self.store.job(job_id)?.ok_or(Error::EngineStopped)
    }

    fn maybe_auto(&mut self, k: &Key) {
        if !self.auto.contains(k) || !self.nodes.get(k).is_some_and(|n| n.online) {
            return;
        }
        if self
            .jobs
            .values()
            .any(|r| r.job.account == k.0 && r.job.node_id == k.1)
        {
            return;
        }
        if self.visible(k).is_empty() {
            return;
        }
        self.approve(vec![k.1.clone()], Mode::Auto, None);
    }

    // ---- job state --------------------------------------------------------------

    /// Changes a job's state and/or text, stores it, then tells everyone.
    fn set_state(&mut self, job_id: i64, state: JobState, text: Option<String>) {
        let Some(rt) = self.jobs.get_mut(&job_id) else {
            return;
        };
        let text_changed = text
            .as_ref()
            .is_some_and(|t| Some(t) != rt.job.progress_text.as_ref());
        let state_changed = rt.job.state != state;
        if !state_changed && !text_changed {
            return;
        }
        if let Some(t) = text {
            rt.job.percent = if matches!(state, JobState::InProgress) {
                percent_from_text(&t)
            } else {
                None
            };
            rt.job.progress_text = Some(t);
        }
        rt.job.state = state;
        rt.job.updated_at = now_ms();
        rt.last_change = Instant::now();
        if rt.job.state.is_terminal() {
            rt.job.finished_at = Some(rt.job.updated_at);
        }
        let job = rt.job.clone();
        if let Err(e) = self.store.save_job(&job, true) {
            tracing::error!(error = %e, job = job.id, "could not store a job change");
        }
        let k = (job.account.clone(), job.node_id.clone());
        if job.state.is_terminal() {
            let before = self.visible_ids(&k);
            self.jobs.remove(&job_id);
            if matches!(job.state, JobState::Failed { .. } | JobState::Cancelled) {
                self.approved
                    .remove(&(k.0.clone(), k.1.clone(), job.ota_job_id.clone()));
            }
            self.pending_diff(&k, before);
        }
        self.emit(Event::JobChanged { job });
        self.update_account_sources(&k.0);
    }

    // The fields of one `Fact::OtaStatus`, taken apart where it is matched.
    #[allow(clippy::too_many_arguments)]
    fn on_status(
        &mut self,
        account: &str,
        node_id: &str,
        job_id: &str,
        status: &str,
        text: &str,
        ts: i64,
        via: Via,
    ) {
        let Some((&id, rt)) = self.jobs.iter_mut().find(|(_, r)| {
            r.job.account == account && r.job.node_id == node_id && r.job.ota_job_id == job_id
        }) else {
            return;
        };
        if matches!(rt.job.state, JobState::Queued { .. }) {
            return;
        }
        // A node's clock can be wrong: 1970 after a reboot before time sync,
        // or far ahead until a bad sync is corrected. A stamp from before the
        // job existed or from the future orders nothing; trusting it would
        // make every later (true) report look older and freeze the job.
        let plausible = ts >= rt.job.created_at - CLOCK_SLACK_MS && ts <= now_ms() + CLOCK_SLACK_MS;
        if ts > 0 && !plausible {
            tracing::debug!(
                node = node_id,
                status,
                ts,
                "status report with an implausible time; not used for ordering"
            );
        }
        if ts > 0 && plausible {
            // Nodes stamp in whole seconds, the cloud in milliseconds: only a
            // report from an earlier second is known to be older.
            if ts / 1000 < rt.last_ts / 1000 {
                tracing::debug!(node = node_id, status, "ignoring an older status report");
                return;
            }
            rt.last_ts = rt.last_ts.max(ts);
        }
        let cur = rt.job.state.clone();
        let waiting_for_start = matches!(
            cur,
            JobState::Requested | JobState::Sent | JobState::NotConfirmed { .. }
        );
        let text_opt = (!text.is_empty()).then(|| text.to_string());
        let class = classify_status(status, text);
        let next = match class {
            StatusClass::Triggered | StatusClass::Unknown => None,
            // The node's own "waiting for approval" from before our start.
            StatusClass::Delayed
                if text.to_ascii_lowercase().contains("waiting for approval")
                    && waiting_for_start =>
            {
                return;
            }
            StatusClass::Started if !waiting_for_start => None,
            StatusClass::Started => Some(JobState::Started),
            StatusClass::InProgress => Some(JobState::InProgress),
            StatusClass::Delayed => Some(JobState::Delayed),
            StatusClass::Success => {
                let k = (account.to_string(), node_id.to_string());
                let fw = self.nodes.get(&k).and_then(|n| n.fw_version.clone());
                let (to, from) = (rt.job.to_version.clone(), rt.job.from_version.clone());
                if fw.is_some() && fw == from && fw.as_ref() != Some(&to) {
                    // Reported success, but the node still says it runs the old
                    // version: wait for it to report again before believing either.
                    if rt.success_at.is_none() {
                        rt.success_at = Some((Instant::now(), now_ms()));
                        tracing::info!(
                            node = node_id,
                            "success reported; confirming the running version"
                        );
                        if let Some(ask) =
                            self.accounts.get(account).and_then(|a| a.sweep_ask.clone())
                        {
                            let (tx, _rx) = oneshot::channel();
                            let _ = ask.try_send(tx);
                        }
                    }
                    self.set_state(
                        id,
                        JobState::InProgress,
                        Some("Success reported; checking which version the node runs".into()),
                    );
                    return;
                }
                Some(JobState::Success)
            }
            StatusClass::Failed(r) => Some(JobState::Failed { reason: r }),
            StatusClass::Rejected(r) => Some(JobState::Rejected { reason: r }),
            StatusClass::RolledBack => Some(JobState::RolledBack),
        };
        tracing::debug!(node = node_id, ?via, status, text, "job status");
        let state = next.unwrap_or(cur);
        self.set_state(id, state, text_opt);
    }

    // ---- facts -------------------------------------------------------------------

    fn on_fact(&mut self, f: Fact) {
        match f {
            Fact::Nodes {
                account,
                nodes,
                complete,
                observed_at,
                done,
            } => {
                if !self.accounts.contains_key(&account) {
                    return;
                }
                let mut seen = HashSet::new();
                let mut impact = SourcesImpact::None;
                for r in nodes {
                    seen.insert(r.node_id.clone());
                    impact = impact.max(self.apply_node(&account, r, observed_at));
                }
                if complete {
                    let gone: Vec<Key> = self
                        .nodes
                        .keys()
                        .filter(|k| k.0 == account && !seen.contains(&k.1))
                        .cloned()
                        .collect();
                    for k in gone {
                        let before = self.visible_ids(&k);
                        self.nodes.remove(&k);
                        self.node_pending.remove(&k);
                        self.cloud_pending.remove(&k);
                        self.pending_diff(&k, before);
                    }
                    impact = SourcesImpact::Now;
                }
                // Recomputing the sources walks every node of the account, so
                // it is not done for each of the thousands of param reports a
                // fleet sends, only when something they use changed.
                match impact {
                    SourcesImpact::Now => {
                        self.sources_stale.remove(&account);
                        self.update_account_sources(&account);
                    }
                    SourcesImpact::NodeAdded => {
                        self.sources_stale.insert(account.clone());
                    }
                    SourcesImpact::None => {}
                }
                if let Some(d) = done {
                    let _ = d.send(());
                }
            }
            Fact::CloudOffer {
                account,
                node_id,
                offer,
                done,
            } => {
                let k = (account, node_id);
                if self.nodes.contains_key(&k) {
                    let before = self.visible_ids(&k);
                    self.apply_offer(&k, offer);
                    self.pending_diff(&k, before);
                    self.maybe_auto(&k);
                }
                if let Some(d) = done {
                    let _ = d.send(());
                }
            }
            Fact::OtaStatus {
                account,
                node_id,
                job_id,
                status,
                text,
                ts,
                via,
            } => self.on_status(&account, &node_id, &job_id, &status, &text, ts, via),
            Fact::Source {
                account,
                source,
                state,
            } => self.set_source_state(&account, source, state),
        }
    }

    fn apply_offer(&mut self, k: &Key, offer: Option<CloudOffer>) {
        match offer {
            Some(o) => {
                let first_seen = self
                    .cloud_pending
                    .get(k)
                    .filter(|p| p.job_id == o.job_id)
                    .map(|p| p.first_seen)
                    .unwrap_or_else(now_ms);
                self.clear_stale_skip(k, &o.fw_version);
                self.cloud_pending.insert(
                    k.clone(),
                    PendingUpdate {
                        account: k.0.clone(),
                        node_id: k.1.clone(),
                        node_name: None,
                        job_id: o.job_id,
                        from_version: None,
                        to_version: o.fw_version,
                        release_note: o.description,
                        size: o.file_size,
                        kind: UpdateKind::CloudApproval,
                        first_seen,
                        snoozed_until: None,
                        node_online: false,
                    },
                );
            }
            None => {
                self.cloud_pending.remove(k);
            }
        }
    }

    /// A skip holds for one version: another version clears it.
    fn clear_stale_skip(&mut self, k: &Key, version: &str) {
        if self.skips.get(k).is_some_and(|v| v != version) {
            self.skips.remove(k);
            if let Err(e) = self.store.set_skip(&k.0, &k.1, None) {
                tracing::warn!(error = %e, "could not clear a skip");
            }
        }
    }

    fn apply_node(&mut self, account: &str, r: NodeReport, observed_at: Millis) -> SourcesImpact {
        let k = (account.to_string(), r.node_id.clone());
        let before = self.visible_ids(&k);
        let now = now_ms();
        let is_new = !self.nodes.contains_key(&k);
        let node = self.nodes.entry(k.clone()).or_insert_with(|| Node {
            account: account.to_string(),
            node_id: r.node_id.clone(),
            name: None,
            model: None,
            fw_version: None,
            online: false,
            ota: None,
            last_seen: now,
        });
        let old = node.clone();
        if let Some(c) = r.config {
            node.name = c.name.or(node.name.take());
            node.model = c.model.or(node.model.take());
            node.fw_version = c.fw_version.or(node.fw_version.take());
            node.ota = c.ota.or(node.ota.take());
        }
        if let Some(fw) = r.fw_version {
            node.fw_version = Some(fw);
        }
        if let Some(o) = r.online {
            node.online = o;
        }
        node.last_seen = now;
        let node = node.clone();
        let came_online = node.online && !old.online;
        let mut changed = node != old;
        if changed && node.last_seen != old.last_seen && {
            let mut a = node.clone();
            a.last_seen = old.last_seen;
            a == old
        } {
            changed = false; // only the timestamp moved: not worth an event
        }
        if changed {
            if let Err(e) = self.store.save_node(&node) {
                tracing::warn!(error = %e, "could not remember a node");
            }
            self.emit(Event::NodeUpdated { node: node.clone() });
        }
        match r.info {
            InfoReport::Pending(i) => {
                self.clear_stale_skip(&k, &i.fw_version);
                let first_seen = self
                    .node_pending
                    .get(&k)
                    .filter(|p| p.job_id == i.job_id)
                    .map(|p| p.first_seen)
                    .unwrap_or(now);
                self.node_pending.insert(
                    k.clone(),
                    PendingUpdate {
                        account: k.0.clone(),
                        node_id: k.1.clone(),
                        node_name: None,
                        job_id: i.job_id,
                        from_version: None,
                        to_version: i.fw_version,
                        release_note: None,
                        size: None,
                        kind: UpdateKind::NodeSide,
                        first_seen,
                        snoozed_until: None,
                        node_online: false,
                    },
                );
            }
            InfoReport::Empty => {
                self.node_pending.remove(&k);
            }
            InfoReport::Unknown => {}
        }
        self.pending_diff(&k, before);
        // Jobs of this node: the running version settles a reported success,
        // connectivity changes the poll pace, coming online releases queued jobs.
        let ids: Vec<i64> = self
            .jobs
            .iter()
            .filter(|(_, r)| r.job.account == k.0 && r.job.node_id == k.1)
            .map(|(id, _)| *id)
            .collect();
        let impact = if node.online != old.online && !ids.is_empty() {
            SourcesImpact::Now
        } else if is_new {
            SourcesImpact::NodeAdded
        } else {
            SourcesImpact::None
        };
        for id in ids {
            let Some(rt) = self.jobs.get(&id) else {
                continue;
            };
            let job = rt.job.clone();
            if let Some((_, at_ms)) = rt.success_at {
                if node.fw_version.as_ref() == Some(&job.to_version) {
                    self.set_state(
                        id,
                        JobState::Success,
                        Some("Running the new firmware".into()),
                    );
                } else if observed_at > at_ms
                    && node.fw_version.is_some()
                    && node.fw_version == job.from_version
                {
                    self.set_state(
                        id,
                        JobState::RolledBack,
                        Some("The node came back on its old firmware".into()),
                    );
                }
                continue;
            }
            if came_online
                && job.state
                    == (JobState::Queued {
                        reason: QueueReason::WaitingForNode,
                    })
            {
                self.release(id);
            }
        }
        if came_online || changed {
            self.maybe_auto(&k);
        }
        impact
    }

    fn on_tick(&mut self) {
        for account in std::mem::take(&mut self.sources_stale) {
            self.update_account_sources(&account);
        }
        let now = now_ms();
        let mut release = vec![];
        let mut stuck = vec![];
        let mut settle = vec![];
        let mut wait_for_node = vec![];
        for (id, rt) in &self.jobs {
            match &rt.job.state {
                JobState::Queued {
                    reason: QueueReason::QuietHours { until },
                } if *until <= now => release.push(*id),
                JobState::Queued {
                    reason: QueueReason::Scheduled { at },
                } if *at <= now => {
                    let online = self
                        .nodes
                        .get(&(rt.job.account.clone(), rt.job.node_id.clone()))
                        .is_some_and(|n| n.online);
                    if online {
                        release.push(*id)
                    } else {
                        wait_for_node.push(*id)
                    }
                }
                JobState::Sent | JobState::Started | JobState::InProgress | JobState::Delayed
                    if rt.last_change.elapsed() >= self.cfg.stuck_after =>
                {
                    stuck.push(*id)
                }
                _ => {}
            }
            if let Some((at, _)) = rt.success_at {
                if at.elapsed() >= self.cfg.rollback_grace {
                    settle.push(*id);
                }
            }
        }
        for id in release {
            self.release(id);
        }
        for id in wait_for_node {
            let waiting = JobState::Queued {
                reason: QueueReason::WaitingForNode,
            };
            self.set_state(id, waiting, None);
        }
        for id in stuck {
            self.set_state(id, JobState::Stuck, None);
        }
        for id in settle {
            let Some(rt) = self.jobs.get(&id) else {
                continue;
            };
            let k = (rt.job.account.clone(), rt.job.node_id.clone());
            let fw = self.nodes.get(&k).and_then(|n| n.fw_version.clone());
            if fw.is_some() && fw == rt.job.from_version {
                self.set_state(
                    id,
                    JobState::RolledBack,
                    Some("The node still runs its old firmware".into()),
                );
            } else {
                self.set_state(id, JobState::Success, None);
            }
        }
    }
}
