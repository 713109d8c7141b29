//! The demo fleet, seen from the app and the CLI: finds the simulator
//! (`greenlight-sim`, installed beside them), runs `greenlight-sim demo` as a
//! child process, reads how to reach it, and sets up a throw-away engine on
//! it. The simulators are not linked into the product: a release package
//! without `greenlight-sim` simply offers no demo.
//!
//! The child stops when [`DemoProcess`] is dropped or stopped, and also by
//! itself when its standard input closes, so it never outlives the process
//! that started it, even after a crash.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use crate::blynk::BlynkAccount;
use crate::error::{Error, Result};
use crate::secrets::{MemorySecretStore, SecretStore};
use crate::{secret_keys, AccountConfig, EngineConfig};

/// The simulator's executable name.
pub const SIMULATOR: &str = if cfg!(windows) {
    "greenlight-sim.exe"
} else {
    "greenlight-sim"
};

/// The demo account's name (RainMaker), and the demo Blynk server's.
pub const ACCOUNT: &str = "demo";
/// The demo Blynk server's account name.
pub const BLYNK_ACCOUNT: &str = "demo-blynk";

/// How fast the demo devices move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoSpeed {
    /// Downloads take a few seconds: something to watch.
    Demo,
    /// Everything within a second or two (tests).
    Fast,
}

impl DemoSpeed {
    /// `GREENLIGHT_DEMO_SPEED=fast` (the end-to-end tests), else the
    /// demo's own pace: one rule for the app and the CLI.
    pub fn from_env() -> DemoSpeed {
        match std::env::var("GREENLIGHT_DEMO_SPEED").as_deref() {
            Ok("fast") => DemoSpeed::Fast,
            _ => DemoSpeed::Demo,
        }
    }

    fn arg(self) -> &'static str {
        match self {
            DemoSpeed::Demo => "demo",
            DemoSpeed::Fast => "fast",
        }
    }
}

/// How to reach a running demo fleet: the ready line of
/// `greenlight-sim demo` (`greenlight_sim::demo::DemoInfo`).
#[derive(Debug, Clone, Deserialize)]
pub struct DemoInfo {
    /// REST base URL of the RainMaker cloud.
    pub http: String,
    /// Its broker URL.
    pub mqtt: String,
    /// The demo user's email.
    pub user: String,
    /// The demo user's password (throw-away).
    pub password: String,
    /// Blynk admin API base.
    pub blynk_admin: String,
    /// Blynk super-admin email.
    pub blynk_user: String,
    /// Blynk super-admin password (throw-away).
    pub blynk_password: String,
    /// SHA-256 of the Blynk admin certificate, lowercase hex.
    pub blynk_fingerprint: String,
    /// A sample Blynk firmware file to upload.
    pub firmware: PathBuf,
}

/// Where the simulator is: `GREENLIGHT_SIM`, else beside this executable
/// (an installed package, `target/release`), else one directory up (a test
/// binary in `target/debug/deps`), else on `PATH`. `None`: no demo here.
pub fn find_simulator() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GREENLIGHT_SIM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok();
    let beside = exe.as_deref().and_then(Path::parent);
    let mut candidates: Vec<PathBuf> = [beside, beside.and_then(Path::parent)]
        .into_iter()
        .flatten()
        .map(|d| d.join(SIMULATOR))
        .collect();
    if let Some(p) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&p).map(|d| d.join(SIMULATOR)));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// A running `greenlight-sim demo`.
pub struct DemoProcess {
    child: Child,
    // Held open: the simulator stops when it closes.
    stdin: Option<ChildStdin>,
    info: DemoInfo,
}

impl DemoProcess {
    /// Starts the demo fleet; its sample firmware goes into `dir`. Fails
    /// with words a person can act on when the simulator is missing, does
    /// not start, or prints something else than its ready line.
    pub async fn start(speed: DemoSpeed, dir: &Path) -> Result<DemoProcess> {
        let exe = find_simulator().ok_or_else(|| {
            Error::Demo(format!(
                "the demo needs the simulator ({SIMULATOR}), which is not installed beside Greenlight or on PATH"
            ))
        })?;
        Self::start_with(&exe, speed, dir).await
    }

    /// [`DemoProcess::start`] with the simulator at `exe`.
    pub async fn start_with(exe: &Path, speed: DemoSpeed, dir: &Path) -> Result<DemoProcess> {
        let mut child = Command::new(exe)
            .arg("demo")
            .arg("--speed")
            .arg(speed.arg())
            .arg("--dir")
            .arg(dir)
            .arg("--exit-with-parent")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::Io {
                what: format!("starting the demo simulator {}", exe.display()),
                source: e,
            })?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::Demo("the simulator's output is not readable".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        // Starting two simulators and a broker takes well under a second;
        // a loaded machine gets thirty.
        let line = match tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await {
            Ok(Ok(Some(l))) => l,
            Ok(Ok(None)) => {
                let status = child.wait().await.ok();
                return Err(Error::Demo(format!(
                    "the simulator stopped before it was ready ({})",
                    status.map(|s| s.to_string()).unwrap_or_default()
                )));
            }
            Ok(Err(e)) => {
                return Err(Error::Io {
                    what: "reading the simulator's ready line".into(),
                    source: e,
                })
            }
            Err(_) => {
                return Err(Error::Demo(
                    "the simulator was not ready within 30 s".into(),
                ))
            }
        };
        let info = parse_ready(&line)?;
        // The rest of its output is not read; keep the pipe drained so a
        // chatty simulator never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(DemoProcess { child, stdin, info })
    }

    /// How to reach it.
    pub fn info(&self) -> &DemoInfo {
        &self.info
    }

    /// Stops the simulator: closes its input (it exits by itself), then
    /// kills it if it has not within two seconds.
    pub async fn stop(mut self) {
        self.stdin.take();
        if tokio::time::timeout(Duration::from_secs(2), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Reads the ready line of `greenlight-sim demo`.
pub fn parse_ready(line: &str) -> Result<DemoInfo> {
    serde_json::from_str(line.trim()).map_err(|e| {
        let shown: String = line.chars().take(120).collect();
        Error::Demo(format!(
            "the simulator printed something else than its ready line ({e}): {shown:?}"
        ))
    })
}

/// A throw-away engine set-up for the demo: its password in memory, its
/// data in `dir`, never the user's keychain or database; the user's saved
/// accounts are not loaded.
pub fn engine_config(info: &DemoInfo, dir: &Path, actor: &str) -> Result<EngineConfig> {
    let secrets = Arc::new(MemorySecretStore::default());
    secrets.set(ACCOUNT, secret_keys::PASSWORD, &info.password)?;
    let mut cfg = EngineConfig::new(dir, secrets, actor);
    cfg.load_saved_accounts = false;
    cfg.cloud_check_interval = Duration::from_secs(30);
    Ok(cfg)
}

/// The demo's RainMaker account: its cloud and its embedded broker.
pub fn account(info: &DemoInfo) -> AccountConfig {
    let mut account = AccountConfig::rest(ACCOUNT, &info.http, &info.user).with_mqtt(&info.mqtt);
    if let Some(m) = account.mqtt.as_mut() {
        m.basic_ingest = false; // the embedded broker refuses `$` subscriptions
    }
    account
}

/// The demo's Blynk server (its self-signed certificate pinned) and its
/// admin password.
pub fn blynk_account(info: &DemoInfo) -> (BlynkAccount, String) {
    let mut a = BlynkAccount::new(BLYNK_ACCOUNT, &info.blynk_admin, &info.blynk_user);
    a.pinned_sha256 = Some(info.blynk_fingerprint.clone());
    (a, info.blynk_password.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_line_that_is_not_one_is_refused_in_words() {
        let e = parse_ready("Segmentation fault").unwrap_err().to_string();
        assert!(e.contains("something else than its ready line"), "{e}");
        assert!(e.contains("Segmentation fault"), "{e}");
        let e = parse_ready(&"x".repeat(10_000)).unwrap_err().to_string();
        assert!(
            e.len() < 400,
            "a huge line is not repeated whole: {}",
            e.len()
        );
    }

    #[test]
    fn the_ready_line_is_read() {
        let line =
            r#"{"http":"http://127.0.0.1:1","mqtt":"mqtt://127.0.0.1:2","user":"u","password":"p",
            "blynk_admin":"https://127.0.0.1:3","blynk_user":"a","blynk_password":"b",
            "blynk_fingerprint":"ff","firmware":"/tmp/f.bin"}"#
                .replace('\n', "");
        let info = parse_ready(&line).unwrap();
        assert_eq!(account(&info).name, ACCOUNT);
        assert!(!account(&info).mqtt.unwrap().basic_ingest);
        assert_eq!(blynk_account(&info).0.pinned_sha256.as_deref(), Some("ff"));
    }

    #[tokio::test]
    async fn a_missing_simulator_is_said_in_words() {
        let dir = std::env::temp_dir();
        let e = DemoProcess::start_with(
            Path::new("/nonexistent/greenlight-sim"),
            DemoSpeed::Fast,
            &dir,
        )
        .await
        .err()
        .expect("no such file")
        .to_string();
        assert!(e.contains("starting the demo simulator"), "{e}");
    }
}
