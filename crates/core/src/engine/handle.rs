//! The views' handle on the engine: one request type per thing a view can
//! ask, sent to the actor and answered on a oneshot channel.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot};

use super::core::Mode;
use crate::error::{Error, Result};
use crate::event::{AccountState, Event, Freshness};
use crate::model::{
    AccountConfig, ApprovalOutcome, HistoryFilter, Job, JobEvent, Millis, Node, NodeRef,
    PendingUpdate, Policies, QuietHours,
};
use crate::rollout::{Rollout, RolloutAction, RolloutPlan};
use crate::secrets::SecretStore;
use crate::store::AuditEntry;

pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

pub(crate) enum Request {
    AddAccount(Box<AccountConfig>, Reply<()>),
    RemoveAccount(String, Reply<()>),
    Accounts(Reply<Vec<(AccountConfig, AccountState)>>),
    Freshness(Reply<Vec<(String, Freshness)>>),
    Login(String, String, Reply<()>),
    Nodes(Reply<Vec<Node>>),
    Pending(Reply<Vec<PendingUpdate>>),
    Jobs(Reply<Vec<Job>>),
    History(HistoryFilter, Reply<Vec<Job>>),
    JobEvents(i64, Reply<Vec<JobEvent>>),
    Audit(u32, Reply<Vec<AuditEntry>>),
    Approve(Vec<NodeRef>, Mode, oneshot::Sender<Vec<ApprovalOutcome>>),
    ApproveAt(Vec<NodeRef>, Millis, oneshot::Sender<Vec<ApprovalOutcome>>),
    Policies(Reply<Policies>),
    InstallWhenOnline(NodeRef, oneshot::Sender<ApprovalOutcome>),
    Resend(i64, oneshot::Sender<ApprovalOutcome>),
    Cancel(i64, Reply<Job>),
    Snooze(NodeRef, Option<Millis>, Reply<()>),
    Skip(NodeRef, Reply<()>),
    AutoApprove(NodeRef, bool, Reply<()>),
    QuietHours(Option<QuietHours>, Reply<()>),
    NotificationsPaused(Reply<bool>),
    SetNotificationsPaused(bool, Reply<()>),
    CheckNow(NodeRef, Reply<oneshot::Receiver<()>>),
    Refresh(Reply<Vec<oneshot::Receiver<std::result::Result<(), String>>>>),
    Resumed(Reply<Vec<oneshot::Receiver<std::result::Result<(), String>>>>),
    StartRollout(Box<RolloutPlan>, Reply<Rollout>),
    Rollouts(Reply<Vec<Rollout>>),
    RolloutAction(Option<i64>, RolloutAction, Reply<Rollout>),
    Shutdown(oneshot::Sender<()>),
}

fn refs<N: Into<NodeRef>>(nodes: impl IntoIterator<Item = N>) -> Vec<NodeRef> {
    nodes.into_iter().map(Into::into).collect()
}

/// The views' handle on the engine. Cheap to clone; the engine stops when
/// the last handle is dropped or [`EngineHandle::shutdown`] is called.
#[derive(Clone)]
pub struct EngineHandle {
    pub(crate) tx: mpsc::Sender<Request>,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) secrets: Arc<dyn SecretStore>,
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

    /// How fresh each running account's device states are (live, as of a
    /// sweep, unknown since...), by account name.
    pub async fn freshness(&self) -> Result<Vec<(String, Freshness)>> {
        self.ask(Request::Freshness).await
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
    pub async fn approve<N: Into<NodeRef>>(
        &self,
        nodes: impl IntoIterator<Item = N>,
    ) -> Result<Vec<ApprovalOutcome>> {
        let nodes = refs(nodes);
        self.ask_plain(|r| Request::Approve(nodes, Mode::Explicit, r))
            .await
    }

    /// Approves now, to be sent at `at` ("install tonight"). Nodes offline
    /// at that time get it when they come online.
    pub async fn approve_at<N: Into<NodeRef>>(
        &self,
        nodes: impl IntoIterator<Item = N>,
        at: Millis,
    ) -> Result<Vec<ApprovalOutcome>> {
        let nodes = refs(nodes);
        self.ask_plain(|r| Request::ApproveAt(nodes, at, r)).await
    }

    /// Approves every visible pending update that is not snoozed or skipped.
    pub async fn approve_all(&self) -> Result<Vec<ApprovalOutcome>> {
        self.ask_plain(|r| Request::Approve(vec![], Mode::All, r))
            .await
    }

    /// Approves a node's update now, to be sent when the node comes online.
    pub async fn install_when_online(&self, node: impl Into<NodeRef>) -> Result<ApprovalOutcome> {
        let node = node.into();
        self.ask_plain(|r| Request::InstallWhenOnline(node, r))
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
    pub async fn snooze(&self, node: impl Into<NodeRef>, until: Option<Millis>) -> Result<()> {
        let node = node.into();
        self.ask(|r| Request::Snooze(node, until, r)).await
    }

    /// Skips the version now offered to a node (cleared when another version appears).
    pub async fn skip(&self, node: impl Into<NodeRef>) -> Result<()> {
        let node = node.into();
        self.ask(|r| Request::Skip(node, r)).await
    }

    /// Per-node auto-approve (opt-in).
    pub async fn set_auto_approve(&self, node: impl Into<NodeRef>, on: bool) -> Result<()> {
        let node = node.into();
        self.ask(|r| Request::AutoApprove(node, on, r)).await
    }

    /// Every policy in force (auto-approve, quiet hours, skips, snoozes).
    pub async fn policies(&self) -> Result<Policies> {
        self.ask(Request::Policies).await
    }

    /// Sets or clears quiet hours; every subscriber hears
    /// [`Event::QuietHoursChanged`].
    pub async fn set_quiet_hours(&self, q: Option<QuietHours>) -> Result<()> {
        if let Some(q) = &q {
            crate::policy::check_quiet_hours(q)?;
        }
        self.ask(|r| Request::QuietHours(q, r)).await
    }

    /// Whether notifications are paused. Kept in the data directory, so the
    /// app and `greenlight watch` share it and it survives a restart.
    pub async fn notifications_paused(&self) -> Result<bool> {
        self.ask(Request::NotificationsPaused).await
    }

    /// Pauses or resumes notifications; every subscriber (the app's tray,
    /// the daemon's notifier) hears [`Event::NotificationsPaused`].
    pub async fn set_notifications_paused(&self, paused: bool) -> Result<()> {
        self.ask(|r| Request::SetNotificationsPaused(paused, r))
            .await
    }

    /// Checks one node for updates now (cloud jobs through REST; node-side
    /// through `Operation=check` over MQTT); returns when the answer is in.
    pub async fn check_now(&self, node: impl Into<NodeRef>) -> Result<()> {
        let node = node.into();
        let rx = self.ask(|r| Request::CheckNow(node, r)).await?;
        let _ = rx.await;
        Ok(())
    }

    /// One node sweep of every REST account now; returns when applied.
    pub async fn refresh(&self) -> Result<()> {
        let waits = self.ask(Request::Refresh).await?;
        Self::sweeps_done(waits).await
    }

    /// The machine slept or the OS suspended the app: every MQTT connection
    /// is dropped and dialled again now (its socket is likely dead, and the
    /// keep-alive would take a minute to notice), and every REST account
    /// sweeps its nodes and looks again at every node's cloud offers, so
    /// what appeared or ended while away is seen now rather than at the
    /// next scheduled sweep. What changed arrives as ordinary events
    /// (offers, job ends), which is what the notifiers act on. Returns when
    /// the node sweeps are applied (the cloud look continues after).
    pub async fn resumed(&self) -> Result<()> {
        let waits = self.ask(Request::Resumed).await?;
        Self::sweeps_done(waits).await
    }

    async fn sweeps_done(
        waits: Vec<oneshot::Receiver<std::result::Result<(), String>>>,
    ) -> Result<()> {
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
            Err(Error::Refresh(errors.join(" ")))
        }
    }

    /// Starts a staged approval ("approve all, carefully"): the first
    /// device is approved now; the rest follow as the rollout's rules allow
    /// (see [`crate::rollout`]). Refused while another rollout runs or is
    /// stopped. Follow it with [`Event::RolloutChanged`].
    pub async fn start_rollout(&self, plan: RolloutPlan) -> Result<Rollout> {
        self.ask(|r| Request::StartRollout(Box::new(plan), r)).await
    }

    /// The running or stopped rollout first, then the last ended ones.
    pub async fn rollouts(&self) -> Result<Vec<Rollout>> {
        self.ask(Request::Rollouts).await
    }

    /// Resumes a stopped rollout, retries its failed devices, or cancels
    /// it. `id`: the rollout the user saw (refused if another one is the
    /// active one now); `None`: the active one.
    pub async fn rollout_action(&self, id: Option<i64>, action: RolloutAction) -> Result<Rollout> {
        self.ask(|r| Request::RolloutAction(id, action, r)).await
    }

    /// Stops the engine and its sources.
    pub async fn shutdown(&self) {
        let _ = self.ask_plain(Request::Shutdown).await;
    }
}
