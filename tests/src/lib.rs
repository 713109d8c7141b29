//! Shared fixtures for the end-to-end tests: a real mosquitto broker on a free
//! loopback port, and helpers to drive the simulators over their public
//! interfaces.

#![warn(missing_docs)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A mosquitto process listening on 127.0.0.1, killed on drop.
pub struct Mosquitto {
    child: Option<Child>,
    /// The port it listens on.
    pub port: u16,
    dir: PathBuf,
}

/// Where mosquitto is, if installed (`.ci/run` installs it).
pub fn mosquitto_binary() -> Option<PathBuf> {
    [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// A free loopback port (bind :0, read, release).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

impl Mosquitto {
    /// Starts mosquitto on a free port. Panics with a clear message when it
    /// is not installed: these tests are meant to run against the real broker.
    /// A port picked free can be taken by someone else before mosquitto binds
    /// it, so a broker that exits at once is retried on another port.
    pub fn start() -> Mosquitto {
        let mut last = String::new();
        for _ in 0..5 {
            match Self::try_start_on(free_port()) {
                Ok(m) => return m,
                Err(e) => last = e,
            }
        }
        panic!("mosquitto did not start: {last}");
    }

    /// Starts mosquitto on `port` (used to restart a broker on the same port).
    pub fn start_on(port: u16) -> Mosquitto {
        Self::try_start_on(port).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_start_on(port: u16) -> Result<Mosquitto, String> {
        let bin = mosquitto_binary().expect(
            "mosquitto is not installed: run `apt-get install mosquitto` (or scripts/deps.sh)",
        );
        let dir =
            std::env::temp_dir().join(format!("greenlight-mosq-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\nmax_inflight_messages 0\nlog_type error\n"),
        )
        .map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn mosquitto: {e}"))?;
        let mut m = Mosquitto {
            child: Some(child),
            port,
            dir,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(c) = m.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    m.child = None;
                    return Err(format!(
                        "mosquitto on port {port} exited at once ({status}); port taken?"
                    ));
                }
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Ok(m);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("mosquitto did not listen on {addr}"))
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Kills the broker (SIGKILL): clients see the connection drop.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `f` every 25 ms until it returns `Some`, or panics after `timeout`
/// with `what` in the message.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A deliberately plain RainMaker REST client for the simulator tests: raw
/// requests exactly as a third-party client would send them, so the tests
/// check the wire contract and not our own client library.
pub struct Raw {
    /// HTTP client.
    pub http: reqwest::Client,
    /// Base URL (`http://127.0.0.1:PORT`).
    pub base: String,
    /// Access token after [`Raw::login`].
    pub token: String,
}

impl Raw {
    /// A client for `base`.
    pub fn new(base: &str) -> Raw {
        // reqwest is built without a crypto provider: Greenlight's.
        greenlight_core::tls::provider();
        // A simulator that stops answering must fail a test, not hang CI.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client");
        Raw {
            http,
            base: base.trim_end_matches('/').to_string(),
            token: String::new(),
        }
    }

    /// Logs in with `login2` and keeps the access token.
    pub async fn login(&mut self, user: &str, password: &str) -> serde_json::Value {
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                "/v1/login2",
                Some(serde_json::json!({"user_name": user, "password": password})),
            )
            .await;
        assert_eq!(status, 200, "login failed: {body}");
        self.token = body["accesstoken"]
            .as_str()
            .expect("accesstoken")
            .to_string();
        body
    }

    /// Sends a request with the raw token in `Authorization`; returns status and JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut rb = self.http.request(method, format!("{}{}", self.base, path));
        if !self.token.is_empty() {
            rb = rb.header("Authorization", &self.token);
        }
        if let Some(b) = body {
            rb = rb
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = rb.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// GET returning the JSON body, asserting 200.
    pub async fn get(&self, path: &str) -> serde_json::Value {
        let (s, b) = self.send(reqwest::Method::GET, path, None).await;
        assert_eq!(s, 200, "GET {path}: {b}");
        b
    }
}

/// A private, unlocked Secret Service (gnome-keyring on its own session
/// bus) for tests that store secrets in a real OS keychain. Child processes
/// get it through [`SecretService::envs`]. Everything is torn down on drop.
pub struct SecretService {
    dbus_pid: u32,
    dir: PathBuf,
    address: String,
}

impl SecretService {
    /// Starts dbus-daemon and gnome-keyring-daemon (`.ci/run` installs them).
    /// Returns `None` with a message on stderr when they are not installed.
    pub fn start() -> Option<SecretService> {
        for bin in ["dbus-daemon", "gnome-keyring-daemon"] {
            if Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {bin}"))
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
            {
                eprintln!("{bin} is not installed: run scripts/deps.sh");
                return None;
            }
        }
        let dir = std::env::temp_dir().join(format!(
            "greenlight-keyring-{}-{}",
            std::process::id(),
            free_port()
        ));
        let (home, run) = (dir.join("home"), dir.join("run"));
        std::fs::create_dir_all(&home).ok()?;
        std::fs::create_dir_all(&run).ok()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).ok()?;
        }
        let out = Command::new("dbus-daemon")
            .args(["--session", "--fork", "--print-address=1", "--print-pid=1"])
            .env("HOME", &home)
            .env("XDG_RUNTIME_DIR", &run)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut lines = text.lines();
        let address = lines.next()?.trim().to_string();
        let dbus_pid: u32 = lines.next()?.trim().parse().ok()?;
        let me = SecretService {
            dbus_pid,
            dir,
            address,
        };
        let mut kr = Command::new("gnome-keyring-daemon")
            .args(["--unlock", "--components=secrets", "--daemonize"])
            .envs(me.envs())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        if let Some(mut stdin) = kr.stdin.take() {
            use std::io::Write;
            let _ = stdin.write_all(b"greenlight-test-keyring");
        }
        let _ = kr.wait();
        Some(me)
    }

    /// Environment a child process needs to reach this keychain.
    pub fn envs(&self) -> Vec<(String, String)> {
        vec![
            ("DBUS_SESSION_BUS_ADDRESS".into(), self.address.clone()),
            (
                "HOME".into(),
                self.dir.join("home").to_string_lossy().into_owned(),
            ),
            (
                "XDG_RUNTIME_DIR".into(),
                self.dir.join("run").to_string_lossy().into_owned(),
            ),
        ]
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        // gnome-keyring-daemon leaves when its bus goes away.
        let _ = Command::new("kill").arg(self.dbus_pid.to_string()).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reading a Greenlight database from the outside, as the crash and
/// security tests check it (no engine may be running on it meanwhile).
pub mod db {
    use std::path::Path;

    /// One row of the `jobs` table.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct JobRow {
        /// Row id.
        pub id: i64,
        /// Node.
        pub node_id: String,
        /// `ota_job_id`.
        pub ota_job_id: String,
        /// State name (`success`, `not_confirmed`...).
        pub state: String,
    }

    fn open(path: &Path) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        c.busy_timeout(std::time::Duration::from_secs(30)).unwrap();
        c
    }

    /// `PRAGMA integrity_check` and `PRAGMA foreign_key_check`: `"ok"` when
    /// both find nothing, else what they found.
    pub fn integrity_check(path: &Path) -> String {
        let c = open(path);
        let rows: Vec<String> = c
            .prepare("PRAGMA integrity_check")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let fk: Vec<String> = c
            .prepare("PRAGMA foreign_key_check")
            .unwrap()
            .query_map([], |r| {
                Ok(format!(
                    "{}:{}",
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        if rows == ["ok"] && fk.is_empty() {
            "ok".into()
        } else {
            format!("integrity: {rows:?}; foreign keys: {fk:?}")
        }
    }

    /// How many jobs are in one of `states`, read through a connection kept
    /// open (cheap enough to poll every few milliseconds).
    pub struct Poll(rusqlite::Connection);

    impl Poll {
        /// A reader on the database at `path`.
        pub fn open(path: &Path) -> Poll {
            Poll(open(path))
        }

        /// Jobs whose state is one of `states` (0 when the database is busy).
        pub fn count(&self, states: &[&str]) -> i64 {
            let list = states
                .iter()
                .map(|s| format!("'{s}'"))
                .collect::<Vec<_>>()
                .join(",");
            self.0
                .query_row(
                    &format!("SELECT COUNT(*) FROM jobs WHERE state IN ({list})"),
                    [],
                    |r| r.get(0),
                )
                .unwrap_or(0)
        }
    }

    /// Every job, oldest first.
    pub fn jobs(path: &Path) -> Vec<JobRow> {
        let c = open(path);
        let mut st = c
            .prepare("SELECT id, node_id, ota_job_id, state FROM jobs ORDER BY id")
            .unwrap();
        st.query_map([], |r| {
            Ok(JobRow {
                id: r.get(0)?,
                node_id: r.get(1)?,
                ota_job_id: r.get(2)?,
                state: r.get(3)?,
            })
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }
}

/// Whether this run is CI: `CI=true` (or `1`, `yes`) in the environment, as
/// `.ci/run` and CI services set it. There a missing prerequisite fails the
/// test instead of skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
}

/// `test` (or a part of it) cannot run here because of `what` (say what is
/// missing and how to get it). Under CI ([`in_ci`]) that is a failure: this
/// panics. Elsewhere it prints `SKIPPED <test>: <what>` on stderr, so a skip
/// is never silent, and returns; the caller then skips that part. The line
/// goes to the process's stderr itself, not through `eprintln!`, which the
/// test harness swallows for a test that passes.
#[track_caller]
pub fn missing_prerequisite(test: &str, what: &str) {
    if in_ci() {
        panic!("{test}: {what} (CI=true: a missing prerequisite is a failure, not a skip)");
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED {test}: {what} (with CI=true this is a failure)"
    );
}

/// Waits until the simulated RainMaker node `node` has caught up with its
/// cloud, both ways: two param writes (`Light.Brightness`) go from the cloud
/// to the node and the node's reports of them come back. The cloud publishes
/// everything (forwarded REST writes such as `Operation=start`, `otaurl`
/// pushes and answers) through one MQTT client, and the node handles its
/// messages one by one and publishes through one client, so the first round
/// trip proves the cloud has read everything the node had published before
/// (fetches, reports), and the second that the node has handled everything
/// the cloud had sent it before: counters such as `starts_received` are
/// final for whatever happened until now. Panics after `timeout` (a node
/// that is offline never answers).
pub async fn node_caught_up(
    sim: &greenlight_sim::rainmaker::RainmakerSim,
    node: &str,
    timeout: Duration,
) {
    let brightness = |sim: &greenlight_sim::rainmaker::RainmakerSim| {
        sim.cloud
            .state()
            .nodes
            .get(node)
            .and_then(|n| n.params["Light"]["Brightness"].as_i64())
    };
    let mut value = brightness(sim).unwrap_or(0);
    for _ in 0..2 {
        // Always a new value (0..=100, the node's range), so its report is
        // told apart from the one before.
        value = (value + 1) % 101;
        sim.cloud
            .forward_params(node, &serde_json::json!({"Light": {"Brightness": value}}));
        eventually(
            timeout,
            &format!("{node} to report its brightness {value} back"),
            || async { (brightness(sim) == Some(value)).then_some(()) },
        )
        .await;
    }
}

/// Waits until the engine has swept `account`'s node list again on its own
/// timer (its freshness shows a newer `last_sweep` than when called): the
/// engine has had a sweep's facts, and its ticks in between, to act on
/// everything it knew. Panics after `timeout`.
pub async fn swept_again(e: &greenlight_core::EngineHandle, account: &str, timeout: Duration) {
    use tokio::sync::broadcast::error::RecvError;
    let mut rx = e.subscribe();
    let before = e
        .freshness()
        .await
        .expect("the engine answers")
        .into_iter()
        .find(|(a, _)| a == account)
        .and_then(|(_, f)| f.last_sweep);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(greenlight_core::Event::AccountFreshness {
                account: a,
                freshness,
            })) if a == account && freshness.last_sweep > before => return,
            Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => {}
            Ok(Err(RecvError::Closed)) => {
                panic!("the engine stopped before sweeping {account} again")
            }
            Err(_) => panic!(
                "timed out after {timeout:?} waiting for a sweep of {account} newer than {before:?}"
            ),
        }
    }
}

/// Takes a simulated Blynk device off the network and back: a fresh login,
/// the moment the server decides about campaigns. Returns once the server
/// has answered that login's info, with the device's stats from while it
/// was off. The server writes the OTA command before the info's OK, and a
/// device that gets the command hangs up without reading on: so either
/// `ota_urls_received` or `info_acks` has grown since the returned stats,
/// and an acknowledged info proves that no OTA was sent for that login.
pub async fn blynk_bounce(
    sim: &greenlight_sim::blynk::BlynkSim,
    token: &str,
    limit: Duration,
) -> greenlight_sim::blynk::DeviceStats {
    assert!(sim.set_online(token, false));
    // Off: no session past its login, so nothing more is counted for any
    // login before this one.
    let off = eventually(limit, "the device to go offline", || async {
        let s = sim.device_stats(token)?;
        (!s.online).then_some(s)
    })
    .await;
    assert!(sim.set_online(token, true));
    eventually(
        limit,
        "the server to answer the device's new login",
        || async {
            let s = sim.device_stats(token)?;
            (s.logins > off.logins
                && (s.info_acks > off.info_acks || s.ota_urls_received > off.ota_urls_received))
                .then_some(())
        },
    )
    .await;
    off
}

/// Waits until each simulated Blynk device in `tokens` has read everything
/// the server wrote to it until now. Each is asked for a PING at once, and
/// the server answers one connection's frames in order, so an answer to a
/// PING sent after this call proves it (an OTA command ends the session
/// when read, and is counted in `ota_urls_received`). Panics after `limit`,
/// or if a token is not one of the simulator's devices.
pub async fn blynk_caught_up(
    sim: &greenlight_sim::blynk::BlynkSim,
    tokens: &[String],
    limit: Duration,
) {
    let sent: Vec<u32> = tokens
        .iter()
        .map(|t| {
            sim.device_stats(t)
                .expect("a simulated device's token")
                .pings_sent
        })
        .collect();
    for t in tokens {
        sim.ping_now(t);
    }
    eventually(
        limit,
        "the simulated devices to answer a PING sent after the call",
        || async {
            tokens
                .iter()
                .zip(&sent)
                .all(|(t, &n)| sim.device_stats(t).is_some_and(|s| s.pings_answered > n))
                .then_some(())
        },
    )
    .await;
}

/// A simulated smart plug's identity (ESP32, `esp.device.plug`): the
/// fleets of identical devices the approval and rollout tests build.
pub fn test_plug(node_id: String, name: &str) -> greenlight_sim::rainmaker::wire::NodeInfo {
    greenlight_sim::rainmaker::wire::NodeInfo {
        node_id,
        name: name.into(),
        device_type: "esp.device.plug".into(),
        model: "ESP32 Test Plug".into(),
        project_name: "test_plug".into(),
        platform: "esp32".into(),
    }
}

/// The `greenlight-sim` executable, built (debug) if it is not up to date:
/// the demo runs it as a separate process, and a test binary of another
/// package has no `CARGO_BIN_EXE_greenlight-sim`. Asks cargo once per test
/// process; cargo releases its build lock while tests run, so this nested
/// build does not wait on the outer one.
pub fn sim_exe() -> PathBuf {
    static EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    EXE.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        // What cargo set for this test binary is not the nested build's:
        // some build scripts (ring's) track CARGO_MANIFEST_DIR, and an
        // inherited one would rebuild them on every run.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k == "CARGO_MANIFEST_DIR"
                || k == "CARGO_MANIFEST_PATH"
                || k == "CARGO_CRATE_NAME"
                || k == "CARGO_PRIMARY_PACKAGE"
                || k == "CARGO_TARGET_TMPDIR"
                || k == "OUT_DIR"
                || k.starts_with("CARGO_PKG_")
                || k.starts_with("CARGO_BIN_")
            {
                build.env_remove(&*k);
            }
        }
        let out = build
            .args([
                "build",
                "--quiet",
                "-p",
                "greenlight-sim",
                "--bin",
                "greenlight-sim",
                "--message-format=json",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("cargo runs");
        assert!(out.status.success(), "building greenlight-sim failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| {
                v["reason"] == "compiler-artifact" && v["target"]["name"] == "greenlight-sim"
            })
            .find_map(|v| v["executable"].as_str().map(PathBuf::from))
            .expect("cargo names the greenlight-sim executable")
    })
    .clone()
}
