//! The state core: every rule of the engine, with no I/O and no clock of
//! its own. It holds what the engine knows (nodes, offers, jobs, policies),
//! takes facts, requests and the current time, and answers with
//! [`Effect`]s — store writes, events, commands to send — that the actor
//! performs in order. Tests drive it with a virtual clock and assert the
//! effects (see `tests.rs`).
//!
//! One exception to "no I/O": recording an approval intent is a database
//! transaction whose answer (a new job, or "someone else approved it
//! first") decides the outcome, so [`Core::approve`] and friends take the
//! [`Store`] and run that one transaction themselves.
//!
//! The files: `facts.rs` (node reports, cloud offers), `offers.rs` (what is
//! pending, and the warnings on it), `approvals.rs` (approvals and their
//! commands), `jobs.rs` (job states from the firmware's reports, and the
//! timers), `tests.rs`.

mod approvals;
mod facts;
mod jobs;
mod offers;
mod presence;
mod rollout;
#[cfg(test)]
mod rollout_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

pub(crate) use approvals::{CommandResult, Mode, Slot};
pub(crate) use jobs::StatusFact;
pub(crate) use presence::worth_saving;

use crate::error::{Error, Result};
use crate::event::Event;
use crate::model::{
    DownloadWindow, Job, JobState, Millis, Node, NodeRef, OtaNames, PendingUpdate, QuietHours,
};
use crate::rainmaker::parse;
use crate::store::Store;

/// (account, node id).
pub(crate) type Key = (String, String);
/// (account, node id, `ota_job_id`).
pub(crate) type JobKey = (String, String, String);

/// The core's timings, in milliseconds.
#[derive(Debug, Clone)]
pub(crate) struct CoreConfig {
    /// Who approves (for the audit).
    pub actor_name: String,
    /// A running job with no news for this long is stuck.
    pub stuck_after: Millis,
    /// After "success" while the node still says its old version, how long
    /// to wait for it to report its running version.
    pub rollback_grace: Millis,
    /// A `failed` that names no last attempt becomes final after this long
    /// with no newer report for the job.
    pub failure_quiet: Millis,
    /// How long a node may stay away while it restarts into new firmware
    /// and checks it (the firmware's rollback window is 30–600 s).
    pub verify_window: Millis,
}

/// Something the actor must do, in order. A store write that fails
/// suppresses the events and commands after it until the next write that
/// succeeds: nothing is announced or sent that the store does not hold.
#[derive(Debug)]
pub(crate) enum Effect {
    /// Write a job's row and a history entry.
    SaveJob(Job),
    /// Remember a node across restarts.
    SaveNode(Node),
    /// A skip no longer applies (another version is offered).
    ClearSkip(Key),
    /// Tell every view.
    Emit(Event),
    /// Send the command of a job that is `Requested`.
    Send {
        /// The job.
        job: Job,
        /// The node's OTA names (node-side approval).
        names: OtaNames,
    },
    /// Recompute the account's REST sources (now, or on the next tick).
    Sources {
        /// Account.
        account: String,
        /// Now (a job's pace changed) or on the next tick (a node appeared).
        now: bool,
    },
    /// Remember a node's offers (node-side and cloud) across restarts.
    SaveOffers {
        /// The node.
        key: Key,
        /// Its offers now, as the sources reported them.
        offers: Vec<PendingUpdate>,
    },
    /// Ask the account for a node sweep now (to learn a running version).
    Sweep(String),
    /// Auto-approve this node's update (the actor calls [`Core::approve`]).
    AutoApprove(Key),
}

/// A job followed by the core, with its timers.
#[derive(Debug, Clone)]
pub(crate) struct JobRt {
    pub job: Job,
    /// When anything about it last changed (for "stuck").
    pub last_change: Millis,
    /// Newest report time seen, ms (0: none with a usable time).
    pub last_ts: i64,
    /// "success" came while the node still said its old version: since when.
    pub success_claimed: Option<Millis>,
    /// When the node began restarting into the new firmware.
    pub verify_since: Option<Millis>,
    /// When a `failed` that may still be retried arrived.
    pub failed_at: Option<Millis>,
    /// The device answered this job's current delivery (a report newer than
    /// the approval): from then on it is the device's to finish.
    pub answered: bool,
    /// How many times the approval was delivered to the device.
    pub deliveries: u32,
    /// The node went offline after it began restarting: only a node that
    /// really went away and came back can be "back on its old version".
    pub away: bool,
}

impl JobRt {
    pub(crate) fn new(job: Job, now: Millis) -> JobRt {
        JobRt {
            job,
            last_change: now,
            last_ts: 0,
            success_claimed: None,
            verify_since: None,
            failed_at: None,
            answered: false,
            deliveries: 0,
            away: false,
        }
    }
}

/// An update that already went wrong on a device: the inbox warns before
/// the same image is approved again, and auto-approve leaves it alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Earlier {
    pub rolled_back: bool,
    pub reason: String,
    pub at: Millis,
}

/// The state core. See the module docs.
pub(crate) struct Core {
    pub(crate) cfg: CoreConfig,
    /// Accounts that are running; facts of others are dropped.
    pub(crate) accounts: BTreeSet<String>,
    pub(crate) nodes: BTreeMap<Key, Node>,
    /// The node's own `Info` offer.
    pub(crate) node_pending: HashMap<Key, PendingUpdate>,
    /// The cloud's user-approval offer.
    pub(crate) cloud_pending: HashMap<Key, PendingUpdate>,
    /// A node's offers as last written to the store, and when.
    pub(crate) offers_saved: HashMap<Key, (Vec<PendingUpdate>, Millis)>,
    /// Unfinished jobs by local id.
    pub(crate) jobs: BTreeMap<i64, JobRt>,
    /// Jobs that ended as failed or rolled back in this run, kept so that a
    /// later report of the same job can reopen them.
    pub(crate) closed: HashMap<JobKey, Job>,
    /// The last jobs that finished, by id, for command answers that come
    /// after the node's own reports already ended the job.
    pub(crate) finished: BTreeMap<i64, Job>,
    /// Approved and not failed, rolled back or cancelled.
    pub(crate) approved: HashSet<JobKey>,
    /// (account, node, version) that failed or rolled back before.
    pub(crate) earlier: HashMap<JobKey, Earlier>,
    /// Download windows learned from job metadata.
    pub(crate) windows: HashMap<JobKey, DownloadWindow>,
    pub(crate) skips: HashMap<Key, String>,
    pub(crate) snoozes: HashMap<Key, Millis>,
    pub(crate) auto: HashSet<Key>,
    pub(crate) quiet: Option<QuietHours>,
    /// Each running account's links, for node presence.
    pub(crate) links: HashMap<String, presence::Link>,
    /// The staged approval that runs or is stopped (at most one).
    pub(crate) rollout: Option<crate::rollout::Rollout>,
    /// Soaking devices that look rolled back (an old version, the same
    /// offer again), since when: confirmed only if it lasts.
    pub(crate) rollout_doubts: HashMap<Key, Millis>,
    out: Vec<Effect>,
}

impl Core {
    /// An empty core.
    pub(crate) fn new(cfg: CoreConfig) -> Core {
        Core {
            cfg,
            accounts: BTreeSet::new(),
            nodes: BTreeMap::new(),
            node_pending: HashMap::new(),
            cloud_pending: HashMap::new(),
            offers_saved: HashMap::new(),
            jobs: BTreeMap::new(),
            closed: HashMap::new(),
            finished: BTreeMap::new(),
            approved: HashSet::new(),
            earlier: HashMap::new(),
            windows: HashMap::new(),
            skips: HashMap::new(),
            snoozes: HashMap::new(),
            auto: HashSet::new(),
            quiet: None,
            links: HashMap::new(),
            rollout: None,
            rollout_doubts: HashMap::new(),
            out: Vec::new(),
        }
    }

    /// Reads what the store remembers: policies, approvals, nodes (their
    /// online state as last heard, vouched for by nobody until a source
    /// says), the offers last heard, earlier failures and every unfinished
    /// job. A job
    /// whose command was being sent when the program stopped becomes "not
    /// confirmed": it is never re-sent without the user.
    pub(crate) fn load(&mut self, store: &mut Store, now: Millis) -> Result<()> {
        self.skips = store.skips()?;
        self.snoozes = store.snoozes()?;
        self.auto = store.auto_approve()?.into_iter().collect();
        self.quiet = store.quiet_hours()?;
        self.approved = store.approved_keys()?.into_iter().collect();
        for (k, e) in store.earlier_outcomes()? {
            self.earlier.insert(k, e);
        }
        for (mut n, saved_at) in store.nodes()? {
            n.known = presence::remembered(&n, saved_at, now);
            n.online = None;
            n.last_seen = n.last_seen.filter(|t| *t > 0);
            self.nodes.insert((n.account.clone(), n.node_id.clone()), n);
        }
        for (p, heard_at) in store.offers()? {
            self.restore_offer(p, heard_at);
        }
        for mut job in store.unfinished_jobs()? {
            if job.state == JobState::Requested {
                job.state = JobState::NotConfirmed {
                    reason: "Greenlight stopped before the command was confirmed sent; needs your confirmation".into(),
                };
                job.headline = crate::words::headline(&job.state);
                job.updated_at = now;
                store.save_job(&job, true)?;
            }
            self.jobs.insert(job.id, JobRt::new(job, now));
        }
        self.load_rollout(store, now)?;
        Ok(())
    }

    /// The effects so far, in order.
    pub(crate) fn take(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.out)
    }

    fn push(&mut self, e: Effect) {
        self.out.push(e);
    }

    fn emit(&mut self, e: Event) {
        self.out.push(Effect::Emit(e));
    }

    // ---- queries --------------------------------------------------------------

    /// Every known node.
    pub(crate) fn nodes(&self) -> Vec<Node> {
        self.nodes.values().map(|n| self.node_now(n)).collect()
    }

    /// Every visible pending update.
    pub(crate) fn pending(&self, now: Millis) -> Vec<PendingUpdate> {
        self.nodes
            .keys()
            .flat_map(|k| self.visible(k, now))
            .collect()
    }

    /// Unfinished jobs.
    pub(crate) fn jobs(&self) -> Vec<Job> {
        self.jobs.values().map(|r| r.job.clone()).collect()
    }

    /// A node as a view names it. Without an account, an id that is in
    /// more than one account is refused: approving the wrong device is
    /// worse than asking.
    pub(crate) fn find(&self, r: &NodeRef) -> Result<Key> {
        if let Some(a) = &r.account {
            let k = (a.clone(), r.node_id.clone());
            if self.nodes.contains_key(&k) {
                return Ok(k);
            }
            return Err(Error::UnknownNode(format!(
                "{}/{}",
                parse::clean(a, 64),
                parse::clean(&r.node_id, 64)
            )));
        }
        let mut found = self.nodes.keys().filter(|k| k.1 == r.node_id);
        match (found.next(), found.next()) {
            (Some(k), None) => Ok(k.clone()),
            (None, _) => Err(Error::UnknownNode(parse::clean(&r.node_id, 64))),
            (Some(a), Some(b)) => {
                let mut accounts = vec![a.0.clone(), b.0.clone()];
                accounts.extend(found.map(|k| k.0.clone()));
                Err(Error::AmbiguousNode {
                    node_id: parse::clean(&r.node_id, 64),
                    accounts,
                })
            }
        }
    }

    /// The node's OTA names (default ones when its config was never seen).
    pub(crate) fn names(&self, k: &Key) -> OtaNames {
        self.nodes
            .get(k)
            .and_then(|n| n.ota.clone())
            .unwrap_or_default()
    }

    /// Is the node known to be online?
    pub(crate) fn online(&self, k: &Key) -> bool {
        self.nodes.get(k).is_some_and(Node::is_online)
    }

    /// What an account's REST sources should do: nodes to check for cloud
    /// offers, and jobs to poll (with `true` for the fast pace).
    pub(crate) fn source_plan(&self, account: &str, mqtt_live: bool) -> SourcePlan {
        let nodes = self
            .nodes
            .keys()
            .filter(|k| k.0 == account)
            .map(|k| k.1.clone())
            .collect();
        let mut polls = vec![];
        for j in self.jobs.values().map(|r| &r.job) {
            // A start the device may have taken without a word (its report
            // lost, then a restart) is still asked about.
            let not_taken = matches!(
                j.state,
                JobState::Queued {
                    reason: crate::model::QueueReason::NotTaken { .. }
                }
            );
            if j.account != account || !(j.state.is_running() || not_taken) {
                continue;
            }
            let online = self
                .nodes
                .get(&(j.account.clone(), j.node_id.clone()))
                .is_none_or(Node::is_online);
            let slow = !online
                || mqtt_live
                || matches!(
                    j.state,
                    JobState::Delayed { .. }
                        | JobState::Stuck
                        | JobState::Verifying
                        | JobState::Queued { .. }
                );
            polls.push((j.node_id.clone(), j.ota_job_id.clone(), !slow));
        }
        SourcePlan {
            busy: !polls.is_empty(),
            nodes,
            polls,
        }
    }

    // ---- accounts -------------------------------------------------------------

    /// An account starts: its facts are taken from now on.
    pub(crate) fn add_account(&mut self, name: &str) {
        self.accounts.insert(name.to_string());
    }

    /// An account is removed: its nodes and offers go (its history stays).
    pub(crate) fn remove_account(&mut self, name: &str, now: Millis) {
        self.accounts.remove(name);
        self.links.remove(name);
        let keys: Vec<Key> = self.nodes.keys().filter(|k| k.0 == name).cloned().collect();
        for k in keys {
            self.forget_node(&k, now);
        }
    }

    fn forget_node(&mut self, k: &Key, now: Millis) {
        let before = self.visible(k, now);
        self.nodes.remove(k);
        self.node_pending.remove(k);
        self.cloud_pending.remove(k);
        self.pending_diff(k, before, now);
    }

    // ---- policies (already stored by the actor) --------------------------------

    /// "Remind me later" set or cleared.
    pub(crate) fn set_snooze(&mut self, k: &Key, until: Option<Millis>, now: Millis) {
        let before = self.visible(k, now);
        match until {
            Some(u) => self.snoozes.insert(k.clone(), u),
            None => self.snoozes.remove(k),
        };
        self.pending_diff(k, before, now);
    }

    /// "Skip this version" for the version offered now.
    pub(crate) fn set_skip(&mut self, k: &Key, version: String, now: Millis) {
        let before = self.visible(k, now);
        self.skips.insert(k.clone(), version);
        self.pending_diff(k, before, now);
    }

    /// Per-node auto-approve.
    pub(crate) fn set_auto(&mut self, k: &Key, on: bool, now: Millis) {
        let before = self.visible(k, now);
        if on {
            self.auto.insert(k.clone());
        } else {
            self.auto.remove(k);
        }
        // The warning on a held-back update says whether auto-approve waits.
        self.pending_diff(k, before, now);
        self.maybe_auto(k, now);
    }
}

/// See [`Core::source_plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourcePlan {
    /// A job runs: sweep at the busy pace.
    pub busy: bool,
    /// Every node of the account.
    pub nodes: Vec<String>,
    /// (node, job, fast) to poll.
    pub polls: Vec<(String, String, bool)>,
}
