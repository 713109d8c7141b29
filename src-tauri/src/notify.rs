//! The app's notifications. What deserves one is decided by
//! greenlight-core's [`Notifier`] (the rules `greenlight watch` follows
//! too); this shows its notes through the notification plugin, and keeps
//! "paused" where every process sees it: in the user's engine (its data
//! directory), so the daemon follows the tray's toggle, the tray follows
//! `greenlight notifications pause`, and both survive a restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use greenlight_core::{Note, Notifier};
use serde::Serialize;
use tauri::plugin::PermissionState;
use tauri::{AppHandle, Manager, Runtime};

use crate::error::AppResult;
use crate::state::AppState;

/// Folds something into the app's notifier and shows what it decides.
pub fn fold<R: Runtime>(app: &AppHandle<R>, f: impl FnOnce(&mut Notifier) -> Vec<Note>) {
    let Some(state) = app.try_state::<AppState>() else {
        return;
    };
    let notes = match state.notifier.lock() {
        Ok(mut n) => f(&mut n),
        Err(_) => return,
    };
    for note in notes {
        show(app, &note);
    }
}

/// Shows a notification through the plugin, when it is there (not under
/// the tests' mock runtime, nor without a notification service).
fn show<R: Runtime>(app: &AppHandle<R>, note: &Note) {
    tracing::info!(title = %note.title, body = %note.body, "notification");
    if let Some(n) = app.try_state::<tauri_plugin_notification::Notification<R>>() {
        if let Err(e) = n.builder().title(&note.title).body(&note.body).show() {
            tracing::warn!(error = %e, "could not show a notification");
        }
    }
}

/// Whether notifications are paused: the user's engine's setting, or this
/// run's when that engine could not be opened.
pub async fn paused(state: &AppState) -> bool {
    if let Ok(e) = state.real_engine().await {
        match e.notifications_paused().await {
            Ok(p) => return p,
            Err(e) => tracing::warn!(error = %e, "could not read the notification pause"),
        }
    }
    state.notifier.lock().map(|n| n.paused).unwrap_or(false)
}

/// Pauses or resumes notifications: stored by the user's engine first
/// (every other process hears it), then applied here and in the tray at
/// once (the engine's event does that too, but is not followed while the
/// demo is showing).
pub async fn set_paused(state: &AppState, paused: bool) -> AppResult<()> {
    if let Ok(e) = state.real_engine().await {
        e.set_notifications_paused(paused).await?;
    }
    apply_paused(state, paused);
    Ok(())
}

fn apply_paused(state: &AppState, paused: bool) {
    if let Ok(mut n) = state.notifier.lock() {
        n.paused = paused;
    }
    if let Some(shell) = state.shell() {
        shell.paused(paused);
    }
}

/// Reads the user's settings (pause, quiet hours) into the notifier and
/// the tray: at start, and when the demo stops showing. Later changes
/// arrive as engine events.
pub async fn sync(state: &AppState) {
    let Ok(e) = state.real_engine().await else {
        return;
    };
    if let Ok(p) = e.policies().await {
        if let Ok(mut n) = state.notifier.lock() {
            n.quiet_hours = p.quiet_hours;
        }
    }
    if let Ok(p) = e.notifications_paused().await {
        apply_paused(state, p);
    }
    if let Ok(p) = e.pending().await {
        if let Ok(mut n) = state.notifier.lock() {
            n.already_known(&p);
        }
    }
}

/// Whether the OS lets Greenlight show notifications, as the window shows
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, specta::Type)]
#[serde(rename_all = "snake_case")]
pub enum NotificationPermission {
    /// Notifications are shown (desktops always answer this).
    Granted,
    /// The user said no (now or before, in the system settings): nothing
    /// is shown, and the app does not ask again (the platform remembers).
    Denied,
    /// Not asked yet (phones: asked once an account or the demo exists).
    NotAsked,
}

impl From<PermissionState> for NotificationPermission {
    fn from(s: PermissionState) -> Self {
        match s {
            PermissionState::Granted => NotificationPermission::Granted,
            PermissionState::Denied => NotificationPermission::Denied,
            PermissionState::Prompt | PermissionState::PromptWithRationale => {
                NotificationPermission::NotAsked
            }
        }
    }
}

/// The permission as last read, and whether this run has asked.
#[derive(Debug)]
pub struct Permission {
    asked: AtomicBool,
    state: Mutex<NotificationPermission>,
}

impl Default for Permission {
    fn default() -> Self {
        Permission {
            asked: AtomicBool::new(false),
            state: Mutex::new(NotificationPermission::NotAsked),
        }
    }
}

impl Permission {
    /// The permission as last read.
    pub fn get(&self) -> NotificationPermission {
        self.state
            .lock()
            .map(|s| *s)
            .unwrap_or(NotificationPermission::NotAsked)
    }

    fn set(&self, p: NotificationPermission) {
        if let Ok(mut s) = self.state.lock() {
            *s = p;
        }
    }

    /// True the first time of a run only: the prompt is shown at most once
    /// per run, however many accounts or demos come.
    fn first_ask(&self) -> bool {
        !self.asked.swap(true, Ordering::SeqCst)
    }
}

/// Whether to show the system's prompt, given what the platform says now:
/// only while it still needs asking. A denial is final: the platform
/// remembers it (and Android stops showing the prompt after two), so the
/// window points to the system settings instead.
fn should_prompt(now: PermissionState) -> bool {
    matches!(
        now,
        PermissionState::Prompt | PermissionState::PromptWithRationale
    )
}

/// Reads the permission without asking (at launch, and when the app comes
/// back to the foreground: the user may have changed it in the system
/// settings), off the main thread.
pub fn read_permission<R: Runtime>(app: &AppHandle<R>) {
    let app = app.clone();
    tauri::async_runtime::spawn_blocking(move || {
        let (Some(n), Some(state)) = (
            app.try_state::<tauri_plugin_notification::Notification<R>>(),
            app.try_state::<AppState>(),
        ) else {
            return;
        };
        match n.permission_state() {
            Ok(s) => state.permission.set(s.into()),
            Err(e) => tracing::warn!(error = %e, "could not read the notification permission"),
        }
    });
}

/// Asks for the permission once per run, when there is something to be
/// told about: the user's engine or the demo has an account. Not at first
/// launch, when a prompt would come with no reason the user can see; the
/// first account added is the moment the user has just asked Greenlight to
/// watch something. Off the main thread (on phones the call waits for the
/// user's answer).
pub fn ask_permission_once<R: Runtime>(app: &AppHandle<R>) {
    let Some(state) = app.try_state::<AppState>() else {
        return;
    };
    if !state.permission.first_ask() {
        return;
    }
    let app = app.clone();
    tauri::async_runtime::spawn_blocking(move || {
        let (Some(n), Some(state)) = (
            app.try_state::<tauri_plugin_notification::Notification<R>>(),
            app.try_state::<AppState>(),
        ) else {
            return;
        };
        let now = match n.permission_state() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the notification permission");
                return;
            }
        };
        let answer = if should_prompt(now) {
            match n.request_permission() {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "could not ask for the notification permission");
                    now
                }
            }
        } else {
            now
        };
        tracing::info!(permission = %answer, "notification permission");
        state.permission.set(answer.into());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_is_shown_once_per_run_and_never_after_a_denial() {
        let p = Permission::default();
        assert_eq!(p.get(), NotificationPermission::NotAsked);
        assert!(p.first_ask());
        assert!(!p.first_ask(), "a second account does not ask again");
        assert!(should_prompt(PermissionState::Prompt));
        assert!(should_prompt(PermissionState::PromptWithRationale));
        assert!(!should_prompt(PermissionState::Denied));
        assert!(!should_prompt(PermissionState::Granted));
        p.set(PermissionState::Denied.into());
        assert_eq!(p.get(), NotificationPermission::Denied);
    }
}
