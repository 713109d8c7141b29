//! Secrets stay in the keychain: a full run of the real `greenlight` binary
//! with known, distinctive secrets — the RainMaker password, the tokens the
//! cloud hands out, an MQTT broker password, a Blynk admin password (and what
//! is as good as it: its login hash and Basic header), Blynk device tokens —
//! at the most talkative log level, then every byte of the data directory
//! (database, WAL, shared memory, anything else) and everything the runs
//! printed is searched for them. None may appear.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use greenlight_sim::blynk::{make_firmware, BlynkConfig, BlynkSim, BlynkTiming, DeviceBehaviour};
use greenlight_sim::rainmaker::{BrokerChoice, Cloud, RainmakerSim, Scenario, SimConfig, Timing};
use greenlight_tests::{Mosquitto, SecretService};

const RM_PASSWORD: &str = "RmPw-4c1d-SECRET-9e7a";
const MQTT_PASSWORD: &str = "MqPw-77b2-SECRET-0f3d";
const BLYNK_PASSWORD: &str = "BlPw-a5e0-SECRET-31c8";

struct Run {
    keyring: SecretService,
    data: PathBuf,
    /// Everything every run printed, stdout and stderr.
    printed: Vec<u8>,
}

impl Run {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_greenlight"));
        c.arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .envs(self.keyring.envs())
            .env("GREENLIGHT_LOG", "trace")
            .env("RUST_LOG", "trace")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn keep(&mut self, o: &Output) {
        self.printed.extend_from_slice(&o.stdout);
        self.printed.extend_from_slice(&o.stderr);
    }

    /// Runs to the end (bounded: the commands used here all end by themselves).
    async fn run(&mut self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = self.cmd(args).spawn().expect("spawn greenlight");
        if let (Some(mut i), Some(s)) = (child.stdin.take(), stdin) {
            i.write_all(s.as_bytes()).unwrap();
        }
        let o = tokio::time::timeout(
            Duration::from_secs(120),
            tokio::task::spawn_blocking(move || child.wait_with_output()),
        )
        .await
        .unwrap_or_else(|_| panic!("greenlight {args:?} did not finish within 120 s"))
        .unwrap()
        .unwrap();
        self.keep(&o);
        o
    }

    /// `watch` until it has done something with the secrets, then `signal`
    /// (TERM: it stops cleanly; KILL: it leaves its write-ahead log behind,
    /// which is searched too). "Until" is a positive signal, not a pause: its
    /// banner is out (so its signal handlers are in place) and the cloud has
    /// served it a request (so it has used the stored tokens, or logged in
    /// with the stored password, and written what it swept). Without it, a
    /// slow machine would stop the watcher before it did anything, and the
    /// search for leaks below would pass for nothing.
    async fn watch_until_working(&mut self, cloud: &Cloud, signal: &str) -> Output {
        let served = || cloud.state().requests.values().sum::<u64>();
        let before = served();
        let mut child = self.cmd(&["watch"]).spawn().expect("spawn greenlight");
        // Both pipes are read as the watcher writes: at trace level a full
        // pipe would stall it, and the banner is looked for while it runs.
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            let buf = Arc::new(Mutex::new(Vec::new()));
            let sink = buf.clone();
            let reader = std::thread::spawn(move || {
                let Some(mut pipe) = pipe else { return };
                let mut chunk = [0u8; 8192];
                // Ends at end of file: when the watcher has exited.
                while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                    sink.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            });
            (buf, reader)
        };
        let (out, out_reader) = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let (err, err_reader) = drain(child.stderr.take().map(|p| Box::new(p) as _));
        // Polled (bounded): the watcher is stopped whether or not it got
        // there, and the assertion below says what it printed.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let working = loop {
            let banner = find(&err.lock().unwrap(), "greenlight: watching").is_some();
            if banner && served() > before {
                break true;
            }
            if tokio::time::Instant::now() > deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status();
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        out_reader.join().unwrap();
        err_reader.join().unwrap();
        let o = Output {
            status,
            stdout: std::mem::take(&mut *out.lock().unwrap()),
            stderr: std::mem::take(&mut *err.lock().unwrap()),
        };
        self.keep(&o);
        assert!(
            working,
            "within 60 s the watcher did not announce itself and reach the cloud: {}",
            text(&o)
        );
        o
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr (tail):\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    )
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn find(hay: &[u8], needle: &str) -> Option<usize> {
    let n = needle.as_bytes();
    hay.windows(n.len()).position(|w| w == n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_the_data_directory_database_or_logs() {
    let keyring = SecretService::start().unwrap_or_else(|| {
        panic!(
            "no Secret Service could be started (dbus-daemon, gnome-keyring): run scripts/deps.sh"
        )
    });
    let mosq = Mosquitto::start();
    let sim = RainmakerSim::start(SimConfig {
        broker: BrokerChoice::External(mosq.url()),
        scenario: Scenario::Demo,
        password: Some(RM_PASSWORD.into()),
        timing: Timing::fast(),
        ready_timeout: Duration::from_secs(60),
        ..SimConfig::default()
    })
    .await
    .expect("RainMaker simulator");
    let blynk = BlynkSim::start(BlynkConfig {
        admin_password: Some(BLYNK_PASSWORD.into()),
        devices: vec![DeviceBehaviour::Normal; 2],
        timing: BlynkTiming::fast(),
        ..BlynkConfig::default()
    })
    .await
    .expect("Blynk simulator");
    let base = std::env::temp_dir().join(format!("greenlight-secrets-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let mut r = Run {
        keyring,
        data: base.join("data"),
        printed: vec![],
    };

    // RainMaker: the account (password on stdin), a full approval run.
    let o = r
        .run(
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
            Some(&format!("{RM_PASSWORD}\n")),
        )
        .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // A broker with a user name and password.
    let o = r
        .run(
            &[
                "account",
                "add",
                "mqtt",
                "--name",
                "broker",
                "--mqtt-url",
                &mosq.url(),
                "--username",
                "watcher",
                "--password-stdin",
            ],
            Some(&format!("{MQTT_PASSWORD}\n")),
        )
        .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = r.run(&["--json", "pending", "--check"], None).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = r.run(&["--json", "approve", "--all"], None).await;
    let out: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("approve --json: {e}: {}", text(&o)));
    assert!(
        out["jobs"]
            .as_array()
            .is_some_and(|j| j.iter().any(|j| j["state"]["state"] == "success")),
        "the run approved and finished updates: {}",
        text(&o)
    );
    let o = r.watch_until_working(&sim.cloud, "TERM").await;
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("watching 2 account(s)"),
        "{}",
        text(&o)
    );
    for args in [
        &["--json", "account", "list"][..],
        &["nodes"],
        &["jobs"],
        &["history", "--csv"],
    ] {
        let o = r.run(args, None).await;
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
    }

    // Blynk: the server (admin password on stdin), an update for one device by its token.
    let o = r
        .run(
            &[
                "blynk",
                "account",
                "add",
                "--name",
                "blynk",
                "--url",
                &blynk.ready.admin,
                "--user",
                &blynk.ready.admin_user,
                "--password-stdin",
                "--trust-fingerprint",
                &blynk.ready.fingerprint,
            ],
            Some(&format!("{BLYNK_PASSWORD}\n")),
        )
        .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let fw = base.join("sketch.ino.bin");
    std::fs::write(&fw, make_firmware("Nov 23 2026 10:11:12", 48 * 1024)).unwrap();
    let token = blynk.ready.tokens[0].clone();
    let o = r
        .run(
            &[
                "--json",
                "blynk",
                "start",
                "--account",
                "blynk",
                "--firmware",
                fw.to_str().unwrap(),
                "--token",
                &token,
            ],
            None,
        )
        .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = r
        .run(
            &["--json", "blynk", "status", "--follow", "--interval", "0.2"],
            None,
        )
        .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = r.run(&["blynk", "history"], None).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // A watcher killed in its stride leaves the WAL and shared memory files.
    r.watch_until_working(&sim.cloud, "KILL").await;

    // The secrets, and what is as good as them.
    let mut secrets: Vec<(String, String)> = vec![
        ("RainMaker password".into(), RM_PASSWORD.into()),
        ("MQTT password".into(), MQTT_PASSWORD.into()),
        ("Blynk admin password".into(), BLYNK_PASSWORD.into()),
        (
            "Blynk admin login hash".into(),
            greenlight_core::blynk::client::hash_password(BLYNK_PASSWORD, &blynk.ready.admin_user),
        ),
        (
            "Blynk admin Basic header".into(),
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{BLYNK_PASSWORD}", blynk.ready.admin_user)),
        ),
    ];
    let tokens = sim.cloud.issued_tokens();
    assert!(tokens.len() >= 2, "the cloud handed out tokens: {tokens:?}");
    for t in tokens {
        secrets.push(("a RainMaker access or refresh token".into(), t));
    }
    for t in &blynk.ready.tokens {
        secrets.push(("a Blynk device token".into(), t.clone()));
    }

    // Trace logging was really on: the search below means something.
    assert!(
        r.printed.len() > 20_000 && find(&r.printed, "TRACE").is_some(),
        "the runs logged at trace level ({} bytes)",
        r.printed.len()
    );
    let mut files = vec![];
    files_under(&r.data, &mut files);
    for name in ["greenlight.db", "greenlight.db-wal", "greenlight.db-shm"] {
        assert!(files.iter().any(|f| f.ends_with(name)), "{name}: {files:?}");
    }
    let mut leaks = vec![];
    for f in &files {
        // The daemon's control socket (left behind by a killed daemon) holds
        // no data at rest: only regular files are searched.
        if !f.is_file() {
            continue;
        }
        let bytes = std::fs::read(f).unwrap();
        for (what, s) in &secrets {
            if let Some(at) = find(&bytes, s) {
                leaks.push(format!("{what} in {} at byte {at}", f.display()));
            }
        }
    }
    for (what, s) in &secrets {
        if let Some(at) = find(&r.printed, s) {
            let from = at.saturating_sub(200);
            leaks.push(format!(
                "{what} in the output: …{}…",
                String::from_utf8_lossy(&r.printed[from..(at + s.len() + 50).min(r.printed.len())])
            ));
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
    eprintln!(
        "security: {} secrets searched for in {} files ({} bytes) and {} bytes of output: none found",
        secrets.len(),
        files.len(),
        files
            .iter()
            .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
            .sum::<u64>(),
        r.printed.len()
    );
    blynk.shutdown().await;
    sim.shutdown().await;
    drop(mosq);
    let _ = std::fs::remove_dir_all(&base);
}
