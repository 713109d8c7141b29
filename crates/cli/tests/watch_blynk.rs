//! `greenlight watch` follows Blynk campaigns (issue 13): with the real
//! binary, the Blynk simulator and a private Secret Service, a campaign
//! started by another process (`greenlight blynk start`, which polls only
//! when asked and exits) is followed by the daemon on its own timer — its
//! devices' states reach the daemon's output and the store — without
//! anything ever asking for a refresh (no `blynk status`, no `--follow`).
//! Every wait is bounded and ends on a positive signal.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use common::*;
use greenlight_sim::blynk::{make_firmware, BlynkConfig, BlynkSim, BlynkTiming, DeviceBehaviour};
use greenlight_tests::eventually;
use serde_json::Value;

/// The tracker polls every 10 s; devices reboot in well under a second.
const WAIT: Duration = Duration::from_secs(90);
const NEW_BUILD: &str = "Sep 21 2017 11:02:33";

/// The daemon, killed when the test ends (or fails).
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Takes a simulated device off the network and back: a fresh login, on
/// which the server sends it the campaign's firmware
/// ([`greenlight_tests::blynk_bounce`]).
async fn bounce(sim: &BlynkSim, token: &str) {
    greenlight_tests::blynk_bounce(sim, token, WAIT).await;
}

/// The daemon's `blynk_event` lines heard so far, added to `seen`.
fn drain(lines: &Receiver<String>, seen: &mut Vec<Value>) {
    while let Ok(line) = lines.try_recv() {
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            if v.get("blynk_event").is_some() {
                assert!(v["at"].is_i64(), "stamped: {v}");
                seen.push(v["blynk_event"].clone());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_follows_a_campaign_started_by_another_process() {
    let keyring = keyring();
    let sim = BlynkSim::start(BlynkConfig {
        devices: vec![DeviceBehaviour::Normal; 2],
        timing: BlynkTiming::fast(),
        ..BlynkConfig::default()
    })
    .await
    .expect("simulator starts");
    let dir = std::env::temp_dir().join(format!("greenlight-watch-blynk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data");

    let o = greenlight(
        &keyring,
        &data,
        &[
            "blynk",
            "account",
            "add",
            "--name",
            "home",
            "--url",
            &sim.ready.admin,
            "--user",
            &sim.ready.admin_user,
            "--password-stdin",
            "--trust-fingerprint",
            &sim.ready.fingerprint,
        ],
        Some(&format!("{}\n", sim.ready.admin_password)),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // The daemon: owner of the directory, its output read line by line.
    let mut child = command(&keyring, &data, &["--json", "watch"])
        .spawn()
        .expect("watch");
    let stdout = child.stdout.take().expect("stdout");
    let daemon = Daemon(child);
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let pid = daemon.0.id();
    eventually(WAIT, "status to name the daemon", || async {
        let o = greenlight(&keyring, &data, &["--json", "status"], None);
        let v = json_of(&o);
        (v["owner"]["kind"] == "daemon" && v["owner"]["pid"] == pid).then_some(())
    })
    .await;

    // Another process starts a campaign for every device and exits.
    let fw = dir.join("fw.bin");
    std::fs::write(&fw, make_firmware(NEW_BUILD, 64 * 1024)).unwrap();
    let o = greenlight(
        &keyring,
        &data,
        &[
            "--json",
            "blynk",
            "start",
            "--account",
            "home",
            "--firmware",
            &fw.to_string_lossy(),
            "--all",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let campaign = json_of(&o)["campaign"].clone();
    let id = campaign["id"].as_i64().expect("a campaign id");
    let devices = campaign["devices"].as_array().cloned().unwrap_or_default();
    assert_eq!(devices.len(), 2, "{campaign}");
    assert!(
        devices.iter().all(|d| d["state"]["state"] == "waiting"),
        "a campaign reaches devices at their next login: {campaign}"
    );

    // The devices log in again and install it; only the daemon is there
    // to see it.
    for t in &sim.ready.tokens {
        bounce(&sim, t).await;
    }
    let mut seen = vec![];
    eventually(
        WAIT,
        "the daemon to report every device updated and the campaign completed",
        || {
            drain(&lines, &mut seen);
            let updated = seen
                .iter()
                .filter(|e| {
                    e["type"] == "device_changed"
                        && e["campaign_id"] == id
                        && e["device"]["state"]["state"] == "updated"
                })
                .filter_map(|e| e["device"]["key"].as_str())
                .collect::<std::collections::HashSet<_>>()
                .len();
            let completed = seen.iter().any(|e| {
                e["type"] == "campaign_changed"
                    && e["campaign"]["id"] == id
                    && e["campaign"]["status"]["status"] == "completed"
            });
            let settled = seen
                .iter()
                .any(|e| e["type"] == "campaign_settled" && e["campaign"]["id"] == id);
            std::future::ready((updated == 2 && completed && settled).then_some(()))
        },
    )
    .await;

    // What the daemon saw is in the store: `history` reads it (it asks the
    // server nothing).
    let o = greenlight(&keyring, &data, &["--json", "blynk", "history"], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json_of(&o);
    let c = v["campaigns"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("campaign {id} in history: {v}"));
    assert_eq!(c["status"]["status"], "completed", "{c}");
    assert!(
        c["devices"].as_array().is_some_and(|ds| ds.len() == 2
            && ds
                .iter()
                .all(|d| d["state"]["state"] == "updated" && d["build_now"] == NEW_BUILD)),
        "{c}"
    );

    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}
