//! Simulated devices running the Blynk library's OTA-capable sketch: log in
//! with a token, send the info string with their build, ping every heartbeat,
//! and on the OTA command disconnect, download over plain HTTP, "flash" (the
//! new build is the binary's build tag), reboot and log in again.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::firmware::{build_tag, info_string};
use super::protocol::{body_parts, cmd, read_frame, status, Frame, FrameDecoder, OTA_MSG_ID};

/// How a simulated device reacts to an OTA command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceBehaviour {
    /// Downloads, flashes, comes back with the binary's build.
    #[default]
    Normal,
    /// The download fails; it reboots on the old build.
    DownloadFails,
    /// Downloads, but the flash fails; it reboots on the old build and, while
    /// a campaign stands, gets the URL again on every login (a reboot loop).
    FlashFails,
}

/// Timings of the simulated devices (and the server's default heartbeat).
#[derive(Debug, Clone)]
pub struct BlynkTiming {
    /// PING interval; reported as `h-beat` (whole seconds, at least 1) and
    /// the server's idle timeout before a device reports one (×2.3).
    pub heartbeat: Duration,
    /// Wait before reconnecting after a lost connection.
    pub reconnect_delay: Duration,
    /// Time between the end of an OTA attempt and the next login.
    pub reboot_delay: Duration,
    /// Limit for connecting, the login reply and a firmware download.
    pub io_timeout: Duration,
}

impl BlynkTiming {
    /// The library's defaults: 10 s heartbeat, 5 s reconnect.
    pub fn real() -> BlynkTiming {
        BlynkTiming {
            heartbeat: Duration::from_secs(10),
            reconnect_delay: Duration::from_secs(5),
            reboot_delay: Duration::from_secs(2),
            io_timeout: Duration::from_secs(30),
        }
    }

    /// For tests: a 2 s heartbeat and near-instant reconnects.
    pub fn fast() -> BlynkTiming {
        BlynkTiming {
            heartbeat: Duration::from_secs(2),
            reconnect_delay: Duration::from_millis(100),
            reboot_delay: Duration::from_millis(100),
            io_timeout: Duration::from_secs(30),
        }
    }

    /// `h-beat` as the device reports it.
    pub fn heartbeat_secs(&self) -> u32 {
        (self.heartbeat.as_secs_f64().ceil() as u32).max(1)
    }
}

impl Default for BlynkTiming {
    fn default() -> Self {
        BlynkTiming::real()
    }
}

/// What a simulated device has done so far.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DeviceStats {
    /// Auth token.
    pub token: String,
    /// Build it runs now.
    pub build: String,
    /// Logged in right now.
    pub online: bool,
    /// Successful logins.
    pub logins: u32,
    /// Info messages the server acknowledged.
    pub info_acks: u32,
    /// OTA commands received.
    pub ota_urls_received: u32,
    /// The last OTA URL received.
    pub last_ota_url: Option<String>,
    /// Completed downloads.
    pub downloads: u32,
    /// Failed downloads.
    pub download_failures: u32,
    /// Successful flashes.
    pub flashes: u32,
    /// Failed flashes.
    pub flash_failures: u32,
    /// Heartbeat PINGs sent, over every session.
    pub pings_sent: u32,
    /// Answers to those PINGs read. The server answers one connection's
    /// frames in order, so once `pings_answered` passes an earlier
    /// `pings_sent`, the device has read everything the server wrote to it
    /// before that moment: a test's proof that nothing was sent.
    pub pings_answered: u32,
}

/// A running simulated device.
pub(crate) struct DeviceHandle {
    pub stats: Arc<Mutex<DeviceStats>>,
    pub online: watch::Sender<bool>,
    /// Asks for a heartbeat PING now (at its next login if offline).
    pub ping_now: Arc<Notify>,
    pub task: JoinHandle<()>,
}

#[derive(Clone)]
pub(crate) struct DeviceEnv {
    pub hardware: SocketAddr,
    pub timing: BlynkTiming,
    pub http: reqwest::Client,
}

fn lock(s: &Mutex<DeviceStats>) -> std::sync::MutexGuard<'_, DeviceStats> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn spawn(
    token: String,
    build: String,
    behaviour: DeviceBehaviour,
    env: DeviceEnv,
) -> DeviceHandle {
    let stats = Arc::new(Mutex::new(DeviceStats {
        token: token.clone(),
        build,
        ..DeviceStats::default()
    }));
    let (online, rx) = watch::channel(true);
    let ping_now = Arc::new(Notify::new());
    let task = tokio::spawn(run(
        token,
        behaviour,
        env,
        stats.clone(),
        rx,
        ping_now.clone(),
    ));
    DeviceHandle {
        stats,
        online,
        ping_now,
        task,
    }
}

enum End {
    Ota(String),
    Offline,
    Lost,
}

async fn run(
    token: String,
    behaviour: DeviceBehaviour,
    env: DeviceEnv,
    stats: Arc<Mutex<DeviceStats>>,
    mut online: watch::Receiver<bool>,
    ping_now: Arc<Notify>,
) {
    loop {
        if !*online.borrow_and_update() {
            if online.changed().await.is_err() {
                return;
            }
            continue;
        }
        let end = session(&token, &env, &stats, &mut online, &ping_now).await;
        lock(&stats).online = false;
        match end {
            End::Ota(url) => {
                ota(&url, behaviour, &env, &stats).await;
                tokio::time::sleep(env.timing.reboot_delay).await;
            }
            End::Offline => {}
            End::Lost => tokio::time::sleep(env.timing.reconnect_delay).await,
        }
    }
}

async fn send(s: &mut TcpStream, f: &Frame) -> bool {
    match f.encode() {
        Ok(b) => s.write_all(&b).await.is_ok(),
        Err(_) => false,
    }
}

/// One connection, from login until the OTA command, a drop or going offline.
async fn session(
    token: &str,
    env: &DeviceEnv,
    stats: &Mutex<DeviceStats>,
    online: &mut watch::Receiver<bool>,
    ping_now: &Notify,
) -> End {
    let t = &env.timing;
    let mut s = match tokio::time::timeout(t.io_timeout, TcpStream::connect(env.hardware)).await {
        Ok(Ok(s)) => s,
        _ => return End::Lost,
    };
    let _ = s.set_nodelay(true);
    let mut dec = FrameDecoder::default();
    if !send(&mut s, &Frame::message(cmd::HW_LOGIN, 1, &[token])).await {
        return End::Lost;
    }
    let answer = tokio::time::timeout(t.io_timeout, async {
        loop {
            match read_frame(&mut s, &mut dec).await {
                Ok(Some(Frame::Response { id: 1, status })) => return Some(status),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    })
    .await;
    if answer != Ok(Some(status::OK)) {
        return End::Lost;
    }
    let build = {
        let mut st = lock(stats);
        st.logins += 1;
        st.online = true;
        st.build.clone()
    };
    let info = Frame::Message {
        cmd: cmd::INTERNAL,
        id: 2,
        body: info_string(&build, t.heartbeat_secs()).into_bytes(),
    };
    if !send(&mut s, &info).await {
        return End::Lost;
    }
    let mut next_id: u16 = 3;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + t.heartbeat, t.heartbeat);
    loop {
        tokio::select! {
            r = read_frame(&mut s, &mut dec) => match r {
                Ok(Some(Frame::Response { id: 2, status: status::OK })) => lock(stats).info_acks += 1,
                // Every other id is a PING's (ids from 3 on).
                Ok(Some(Frame::Response { id, .. })) if id != 2 => lock(stats).pings_answered += 1,
                Ok(Some(Frame::Message { cmd: cmd::INTERNAL, id: OTA_MSG_ID, body })) => {
                    let parts = body_parts(&body);
                    if parts.len() >= 2 && parts[0] == "ota" {
                        let url = parts[1].clone();
                        let mut st = lock(stats);
                        st.ota_urls_received += 1;
                        st.last_ota_url = Some(url.clone());
                        // The library disconnects before it starts the update.
                        return End::Ota(url);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return End::Lost,
            },
            // On the heartbeat, or at once when a test asks for one.
            _ = async { tokio::select! { _ = ping.tick() => {}, _ = ping_now.notified() => {} } } => {
                next_id = next_id.wrapping_add(1).max(3);
                // Counted before it goes: an answer can come back before
                // `send` returns.
                lock(stats).pings_sent += 1;
                if !send(&mut s, &Frame::message(cmd::PING, next_id, &[])).await {
                    return End::Lost;
                }
            }
            r = online.changed() => {
                if r.is_err() || !*online.borrow() {
                    return End::Offline;
                }
            }
        }
    }
}

async fn ota(url: &str, behaviour: DeviceBehaviour, env: &DeviceEnv, stats: &Mutex<DeviceStats>) {
    let got = async {
        let resp = env.http.get(url).send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.bytes().await.ok()
    };
    let bytes = tokio::time::timeout(env.timing.io_timeout, got)
        .await
        .ok()
        .flatten();
    let mut st = lock(stats);
    let Some(bytes) = bytes.filter(|_| behaviour != DeviceBehaviour::DownloadFails) else {
        st.download_failures += 1;
        tracing::info!(token = %st.token, url, "simulated device: download failed");
        return;
    };
    st.downloads += 1;
    if behaviour == DeviceBehaviour::FlashFails {
        st.flash_failures += 1;
        tracing::info!(token = %st.token, "simulated device: flash failed, rebooting on the old build");
        return;
    }
    st.flashes += 1;
    // A binary without the library's info string would report whatever build
    // it was compiled with; there is nothing to read, so keep the old one.
    if let Some(b) = build_tag(&bytes) {
        st.build = b;
    }
    tracing::info!(token = %st.token, build = %st.build, "simulated device: flashed");
}
