//! Events the engine broadcasts after each change is stored. The app, the
//! tray, the notifier and the CLI subscribe with
//! [`crate::EngineHandle::subscribe`]; a slow subscriber that lags only
//! loses events, never blocks the engine (it can re-read the state).

use serde::{Deserialize, Serialize};

use crate::model::{ApprovalOutcome, Job, Millis, Node, PendingUpdate, QuietHours};
use crate::rollout::Rollout;

/// How an account's sources are doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AccountState {
    /// Starting up.
    Connecting,
    /// Every configured source is working.
    Connected,
    /// A source lost its connection and is trying again.
    Reconnecting {
        /// Which source and why.
        reason: String,
    },
    /// The cloud wants a new login; nothing is retried until the user logs in.
    NeedsLogin {
        /// Why.
        reason: String,
    },
    /// A source works in a reduced way (e.g. the broker refused basic-ingest topics).
    Degraded {
        /// What is missing.
        reason: String,
    },
    /// Removed or stopped.
    Stopped,
}

/// How fresh what the views show about an account's devices is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Freshness {
    /// The broker pushes device changes as they happen (MQTT connected).
    pub live: bool,
    /// When the cloud's device list was last read.
    pub last_sweep: Option<Millis>,
    /// No source can say whether the devices are online, since then.
    pub unknown_since: Option<Millis>,
    /// The first look at every device's cloud offers, while it runs.
    pub checking: Option<Checking>,
}

/// Progress of the first look at every device's cloud offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Checking {
    /// Devices checked so far.
    pub done: u32,
    /// Devices to check.
    pub total: u32,
}

/// Something changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A node appeared or changed (name, version, online...).
    NodeUpdated {
        /// The node now.
        node: Node,
    },
    /// An update became visible, or a visible one changed (snoozed, node
    /// online...): treat it as an upsert keyed by account, node and job id.
    PendingAdded {
        /// The update.
        pending: PendingUpdate,
    },
    /// An update is no longer pending (installed, withdrawn, approved, skipped).
    PendingRemoved {
        /// Account.
        account: String,
        /// Node.
        node_id: String,
        /// `ota_job_id`.
        job_id: String,
    },
    /// A job changed state or progress.
    JobChanged {
        /// The job now.
        job: Job,
    },
    /// An account's connection state changed.
    AccountState {
        /// Account.
        account: String,
        /// State.
        state: AccountState,
    },
    /// How fresh an account's device states are changed (a sweep, the
    /// broker connected or lost, the cloud unreachable, a check's progress).
    AccountFreshness {
        /// Account.
        account: String,
        /// Now.
        freshness: Freshness,
    },
    /// The outcome of an approval of one node.
    Approval {
        /// Outcome.
        outcome: ApprovalOutcome,
    },
    /// Notifications were paused or resumed (by the app, its tray or
    /// `greenlight notifications`); sent on every set, changed or not.
    NotificationsPaused {
        /// Paused now.
        paused: bool,
    },
    /// A staged approval changed (a device approved, updated or failed; the
    /// rollout stopped, resumed, finished or was cancelled).
    RolloutChanged {
        /// The rollout now.
        rollout: Rollout,
    },
    /// Quiet hours were set or cleared.
    QuietHoursChanged {
        /// The quiet hours now (`None`: off).
        quiet_hours: Option<QuietHours>,
    },
}
