//! The tray icon: the number of pending updates in its title and tooltip,
//! and a menu (Open, Approve all pending…, Pause notifications, Quit). The
//! same number is the app's badge where the platform has one. On mobile
//! there is no tray: the badge is the only count outside the app.

use tauri::{AppHandle, Runtime};

/// The tray icon's id.
pub const TRAY_ID: &str = "main";

/// Shows the pending count on the tray (title next to the icon where the
/// desktop shows one, and the tooltip) and as the app's badge.
pub fn set_count<R: Runtime>(app: &AppHandle<R>, n: usize) {
    set_badge(app, n);
    #[cfg(desktop)]
    if let Some(tray) = app.tray_by_id(TRAY_ID) {
        let tip = match n {
            0 => "Greenlight: everything is up to date".to_string(),
            1 => "Greenlight: 1 update waiting".to_string(),
            n => format!("Greenlight: {n} updates waiting"),
        };
        let _ = tray.set_tooltip(Some(&tip));
        let _ = tray.set_title(if n == 0 { None } else { Some(n.to_string()) });
    }
    #[cfg(not(desktop))]
    let _ = (app, n);
}

/// The count as the app's badge: the Dock on macOS, the home-screen icon
/// on iOS, the launcher on Linux desktops that read Unity's launcher API
/// (GNOME's dock, KDE, Plank), an overlay dot on the Windows taskbar button
/// (Windows has no numeric badge). Android has none through Tauri: its
/// launchers draw a dot from the app's notifications instead.
fn set_badge<R: Runtime>(app: &AppHandle<R>, n: usize) {
    use tauri::Manager;
    let Some(w) = app.get_webview_window("main") else {
        return;
    };
    if cfg!(target_os = "windows") {
        #[cfg(target_os = "windows")]
        {
            let icon = if n == 0 {
                None
            } else {
                tauri::image::Image::from_bytes(include_bytes!("../../icons/overlay.png")).ok()
            };
            if let Err(e) = w.set_overlay_icon(icon) {
                tracing::debug!(error = %e, "no taskbar overlay");
            }
        }
    } else if !cfg!(target_os = "android") {
        let count = if n == 0 { None } else { Some(n as i64) };
        if let Err(e) = w.set_badge_count(count) {
            // Desktops without a launcher API: the tray shows the count.
            tracing::debug!(error = %e, "no app badge");
        }
    }
}

/// Ticks or unticks "Pause notifications" in the tray menu.
pub fn reflect_paused<R: Runtime>(app: &AppHandle<R>, paused: bool) {
    #[cfg(desktop)]
    {
        use tauri::Manager;
        if let Some(item) = app.try_state::<desktop::PauseItem<R>>() {
            let _ = item.0.set_checked(paused);
        }
    }
    #[cfg(not(desktop))]
    let _ = (app, paused);
}

/// Brings the main window up.
pub fn show_window<R: Runtime>(app: &AppHandle<R>) {
    use tauri::Manager;
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.unminimize();
        let _ = w.show();
        let _ = w.set_focus();
    }
}

#[cfg(desktop)]
pub use desktop::create;

#[cfg(desktop)]
mod desktop {
    use tauri::menu::{CheckMenuItem, Menu, MenuItem, PredefinedMenuItem};
    use tauri::tray::{MouseButton, MouseButtonState, TrayIconBuilder, TrayIconEvent};
    use tauri::{AppHandle, Manager, Runtime};
    use tauri_specta::Event as _;

    use crate::events::{TrayAction, TrayRequest};
    use crate::state::AppState;

    /// The menu's pause item, kept to tick it from a command.
    pub struct PauseItem<R: Runtime>(pub CheckMenuItem<R>);

    /// Creates the tray icon and its menu.
    pub fn create<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<()> {
        let open = MenuItem::with_id(app, "open", "Open Greenlight", true, None::<&str>)?;
        let approve = MenuItem::with_id(
            app,
            "approve_all",
            "Approve all pending…",
            true,
            None::<&str>,
        )?;
        let pause = CheckMenuItem::with_id(
            app,
            "pause",
            "Pause notifications",
            true,
            false,
            None::<&str>,
        )?;
        let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
        let sep = PredefinedMenuItem::separator(app)?;
        let menu = Menu::with_items(app, &[&open, &approve, &pause, &sep, &quit])?;
        app.manage(PauseItem(pause.clone()));
        let icon = tauri::image::Image::from_bytes(include_bytes!("../../icons/tray.png"))?;
        TrayIconBuilder::with_id(super::TRAY_ID)
            .icon(icon)
            .tooltip("Greenlight")
            .menu(&menu)
            .show_menu_on_left_click(false)
            .on_menu_event(move |app, event| match event.id().as_ref() {
                "open" => super::show_window(app),
                "approve_all" => {
                    // Approving every device is not done blind from a menu:
                    // the window shows what would be approved and asks.
                    super::show_window(app);
                    let _ = TrayRequest {
                        action: TrayAction::ApproveAll,
                    }
                    .emit(app);
                }
                "pause" => {
                    // Kept by the engine, so `greenlight watch` follows it.
                    let app = app.clone();
                    tauri::async_runtime::spawn(async move {
                        if let Some(state) = app.try_state::<AppState>() {
                            let paused = !state.notifier.lock().map(|n| n.paused).unwrap_or(false);
                            if let Err(e) = crate::notify::set_paused(&state, paused).await {
                                tracing::warn!(error = %e, "could not pause notifications");
                                super::reflect_paused(&app, !paused);
                            }
                        }
                        // The window shows the setting too: have it reload.
                        crate::events::reload_window(&app).await;
                    });
                }
                "quit" => app.exit(0),
                _ => {}
            })
            .on_tray_icon_event(|tray, event| {
                if let TrayIconEvent::Click {
                    button: MouseButton::Left,
                    button_state: MouseButtonState::Up,
                    ..
                } = event
                {
                    super::show_window(tray.app_handle());
                }
            })
            .build(app)?;
        Ok(())
    }
}
