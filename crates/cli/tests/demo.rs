//! `greenlight demo` with the simulator as a separate process (issue 14):
//! the demo fleet runs in `greenlight-sim demo` beside the CLI, never
//! inside it, and never outlives it — not even a CLI killed with SIGKILL.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Pids whose command line mentions `needle` (the demo's own directory).
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn demo_command(
    keyring: &greenlight_tests::SecretService,
    data: &Path,
    args: &[&str],
) -> std::process::Command {
    let mut c = command(keyring, data, args);
    c.env("GREENLIGHT_SIM", greenlight_tests::sim_exe())
        .env("GREENLIGHT_DEMO_SPEED", "fast");
    c
}

#[test]
fn the_demo_approves_the_fleet_through_a_separate_simulator_that_leaves_with_it() {
    let keyring = keyring();
    let data = std::env::temp_dir().join(format!("greenlight-demo-test-{}", std::process::id()));
    let child = demo_command(
        &keyring,
        &data,
        &["--json", "demo", "--approve-all", "--exit-when-done"],
    )
    .spawn()
    .expect("greenlight demo");
    let pid = child.id();
    let o = child.wait_with_output().expect("demo runs");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json_of(&o);
    let sent: Vec<_> = v["outcomes"]
        .as_array()
        .expect("outcomes")
        .iter()
        .filter(|x| x["result"]["result"] == "sent")
        .collect();
    assert!(sent.len() >= 3, "the online devices' updates are sent: {v}");
    let jobs = v["jobs"].as_array().expect("jobs");
    assert!(
        jobs.iter().any(|j| j["state"]["state"] == "success"),
        "at least one update is followed to success: {v}"
    );
    // The simulator it started is gone with it.
    let marker = format!("greenlight-demo-{pid}");
    wait_for(
        "the demo simulator to stop",
        Duration::from_secs(10),
        || processes_mentioning(&marker).is_empty(),
    );
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn a_killed_demo_takes_its_simulator_with_it() {
    let keyring = keyring();
    let data = std::env::temp_dir().join(format!("greenlight-demo-kill-{}", std::process::id()));
    // Without --exit-when-done it watches until stopped.
    let mut child = demo_command(&keyring, &data, &["--json", "demo", "--approve-all"])
        .spawn()
        .expect("greenlight demo");
    let marker = format!("greenlight-demo-{}", child.id());
    wait_for("the demo simulator to run", Duration::from_secs(60), || {
        !processes_mentioning(&marker).is_empty()
    });
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    wait_for(
        "the orphaned simulator to notice and stop",
        Duration::from_secs(10),
        || processes_mentioning(&marker).is_empty(),
    );
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn without_the_simulator_the_demo_says_what_is_missing() {
    let keyring = keyring();
    let data = std::env::temp_dir().join(format!("greenlight-demo-none-{}", std::process::id()));
    let o = command(
        &keyring,
        &data,
        &["demo", "--approve-all", "--exit-when-done"],
    )
    .env("GREENLIGHT_SIM", "/nonexistent/greenlight-sim")
    .output()
    .expect("runs");
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("demo simulator /nonexistent/greenlight-sim"),
        "{}",
        text(&o)
    );
}
