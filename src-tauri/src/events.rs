//! Events to the front end, typed, and the task that forwards the engine's
//! events to the window, the tray badge and the notifier.

use std::sync::atomic::Ordering;
use std::time::Duration;

use greenlight_core::{now_ms, EngineHandle, Event};
use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Manager, Runtime};
use tauri_specta::Event as _;
use tokio::sync::broadcast::error::RecvError;

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
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            let current = app
                .try_state::<AppState>()
                .map(|s| s.generation.load(Ordering::SeqCst));
            if current != Some(generation) {
                break;
            }
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        let counts = matches!(ev, Event::PendingAdded { .. } | Event::PendingRemoved { .. });
                        notify(&app, |n| n.on_event(&ev, now_ms()));
                        let _ = EngineEvent { event: ev }.emit(&app);
                        if counts {
                            refresh_badge(&app, &engine).await;
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "the window fell behind; it reloads");
                        let demo = match app.try_state::<AppState>() {
                            Some(s) => s.demo_active().await,
                            None => false,
                        };
                        let _ = AppChanged { demo }.emit(&app);
                        refresh_badge(&app, &engine).await;
                    }
                    Err(RecvError::Closed) => break,
                },
                _ = tick.tick() => {
                    notify(&app, |n| n.flush(now_ms()).into_iter().collect());
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
        loop {
            let current = app
                .try_state::<AppState>()
                .map(|s| s.generation.load(Ordering::SeqCst));
            if current != Some(generation) {
                break;
            }
            match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
                Err(_) => continue,
                Ok(Ok(ev)) => {
                    notify(&app, |n| n.on_blynk(&ev, now_ms()));
                    let _ = BlynkEventMsg { event: ev }.emit(&app);
                }
                Ok(Err(RecvError::Lagged(_))) => {
                    let demo = match app.try_state::<AppState>() {
                        Some(s) => s.demo_active().await,
                        None => false,
                    };
                    let _ = AppChanged { demo }.emit(&app);
                }
                Ok(Err(RecvError::Closed)) => break,
            }
        }
    });
}

fn notify<R: Runtime>(
    app: &AppHandle<R>,
    f: impl FnOnce(&mut crate::notify::Notifier) -> Vec<crate::notify::Note>,
) {
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
fn show<R: Runtime>(app: &AppHandle<R>, note: &crate::notify::Note) {
    tracing::info!(title = %note.title, body = %note.body, "notification");
    if let Some(n) = app.try_state::<tauri_plugin_notification::Notification<R>>() {
        if let Err(e) = n.builder().title(&note.title).body(&note.body).show() {
            tracing::warn!(error = %e, "could not show a notification");
        }
    }
}

async fn refresh_badge<R: Runtime>(app: &AppHandle<R>, engine: &EngineHandle) {
    let now = now_ms();
    let n = match engine.pending().await {
        Ok(p) => p
            .iter()
            .filter(|p| p.snoozed_until.is_none_or(|t| t <= now))
            .count(),
        Err(_) => return,
    };
    crate::tray::set_count(app, n);
}
