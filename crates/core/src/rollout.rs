//! Staged approvals ("approve all, carefully"): the plan a user picks and
//! the record the engine keeps of a rollout while it runs.
//!
//! A rollout approves one device first (the canary), waits until it runs
//! the new version and has stayed online on it for the soak time, then
//! approves the rest a batch at a time, never more running at once than
//! the batch size. The first failure, rejection or rollback stops it. The
//! rules live in the engine's core (`engine/core/rollout.rs`); this module
//! holds the types the views see and the pure rules about them (the daily
//! window, the words).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{Millis, NodeRef, QuietHours};

/// The soak time when the user picks none: long enough for a device that
/// crashes on its new firmware a minute after boot to show it.
pub const DEFAULT_SOAK_SECS: u32 = 300;
/// The batch size when the user picks none.
pub const DEFAULT_BATCH: u32 = 2;
/// The largest batch (a rollout is for a home or a classroom, not a
/// factory; above this, "all at once" is the honest button).
pub const MAX_BATCH: u32 = 100;
/// The longest soak (a week).
pub const MAX_SOAK_SECS: u32 = 7 * 86_400;

/// What the user picks for a staged approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct RolloutPlan {
    /// The devices; empty: every update approve-all would take now.
    #[serde(default)]
    pub nodes: Vec<NodeRef>,
    /// The device that goes first; `None`: the first online one.
    #[serde(default)]
    pub canary: Option<NodeRef>,
    /// How many run at once after the canary (1 to [`MAX_BATCH`]).
    pub batch: u32,
    /// How long an updated device must stay online on the new version
    /// before the next batch, seconds (0 to [`MAX_SOAK_SECS`]).
    pub soak_secs: u32,
    /// Approve only inside this daily window (local time).
    #[serde(default)]
    pub window: Option<DailyWindow>,
}

impl Default for RolloutPlan {
    fn default() -> Self {
        RolloutPlan {
            nodes: vec![],
            canary: None,
            batch: DEFAULT_BATCH,
            soak_secs: DEFAULT_SOAK_SECS,
            window: None,
        }
    }
}

impl RolloutPlan {
    /// Refuses a plan that means nothing (a batch of 0, a soak of a year,
    /// a window that never opens).
    pub fn check(&self) -> Result<()> {
        if self.batch == 0 || self.batch > MAX_BATCH {
            return Err(Error::Config(format!(
                "a batch is 1 to {MAX_BATCH} devices, not {}",
                self.batch
            )));
        }
        if self.soak_secs > MAX_SOAK_SECS {
            return Err(Error::Config("a soak time is at most a week".into()));
        }
        if let Some(w) = &self.window {
            w.check()?;
        }
        Ok(())
    }
}

/// A daily window, in minutes after local midnight (`utc_offset_minutes`
/// says which zone); `start > end` spans midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct DailyWindow {
    /// Opens, minutes after local midnight (0..1440).
    pub start_minute: u16,
    /// Closes, minutes after local midnight (0..1440).
    pub end_minute: u16,
    /// The user's offset from UTC, minutes.
    pub utc_offset_minutes: i16,
}

impl DailyWindow {
    /// A window written `HH:MM-HH:MM`, in a zone `utc_offset_minutes` from UTC.
    pub fn parse(s: &str, utc_offset_minutes: i16) -> Result<DailyWindow> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| Error::Config(format!("{s:?}: give the window as HH:MM-HH:MM")))?;
        let w = DailyWindow {
            start_minute: crate::policy::parse_hhmm(a)?,
            end_minute: crate::policy::parse_hhmm(b)?,
            utc_offset_minutes,
        };
        w.check()?;
        Ok(w)
    }

    /// A window that means something: times of day, an offset a real zone
    /// has, and an opening that differs from the closing.
    pub fn check(&self) -> Result<()> {
        if self.start_minute >= 1440 || self.end_minute >= 1440 {
            return Err(Error::Config("a window is two times of day".into()));
        }
        if self.utc_offset_minutes.abs() > 14 * 60 {
            return Err(Error::Config(
                "the time zone offset is not one a place has".into(),
            ));
        }
        if self.start_minute == self.end_minute {
            return Err(Error::Config(
                "a window that closes when it opens never opens: leave it out to approve at any time".into(),
            ));
        }
        Ok(())
    }

    /// `None` when `now` is inside the window; else when it opens next.
    pub fn opens_at(&self, now: Millis) -> Option<Millis> {
        // Outside the window is a window of its own: from its end to its start.
        let outside = QuietHours {
            start_minute: self.end_minute,
            end_minute: self.start_minute,
            utc_offset_minutes: self.utc_offset_minutes,
        };
        crate::policy::quiet_until(&outside, now)
    }

    /// `HH:MM–HH:MM`.
    pub fn describe(&self) -> String {
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        format!("{}–{}", hm(self.start_minute), hm(self.end_minute))
    }
}

/// A staged approval as the engine keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Rollout {
    /// Its id (database row).
    pub id: i64,
    /// Who started it.
    pub approved_by: String,
    /// When it was started.
    pub created_at: Millis,
    /// When anything about it last changed.
    pub updated_at: Millis,
    /// How many run at once after the canary.
    pub batch: u32,
    /// How long an updated device must stay online on the new version, seconds.
    pub soak_secs: u32,
    /// Approvals only inside this daily window.
    pub window: Option<DailyWindow>,
    /// The device the user chose to go first (it is waited for while
    /// offline); `None`: the first online device went first.
    #[serde(default)]
    pub canary: Option<NodeRef>,
    /// Where it is.
    pub state: RolloutState,
    /// The devices, canary first, in the order they go.
    pub members: Vec<RolloutMember>,
    /// Where it is, in plain words, one line ("Batch 2 of 3: 2 updating").
    /// Written by the engine so the app and the CLI say the same.
    pub headline: String,
}

/// Where a rollout is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RolloutState {
    /// Approving and following (the headline says what it waits for).
    Running,
    /// Stopped by a device's failure, rejection or rollback (or an approval
    /// that could not be recorded): nothing more is approved until the
    /// user resumes, retries the failed ones, or cancels.
    Stopped {
        /// The device that stopped it.
        account: String,
        /// Its node id.
        node_id: String,
        /// Why, in plain words.
        reason: String,
    },
    /// Every device was updated, left out, or (after a resume) failed.
    Done,
    /// Cancelled by the user: nothing more is approved (updates already
    /// sent finish on their own: RainMaker has no cancel once sent).
    Cancelled,
}

impl RolloutState {
    /// No further change is expected.
    pub fn is_over(&self) -> bool {
        matches!(self, RolloutState::Done | RolloutState::Cancelled)
    }

    /// A stable lower-case name (`running`, `stopped`, `done`, `cancelled`).
    pub fn name(&self) -> &'static str {
        match self {
            RolloutState::Running => "running",
            RolloutState::Stopped { .. } => "stopped",
            RolloutState::Done => "done",
            RolloutState::Cancelled => "cancelled",
        }
    }
}

/// One device of a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct RolloutMember {
    /// Account.
    pub account: String,
    /// Node id.
    pub node_id: String,
    /// The device's name when known.
    pub name: Option<String>,
    /// The version it is to get.
    pub to_version: String,
    /// The offer's `ota_job_id` when the rollout was planned.
    pub ota_job_id: String,
    /// 0: the canary; 1, 2...: the batch it went in; `None`: not yet approved.
    pub stage: Option<u32>,
    /// Where it is.
    pub state: MemberState,
    /// Its job once approved.
    pub job_id: Option<i64>,
    /// Approved again by "retry failed": its image already failed once, so
    /// it is approved as if named by the user.
    #[serde(default)]
    pub retry: bool,
}

impl RolloutMember {
    /// The node as a view names it.
    pub fn node_ref(&self) -> NodeRef {
        NodeRef::new(&self.account, &self.node_id)
    }

    /// Its name, or its id.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.node_id)
    }
}

/// Where one device of a rollout is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum MemberState {
    /// Not approved yet: its turn has not come, or it is offline.
    Waiting,
    /// Its approval is being recorded (kept across a crash: a restart
    /// looks for the job it made before approving anything again).
    Releasing {
        /// When.
        at: Millis,
    },
    /// Approved: its job runs.
    Running,
    /// It runs the new version and must stay online on it.
    Soaking {
        /// Since when it is back online on the new version (`None`:
        /// offline, the soak starts again when it is back).
        since: Option<Millis>,
        /// The soak is over at this time (`None` while offline).
        until: Option<Millis>,
    },
    /// Updated, and stayed up for the soak time.
    Updated,
    /// Its update failed, was rejected or rolled back.
    Failed {
        /// Why, in plain words.
        reason: String,
    },
    /// Left out (no longer offered, already up to date, its image failed
    /// here before, or the rollout was cancelled before its turn).
    Skipped {
        /// Why, in plain words.
        reason: String,
    },
}

impl MemberState {
    /// Approved and not finished: counts against the batch size.
    pub fn in_flight(&self) -> bool {
        matches!(
            self,
            MemberState::Releasing { .. } | MemberState::Running | MemberState::Soaking { .. }
        )
    }

    /// Nothing more will happen to it in this rollout (unless retried).
    pub fn is_settled(&self) -> bool {
        matches!(
            self,
            MemberState::Updated | MemberState::Failed { .. } | MemberState::Skipped { .. }
        )
    }

    /// A stable lower-case name.
    pub fn name(&self) -> &'static str {
        match self {
            MemberState::Waiting => "waiting",
            MemberState::Releasing { .. } => "releasing",
            MemberState::Running => "running",
            MemberState::Soaking { .. } => "soaking",
            MemberState::Updated => "updated",
            MemberState::Failed { .. } => "failed",
            MemberState::Skipped { .. } => "skipped",
        }
    }
}

/// What the user can do to a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "snake_case")]
pub enum RolloutAction {
    /// Go on with the devices not yet approved; failed ones stay failed.
    Resume,
    /// Approve the failed ones again first, then go on.
    RetryFailed,
    /// Approve nothing more.
    Cancel,
}

/// Counts of a rollout's devices, for summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct RolloutCounts {
    /// Every device.
    pub total: u32,
    /// Updated and soaked.
    pub updated: u32,
    /// Approved and not finished (updating or soaking).
    pub in_flight: u32,
    /// Not approved yet.
    pub waiting: u32,
    /// Failed, rejected or rolled back.
    pub failed: u32,
    /// Left out.
    pub skipped: u32,
}

impl Rollout {
    /// How many devices are where.
    pub fn counts(&self) -> RolloutCounts {
        let mut c = RolloutCounts {
            total: self.members.len() as u32,
            ..Default::default()
        };
        for m in &self.members {
            match &m.state {
                MemberState::Waiting => c.waiting += 1,
                MemberState::Updated => c.updated += 1,
                MemberState::Failed { .. } => c.failed += 1,
                MemberState::Skipped { .. } => c.skipped += 1,
                s if s.in_flight() => c.in_flight += 1,
                _ => {}
            }
        }
        c
    }

    /// A rollout that ended with every device it approved updated.
    pub fn succeeded(&self) -> bool {
        self.state == RolloutState::Done && self.counts().failed == 0
    }

    /// The highest batch number given so far (0: only the canary).
    pub fn stage(&self) -> Option<u32> {
        self.members.iter().filter_map(|m| m.stage).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_opens_at_its_start_and_holds_inside() {
        // 02:00–05:00 UTC.
        let w = DailyWindow::parse("02:00-05:00", 0).unwrap();
        let day = 1_800_000_000_000 - 1_800_000_000_000 % 86_400_000;
        assert_eq!(w.opens_at(day + 3 * 3_600_000), None);
        assert_eq!(w.opens_at(day + 3_600_000), Some(day + 2 * 3_600_000));
        // After it closed: tomorrow's start.
        assert_eq!(
            w.opens_at(day + 6 * 3_600_000),
            Some(day + 86_400_000 + 2 * 3_600_000)
        );
        // Over midnight, in a zone two hours east: 23:00–01:00 local.
        let w = DailyWindow::parse("23:00-01:00", 120).unwrap();
        assert_eq!(w.opens_at(day + 21 * 3_600_000 + 60_000), None);
        assert_eq!(w.describe(), "23:00–01:00");
        assert!(DailyWindow::parse("05:00-05:00", 0)
            .unwrap_err()
            .to_string()
            .contains("never opens"));
        assert!(DailyWindow::parse("25:00-05:00", 0).is_err());
    }

    #[test]
    fn a_plan_that_means_nothing_is_refused() {
        let ok = RolloutPlan::default();
        assert!(ok.check().is_ok());
        for bad in [
            RolloutPlan {
                batch: 0,
                ..ok.clone()
            },
            RolloutPlan {
                batch: MAX_BATCH + 1,
                ..ok.clone()
            },
            RolloutPlan {
                soak_secs: MAX_SOAK_SECS + 1,
                ..ok.clone()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}
