//! The simulated server's state: users with their dashboards and devices
//! (serialised exactly as the admin API shows them), hardware sessions,
//! uploaded firmware and OTA campaigns, all in memory as on the real server.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;

use super::protocol::{cmd, Frame, OTA_MSG_ID};

/// App name of every simulated user (the real server's default).
pub const APP_NAME: &str = "Blynk";

/// Milliseconds since the Unix epoch (the server's timestamps).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What a device reported in its `INTERNAL` info message.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HardwareInfo {
    /// Library version (`ver`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Board (`dev`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub board_type: Option<String>,
    /// CPU (`cpu`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_type: Option<String>,
    /// Connection (`con`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_type: Option<String>,
    /// Firmware build (`build`), compared as a plain string for campaigns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    /// Template (`tmpl`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    /// Heartbeat in seconds (`h-beat`); -1 when unparsable, 0 when absent.
    pub heartbeat_interval: i32,
    /// Receive buffer (`buff-in`); 250 when absent or unparsable.
    pub buff_in: i32,
}

impl HardwareInfo {
    /// Parses key/value pairs as the server does: unknown keys are ignored, a
    /// dangling key without value is dropped.
    pub fn parse(parts: &[String]) -> HardwareInfo {
        let mut hi = HardwareInfo::default();
        for kv in parts.chunks_exact(2) {
            let (k, v) = (kv[0].as_str(), kv[1].clone());
            match k {
                "h-beat" => hi.heartbeat_interval = v.trim().parse().unwrap_or(-1),
                "ver" => hi.version = Some(v),
                "dev" => hi.board_type = Some(v),
                "cpu" => hi.cpu_type = Some(v),
                "con" => hi.connection_type = Some(v),
                "tmpl" => hi.template_id = Some(v),
                "build" => hi.build = Some(v),
                "buff-in" => hi.buff_in = v.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
        if hi.buff_in <= 0 {
            // 255 minus the 5-byte header: the server's default.
            hi.buff_in = 250;
        }
        hi
    }
}

/// Who started the last OTA for a device, and when it was sent to it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceOtaInfo {
    /// Admin email.
    pub ota_initiated_by: String,
    /// When the admin started it (ms).
    pub ota_initiated_at: i64,
    /// When the URL was sent to this device (ms).
    pub ota_update_at: i64,
}

/// A device as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Id within the dashboard.
    pub id: i32,
    /// Name.
    pub name: String,
    /// Board chosen in the app.
    pub board_type: String,
    /// Auth token.
    pub token: String,
    /// Connection chosen in the app.
    pub connection_type: String,
    /// `ONLINE` or `OFFLINE`.
    pub status: String,
    /// Last disconnect (ms, 0 never).
    pub disconnect_time: i64,
    /// Last login (ms, 0 never).
    pub connect_time: i64,
    /// First login (ms, 0 never).
    pub first_connect_time: i64,
    /// Last message from the device (ms).
    pub data_received_at: i64,
    /// Address of the last login.
    #[serde(rename = "lastLoggedIP", skip_serializing_if = "Option::is_none")]
    pub last_logged_ip: Option<String>,
    /// Last info message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware_info: Option<HardwareInfo>,
    /// Last OTA sent to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_ota_info: Option<DeviceOtaInfo>,
    /// Custom icon flag.
    pub is_user_icon: bool,
}

/// A project.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DashBoard {
    /// Id within the user.
    pub id: i32,
    /// Name (matched case-insensitively by `project=`).
    pub name: String,
    /// Created (ms).
    pub created_at: i64,
    /// Updated (ms).
    pub updated_at: i64,
    /// Widgets (none in the simulator).
    pub widgets: Vec<serde_json::Value>,
    /// Devices.
    pub devices: Vec<Device>,
    /// App theme.
    pub theme: String,
    /// App flags.
    pub keep_screen_on: bool,
    /// App flags.
    pub is_app_connected_on: bool,
    /// App flags.
    pub is_shared: bool,
    /// App flags.
    pub is_active: bool,
}

/// A user's profile.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// Projects.
    pub dash_boards: Vec<DashBoard>,
}

/// A user as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// `email-appName`, the key of `/admin/users/{id}`.
    pub id: String,
    /// Email (the real server keeps both fields).
    pub name: String,
    /// Email.
    pub email: String,
    /// App.
    pub app_name: String,
    /// Region.
    pub region: String,
    /// Password hash (see [`super::admin::hash_password`]).
    pub pass: String,
    /// Last change (ms).
    pub last_modified_ts: i64,
    /// Last app login (ms).
    pub last_logged_at: i64,
    /// Projects.
    pub profile: Profile,
    /// Facebook login.
    pub is_facebook_user: bool,
    /// May use the admin API.
    pub is_super_admin: bool,
    /// App energy balance.
    pub energy: i32,
}

/// A pending OTA campaign (all devices, or one user's, optionally one project).
#[derive(Debug, Clone)]
pub struct Campaign {
    /// Admin email.
    pub initiated_by: String,
    /// Start (ms).
    pub initiated_at: i64,
    /// Stored firmware path.
    pub path: String,
    /// Build read from the binary.
    pub build: String,
    /// Dashboard name filter (case-insensitive), for user campaigns.
    pub project: Option<String>,
}

/// Where a token's device lives: user, dashboard, device indexes.
type Loc = (usize, usize, usize);

/// Mutable server state.
#[derive(Default)]
pub struct State {
    /// Every user, the super-admin included.
    pub users: Vec<User>,
    tokens: HashMap<String, Loc>,
    /// Users that have had a hardware session since start.
    sessions: HashSet<String>,
    /// Open hardware connections per token.
    channels: HashMap<String, Vec<(u64, UnboundedSender<Frame>)>>,
    all: Option<Campaign>,
    per_user: HashMap<String, Campaign>,
    uploads: HashMap<String, Arc<Vec<u8>>>,
    /// Admin UI session cookies.
    pub cookies: HashSet<String>,
    /// Every authenticated `/admin/ota/*` call, in order.
    ota_calls: Vec<OtaCall>,
}

/// One authenticated call of the admin OTA API, as the server received it,
/// with the status it answered: what a test checks to prove exactly which
/// starts and stops reached the server (the real server keeps no such log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtaCall {
    /// What was asked.
    pub kind: OtaCallKind,
    /// HTTP status of the answer.
    pub status: u16,
}

/// Which admin OTA call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OtaCallKind {
    /// `POST /admin/ota/start?token=`: one device, now.
    Token(String),
    /// `POST /admin/ota/start?user=[&project=]`: a user's campaign.
    User {
        /// `user=`.
        email: String,
        /// `project=`.
        project: Option<String>,
    },
    /// `POST /admin/ota/start` without a target: the all-devices campaign.
    All,
    /// `GET /admin/ota/stop`.
    Stop,
}

impl OtaCallKind {
    /// True for a start (any target).
    pub fn is_start(&self) -> bool {
        !matches!(self, OtaCallKind::Stop)
    }

    /// True for a user or all-devices start (a campaign the server keeps).
    pub fn is_campaign(&self) -> bool {
        matches!(self, OtaCallKind::User { .. } | OtaCallKind::All)
    }
}

/// Why a single-device OTA was refused (the text is the HTTP 400 body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenOtaError {
    /// No device has this token.
    #[error("Invalid token.")]
    InvalidToken,
    /// None of the owner's devices has logged in since the server started.
    #[error("Device wasn't connected yet.")]
    NotConnectedYet,
    /// The owner has a session but this device is not online.
    #[error("No device in session.")]
    NoDeviceInSession,
}

/// The server: state plus fixed settings, shared by every listener.
pub struct Server {
    state: Mutex<State>,
    /// `http://host:port` prefixed to firmware paths in OTA commands.
    pub url_base: String,
    /// Super-admin email.
    pub admin_email: String,
    /// Largest accepted admin request body.
    pub upload_limit: usize,
    /// Heartbeat assumed before a device reports its own.
    pub default_heartbeat: Duration,
}

impl Server {
    /// A server with `users` (devices registered, all offline).
    pub fn new(
        users: Vec<User>,
        url_base: String,
        admin_email: String,
        upload_limit: usize,
        default_heartbeat: Duration,
    ) -> Server {
        let mut st = State {
            users,
            ..State::default()
        };
        for (u, user) in st.users.iter().enumerate() {
            for (d, dash) in user.profile.dash_boards.iter().enumerate() {
                for (i, dev) in dash.devices.iter().enumerate() {
                    st.tokens.insert(dev.token.clone(), (u, d, i));
                }
            }
        }
        Server {
            state: Mutex::new(st),
            url_base,
            admin_email,
            upload_limit,
            default_heartbeat,
        }
    }

    /// Locks the state; a panic elsewhere must not take the simulator down.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The device record for `token`.
    pub fn device(&self, token: &str) -> Option<Device> {
        let st = self.lock();
        let (u, d, i) = *st.tokens.get(token)?;
        Some(st.users[u].profile.dash_boards[d].devices[i].clone())
    }

    /// A hardware login. `false` for an unknown token.
    pub fn login(&self, token: &str, conn: u64, tx: UnboundedSender<Frame>, ip: String) -> bool {
        let mut st = self.lock();
        let Some(&(u, d, i)) = st.tokens.get(token) else {
            return false;
        };
        let email = st.users[u].email.clone();
        st.sessions.insert(email);
        st.channels
            .entry(token.to_string())
            .or_default()
            .push((conn, tx));
        let now = now_ms();
        let dev = &mut st.users[u].profile.dash_boards[d].devices[i];
        dev.status = "ONLINE".into();
        dev.connect_time = now;
        if dev.first_connect_time == 0 {
            dev.first_connect_time = now;
        }
        dev.data_received_at = now;
        dev.last_logged_ip = Some(ip);
        true
    }

    /// A hardware connection of `token` closed.
    pub fn logout(&self, token: &str, conn: u64) {
        let mut st = self.lock();
        let left = match st.channels.get_mut(token) {
            Some(v) => {
                v.retain(|(c, _)| *c != conn);
                v.len()
            }
            None => 0,
        };
        if left == 0 {
            st.channels.remove(token);
            if let Some(&(u, d, i)) = st.tokens.get(token) {
                let dev = &mut st.users[u].profile.dash_boards[d].devices[i];
                dev.status = "OFFLINE".into();
                dev.disconnect_time = now_ms();
            }
        }
    }

    /// Any message from the device.
    pub fn touch(&self, token: &str) {
        let mut st = self.lock();
        if let Some(&(u, d, i)) = st.tokens.get(token) {
            st.users[u].profile.dash_boards[d].devices[i].data_received_at = now_ms();
        }
    }

    /// Stores the info and returns the OTA URL to send when a campaign
    /// targets this device: the all-devices campaign first, then the owner's,
    /// each only when the reported build differs (plain string inequality).
    pub fn hardware_info(&self, token: &str, info: HardwareInfo) -> Option<String> {
        let mut st = self.lock();
        let &(u, d, i) = st.tokens.get(token)?;
        let email = st.users[u].email.clone();
        let dash_name = st.users[u].profile.dash_boards[d].name.clone();
        let differs = |c: &Campaign| info.build.as_ref().is_some_and(|b| *b != c.build);
        let campaign = match &st.all {
            Some(c) if differs(c) => Some(c.clone()),
            _ => st
                .per_user
                .get(&email)
                .filter(|c| {
                    differs(c)
                        && c.project
                            .as_ref()
                            .is_none_or(|p| p.eq_ignore_ascii_case(&dash_name))
                })
                .cloned(),
        };
        let dev = &mut st.users[u].profile.dash_boards[d].devices[i];
        dev.hardware_info = Some(info);
        let c = campaign?;
        dev.device_ota_info = Some(DeviceOtaInfo {
            ota_initiated_by: c.initiated_by,
            ota_initiated_at: c.initiated_at,
            ota_update_at: now_ms(),
        });
        Some(format!("{}{}", self.url_base, c.path))
    }

    /// The OTA command for firmware at `path`.
    pub fn ota_frame(&self, path: &str) -> Frame {
        let url = format!("{}{}", self.url_base, path);
        Frame::message(cmd::INTERNAL, OTA_MSG_ID, &["ota", &url])
    }

    /// `?token=`: sends the OTA command to that device now.
    pub fn ota_to_token(
        &self,
        token: &str,
        path: &str,
        initiator: &str,
    ) -> Result<(), TokenOtaError> {
        let frame = self.ota_frame(path);
        let mut st = self.lock();
        let &(u, d, i) = st.tokens.get(token).ok_or(TokenOtaError::InvalidToken)?;
        if !st.sessions.contains(&st.users[u].email) {
            return Err(TokenOtaError::NotConnectedYet);
        }
        let sent = st
            .channels
            .get(token)
            .map(|chans| {
                chans
                    .iter()
                    .filter(|(_, tx)| tx.send(frame.clone()).is_ok())
                    .count()
            })
            .unwrap_or(0);
        if sent == 0 {
            return Err(TokenOtaError::NoDeviceInSession);
        }
        let now = now_ms();
        st.users[u].profile.dash_boards[d].devices[i].device_ota_info = Some(DeviceOtaInfo {
            ota_initiated_by: initiator.to_string(),
            ota_initiated_at: now,
            ota_update_at: now,
        });
        Ok(())
    }

    /// `?user=` (with optional project): replaces that user's campaign.
    /// `false` when the user does not exist.
    pub fn campaign_for_user(&self, email: &str, project: Option<String>, c: Campaign) -> bool {
        let mut st = self.lock();
        if !st
            .users
            .iter()
            .any(|u| u.email == email && u.app_name == APP_NAME)
        {
            return false;
        }
        st.per_user
            .insert(email.to_string(), Campaign { project, ..c });
        true
    }

    /// No query: replaces the all-devices campaign.
    pub fn campaign_for_all(&self, c: Campaign) {
        self.lock().all = Some(c);
    }

    /// `/admin/ota/stop`: forgets every campaign. Uploaded files stay.
    pub fn stop_all(&self) {
        let mut st = self.lock();
        st.all = None;
        st.per_user.clear();
    }

    /// Records an authenticated admin OTA call and its answer.
    pub fn record_ota_call(&self, kind: OtaCallKind, status: u16) {
        self.lock().ota_calls.push(OtaCall { kind, status });
    }

    /// Every authenticated admin OTA call so far, in order.
    pub fn ota_calls(&self) -> Vec<OtaCall> {
        self.lock().ota_calls.clone()
    }

    /// Number of pending campaigns (all-devices counts as one).
    pub fn campaigns(&self) -> usize {
        let st = self.lock();
        st.all.is_some() as usize + st.per_user.len()
    }

    /// Keeps an uploaded file under `/static/ota/FUp_<digits>_upload<ext>`,
    /// the name the real server's upload handling produces.
    pub fn store_upload(&self, bytes: Vec<u8>, filename: &str) -> String {
        let ext = filename
            .rfind('.')
            .map(|i| &filename[i..])
            .unwrap_or_default();
        let n: u64 = rand::random::<u64>() >> 1;
        let path = format!("/static/ota/FUp_{n}_upload{ext}");
        self.lock().uploads.insert(path.clone(), Arc::new(bytes));
        path
    }

    /// An uploaded file by its path.
    pub fn upload(&self, path: &str) -> Option<Arc<Vec<u8>>> {
        self.lock().uploads.get(path).cloned()
    }
}
