//! Job states from what real firmware reports (docs/rainmaker.md, "How real
//! firmware reports an update", and "Greenlight's rules" there):
//!
//! - **Attempts.** `failed` "OTA Attempt n/N failed: …" with n < N is
//!   "attempt n of N failed, retrying", not an end; the next attempt's
//!   `in-progress` continues the job.
//! - **Final failure** is decided by one rule: a `failed` is final at once
//!   when its text names the last attempt (N/N) or is a final text ("OTA
//!   download window lapsed."); any other `failed` (no attempt named, or an
//!   earlier attempt with no retry following) becomes final after
//!   `failure_quiet` (3 minutes) with no newer report for the job. A later
//!   report of the same job reopens a failed job.
//! - **Restart and verification.** "Rebooting into new firmware" is
//!   "restarting — checking the new firmware": the node is offline on
//!   purpose and nothing is stuck for `verify_window`. It ends in success
//!   when the node says so or comes back on the new version.
//! - **Rollback**, in both forms (`rejected` "Firmware rolled back", or
//!   `failed` "MQTT did not connect…"), or a node that comes back on its old
//!   version after restarting, is "rolled back" with a plain reason.
//! - **Delays** say why ("waiting for approval", "outside the download
//!   window (02:00–04:30 device time)", "no clock yet").
//! - A device's "Waiting for Approval" from before the approval is never
//!   the state of the approved job.

use super::{Core, Earlier, Effect, Key};
use crate::event::Event;
use crate::model::{DelayReason, JobState, Millis, QueueReason};
use crate::rainmaker::parse::{classify_status, percent_from_text, StatusClass};
use crate::rainmaker::Via;

/// How far a status report's time may lie before its job was created, or
/// after now, and still be used to order reports (clocks of nodes and
/// clouds differ a little; more than this is a wrong clock).
const CLOCK_SLACK_MS: i64 = 3_600_000;

/// What a rollback reported as `failed` means next (docs/rainmaker.md).
const FETCH_AGAIN: &str = "it will fetch the same image again later";

/// How far before the approval a device's clock may stamp its answer.
const REPORT_SKEW_MS: i64 = 60_000;

/// How many finished jobs are kept in memory for late command answers.
const FINISHED_KEPT: usize = 256;

/// One OTA status report for a job.
#[derive(Debug, Clone)]
pub(crate) struct StatusFact {
    pub account: String,
    pub node_id: String,
    pub job_id: String,
    pub status: String,
    pub text: String,
    /// Milliseconds (0: unknown).
    pub ts: i64,
    pub via: Via,
}

impl Core {
    /// Changes a job's state and/or text, stores it, then tells everyone.
    pub(crate) fn set_state(
        &mut self,
        job_id: i64,
        state: JobState,
        text: Option<String>,
        now: Millis,
    ) {
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
            rt.job.percent = if matches!(state, JobState::InProgress { .. }) {
                percent_from_text(&t)
            } else {
                None
            };
            rt.job.progress_text = Some(t);
        }
        if state_changed {
            match &state {
                JobState::Verifying => {
                    rt.verify_since.get_or_insert(now);
                }
                JobState::Retrying { .. } => {
                    rt.failed_at = Some(now);
                }
                _ => {}
            }
            if !matches!(state, JobState::Retrying { .. }) {
                rt.failed_at = None;
            }
        }
        rt.job.state = state;
        rt.job.headline = crate::words::headline(&rt.job.state);
        rt.job.updated_at = now;
        rt.last_change = now;
        if rt.job.state.is_terminal() {
            rt.job.finished_at = Some(now);
        }
        let job = rt.job.clone();
        self.push(Effect::SaveJob(job.clone()));
        let k: Key = (job.account.clone(), job.node_id.clone());
        if job.state.is_terminal() {
            let before = self.visible(&k, now);
            self.jobs.remove(&job_id);
            let key = (k.0.clone(), k.1.clone(), job.ota_job_id.clone());
            let bad = match &job.state {
                JobState::Failed { reason } => Some((false, reason.clone())),
                JobState::RolledBack { .. } => Some((true, crate::words::reason(&job.state))),
                _ => None,
            };
            if matches!(
                job.state,
                JobState::Failed { .. } | JobState::Cancelled | JobState::RolledBack { .. }
            ) {
                // The same offer may be shown (and approved) again.
                self.approved.remove(&key);
            }
            // Only what happened on the device warns about the image: a
            // command that never left says nothing about it. A rollback is
            // the device's own doing, so it warns even when the command was
            // never confirmed sent (a process killed between sending it and
            // recording it): else auto-approve took the same image, offered
            // again, for a fresh one, and the device installed it once more.
            let on_device =
                |(rolled_back, _): &(bool, String)| *rolled_back || job.sent_at.is_some();
            if let Some((rolled_back, reason)) = bad.filter(on_device) {
                self.remember_bad(
                    &k,
                    &job.to_version,
                    Earlier {
                        rolled_back,
                        reason,
                        at: now,
                    },
                );
                self.closed.insert(key, job.clone());
            }
            self.finished.insert(job.id, job.clone());
            while self.finished.len() > FINISHED_KEPT {
                self.finished.pop_first();
            }
            self.pending_diff(&k, before, now);
        }
        self.emit(Event::JobChanged { job });
        self.push(Effect::Sources {
            account: k.0,
            now: true,
        });
    }

    /// An OTA status report (MQTT `otastatus` or REST `ota_status`).
    pub(crate) fn ota_status(&mut self, f: StatusFact, now: Millis) {
        if !self.accounts.contains(&f.account) {
            return;
        }
        let found = self.jobs.iter().find(|(_, r)| {
            r.job.account == f.account && r.job.node_id == f.node_id && r.job.ota_job_id == f.job_id
        });
        let id = match found {
            Some((&id, _)) => id,
            None => {
                self.maybe_reopen(&f, now);
                return;
            }
        };
        let Some(rt) = self.jobs.get_mut(&id) else {
            return;
        };
        // A queued job has not been sent, except one waiting for a device
        // that did not answer: if it answers after all, it took the start.
        let not_taken = matches!(
            rt.job.state,
            JobState::Queued {
                reason: QueueReason::NotTaken { .. }
            }
        );
        if matches!(rt.job.state, JobState::Queued { .. }) && !not_taken {
            return;
        }
        // A node's clock can be wrong: 1970 after a reboot before time
        // sync, or far ahead until a bad sync is corrected. A stamp from
        // before the job existed or from the future orders nothing; trusting
        // it would make every later (true) report look older and freeze the job.
        let ts = f.ts;
        let plausible = ts >= rt.job.created_at - CLOCK_SLACK_MS && ts <= now + CLOCK_SLACK_MS;
        if ts > 0 && !plausible {
            tracing::debug!(node = %f.node_id, status = %f.status, ts, "status report with an implausible time; not used for ordering");
        }
        if ts > 0 && plausible {
            // Nodes stamp in whole seconds, the cloud in milliseconds: only
            // a report from an earlier second is known to be older.
            if ts / 1000 < rt.last_ts / 1000 {
                tracing::debug!(node = %f.node_id, status = %f.status, "ignoring an older status report");
                return;
            }
            rt.last_ts = rt.last_ts.max(ts);
        }
        let cur = rt.job.state.clone();
        let waiting_for_start = not_taken
            || matches!(
                cur,
                JobState::Requested | JobState::Sent | JobState::NotConfirmed { .. }
            );
        // A polled report stamped well before the approval is the cloud's
        // record of an earlier state (an offer, an earlier attempt), not the
        // device's answer to it. MQTT reports arrive as they happen.
        if waiting_for_start
            && f.via == Via::Rest
            && ts > 0
            && plausible
            && ts < rt.job.created_at - REPORT_SKEW_MS
        {
            tracing::debug!(node = %f.node_id, status = %f.status, "a report from before the approval; not its answer");
            return;
        }
        let text_opt = (!f.text.is_empty()).then(|| f.text.clone());
        let class = classify_status(&f.status, &f.text);
        let is_preapproval_offer = waiting_for_start
            && matches!(class, StatusClass::Delayed(DelayReason::WaitingForApproval));
        if !is_preapproval_offer {
            rt.answered = true;
        }
        tracing::debug!(node = %f.node_id, via = ?f.via, status = %f.status, text = %f.text, "job status");
        let k: Key = (f.account.clone(), f.node_id.clone());
        let next = match class {
            StatusClass::Triggered | StatusClass::Unknown => None,
            // The device's own "waiting for approval" from before the start
            // is not an answer to it.
            StatusClass::Delayed(DelayReason::WaitingForApproval) if waiting_for_start => return,
            // A retry that never came: the device asks again, so this
            // approval has run its course.
            StatusClass::Delayed(DelayReason::WaitingForApproval)
                if matches!(cur, JobState::Retrying { .. }) =>
            {
                let reason = match &cur {
                    JobState::Retrying { reason, .. } => reason.clone(),
                    _ => String::new(),
                };
                Some(JobState::Failed {
                    reason: format!(
                        "{reason}; the device stopped trying and asks for approval again"
                    ),
                })
            }
            StatusClass::Started if !waiting_for_start => None,
            StatusClass::Started => Some(JobState::Started),
            StatusClass::InProgress { attempt } => {
                // "Downloaded 40%" during attempt 2 is still attempt 2.
                let attempt = attempt.or(match &cur {
                    JobState::InProgress { attempt } => *attempt,
                    _ => None,
                });
                Some(JobState::InProgress { attempt })
            }
            StatusClass::Rebooting => Some(JobState::Verifying),
            StatusClass::Delayed(delay) => {
                let delay = self.with_window(&k, &f.job_id, delay);
                Some(JobState::Delayed { delay })
            }
            StatusClass::Success => {
                let fw = self.nodes.get(&k).and_then(|n| n.fw_version.clone());
                let Some(rt) = self.jobs.get_mut(&id) else {
                    return;
                };
                let (to, from) = (rt.job.to_version.clone(), rt.job.from_version.clone());
                if fw.is_some() && fw == from && fw.as_ref() != Some(&to) {
                    // Reported success, but the node still says it runs the
                    // old version: wait for it to report again before
                    // believing either.
                    if rt.success_claimed.is_none() {
                        rt.success_claimed = Some(now);
                        tracing::info!(node = %f.node_id, "success reported; confirming the running version");
                        self.push(Effect::Sweep(f.account.clone()));
                    }
                    self.set_state(
                        id,
                        JobState::Verifying,
                        Some("Success reported; checking which version the device runs".into()),
                        now,
                    );
                    return;
                }
                Some(JobState::Success)
            }
            StatusClass::Failed {
                reason,
                attempt,
                last,
            } => Some(if last {
                JobState::Failed {
                    reason: match attempt {
                        Some(a) => format!("{reason} (all {} attempts)", a.of),
                        None => reason,
                    },
                }
            } else {
                JobState::Retrying { attempt, reason }
            }),
            StatusClass::Rejected(reason) => Some(JobState::Rejected { reason }),
            StatusClass::RolledBack { as_failure, .. } => {
                let back_to = self
                    .jobs
                    .get(&id)
                    .and_then(|r| r.job.from_version.clone())
                    .map(|v| format!(" {v}"))
                    .unwrap_or_default();
                Some(JobState::RolledBack {
                    reason: if as_failure {
                        format!(
                            "the new firmware could not reach the cloud in time, so the device went back to its previous firmware{back_to}; {FETCH_AGAIN}"
                        )
                    } else {
                        format!(
                            "the new firmware did not start properly, so the device went back to its previous firmware{back_to}"
                        )
                    },
                })
            }
        };
        let state = next.unwrap_or(cur);
        self.set_state(id, state, text_opt, now);
    }

    /// Puts the job's known download window into a download-window delay.
    pub(crate) fn with_window(&self, k: &Key, job_id: &str, delay: DelayReason) -> DelayReason {
        match delay {
            DelayReason::DownloadWindow { window: None } => DelayReason::DownloadWindow {
                window: self
                    .windows
                    .get(&(k.0.clone(), k.1.clone(), job_id.to_string()))
                    .copied(),
            },
            d => d,
        }
    }

    /// A report of a job that ended as failed or rolled back here: if the
    /// device is in fact still at it (a retry, a re-fetch that downloads,
    /// a late success), the job is followed again.
    fn maybe_reopen(&mut self, f: &StatusFact, now: Millis) {
        let key = (f.account.clone(), f.node_id.clone(), f.job_id.clone());
        let Some(job) = self.closed.get(&key) else {
            return;
        };
        let class = classify_status(&f.status, &f.text);
        // Rolled back (seen from the version it came back with), and now the
        // device's own report says it reported it as a failure: the job stays
        // open in the cloud and the device will fetch the image again.
        if let (
            StatusClass::RolledBack {
                as_failure: true, ..
            },
            JobState::RolledBack { reason },
        ) = (&class, &job.state)
        {
            if !reason.contains(FETCH_AGAIN) {
                let mut job = job.clone();
                job.state = JobState::RolledBack {
                    reason: format!("{reason}; {FETCH_AGAIN}"),
                };
                job.headline = crate::words::headline(&job.state);
                job.progress_text = Some(f.text.clone());
                job.updated_at = now;
                let k: Key = (f.account.clone(), f.node_id.clone());
                if let Some(e) =
                    self.earlier
                        .get_mut(&(k.0.clone(), k.1.clone(), job.to_version.clone()))
                {
                    e.reason = crate::words::reason(&job.state);
                }
                self.closed.insert(key, job.clone());
                self.finished.insert(job.id, job.clone());
                self.push(Effect::SaveJob(job.clone()));
                self.emit(Event::JobChanged { job });
            }
            return;
        }
        let goes_on = matches!(
            class,
            StatusClass::InProgress { .. } | StatusClass::Rebooting | StatusClass::Success
        );
        let newer = f.ts == 0 || job.finished_at.is_none_or(|t| f.ts / 1000 >= t / 1000);
        // A job that already runs for the node (approved again) wins.
        let busy = self
            .jobs
            .values()
            .any(|r| r.job.account == f.account && r.job.node_id == f.node_id);
        if !goes_on || !newer || busy {
            return;
        }
        let Some(mut job) = self.closed.remove(&key) else {
            return;
        };
        tracing::info!(node = %f.node_id, job = %f.job_id, "a finished job goes on; following it again");
        let k: Key = (f.account.clone(), f.node_id.clone());
        let before = self.visible(&k, now);
        self.earlier
            .remove(&(k.0.clone(), k.1.clone(), job.to_version.clone()));
        self.approved.insert(key);
        job.finished_at = None;
        job.state = JobState::Started;
        let id = job.id;
        self.jobs.insert(id, super::JobRt::new(job, now));
        self.pending_diff(&k, before, now);
        self.ota_status(f.clone(), now);
    }

    /// Timers: quiet hours and schedules end, stuck jobs, failures that no
    /// retry followed, successes to settle.
    pub(crate) fn tick(&mut self, now: Millis) {
        let mut release = vec![];
        let mut wait_for_node = vec![];
        let mut stuck = vec![];
        let mut settle = vec![];
        let mut give_up = vec![];
        for (id, rt) in &self.jobs {
            let quiet_for = now - rt.last_change;
            match &rt.job.state {
                JobState::Queued {
                    reason: QueueReason::QuietHours { until },
                } if *until <= now => release.push(*id),
                JobState::Queued {
                    reason: QueueReason::Scheduled { at },
                } if *at <= now => {
                    if self.online(&(rt.job.account.clone(), rt.job.node_id.clone())) {
                        release.push(*id)
                    } else {
                        wait_for_node.push(*id)
                    }
                }
                JobState::Retrying { .. }
                    if rt
                        .failed_at
                        .is_some_and(|t| now - t >= self.cfg.failure_quiet) =>
                {
                    give_up.push(*id);
                }
                JobState::Retrying { .. } => {}
                // Restarting and checking: offline on purpose, for as long
                // as the firmware's rollback window allows.
                JobState::Verifying if rt.success_claimed.is_none() => {
                    let since = rt.verify_since.unwrap_or(rt.last_change);
                    if now - since >= self.cfg.verify_window.max(self.cfg.stuck_after) {
                        stuck.push(*id);
                    }
                }
                // A download window or a validity can legitimately hold a
                // job for hours: that is not stuck.
                JobState::Delayed {
                    delay: DelayReason::DownloadWindow { .. } | DelayReason::NotValidYet,
                } => {}
                JobState::Sent
                | JobState::Started
                | JobState::InProgress { .. }
                | JobState::Delayed { .. }
                    if quiet_for >= self.cfg.stuck_after =>
                {
                    stuck.push(*id)
                }
                _ => {}
            }
            if let Some(at) = rt.success_claimed {
                if now - at >= self.cfg.rollback_grace {
                    settle.push(*id);
                }
            }
        }
        for id in release {
            self.release(id, now);
        }
        for id in wait_for_node {
            let waiting = JobState::Queued {
                reason: QueueReason::WaitingForNode,
            };
            self.set_state(id, waiting, None, now);
        }
        for id in stuck {
            self.set_state(id, JobState::Stuck, None, now);
        }
        for id in give_up {
            let Some(JobState::Retrying { attempt, reason }) =
                self.jobs.get(&id).map(|r| r.job.state.clone())
            else {
                continue;
            };
            let reason = match attempt {
                Some(a) => format!(
                    "{reason} (attempt {} of {}; the device did not try again)",
                    a.n, a.of
                ),
                None => reason,
            };
            self.set_state(id, JobState::Failed { reason }, None, now);
        }
        for id in settle {
            let Some(rt) = self.jobs.get(&id) else {
                continue;
            };
            let k = (rt.job.account.clone(), rt.job.node_id.clone());
            let fw = self.nodes.get(&k).and_then(|n| n.fw_version.clone());
            if fw.is_some() && fw == rt.job.from_version {
                let reason = "it reported success but still runs its old firmware".to_string();
                self.set_state(
                    id,
                    JobState::RolledBack { reason },
                    Some("The device still runs its old firmware".into()),
                    now,
                );
            } else {
                self.set_state(id, JobState::Success, None, now);
            }
        }
    }
}
