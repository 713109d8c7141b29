//! The `blynk` subcommand's contract, which other tools depend on: one JSON
//! ready line on stdout (only once every simulated device has logged in),
//! exit 0 within two seconds of SIGTERM.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn ready_line_and_clean_exit_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_greenlight-sim"))
        .args([
            "blynk",
            "--admin",
            "127.0.0.1:0",
            "--hardware",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--devices",
            "3",
            "--external-devices",
            "2",
            "--flash-fails",
            "1",
            "--speed",
            "fast",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn greenlight-sim");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("ready line");
    let r: serde_json::Value = serde_json::from_str(line.trim())
        .unwrap_or_else(|e| panic!("ready line is not JSON ({e}): {line:?}"));

    let s = |k: &str| {
        r[k].as_str()
            .unwrap_or_else(|| panic!("{k} in {r}"))
            .to_string()
    };
    assert!(s("admin").starts_with("https://127.0.0.1:"), "{r}");
    assert!(s("http").starts_with("http://127.0.0.1:"), "{r}");
    assert!(s("hardware").starts_with("127.0.0.1:"), "{r}");
    assert_eq!(s("admin_user"), "admin@blynk.cc");
    assert!(!s("admin_password").is_empty());
    let fp = s("fingerprint");
    assert_eq!(fp.len(), 64);
    assert!(fp
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(r["users"].as_array().map(Vec::len), Some(2));
    let tokens = r["tokens"].as_array().expect("tokens");
    assert_eq!(tokens.len(), 3);
    assert_eq!(r["external_tokens"].as_array().map(Vec::len), Some(2));
    for t in tokens
        .iter()
        .chain(r["external_tokens"].as_array().unwrap())
    {
        let t = t.as_str().unwrap();
        assert_eq!(t.len(), 32);
        assert!(t.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    // The hardware port is up and speaks the protocol: a login with a
    // registered token gets RESPONSE 200.
    let mut hw = std::net::TcpStream::connect(s("hardware")).expect("hardware port");
    hw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let ext = r["external_tokens"][0].as_str().unwrap();
    let mut frame = vec![29u8, 0, 1, 0, ext.len() as u8];
    frame.extend_from_slice(ext.as_bytes());
    std::io::Write::write_all(&mut hw, &frame).unwrap();
    let mut resp = [0u8; 5];
    hw.read_exact(&mut resp).expect("login response");
    assert_eq!(resp, [0, 0, 1, 0, 200]);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let t = Instant::now();
    loop {
        if let Some(code) = child.try_wait().unwrap() {
            assert_eq!(code.code(), Some(0), "exit status after SIGTERM");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "did not exit within 2 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(
        rest.trim().is_empty(),
        "exactly one line on stdout, also got {rest:?}"
    );
}

#[test]
fn more_failing_devices_than_devices_is_an_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_greenlight-sim"))
        .args(["blynk", "--devices", "1", "--flash-fails", "2"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--flash-fails"));
}
