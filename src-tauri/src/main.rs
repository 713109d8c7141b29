// The desktop binary; Android and iOS enter through `greenlight_app::run`.
// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    greenlight_app::run()
}
