//! Events to the front end, typed, and the task that forwards the engine's
//! events to the window, the tray (badge, pause tick) and the notifier.

use std::sync::atomic::Ordering;
use std::time::Duration;

use greenlight_core::{now_ms, EngineHandle, Event};
use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Manager, Runtime};
use tauri_specta::Event as _;
use tokio::sync::broadcast::error::RecvError;

use crate::notify;
use crate::state::AppState;

/// Something changed in the engine (the core's own event, as it is).
#[derive(Debug, Clone, Serialize, Deserialize, specta::Type, tauri_specta::Event)]
pub struct EngineEvent {
    /// The change.
    pub event: Event,
}

/// Something changed in a Blynk campaign (the tracker's own event).
#[derive(Debug, Clone, Serialize, Deserialize, specta::Type, tauri_specta::Event)]
pub struct BlynkEventMsg {
    /// The change.
    pub event: greenlight_core::blynk::BlynkEvent,
}

/// The app switched between the demo fleet and the user's accounts, or
/// missed events: the front end reloads everything.
#[derive(Debug, Clone, Serialize, Deserialize, specta::Type, tauri_specta::Event)]
pub struct AppChanged {
    /// The demo fleet is showing.
    pub demo: bool,
}

/// The tray asked the window to do something that needs the user's eyes.
#[derive(Debug, Clone, Serialize, Deserialize, specta::Type, tauri_specta::Event)]
pub struct TrayRequest {
    /// What.
    pub action: TrayAction,
}

/// Tray requests.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, specta::Type)]
#[serde(rename_all = "snake_case")]
pub enum TrayAction {
    /// "Approve all pending…": show the inbox and ask to confirm.
    ApproveAll,
}

/// Starts forwarding `engine`'s events. The task stops by itself when the
/// showing engine changes (its generation is no longer current) or the
/// engine stops.
pub fn attach<R: Runtime>(app: &AppHandle<R>, engine: EngineHandle, generation: u64) {
    let app = app.clone();
    let mut rx = engine.subscribe();
    tauri::async_runtime::spawn(async move {
        refresh_badge(&app, &engine).await;
        // An engine with accounts (the user's, or the demo's) has things to
        // tell: the moment to ask for the notification permission.
        if engine.accounts().await.is_ok_and(|a| !a.is_empty()) {
            notify::ask_permission_once(&app);
        }
        // The badge is recounted on the tick, not per event: a sweep of a
        // big fleet sends thousands of pending events, and each recount
        // copies the whole pending list out of the engine.
        let mut badge_stale = false;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        while is_current(&app, generation) {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        badge_stale |= matches!(ev, Event::PendingAdded { .. } | Event::PendingRemoved { .. });
                        // The notifier follows the settings' events itself;
                        // the tray's tick follows a pause set elsewhere.
                        if let Event::NotificationsPaused { paused } = &ev {
                            crate::tray::reflect_paused(&app, *paused);
                        }
                        // The first account was just added.
                        if let Event::AccountState { .. } = &ev {
                            notify::ask_permission_once(&app);
                        }
                        notify::fold(&app, |n| n.on_event(&ev, now_ms()));
                        let _ = EngineEvent { event: ev }.emit(&app);
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "the window fell behind; it reloads");
                        reload_window(&app).await;
                        badge_stale = true;
                    }
                    Err(RecvError::Closed) => break,
                },
                _ = tick.tick() => {
                    notify::fold(&app, |n| n.flush(now_ms()).into_iter().collect());
                    if std::mem::take(&mut badge_stale) {
                        refresh_badge(&app, &engine).await;
                    }
                }
            }
        }
    });
}

/// Starts forwarding a Blynk tracker's events, like [`attach`].
pub fn attach_blynk<R: Runtime>(
    app: &AppHandle<R>,
    blynk: greenlight_core::blynk::BlynkHandle,
    generation: u64,
) {
    let app = app.clone();
    let mut rx = blynk.subscribe();
    tauri::async_runtime::spawn(async move {
        while is_current(&app, generation) {
            match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
                Err(_) => continue,
                Ok(Ok(ev)) => {
                    notify::fold(&app, |n| n.on_blynk(&ev, now_ms()));
                    let _ = BlynkEventMsg { event: ev }.emit(&app);
                }
                Ok(Err(RecvError::Lagged(_))) => reload_window(&app).await,
                Ok(Err(RecvError::Closed)) => break,
            }
        }
    });
}

/// True while `generation` is the showing engine's: a forwarder of an
/// engine that is no longer shown stops.
fn is_current<R: Runtime>(app: &AppHandle<R>, generation: u64) -> bool {
    app.try_state::<AppState>()
        .is_some_and(|s| s.generation.load(Ordering::SeqCst) == generation)
}

/// Tells the window to reload everything (it missed events, or a setting
/// it shows changed elsewhere).
pub async fn reload_window<R: Runtime>(app: &AppHandle<R>) {
    let demo = match app.try_state::<AppState>() {
        Some(s) => s.demo_active().await,
        None => false,
    };
    let _ = AppChanged { demo }.emit(app);
}

async fn refresh_badge<R: Runtime>(app: &AppHandle<R>, engine: &EngineHandle) {
    let now = now_ms();
    let n = match engine.pending().await {
        Ok(p) => p.iter().filter(|p| !p.is_snoozed(now)).count(),
        Err(_) => return,
    };
    crate::tray::set_count(app, n);
}
