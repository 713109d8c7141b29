//! The app's notifications. What deserves one is decided by
//! greenlight-core's [`Notifier`] (the rules `greenlight watch` follows
//! too); this shows its notes through the notification plugin, and keeps
//! "paused" where every process sees it: in the user's engine (its data
//! directory), so the daemon follows the tray's toggle, the tray follows
//! `greenlight notifications pause`, and both survive a restart.

use greenlight_core::{Note, Notifier};
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
