//! One engine per data directory (issue 13), with the real binary: while
//! `greenlight watch` runs on an MQTT-only account, every other command is
//! its client and sees what the daemon heard (offers, online state); an
//! approval made by a command is carried out by the daemon; `status` says
//! who owns the directory; a daemon killed with SIGKILL leaves nothing that
//! blocks the next command, and the next daemon shows what the killed one
//! heard at once, before any device reports again.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::time::{Duration, Instant};

use common::*;
use greenlight_tests::{Mosquitto, SecretService};

const PLUG: &str = "7CDFA1000001";

/// Polls `f` every 200 ms until it returns `Some`, for at most `limit`.
fn until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_clients_of_the_daemon_and_a_killed_daemon_blocks_nothing() {
    let keyring = keyring();
    let mosq = Mosquitto::start();
    let data = std::env::temp_dir().join(format!("greenlight-owner-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);

    // MQTT only: what the engine knows is what it heard.
    add_mqtt_account(&keyring, &data, &mosq);
    let o = greenlight(&keyring, &data, &["status"], None);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Nobody runs the engine"),
        "{}",
        text(&o)
    );

    // Nothing heard yet is not "no updates": the command says why.
    let o = greenlight(&keyring, &data, &["nodes"], None);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no device has reported on lan's broker yet"),
        "{}",
        text(&o)
    );

    let (daemon, seen_rx) = start_daemon(&keyring, &data);
    let sim = devices_power_up(&keyring, &data, &mosq).await;

    // Ask the devices to check (through the daemon), then the daemon's
    // offers are every command's offers.
    let o = greenlight(&keyring, &data, &["--json", "pending", "--check"], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let pending = until(
        "the plug's offer, as the daemon heard it",
        Duration::from_secs(60),
        || {
            // Asked again each round: a device the daemon had not heard of
            // yet at the last round was not asked then.
            let o = greenlight(&keyring, &data, &["--json", "pending", "--check"], None);
            let v = json_of(&o);
            let list = v["pending"].as_array().or(v.as_array()).cloned()?;
            list.iter().any(|p| p["node_id"] == PLUG).then_some(list)
        },
    );
    assert!(!pending.is_empty());
    let o = greenlight(&keyring, &data, &["--json", "nodes"], None);
    let nodes = json_of(&o)["nodes"].as_array().cloned().unwrap_or_default();
    let plug = nodes
        .iter()
        .find(|n| n["node_id"] == PLUG)
        .expect("the plug is listed");
    assert_eq!(
        plug["online"], true,
        "online, as the daemon knows it: {plug}"
    );

    // An approval by a command is carried out by the daemon, once.
    let o = greenlight(&keyring, &data, &["--json", "approve", PLUG], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    until(
        "the daemon to report the plug's success",
        Duration::from_secs(60),
        || {
            while let Ok(line) = seen_rx.try_recv() {
                if line.contains(PLUG) && line.contains("\"success\"") {
                    return Some(());
                }
            }
            None
        },
    );
    assert_eq!(
        sim.fleet.node(PLUG).unwrap().starts_received,
        1,
        "one start, by one engine"
    );

    // SIGKILL: the lock goes with the process; the socket file stays behind
    // and is not mistaken for an owner.
    drop(daemon);
    let o = greenlight(&keyring, &data, &["status"], None);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Nobody runs the engine"),
        "{}",
        text(&o)
    );
    let o = greenlight(&keyring, &data, &["--json", "history"], None);
    assert_eq!(
        o.status.code(),
        Some(0),
        "a command runs its own engine again: {}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(PLUG),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(&data);
    sim.shutdown().await;
}

/// An MQTT-only account on `mosq`: what the engine knows is what it heard.
fn add_mqtt_account(keyring: &SecretService, data: &std::path::Path, mosq: &Mosquitto) {
    let o = greenlight(
        keyring,
        data,
        &[
            "account",
            "add",
            "mqtt",
            "--name",
            "lan",
            "--mqtt-url",
            &mosq.url(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// The demo fleet, switched on once the daemon listens to the broker.
/// Devices announce themselves once, at boot, not retained (rainmaker.md,
/// "MQTT-only deployments"), so a fleet that booted before the daemon
/// subscribed stays unknown to it until each device reports again: this is
/// a fleet powering up beside a running daemon.
async fn devices_power_up(
    keyring: &SecretService,
    data: &std::path::Path,
    mosq: &Mosquitto,
) -> greenlight_sim::rainmaker::RainmakerSim {
    until(
        "the daemon to be connected to the broker",
        Duration::from_secs(30),
        || {
            let o = greenlight(keyring, data, &["--json", "account", "list"], None);
            (json_of(&o)[0]["state"]["state"] == "connected").then_some(())
        },
    );
    demo_sim(mosq).await
}

/// Starts `greenlight watch` and waits until `status` names it.
fn start_daemon(
    keyring: &SecretService,
    data: &std::path::Path,
) -> (Daemon, std::sync::mpsc::Receiver<String>) {
    let mut child = command(keyring, data, &["--json", "watch"])
        .spawn()
        .expect("watch");
    let stdout = child.stdout.take().expect("stdout");
    // Its log, drained as journald would (a full pipe would stall the
    // daemon) and shown when a test fails.
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("daemon: {line}");
        }
    });
    let daemon = Daemon(child);
    let (seen_tx, seen_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = seen_tx.send(line);
        }
    });
    let pid = daemon.0.id();
    until("status to name the daemon", Duration::from_secs(30), || {
        let o = greenlight(keyring, data, &["--json", "status"], None);
        let v = json_of(&o);
        (v["owner"]["kind"] == "daemon" && v["owner"]["pid"] == pid).then_some(())
    });
    (daemon, seen_rx)
}

fn list(o: &std::process::Output, key: &str) -> Vec<serde_json::Value> {
    let v = json_of(o);
    v[key]
        .as_array()
        .or(v.as_array())
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_started_after_a_kill_shows_what_the_last_one_heard_at_once() {
    let keyring = keyring();
    let mosq = Mosquitto::start();
    let data = std::env::temp_dir().join(format!("greenlight-owner-heard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    add_mqtt_account(&keyring, &data, &mosq);

    let (daemon, _events) = start_daemon(&keyring, &data);
    let sim = devices_power_up(&keyring, &data, &mosq).await;
    let o = greenlight(&keyring, &data, &["--json", "pending", "--check"], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let heard = until("the plug's offer", Duration::from_secs(60), || {
        let l = list(
            &greenlight(&keyring, &data, &["--json", "pending", "--check"], None),
            "pending",
        );
        l.iter().any(|p| p["node_id"] == PLUG).then_some(l)
    });
    let key = |p: &serde_json::Value| (p["node_id"].to_string(), p["job_id"].to_string());
    let mut heard: Vec<_> = heard.iter().map(key).collect();
    heard.sort();

    // SIGKILL, and the devices and their broker go away too: nothing can
    // repeat what the first daemon heard.
    drop(daemon);
    sim.shutdown().await;
    drop(mosq);

    let (_daemon, _events) = start_daemon(&keyring, &data);
    let pending = list(
        &greenlight(&keyring, &data, &["--json", "pending"], None),
        "pending",
    );
    let mut shown: Vec<_> = pending.iter().map(key).collect();
    shown.sort();
    assert_eq!(shown, heard, "the same offers, at once: {pending:?}");
    for p in &pending {
        assert!(
            p["remembered"].is_i64(),
            "marked with when it was heard: {p}"
        );
        assert!(p["node_online"].is_null(), "nobody vouches for it now: {p}");
    }
    let nodes = list(
        &greenlight(&keyring, &data, &["--json", "nodes"], None),
        "nodes",
    );
    let plug = nodes
        .iter()
        .find(|n| n["node_id"] == PLUG)
        .expect("the plug");
    assert!(
        plug["online"].is_null(),
        "nobody vouches for it now: {plug}"
    );
    // As last heard (online, and when) until the broker is found gone;
    // then unknown, with the last time it was seen online.
    let known = &plug["known"];
    assert!(
        (known["how"] == "remembered" && known["online"] == true && known["at"].is_i64())
            || (known["how"] == "unknown" && plug["last_seen"].is_i64()),
        "{plug}"
    );
    // The words a person reads say the same.
    let o = greenlight(&keyring, &data, &["pending"], None);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("not confirmed since"),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(&data);
}
