//! What deserves a notification, decided from engine events: the rules
//! the desktop app and `greenlight watch` share. Pure logic, so it is tested
//! without a desktop: a shell feeds it events and a clock and shows what it
//! returns (the app through its notification plugin, the daemon through the
//! desktop's notification service while no app is attached).
//!
//! Rules: new pending updates are batched (one notification for everything
//! that appeared within [`BATCH_WINDOW_MS`], never one per node per release,
//! and each update at most once per run); a job's end (success, failure,
//! rejection, rollback) and a stuck job are told once each. Nothing is shown
//! while notifications are paused or inside quiet hours; what is held back
//! then is dropped, not queued up to burst out later (the inbox and the
//! tray badge still show it). Both settings follow the engine's own events
//! ([`Event::NotificationsPaused`], [`Event::QuietHoursChanged`]), so a
//! change made in one process reaches every notifier; the shell reads their
//! values once at start ([`crate::EngineHandle::notifications_paused`],
//! [`crate::EngineHandle::policies`]).

use std::collections::{BTreeMap, HashSet};

use crate::blynk::{BlynkEvent, BlynkRolloutStage};
use crate::event::Event;
use crate::model::{JobState, Millis, PendingUpdate, QuietHours};
use crate::policy;

/// How long new pending updates are gathered before one notification.
pub const BATCH_WINDOW_MS: Millis = 2_000;

/// A notification to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Title line.
    pub title: String,
    /// Body text.
    pub body: String,
}

/// The notification rules' state.
#[derive(Debug, Default)]
pub struct Notifier {
    /// Pending updates seen this run, by (account, node, job).
    seen_pending: HashSet<(String, String, String)>,
    /// Updates waiting for the batch to close: key → device label.
    batch: BTreeMap<(String, String, String), String>,
    batch_started: Option<Millis>,
    /// (job id, state name) already told.
    told_jobs: HashSet<(i64, &'static str)>,
    /// (rollout id, what) already told about staged approvals.
    told_rollouts: HashSet<(i64, String)>,
    /// (campaign id, what) already told about Blynk campaigns.
    told_blynk: HashSet<(i64, String)>,
    /// Device labels by (account, node id), learnt from events: one id
    /// can be two devices in two accounts.
    names: BTreeMap<(String, String), String>,
    /// What was not told because it came while silent.
    held_back: u64,
    /// Paused (from the app's tray or settings, or `greenlight
    /// notifications pause`): nothing is shown.
    pub paused: bool,
    /// The user's quiet hours, if any: nothing is shown inside them.
    pub quiet_hours: Option<QuietHours>,
}

impl Notifier {
    /// A notifier starting from these settings (later changes arrive as
    /// events).
    pub fn new(paused: bool, quiet_hours: Option<QuietHours>) -> Notifier {
        Notifier {
            paused,
            quiet_hours,
            ..Notifier::default()
        }
    }

    /// Marks updates that were already waiting when this notifier started
    /// as told: they were announced by whoever watched before (an earlier
    /// run whose offers were remembered, or the daemon this app attaches
    /// to), so a device repeating one is not news.
    pub fn already_known(&mut self, pending: &[PendingUpdate]) {
        for p in pending {
            self.seen_pending
                .insert((p.account.clone(), p.node_id.clone(), p.job_id.clone()));
        }
    }

    fn silent(&self, now: Millis) -> bool {
        self.paused
            || self
                .quiet_hours
                .as_ref()
                .is_some_and(|q| policy::quiet_until(q, now).is_some())
    }

    /// The note, unless notifications are paused or it is quiet hours:
    /// then it is counted among those held back.
    fn unless_silent(&mut self, note: Note, now: Millis) -> Option<Note> {
        if self.silent(now) {
            self.held_back += 1;
            None
        } else {
            Some(note)
        }
    }

    fn label(&self, account: &str, node_id: &str) -> String {
        self.names
            .get(&(account.to_string(), node_id.to_string()))
            .cloned()
            .unwrap_or_else(|| node_id.to_string())
    }

    /// How many new pending updates are gathered for the open batch (shown
    /// or dropped when [`Notifier::flush`] closes it).
    pub fn gathering(&self) -> usize {
        self.batch.len()
    }

    /// How much was not told, since the start, because it came while
    /// paused or in quiet hours: each new update of a dropped batch and
    /// each other dropped notification counts one. A shell logs it, so
    /// "why did nothing show?" has an answer.
    pub fn held_back(&self) -> u64 {
        self.held_back
    }

    /// Folds one event in; returns what to show now. The settings' own
    /// events (pause, quiet hours) update the notifier.
    pub fn on_event(&mut self, ev: &Event, now: Millis) -> Vec<Note> {
        let mut out = Vec::new();
        match ev {
            Event::NotificationsPaused { paused } => self.paused = *paused,
            Event::QuietHoursChanged { quiet_hours } => self.quiet_hours = *quiet_hours,
            Event::NodeUpdated { node } => {
                if let Some(n) = node.name.as_deref().filter(|n| !n.is_empty()) {
                    self.names
                        .insert((node.account.clone(), node.node_id.clone()), n.to_string());
                }
            }
            Event::PendingAdded { pending } => {
                if let Some(n) = pending.node_name.as_deref().filter(|n| !n.is_empty()) {
                    self.names.insert(
                        (pending.account.clone(), pending.node_id.clone()),
                        n.to_string(),
                    );
                }
                let snoozed = pending.snoozed_until.is_some_and(|t| t > now);
                let key = (
                    pending.account.clone(),
                    pending.node_id.clone(),
                    pending.job_id.clone(),
                );
                if !snoozed && self.seen_pending.insert(key.clone()) {
                    let label = format!(
                        "{} → {}",
                        self.label(&pending.account, &pending.node_id),
                        pending.to_version
                    );
                    self.batch.insert(key, label);
                    self.batch_started.get_or_insert(now);
                }
            }
            Event::JobChanged { job } => {
                let name = self.label(&job.account, &job.node_id);
                let note = match &job.state {
                    JobState::Success => Some(Note {
                        title: format!("{name} updated"),
                        body: format!("Now running {}.", job.to_version),
                    }),
                    JobState::Failed { reason } => Some(Note {
                        title: format!("{name}: update failed"),
                        body: reason.clone(),
                    }),
                    JobState::Rejected { reason } => Some(Note {
                        title: format!("{name}: update rejected"),
                        body: reason.clone(),
                    }),
                    JobState::RolledBack { .. } => Some(Note {
                        title: format!("{name}: update rolled back"),
                        body: format!(
                            "Not updated to {}: {}.",
                            job.to_version,
                            crate::words::reason(&job.state)
                        ),
                    }),
                    JobState::Stuck => Some(Note {
                        title: format!("{name}: no progress"),
                        body: "The update has not moved for a while. Check that the device is powered and online; Greenlight keeps following it.".into(),
                    }),
                    _ => None,
                };
                if let Some(note) = note {
                    if self.told_jobs.insert((job.id, job.state.name())) {
                        out.extend(self.unless_silent(note, now));
                    }
                }
            }
            Event::RolloutChanged { rollout } => {
                if let Some(note) = self.rollout_note(rollout) {
                    out.extend(self.unless_silent(note, now));
                }
            }
            _ => {}
        }
        out.extend(self.flush(now));
        out
    }

    /// A rollout that stopped or finished, told once each. A stopped
    /// rollout is saved again while its in-flight devices finish; that is
    /// not news. Once resumed, a new stop is.
    fn rollout_note(&mut self, r: &crate::rollout::Rollout) -> Option<Note> {
        use crate::rollout::RolloutState as S;
        let c = r.counts();
        let (key, note) = match &r.state {
            S::Running => {
                self.told_rollouts
                    .retain(|(id, w)| !(*id == r.id && w.starts_with("stopped")));
                return None;
            }
            // The user did it: nothing to tell.
            S::Cancelled => return None,
            S::Stopped {
                account,
                node_id,
                reason,
            } => (
                format!("stopped:{account}/{node_id}"),
                Note {
                    // The rollout names its devices; the notifier may
                    // not have heard this one's name yet.
                    title: format!(
                        "Careful update stopped at {}",
                        r.members
                            .iter()
                            .find(|m| &m.account == account && &m.node_id == node_id)
                            .and_then(|m| m.name.clone())
                            .unwrap_or_else(|| self.label(account, node_id))
                    ),
                    body: format!(
                        "{reason}. Nothing more is approved ({} updated, {} not started): resume, retry the failed one or cancel in Greenlight.",
                        c.updated, c.waiting
                    ),
                },
            ),
            S::Done => (
                "done".to_string(),
                Note {
                    title: if c.failed == 0 {
                        "Careful update finished".into()
                    } else {
                        "Careful update finished, with failures".into()
                    },
                    body: format!("{}.", r.headline.trim_start_matches("Done: ")),
                },
            ),
        };
        self.told_rollouts.insert((r.id, key)).then_some(note)
    }

    /// Folds one Blynk tracker event in: a suspected reboot loop (once per
    /// device and campaign) and a campaign's end are told.
    pub fn on_blynk(&mut self, ev: &BlynkEvent, now: Millis) -> Vec<Note> {
        let note = match ev {
            BlynkEvent::LoopSuspected {
                campaign_id,
                device,
                ..
            } => self
                .told_blynk
                .insert((*campaign_id, format!("loop:{}", device.key)))
                .then(|| Note {
                    title: format!("{}: suspected reboot loop", device.name),
                    body: format!(
                        "Still on the old build after {} reconnects; the server re-sends the update each time. Stop the update in Greenlight.",
                        device.failed_reconnects
                    ),
                }),
            BlynkEvent::CampaignSettled { campaign } => self
                .told_blynk
                .insert((campaign.id, "settled".into()))
                .then(|| {
                    let c = campaign.counts();
                    let not = c.total.saturating_sub(c.updated);
                    Note {
                        title: format!("Blynk update to {} finished", campaign.build),
                        body: if not == 0 {
                            format!("All {} device(s) updated.", c.updated)
                        } else {
                            format!(
                                "{} of {} device(s) updated; {not} did not (see the Blynk page).",
                                c.updated, c.total
                            )
                        },
                    }
                }),
            // A staged campaign that stopped, needs the user, or is done:
            // said once per stage (its canary's progress is not news).
            BlynkEvent::RolloutChanged { rollout: r } => {
                let title = match &r.stage {
                    BlynkRolloutStage::Stopped { .. } => "stopped",
                    BlynkRolloutStage::NotConfirmed { .. } => "not confirmed",
                    BlynkRolloutStage::Done => "done",
                    _ => return Vec::new(),
                };
                self.told_blynk
                    .insert((r.id, format!("rollout:{}", r.stage.name())))
                    .then(|| Note {
                        title: format!("Staged Blynk update to {}: {title}", r.firmware.build),
                        body: r.words(),
                    })
            }
            _ => None,
        };
        note.and_then(|n| self.unless_silent(n, now))
            .into_iter()
            .collect()
    }

    /// Closes the batch of new pending updates once its window has passed.
    /// Call it on a timer too, so a lone update is not held forever.
    pub fn flush(&mut self, now: Millis) -> Option<Note> {
        let started = self.batch_started?;
        if now - started < BATCH_WINDOW_MS {
            return None;
        }
        self.batch_started = None;
        let labels: Vec<String> = std::mem::take(&mut self.batch).into_values().collect();
        if labels.is_empty() {
            return None;
        }
        if self.silent(now) {
            self.held_back += labels.len() as u64;
            return None;
        }
        let title = if labels.len() == 1 {
            "A firmware update is waiting".to_string()
        } else {
            format!("{} firmware updates are waiting", labels.len())
        };
        let mut body = labels
            .iter()
            .take(4)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if labels.len() > 4 {
            body.push_str(&format!(" and {} more", labels.len() - 4));
        }
        Some(Note { title, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Job, PendingUpdate, UpdateKind};

    fn pending(node: &str, job: &str) -> Event {
        Event::PendingAdded {
            pending: PendingUpdate {
                account: "a".into(),
                node_id: node.into(),
                node_name: Some(format!("Device {node}")),
                job_id: job.into(),
                from_version: Some("1.0".into()),
                to_version: "2.0".into(),
                release_note: None,
                size: None,
                kind: UpdateKind::NodeSide,
                first_seen: 0,
                snoozed_until: None,
                node_online: Some(true),
                node_known: crate::model::Known::Live,
                node_last_seen: None,
                warning: None,
                remembered: None,
            },
        }
    }

    fn job(id: i64, state: JobState) -> Event {
        Event::JobChanged {
            job: Job {
                id,
                account: "a".into(),
                node_id: "n1".into(),
                ota_job_id: "j".into(),
                kind: UpdateKind::NodeSide,
                from_version: Some("1.0".into()),
                to_version: "2.0".into(),
                state,
                progress_text: None,
                percent: None,
                approved_by: "me".into(),
                created_at: 0,
                sent_at: None,
                updated_at: 0,
                finished_at: None,
                headline: String::new(),
            },
        }
    }

    #[test]
    fn a_rollout_is_told_when_it_stops_and_when_it_ends_once_each() {
        use crate::rollout::{Rollout, RolloutState};
        let mut r = Rollout {
            id: 1,
            approved_by: "me".into(),
            created_at: 0,
            updated_at: 0,
            batch: 2,
            soak_secs: 300,
            window: None,
            canary: None,
            state: RolloutState::Stopped {
                account: "a".into(),
                node_id: "n1".into(),
                reason: "Plug rolled back: it went back".into(),
            },
            members: vec![],
            headline: String::new(),
        };
        let mut n = Notifier::default();
        let ev = |r: &Rollout| Event::RolloutChanged { rollout: r.clone() };
        let shown = n.on_event(&ev(&r), 0);
        assert_eq!(shown.len(), 1);
        assert!(shown[0].title.contains("stopped at n1"), "{shown:?}");
        assert!(shown[0].body.starts_with("Plug rolled back"), "{shown:?}");
        // Saved again while stopped: not news.
        r.updated_at = 5;
        assert!(n.on_event(&ev(&r), 1).is_empty());
        // Resumed, then stopped again at the same device: news again.
        let stop = r.state.clone();
        r.state = RolloutState::Running;
        assert!(n.on_event(&ev(&r), 2).is_empty());
        r.state = stop;
        assert_eq!(n.on_event(&ev(&r), 3).len(), 1);
        r.state = RolloutState::Done;
        r.headline = "Done: 4 updated".into();
        let done = n.on_event(&ev(&r), 4);
        assert_eq!(done[0].title, "Careful update finished");
        assert_eq!(done[0].body, "4 updated.");
        assert!(n.on_event(&ev(&r), 5).is_empty());
        // Paused: held back, not shown.
        let mut quiet = Notifier::new(true, None);
        assert!(quiet.on_event(&ev(&r), 6).is_empty());
        assert_eq!(quiet.held_back(), 1);
    }

    #[test]
    fn a_burst_of_pending_updates_is_one_notification() {
        let mut n = Notifier::default();
        let mut shown = Vec::new();
        for i in 0..7 {
            shown.extend(n.on_event(&pending(&format!("n{i}"), "j1"), 100 + i));
        }
        // The same update announced again (re-subscribe, sweep) is not new.
        shown.extend(n.on_event(&pending("n0", "j1"), 500));
        assert!(shown.is_empty(), "nothing before the window closes");
        let note = n.flush(100 + BATCH_WINDOW_MS).expect("one note");
        assert_eq!(note.title, "7 firmware updates are waiting");
        assert!(note.body.starts_with("Device n0 → 2.0, Device n1 → 2.0"));
        assert!(note.body.ends_with("and 3 more"), "{}", note.body);
        assert_eq!(n.flush(10_000), None);
        assert!(n.on_event(&pending("n3", "j1"), 20_000).is_empty());
        assert_eq!(n.flush(30_000), None, "an update is told once per run");
        assert!(n.on_event(&pending("n3", "j2"), 40_000).is_empty());
        assert_eq!(
            n.flush(50_000).map(|n| n.title),
            Some("A firmware update is waiting".into()),
            "a newer release of the same node is news"
        );
    }

    #[test]
    fn job_endings_are_told_once_with_their_reason() {
        let mut n = Notifier::default();
        assert!(n
            .on_event(&job(1, JobState::InProgress { attempt: None }), 0)
            .is_empty());
        // A failed attempt the device retries is not an ending: no "failed".
        let retrying = JobState::Retrying {
            attempt: Some(crate::model::Attempt { n: 1, of: 3 }),
            reason: "download failed".into(),
        };
        assert!(n.on_event(&job(1, retrying), 0).is_empty());
        let failed = JobState::Failed {
            reason: "download failed: host unreachable".into(),
        };
        let notes = n.on_event(&job(1, failed.clone()), 1);
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].title, "n1: update failed");
        assert_eq!(notes[0].body, "download failed: host unreachable");
        assert!(n.on_event(&job(1, failed), 2).is_empty(), "told once");
        let rb = JobState::RolledBack {
            reason: "the new firmware did not start properly".into(),
        };
        let notes = n.on_event(&job(2, rb), 3);
        assert_eq!(notes.len(), 1);
        assert_eq!(
            notes[0].body,
            "Not updated to 2.0: the new firmware did not start properly."
        );
        assert_eq!(
            n.on_event(&job(3, JobState::Success), 3)[0].body,
            "Now running 2.0."
        );
    }

    #[test]
    fn a_blynk_reboot_loop_and_a_campaign_end_are_told_once() {
        use crate::blynk::{Campaign, CampaignStatus, DeviceRecord, DeviceState, Target};
        let device = |state: DeviceState| DeviceRecord {
            key: "alice/1/2".into(),
            name: "Greenhouse".into(),
            owner: "alice@example.com".into(),
            project: "Garden".into(),
            token_hint: "ab…yz".into(),
            board: None,
            build_before: Some("old".into()),
            build_now: Some("old".into()),
            online: true,
            state,
            sends: 4,
            failed_reconnects: 3,
            changed_at: 0,
            seen_at: 0,
            marks: Default::default(),
        };
        let mut n = Notifier::default();
        let looping = BlynkEvent::LoopSuspected {
            campaign_id: 9,
            account: "home".into(),
            device: device(DeviceState::Looping { reconnects: 3 }),
        };
        let notes = n.on_blynk(&looping, 0);
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].title, "Greenhouse: suspected reboot loop");
        assert!(notes[0].body.contains("after 3 reconnects"));
        assert!(n.on_blynk(&looping, 1).is_empty(), "told once");
        let campaign = Campaign {
            id: 9,
            account: "home".into(),
            target: Target::All,
            build: "Nov 23 2026".into(),
            file_name: "fw.bin".into(),
            size: 1,
            sha256: String::new(),
            server_path: None,
            status: CampaignStatus::Completed,
            loop_after: 3,
            started_by: "me".into(),
            created_at: 0,
            started_at: None,
            updated_at: 0,
            finished_at: None,
            settled_at: None,
            withdrawn_at: None,
            devices: vec![
                device(DeviceState::Looping { reconnects: 3 }),
                device(DeviceState::Updated),
            ],
        };
        let settled = BlynkEvent::CampaignSettled { campaign };
        let notes = n.on_blynk(&settled, 2);
        assert_eq!(notes[0].title, "Blynk update to Nov 23 2026 finished");
        assert_eq!(
            notes[0].body,
            "1 of 2 device(s) updated; 1 did not (see the Blynk page)."
        );
        assert!(n.on_blynk(&settled, 3).is_empty());

        // A staged campaign: its canary's progress is not news; a stop is,
        // once.
        use crate::blynk::{BlynkRollout, BlynkRolloutFirmware, BlynkRolloutStage};
        let rollout = |stage: BlynkRolloutStage| BlynkEvent::RolloutChanged {
            rollout: Box::new(BlynkRollout {
                id: 9,
                account: "home".into(),
                firmware: BlynkRolloutFirmware {
                    path: "/fw.bin".into(),
                    file_name: "fw.bin".into(),
                    build: "Nov 23 2026".into(),
                    size: 1,
                    sha256: String::new(),
                },
                canary: device(DeviceState::NotUpdated {
                    reason: "came back on its old build".into(),
                }),
                canary_campaign: 8,
                canary_sent_at: Some(0),
                target: Target::All,
                loop_after: 3,
                settle_ms: 60_000,
                canary_timeout_ms: 600_000,
                settling: Default::default(),
                extension: None,
                stage,
                note: None,
                started_by: "me".into(),
                created_at: 0,
                updated_at: 0,
                finished_at: None,
            }),
        };
        assert!(n
            .on_blynk(&rollout(BlynkRolloutStage::Canary), 4)
            .is_empty());
        let stopped = rollout(BlynkRolloutStage::Stopped {
            device: Some("Greenhouse".into()),
            reason: "Greenhouse came back on its old build — a reboot loop".into(),
            resumable: true,
        });
        let notes = n.on_blynk(&stopped, 5);
        assert_eq!(notes.len(), 1);
        assert_eq!(
            notes[0].title,
            "Staged Blynk update to Nov 23 2026: stopped"
        );
        assert!(
            notes[0].body.contains("Greenhouse came back"),
            "{}",
            notes[0].body
        );
        assert!(n.on_blynk(&stopped, 6).is_empty(), "told once");
    }

    #[test]
    fn paused_and_quiet_hours_hold_everything_back() {
        let mut n = Notifier {
            paused: true,
            ..Notifier::default()
        };
        assert!(n.on_event(&job(1, JobState::Success), 0).is_empty());
        n.on_event(&pending("n1", "j"), 0);
        assert_eq!(n.flush(BATCH_WINDOW_MS), None);
        // Quiet from 22:00 to 07:00 UTC; 23:00 UTC is inside.
        let mut n = Notifier {
            quiet_hours: Some(QuietHours {
                start_minute: 22 * 60,
                end_minute: 7 * 60,
                utc_offset_minutes: 0,
            }),
            ..Notifier::default()
        };
        let at_23h = 23 * 3_600_000;
        assert!(n.on_event(&job(1, JobState::Stuck), at_23h).is_empty());
        let at_noon = 12 * 3_600_000;
        assert_eq!(n.on_event(&job(2, JobState::Stuck), at_noon).len(), 1);
    }

    #[test]
    fn the_settings_follow_the_engine_events() {
        let mut n = Notifier::default();
        n.on_event(&Event::NotificationsPaused { paused: true }, 0);
        assert!(n.paused);
        n.on_event(&pending("n1", "j"), 0);
        assert_eq!(n.gathering(), 1);
        assert_eq!(n.flush(BATCH_WINDOW_MS), None, "dropped while paused");
        assert_eq!(n.gathering(), 0, "not kept to burst out later");
        assert_eq!(n.held_back(), 1);
        n.on_event(&Event::NotificationsPaused { paused: false }, 0);
        let quiet = QuietHours {
            start_minute: 22 * 60,
            end_minute: 7 * 60,
            utc_offset_minutes: 0,
        };
        n.on_event(
            &Event::QuietHoursChanged {
                quiet_hours: Some(quiet),
            },
            0,
        );
        assert_eq!(n.quiet_hours, Some(quiet));
        assert!(n
            .on_event(&job(1, JobState::Success), 23 * 3_600_000)
            .is_empty());
        assert_eq!(n.held_back(), 2);
        n.on_event(&Event::QuietHoursChanged { quiet_hours: None }, 0);
        assert_eq!(
            n.on_event(&job(2, JobState::Success), 23 * 3_600_000).len(),
            1
        );
    }

    #[test]
    fn updates_already_waiting_at_start_are_not_news_when_repeated() {
        let mut n = Notifier::default();
        let Event::PendingAdded { pending: old } = pending("a", "j1") else {
            unreachable!()
        };
        n.already_known(&[old]);
        assert!(n.on_event(&pending("a", "j1"), 0).is_empty());
        assert!(n.on_event(&pending("b", "j2"), 0).is_empty(), "gathered");
        let note = n.flush(BATCH_WINDOW_MS).expect("the new one");
        assert_eq!(
            note.body, "Device b → 2.0",
            "only the update new since the start"
        );
    }
}
