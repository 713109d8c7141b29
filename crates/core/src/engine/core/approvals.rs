//! Approvals and their commands. Each approval is recorded as an intent in
//! the store (exactly once, in one transaction, across processes) before
//! its command is sent; the command's answer moves the job to "sent", "not
//! confirmed" (it may or may not have left: never re-sent without the user)
//! or "failed" (it provably never left).

use super::{Core, Effect, JobRt, Key};
use crate::error::Error;
use crate::event::Event;
use crate::model::{
    ApprovalOutcome, ApprovalResult, Job, JobState, Millis, NodeRef, QueueReason, UpdateKind,
};
use crate::policy::quiet_until;
use crate::rainmaker::parse;
use crate::store::{NewJob, Store};

/// Who asked for an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The user named these nodes: snoozes and skips do not apply.
    Explicit,
    /// Approve-all: snoozed, skipped and already-failed updates are left out.
    All,
    /// Per-node auto-approve.
    Auto,
}

/// One node's place in an approval: decided already, or its command is
/// being sent (the outcome comes with [`Core::command_done`]).
#[derive(Debug)]
pub(crate) enum Slot {
    Done(Box<ApprovalOutcome>),
    Sending(i64),
}

/// What a command's sender reports back.
pub(crate) type CommandResult = std::result::Result<(), Error>;

fn outcome(k: &Key, result: ApprovalResult) -> ApprovalOutcome {
    ApprovalOutcome {
        account: k.0.clone(),
        node_id: k.1.clone(),
        result,
    }
}

fn unknown(id: &NodeRef, e: Error) -> ApprovalOutcome {
    ApprovalOutcome {
        account: id
            .account
            .as_deref()
            .map(|a| parse::clean(a, 64))
            .unwrap_or_default(),
        node_id: parse::clean(&id.node_id, 64),
        result: ApprovalResult::Refused {
            reason: e.to_string(),
        },
    }
}

impl Core {
    /// The nodes approve-all would approve now.
    pub(crate) fn approvable(&self, now: Millis) -> Vec<NodeRef> {
        self.nodes
            .keys()
            .filter(|k| !self.visible(k, now).is_empty())
            .map(|k| NodeRef::new(&k.0, &k.1))
            .collect()
    }

    /// Decides for each node, records the intents and queues the commands.
    pub(crate) fn approve(
        &mut self,
        ids: Vec<NodeRef>,
        mode: Mode,
        store: &mut Store,
        now: Millis,
    ) -> Vec<Slot> {
        let mut slots = vec![];
        for id in ids {
            let k = match self.find(&id) {
                Ok(k) => k,
                Err(e) => {
                    slots.push(Slot::Done(Box::new(unknown(&id, e))));
                    continue;
                }
            };
            match self.decide(&k, mode, None, store, now) {
                Ok(job) if job.state == JobState::Requested => {
                    if let Some(rt) = self.jobs.get_mut(&job.id) {
                        rt.deliveries = 1;
                    }
                    self.send(job.id);
                    slots.push(Slot::Sending(job.id));
                }
                Ok(job) => slots.push(Slot::Done(Box::new(outcome(
                    &k,
                    ApprovalResult::Queued { job },
                )))),
                Err(result) => slots.push(Slot::Done(Box::new(outcome(&k, result)))),
            }
        }
        for s in &slots {
            if let Slot::Done(o) = s {
                self.emit(Event::Approval {
                    outcome: (**o).clone(),
                });
            }
        }
        slots
    }

    /// Checks one node and records its intent. `Err`: the outcome without a job.
    // The error is the outcome itself, built once per node: boxing it buys nothing.
    #[allow(clippy::result_large_err)]
    pub(super) fn decide(
        &mut self,
        k: &Key,
        mode: Mode,
        force_state: Option<JobState>,
        store: &mut Store,
        now: Millis,
    ) -> std::result::Result<Job, ApprovalResult> {
        let pend = self.visible(k, now);
        // Approve-all and auto-approve leave an image that already failed or
        // rolled back on this device to the user.
        let careful = mode != Mode::Explicit;
        let usable: Vec<_> = pend
            .iter()
            .filter(|p| !(careful && p.warning.is_some()))
            .collect();
        let Some(p) = usable
            .iter()
            .find(|p| p.kind == UpdateKind::NodeSide)
            .or_else(|| usable.first())
            .map(|p| (*p).clone())
        else {
            if let Some(w) = pend.iter().find_map(|p| p.warning.clone()) {
                return Err(ApprovalResult::Skipped { reason: w });
            }
            if let Some(j) = self
                .jobs
                .values()
                .find(|r| r.job.account == k.0 && r.job.node_id == k.1)
            {
                let reason = format!(
                    "an update of this node is already {}",
                    j.job.state.name().replace('_', " ")
                );
                let _ = store.audit_refusal(
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
        let state = match force_state {
            Some(s) => s,
            None => {
                if !self.online(k) {
                    let _ = store.audit_refusal(
                        &self.cfg.actor_name,
                        &k.0,
                        &k.1,
                        "offline: install when online offered",
                    );
                    return Err(ApprovalResult::Offline);
                }
                match self.quiet.as_ref().and_then(|q| quiet_until(q, now)) {
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
            at: now,
        };
        let before = self.visible(k, now);
        let key = (k.0.clone(), k.1.clone(), p.job_id.clone());
        match store.insert_intent(&new) {
            Ok(Ok(job)) => {
                self.approved.insert(key);
                match store.trim_node(&k.0, &k.1) {
                    Ok(gone) => self.forget_jobs(k, &gone),
                    // Only a bound on growth: it is tried again next time.
                    Err(e) => {
                        tracing::warn!(node = %k.1, error = %e, "could not trim the node's history")
                    }
                }
                self.jobs.insert(job.id, JobRt::new(job.clone(), now));
                self.emit(Event::JobChanged { job: job.clone() });
                self.pending_diff(k, before, now);
                self.push(Effect::Sources {
                    account: k.0.clone(),
                    now: true,
                });
                Ok(job)
            }
            Ok(Err(reason)) => {
                // Another engine on this data directory got there first.
                self.approved.insert(key);
                self.pending_diff(k, before, now);
                Err(ApprovalResult::Refused { reason })
            }
            Err(e) => Err(ApprovalResult::Failed {
                reason: format!("could not record the approval: {e}"),
            }),
        }
    }

    /// Queues the command of a `Requested` job.
    pub(super) fn send(&mut self, job_id: i64) {
        let Some(rt) = self.jobs.get(&job_id) else {
            return;
        };
        let job = rt.job.clone();
        let names = self.names(&(job.account.clone(), job.node_id.clone()));
        self.push(Effect::Send { job, names });
    }

    /// Approves a node's update now, to be delivered when it is online.
    pub(crate) fn install_when_online(
        &mut self,
        id: &NodeRef,
        store: &mut Store,
        now: Millis,
    ) -> ApprovalOutcome {
        let queued = JobState::Queued {
            reason: QueueReason::WaitingForNode,
        };
        self.approve_queued(id, queued, store, now, |core, k, job| {
            let offered_now = core
                .node_pending
                .get(k)
                .is_some_and(|p| p.job_id == job.ota_job_id);
            if core.online(k) && (job.kind == UpdateKind::CloudApproval || offered_now) {
                core.release(job.id, now);
            }
        })
    }

    /// Records an approval to be sent at `at`.
    pub(crate) fn schedule(
        &mut self,
        id: &NodeRef,
        at: Millis,
        store: &mut Store,
        now: Millis,
    ) -> ApprovalOutcome {
        let queued = JobState::Queued {
            reason: QueueReason::Scheduled { at },
        };
        self.approve_queued(id, queued, store, now, |_, _, _| {})
    }

    /// Records an approval that starts queued, lets `then` act on the new
    /// job, and tells everyone the outcome.
    fn approve_queued(
        &mut self,
        id: &NodeRef,
        queued: JobState,
        store: &mut Store,
        now: Millis,
        then: impl FnOnce(&mut Core, &Key, &Job),
    ) -> ApprovalOutcome {
        let k = match self.find(id) {
            Ok(k) => k,
            Err(e) => return unknown(id, e),
        };
        let o = match self.decide(&k, Mode::Explicit, Some(queued), store, now) {
            Ok(job) => {
                then(self, &k, &job);
                let job = self.jobs.get(&job.id).map(|r| r.job.clone()).unwrap_or(job);
                outcome(&k, ApprovalResult::Queued { job })
            }
            Err(r) => outcome(&k, r),
        };
        self.emit(Event::Approval { outcome: o.clone() });
        o
    }

    /// A queued job whose wait is over: record it as requested, then send.
    pub(crate) fn release(&mut self, job_id: i64, now: Millis) {
        if let Some(rt) = self.jobs.get_mut(&job_id) {
            rt.answered = false;
            rt.deliveries += 1;
        }
        self.set_state(job_id, JobState::Requested, None, now);
        self.send(job_id);
    }

    /// The user confirms re-sending a job that is not confirmed. `Ok`: the
    /// command is queued; `Err`: why not.
    // The error is the outcome the user sees, built once: boxing buys nothing.
    #[allow(clippy::result_large_err)]
    pub(crate) fn resend(
        &mut self,
        job_id: i64,
        store: &mut Store,
        now: Millis,
    ) -> std::result::Result<(), ApprovalOutcome> {
        let Some(rt) = self.jobs.get(&job_id) else {
            return Err(ApprovalOutcome {
                account: String::new(),
                node_id: String::new(),
                result: ApprovalResult::Refused {
                    reason: "no such unfinished job".into(),
                },
            });
        };
        let k = (rt.job.account.clone(), rt.job.node_id.clone());
        if !matches!(rt.job.state, JobState::NotConfirmed { .. }) {
            return Err(outcome(
                &k,
                ApprovalResult::Refused {
                    reason: format!(
                        "the job is {}, not waiting for confirmation",
                        rt.job.state.name()
                    ),
                },
            ));
        }
        let _ = store.audit_refusal(&self.cfg.actor_name, &k.0, &k.1, "confirmed re-send");
        self.release(job_id, now);
        Ok(())
    }

    /// Cancels a job that has not been sent, or is stuck.
    pub(crate) fn cancel(&mut self, job_id: i64, now: Millis) -> crate::Result<Job> {
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
        let mut job = rt.job.clone();
        self.set_state(job_id, JobState::Cancelled, None, now);
        job.state = JobState::Cancelled;
        job.headline = crate::words::headline(&job.state);
        Ok(job)
    }

    /// A command answered. Facts may already have moved the job on (MQTT
    /// can be quicker than the PUT's answer); they are kept.
    pub(crate) fn command_done(
        &mut self,
        job_id: i64,
        result: CommandResult,
        now: Millis,
    ) -> Option<ApprovalOutcome> {
        let rt = self.jobs.get_mut(&job_id)?;
        let k = (rt.job.account.clone(), rt.job.node_id.clone());
        let waiting = matches!(
            rt.job.state,
            JobState::Requested | JobState::NotConfirmed { .. }
        );
        match &result {
            Ok(()) => {
                rt.job.sent_at = Some(now);
                if waiting {
                    self.set_state(job_id, JobState::Sent, None, now);
                } else {
                    let job = rt.job.clone();
                    self.push(Effect::SaveJob(job));
                }
            }
            Err(e) if e.maybe_delivered() => {
                let reason = format!(
                    "{} It may or may not have reached the device: confirm before it is sent again.",
                    e.plain()
                );
                self.set_state(job_id, JobState::NotConfirmed { reason }, None, now);
            }
            Err(e) if e.never_sent() => {
                // Nothing left this computer: the approval stands and goes
                // out once the account can reach the device again.
                let waiting = JobState::Queued {
                    reason: QueueReason::Unreachable {
                        since: now,
                        reason: e.plain(),
                    },
                };
                let text = format!("Not sent — nothing reached the device. {}", e.plain());
                self.set_state(job_id, waiting, Some(text), now);
            }
            Err(e) => {
                let reason = format!("Not sent — nothing reached the device. {}", e.plain());
                self.set_state(job_id, JobState::Failed { reason }, None, now);
            }
        }
        let job = self.jobs.get(&job_id).map(|r| r.job.clone());
        let result = match (job, result) {
            (Some(job), Ok(())) => ApprovalResult::Sent { job },
            (Some(job), Err(e)) if e.maybe_delivered() => ApprovalResult::NotConfirmed { job },
            (Some(job), Err(_)) if matches!(job.state, JobState::Queued { .. }) => {
                ApprovalResult::Queued { job }
            }
            (_, Err(e)) => ApprovalResult::Failed { reason: e.plain() },
            // Already finished by the node's own reports: it was delivered.
            (None, Ok(())) => match self.closed_job(job_id) {
                Some(job) => ApprovalResult::Sent { job },
                None => ApprovalResult::Failed {
                    reason: "the job disappeared".into(),
                },
            },
        };
        let o = outcome(&k, result);
        self.emit(Event::Approval { outcome: o.clone() });
        Some(o)
    }

    fn closed_job(&self, job_id: i64) -> Option<Job> {
        self.finished.get(&job_id).cloned()
    }
}
