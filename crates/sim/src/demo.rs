//! The demo fleet: what `greenlight demo` and the app's "Try the demo
//! fleet" show, started in one place for both (`greenlight-sim demo`).
//!
//! Six ESP RainMaker devices on an embedded broker (the [`Scenario::Demo`]
//! mix: updates waiting, one offline, one cloud-approval job) and a Blynk
//! server with three devices, one of whose flash always fails, so the demo
//! shows a reboot loop being caught. The app and the CLI run it as a
//! separate process and read [`DemoInfo`] from its one ready line: the
//! simulators stay out of the product binaries.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::blynk::{BlynkConfig, BlynkSim, BlynkTiming, DeviceBehaviour};
use crate::rainmaker::{BrokerChoice, RainmakerSim, Scenario, SimConfig, Timing};

/// Name of the sample Blynk firmware file the demo writes.
pub const FIRMWARE_FILE: &str = "demo-firmware-2.0.bin";

/// How to reach the demo fleet: the ready line of `greenlight-sim demo`.
/// Field names are a contract with `greenlight_core::demo`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoInfo {
    /// REST base URL of the RainMaker cloud.
    pub http: String,
    /// Its broker, `mqtt://127.0.0.1:PORT` (embedded: no `$` topics).
    pub mqtt: String,
    /// The demo user's email.
    pub user: String,
    /// The demo user's password (throw-away).
    pub password: String,
    /// Blynk admin API base, `https://IP:PORT`.
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

/// A running demo fleet.
pub struct Demo {
    /// How to reach it.
    pub info: DemoInfo,
    rainmaker: RainmakerSim,
    blynk: Arc<BlynkSim>,
}

impl Demo {
    /// Starts both simulators on loopback and writes the sample firmware
    /// into `dir` (created if needed).
    pub async fn start(timing: Timing, dir: &Path) -> anyhow::Result<Demo> {
        let rainmaker = RainmakerSim::start(SimConfig {
            broker: BrokerChoice::Embedded("127.0.0.1:0".parse()?),
            scenario: Scenario::Demo,
            timing,
            ..SimConfig::default()
        })
        .await?;
        let blynk = Arc::new(
            BlynkSim::start(BlynkConfig {
                devices: vec![
                    DeviceBehaviour::Normal,
                    DeviceBehaviour::Normal,
                    DeviceBehaviour::FlashFails,
                ],
                timing: BlynkTiming::fast(),
                ..BlynkConfig::default()
            })
            .await?,
        );
        power_cycle(Arc::downgrade(&blynk));
        std::fs::create_dir_all(dir)?;
        let firmware = dir.join(FIRMWARE_FILE);
        std::fs::write(
            &firmware,
            crate::blynk::firmware::make_firmware("Nov 23 2026 09:00:00", 180_000),
        )?;
        let ready = &blynk.ready;
        let info = DemoInfo {
            http: rainmaker.info.http.clone(),
            mqtt: rainmaker.info.mqtt.clone(),
            user: rainmaker.info.user.clone(),
            password: rainmaker.info.password.clone(),
            blynk_admin: ready.admin.clone(),
            blynk_user: ready.admin_user.clone(),
            blynk_password: ready.admin_password.clone(),
            blynk_fingerprint: ready.fingerprint.clone(),
            firmware,
        };
        Ok(Demo {
            info,
            rainmaker,
            blynk,
        })
    }

    /// The ready line: [`DemoInfo`] as one line of JSON.
    pub fn ready_line(&self) -> String {
        serde_json::to_string(&self.info).unwrap_or_default()
    }

    /// Stops both simulators (the embedded broker's thread stays: the
    /// process exits after this).
    pub async fn shutdown(self) {
        self.rainmaker.shutdown().await;
        if let Ok(b) = Arc::try_unwrap(self.blynk) {
            b.shutdown().await;
        }
    }
}

/// A Blynk server sends an update only when a device logs in again, and the
/// demo's devices would otherwise stay connected forever. Real ones drop off
/// Wi-Fi and reboot now and then; the demo's do so every 4 s or so, one at
/// a time, so a started update reaches them within the demo's attention span.
fn power_cycle(sim: Weak<BlynkSim>) {
    tokio::spawn(async move {
        let mut turn = 0usize;
        loop {
            tokio::time::sleep(Duration::from_secs(4)).await;
            let Some(sim) = sim.upgrade() else { return };
            let tokens = sim.ready.tokens.clone();
            if tokens.is_empty() {
                return;
            }
            let token = &tokens[turn % tokens.len()];
            turn += 1;
            sim.set_online(token, false);
            tokio::time::sleep(Duration::from_millis(500)).await;
            sim.set_online(token, true);
        }
    });
}
