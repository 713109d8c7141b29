//! The commands the front end calls. Each one translates and calls the
//! engine; nothing here decides what happens to a device.

use std::sync::atomic::Ordering;
use std::time::Duration;

use greenlight_core::{
    now_ms, AccountState, ApprovalOutcome, Freshness, HistoryFilter, Job, JobEvent, Node, NodeRef,
    PendingUpdate, Policies, QuietHours, Rollout, RolloutAction, RolloutPlan,
};
use serde::{Deserialize, Serialize};
use tauri::State;

use greenlight_core::setup::{self, NewAccount, NewBroker, NewCloud};

use crate::error::{AppError, AppResult};
use crate::state::{AppState, KeychainStatus};

/// The app's own state, for the header and the settings.
#[derive(Debug, Clone, Serialize, specta::Type)]
pub struct AppStatus {
    /// App version.
    pub version: String,
    /// The demo fleet is showing.
    pub demo: bool,
    /// Whether passwords can be kept in the OS keychain.
    pub keychain: KeychainStatus,
    /// Notifications paused (from the tray, the settings or `greenlight
    /// notifications pause`; kept with the user's data, shared with
    /// `greenlight watch`).
    pub notifications_paused: bool,
    /// Where the user's data lives.
    pub data_dir: String,
    /// Starts at login (`null` where not offered).
    pub autostart: Option<bool>,
    /// The demo's sample Blynk firmware file, while the demo is on.
    pub demo_firmware: Option<String>,
    /// Who runs the engine: `opening` (just launched: the keychain and the
    /// data directory are being opened; `app_changed` follows), `app` (this app; `greenlight` commands talk to
    /// it), `daemon` (`greenlight watch`; the app is its client), `waiting`
    /// (a one-shot `greenlight` command holds the data directory; the
    /// engine opens when it is done, and `app_changed` says so) or `none`
    /// (the data directory could not be opened).
    pub engine_owner: String,
    /// The demo fleet can be started here: its simulator (`greenlight-sim`)
    /// is installed beside the app or on PATH.
    pub demo_available: bool,
    /// Whether the OS lets Greenlight show notifications.
    pub notifications: crate::notify::NotificationPermission,
    /// A phone (Android, iOS): files are chosen in the system's picker
    /// only, there are no paths to type.
    pub mobile: bool,
}

/// An account as the Accounts page shows it (no secrets).
#[derive(Debug, Clone, Serialize, specta::Type)]
pub struct AccountView {
    /// Account name.
    pub name: String,
    /// Cloud URL, if the account has a RainMaker cloud.
    pub cloud_url: Option<String>,
    /// Cloud user (email).
    pub user: Option<String>,
    /// Broker URL, if the account watches an MQTT broker.
    pub mqtt_url: Option<String>,
    /// The cloud's certificate is pinned to this fingerprint.
    pub pinned_fingerprint: Option<String>,
    /// Connection state.
    pub state: AccountState,
    /// How fresh what is shown of its devices is.
    pub freshness: Freshness,
}

/// A RainMaker cloud account to add.
#[derive(Debug, Clone, Deserialize, specta::Type)]
pub struct RainmakerAccountInput {
    /// Unique account name.
    pub name: String,
    /// Cloud base URL (the public service's when empty).
    pub url: String,
    /// Email.
    pub user: String,
    /// Password; goes to the keychain only.
    pub password: String,
    /// Optional MQTT broker the nodes publish to.
    pub mqtt_url: Option<String>,
    /// A certificate fingerprint the user accepted after being shown it.
    pub trust_fingerprint: Option<String>,
}

/// An MQTT broker to watch directly.
#[derive(Debug, Clone, Deserialize, specta::Type)]
pub struct MqttAccountInput {
    /// Unique account name.
    pub name: String,
    /// `mqtt://host:1883` or `mqtts://host:8883`.
    pub url: String,
    /// CA certificate file (PEM) for `mqtts://`.
    pub ca_file: Option<String>,
    /// Client certificate file (PEM).
    pub client_cert: Option<String>,
    /// Client key file (PEM).
    pub client_key: Option<String>,
    /// Broker user name.
    pub username: Option<String>,
    /// Broker password; goes to the keychain only.
    pub password: Option<String>,
    /// The user confirmed sending the password over an unencrypted
    /// `mqtt://` URL (refused otherwise, except to a broker on this computer).
    #[serde(default)]
    pub allow_plaintext_password: bool,
}

/// Which jobs the History page lists.
#[derive(Debug, Clone, Default, Deserialize, specta::Type)]
pub struct HistoryQuery {
    /// Only this account.
    #[serde(default)]
    pub account: Option<String>,
    /// Only this node.
    pub node_id: Option<String>,
    /// At most this many, newest first.
    pub limit: Option<u32>,
}

fn opt(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

/// An optional certificate field: empty is none; a path or `file://` URL
/// from the dialog is a path; a phone's document is kept as a copy.
fn chosen(state: &AppState, s: &Option<String>) -> AppResult<Option<String>> {
    opt(s)
        .map(|p| {
            crate::documents::opened_path(state, &p, crate::documents::CERTIFICATE_LIMIT)
                .map(|p| p.display().to_string())
        })
        .transpose()
}

/// The app's own state.
#[tauri::command]
#[specta::specta]
pub async fn app_status(state: State<'_, AppState>) -> AppResult<AppStatus> {
    Ok(AppStatus {
        version: env!("CARGO_PKG_VERSION").into(),
        demo: state.demo_active().await,
        keychain: state.keychain(),
        notifications_paused: crate::notify::paused(&state).await,
        data_dir: state.data_dir().display().to_string(),
        autostart: state.shell().and_then(|s| s.autostart()),
        demo_firmware: state.demo_firmware().await,
        engine_owner: state.engine_owner().await.into(),
        demo_available: state.simulator().is_some(),
        notifications: state.notification_permission(),
        mobile: cfg!(mobile),
    })
}

/// Every account and how it is doing.
#[tauri::command]
#[specta::specta]
pub async fn accounts(state: State<'_, AppState>) -> AppResult<Vec<AccountView>> {
    let e = state.engine().await?;
    let fresh: std::collections::HashMap<String, Freshness> =
        e.freshness().await?.into_iter().collect();
    Ok(e.accounts()
        .await?
        .into_iter()
        .map(|(c, s)| AccountView {
            freshness: fresh.get(&c.name).cloned().unwrap_or_default(),
            cloud_url: c.rest.as_ref().map(|r| r.base_url.clone()),
            user: c.rest.as_ref().map(|r| r.user.clone()),
            pinned_fingerprint: c.rest.as_ref().and_then(|r| r.pinned_sha256.clone()),
            mqtt_url: c.mqtt.as_ref().map(|m| m.url.clone()),
            name: c.name,
            state: s,
        })
        .collect())
}

/// Adds a RainMaker cloud account: checks the certificate (an untrusted one
/// comes back as `untrusted_certificate` with its fingerprint, to be shown
/// and accepted), logs in once so a wrong password is said at once, and only
/// then saves it. The password goes to the keychain, nowhere else.
#[tauri::command]
#[specta::specta]
pub async fn add_rainmaker_account(
    state: State<'_, AppState>,
    input: RainmakerAccountInput,
) -> AppResult<u32> {
    let e = state.real_engine().await?;
    let new = NewAccount {
        name: input.name,
        cloud: Some(NewCloud {
            url: input.url,
            user: input.user,
            password: input.password,
            trust_fingerprint: input.trust_fingerprint,
        }),
        broker: opt(&input.mqtt_url).map(|url| NewBroker {
            url,
            ..NewBroker::default()
        }),
    };
    let cfg = setup::add_account(&e, new).await?;
    let _ = tokio::time::timeout(Duration::from_secs(20), e.refresh()).await;
    let n = e
        .nodes()
        .await?
        .iter()
        .filter(|n| n.account == cfg.name)
        .count();
    Ok(n as u32)
}

/// Adds an MQTT broker to watch directly (nodes on a private broker).
#[tauri::command]
#[specta::specta]
pub async fn add_mqtt_account(
    state: State<'_, AppState>,
    input: MqttAccountInput,
) -> AppResult<()> {
    let e = state.real_engine().await?;
    let new = NewAccount {
        name: input.name,
        cloud: None,
        broker: Some(NewBroker {
            url: input.url,
            username: input.username,
            password: input.password,
            ca_file: chosen(&state, &input.ca_file)?,
            client_cert: chosen(&state, &input.client_cert)?,
            client_key: chosen(&state, &input.client_key)?,
            allow_plaintext_password: input.allow_plaintext_password,
        }),
    };
    setup::add_account(&e, new).await?;
    Ok(())
}

/// Removes an account and its secrets; its history stays.
#[tauri::command]
#[specta::specta]
pub async fn remove_account(state: State<'_, AppState>, name: String) -> AppResult<()> {
    Ok(state.engine().await?.remove_account(&name).await?)
}

/// Logs an account in again with a new password.
#[tauri::command]
#[specta::specta]
pub async fn login(state: State<'_, AppState>, account: String, password: String) -> AppResult<()> {
    if password.is_empty() {
        return Err(AppError::invalid("the password is empty"));
    }
    Ok(state.engine().await?.login(&account, &password).await?)
}

/// Every known node.
#[tauri::command]
#[specta::specta]
pub async fn nodes(state: State<'_, AppState>) -> AppResult<Vec<Node>> {
    Ok(state.engine().await?.nodes().await?)
}

/// Every pending update (snoozed ones included, with `snoozed_until`).
#[tauri::command]
#[specta::specta]
pub async fn pending(state: State<'_, AppState>) -> AppResult<Vec<PendingUpdate>> {
    Ok(state.engine().await?.pending().await?)
}

/// Jobs that are queued or running.
#[tauri::command]
#[specta::specta]
pub async fn jobs(state: State<'_, AppState>) -> AppResult<Vec<Job>> {
    Ok(state.engine().await?.jobs().await?)
}

/// Past and present jobs, newest first.
#[tauri::command]
#[specta::specta]
pub async fn history(state: State<'_, AppState>, query: HistoryQuery) -> AppResult<Vec<Job>> {
    Ok(state
        .engine()
        .await?
        .history(HistoryFilter {
            account: query.account,
            node_id: query.node_id,
            limit: query.limit,
        })
        .await?)
}

/// One job's timeline.
#[tauri::command]
#[specta::specta]
pub async fn job_events(state: State<'_, AppState>, job_id: i64) -> AppResult<Vec<JobEvent>> {
    Ok(state.engine().await?.job_events(job_id).await?)
}

/// Approves these nodes' pending updates, each exactly once.
#[tauri::command]
#[specta::specta]
pub async fn approve(
    state: State<'_, AppState>,
    nodes: Vec<NodeRef>,
) -> AppResult<Vec<ApprovalOutcome>> {
    Ok(state.engine().await?.approve(nodes).await?)
}

/// Approves every pending update that can be (up-to-date, offline, skipped
/// and snoozed ones are left out and said so in the outcomes).
#[tauri::command]
#[specta::specta]
pub async fn approve_all(state: State<'_, AppState>) -> AppResult<Vec<ApprovalOutcome>> {
    Ok(state.engine().await?.approve_all().await?)
}

/// Approves carefully ("Approve all…", then "Carefully"): one device
/// first, then the rest a batch at a time, each batch only once the last
/// one stayed online on its new version for the soak time. The engine
/// checks the plan (a batch of 0, a window that never opens are refused in
/// plain words) and refuses a second rollout while one runs or is stopped.
/// What happens next arrives as `rollout_changed` events.
#[tauri::command]
#[specta::specta]
pub async fn start_rollout(state: State<'_, AppState>, plan: RolloutPlan) -> AppResult<Rollout> {
    state
        .engine()
        .await?
        .start_rollout(plan)
        .await
        .map_err(refusal)
}

/// The running or stopped rollout first, then the last ended ones.
#[tauri::command]
#[specta::specta]
pub async fn rollouts(state: State<'_, AppState>) -> AppResult<Vec<Rollout>> {
    Ok(state.engine().await?.rollouts().await?)
}

/// Resume, Retry failed or Cancel on the rollout the user sees (`id`; the
/// engine refuses it if another rollout is the active one by now).
#[tauri::command]
#[specta::specta]
pub async fn rollout_action(
    state: State<'_, AppState>,
    id: Option<i64>,
    action: RolloutAction,
) -> AppResult<Rollout> {
    state
        .engine()
        .await?
        .rollout_action(id, action)
        .await
        .map_err(refusal)
}

/// The engine refuses a rollout in a sentence written for the user ("a
/// batch is 1 to 100 devices, not 0", "no rollout is running"): shown as
/// it is, without the "configuration:" its error type puts in front.
fn refusal(e: greenlight_core::Error) -> AppError {
    match e {
        greenlight_core::Error::Config(message) => AppError::Invalid { message },
        e => e.into(),
    }
}

/// Approves now; the update starts when the node is next online.
#[tauri::command]
#[specta::specta]
pub async fn install_when_online(
    state: State<'_, AppState>,
    node: NodeRef,
) -> AppResult<ApprovalOutcome> {
    Ok(state.engine().await?.install_when_online(node).await?)
}

/// Hides a node's pending update for some hours ("remind me later").
#[tauri::command]
#[specta::specta]
pub async fn snooze(state: State<'_, AppState>, node: NodeRef, hours: u32) -> AppResult<()> {
    let hours = hours.clamp(1, 24 * 30);
    let until = now_ms() + i64::from(hours) * 3_600_000;
    Ok(state.engine().await?.snooze(node, Some(until)).await?)
}

/// Skips the version a node is offered; a newer one shows again.
#[tauri::command]
#[specta::specta]
pub async fn skip(state: State<'_, AppState>, node: NodeRef) -> AppResult<()> {
    Ok(state.engine().await?.skip(node).await?)
}

/// Turns auto-approve on or off for one node.
#[tauri::command]
#[specta::specta]
pub async fn set_auto_approve(
    state: State<'_, AppState>,
    node: NodeRef,
    on: bool,
) -> AppResult<()> {
    Ok(state.engine().await?.set_auto_approve(node, on).await?)
}

/// Sets (or clears, with `null`) the quiet hours.
#[tauri::command]
#[specta::specta]
pub async fn set_quiet_hours(
    state: State<'_, AppState>,
    quiet: Option<QuietHours>,
) -> AppResult<()> {
    // Checked by core (policy::check_quiet_hours), for every front end.
    state.engine().await?.set_quiet_hours(quiet).await?;
    if let Ok(mut n) = state.notifier.lock() {
        n.quiet_hours = quiet;
    }
    Ok(())
}

/// Auto-approve, quiet hours, skipped and snoozed updates.
#[tauri::command]
#[specta::specta]
pub async fn policies(state: State<'_, AppState>) -> AppResult<Policies> {
    Ok(state.engine().await?.policies().await?)
}

/// Asks one node to check for an update now.
#[tauri::command]
#[specta::specta]
pub async fn check_now(state: State<'_, AppState>, node: NodeRef) -> AppResult<()> {
    Ok(state.engine().await?.check_now(node).await?)
}

/// Re-reads every account's nodes and offers from the cloud.
#[tauri::command]
#[specta::specta]
pub async fn refresh(state: State<'_, AppState>) -> AppResult<()> {
    Ok(state.engine().await?.refresh().await?)
}

/// Cancels a queued job (one not yet sent).
#[tauri::command]
#[specta::specta]
pub async fn cancel(state: State<'_, AppState>, job_id: i64) -> AppResult<Job> {
    Ok(state.engine().await?.cancel(job_id).await?)
}

/// Sends again a job whose first send could not be confirmed, after the
/// user checked the device did not start it.
#[tauri::command]
#[specta::specta]
pub async fn confirm_resend(state: State<'_, AppState>, job_id: i64) -> AppResult<ApprovalOutcome> {
    Ok(state.engine().await?.confirm_resend(job_id).await?)
}

/// The history as CSV (same columns as `greenlight history --csv`), written
/// to `path` (what the user chose in the save dialog) or, without one (no
/// dialog: the end-to-end tests, a webview without the dialog plugin), to a
/// new file in the user's Downloads folder; returns the file's path.
///
/// The CSV is written beside the target and renamed over it, so a failed
/// write leaves whatever was there as it was and no partial file behind.
#[tauri::command]
#[specta::specta]
pub async fn export_history_csv(
    state: State<'_, AppState>,
    query: HistoryQuery,
    path: Option<String>,
) -> AppResult<String> {
    // The target is checked before the history is read: a bad choice is
    // said at once.
    let chosen = match opt(&path) {
        Some(p) if crate::documents::is_document(&p) => Some(ExportTo::Document(p)),
        Some(p) => Some(ExportTo::File(csv_target(&p)?)),
        None => None,
    };
    let e = state.engine().await?;
    let jobs = e
        .history(HistoryFilter {
            account: query.account,
            node_id: query.node_id,
            limit: Some(query.limit.unwrap_or(100_000)),
        })
        .await?;
    let names: std::collections::HashMap<String, String> = e
        .nodes()
        .await?
        .into_iter()
        .map(|n| (n.node_id.clone(), n.name.unwrap_or(n.node_id)))
        .collect();
    let csv = greenlight_core::export::history_csv(&jobs, |id| {
        names.get(id).cloned().unwrap_or_else(|| id.to_string())
    });
    let path = match chosen {
        Some(ExportTo::File(p)) => p,
        // A phone's save target: written through the system.
        Some(ExportTo::Document(url)) => {
            crate::documents::save(&state, &url, csv.as_bytes())?;
            return Ok(url);
        }
        None => {
            let dir = directories::UserDirs::new()
                .and_then(|u| u.download_dir().map(|d| d.to_path_buf()))
                .unwrap_or_else(|| state.data_dir().clone());
            std::fs::create_dir_all(&dir).map_err(|err| {
                AppError::failed(format!("cannot create {}: {err}", dir.display()))
            })?;
            dir.join(format!("greenlight-history-{}.csv", now_ms() / 1000))
        }
    };
    write_replacing(&path, csv.as_bytes())?;
    Ok(path.display().to_string())
}

/// Where the user chose to save an export.
enum ExportTo {
    /// A path (desktops).
    File(std::path::PathBuf),
    /// A phone's save target, written through the system.
    Document(String),
}

/// Where the export goes: a file whose name ends in `.csv`. Commands are
/// callable from the page with any argument, so this also keeps a
/// compromised page from replacing any other kind of file with a CSV.
fn csv_target(s: &str) -> AppResult<std::path::PathBuf> {
    let p = chosen_file(s)?;
    if !p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
        return Err(AppError::invalid(format!(
            "{} does not end in .csv: choose a name ending in .csv",
            p.display()
        )));
    }
    Ok(p)
}

/// A file the user chose in a native dialog, as a path: a plain path, or a
/// `file://` URL (what the dialog plugin hands back for some pickers).
/// Other URLs (Android's `content://`) name a document, not a file: files
/// to read go through [`crate::documents::opened_path`] instead; the CSV
/// export, which writes, refuses them in plain words.
pub fn chosen_file(s: &str) -> AppResult<std::path::PathBuf> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix("file://") {
        // `file:///home/x/a%20b.csv`: the path part, percent-decoded.
        let decoded = percent_decode(rest)
            .ok_or_else(|| AppError::invalid(format!("{s} is not a file path")))?;
        let p = std::path::PathBuf::from(decoded);
        return if p.is_absolute() {
            Ok(p)
        } else {
            Err(AppError::invalid(format!("{s} is not a file path")))
        };
    }
    if let Some((scheme, _)) = s.split_once("://") {
        return Err(AppError::invalid(format!(
            "{s} is a {scheme}:// document, not a file: this version of Greenlight can only use files it can open by path"
        )));
    }
    if s.is_empty() {
        return Err(AppError::invalid("no file was chosen"));
    }
    Ok(std::path::PathBuf::from(s))
}

/// `%XX` escapes decoded; `None` for a broken escape or bytes that are not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Writes `bytes` to `path` through a temporary file beside it, renamed over
/// the target only once it is complete.
fn write_replacing(path: &std::path::Path, bytes: &[u8]) -> AppResult<()> {
    let cannot = |err: std::io::Error| {
        AppError::failed(format!(
            "cannot save {}: {err}; nothing was written",
            path.display()
        ))
    };
    if path.is_dir() {
        return Err(cannot(std::io::Error::other("it is a folder")));
    }
    let name = path
        .file_name()
        .ok_or_else(|| cannot(std::io::Error::other("it names no file")))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    if let Err(err) = std::fs::write(&tmp, bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(cannot(err));
    }
    std::fs::rename(&tmp, path).map_err(|err| {
        let _ = std::fs::remove_file(&tmp);
        cannot(err)
    })
}

/// Starts the demo fleet and shows it.
#[tauri::command]
#[specta::specta]
pub async fn demo_start(state: State<'_, AppState>) -> AppResult<()> {
    let (e, b) = state.start_demo().await?;
    if let Some(shell) = state.shell() {
        let generation = state.generation.load(Ordering::SeqCst);
        shell.attach(e, generation);
        if let Some(b) = b {
            shell.attach_blynk(b, generation);
        }
        shell.app_changed(true);
    }
    Ok(())
}

/// Leaves the demo fleet and shows the user's own accounts again.
#[tauri::command]
#[specta::specta]
pub async fn demo_stop(state: State<'_, AppState>) -> AppResult<()> {
    let (real, blynk) = state.stop_demo().await;
    // The user's settings again (the demo's quiet hours were its own).
    crate::notify::sync(&state).await;
    if let Some(shell) = state.shell() {
        let generation = state.generation.load(Ordering::SeqCst);
        if let Some(e) = real {
            shell.attach(e, generation);
        }
        if let Some(b) = blynk {
            shell.attach_blynk(b, generation);
        }
        shell.app_changed(false);
    }
    Ok(())
}

/// Pauses or resumes notifications (also in the tray menu), for the app
/// and `greenlight watch` alike, until changed again.
#[tauri::command]
#[specta::specta]
pub async fn set_notifications_paused(state: State<'_, AppState>, paused: bool) -> AppResult<()> {
    crate::notify::set_paused(&state, paused).await
}

/// Turns "start Greenlight when I log in" on or off (desktop).
#[tauri::command]
#[specta::specta]
pub async fn set_autostart(state: State<'_, AppState>, on: bool) -> AppResult<()> {
    let shell = state
        .shell()
        .ok_or_else(|| AppError::failed("the app is not set up yet"))?;
    shell.set_autostart(on).map_err(AppError::failed)
}
