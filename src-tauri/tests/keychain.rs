//! The app keeps an account's password in a real Secret Service (a private
//! gnome-keyring on a private D-Bus) and nowhere in its data directory.
//! Its own test binary: it points this process's D-Bus environment at the
//! private keychain.

mod common;

use std::path::Path;

use greenlight_core::{KeyringSecretStore, SecretStore};
use greenlight_sim::rainmaker::{BrokerChoice, RainmakerSim, Scenario, SimConfig, Timing};
use greenlight_tests::{missing_prerequisite, SecretService};
use serde_json::json;

/// No file of the data directory holds `password`.
fn assert_not_on_disk(dir: &Path, password: &str) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        let hay = String::from_utf8_lossy(&bytes);
        assert!(
            !hay.contains(password),
            "{} holds the password",
            entry.path().display()
        );
    }
}

#[test]
fn the_password_goes_to_the_keychain_and_not_to_disk() {
    // It needs a real Secret Service: dbus-daemon and gnome-keyring-daemon
    // (scripts/deps.sh installs both). Under CI=true their absence fails it.
    let Some(keyring) = SecretService::start() else {
        missing_prerequisite(
            "the_password_goes_to_the_keychain_and_not_to_disk",
            "no Secret Service could be started (dbus-daemon, gnome-keyring-daemon): run scripts/deps.sh",
        );
        return;
    };
    for (k, v) in keyring.envs() {
        // SAFETY: set before any other thread of this test binary reads the environment.
        unsafe { std::env::set_var(k, v) };
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let password = "correct horse battery staple 7731";
    let sim = rt
        .block_on(RainmakerSim::start(SimConfig {
            broker: BrokerChoice::Embedded("127.0.0.1:0".parse().unwrap()),
            scenario: Scenario::Plain,
            nodes: 2,
            password: Some(password.into()),
            timing: Timing::fast(),
            ..SimConfig::default()
        }))
        .expect("sim");
    let dir = std::env::temp_dir().join(format!("greenlight-app-keychain-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let t = common::start(common::options(&dir, false));
    let status = t.call("app_status", json!({})).unwrap();
    assert_eq!(status["keychain"]["state"], "available", "{status}");

    let n = t
        .call(
            "add_rainmaker_account",
            json!({ "input": { "name": "home", "url": sim.info.http, "user": sim.info.user,
                               "password": password, "mqtt_url": null, "trust_fingerprint": null } }),
        )
        .expect("account added");
    assert_eq!(n, json!(2));

    let store = KeyringSecretStore::open().expect("keychain");
    assert_eq!(
        store.get("home", "password").unwrap().as_deref(),
        Some(password)
    );

    // Nothing in the data directory holds the password: once a sweep asked
    // for after the account was added has been applied (the engine writes
    // in order, so what adding the account stored is on disk by then)...
    t.call("refresh", json!({})).expect("a sweep");
    assert_not_on_disk(&dir, password);

    t.call("remove_account", json!({ "name": "home" })).unwrap();
    assert_eq!(
        store.get("home", "password").unwrap(),
        None,
        "removed with the account"
    );
    // ...nor once the app has stopped its engines, as it does on exit.
    let state = tauri::Manager::state::<greenlight_app::AppState>(&t.app);
    tauri::async_runtime::block_on(state.shutdown());
    assert_not_on_disk(&dir, password);
    drop(t);
    rt.block_on(sim.shutdown());
}
