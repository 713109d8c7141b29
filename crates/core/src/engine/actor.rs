//! The actor: the engine's I/O shell around the state core. It owns the
//! channels, the timer, the store and the accounts' sources; for each fact,
//! request or tick it asks the core, then performs the core's effects in
//! order — store writes first, then events, then commands. A write that
//! fails holds back the events and commands that depend on it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};

use super::accounts::{AccountRt, Prepared};
use super::commands::Command;
use super::core::{CommandResult, Core, Effect, Mode, Slot, StatusFact};
use super::handle::{Reply, Request};
use super::{Clock, EngineConfig};
use crate::error::{Error, Result};
use crate::event::{AccountState, Event};
use crate::model::{ApprovalOutcome, ApprovalResult, Job, NodeRef, OtaNames};
use crate::rainmaker::Fact;
use crate::store::Store;

/// Messages from the actor's own tasks.
pub(crate) enum Internal {
    /// A command answered.
    CommandDone { job_id: i64, result: CommandResult },
    /// An account's sources were prepared (or could not be).
    Prepared {
        name: String,
        gen: u64,
        prep: Box<Result<Prepared>>,
        reply: Option<Reply<()>>,
    },
}

pub(crate) struct Actor {
    pub(crate) cfg: EngineConfig,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) core: Core,
    pub(crate) store: Store,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) facts: mpsc::Sender<Fact>,
    pub(crate) internal: mpsc::UnboundedSender<Internal>,
    pub(crate) sends: Arc<Semaphore>,
    pub(crate) accounts: BTreeMap<String, AccountRt>,
    pub(crate) gen: u64,
    /// Approvals waiting for their command's answer, by job id.
    pub(crate) waiters: HashMap<i64, oneshot::Sender<ApprovalOutcome>>,
    /// Accounts that gained nodes since their REST sources last heard of
    /// it; brought up to date on the next tick.
    pub(crate) sources_stale: HashSet<String>,
}

impl Actor {
    /// Sends an event that depends on no store write.
    pub(crate) fn emit_now(&self, e: Event) {
        let _ = self.events.send(e);
    }

    pub(crate) async fn run(
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
                    Some(r) => self.on_request(r),
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
            self.emit_now(Event::AccountState {
                account: name,
                state: AccountState::Stopped,
            });
        }
    }

    /// Performs whatever the core has decided so far.
    pub(crate) fn flush(&mut self) {
        let effects = self.core.take();
        self.perform(effects);
    }

    /// Performs the core's effects in order (see the module docs).
    pub(crate) fn perform(&mut self, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        let mut written = true;
        while let Some(e) = queue.pop_front() {
            match e {
                Effect::SaveJob(job) => {
                    written = self.write("a job change", |s| s.save_job(&job, true));
                }
                Effect::SaveNode(node) => {
                    let now = self.clock.now();
                    written = self.write("a node", |s| s.save_node(&node, now));
                }
                Effect::SaveOffers { key, offers } => {
                    let now = self.clock.now();
                    written = self.write("a node's offers", |s| {
                        s.save_offers(&key.0, &key.1, &offers, now)
                    });
                }
                Effect::ClearSkip((account, node)) => {
                    written = self.write("a skip", |s| s.set_skip(&account, &node, None));
                }
                Effect::Emit(ev) if written => {
                    let _ = self.events.send(ev);
                }
                Effect::Emit(_) => {}
                Effect::Send { job, names } if written => self.spawn_send(job, names),
                Effect::Send { job, .. } => {
                    if let Some(w) = self.waiters.remove(&job.id) {
                        let _ = w.send(ApprovalOutcome {
                            account: job.account,
                            node_id: job.node_id,
                            result: ApprovalResult::Failed {
                                reason: "not sent — the approval could not be recorded".into(),
                            },
                        });
                    }
                }
                Effect::Sources { account, now: true } => {
                    self.sources_stale.remove(&account);
                    self.update_account_sources(&account);
                }
                Effect::Sources {
                    account,
                    now: false,
                } => {
                    self.sources_stale.insert(account);
                }
                Effect::Sweep(account) => self.ask_sweep(&account),
                Effect::AutoApprove(k) => {
                    let now = self.clock.now();
                    let _ = self.core.approve(
                        vec![NodeRef::new(&k.0, &k.1)],
                        Mode::Auto,
                        &mut self.store,
                        now,
                    );
                    queue.extend(self.core.take());
                }
            }
        }
    }

    fn write(&mut self, what: &str, f: impl FnOnce(&mut Store) -> Result<()>) -> bool {
        match f(&mut self.store) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "could not store {what}; not announcing it");
                false
            }
        }
    }

    fn spawn_send(&mut self, job: Job, names: OtaNames) {
        let job_id = job.id;
        let internal = self.internal.clone();
        let Some(rt) = self.accounts.get(&job.account) else {
            let _ = internal.send(Internal::CommandDone {
                job_id,
                result: Err(Error::UnknownAccount(job.account.clone())),
            });
            return;
        };
        let cmd = Command {
            kind: job.kind,
            node_id: job.node_id.clone(),
            ota_job_id: job.ota_job_id.clone(),
            names,
            rest: rt.rest.clone(),
            mqtt: rt.mqtt.clone(),
            ack_timeout: self.cfg.mqtt_ack_timeout,
        };
        let sem = self.sends.clone();
        tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            let result = cmd.run().await;
            let _ = internal.send(Internal::CommandDone { job_id, result });
        });
    }

    fn on_internal(&mut self, i: Internal) {
        match i {
            Internal::CommandDone { job_id, result } => {
                let now = self.clock.now();
                let o = self.core.command_done(job_id, result, now);
                self.flush();
                if let (Some(o), Some(w)) = (o, self.waiters.remove(&job_id)) {
                    let _ = w.send(o);
                }
            }
            Internal::Prepared {
                name,
                gen,
                prep,
                reply,
            } => self.on_prepared(name, gen, *prep, reply),
        }
    }

    fn on_tick(&mut self) {
        for account in std::mem::take(&mut self.sources_stale) {
            self.update_account_sources(&account);
        }
        let now = self.clock.now();
        self.core.tick(now);
        self.core.rollout_step(&mut self.store, now);
        self.flush();
    }

    fn on_fact(&mut self, f: Fact) {
        let now = self.clock.now();
        match f {
            Fact::Nodes {
                account,
                nodes,
                complete,
                observed_at,
                via,
                done,
            } => {
                self.core
                    .node_reports(&account, nodes, complete, observed_at, via, now);
                self.flush();
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
                self.core.cloud_offer(&(account, node_id), offer, now);
                self.flush();
                if let Some(d) = done {
                    let _ = d.send(());
                }
            }
            Fact::CheckProgress { account, checking } => {
                self.core.link_checking(&account, checking);
                self.flush();
            }
            Fact::OtaStatus {
                account,
                node_id,
                job_id,
                status,
                text,
                ts,
                via,
            } => {
                self.core.ota_status(
                    StatusFact {
                        account,
                        node_id,
                        job_id,
                        status,
                        text,
                        ts,
                        via,
                    },
                    now,
                );
                self.flush();
            }
            Fact::JobWindow {
                account,
                node_id,
                job_id,
                window,
            } => {
                self.core
                    .job_window(&(account, node_id), &job_id, window, now);
                self.flush();
            }
            Fact::Source {
                account,
                source,
                state,
                done,
            } => {
                self.set_source_state(&account, source, state);
                if let Some(d) = done {
                    let _ = d.send(());
                }
            }
        }
    }

    fn on_request(&mut self, r: Request) {
        let now = self.clock.now();
        match r {
            Request::AddAccount(cfg, reply) => match self.store.save_account(&cfg) {
                Ok(()) => self.start_account(*cfg, Some(reply)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Request::RemoveAccount(name, reply) => self.remove_account(&name, reply),
            Request::Accounts(reply) => {
                let v = self
                    .accounts
                    .values()
                    .map(|a| (a.cfg.clone(), a.state.clone()))
                    .collect();
                let _ = reply.send(Ok(v));
            }
            Request::Freshness(reply) => {
                let v = self
                    .accounts
                    .keys()
                    .map(|a| (a.clone(), self.core.freshness(a)))
                    .collect();
                let _ = reply.send(Ok(v));
            }
            Request::Login(account, password, reply) => self.login(&account, &password, reply),
            Request::Nodes(reply) => {
                let _ = reply.send(Ok(self.core.nodes()));
            }
            Request::Pending(reply) => {
                let _ = reply.send(Ok(self.core.pending(now)));
            }
            Request::Jobs(reply) => {
                let _ = reply.send(Ok(self.core.jobs()));
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
                    self.core.approvable(now)
                } else {
                    ids
                };
                let slots = self.core.approve(ids, mode, &mut self.store, now);
                let mut outcomes: Vec<Option<ApprovalOutcome>> = vec![];
                let mut waits = vec![];
                for (i, s) in slots.into_iter().enumerate() {
                    match s {
                        Slot::Done(o) => outcomes.push(Some(*o)),
                        Slot::Sending(job_id) => {
                            let (tx, rx) = oneshot::channel();
                            self.waiters.insert(job_id, tx);
                            waits.push((i, rx));
                            outcomes.push(None);
                        }
                    }
                }
                self.flush();
                tokio::spawn(async move {
                    for (i, rx) in waits {
                        if let Ok(o) = rx.await {
                            outcomes[i] = Some(o);
                        }
                    }
                    let _ = reply.send(outcomes.into_iter().flatten().collect());
                });
            }
            Request::Policies(reply) => {
                let _ = reply.send(self.store.policies());
            }
            Request::ApproveAt(ids, at, reply) => {
                let outcomes = ids
                    .iter()
                    .map(|id| self.core.schedule(id, at, &mut self.store, now))
                    .collect();
                self.flush();
                let _ = reply.send(outcomes);
            }
            Request::InstallWhenOnline(id, reply) => {
                let o = self.core.install_when_online(&id, &mut self.store, now);
                self.flush();
                let _ = reply.send(o);
            }
            Request::Resend(job_id, reply) => {
                match self.core.resend(job_id, &mut self.store, now) {
                    Ok(()) => {
                        self.waiters.insert(job_id, reply);
                    }
                    Err(o) => {
                        let _ = reply.send(o);
                    }
                }
                self.flush();
            }
            Request::Cancel(job_id, reply) => {
                let r = self.core.cancel(job_id, now);
                self.flush();
                let _ = reply.send(r);
            }
            Request::Snooze(id, until, reply) => {
                let res = self.node_policy(&id, |a, k| {
                    a.store.set_snooze(&k.0, &k.1, until)?;
                    a.core.set_snooze(&k, until, now);
                    Ok(())
                });
                let _ = reply.send(res);
            }
            Request::Skip(id, reply) => {
                let res = self.node_policy(&id, |a, k| {
                    let Some(p) = a.core.visible(&k, now).into_iter().next() else {
                        return Err(Error::Config(format!(
                            "{} has no pending update to skip",
                            k.1
                        )));
                    };
                    a.store.set_skip(&k.0, &k.1, Some(&p.to_version))?;
                    a.core.set_skip(&k, p.to_version, now);
                    Ok(())
                });
                let _ = reply.send(res);
            }
            Request::AutoApprove(id, on, reply) => {
                let res = self.node_policy(&id, |a, k| {
                    a.store.set_auto_approve(&k.0, &k.1, on)?;
                    a.core.set_auto(&k, on, now);
                    Ok(())
                });
                let _ = reply.send(res);
            }
            Request::QuietHours(q, reply) => {
                let res = self.store.set_quiet_hours(q.as_ref()).map(|_| {
                    self.core.quiet = q;
                    self.emit_now(Event::QuietHoursChanged { quiet_hours: q });
                });
                let _ = reply.send(res);
            }
            Request::NotificationsPaused(reply) => {
                let _ = reply.send(self.store.notifications_paused());
            }
            Request::SetNotificationsPaused(paused, reply) => {
                let res = self
                    .store
                    .set_notifications_paused(paused)
                    .map(|_| self.emit_now(Event::NotificationsPaused { paused }));
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
            Request::Resumed(reply) => {
                let _ = reply.send(Ok(self.resumed()));
            }
            Request::StartRollout(plan, reply) => {
                let r = self.core.start_rollout(*plan, &mut self.store, now);
                self.flush();
                let _ = reply.send(r);
            }
            Request::Rollouts(reply) => {
                let _ = reply.send(self.core.rollouts(&self.store));
            }
            Request::RolloutAction(id, action, reply) => {
                let r = self.core.rollout_action(id, action, &mut self.store, now);
                self.flush();
                let _ = reply.send(r);
            }
            Request::Shutdown(_) => {}
        }
    }

    /// A per-node setting: stored first, then applied to the core, whose
    /// effects are performed.
    fn node_policy(
        &mut self,
        node: &NodeRef,
        f: impl FnOnce(&mut Self, super::core::Key) -> Result<()>,
    ) -> Result<()> {
        let res = self.core.find(node).and_then(|k| f(self, k));
        self.flush();
        res
    }

    /// "Check now": the cloud is asked for a user-approval job, and a node
    /// of the user-approval layout is asked to fetch (`Operation = "check"`,
    /// over MQTT where the account has it); a stock node is never written to.
    fn check_now(&mut self, node: &NodeRef) -> Result<oneshot::Receiver<()>> {
        let k = self.core.find(node)?;
        let rt = self
            .accounts
            .get(&k.0)
            .ok_or_else(|| Error::UnknownAccount(k.0.clone()))?;
        let cloud = match &rt.check_ask {
            Some(ask) => {
                let (tx, rx) = oneshot::channel();
                ask.try_send((k.1.clone(), Some(tx))).map_err(|_| {
                    Error::Config(
                        "too many checks are queued for this account; try again in a moment".into(),
                    )
                })?;
                Some(rx)
            }
            None => None,
        };
        let layout = self.core.nodes.get(&k).and_then(|n| n.ota_layout);
        let asks_node = match layout {
            Some(crate::model::OtaLayout::UserApproval) => true,
            Some(crate::model::OtaLayout::Stock) => false,
            // Over MQTT a node's config may never have been heard; only the
            // recipe layout reads `Operation`, the stock one ignores it.
            None => rt.mqtt.is_some(),
        };
        let node_cmd = asks_node.then(|| {
            let names = self.core.names(&k);
            (
                rt.mqtt.clone(),
                rt.rest.clone(),
                json!({ names.service: { names.operation: "check" } }),
            )
        });
        let wait = self.cfg.mqtt_ack_timeout;
        let node = k.1.clone();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            if let Some((mqtt, rest, payload)) = node_cmd {
                let sent = match (mqtt, rest) {
                    (Some(m), _) => m.publish_params(&node, &payload, wait).await,
                    (None, Some(r)) => r.put_params(&node, &payload).await,
                    (None, None) => Ok(()),
                };
                if let Err(e) = sent {
                    tracing::debug!(%node, error = %e, "check not sent");
                }
            }
            if let Some(c) = cloud {
                let _ = c.await;
            }
            let _ = tx.send(());
        });
        Ok(rx)
    }
}
