//! Staged ("careful") Blynk campaigns, issue 16: one device first (the
//! canary), then the rest — a user's devices, one of their projects, or
//! every device — only once the canary runs the new build and stays up;
//! stopped by the first failure.
//!
//! Why these rules, from what the server offers (`docs/blynk.md`):
//!
//! - The canary gets a one-device update (`?token=`), sent once, now. The
//!   only evidence that it worked is the device logging in again with the
//!   campaign's build; it must then stay online in that one session for the
//!   settle time, because a firmware that boots and then crashes logs in
//!   again and again on the new build.
//! - A token update is never re-sent, so the canary itself cannot loop; its
//!   coming back on the old build (the download or the flash failed) is the
//!   first turn of the reboot loop every device like it would enter once the
//!   campaign, which the server re-sends on every login, stands. So that
//!   stops the rollout before anything else is sent.
//! - After the extension the campaign is an ordinary tracked campaign. The
//!   first device suspected in a reboot loop stops it, and since the server
//!   re-sends the URL on every reconnect, the server's stop (global: every
//!   campaign on it ends) is called.
//!
//! Every send is recorded before it leaves and never repeated by itself: the
//! canary update is sent once, at the start; the extension is recorded as
//! `Extending` before the upload, and an `Extending` with no recorded answer
//! (Greenlight stopped in between) becomes [`BlynkRolloutStage::NotConfirmed`]:
//! the user checks the server and resumes (sends it again) or cancels —
//! as the RainMaker side treats an approval whose command may or may not
//! have left.
//!
//! Everything here is pure (no I/O, the clock passed in): the tracker's
//! actor performs what a [`Step`] asks, in order (store, event, network).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::model::{
    Campaign, CampaignStatus, DeviceRecord, DeviceSeen, DeviceState, Marks, StartTarget, Target,
};
use super::track::{self, Ctx};
use crate::model::Millis;

/// Default time the canary must stay online on the new build, in one
/// session, before the rest get the update.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(60);

/// Default time the canary has to come back on the new build.
pub const DEFAULT_CANARY_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// How a staged campaign is run; see [`crate::blynk::BlynkHandle::start_staged`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedOptions {
    /// How long the canary must stay online on the new build, without
    /// logging in again, before the update goes to the rest.
    pub settle: Duration,
    /// How long the canary has to come back on the new build (counted from
    /// the server's answer to its update); the settle time is added once
    /// it runs it.
    pub canary_timeout: Duration,
    /// Reconnects on the old build before a reboot loop is suspected in the
    /// extended campaign, and logins on the new build within the settle
    /// time before the canary is (the tracker's default when `None`).
    pub loop_after: Option<u32>,
}

impl Default for StagedOptions {
    /// [`DEFAULT_SETTLE`], [`DEFAULT_CANARY_TIMEOUT`], the tracker's loop threshold.
    fn default() -> Self {
        StagedOptions {
            settle: DEFAULT_SETTLE,
            canary_timeout: DEFAULT_CANARY_TIMEOUT,
            loop_after: None,
        }
    }
}

/// The firmware of a staged campaign as checked at its start. The file is
/// read again for the extension, possibly after a restart, and must still
/// have this SHA-256: what the canary proved is what the rest get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct BlynkRolloutFirmware {
    /// Absolute path of the file.
    pub path: String,
    /// File name.
    pub file_name: String,
    /// Build tag (what an updated device reports).
    pub build: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
}

/// How long the canary has been up on the new build (bookkeeping of the
/// settle time; server times only compared with server times).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct BlynkSettling {
    /// Since when (our clock) it has been seen online on the new build in
    /// the current session; `None` while offline or not on it.
    pub since: Option<Millis>,
    /// `connectTime` (server clock) of the first session seen on the new
    /// build, then of the latest: a new one is a restart.
    pub session: Option<i64>,
    /// Logins on the new build after the first one.
    pub restarts: u32,
}

/// Where a staged campaign is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum BlynkRolloutStage {
    /// The canary's update was sent (or is being sent): waiting for it to
    /// run the new build and stay up for the settle time.
    Canary,
    /// Recorded before the upload: the update for the final target is
    /// being sent.
    Extending {
        /// When the intent was recorded (our clock).
        since: Millis,
    },
    /// The server took the update for the final target: followed as an
    /// ordinary campaign ([`BlynkRollout::extension`]).
    Extended,
    /// The extension may or may not have reached the server (no answer, or
    /// Greenlight stopped while sending it). Never sent again by itself:
    /// resume sends it again, cancel calls the server's stop.
    NotConfirmed {
        /// Why, in plain words.
        reason: String,
    },
    /// The extended campaign settled: every device updated, offline, or
    /// otherwise done, none looping.
    Done,
    /// Stopped at a failure.
    Stopped {
        /// The device that failed, by name, when one did.
        device: Option<String>,
        /// Why, in plain words.
        reason: String,
        /// Stopped before the extension: the user may extend anyway
        /// (resume) or cancel. `false`: over.
        resumable: bool,
    },
    /// Cancelled by the user.
    Cancelled {
        /// Who.
        by: String,
        /// What it left on the server, in plain words.
        reason: String,
    },
}

impl BlynkRolloutStage {
    /// Short stable name.
    pub fn name(&self) -> &'static str {
        match self {
            BlynkRolloutStage::Canary => "canary",
            BlynkRolloutStage::Extending { .. } => "extending",
            BlynkRolloutStage::Extended => "extended",
            BlynkRolloutStage::NotConfirmed { .. } => "not_confirmed",
            BlynkRolloutStage::Done => "done",
            BlynkRolloutStage::Stopped { .. } => "stopped",
            BlynkRolloutStage::Cancelled { .. } => "cancelled",
        }
    }
}

/// A staged campaign on a Blynk server: a canary device first, then the
/// final target. Stored as one record (kind `"blynk"` of the `rollouts`
/// table); the canary's token is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct BlynkRollout {
    /// Local id (the row's).
    #[serde(default)]
    pub id: i64,
    /// Account (server).
    pub account: String,
    /// The firmware, as checked at the start.
    pub firmware: BlynkRolloutFirmware,
    /// The canary device, followed from the start.
    pub canary: DeviceRecord,
    /// The canary's one-device campaign.
    pub canary_campaign: i64,
    /// When the server took the canary's update (our clock); `None` while
    /// being sent, or when its answer never came.
    pub canary_sent_at: Option<Millis>,
    /// Who gets the update after the canary: a user (and project) or every device.
    pub target: Target,
    /// Reboot-loop threshold (see [`StagedOptions::loop_after`]).
    pub loop_after: u32,
    /// Settle time, ms.
    pub settle_ms: i64,
    /// Canary timeout, ms.
    pub canary_timeout_ms: i64,
    /// Settle-time bookkeeping.
    #[serde(default)]
    pub settling: BlynkSettling,
    /// The campaign for the final target, once recorded.
    pub extension: Option<i64>,
    /// Where it is.
    pub stage: BlynkRolloutStage,
    /// What Greenlight did on the server after a stop or a cancel (the
    /// global stop, or why it failed).
    #[serde(default)]
    pub note: Option<String>,
    /// Who started it.
    pub started_by: String,
    /// When it was recorded.
    pub created_at: Millis,
    /// Last change shown.
    pub updated_at: Millis,
    /// When it ended (done, stopped for good, cancelled).
    pub finished_at: Option<Millis>,
}

/// What the tracker must do after applying a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing changed.
    None,
    /// Changed: store it, then say so.
    Changed,
    /// Now `Extending`: store the intent, then send the extension.
    Extend,
    /// Stopped at a reboot loop of the extended campaign: store it, then
    /// call the server's stop.
    StopServer,
}

/// "45 s", "2 min", "1 h 30 min".
pub fn span(ms: i64) -> String {
    let s = (ms.max(0) + 999) / 1000;
    let (h, m, r) = (s / 3600, s % 3600 / 60, s % 60);
    match (h, m, r) {
        (0, 0, r) => format!("{r} s"),
        (0, m, 0) => format!("{m} min"),
        (0, m, _) if m >= 10 => format!("{m} min"),
        (0, m, r) => format!("{m} min {r} s"),
        (h, 0, _) => format!("{h} h"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

impl BlynkRollout {
    /// Not over: the tracker follows it, or it waits for the user (resume
    /// or cancel). At most one per account.
    pub fn is_active(&self) -> bool {
        match &self.stage {
            BlynkRolloutStage::Canary
            | BlynkRolloutStage::Extending { .. }
            | BlynkRolloutStage::Extended
            | BlynkRolloutStage::NotConfirmed { .. } => true,
            BlynkRolloutStage::Stopped { resumable, .. } => *resumable,
            BlynkRolloutStage::Done | BlynkRolloutStage::Cancelled { .. } => false,
        }
    }

    /// Waiting for the user: resume (extend) or cancel.
    pub fn needs_user(&self) -> bool {
        matches!(
            self.stage,
            BlynkRolloutStage::NotConfirmed { .. }
                | BlynkRolloutStage::Stopped {
                    resumable: true,
                    ..
                }
        )
    }

    /// The final target as the admin API takes it.
    pub fn final_target(&self) -> StartTarget {
        match &self.target {
            Target::User { email, project } => StartTarget::User {
                email: email.clone(),
                project: project.clone(),
            },
            // Only users and all are ever stored as a rollout's target.
            Target::All | Target::Token { .. } => StartTarget::All,
        }
    }

    /// Where it is, in plain words.
    pub fn words(&self) -> String {
        let c = &self.canary.name;
        let t = self.target.describe();
        let s = match &self.stage {
            BlynkRolloutStage::Canary => match &self.canary.state {
                DeviceState::Updated => format!(
                    "canary {c} runs build \"{}\"; {t} gets it once {c} has stayed up on it for {}",
                    self.firmware.build,
                    span(self.settle_ms)
                ),
                st => format!(
                    "canary {c}: {}; {t} gets the update once {c} runs it and stays up for {}",
                    st.words(),
                    span(self.settle_ms)
                ),
            },
            BlynkRolloutStage::Extending { .. } => {
                format!("canary {c} is fine; sending the update to {t}")
            }
            BlynkRolloutStage::Extended => format!(
                "canary {c} is fine; the update was sent to {t} (campaign #{})",
                self.extension.unwrap_or_default()
            ),
            BlynkRolloutStage::NotConfirmed { reason } => format!("not confirmed — {reason}"),
            BlynkRolloutStage::Done => format!(
                "done — canary {c}, then {t} (campaign #{})",
                self.extension.unwrap_or_default()
            ),
            BlynkRolloutStage::Stopped { reason, .. } => format!("stopped — {reason}"),
            BlynkRolloutStage::Cancelled { by, reason } => format!("cancelled by {by} — {reason}"),
        };
        match &self.note {
            Some(n) => format!("{s}. {n}"),
            None => s,
        }
    }

    /// The record without the bookkeeping that changes on every poll: two
    /// views differ only when something worth showing changed.
    pub fn view(&self) -> BlynkRollout {
        let mut v = self.clone();
        v.canary.seen_at = 0;
        v.canary.marks = Marks::default();
        v.updated_at = 0;
        v
    }

    fn stop(&mut self, device: Option<String>, reason: String, resumable: bool, now: Millis) {
        self.stage = BlynkRolloutStage::Stopped {
            device,
            reason,
            resumable,
        };
        if !resumable {
            self.finished_at = Some(now);
        }
    }

    /// Folds one poll into the canary stage: the canary as the server shows
    /// it now (`None`: not in the answer). Returns [`Step::Extend`] once it
    /// has run the new build, online in one session, for the settle time.
    pub fn observe_canary(
        &mut self,
        seen: Option<&DeviceSeen>,
        install_grace_ms: i64,
        now: Millis,
    ) -> Step {
        if self.stage != BlynkRolloutStage::Canary {
            return Step::None;
        }
        let before = self.clone();
        let build = self.firmware.build.clone();
        let ctx = Ctx {
            build: &build,
            // A token update: sent once, never re-sent.
            campaign: false,
            standing: true,
            loop_after: self.loop_after,
            install_grace_ms,
            now,
        };
        if let Some(s) = seen {
            track::observe(&mut self.canary, s, &ctx);
        }
        let name = self.canary.name.clone();
        match self.canary.state.clone() {
            DeviceState::Updated => {
                let st = &mut self.settling;
                match seen.filter(|s| s.online) {
                    Some(s) => match st.session {
                        Some(c) if c != s.connect_time => {
                            st.restarts += 1;
                            st.session = Some(s.connect_time);
                            st.since = Some(now);
                        }
                        Some(_) => {
                            st.since.get_or_insert(now);
                        }
                        None => {
                            st.session = Some(s.connect_time);
                            st.since = Some(now);
                        }
                    },
                    None => st.since = None,
                }
                if st.restarts >= self.loop_after.max(1) {
                    let reason = format!(
                        "{name} runs the new build but logged in again {} times before staying up for {} — suspected reboot loop on the new firmware; nothing was sent to the other devices",
                        st.restarts,
                        span(self.settle_ms)
                    );
                    self.stop(Some(name), reason, true, now);
                    return Step::Changed;
                }
                if st.since.is_some_and(|t| now - t >= self.settle_ms) {
                    self.stage = BlynkRolloutStage::Extending { since: now };
                    return Step::Extend;
                }
            }
            DeviceState::NotUpdated { reason } => {
                let why = if self.canary.failed_reconnects > 0 {
                    format!(
                        "{name} came back on its old build{} after the update was sent: the download or the flash failed. As a campaign the server would send it again on every reconnect — a reboot loop — so nothing was sent to the other devices",
                        self.canary
                            .build_now
                            .as_deref()
                            .map(|b| format!(" \"{b}\""))
                            .unwrap_or_default()
                    )
                } else {
                    format!(
                        "{name} was not updated — {reason}; nothing was sent to the other devices"
                    )
                };
                self.stop(Some(name), why, true, now);
                return Step::Changed;
            }
            DeviceState::Looping { reconnects } => {
                let why = format!(
                    "{name} came back on its old build {reconnects} times — suspected reboot loop; nothing was sent to the other devices"
                );
                self.stop(Some(name), why, true, now);
                return Step::Changed;
            }
            _ => {}
        }
        let t0 = self.canary_sent_at.unwrap_or(self.created_at);
        let ran_it = self.settling.session.is_some();
        let limit = self.canary_timeout_ms + if ran_it { self.settle_ms } else { 0 };
        if now - t0 >= limit {
            let why = if ran_it {
                format!(
                    "{name} runs the new build but did not stay online on it for {} within {}; nothing was sent to the other devices",
                    span(self.settle_ms),
                    span(limit)
                )
            } else {
                format!(
                    "{name} not updated in {} (now: {}); nothing was sent to the other devices",
                    span(self.canary_timeout_ms),
                    self.canary.state.words()
                )
            };
            self.stop(Some(name), why, true, now);
            return Step::Changed;
        }
        if *self != before {
            Step::Changed
        } else {
            Step::None
        }
    }

    /// The server's answer to the canary's update. `Err((why, maybe))`:
    /// refused, or (`maybe`) no answer — then the canary's build decides,
    /// as for any update, within the timeout.
    pub fn canary_answered(
        &mut self,
        result: Result<Option<&DeviceRecord>, (&str, bool)>,
        now: Millis,
    ) -> Step {
        if self.stage != BlynkRolloutStage::Canary || self.canary_sent_at.is_some() {
            return Step::None;
        }
        match result {
            Ok(rec) => {
                self.canary_sent_at = Some(now);
                if let Some(r) = rec {
                    self.canary = r.clone();
                }
            }
            Err((_, true)) => return Step::None,
            Err((why, false)) => self.stop(
                None,
                format!("the canary's update was not sent: {why}"),
                false,
                now,
            ),
        }
        Step::Changed
    }

    /// Follows the extended campaign: done once it settled, stopped at the
    /// first suspected reboot loop ([`Step::StopServer`]) or when it ended
    /// on the server.
    pub fn follow_extension(&mut self, c: &Campaign, now: Millis) -> Step {
        if self.stage != BlynkRolloutStage::Extended || self.extension != Some(c.id) {
            return Step::None;
        }
        if let Some(d) = c
            .devices
            .iter()
            .find(|d| matches!(d.state, DeviceState::Looping { .. }))
        {
            let reason = format!(
                "{} is still on its old build after {} reconnects — suspected reboot loop. The server sends the update again on every reconnect, so updates on the server are stopped (its stop is global: every campaign on it ends)",
                d.name, d.failed_reconnects
            );
            self.stop(Some(d.name.clone()), reason, false, now);
            self.note = Some("stopping updates on the server…".into());
            return Step::StopServer;
        }
        match &c.status {
            CampaignStatus::Completed => {}
            CampaignStatus::Active if c.settled_at.is_some() => {}
            CampaignStatus::Stopped => {
                self.stop(
                    None,
                    "updates were stopped on the server (its stop is global) before every device was settled".into(),
                    false,
                    now,
                );
                return Step::Changed;
            }
            CampaignStatus::Superseded { by } => {
                self.stop(
                    None,
                    format!("campaign #{by} replaced it on the server"),
                    false,
                    now,
                );
                return Step::Changed;
            }
            _ => return Step::None,
        }
        self.stage = BlynkRolloutStage::Done;
        self.finished_at = Some(now);
        Step::Changed
    }

    /// The extension's campaign `campaign` was recorded; the upload follows.
    pub fn extension_recorded(&mut self, campaign: i64) -> Step {
        match self.stage {
            BlynkRolloutStage::Extending { .. } if self.extension.is_none() => {
                self.extension = Some(campaign);
                Step::Changed
            }
            _ => Step::None,
        }
    }

    /// The server's answer to the extension of campaign `campaign`.
    /// `Err((why, maybe))`: refused, or (`maybe`) no answer.
    pub fn extension_answered(
        &mut self,
        campaign: i64,
        result: Result<(), (&str, bool)>,
        now: Millis,
    ) -> Step {
        if self.extension != Some(campaign) {
            return Step::None;
        }
        let t = self.target.describe();
        match (&self.stage, result) {
            // A late answer settles "not confirmed": it did reach the server.
            (BlynkRolloutStage::Extending { .. } | BlynkRolloutStage::NotConfirmed { .. }, Ok(())) => {
                self.stage = BlynkRolloutStage::Extended;
            }
            (BlynkRolloutStage::Extending { .. }, Err((why, true))) => {
                self.stage = BlynkRolloutStage::NotConfirmed {
                    reason: format!(
                        "the update for {t} got no answer ({why}): it may or may not have reached the server. Check the server, then resume to send it again, or cancel (which calls the server's stop)"
                    ),
                };
            }
            (BlynkRolloutStage::Extending { .. }, Err((why, false))) => self.stop(
                None,
                format!("the server did not take the update for {t}: {why}; nothing was sent to the other devices"),
                true,
                now,
            ),
            _ => return Step::None,
        }
        Step::Changed
    }

    /// The extension failed before anything was uploaded (the firmware
    /// file changed, the user is gone, the server could not be asked...).
    pub fn extension_not_sent(&mut self, why: &str, now: Millis) -> Step {
        match self.stage {
            BlynkRolloutStage::Extending { .. } if self.extension.is_none() => {
                self.stop(None, why.to_string(), true, now);
                Step::Changed
            }
            _ => Step::None,
        }
    }

    /// An `Extending` that nobody is sending (no task of this process) and
    /// older than `stale_ms`: the process that recorded it stopped before
    /// the answer. Never sent again by itself.
    pub fn recover(&mut self, stale_ms: i64, now: Millis) -> Step {
        let BlynkRolloutStage::Extending { since } = self.stage else {
            return Step::None;
        };
        if now - since < stale_ms {
            return Step::None;
        }
        let t = self.target.describe();
        if self.extension.is_none() {
            // The upload only starts once its campaign is recorded.
            self.stop(
                None,
                format!("Greenlight stopped before the update for {t} was sent: nothing was sent to the other devices; resume to send it, or cancel"),
                true,
                now,
            );
        } else {
            self.stage = BlynkRolloutStage::NotConfirmed {
                reason: format!(
                    "Greenlight stopped while sending the update for {t}: it may or may not have reached the server. Check the server, then resume to send it again, or cancel (which calls the server's stop)"
                ),
            };
        }
        Step::Changed
    }

    /// Updates were stopped on its server by someone (the global stop).
    pub fn server_stopped(&mut self, now: Millis) -> Step {
        let why = "updates were stopped on the server (its stop is global)";
        match self.stage {
            BlynkRolloutStage::Canary => self.stop(
                None,
                format!("{why} while the canary was followed: resume to extend anyway, or cancel"),
                true,
                now,
            ),
            BlynkRolloutStage::Extended => self.stop(None, why.to_string(), false, now),
            BlynkRolloutStage::NotConfirmed { .. } => self.stop(
                None,
                format!("{why}: whatever the unconfirmed update for {} started there is gone; resume to send it again, or cancel", self.target.describe()),
                true,
                now,
            ),
            _ => return Step::None,
        }
        Step::Changed
    }

    /// The user resumes after a stop before the extension, or after a "not
    /// confirmed": the extension is sent (again). Err: nothing to resume.
    pub fn resume(&mut self, now: Millis) -> Result<Step, String> {
        match &self.stage {
            BlynkRolloutStage::Stopped {
                resumable: true, ..
            }
            | BlynkRolloutStage::NotConfirmed { .. } => {
                self.stage = BlynkRolloutStage::Extending { since: now };
                self.extension = None;
                self.note = None;
                Ok(Step::Extend)
            }
            BlynkRolloutStage::Canary => Err(format!(
                "staged campaign #{} is still following its canary ({}): nothing to resume; cancel it, or wait",
                self.id, self.canary.name
            )),
            _ => Err(format!(
                "staged campaign #{} cannot be resumed: {}",
                self.id,
                self.words()
            )),
        }
    }

    /// The user cancels. `Ok(true)`: a campaign may stand on the server,
    /// whose stop must now be called. Err: it cannot be cancelled now.
    pub fn cancel(&mut self, by: &str, now: Millis) -> Result<bool, String> {
        let (stop, reason) = match &self.stage {
            BlynkRolloutStage::Extending { .. } => {
                return Err(format!(
                    "staged campaign #{} is sending the update for {} right now; cancel again once it is answered",
                    self.id,
                    self.target.describe()
                ))
            }
            BlynkRolloutStage::Canary
            | BlynkRolloutStage::Stopped {
                resumable: true, ..
            } => (
                false,
                "nothing was sent to the other devices (the canary's one-device update is not kept by the server)".to_string(),
            ),
            BlynkRolloutStage::Extended | BlynkRolloutStage::NotConfirmed { .. } => (
                true,
                format!("the update for {} is being stopped on the server (its stop is global: every campaign on it ends)", self.target.describe()),
            ),
            BlynkRolloutStage::Done
            | BlynkRolloutStage::Cancelled { .. }
            | BlynkRolloutStage::Stopped {
                resumable: false, ..
            } => {
                return Err(format!(
                    "staged campaign #{} is over: {}",
                    self.id,
                    self.words()
                ))
            }
        };
        self.stage = BlynkRolloutStage::Cancelled {
            by: by.to_string(),
            reason,
        };
        self.finished_at = Some(now);
        Ok(stop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::blynk::track::tests::{seen, NEW, OLD};

    const MIN: i64 = 60_000;

    /// A rollout whose canary was sent its update at t=0 (server time 150).
    fn rollout() -> BlynkRollout {
        let ctx = Ctx {
            build: NEW,
            campaign: false,
            standing: true,
            loop_after: 3,
            install_grace_ms: 5 * MIN,
            now: 0,
        };
        let canary = track::baseline(&seen(true, OLD, 100, None), &ctx);
        let mut r = BlynkRollout {
            id: 7,
            account: "home".into(),
            firmware: BlynkRolloutFirmware {
                path: "/fw.bin".into(),
                file_name: "fw.bin".into(),
                build: NEW.into(),
                size: 1,
                sha256: "00".into(),
            },
            canary,
            canary_campaign: 1,
            canary_sent_at: None,
            target: Target::All,
            loop_after: 3,
            settle_ms: MIN,
            canary_timeout_ms: 10 * MIN,
            settling: BlynkSettling::default(),
            extension: None,
            stage: BlynkRolloutStage::Canary,
            note: None,
            started_by: "me".into(),
            created_at: 0,
            updated_at: 0,
            finished_at: None,
        };
        assert_eq!(r.canary_answered(Ok(None), 0), Step::Changed);
        r
    }

    fn observe(r: &mut BlynkRollout, s: DeviceSeen, now: Millis) -> Step {
        r.observe_canary(Some(&s), 5 * MIN, now)
    }

    #[test]
    fn extends_only_after_the_settle_time_on_the_new_build() {
        let mut r = rollout();
        assert_eq!(
            observe(&mut r, seen(true, OLD, 100, Some(150)), 1_000),
            Step::Changed
        );
        assert_eq!(r.canary.state, DeviceState::Installing);
        // Back on the new build at t=20 s: the settle time starts.
        assert_eq!(
            observe(&mut r, seen(true, NEW, 300, Some(150)), 20_000),
            Step::Changed
        );
        assert_eq!(r.settling.since, Some(20_000));
        assert_eq!(r.stage, BlynkRolloutStage::Canary);
        assert!(
            r.words()
                .contains("once Lamp has stayed up on it for 1 min"),
            "{}",
            r.words()
        );
        // Same session, a second short of the settle time: still waiting
        // (what changed is only the poll's bookkeeping).
        assert_eq!(
            observe(&mut r, seen(true, NEW, 300, Some(150)), 79_000),
            Step::Changed
        );
        assert_eq!(r.stage, BlynkRolloutStage::Canary);
        assert_eq!(r.settling.since, Some(20_000));
        assert_eq!(
            observe(&mut r, seen(true, NEW, 300, Some(150)), 80_000),
            Step::Extend
        );
        assert_eq!(r.stage, BlynkRolloutStage::Extending { since: 80_000 });
        // Nothing more happens to the canary stage once extending.
        assert_eq!(
            observe(&mut r, seen(true, NEW, 300, Some(150)), 90_000),
            Step::None
        );
    }

    #[test]
    fn going_offline_or_restarting_restarts_the_settle_time() {
        let mut r = rollout();
        observe(&mut r, seen(true, NEW, 300, Some(150)), 10_000);
        observe(&mut r, seen(false, NEW, 300, Some(150)), 40_000);
        assert_eq!(r.settling.since, None);
        // Back in a new session: a restart; the settle time starts again.
        observe(&mut r, seen(true, NEW, 500, Some(150)), 60_000);
        assert_eq!((r.settling.restarts, r.settling.since), (1, Some(60_000)));
        assert_eq!(
            observe(&mut r, seen(true, NEW, 500, Some(150)), 110_000),
            Step::Changed
        );
        assert_eq!(r.stage, BlynkRolloutStage::Canary);
        assert_eq!(
            observe(&mut r, seen(true, NEW, 500, Some(150)), 120_000),
            Step::Extend
        );
    }

    #[test]
    fn logging_in_again_and_again_on_the_new_build_is_a_loop() {
        let mut r = rollout();
        let mut connect = 300;
        let mut step = Step::None;
        for i in 0..4 {
            step = observe(&mut r, seen(true, NEW, connect, Some(150)), i * 10_000);
            connect += 100;
        }
        assert_eq!(step, Step::Changed);
        let BlynkRolloutStage::Stopped {
            device,
            reason,
            resumable,
        } = &r.stage
        else {
            panic!("{:?}", r.stage)
        };
        assert_eq!(device.as_deref(), Some("Lamp"));
        assert!(
            reason.contains("reboot loop on the new firmware"),
            "{reason}"
        );
        assert!(*resumable && r.is_active() && r.needs_user());
    }

    #[test]
    fn canary_back_on_the_old_build_stops_naming_it_and_the_loop() {
        let mut r = rollout();
        observe(&mut r, seen(true, OLD, 100, Some(150)), 1_000);
        assert_eq!(r.stage, BlynkRolloutStage::Canary);
        // Logged in again after the send, its info in, still the old build.
        assert_eq!(
            observe(&mut r, seen(true, OLD, 300, Some(150)), 5_000),
            Step::Changed
        );
        let BlynkRolloutStage::Stopped { device, reason, .. } = &r.stage else {
            panic!("{:?}", r.stage)
        };
        assert_eq!(device.as_deref(), Some("Lamp"));
        assert!(
            reason.contains("reboot loop") && reason.contains(OLD),
            "{reason}"
        );
        assert!(
            reason.contains("nothing was sent to the other devices"),
            "{reason}"
        );
    }

    #[test]
    fn canary_not_updated_in_time_stops_with_the_timeout() {
        let mut r = rollout();
        // Offline since the send: no news.
        assert_eq!(
            observe(&mut r, seen(false, OLD, 100, Some(150)), 9 * MIN),
            Step::Changed
        );
        assert_eq!(r.stage, BlynkRolloutStage::Canary);
        assert_eq!(
            observe(&mut r, seen(false, OLD, 100, Some(150)), 10 * MIN),
            Step::Changed
        );
        let BlynkRolloutStage::Stopped { reason, .. } = &r.stage else {
            panic!("{:?}", r.stage)
        };
        assert!(reason.contains("Lamp not updated in 10 min"), "{reason}");
        // Without any poll answer about it, the timeout still counts.
        let mut r = rollout();
        assert_eq!(r.observe_canary(None, 5 * MIN, 10 * MIN), Step::Changed);
        assert!(matches!(r.stage, BlynkRolloutStage::Stopped { .. }));
    }

    #[test]
    fn an_unanswered_canary_update_is_judged_by_the_device() {
        let mut r = rollout();
        r.canary_sent_at = None;
        assert_eq!(r.canary_answered(Err(("no answer", true)), 5), Step::None);
        assert_eq!(r.stage, BlynkRolloutStage::Canary);
        let mut refused = rollout();
        refused.canary_sent_at = None;
        refused.canary_answered(Err(("No device in session.", false)), 5);
        assert!(!refused.is_active(), "{:?}", refused.stage);
        assert!(refused.words().contains("No device in session."));
    }

    fn campaign(states: &[DeviceState], status: CampaignStatus, settled: bool) -> Campaign {
        let mut devices = vec![];
        for (i, st) in states.iter().enumerate() {
            let mut d = rollout().canary;
            d.name = format!("Device {i}");
            d.state = st.clone();
            d.failed_reconnects = 3;
            devices.push(d);
        }
        Campaign {
            id: 9,
            account: "home".into(),
            target: Target::All,
            build: NEW.into(),
            file_name: "fw.bin".into(),
            size: 1,
            sha256: "00".into(),
            server_path: None,
            status,
            loop_after: 3,
            started_by: "me".into(),
            created_at: 0,
            started_at: Some(0),
            updated_at: 0,
            finished_at: None,
            settled_at: settled.then_some(1),
            withdrawn_at: None,
            devices,
        }
    }

    fn extended() -> BlynkRollout {
        let mut r = rollout();
        r.stage = BlynkRolloutStage::Extending { since: 1 };
        assert_eq!(r.extension_recorded(9), Step::Changed);
        assert_eq!(r.extension_recorded(10), Step::None, "recorded once");
        assert_eq!(r.extension_answered(9, Ok(()), 2), Step::Changed);
        assert_eq!(r.stage, BlynkRolloutStage::Extended);
        r
    }

    #[test]
    fn extended_campaign_loop_stops_the_server_and_settling_is_done() {
        let mut r = extended();
        let c = campaign(
            &[DeviceState::Updated, DeviceState::Waiting],
            CampaignStatus::Active,
            false,
        );
        assert_eq!(r.follow_extension(&c, 3), Step::None);
        let c = campaign(
            &[DeviceState::Updated, DeviceState::Looping { reconnects: 3 }],
            CampaignStatus::Active,
            true,
        );
        assert_eq!(r.follow_extension(&c, 4), Step::StopServer);
        let BlynkRolloutStage::Stopped {
            device, resumable, ..
        } = &r.stage
        else {
            panic!("{:?}", r.stage)
        };
        assert_eq!((device.as_deref(), *resumable), (Some("Device 1"), false));
        assert!(r.words().contains("reboot loop") && r.words().contains("global"));
        assert!(!r.is_active());

        let mut r = extended();
        let c = campaign(
            &[DeviceState::Updated, DeviceState::Offline],
            CampaignStatus::Active,
            true,
        );
        assert_eq!(r.follow_extension(&c, 4), Step::Changed);
        assert_eq!(r.stage, BlynkRolloutStage::Done);
    }

    #[test]
    fn an_unanswered_extension_is_not_confirmed_until_its_answer() {
        let mut r = rollout();
        r.stage = BlynkRolloutStage::Extending { since: 1 };
        r.extension_recorded(9);
        r.extension_answered(9, Err(("timeout", true)), 2);
        assert!(matches!(r.stage, BlynkRolloutStage::NotConfirmed { .. }));
        assert!(r.needs_user());
        // A late answer: it did reach the server.
        assert_eq!(r.extension_answered(9, Ok(()), 3), Step::Changed);
        assert_eq!(r.stage, BlynkRolloutStage::Extended);
        // A refusal: nothing was sent; the user may try again.
        let mut r = rollout();
        r.stage = BlynkRolloutStage::Extending { since: 1 };
        r.extension_recorded(9);
        r.extension_answered(9, Err(("Requested user not found.", false)), 2);
        assert!(r.needs_user(), "{:?}", r.stage);
        assert_eq!(r.resume(4), Ok(Step::Extend));
        assert_eq!(
            (r.extension, &r.stage),
            (None, &BlynkRolloutStage::Extending { since: 4 })
        );
    }

    #[test]
    fn a_restart_while_extending_never_resends() {
        let mut r = rollout();
        r.stage = BlynkRolloutStage::Extending { since: 0 };
        // Recent: another process may be sending it.
        assert_eq!(r.recover(10 * MIN, MIN), Step::None);
        // Stale, campaign recorded: the upload may have left.
        r.extension = Some(9);
        assert_eq!(r.recover(10 * MIN, 10 * MIN), Step::Changed);
        assert!(
            matches!(&r.stage, BlynkRolloutStage::NotConfirmed { reason } if reason.contains("may or may not"))
        );
        // Stale, no campaign recorded: nothing left this computer.
        let mut r = rollout();
        r.stage = BlynkRolloutStage::Extending { since: 0 };
        r.recover(10 * MIN, 10 * MIN);
        assert!(
            matches!(&r.stage, BlynkRolloutStage::Stopped { reason, resumable: true, .. } if reason.contains("nothing was sent"))
        );
    }

    #[test]
    fn cancel_and_resume_rules() {
        let mut r = rollout();
        assert!(r.resume(1).is_err(), "the canary is still followed");
        assert_eq!(r.cancel("me", 1), Ok(false));
        assert!(!r.is_active());
        assert!(r.cancel("me", 2).is_err(), "over");
        let mut r = extended();
        assert_eq!(r.cancel("me", 3), Ok(true), "a campaign stands: stop it");
        let mut r = rollout();
        r.stage = BlynkRolloutStage::Extending { since: 1 };
        assert!(r.cancel("me", 2).unwrap_err().contains("right now"));
        // A global stop by someone ends the canary stage, resumable.
        let mut r = rollout();
        assert_eq!(r.server_stopped(5), Step::Changed);
        assert!(r.needs_user());
    }

    #[test]
    fn spans_read_naturally() {
        assert_eq!(span(45_000), "45 s");
        assert_eq!(span(60_000), "1 min");
        assert_eq!(span(90_000), "1 min 30 s");
        assert_eq!(span(10 * MIN), "10 min");
        assert_eq!(span(90 * MIN), "1 h 30 min");
        assert_eq!(span(120 * MIN), "2 h");
    }
}
