//! The binary's contract, which other tools depend on: one JSON ready line on
//! stdout, logs on stderr, exit 0 within two seconds of SIGTERM/SIGINT.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run_and_stop(args: &[&str], signal: &str) -> serde_json::Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_greenlight-sim"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn greenlight-sim");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).expect("ready line");
    let ready: serde_json::Value = serde_json::from_str(line.trim())
        .unwrap_or_else(|e| panic!("ready line is not JSON ({e}): {line:?}"));
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let t = Instant::now();
    loop {
        if let Some(code) = child.try_wait().unwrap() {
            assert_eq!(code.code(), Some(0), "exit status after SIG{signal}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "did not exit within 2 s of SIG{signal}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(
        rest.trim().is_empty(),
        "exactly one line on stdout, also got {rest:?}"
    );
    ready
}

#[test]
fn ready_line_and_clean_exit_on_sigterm() {
    let r = run_and_stop(
        &[
            "rainmaker",
            "--http",
            "127.0.0.1:0",
            "--embedded-broker",
            "127.0.0.1:0",
            "--scenario",
            "demo",
            "--speed",
            "fast",
        ],
        "TERM",
    );
    for k in ["http", "mqtt", "user", "password", "admin_token"] {
        assert!(r[k].as_str().is_some_and(|s| !s.is_empty()), "{k} in {r}");
    }
    assert!(r["http"].as_str().unwrap().starts_with("http://127.0.0.1:"));
    assert!(r["mqtt"].as_str().unwrap().starts_with("mqtt://127.0.0.1:"));
    assert_eq!(r["nodes"].as_array().unwrap().len(), 6);
    assert!(r.get("fingerprint").is_none());
}

#[test]
fn https_ready_line_has_fingerprint_and_sigint_exits() {
    let r = run_and_stop(
        &[
            "rainmaker",
            "--https",
            "--embedded-broker",
            "127.0.0.1:0",
            "--nodes",
            "3",
            "--user",
            "me@example.com",
            "--password",
            "pw123",
            "--speed",
            "fast",
        ],
        "INT",
    );
    assert!(r["http"]
        .as_str()
        .unwrap()
        .starts_with("https://127.0.0.1:"));
    let fp = r["fingerprint"].as_str().unwrap();
    assert_eq!(fp.len(), 64);
    assert!(fp.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(
        (r["user"].as_str(), r["password"].as_str()),
        (Some("me@example.com"), Some("pw123"))
    );
    assert_eq!(r["nodes"].as_array().unwrap().len(), 3);
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_greenlight-sim"))
        .args(["rainmaker"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--embedded-broker"));
}
