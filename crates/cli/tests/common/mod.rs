//! What the `greenlight` binary's tests share: running it on a data
//! directory with a private Secret Service, reading its output, and the
//! demo fleet on a fresh mosquitto.

#![allow(dead_code)] // each test binary uses its own part

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use greenlight_sim::rainmaker::{BrokerChoice, RainmakerSim, Scenario, SimConfig, Timing};
use greenlight_tests::{Mosquitto, SecretService};
use serde_json::Value;

/// A private Secret Service; under CI a missing one fails the test.
pub fn keyring() -> SecretService {
    SecretService::start().unwrap_or_else(|| {
        panic!(
            "no Secret Service could be started (dbus-daemon, gnome-keyring): run scripts/deps.sh"
        )
    })
}

/// The demo fleet on `mosq`, at the fast pace.
pub async fn demo_sim(mosq: &Mosquitto) -> RainmakerSim {
    RainmakerSim::start(SimConfig {
        broker: BrokerChoice::External(mosq.url()),
        scenario: Scenario::Demo,
        timing: Timing::fast(),
        ..SimConfig::default()
    })
    .await
    .expect("simulator")
}

/// The binary on `data`, with the keyring's environment, not yet started.
pub fn command(keyring: &SecretService, data: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_greenlight"));
    c.arg("--data-dir")
        .arg(data)
        .args(args)
        .envs(keyring.envs())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::piped());
    c
}

/// Runs the binary to its end, `stdin` written to it.
pub fn greenlight(
    keyring: &SecretService,
    data: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    let mut child = command(keyring, data, args)
        .spawn()
        .expect("spawn greenlight");
    if let Some(mut i) = child.stdin.take() {
        if let Some(s) = stdin {
            i.write_all(s.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

/// Adds the simulator's account as `home` (password on stdin).
pub fn add_account(keyring: &SecretService, data: &Path, sim: &RainmakerSim) {
    let pw = format!("{}\n", sim.info.password);
    let o = greenlight(
        keyring,
        data,
        &[
            "account",
            "add",
            "rainmaker",
            "--name",
            "home",
            "--url",
            &sim.info.http,
            "--user",
            &sim.info.user,
            "--mqtt-url",
            &sim.info.mqtt,
            "--password-stdin",
        ],
        Some(&pw),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// The output as JSON, or a panic showing both streams.
pub fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// Both streams, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
