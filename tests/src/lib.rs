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
    pub fn start() -> Mosquitto {
        Self::start_on(free_port())
    }

    /// Starts mosquitto on `port` (used to restart a broker on the same port).
    pub fn start_on(port: u16) -> Mosquitto {
        let bin = mosquitto_binary()
            .expect("mosquitto is not installed: run `apt-get install mosquitto` (or .ci/run)");
        let dir =
            std::env::temp_dir().join(format!("greenlight-mosq-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\nmax_inflight_messages 0\nlog_type error\n"),
        )
        .expect("write mosquitto.conf");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto");
        let m = Mosquitto {
            child: Some(child),
            port,
            dir,
        };
        m.wait_listening();
        m
    }

    fn wait_listening(&self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("mosquitto did not listen on {addr}");
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
        Raw {
            http: reqwest::Client::new(),
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
