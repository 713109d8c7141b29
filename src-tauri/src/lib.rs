//! Greenlight's app shell: Tauri commands, events, tray, notifications and
//! keychain around `greenlight-core`. Thin on purpose: the engine decides,
//! this crate translates. `run()` is shared by the desktop binary and the
//! Android/iOS builds (it is their entry point).

pub mod blynk;
pub mod commands;
pub mod error;
pub mod events;
pub mod notify;
pub mod state;
pub mod tray;

use std::sync::atomic::Ordering;

use tauri::{Manager, Runtime};

pub use state::{AppOptions, AppState};

/// Every command and event, typed; also what generates `ui/src/bindings.ts`.
pub fn specta_builder<R: Runtime>() -> tauri_specta::Builder<R> {
    tauri_specta::Builder::<R>::new()
        .commands(tauri_specta::collect_commands![
            commands::app_status,
            commands::accounts,
            commands::add_rainmaker_account,
            commands::add_mqtt_account,
            commands::remove_account,
            commands::login,
            commands::nodes,
            commands::pending,
            commands::jobs,
            commands::history,
            commands::job_events,
            commands::approve,
            commands::approve_all,
            commands::install_when_online,
            commands::snooze,
            commands::skip,
            commands::set_auto_approve,
            commands::set_quiet_hours,
            commands::policies,
            commands::check_now,
            commands::refresh,
            commands::cancel,
            commands::confirm_resend,
            commands::export_history_csv,
            commands::demo_start,
            commands::demo_stop,
            commands::set_notifications_paused,
            commands::set_autostart,
            blynk::blynk_accounts,
            blynk::add_blynk_account,
            blynk::remove_blynk_account,
            blynk::blynk_check_firmware,
            blynk::blynk_start,
            blynk::blynk_stop,
            blynk::blynk_status,
            blynk::blynk_history,
            blynk::blynk_refresh,
        ])
        .events(tauri_specta::collect_events![
            events::EngineEvent,
            events::BlynkEventMsg,
            events::AppChanged,
            events::TrayRequest
        ])
        // Every 64-bit integer we send is a Unix time in milliseconds, a row
        // id or a byte size: all far below 2^53, exact as JavaScript numbers.
        .dangerously_cast_bigints_to_number()
        // One TypeScript type per Rust type: what we send and what we take
        // have the same shape, so the `_Serialize`/`_Deserialize` split only
        // adds noise for the front end.
        .disable_serde_phases()
}

/// The TypeScript bindings as they should be checked in.
pub fn typescript_bindings() -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!("greenlight-bindings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("bindings.ts");
    specta_builder::<tauri::Wry>()
        .export(
            specta_typescript::Typescript::default().header(
                "// Generated from the Rust types by `make bindings`; do not edit.\n// @ts-nocheck",
            ),
            &path,
        )
        .map_err(|e| e.to_string())?;
    let s = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(s)
}

/// Wires commands, events and state into a builder: shared by the real app
/// and the tests' mock runtime (which add no tray and no plugins).
/// `extra` runs first in the setup (Tauri keeps one setup hook).
pub fn wire<R: Runtime>(
    builder: tauri::Builder<R>,
    opts: AppOptions,
    extra: fn(&mut tauri::App<R>),
) -> tauri::Builder<R> {
    let specta = specta_builder::<R>();
    builder
        .invoke_handler(specta.invoke_handler())
        .setup(move |app| {
            extra(app);
            specta.mount_events(app);
            let start_demo = std::env::var_os("GREENLIGHT_DEMO").is_some_and(|v| v == "1");
            let state = tauri::async_runtime::block_on(AppState::open(opts));
            state.set_shell(std::sync::Arc::new(app.handle().clone()));
            app.manage(state);
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(async move {
                let Some(state) = handle.try_state::<AppState>() else {
                    return;
                };
                if start_demo {
                    if let Err(e) = commands::demo_start(state.clone()).await {
                        tracing::error!(error = %e, "the demo fleet did not start");
                    }
                }
                // A one-shot command held the directory at launch: the
                // window is up already; the engine follows once it is done.
                let late = state.finish_opening().await;
                if state.demo_active().await {
                    // Leaving the demo attaches the user's engine.
                    return;
                }
                if let Ok(b) = state.real_blynk().await {
                    events::attach_blynk(&handle, b, state.generation.load(Ordering::SeqCst));
                }
                if let Ok(e) = state.real_engine().await {
                    notify::sync(&state).await;
                    events::attach(&handle, e, state.generation.load(Ordering::SeqCst));
                }
                if late {
                    if let Some(shell) = state.shell() {
                        shell.app_changed(false);
                    }
                }
            });
            Ok(())
        })
}

/// Runs the app (desktop `main`, and the mobile entry point).
#[cfg_attr(mobile, tauri::mobile_entry_point)]
pub fn run() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "greenlight=info,greenlight_app=info,greenlight_core=info".into()
            }),
        )
        .with_writer(std::io::stderr)
        .try_init();
    #[allow(unused_mut)]
    let mut builder = tauri::Builder::default();
    #[cfg(desktop)]
    {
        builder = builder
            .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
                tray::show_window(app);
            }))
            .plugin(tauri_plugin_autostart::init(
                tauri_plugin_autostart::MacosLauncher::LaunchAgent,
                Some(vec!["--minimized"]),
            ));
    }
    builder = builder.plugin(tauri_plugin_notification::init());
    let app = wire(builder, AppOptions::from_env(), |app| {
        #[cfg(desktop)]
        {
            if let Err(e) = tray::create(app.handle()) {
                // No tray host (some desktops): the window stays the way in.
                tracing::warn!(error = %e, "no tray icon");
            }
            if std::env::args().any(|a| a == "--minimized") {
                if let Some(w) = app.get_webview_window("main") {
                    let _ = w.hide();
                }
            }
        }
        #[cfg(not(desktop))]
        let _ = app;
    })
    .on_window_event(|window, event| {
        // Close to tray: the app keeps watching; Quit is in the tray menu.
        #[cfg(desktop)]
        if let tauri::WindowEvent::CloseRequested { api, .. } = event {
            if window.app_handle().tray_by_id(tray::TRAY_ID).is_some() {
                api.prevent_close();
                let _ = window.hide();
            }
        }
        #[cfg(not(desktop))]
        let _ = (window, event);
    })
    .build(tauri::generate_context!());
    let app = match app {
        Ok(a) => a,
        Err(e) => {
            eprintln!("greenlight: the app could not start: {e}");
            std::process::exit(1);
        }
    };
    app.run(|app, event| match event {
        tauri::RunEvent::Exit => {
            if let Some(state) = app.try_state::<AppState>() {
                tauri::async_runtime::block_on(state.shutdown());
            }
        }
        // macOS: after close-to-tray the app has no visible window but keeps
        // its Dock icon; clicking that icon brings the window back, as the
        // tray's "Open Greenlight" does.
        #[cfg(target_os = "macos")]
        tauri::RunEvent::Reopen {
            has_visible_windows: false,
            ..
        } => tray::show_window(app),
        _ => {}
    });
}
