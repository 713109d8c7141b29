//! Staged approvals (issue 16): the rules that move a rollout on.
//!
//! A rollout is advanced on every tick by [`Core::rollout_step`]: it reads
//! the jobs of the devices it approved (the firmware-true job states of
//! `jobs.rs`), the devices' presence and versions, and decides what to
//! approve next. Every approval goes through the same exactly-once intent
//! as any other (`approvals.rs`), so a rollout cannot approve a device
//! twice, and a device approved some other way meanwhile is adopted, not
//! approved again.
//!
//! Like an intent, the rollout's record is written to the store by the core
//! itself, before the approval it announces: a member is marked
//! "releasing" (written), then its intent is recorded, then the job's id is
//! written. A crash between the two leaves "releasing", and the next start
//! looks for a job made since then before approving anything
//! ([`Core::load_rollout`]).
//!
//! The rules:
//! - Until one device is updated and soaked, one goes at a time (the
//!   canary; after a resume past a failed canary, the next device is the
//!   canary). Then batches: the next batch goes when the last one has
//!   fully soaked, with at most `batch` devices in flight.
//! - Soaked: the job succeeded, and the device stayed online on the new
//!   version for `soak_secs` (an offline spell starts the soak again).
//! - The first failure, rejection, rollback, stuck job, or device that
//!   comes back on its old version (or offers the same update again, as
//!   firmware does after a rollback reported as `failed`) stops it.
//! - Offline devices wait for their turn until online; they never hold
//!   the online ones back.

use super::{Core, Key};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::model::{ApprovalResult, Job, JobState, Millis, NodeRef, UpdateKind};
use crate::rollout::{
    MemberState, Rollout, RolloutAction, RolloutMember, RolloutPlan, RolloutState,
};
use crate::store::Store;

use super::approvals::Mode;

/// The store's kind for RainMaker rollouts.
pub(crate) const KIND: &str = "rainmaker";

/// Ended rollouts a view is shown.
const RECENT: usize = 10;

impl Core {
    /// Reads the active rollout, if any, and settles what a crash left
    /// half done: a member "releasing" gets the job it made, or waits again.
    pub(crate) fn load_rollout(&mut self, store: &mut Store, now: Millis) -> Result<()> {
        let Some((id, mut r)) = store.rollouts::<Rollout>(KIND, true)?.into_iter().next() else {
            return Ok(());
        };
        r.id = id;
        for m in &mut r.members {
            let k: Key = (m.account.clone(), m.node_id.clone());
            match m.state {
                MemberState::Releasing { at } => {
                    match self.job_since(store, &k, &m.to_version, at) {
                        Some(job) => {
                            m.job_id = Some(job.id);
                            m.state = MemberState::Running;
                        }
                        None => {
                            m.state = MemberState::Waiting;
                            m.stage = None;
                        }
                    }
                }
                MemberState::Running => {
                    // Its job may have ended while no engine ran; the
                    // finished ones are not in memory.
                    if let Some(id) = m.job_id {
                        if !self.jobs.contains_key(&id) {
                            if let Some(job) = store.job(id)? {
                                self.finished.insert(id, job);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        r.headline = self.rollout_headline(&r, now);
        store.save_rollout(id, KIND, &r, true, now)?;
        self.rollout = Some(r);
        Ok(())
    }

    /// The node's job for `version` recorded at or after `since`: in
    /// memory if unfinished, else in the store.
    fn job_since(&self, store: &Store, k: &Key, version: &str, since: Millis) -> Option<Job> {
        if let Some(rt) = self.jobs.values().find(|r| {
            r.job.account == k.0
                && r.job.node_id == k.1
                && r.job.to_version == version
                && r.job.created_at >= since
        }) {
            return Some(rt.job.clone());
        }
        let filter = crate::model::HistoryFilter {
            account: Some(k.0.clone()),
            node_id: Some(k.1.clone()),
            ..Default::default()
        };
        store.history(&filter).ok().and_then(|h| {
            h.into_iter()
                .find(|j| j.to_version == version && j.created_at >= since)
        })
    }

    /// The active rollout and the last ended ones, newest first.
    pub(crate) fn rollouts(&self, store: &Store) -> Result<Vec<Rollout>> {
        let mut out: Vec<Rollout> = self.rollout.iter().cloned().collect();
        for (id, mut r) in store.rollouts::<Rollout>(KIND, false)? {
            if out.iter().any(|a| a.id == id) {
                continue;
            }
            r.id = id;
            out.push(r);
            if out.len() > RECENT {
                break;
            }
        }
        Ok(out)
    }

    /// Plans a rollout, records it and approves its first device.
    pub(crate) fn start_rollout(
        &mut self,
        plan: RolloutPlan,
        store: &mut Store,
        now: Millis,
    ) -> Result<Rollout> {
        plan.check()?;
        if let Some(r) = &self.rollout {
            return Err(Error::Config(format!(
                "a rollout is already {} ({}): resume, finish or cancel it first",
                r.state.name(),
                r.headline
            )));
        }
        let named = !plan.nodes.is_empty();
        let keys: Vec<Key> = if named {
            let mut ks = vec![];
            for n in &plan.nodes {
                let k = self.find(n)?;
                if !ks.contains(&k) {
                    ks.push(k);
                }
            }
            ks
        } else {
            self.approvable(now)
                .iter()
                .map(|n| self.find(n))
                .collect::<Result<_>>()?
        };
        let canary = plan.canary.as_ref().map(|c| self.find(c)).transpose()?;
        let mut members = vec![];
        for k in &keys {
            let name = self.nodes.get(k).and_then(|n| n.name.clone());
            let pend = self.visible(k, now);
            let pick = pend
                .iter()
                .find(|p| p.kind == UpdateKind::NodeSide)
                .or_else(|| pend.first());
            let Some(p) = pick else {
                if named {
                    return Err(Error::Config(format!(
                        "{} has no update waiting for approval",
                        name.as_deref().unwrap_or(&k.1)
                    )));
                }
                continue;
            };
            let mut m = RolloutMember {
                account: k.0.clone(),
                node_id: k.1.clone(),
                name,
                to_version: p.to_version.clone(),
                ota_job_id: p.job_id.clone(),
                stage: None,
                state: MemberState::Waiting,
                job_id: None,
                retry: false,
            };
            // Approve-all's care: an image that already failed on this
            // device, or an update the user put off, is left to the user.
            if let Some(w) = pend.iter().find_map(|p| p.warning.clone()) {
                m.state = MemberState::Skipped { reason: w };
            } else if let (false, Some(u)) = (named, p.snoozed_until) {
                let _ = u;
                m.state = MemberState::Skipped {
                    reason: "snoozed (\"remind me later\"); name it to include it".into(),
                };
            }
            members.push(m);
        }
        if !members.iter().any(|m| m.state == MemberState::Waiting) {
            return Err(Error::Config(match members.first() {
                None => "no update is waiting for approval".into(),
                Some(_) => format!(
                    "nothing to approve: {}",
                    members
                        .iter()
                        .map(|m| format!("{} ({})", m.label(), member_words(&m.state)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }));
        }
        // The canary goes first: the chosen one, else the first online one.
        let first = match &canary {
            Some(c) => {
                let i = members
                    .iter()
                    .position(|m| (&m.account, &m.node_id) == (&c.0, &c.1))
                    .ok_or_else(|| {
                        Error::Config(format!("{} is not one of the devices to update", c.1))
                    })?;
                if members[i].state != MemberState::Waiting {
                    return Err(Error::Config(format!(
                        "{} cannot go first: {}",
                        members[i].label(),
                        member_words(&members[i].state)
                    )));
                }
                i
            }
            None => members
                .iter()
                .position(|m| {
                    m.state == MemberState::Waiting
                        && self.online(&(m.account.clone(), m.node_id.clone()))
                })
                .or_else(|| members.iter().position(|m| m.state == MemberState::Waiting))
                .unwrap_or(0),
        };
        let c = members.remove(first);
        members.insert(0, c);
        let mut r = Rollout {
            id: 0,
            approved_by: self.cfg.actor_name.clone(),
            created_at: now,
            updated_at: now,
            batch: plan.batch,
            soak_secs: plan.soak_secs,
            window: plan.window,
            canary: canary.map(|k| NodeRef::new(&k.0, &k.1)),
            state: RolloutState::Running,
            members,
            headline: String::new(),
        };
        r.headline = self.rollout_headline(&r, now);
        r.id = store.insert_rollout(KIND, &r, now)?;
        store.save_rollout(r.id, KIND, &r, true, now)?;
        tracing::info!(
            rollout = r.id,
            devices = r.members.len(),
            batch = r.batch,
            soak = r.soak_secs,
            "rollout started"
        );
        self.rollout = Some(r);
        self.rollout_step(store, now);
        self.rollout
            .clone()
            .ok_or_else(|| Error::Config("the rollout ended at once".into()))
    }

    /// Resume, retry the failed ones, or cancel.
    pub(crate) fn rollout_action(
        &mut self,
        id: Option<i64>,
        action: RolloutAction,
        store: &mut Store,
        now: Millis,
    ) -> Result<Rollout> {
        let Some(mut r) = self.rollout.clone() else {
            return Err(Error::Config("no rollout is running".into()));
        };
        if id.is_some_and(|i| i != r.id) {
            return Err(Error::Config(format!(
                "rollout {} has ended; the running one is {}",
                id.unwrap_or_default(),
                r.id
            )));
        }
        match action {
            RolloutAction::Resume => {
                if r.state == RolloutState::Running {
                    return Err(Error::Config("the rollout is not stopped".into()));
                }
                r.state = RolloutState::Running;
            }
            RolloutAction::RetryFailed => {
                let (mut failed, rest): (Vec<_>, Vec<_>) = r
                    .members
                    .into_iter()
                    .partition(|m| matches!(m.state, MemberState::Failed { .. }));
                if failed.is_empty() {
                    r.members = rest;
                    return Err(Error::Config("no device of the rollout failed".into()));
                }
                // Settled ones keep their place at the top; the retried
                // ones go next, ahead of those never approved.
                let (settled, waiting): (Vec<_>, Vec<_>) = rest
                    .into_iter()
                    .partition(|m| m.state != MemberState::Waiting);
                for m in &mut failed {
                    m.state = MemberState::Waiting;
                    m.stage = None;
                    m.job_id = None;
                    m.retry = true;
                }
                r.members = settled.into_iter().chain(failed).chain(waiting).collect();
                r.state = RolloutState::Running;
            }
            RolloutAction::Cancel => {
                for m in &mut r.members {
                    if m.state == MemberState::Waiting {
                        m.state = MemberState::Skipped {
                            reason: "the rollout was cancelled before its turn".into(),
                        };
                    }
                }
                r.state = RolloutState::Cancelled;
            }
        }
        tracing::info!(rollout = r.id, ?action, "rollout action");
        self.rollout = Some(r);
        if !self.save_rollout(store, now) {
            return Err(Error::Config("the rollout could not be saved".into()));
        }
        self.rollout_step(store, now);
        self.rollout
            .clone()
            .or_else(|| self.rollouts(store).ok()?.into_iter().next())
            .ok_or_else(|| Error::Config("the rollout disappeared".into()))
    }

    /// Moves the active rollout on (see the module docs). Called on every
    /// tick and after every request that starts or changes a rollout.
    pub(crate) fn rollout_step(&mut self, store: &mut Store, now: Millis) {
        let Some(before) = self.rollout.clone() else {
            return;
        };
        let mut r = before.clone();
        self.follow_members(&mut r, now);
        let changed = r != before;
        self.rollout = Some(r);
        if changed && !self.save_rollout(store, now) {
            // Nothing is approved on a record the store does not hold.
            self.rollout = Some(before);
            return;
        }
        // Approve what may go now, one member at a time, each written first.
        while let Some(i) = self.next_to_release(now) {
            if !self.release_member(i, store, now) {
                break;
            }
        }
        self.finish_if_over(store, now);
    }

    /// Updates members from their jobs and their devices; stops the
    /// rollout at the first that went wrong.
    fn follow_members(&mut self, r: &mut Rollout, now: Millis) {
        let soak = i64::from(r.soak_secs) * 1000;
        let mut stop: Option<(String, String, String)> = None;
        for m in &mut r.members {
            let k: Key = (m.account.clone(), m.node_id.clone());
            match m.state.clone() {
                MemberState::Running => {
                    let Some(id) = m.job_id else {
                        continue;
                    };
                    if let Some(rt) = self.jobs.get(&id) {
                        if rt.job.state == JobState::Stuck {
                            let why = format!("{}: {}", m.label(), rt.job.headline);
                            m.state = MemberState::Failed {
                                reason: why.clone(),
                            };
                            stop.get_or_insert((m.account.clone(), m.node_id.clone(), why));
                        }
                        continue;
                    }
                    let job = self.finished.get(&id).cloned();
                    match job.map(|j| j.state) {
                        Some(JobState::Success) => {
                            let online = self.online(&k);
                            m.state = MemberState::Soaking {
                                since: online.then_some(now),
                                until: online.then_some(now + soak),
                            };
                        }
                        Some(JobState::Cancelled) => {
                            m.state = MemberState::Skipped {
                                reason: "its approval was cancelled".into(),
                            };
                        }
                        Some(
                            s @ (JobState::Failed { .. }
                            | JobState::Rejected { .. }
                            | JobState::RolledBack { .. }),
                        ) => {
                            let what = match &s {
                                JobState::RolledBack { .. } => "rolled back",
                                JobState::Rejected { .. } => "refused the update",
                                _ => "failed",
                            };
                            let why = format!("{} {what}: {}", m.label(), crate::words::reason(&s));
                            m.state = MemberState::Failed {
                                reason: why.clone(),
                            };
                            stop.get_or_insert((m.account.clone(), m.node_id.clone(), why));
                        }
                        Some(_) => {}
                        None => {
                            let why = format!("{}: its job is no longer known", m.label());
                            m.state = MemberState::Failed {
                                reason: why.clone(),
                            };
                            stop.get_or_insert((m.account.clone(), m.node_id.clone(), why));
                        }
                    }
                }
                MemberState::Soaking { since, until } => {
                    let node = self.nodes.get(&k);
                    let fw = node.and_then(|n| n.fw_version.clone());
                    let from = m
                        .job_id
                        .and_then(|id| self.finished.get(&id))
                        .and_then(|j| j.from_version.clone());
                    let offered_again = self
                        .node_pending
                        .get(&k)
                        .is_some_and(|p| p.to_version == m.to_version);
                    let back = fw.is_some() && fw != Some(m.to_version.clone()) && fw == from;
                    if back || offered_again {
                        // A REST sweep can still carry the cloud's record
                        // from before the update: a fresh look is asked
                        // for, and only a doubt that lasts stops the
                        // rollout (the job's own rule for a success the
                        // running version contradicts).
                        let since = *self.rollout_doubts.entry(k.clone()).or_insert(now);
                        if since == now {
                            self.push(super::Effect::Sweep(k.0.clone()));
                        }
                        if now - since < self.cfg.rollback_grace {
                            continue;
                        }
                        self.rollout_doubts.remove(&k);
                        let why = if back {
                            format!(
                                "{} came back on its old firmware {} while it was being watched (rolled back)",
                                m.label(),
                                fw.unwrap_or_default()
                            )
                        } else {
                            format!(
                                "{} asks for the same update again while it was being watched: its new firmware did not stay (rolled back)",
                                m.label()
                            )
                        };
                        m.state = MemberState::Failed {
                            reason: why.clone(),
                        };
                        stop.get_or_insert((m.account.clone(), m.node_id.clone(), why));
                        continue;
                    }
                    self.rollout_doubts.remove(&k);
                    let online = self.online(&k);
                    m.state = match (online, since, until) {
                        (false, _, _) => MemberState::Soaking {
                            since: None,
                            until: None,
                        },
                        (true, None, _) | (true, _, None) => MemberState::Soaking {
                            since: Some(now),
                            until: Some(now + soak),
                        },
                        (true, Some(_), Some(u)) if u <= now => MemberState::Updated,
                        (true, s, u) => MemberState::Soaking { since: s, until: u },
                    };
                }
                // Its job goes on after all: a later report of the same job
                // reopened it (the firmware fetches again after its last
                // failed attempt, docs/rainmaker.md). The device is the
                // truth, so it is followed again; the stop stands, the
                // user decides, and retry-failed cannot approve it twice.
                MemberState::Failed { .. } => {
                    let goes_on = m
                        .job_id
                        .and_then(|id| self.jobs.get(&id))
                        .is_some_and(|rt| rt.job.state != JobState::Stuck);
                    if goes_on {
                        m.state = MemberState::Running;
                    }
                }
                _ => {}
            }
        }
        if let (Some((account, node_id, reason)), RolloutState::Running) = (stop, &r.state) {
            tracing::warn!(rollout = r.id, node = %node_id, %reason, "rollout stopped");
            r.state = RolloutState::Stopped {
                account,
                node_id,
                reason,
            };
        }
        r.headline = self.rollout_headline(r, now);
    }

    /// The member to approve now, if any.
    fn next_to_release(&self, now: Millis) -> Option<usize> {
        let r = self.rollout.as_ref()?;
        if r.state != RolloutState::Running {
            return None;
        }
        if r.window.as_ref().is_some_and(|w| w.opens_at(now).is_some()) {
            return None;
        }
        let in_flight = r.members.iter().filter(|m| m.state.in_flight()).count();
        let canary_phase = !r.members.iter().any(|m| m.state == MemberState::Updated);
        let online = |m: &RolloutMember| self.online(&(m.account.clone(), m.node_id.clone()));
        let waiting = |m: &RolloutMember| m.state == MemberState::Waiting;
        if canary_phase {
            if in_flight > 0 {
                return None;
            }
            // The user's canary waits for its device; else the first online.
            if let Some(c) = &r.canary {
                if let Some(i) = r.members.iter().position(|m| {
                    waiting(m) && Some(&m.account) == c.account.as_ref() && m.node_id == c.node_id
                }) {
                    return online(&r.members[i]).then_some(i);
                }
            }
            return r.members.iter().position(|m| waiting(m) && online(m));
        }
        // A batch is open while it has members in flight that were given
        // its number: it takes more only up to the batch size, and only
        // while none of it has finished (then the next batch waits for
        // the whole of this one to soak).
        let stage = r.stage().unwrap_or(0);
        let current = r.members.iter().filter(|m| m.stage == Some(stage));
        let open = stage > 0 && current.clone().all(|m| m.state.in_flight());
        let may = if in_flight == 0 {
            true
        } else {
            open && (current.count() as u32) < r.batch
        };
        if !may {
            return None;
        }
        r.members.iter().position(|m| waiting(m) && online(m))
    }

    /// Approves member `i`: written as "releasing", then the intent, then
    /// its job. `false`: stop releasing for now.
    fn release_member(&mut self, i: usize, store: &mut Store, now: Millis) -> bool {
        let Some(r) = self.rollout.as_mut() else {
            return false;
        };
        let in_flight = r.members.iter().any(|m| m.state.in_flight());
        let canary_phase = !r.members.iter().any(|m| m.state == MemberState::Updated);
        let stage = match (canary_phase, in_flight, r.stage()) {
            (true, _, _) => 0,
            (false, false, s) => s.unwrap_or(0) + 1,
            (false, true, s) => s.unwrap_or(1),
        };
        let m = r.members[i].clone();
        let k: Key = (m.account.clone(), m.node_id.clone());
        let mode = if m.retry { Mode::Explicit } else { Mode::All };
        // Approved some other way meanwhile (by hand, auto-approve): followed, not approved again.
        if let Some(job) = self
            .jobs
            .values()
            .find(|rt| rt.job.account == k.0 && rt.job.node_id == k.1)
            .map(|rt| rt.job.clone())
        {
            let state = if job.to_version == m.to_version {
                MemberState::Running
            } else {
                MemberState::Skipped {
                    reason: format!(
                        "another update ({}) of this device is running",
                        job.to_version
                    ),
                }
            };
            return self.set_member(i, state, Some(stage), Some(job.id), store, now);
        }
        let offered = self
            .visible(&k, now)
            .iter()
            .any(|p| p.to_version == m.to_version);
        if !offered {
            let fw = self.nodes.get(&k).and_then(|n| n.fw_version.clone());
            let state = if !self.nodes.contains_key(&k) {
                MemberState::Skipped {
                    reason: "the device is no longer in your accounts".into(),
                }
            } else if fw.as_deref() == Some(m.to_version.as_str()) {
                MemberState::Skipped {
                    reason: format!("already runs {}", m.to_version),
                }
            } else {
                MemberState::Skipped {
                    reason: format!("{} is no longer offered to it", m.to_version),
                }
            };
            return self.set_member(i, state, None, None, store, now);
        }
        if !self.set_member(
            i,
            MemberState::Releasing { at: now },
            Some(stage),
            None,
            store,
            now,
        ) {
            return false;
        }
        let (state, job_id, stage, stop) = match self.decide(&k, mode, None, store, now) {
            Ok(job) => {
                if job.state == JobState::Requested {
                    if let Some(rt) = self.jobs.get_mut(&job.id) {
                        rt.deliveries = 1;
                    }
                    self.send(job.id);
                }
                (MemberState::Running, Some(job.id), Some(stage), None)
            }
            Err(ApprovalResult::Offline) => (MemberState::Waiting, None, None, None),
            Err(ApprovalResult::UpToDate) => (
                MemberState::Skipped {
                    reason: "already up to date".into(),
                },
                None,
                None,
                None,
            ),
            Err(ApprovalResult::Skipped { reason }) => {
                (MemberState::Skipped { reason }, None, None, None)
            }
            Err(ApprovalResult::Failed { reason }) => {
                // The intent could not be written: nothing was sent, and
                // nothing more should be until the user looks.
                (MemberState::Waiting, None, None, Some(reason))
            }
            Err(other) => {
                let reason = match other {
                    ApprovalResult::Refused { reason } => reason,
                    o => format!("{o:?}"),
                };
                let why = format!("{}: {reason}", m.label());
                (
                    MemberState::Failed {
                        reason: why.clone(),
                    },
                    None,
                    Some(stage),
                    Some(why),
                )
            }
        };
        if let (Some(why), Some(r)) = (stop, self.rollout.as_mut()) {
            r.state = RolloutState::Stopped {
                account: m.account.clone(),
                node_id: m.node_id.clone(),
                reason: why,
            };
        }
        self.set_member(i, state, stage, job_id, store, now)
    }

    fn set_member(
        &mut self,
        i: usize,
        state: MemberState,
        stage: Option<u32>,
        job_id: Option<i64>,
        store: &mut Store,
        now: Millis,
    ) -> bool {
        let Some(r) = self.rollout.as_mut() else {
            return false;
        };
        let Some(m) = r.members.get_mut(i) else {
            return false;
        };
        let old = m.clone();
        m.state = state;
        m.stage = stage;
        m.job_id = job_id;
        if !self.save_rollout(store, now) {
            if let Some(m) = self.rollout.as_mut().and_then(|r| r.members.get_mut(i)) {
                *m = old;
            }
            return false;
        }
        true
    }

    /// Every member settled: done (or, while stopped, left for the user).
    fn finish_if_over(&mut self, store: &mut Store, now: Millis) {
        let Some(r) = self.rollout.as_mut() else {
            return;
        };
        if r.state == RolloutState::Running && r.members.iter().all(|m| m.state.is_settled()) {
            r.state = RolloutState::Done;
            tracing::info!(rollout = r.id, "rollout done");
            self.save_rollout(store, now);
        }
        if self.rollout.as_ref().is_some_and(|r| r.state.is_over()) {
            self.rollout = None;
        }
    }

    /// Writes the active rollout (with its headline) and tells every view.
    fn save_rollout(&mut self, store: &mut Store, now: Millis) -> bool {
        let Some(mut r) = self.rollout.clone() else {
            return false;
        };
        r.headline = self.rollout_headline(&r, now);
        r.updated_at = now;
        match store.save_rollout(r.id, KIND, &r, !r.state.is_over(), now) {
            Ok(()) => {
                self.rollout = Some(r.clone());
                self.emit(Event::RolloutChanged { rollout: r });
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "could not store the rollout; approving nothing more");
                false
            }
        }
    }

    /// Where a rollout is, in one line (no countdowns: views show those
    /// from the soak's end time).
    pub(crate) fn rollout_headline(&self, r: &Rollout, now: Millis) -> String {
        let c = r.counts();
        let done_part = || {
            let mut parts = vec![format!("{} updated", c.updated)];
            if c.failed > 0 {
                parts.push(format!("{} failed", c.failed));
            }
            if c.skipped > 0 {
                parts.push(format!("{} left out", c.skipped));
            }
            parts.join(", ")
        };
        match &r.state {
            RolloutState::Done => return format!("Done: {}", done_part()),
            RolloutState::Cancelled => {
                return format!("Cancelled: {}", done_part());
            }
            RolloutState::Stopped { reason, .. } => return format!("Stopped: {reason}"),
            RolloutState::Running => {}
        }
        let flying: Vec<&RolloutMember> =
            r.members.iter().filter(|m| m.state.in_flight()).collect();
        if let Some(m) = flying.iter().find(|m| m.stage == Some(0)) {
            return match &m.state {
                MemberState::Soaking { until: Some(_), .. } => format!(
                    "{} goes first: updated; must stay online {} before the rest",
                    m.label(),
                    soak_words(r.soak_secs)
                ),
                MemberState::Soaking { .. } => format!(
                    "{} goes first: updated, now offline; its watch starts again when it is back",
                    m.label()
                ),
                _ => format!("{} goes first: updating", m.label()),
            };
        }
        let waiting: Vec<&RolloutMember> = r
            .members
            .iter()
            .filter(|m| m.state == MemberState::Waiting)
            .collect();
        let window = r
            .window
            .filter(|w| w.opens_at(now).is_some())
            .map(|w| format!("; approving only {} (local time)", w.describe()))
            .unwrap_or_default();
        if flying.is_empty() {
            let offline = waiting
                .iter()
                .filter(|m| !self.online(&(m.account.clone(), m.node_id.clone())))
                .count();
            if !window.is_empty() {
                return format!("{} waiting{window}", waiting.len());
            }
            if offline > 0 && offline == waiting.len() {
                return format!(
                    "{} updated; waiting for {offline} offline device{} to come online",
                    c.updated,
                    if offline == 1 { "" } else { "s" }
                );
            }
            return format!("{} updated; {} waiting", c.updated, waiting.len());
        }
        let updating = flying
            .iter()
            .filter(|m| !matches!(m.state, MemberState::Soaking { .. }))
            .count();
        let soaking = flying.len() - updating;
        let mut parts = vec![];
        if updating > 0 {
            parts.push(format!("{updating} updating"));
        }
        if soaking > 0 {
            parts.push(format!("{soaking} being watched"));
        }
        format!(
            "Batch {}: {}; {} updated, {} waiting{window}",
            r.stage().unwrap_or(1),
            parts.join(", "),
            c.updated,
            waiting.len()
        )
    }
}

fn soak_words(secs: u32) -> String {
    match secs {
        0 => "a moment".into(),
        s if s < 120 => format!("{s} s"),
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s => format!("{} min", s.div_ceil(60)),
    }
}

/// A member's state in plain words.
pub(crate) fn member_words(s: &MemberState) -> String {
    match s {
        MemberState::Waiting => "waiting".into(),
        MemberState::Releasing { .. } => "being approved".into(),
        MemberState::Running => "updating".into(),
        MemberState::Soaking { .. } => "updated, being watched".into(),
        MemberState::Updated => "updated".into(),
        MemberState::Failed { reason } | MemberState::Skipped { reason } => reason.clone(),
    }
}
