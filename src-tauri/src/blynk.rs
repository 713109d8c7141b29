//! The Blynk page's commands: admin accounts, firmware checks, start, stop
//! and the campaign tracking the server itself does not offer. Thin over
//! `greenlight_core::blynk`, like the rest of the shell.

use greenlight_core::blynk::{
    BlynkAccount, BlynkError, Campaign, Firmware, StartTarget, DEFAULT_UPLOAD_LIMIT,
};
use greenlight_core::tls;
use serde::{Deserialize, Serialize};
use tauri::State;

use crate::error::{AppError, AppResult};
use crate::state::AppState;

impl From<BlynkError> for AppError {
    fn from(e: BlynkError) -> Self {
        if e.is_auth() {
            AppError::NeedsLogin {
                account: String::new(),
                message: e.to_string(),
            }
        } else if e.is_usage() {
            AppError::invalid(e.to_string())
        } else {
            AppError::failed(e.to_string())
        }
    }
}

/// A Blynk server account as the page shows it (no password).
#[derive(Debug, Clone, Serialize, specta::Type)]
pub struct BlynkAccountView {
    /// Account name.
    pub name: String,
    /// Admin URL (`https://host:9443`).
    pub url: String,
    /// Admin email.
    pub user: String,
    /// Pinned certificate fingerprint, if any.
    pub pinned_fingerprint: Option<String>,
    /// The server's upload limit in bytes.
    pub upload_limit: u32,
}

/// A Blynk server to add.
#[derive(Debug, Clone, Deserialize, specta::Type)]
pub struct BlynkAccountInput {
    /// Unique account name.
    pub name: String,
    /// Admin URL, e.g. `https://blynk.local:9443`.
    pub url: String,
    /// Admin email.
    pub user: String,
    /// Admin password; goes to the keychain only.
    pub password: String,
    /// A certificate fingerprint the user accepted after being shown it.
    pub trust_fingerprint: Option<String>,
}

/// What a firmware file holds, checked before anything is uploaded.
#[derive(Debug, Clone, Serialize, specta::Type)]
pub struct FirmwareInfo {
    /// File name.
    pub file_name: String,
    /// The build tag the server will compare devices against.
    pub build: String,
    /// Bytes.
    pub size: u32,
    /// SHA-256 of the file, hex.
    pub sha256: String,
}

/// Which devices an update is for.
#[derive(Debug, Clone, Deserialize, specta::Type)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BlynkTargetInput {
    /// One device, by its token.
    Token {
        /// The device token.
        token: String,
    },
    /// Every device of one user, or of one of their projects.
    User {
        /// The user's email.
        email: String,
        /// Project (dashboard) name; all of the user's projects when empty.
        project: Option<String>,
    },
    /// Every device on the server.
    All,
}

/// The firmware file the user chose: a path or a `file://` URL from the
/// dialog, or a phone's document (read once and kept as a copy).
fn firmware_path(state: &AppState, path: &str) -> AppResult<std::path::PathBuf> {
    let path = path.trim();
    if path.is_empty() {
        return Err(AppError::invalid("choose a firmware file (.bin)"));
    }
    crate::documents::opened_path(state, path, crate::documents::FIRMWARE_LIMIT)
}

fn read_firmware(path: std::path::PathBuf) -> AppResult<Firmware> {
    Ok(Firmware::read(&path)?)
}

fn size32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Every Blynk server account.
#[tauri::command]
#[specta::specta]
pub async fn blynk_accounts(state: State<'_, AppState>) -> AppResult<Vec<BlynkAccountView>> {
    let b = state.blynk().await?;
    Ok(b.accounts()
        .await?
        .into_iter()
        .map(|a| BlynkAccountView {
            name: a.name,
            url: a.url,
            user: a.user,
            pinned_fingerprint: a.pinned_sha256,
            upload_limit: size32(a.upload_limit),
        })
        .collect())
}

/// Adds a Blynk server: an unknown certificate comes back as
/// `untrusted_certificate` with its fingerprint; the admin password is
/// checked by a login before anything is kept.
#[tauri::command]
#[specta::specta]
pub async fn add_blynk_account(
    state: State<'_, AppState>,
    input: BlynkAccountInput,
) -> AppResult<()> {
    let b = state.blynk().await?;
    let url = input.url.trim().trim_end_matches('/').to_string();
    if !url.starts_with("https://") {
        return Err(AppError::invalid(
            "the admin URL must start with https:// (the admin API is HTTPS only)",
        ));
    }
    let mut account = BlynkAccount::new(input.name.trim(), &url, input.user.trim());
    account.upload_limit = DEFAULT_UPLOAD_LIMIT;
    let given = input
        .trust_fingerprint
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    match tls::decide_trust(&url, given).await? {
        tls::Trust::System => {}
        tls::Trust::Pinned(fp) => account.pinned_sha256 = Some(fp),
        tls::Trust::Unknown { fingerprint } => {
            return Err(AppError::UntrustedCertificate {
                message: format!(
                    "{url} shows a certificate your system does not trust (Blynk servers make their own). If this is your server, compare its fingerprint {} and trust it.",
                    tls::pretty(&fingerprint)
                ),
                fingerprint,
            })
        }
    }
    Ok(b.add_account(account, &input.password).await?)
}

/// Forgets a Blynk account and its password; its campaigns stay in history.
#[tauri::command]
#[specta::specta]
pub async fn remove_blynk_account(state: State<'_, AppState>, name: String) -> AppResult<()> {
    Ok(state.blynk().await?.remove_account(&name).await?)
}

/// Reads a firmware file and says what it holds (build tag, size), or why
/// it cannot be used, before anything is uploaded.
#[tauri::command]
#[specta::specta]
pub async fn blynk_check_firmware(
    state: State<'_, AppState>,
    path: String,
) -> AppResult<FirmwareInfo> {
    let path = firmware_path(&state, &path)?;
    let fw = tokio::task::spawn_blocking(move || read_firmware(path))
        .await
        .map_err(|e| AppError::failed(e.to_string()))??;
    Ok(FirmwareInfo {
        file_name: fw.file_name().to_string(),
        build: fw.build().to_string(),
        size: size32(fw.size()),
        sha256: fw.sha256().to_string(),
    })
}

/// Uploads the firmware and starts the update for the target; the campaign
/// is then followed device by device.
#[tauri::command]
#[specta::specta]
pub async fn blynk_start(
    state: State<'_, AppState>,
    account: String,
    path: String,
    target: BlynkTargetInput,
) -> AppResult<Campaign> {
    let b = state.blynk().await?;
    let path = firmware_path(&state, &path)?;
    let fw = tokio::task::spawn_blocking(move || read_firmware(path))
        .await
        .map_err(|e| AppError::failed(e.to_string()))??;
    let target = match target {
        BlynkTargetInput::Token { token } => {
            let token = token.trim().to_string();
            if token.is_empty() {
                return Err(AppError::invalid("the device token is empty"));
            }
            StartTarget::Token(token)
        }
        BlynkTargetInput::User { email, project } => {
            let email = email.trim().to_string();
            if email.is_empty() {
                return Err(AppError::invalid("the user's email is empty"));
            }
            StartTarget::User {
                email,
                project: project
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty()),
            }
        }
        BlynkTargetInput::All => StartTarget::All,
    };
    let c = b.start(&account, &fw, target, None).await?;
    let _ = b.refresh(Some(&account)).await;
    Ok(b.campaign(c.id).await?.unwrap_or(c))
}

/// Stops every update on the server (the server's stop is global).
#[tauri::command]
#[specta::specta]
pub async fn blynk_stop(state: State<'_, AppState>, account: String) -> AppResult<Vec<Campaign>> {
    Ok(state.blynk().await?.stop(&account).await?)
}

/// Campaigns being followed, with each device's state.
#[tauri::command]
#[specta::specta]
pub async fn blynk_status(state: State<'_, AppState>) -> AppResult<Vec<Campaign>> {
    Ok(state.blynk().await?.status(None).await?)
}

/// Past campaigns, newest first.
#[tauri::command]
#[specta::specta]
pub async fn blynk_history(state: State<'_, AppState>) -> AppResult<Vec<Campaign>> {
    Ok(state.blynk().await?.history(None, 200).await?)
}

/// Polls the servers now instead of at the next tick.
#[tauri::command]
#[specta::specta]
pub async fn blynk_refresh(state: State<'_, AppState>) -> AppResult<()> {
    Ok(state.blynk().await?.refresh(None).await?)
}
