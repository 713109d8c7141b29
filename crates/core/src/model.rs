//! The engine's vocabulary: nodes, pending updates, jobs and their states,
//! approval outcomes and account configuration. Every type is serde-friendly
//! because the app forwards them to its front end as they are.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// The current time in [`Millis`].
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// Names of the OTA service and its params as a node's config declares them
/// (found by their types, not their names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct OtaNames {
    /// Name of the service of type `esp.service.ota` (usually `OTA`).
    pub service: String,
    /// Name of its `esp.param.ota_info` param (usually `Info`).
    pub info: String,
    /// Name of its `esp.param.ota_operation` param (usually `Operation`).
    pub operation: String,
}

impl Default for OtaNames {
    fn default() -> Self {
        OtaNames {
            service: "OTA".into(),
            info: "Info".into(),
            operation: "Operation".into(),
        }
    }
}

/// One node as the engine knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Node {
    /// Account the node belongs to.
    pub account: String,
    /// RainMaker node id.
    pub node_id: String,
    /// User-visible name.
    pub name: Option<String>,
    /// Model string from the node's config.
    pub model: Option<String>,
    /// Running firmware version, as last reported.
    pub fw_version: Option<String>,
    /// Connected (`true`) or not (`false`) as of [`Node::known`]; `None`
    /// when no source can say (the cloud and the broker cannot be reached,
    /// or have not answered since Greenlight started).
    pub online: Option<bool>,
    /// How [`Node::online`] is known, and as of when.
    #[serde(default)]
    pub known: Known,
    /// The node's OTA service in the user-approval layout (`Operation` +
    /// object `Info`): node-side approval is possible. `None` for nodes of
    /// the stock SDK layout, which are never sent `Operation`.
    pub ota: Option<OtaNames>,
    /// Which layout of `esp.service.ota` the node's config declares, when known.
    #[serde(default)]
    pub ota_layout: Option<OtaLayout>,
    /// The last OTA text a stock-SDK-layout node reported in its `Status`
    /// or `Info` string param (free text about the last update, not an offer).
    #[serde(default)]
    pub ota_text: Option<String>,
    /// The last time the device was reported online (`None`: never, as far
    /// as Greenlight knows).
    pub last_seen: Option<Millis>,
}

impl Node {
    /// Known to be online right now (approvals can be delivered).
    pub fn is_online(&self) -> bool {
        self.online == Some(true)
    }
}

/// How Greenlight knows whether a device is online, and as of when: the
/// views say exactly this instead of claiming more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum Known {
    /// Pushed over MQTT as it changes: true now.
    Live,
    /// From the cloud's device list read at `at`; it may have changed since.
    Swept {
        /// When the list was read.
        at: Millis,
    },
    /// No source can say since `since` (the cloud and the broker cannot be
    /// reached, or have not answered yet).
    Unknown {
        /// Since when.
        since: Millis,
    },
    /// What Greenlight last heard before it restarted: `online` as of `at`.
    /// Nobody vouches for it now ([`Node::online`] is `None`), but it is
    /// shown at once instead of a blank until the device reports again.
    Remembered {
        /// Whether the device was online then.
        online: bool,
        /// When that was last heard.
        at: Millis,
    },
}

impl Default for Known {
    /// Records written before Greenlight kept freshness: not known.
    fn default() -> Known {
        Known::Unknown { since: 0 }
    }
}

/// A node as a view names it: its id, and its account when the view knows
/// it. One id can be in two accounts (a device moved, or shared); without
/// an account, an id found in more than one is refused, never guessed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct NodeRef {
    /// Account, when known.
    pub account: Option<String>,
    /// RainMaker node id.
    pub node_id: String,
}

impl NodeRef {
    /// A node of a given account.
    pub fn new(account: &str, node_id: &str) -> NodeRef {
        NodeRef {
            account: Some(account.to_string()),
            node_id: node_id.to_string(),
        }
    }
}

impl From<&str> for NodeRef {
    fn from(id: &str) -> NodeRef {
        NodeRef {
            account: None,
            node_id: id.to_string(),
        }
    }
}

impl From<&String> for NodeRef {
    fn from(id: &String) -> NodeRef {
        NodeRef::from(id.as_str())
    }
}

impl From<String> for NodeRef {
    fn from(node_id: String) -> NodeRef {
        NodeRef {
            account: None,
            node_id,
        }
    }
}

impl From<&NodeRef> for NodeRef {
    fn from(r: &NodeRef) -> NodeRef {
        r.clone()
    }
}

impl std::fmt::Display for NodeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.account {
            Some(a) => write!(f, "{a}/{}", self.node_id),
            None => f.write_str(&self.node_id),
        }
    }
}

/// The two layouts of the `esp.service.ota` service (docs/rainmaker.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "snake_case")]
pub enum OtaLayout {
    /// `Operation` + object `Info`: the node asks before it installs.
    UserApproval,
    /// The stock SDK: `Status`/`Info`/`URL` strings, no `Operation`. Updates
    /// come from cloud jobs; a "User Approval" job is approved in the cloud.
    Stock,
}

/// How an update is approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "snake_case")]
pub enum UpdateKind {
    /// The node's own `esp.service.ota` waits for `{"OTA":{"Operation":"start"}}`.
    NodeSide,
    /// A cloud "User Approval" job, approved with `POST user/nodes/ota_update`.
    CloudApproval,
}

impl UpdateKind {
    /// Stable text for the database.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateKind::NodeSide => "node_side",
            UpdateKind::CloudApproval => "cloud_approval",
        }
    }

    /// Parses [`UpdateKind::as_str`].
    pub fn parse(s: &str) -> Option<UpdateKind> {
        match s {
            "node_side" => Some(UpdateKind::NodeSide),
            "cloud_approval" => Some(UpdateKind::CloudApproval),
            _ => None,
        }
    }
}

/// An update waiting for the user's approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct PendingUpdate {
    /// Account.
    pub account: String,
    /// Node.
    pub node_id: String,
    /// Node name, when known.
    pub node_name: Option<String>,
    /// `ota_job_id`.
    pub job_id: String,
    /// Running version, when known.
    pub from_version: Option<String>,
    /// Offered version.
    pub to_version: String,
    /// The admin's release note (cloud jobs only; the node's `Info` carries none).
    pub release_note: Option<String>,
    /// Image size in bytes, when known.
    pub size: Option<u64>,
    /// How it is approved.
    pub kind: UpdateKind,
    /// When the engine first saw it.
    pub first_seen: Millis,
    /// "Remind me later": hidden from approve-all until then.
    pub snoozed_until: Option<Millis>,
    /// The node is online (approval needs it; otherwise "install when
    /// online"); `None` when that cannot be known now.
    pub node_online: Option<bool>,
    /// How `node_online` is known.
    #[serde(default)]
    pub node_known: Known,
    /// When the node was last reported online.
    #[serde(default)]
    pub node_last_seen: Option<Millis>,
    /// Something the user should know before approving, in plain words
    /// (this very image already rolled back or failed on this device).
    /// Auto-approve never approves an update that carries one.
    #[serde(default)]
    pub warning: Option<String>,
    /// `Some(t)`: remembered from before Greenlight restarted, last heard
    /// at `t`; no source has repeated it since. `None`: reported by a
    /// source since this start.
    #[serde(default)]
    pub remembered: Option<Millis>,
}

impl PendingUpdate {
    /// "Remind me later" holds at `now`.
    pub fn is_snoozed(&self, now: Millis) -> bool {
        self.snoozed_until.is_some_and(|t| t > now)
    }
}

/// Why an approved job has not been sent yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum QueueReason {
    /// Approved inside quiet hours; sent when the window opens.
    QuietHours {
        /// When the window opens.
        until: Millis,
    },
    /// "Install when online".
    WaitingForNode,
    /// The command was sent but the device did not act on it: it went
    /// offline first, or asked for approval again. The same approval is
    /// delivered when the device is back and offers this update again (one
    /// approval, delivered again; never a second `start` while the first
    /// could still be acted on).
    NotTaken {
        /// Since when it waits.
        since: Millis,
        /// The device went offline (else it asked again while online).
        offline: bool,
    },
    /// The command provably never left this computer (the cloud or broker
    /// refused the connection, its name did not resolve...): nothing
    /// reached the device, and the approval is sent as soon as the account
    /// can reach it again and the device is online.
    Unreachable {
        /// Since when it waits.
        since: Millis,
        /// Why it could not be sent, in plain words.
        reason: String,
    },
    /// "Approve now, install at this time" (e.g. tonight); if the node is
    /// offline then, it waits for it to come online.
    Scheduled {
        /// When to send it.
        at: Millis,
    },
}

/// Where a job is. Terminal: success, failed, rejected, rolled back, cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobState {
    /// Approved, waiting before the command is sent.
    Queued {
        /// Why it waits.
        reason: QueueReason,
    },
    /// The approval intent is recorded; the command is being sent.
    Requested,
    /// The intent was recorded but it cannot be proven that the command went
    /// out (the program stopped, or no acknowledgement came). It is never
    /// re-sent automatically: it needs the user's confirmation.
    NotConfirmed {
        /// What happened, in plain words.
        reason: String,
    },
    /// The broker or cloud acknowledged the command.
    Sent,
    /// The cloud or node says the job started.
    Started,
    /// Downloading / flashing.
    InProgress {
        /// Which download attempt, when the node says ("HTTPS attempt 2/3").
        #[serde(default)]
        attempt: Option<Attempt>,
    },
    /// A download attempt failed and the firmware will try again (or, when
    /// the text names no attempt, may: the job waits a quiet period before
    /// it is called failed). Not an end.
    Retrying {
        /// The attempt that failed, when the node says ("OTA Attempt 1/3 failed").
        #[serde(default)]
        attempt: Option<Attempt>,
        /// Why it failed, in plain words.
        reason: String,
    },
    /// The node restarts into the new firmware and checks that it works
    /// (it must reach MQTT again within its rollback window). Offline is
    /// expected here; nothing is stuck.
    Verifying,
    /// The node postpones, and says why.
    Delayed {
        /// Why, as far as the node's text tells.
        #[serde(default)]
        delay: DelayReason,
    },
    /// The node runs the new firmware.
    Success,
    /// The update failed.
    Failed {
        /// Plain reason.
        reason: String,
    },
    /// The node refused the image.
    Rejected {
        /// Plain reason.
        reason: String,
    },
    /// The node came back on its old firmware.
    RolledBack {
        /// Plain reason (how the node reported it, what happens next).
        #[serde(default)]
        reason: String,
    },
    /// Nothing changed for too long; the last known text is kept on the job.
    Stuck,
    /// Cancelled by the user before it was sent (RainMaker has no cancel once sent).
    Cancelled,
}

impl JobState {
    /// No further change is expected.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobState::Success
                | JobState::Failed { .. }
                | JobState::Rejected { .. }
                | JobState::RolledBack { .. }
                | JobState::Cancelled
        )
    }

    /// The command has gone out (or may have) and the job is followed.
    pub fn is_running(&self) -> bool {
        matches!(
            self,
            JobState::Requested
                | JobState::NotConfirmed { .. }
                | JobState::Sent
                | JobState::Started
                | JobState::InProgress { .. }
                | JobState::Retrying { .. }
                | JobState::Verifying
                | JobState::Delayed { .. }
                | JobState::Stuck
        )
    }

    /// Short stable name (`in_progress`, `failed`...), also the database column.
    pub fn name(&self) -> &'static str {
        match self {
            JobState::Queued { .. } => "queued",
            JobState::Requested => "requested",
            JobState::NotConfirmed { .. } => "not_confirmed",
            JobState::Sent => "sent",
            JobState::Started => "started",
            JobState::InProgress { .. } => "in_progress",
            JobState::Retrying { .. } => "retrying",
            JobState::Verifying => "verifying",
            JobState::Delayed { .. } => "delayed",
            JobState::Success => "success",
            JobState::Failed { .. } => "failed",
            JobState::Rejected { .. } => "rejected",
            JobState::RolledBack { .. } => "rolled_back",
            JobState::Stuck => "stuck",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// One download attempt out of the firmware's limit: "attempt 2 of 3".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Attempt {
    /// This attempt, from 1.
    pub n: u8,
    /// How many the firmware makes (3 by default).
    pub of: u8,
}

/// Why a node postpones an update (its `delayed` texts, docs/rainmaker.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum DelayReason {
    /// "Waiting for Approval": the node asks the user.
    WaitingForApproval,
    /// "Not within download window.": the job may only be downloaded inside
    /// a daily window of the device's local time.
    DownloadWindow {
        /// The window, when Greenlight saw the job's metadata.
        #[serde(default)]
        window: Option<DownloadWindow>,
    },
    /// "Not within valid window.": the job is not valid yet on the node's clock.
    NotValidYet,
    /// "No time information available yet.": the node has no clock yet and
    /// tries again in about 30 seconds.
    NoClock,
    /// Any other text (kept on the job as `progress_text`).
    #[default]
    Other,
}

/// A daily download window in minutes after midnight of the device's local
/// time; `start > end` crosses midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct DownloadWindow {
    /// Opens, minutes after midnight (0..1440).
    pub start_minute: u16,
    /// Closes, minutes after midnight (0..1440).
    pub end_minute: u16,
}

/// One approved update of one node, followed to its end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Job {
    /// Local id (database row).
    pub id: i64,
    /// Account.
    pub account: String,
    /// Node.
    pub node_id: String,
    /// `ota_job_id`.
    pub ota_job_id: String,
    /// How it was approved.
    pub kind: UpdateKind,
    /// Version before, when known.
    pub from_version: Option<String>,
    /// Target version.
    pub to_version: String,
    /// State.
    pub state: JobState,
    /// Last text from the node or cloud (`additional_info`).
    pub progress_text: Option<String>,
    /// Percentage, only when the node's text carries one ("Downloaded 40% Firmware Image").
    pub percent: Option<u8>,
    /// Who approved it.
    pub approved_by: String,
    /// When it was approved.
    pub created_at: Millis,
    /// When the command was acknowledged.
    pub sent_at: Option<Millis>,
    /// Last time anything about it changed.
    pub updated_at: Millis,
    /// When it reached a terminal state.
    pub finished_at: Option<Millis>,
    /// Where the job is, in plain words, one line ("Attempt 1 of 3 failed:
    /// download failed; the device tries again"). Written by the engine
    /// from the state so the app and the CLI say the same.
    #[serde(default)]
    pub headline: String,
}

/// One entry of a job's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct JobEvent {
    /// Job.
    pub job_id: i64,
    /// When.
    pub at: Millis,
    /// State after the change.
    pub state: JobState,
    /// Text at that time.
    pub text: Option<String>,
}

/// What `history` returns: jobs, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct HistoryFilter {
    /// Only this account.
    pub account: Option<String>,
    /// Only this node.
    pub node_id: Option<String>,
    /// At most this many (default 100).
    pub limit: Option<u32>,
}

/// The result of an approval for one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct ApprovalOutcome {
    /// Account (empty when the node is unknown).
    pub account: String,
    /// Node.
    pub node_id: String,
    /// What happened.
    pub result: ApprovalResult,
}

/// What happened to one node's approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ApprovalResult {
    /// The command was acknowledged; the job is followed.
    Sent {
        /// The job.
        job: Job,
    },
    /// Approved, waiting (quiet hours, or for the node to come online).
    Queued {
        /// The job.
        job: Job,
    },
    /// Recorded but not provably sent: needs confirmation.
    NotConfirmed {
        /// The job.
        job: Job,
    },
    /// Nothing to install.
    UpToDate,
    /// The node is offline; "install when online" is offered instead.
    Offline,
    /// Left out by approve-all: snoozed or this version skipped.
    Skipped {
        /// Why.
        reason: String,
    },
    /// Refused (already approved, already running, no such node...).
    Refused {
        /// Why, in plain words.
        reason: String,
    },
    /// The command failed (the cloud said no, or could not be reached).
    Failed {
        /// Why, in plain words.
        reason: String,
    },
}

/// The REST side of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct RestConfig {
    /// Base URL, e.g. `https://api.rainmaker.espressif.com` (`/v1` is added).
    pub base_url: String,
    /// The user's email. The password or refresh token lives in the secret
    /// store under this account's name.
    pub user: String,
    /// Extra PEM CA file for a private deployment, trusted beside the
    /// built-in web roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// SHA-256 fingerprint (hex) of a self-signed server certificate the
    /// user accepted: only that certificate is trusted for this account.
    #[serde(default)]
    pub pinned_sha256: Option<String>,
}

/// The direct MQTT side of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct MqttConfig {
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub url: String,
    /// Extra PEM CA file (mqtts), trusted beside the built-in web roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// PEM client certificate (mutual TLS).
    #[serde(default)]
    pub client_cert: Option<String>,
    /// PEM client key (mutual TLS).
    #[serde(default)]
    pub client_key: Option<String>,
    /// User name; the password lives in the secret store.
    #[serde(default)]
    pub username: Option<String>,
    /// Also subscribe to the AWS basic-ingest form
    /// `$aws/rules/<rule>/node/+/...` (default on). Brokers that refuse `$`
    /// filters are detected and the watcher falls back to plain topics.
    #[serde(default = "yes")]
    pub basic_ingest: bool,
    /// MQTT client id (random when absent).
    #[serde(default)]
    pub client_id: Option<String>,
    /// The user confirmed that the broker password may travel unencrypted
    /// (an `mqtt://` URL to a broker beyond this computer); see
    /// [`crate::setup::check_broker_password`].
    #[serde(default)]
    pub allow_plaintext_password: bool,
}

fn yes() -> bool {
    true
}

/// One RainMaker account: REST, a direct broker, or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct AccountConfig {
    /// Unique name, also the key of its secrets.
    pub name: String,
    /// Cloud REST API.
    #[serde(default)]
    pub rest: Option<RestConfig>,
    /// Direct MQTT broker.
    #[serde(default)]
    pub mqtt: Option<MqttConfig>,
}

impl AccountConfig {
    /// A REST-only account.
    pub fn rest(name: &str, base_url: &str, user: &str) -> AccountConfig {
        AccountConfig {
            name: name.into(),
            rest: Some(RestConfig {
                base_url: base_url.into(),
                user: user.into(),
                ca_file: None,
                pinned_sha256: None,
            }),
            mqtt: None,
        }
    }

    /// Adds a plain direct-MQTT side (`basic_ingest` on).
    pub fn with_mqtt(mut self, url: &str) -> AccountConfig {
        self.mqtt = Some(MqttConfig {
            url: url.into(),
            ca_file: None,
            client_cert: None,
            client_key: None,
            username: None,
            basic_ingest: true,
            client_id: None,
            allow_plaintext_password: false,
        });
        self
    }

    /// An MQTT-only account.
    pub fn mqtt_only(name: &str, url: &str) -> AccountConfig {
        AccountConfig {
            name: name.into(),
            rest: None,
            mqtt: None,
        }
        .with_mqtt(url)
    }
}

/// A daily window in which approvals wait, in minutes after midnight of the
/// user's local time (`utc_offset_minutes` says which). `start > end` spans midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct QuietHours {
    /// Start, minutes after local midnight (0..1440).
    pub start_minute: u16,
    /// End, minutes after local midnight (0..1440).
    pub end_minute: u16,
    /// The user's offset from UTC, minutes.
    pub utc_offset_minutes: i16,
}

/// One node's setting in [`Policies`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct NodePolicy {
    /// Account.
    pub account: String,
    /// Node.
    pub node_id: String,
    /// Skipped version, snooze end (ms), or nothing (auto-approve).
    #[serde(default)]
    pub value: Option<String>,
}

/// Every policy in force: what `policy show` and the app's settings list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Policies {
    /// Nodes whose updates are approved automatically.
    pub auto_approve: Vec<NodePolicy>,
    /// Quiet hours, if set.
    pub quiet_hours: Option<QuietHours>,
    /// Skipped versions (`value` = the version).
    pub skipped: Vec<NodePolicy>,
    /// Snoozed nodes (`value` = until, ms since the epoch).
    pub snoozed: Vec<NodePolicy>,
}

/// Secret keys used in the [`crate::SecretStore`], per account.
pub mod secret_keys {
    /// The RainMaker password.
    pub const PASSWORD: &str = "password";
    /// The RainMaker refresh token (kept after a login).
    pub const REFRESH_TOKEN: &str = "refresh_token";
    /// The MQTT broker password.
    pub const MQTT_PASSWORD: &str = "mqtt_password";
}
