//! The Blynk side's vocabulary: accounts (servers), targets, campaigns and
//! the state of each device in a campaign. Serde-friendly, like the rest of
//! the model, because the app forwards them to its front end as they are.
//!
//! Device tokens are credentials (whoever has one can be that device): they
//! are never stored or shown in full. A device is known by its place on the
//! server (`owner/project id/device id`) and a short token hint.

use serde::{Deserialize, Serialize};

use crate::model::Millis;

/// The real server's `web.request.max.size`: 512 KiB.
pub const DEFAULT_UPLOAD_LIMIT: u64 = 524_288;

/// A Blynk server, administered with its super-admin account. The password
/// lives in the keychain under this account's name (key [`ADMIN_PASSWORD`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct BlynkAccount {
    /// Unique name.
    pub name: String,
    /// Admin base URL, `https://host:9443` (paths start with `/admin`).
    pub url: String,
    /// Super-admin email.
    pub user: String,
    /// SHA-256 (hex) of the server's self-signed certificate, accepted by the
    /// user: only that certificate is trusted. `None`: normal verification.
    #[serde(default)]
    pub pinned_sha256: Option<String>,
    /// Largest request body the server takes (`web.request.max.size`).
    #[serde(default = "default_limit")]
    pub upload_limit: u64,
}

fn default_limit() -> u64 {
    DEFAULT_UPLOAD_LIMIT
}

/// Keychain key of a Blynk account's admin password.
pub const ADMIN_PASSWORD: &str = "blynk_admin_password";

impl BlynkAccount {
    /// An account with normal TLS verification and the default upload limit.
    pub fn new(name: &str, url: &str, user: &str) -> BlynkAccount {
        BlynkAccount {
            name: name.to_string(),
            url: url.trim_end_matches('/').to_string(),
            user: user.to_string(),
            pinned_sha256: None,
            upload_limit: DEFAULT_UPLOAD_LIMIT,
        }
    }
}

/// Which devices an update is for, as the user asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartTarget {
    /// One device, by its token: sent now if it is online (no campaign).
    Token(String),
    /// Every device of a user, or of one of their projects (dashboard name,
    /// case-insensitive): sent to each device when it next logs in.
    User {
        /// Owner's email.
        email: String,
        /// Project (dashboard) name.
        project: Option<String>,
    },
    /// Every device on the server, each when it next logs in.
    All,
}

/// Which devices a campaign was for, as stored (never a full token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// One device.
    Token {
        /// The device's key (`owner/project id/device id`).
        device: String,
        /// Its name.
        name: String,
        /// The token's first characters, to tell devices apart.
        hint: String,
    },
    /// A user's devices, optionally one project's.
    User {
        /// Owner's email.
        email: String,
        /// Project name.
        project: Option<String>,
    },
    /// Every device.
    All,
}

impl Target {
    /// True for campaigns the server keeps and re-sends on every login
    /// (user, user+project, all); a token update is sent once.
    pub fn is_campaign(&self) -> bool {
        !matches!(self, Target::Token { .. })
    }

    /// "every device", "alice@example.com (project Garden)", "Device 1 (abcd…)".
    pub fn describe(&self) -> String {
        match self {
            Target::Token { name, hint, .. } => format!("{name} ({hint})"),
            Target::User {
                email,
                project: Some(p),
            } => format!("{email}, project {p}"),
            Target::User {
                email,
                project: None,
            } => format!("every device of {email}"),
            Target::All => "every device".into(),
        }
    }

    /// Whether a device belongs to this target.
    pub fn covers(&self, d: &DeviceSeen) -> bool {
        match self {
            Target::Token { device, .. } => &d.key == device,
            Target::User { email, project } => {
                d.owner.eq_ignore_ascii_case(email)
                    && project
                        .as_ref()
                        .is_none_or(|p| p.eq_ignore_ascii_case(&d.project))
            }
            Target::All => true,
        }
    }
}

/// One device as the admin API shows it right now, reduced to what tracking
/// needs (no token). Times are the server's clock (ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct DeviceSeen {
    /// `owner/project id/device id`.
    pub key: String,
    /// Owner's email.
    pub owner: String,
    /// Project (dashboard) name.
    pub project: String,
    /// Device name.
    pub name: String,
    /// The token's first characters.
    pub token_hint: String,
    /// `status == ONLINE`.
    pub online: bool,
    /// `hardwareInfo.build`, as the device last reported it.
    pub build: Option<String>,
    /// `hardwareInfo.boardType`.
    pub board: Option<String>,
    /// `hardwareInfo.version` (Blynk library).
    pub library: Option<String>,
    /// `connectTime`: last login.
    pub connect_time: i64,
    /// `disconnectTime`.
    pub disconnect_time: i64,
    /// `dataReceivedAt`: last message.
    pub data_received_at: i64,
    /// `deviceOtaInfo.otaUpdateAt`: when an update URL was last sent to it.
    pub ota_update_at: Option<i64>,
}

/// Where a device is in a campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DeviceState {
    /// Online on the old build and not sent the update yet: the server sends
    /// it only when the device logs in again (a restart does it).
    Waiting,
    /// The update URL was sent: it is downloading, flashing, rebooting.
    Installing,
    /// It reports the campaign's build (compared as a plain string, as the server does).
    Updated,
    /// Still on the old build after `reconnects` logins since the update was
    /// sent, while the campaign stands: a suspected reboot loop (the server
    /// re-sends the URL on every login). Stopping the campaign ends it.
    Looping {
        /// Logins on the old build after the update was sent.
        reconnects: u32,
    },
    /// It will not get this update: came back on its old build from a
    /// one-time token update, or the campaign was stopped or replaced.
    NotUpdated {
        /// Why, in plain words.
        reason: String,
    },
    /// Offline: gets the update when it logs in again (campaigns), or was
    /// sent it and has not come back for a long time.
    Offline,
    /// Reports no build (library 1.3+ info, or none): the server never sends
    /// it a campaign update.
    NoBuild,
}

impl DeviceState {
    /// Short stable name, also the database column.
    pub fn name(&self) -> &'static str {
        match self {
            DeviceState::Waiting => "waiting",
            DeviceState::Installing => "installing",
            DeviceState::Updated => "updated",
            DeviceState::Looping { .. } => "looping",
            DeviceState::NotUpdated { .. } => "not_updated",
            DeviceState::Offline => "offline",
            DeviceState::NoBuild => "no_build",
        }
    }

    /// Nothing more is expected without someone acting (or the device
    /// coming back): what `status --follow` waits for.
    pub fn is_settled(&self) -> bool {
        !matches!(self, DeviceState::Waiting | DeviceState::Installing)
    }

    /// The state in plain words.
    pub fn words(&self) -> String {
        match self {
            DeviceState::Waiting => {
                "waiting for reconnect — the server sends the update when the device logs in again (restart it to update now)".into()
            }
            DeviceState::Installing => "update sent — downloading, flashing, rebooting".into(),
            DeviceState::Updated => "updated".into(),
            DeviceState::Looping { reconnects } => format!(
                "still on the old build after {reconnects} reconnects — suspected reboot loop (the server re-sends the update on every reconnect); stop the campaign"
            ),
            DeviceState::NotUpdated { reason } => format!("not updated — {reason}"),
            DeviceState::Offline => "offline — gets the update when it comes back".into(),
            DeviceState::NoBuild => {
                "reports no build (Blynk library 1.3+ or no info): the server never sends it a campaign update".into()
            }
        }
    }
}

/// One device in a campaign, followed from the start. The counters are
/// lower bounds: the server only shows the latest login and send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct DeviceRecord {
    /// `owner/project id/device id`.
    pub key: String,
    /// Name.
    pub name: String,
    /// Owner's email.
    pub owner: String,
    /// Project name.
    pub project: String,
    /// The token's first characters.
    pub token_hint: String,
    /// Board, when reported.
    pub board: Option<String>,
    /// Build when the campaign started.
    pub build_before: Option<String>,
    /// Build reported now.
    pub build_now: Option<String>,
    /// Online now.
    pub online: bool,
    /// State.
    pub state: DeviceState,
    /// Update URLs seen sent to it since the start.
    pub sends: u32,
    /// Logins on the old build after the update was sent.
    pub failed_reconnects: u32,
    /// When the state last changed (our clock).
    pub changed_at: Millis,
    /// When the server last showed this device (our clock).
    pub seen_at: Millis,
    /// Bookkeeping of the fold (server clock), not for display.
    #[serde(default)]
    pub marks: Marks,
}

/// Server timestamps the tracker remembers between polls (server clock, ms).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Marks {
    /// `connectTime` when the campaign started.
    pub baseline_connect: i64,
    /// `otaUpdateAt` when the campaign started (an earlier update's send).
    pub baseline_send: Option<i64>,
    /// First send seen after the start.
    pub first_send: Option<i64>,
    /// Latest send seen.
    pub last_send: Option<i64>,
    /// Logins up to this time are already counted in `failed_reconnects`.
    pub accounted_until: i64,
    /// `connectTime` at the previous poll.
    pub last_connect: i64,
    /// Since when (our clock) it has been installing without news.
    pub installing_since: Option<Millis>,
}

/// Where a campaign is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CampaignStatus {
    /// Recorded; the upload is under way.
    Starting,
    /// The server took it; devices are followed.
    Active,
    /// Every device reports the campaign's build.
    Completed,
    /// A one-device (token) update that is over without the device on the
    /// new build: it came back on its old one, or stayed away. The server
    /// sends such an update once; nothing more will happen.
    Ended,
    /// Stopped (the server's stop is global: every campaign of the server ends).
    Stopped,
    /// A newer campaign for the same devices replaced it on the server.
    Superseded {
        /// The newer campaign.
        by: i64,
    },
    /// The server refused it or could not be reached.
    Failed {
        /// Why, in plain words.
        reason: String,
    },
}

impl CampaignStatus {
    /// Short stable name, also the database column.
    pub fn name(&self) -> &'static str {
        match self {
            CampaignStatus::Starting => "starting",
            CampaignStatus::Active => "active",
            CampaignStatus::Completed => "completed",
            CampaignStatus::Ended => "ended",
            CampaignStatus::Stopped => "stopped",
            CampaignStatus::Superseded { .. } => "superseded",
            CampaignStatus::Failed { .. } => "failed",
        }
    }
}

/// How many devices are in each state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Counts {
    /// Devices in the campaign.
    pub total: u32,
    /// Waiting for reconnect.
    pub waiting: u32,
    /// Installing.
    pub installing: u32,
    /// Updated.
    pub updated: u32,
    /// Suspected reboot loops.
    pub looping: u32,
    /// Not updated.
    pub not_updated: u32,
    /// Offline.
    pub offline: u32,
    /// No build reported.
    pub no_build: u32,
}

/// One start of an update on a Blynk server, and what became of each device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Campaign {
    /// Local id.
    pub id: i64,
    /// Account (server).
    pub account: String,
    /// Which devices.
    pub target: Target,
    /// The firmware's build tag.
    pub build: String,
    /// File name.
    pub file_name: String,
    /// File size.
    pub size: u64,
    /// SHA-256 of what was uploaded.
    pub sha256: String,
    /// Where the server stored it (`/static/ota/FUp_..._upload.bin`).
    pub server_path: Option<String>,
    /// Status.
    pub status: CampaignStatus,
    /// Logins on the old build after which a reboot loop is suspected.
    pub loop_after: u32,
    /// Who started it.
    pub started_by: String,
    /// When it was recorded.
    pub created_at: Millis,
    /// When the server accepted it.
    pub started_at: Option<Millis>,
    /// Last change.
    pub updated_at: Millis,
    /// When it completed, was stopped, replaced or failed.
    pub finished_at: Option<Millis>,
    /// Since when every device is settled (none waiting or installing).
    pub settled_at: Option<Millis>,
    /// When the server stopped holding it (stopped, or replaced by a newer
    /// campaign for the same devices). A completed campaign nobody stopped
    /// still stands there and still decides what its devices get.
    #[serde(default)]
    pub withdrawn_at: Option<Millis>,
    /// Devices, by name.
    #[serde(default)]
    pub devices: Vec<DeviceRecord>,
}

impl Campaign {
    /// Devices per state.
    pub fn counts(&self) -> Counts {
        let mut c = Counts {
            total: self.devices.len() as u32,
            ..Counts::default()
        };
        for d in &self.devices {
            let n = match d.state {
                DeviceState::Waiting => &mut c.waiting,
                DeviceState::Installing => &mut c.installing,
                DeviceState::Updated => &mut c.updated,
                DeviceState::Looping { .. } => &mut c.looping,
                DeviceState::NotUpdated { .. } => &mut c.not_updated,
                DeviceState::Offline => &mut c.offline,
                DeviceState::NoBuild => &mut c.no_build,
            };
            *n += 1;
        }
        c
    }

    /// True when no device is waiting or installing.
    pub fn is_settled(&self) -> bool {
        self.devices.iter().all(|d| d.state.is_settled())
    }

    /// True when the server (as far as Greenlight knows) still holds this
    /// campaign and re-sends it to devices on another build: an active or
    /// completed user / all-devices campaign nobody stopped or replaced.
    pub fn stands_on_server(&self) -> bool {
        self.target.is_campaign()
            && self.withdrawn_at.is_none()
            && matches!(
                self.status,
                CampaignStatus::Active | CampaignStatus::Completed
            )
    }

    /// True while it is being started or followed as active.
    pub fn is_live(&self) -> bool {
        matches!(
            self.status,
            CampaignStatus::Active | CampaignStatus::Starting
        )
    }
}

/// One state change of one device, for history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct DeviceEvent {
    /// Campaign.
    pub campaign_id: i64,
    /// Device key.
    pub device: String,
    /// When (our clock).
    pub at: Millis,
    /// New state.
    pub state: DeviceState,
}

/// What the Blynk tracker broadcasts, after the change is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlynkEvent {
    /// A campaign was recorded or changed status (devices included).
    CampaignChanged {
        /// The campaign now.
        campaign: Campaign,
    },
    /// A device changed state.
    DeviceChanged {
        /// Campaign.
        campaign_id: i64,
        /// Account.
        account: String,
        /// The device now.
        device: DeviceRecord,
    },
    /// A device is suspected to be in a reboot loop: tell the user, suggest stopping.
    LoopSuspected {
        /// Campaign.
        campaign_id: i64,
        /// Account.
        account: String,
        /// The device.
        device: DeviceRecord,
    },
    /// Every device of a campaign is settled (updated, looping, offline...):
    /// the moment to notify "campaign finished".
    CampaignSettled {
        /// The campaign now.
        campaign: Campaign,
    },
    /// A staged campaign was recorded or changed (stage, canary, note),
    /// after the change was stored: the app and `greenlight blynk rollout`
    /// follow these.
    RolloutChanged {
        /// The staged campaign now (boxed: it carries its canary's record).
        rollout: Box<super::rollout::BlynkRollout>,
    },
    /// Following an account's campaigns failed (said once per new problem;
    /// the tracker keeps trying).
    PollFailed {
        /// Account.
        account: String,
        /// Why, in plain words.
        reason: String,
        /// The admin password must be given again.
        needs_login: bool,
    },
}
