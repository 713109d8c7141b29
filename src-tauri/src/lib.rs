//! Greenlight's app shell: Tauri commands, events, tray, notifications and
//! keychain around `greenlight-core`. Thin on purpose: the engine decides,
//! this crate translates. `run()` is shared by the desktop binary and the
//! Android/iOS builds (it is their entry point).

pub mod blynk;
pub mod commands;
pub mod documents;
pub mod error;
pub mod events;
pub mod notify;
pub mod state;
pub mod tray;

use std::sync::atomic::Ordering;

use tauri::{Manager, Runtime};

pub use state::{AppOptions, AppState, LAUNCH_WAIT};

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
            commands::start_rollout,
            commands::rollouts,
            commands::rollout_action,
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
            let opts = phone_data_dir(app, opts);
            specta.mount_events(app);
            let start_demo = std::env::var_os("GREENLIGHT_DEMO").is_some_and(|v| v == "1");
            // Nothing slow here: the window opens at once, and the keychain
            // and the data directory are opened in the task below.
            let state = AppState::new(opts);
            state.set_shell(std::sync::Arc::new(app.handle().clone()));
            app.manage(state);
            notify::read_permission(app.handle());
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(async move {
                let Some(state) = handle.try_state::<AppState>() else {
                    return;
                };
                let told = state.open_user().await;
                let reload = || {
                    if let Some(shell) = state.shell() {
                        shell.app_changed(false);
                    }
                };
                if start_demo {
                    if let Err(e) = commands::demo_start(state.clone()).await {
                        tracing::error!(error = %e, "the demo fleet did not start");
                    }
                }
                if told && state.engine_owner().await == "waiting" {
                    // The window said "opening": now it says who holds the
                    // directory, until the command is done.
                    reload();
                }
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
                if late || told {
                    reload();
                }
            });
            Ok(())
        })
}

/// On a phone the data directory is the app's own, from Tauri's path
/// resolver: the one `AppOptions::from_env` finds there is not writable
/// (and no CLI shares it). Desktops keep the directory the CLI uses.
fn phone_data_dir<R: Runtime>(app: &tauri::App<R>, mut opts: AppOptions) -> AppOptions {
    if cfg!(mobile) {
        match app.path().app_data_dir() {
            Ok(dir) => opts.data_dir = dir,
            Err(e) => tracing::error!(error = %e, "no app data directory from the OS"),
        }
    }
    opts
}

/// Whether the launch's own `RunEvent::Resumed` has passed.
static LAUNCHED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Asks the user's engine to catch up after a suspend, off the event loop.
fn catch_up<R: Runtime>(app: &tauri::AppHandle<R>) {
    // Back from the system settings, perhaps: the window shows the
    // permission as it is now.
    notify::read_permission(app);
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        if let Some(state) = app.try_state::<AppState>() {
            state.resumed().await;
        }
    });
}

/// Runs the app (desktop `main`, and the mobile entry point).
#[cfg_attr(mobile, tauri::mobile_entry_point)]
pub fn run() {
    let logs = tracing_subscriber::fmt().with_env_filter(
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "greenlight=info,greenlight_app=info,greenlight_core=info".into()),
    );
    // Android drops a process's stderr: logs go to logcat (`adb logcat -s
    // greenlight`), with the same filter. Elsewhere stderr, which iOS shows
    // in the Xcode console (os_log is not used).
    #[cfg(target_os = "android")]
    let _ = logs
        .with_ansi(false)
        .with_writer(paranoid_android::AndroidLogMakeWriter::new(
            "greenlight".into(),
        ))
        .try_init();
    #[cfg(not(target_os = "android"))]
    let _ = logs.with_writer(std::io::stderr).try_init();
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
    builder = builder.plugin(tauri_plugin_dialog::init());
    builder = builder.plugin(tauri_plugin_fs::init());
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
            // Desktops do not tell the app they slept: the detector
            // notices from the clocks (phones send `RunEvent::Resumed`).
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(
                greenlight_core::resume::ResumeDetector::new().run(move |_| catch_up(&handle)),
            );
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
        // Phones: back in the foreground after the OS suspended the app.
        // (On desktops the event loop sends one at launch, and sleeps are
        // found by the detector instead.) The first one on a phone is the
        // launch too, when the engine has only just started.
        tauri::RunEvent::Resumed if cfg!(mobile) && LAUNCHED.swap(true, Ordering::SeqCst) => {
            catch_up(app)
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
