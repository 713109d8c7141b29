//! Simulated ESP RainMaker nodes, each its own MQTT client (own client id,
//! last will, QoS 1), behaving like the firmware's node-side approval pattern:
//! auto-fetch at start, `Operation=check` → fetch again, a pending update →
//! `Info={"job_id","fw_version"}` and status `delayed` "Waiting for Approval",
//! `Operation=start` → fetch, real HTTP download with an MD5 check, progress
//! text, reboot (the MQTT connection drops and comes back), and `success` with
//! the new `fw_version` in the config.
//!
//! Each node can be told to misbehave the ways real devices do (see
//! [`Behaviour`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::cloud::hex;
use super::wire::{initial_params, node_config, node_topic, NodeInfo};

/// How a simulated node behaves when it is asked to update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Downloads, reboots, reports success.
    Normal,
    /// Every download attempt breaks off; after 3 attempts the node reports `failed`.
    DownloadFails,
    /// The node refuses the image: `rejected` "Same version received".
    SameVersion,
    /// Downloads and reboots, but comes back on the old firmware: `rejected` "Firmware rolled back".
    Rollback,
    /// Like `Normal`, with a download five times slower.
    SlowDownload,
    /// Reports its state once after boot, then drops off the network until told to come back.
    Offline,
    /// Drops off and comes back periodically.
    Flapping,
    /// Online a few seconds out of every period (battery device).
    Sleepy,
}

/// Timings of the simulated firmware. The real firmware auto-fetches 5 s after
/// start; tests use [`Timing::fast`], the demo [`Timing::demo`].
#[derive(Debug, Clone)]
pub struct Timing {
    /// Delay from MQTT connect to the automatic `otafetch`.
    pub auto_fetch: Duration,
    /// Time per 10 % of download.
    pub download_step: Duration,
    /// Time the node is away while rebooting.
    pub reboot: Duration,
    /// `Offline` nodes stay connected this long after boot.
    pub offline_after: Duration,
    /// `Flapping` nodes stay connected this long, then away half as long.
    pub flap_period: Duration,
    /// `Sleepy` nodes are awake this long ...
    pub sleepy_awake: Duration,
    /// ... out of every this long.
    pub sleepy_period: Duration,
}

impl Timing {
    /// Human-scale timings: a download takes a few seconds, so people can watch it.
    pub fn demo() -> Self {
        Timing {
            auto_fetch: Duration::from_millis(1500),
            download_step: Duration::from_millis(700),
            reboot: Duration::from_secs(2),
            offline_after: Duration::from_secs(4),
            flap_period: Duration::from_secs(20),
            sleepy_awake: Duration::from_secs(5),
            sleepy_period: Duration::from_secs(60),
        }
    }

    /// Test timings: everything within a second or two.
    pub fn fast() -> Self {
        Timing {
            auto_fetch: Duration::from_millis(100),
            download_step: Duration::from_millis(20),
            reboot: Duration::from_millis(200),
            offline_after: Duration::from_millis(600),
            flap_period: Duration::from_secs(2),
            sleepy_awake: Duration::from_millis(800),
            sleepy_period: Duration::from_secs(3),
        }
    }

    /// The firmware's own defaults (auto-fetch 5 s after start).
    pub fn real() -> Self {
        Timing {
            auto_fetch: Duration::from_secs(5),
            download_step: Duration::from_secs(2),
            reboot: Duration::from_secs(6),
            ..Self::demo()
        }
    }
}

/// Everything needed to start one node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Hardware description.
    pub info: NodeInfo,
    /// Firmware version it boots with.
    pub fw_version: String,
    /// Update behaviour.
    pub behaviour: Behaviour,
    /// Whether the firmware asks its user before applying an update
    /// (node-side approval). Without it the node applies any URL it gets.
    pub require_approval: bool,
    /// Publish on `$aws/rules/<rule>/node/<id>/...` (the firmware default)
    /// instead of `node/<id>/...`.
    pub basic_ingest: bool,
}

/// What a node has seen and done, for tests and the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStats {
    /// Node id.
    pub node_id: String,
    /// Name.
    pub name: String,
    /// Running firmware version.
    pub fw_version: String,
    /// Behaviour.
    pub behaviour: Behaviour,
    /// Whether node-side approval is on.
    pub require_approval: bool,
    /// Connected to the broker right now.
    pub online: bool,
    /// `Operation=start` writes received.
    pub starts_received: u32,
    /// `Operation=check` writes received.
    pub checks_received: u32,
    /// `otafetch` messages sent.
    pub fetches: u32,
    /// Job waiting for approval, if any.
    pub pending_job: Option<String>,
    /// Downloads started (one per applied update attempt).
    pub downloads_started: u32,
    /// Updates that ended with the new firmware running.
    pub updates_applied: u32,
    /// Boots (1 at start).
    pub boots: u32,
}

struct NodeHandle {
    stats: Arc<Mutex<NodeStats>>,
    want_online: Arc<watch::Sender<bool>>,
    task: JoinHandle<()>,
}

/// The set of simulated nodes. Cheap to clone.
#[derive(Clone, Default)]
pub struct Fleet {
    nodes: Arc<Vec<NodeHandle>>,
}

/// Where nodes connect and download from.
#[derive(Clone)]
pub struct FleetEnv {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Timings.
    pub timing: Timing,
    /// HTTP client for firmware downloads.
    pub http: reqwest::Client,
}

impl Fleet {
    /// Starts every node. Connections are spread over a short time so a
    /// fleet of thousands does not stampede the broker.
    pub fn spawn(specs: Vec<NodeSpec>, env: FleetEnv) -> Fleet {
        let nodes = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                let stats = Arc::new(Mutex::new(NodeStats {
                    node_id: spec.info.node_id.clone(),
                    name: spec.info.name.clone(),
                    fw_version: spec.fw_version.clone(),
                    behaviour: spec.behaviour,
                    require_approval: spec.require_approval,
                    online: false,
                    starts_received: 0,
                    checks_received: 0,
                    fetches: 0,
                    pending_job: None,
                    downloads_started: 0,
                    updates_applied: 0,
                    boots: 0,
                }));
                let (tx, rx) = watch::channel(true);
                let tx = Arc::new(tx);
                let node = SimNode {
                    spec,
                    env: env.clone(),
                    stats: stats.clone(),
                    want_online: tx.clone(),
                    online_rx: rx,
                };
                let delay = Duration::from_micros(i as u64 * 500);
                let task = tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    node.run().await;
                });
                NodeHandle {
                    stats,
                    want_online: tx,
                    task,
                }
            })
            .collect();
        Fleet {
            nodes: Arc::new(nodes),
        }
    }

    /// A snapshot of every node's stats.
    pub fn stats(&self) -> Vec<NodeStats> {
        self.nodes.iter().map(|n| lock(&n.stats).clone()).collect()
    }

    /// One node's stats.
    pub fn node(&self, id: &str) -> Option<NodeStats> {
        self.nodes
            .iter()
            .map(|n| lock(&n.stats))
            .find(|s| s.node_id == id)
            .map(|s| s.clone())
    }

    /// Brings a node onto the network or takes it off. False if unknown.
    pub fn set_online(&self, id: &str, online: bool) -> bool {
        match self.nodes.iter().find(|n| lock(&n.stats).node_id == id) {
            Some(n) => {
                n.want_online.send_replace(online);
                true
            }
            None => false,
        }
    }

    /// Stops every node task.
    pub fn abort(&self) {
        for n in self.nodes.iter() {
            n.task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The URL message the cloud sends on `otaurl`.
#[derive(Debug, Clone, Deserialize)]
struct OtaUrl {
    ota_job_id: String,
    url: String,
    fw_version: String,
    #[serde(default)]
    file_md5: Option<String>,
}

/// How a session (one MQTT connection) ended.
enum SessionEnd {
    /// Rebooting into (maybe) new firmware after an update of `job`.
    Reboot { job: String, new_version: String },
    /// Off the network for this long (flapping, sleepy), then back.
    Away(Duration),
    /// Off the network until told otherwise.
    Offline,
}

/// What the node reports after a reboot caused by an update.
struct AfterReboot {
    job: String,
    rolled_back: bool,
}

struct SimNode {
    spec: NodeSpec,
    env: FleetEnv,
    stats: Arc<Mutex<NodeStats>>,
    want_online: Arc<watch::Sender<bool>>,
    online_rx: watch::Receiver<bool>,
}

/// Mutable firmware state that survives across sessions (but not reboots, for
/// the parts a reboot clears).
struct Firmware {
    fw_version: String,
    power: bool,
    brightness: i64,
    /// `Info` as last reported: the string `"{}"` at boot, objects later.
    info: Value,
    pending: Option<OtaUrl>,
    approved: bool,
}

impl SimNode {
    async fn run(mut self) {
        let mut fw = Firmware {
            fw_version: self.spec.fw_version.clone(),
            power: true,
            brightness: 60,
            info: json!("{}"),
            pending: None,
            approved: false,
        };
        let mut after: Option<AfterReboot> = None;
        let mut boot = true;
        loop {
            while !*self.online_rx.borrow_and_update() {
                if self.online_rx.changed().await.is_err() {
                    return;
                }
            }
            if boot {
                lock(&self.stats).boots += 1;
                fw.info = json!("{}");
                fw.pending = None;
                fw.approved = false;
            }
            let end = self.session(&mut fw, boot, after.take()).await;
            lock(&self.stats).online = false;
            boot = false;
            match end {
                SessionEnd::Reboot { job, new_version } => {
                    tokio::time::sleep(self.env.timing.reboot).await;
                    let rolled_back = self.spec.behaviour == Behaviour::Rollback;
                    if !rolled_back {
                        fw.fw_version = new_version;
                        let mut s = lock(&self.stats);
                        s.fw_version = fw.fw_version.clone();
                        s.updates_applied += 1;
                    }
                    after = Some(AfterReboot { job, rolled_back });
                    boot = true;
                }
                SessionEnd::Away(d) => {
                    let mut rx = self.online_rx.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = rx.changed() => {}
                    }
                }
                SessionEnd::Offline => {
                    self.want_online.send_replace(false);
                }
            }
        }
    }

    fn topic(&self, suffix: &str) -> String {
        node_topic(&self.spec.info.node_id, suffix, self.spec.basic_ingest)
    }

    fn mqtt_options(&self) -> MqttOptions {
        let id = &self.spec.info.node_id;
        let mut o = MqttOptions::new(id.clone(), self.env.host.clone(), self.env.port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_max_packet_size(256 * 1024, 256 * 1024);
        o.set_last_will(LastWill::new(
            format!("node/{id}/params/local"),
            json!({"Connectivity": {"Connected": false}}).to_string(),
            QoS::AtLeastOnce,
            false,
        ));
        // A sleepy device keeps its session so that writes made while it
        // sleeps are delivered when it wakes, as AWS IoT persistent sessions do.
        o.set_clean_session(self.spec.behaviour != Behaviour::Sleepy);
        o
    }

    /// One MQTT connection, from connect to drop.
    async fn session(
        &mut self,
        fw: &mut Firmware,
        boot: bool,
        after: Option<AfterReboot>,
    ) -> SessionEnd {
        let (client, mut el) = AsyncClient::new(self.mqtt_options(), 32);
        // A broker busy accepting thousands of nodes can take longer than
        // rumqttc's default 5 s to answer CONNECT; giving up then only adds a
        // reconnect storm of duplicate client ids.
        let mut net = rumqttc::NetworkOptions::new();
        net.set_connection_timeout(60);
        el.set_network_options(net);
        // Connect, retrying while the broker is not there.
        let mut backoff = Duration::from_millis(100);
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(node = %self.spec.info.node_id, error = %e, "node cannot reach broker");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(3));
                }
            }
        }
        lock(&self.stats).online = true;
        self.announce(&client, fw, true).await;
        if let Some(a) = after {
            let (status, text) = if a.rolled_back {
                ("rejected", "Firmware rolled back")
            } else {
                ("success", "OTA Upgrade finished and verified successfully")
            };
            self.ota_status(&client, &a.job, status, text).await;
            fw.info = json!({});
            self.publish(&client, "params/local", json!({"OTA": {"Info": {}}}))
                .await;
        }
        let t = self.env.timing.clone();
        let fetch_at = tokio::time::sleep(if boot {
            t.auto_fetch
        } else {
            Duration::from_millis(50)
        });
        tokio::pin!(fetch_at);
        let mut fetched = false;
        let (end_in, end_with) = match self.spec.behaviour {
            Behaviour::Offline if boot && lock(&self.stats).boots == 1 => {
                (t.offline_after, Some(SessionEnd::Offline))
            }
            Behaviour::Flapping => (t.flap_period, Some(SessionEnd::Away(t.flap_period / 2))),
            Behaviour::Sleepy => (
                t.sleepy_awake,
                Some(SessionEnd::Away(
                    t.sleepy_period.saturating_sub(t.sleepy_awake),
                )),
            ),
            _ => (Duration::from_secs(86400 * 365), None),
        };
        let session_end = tokio::time::sleep(end_in);
        tokio::pin!(session_end);
        let (dl_tx, mut dl_rx) = mpsc::channel::<DownloadResult>(1);
        let mut downloading = false;
        let mut online_rx = self.online_rx.clone();
        loop {
            tokio::select! {
                ev = el.poll() => match ev {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if let Some(dl) = self.on_message(&client, fw, &p.topic, &p.payload, downloading).await {
                            downloading = true;
                            let env = self.env.clone();
                            let behaviour = self.spec.behaviour;
                            let c = client.clone();
                            let me = self.reporter();
                            let tx = dl_tx.clone();
                            tokio::spawn(async move {
                                let r = download(&env, behaviour, &dl, &me, &c).await;
                                let _ = tx.send(r).await;
                            });
                        }
                    }
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        // The broker came back (e.g. restarted): subscribe again and
                        // re-report everything, like the firmware does on reconnect.
                        lock(&self.stats).online = true;
                        self.announce(&client, fw, false).await;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        lock(&self.stats).online = false;
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                },
                _ = &mut fetch_at, if !fetched => {
                    fetched = true;
                    self.fetch(&client, fw).await;
                }
                r = dl_rx.recv() => {
                    downloading = false;
                    fw.info = json!({});
                    self.publish(&client, "params/local", json!({"OTA": {"Info": {}}})).await;
                    if let Some(DownloadResult::Reboot { job, new_version }) = r {
                        // Drop the connection without DISCONNECT: the broker
                        // publishes the last will, as when a device reboots.
                        drop(el);
                        return SessionEnd::Reboot { job, new_version };
                    }
                }
                _ = &mut session_end, if end_with.is_some() && !downloading => {
                    drop(el);
                    return end_with.unwrap_or(SessionEnd::Offline);
                }
                r = online_rx.changed() => {
                    if r.is_err() || !*online_rx.borrow() {
                        drop(el);
                        return SessionEnd::Offline;
                    }
                }
            }
        }
    }

    fn reporter(&self) -> Reporter {
        Reporter {
            node_id: self.spec.info.node_id.clone(),
            basic_ingest: self.spec.basic_ingest,
            stats: self.stats.clone(),
        }
    }

    /// Subscribes and reports config and params (at boot: the initial params,
    /// with `Info` as the string `"{}"`).
    async fn announce(&self, client: &AsyncClient, fw: &Firmware, first: bool) {
        let id = &self.spec.info.node_id;
        for s in ["params/remote", "otaurl"] {
            let _ = client
                .subscribe(format!("node/{id}/{s}"), QoS::AtLeastOnce)
                .await;
        }
        self.publish(
            client,
            "config",
            node_config(&self.spec.info, &fw.fw_version),
        )
        .await;
        let mut params = initial_params(&self.spec.info, fw.power, fw.brightness);
        params["OTA"]["Info"] = fw.info.clone();
        let suffix = if first {
            "params/local/init"
        } else {
            "params/local"
        };
        self.publish(client, suffix, params).await;
    }

    async fn publish(&self, client: &AsyncClient, suffix: &str, payload: Value) {
        let _ = client
            .publish(
                self.topic(suffix),
                QoS::AtLeastOnce,
                false,
                payload.to_string(),
            )
            .await;
    }

    async fn fetch(&self, client: &AsyncClient, fw: &Firmware) {
        lock(&self.stats).fetches += 1;
        self.publish(
            client,
            "otafetch",
            json!({"node_id": self.spec.info.node_id, "fw_version": fw.fw_version}),
        )
        .await;
    }

    async fn ota_status(&self, client: &AsyncClient, job: &str, status: &str, text: &str) {
        self.reporter().status(client, job, status, text).await;
    }

    /// Handles one message; returns a URL to download when an update is to be applied now.
    async fn on_message(
        &self,
        client: &AsyncClient,
        fw: &mut Firmware,
        topic: &str,
        payload: &[u8],
        downloading: bool,
    ) -> Option<OtaUrl> {
        let Ok(body) = serde_json::from_slice::<Value>(payload) else {
            tracing::warn!(node = %self.spec.info.node_id, %topic, "node ignoring malformed message");
            return None;
        };
        if topic.ends_with("/otaurl") {
            let url: OtaUrl = serde_json::from_value(body).ok()?;
            if downloading {
                return None;
            }
            if self.spec.require_approval && !fw.approved {
                fw.info = json!({"job_id": url.ota_job_id, "fw_version": url.fw_version});
                lock(&self.stats).pending_job = Some(url.ota_job_id.clone());
                self.publish(client, "params/local", json!({"OTA": {"Info": fw.info}}))
                    .await;
                self.ota_status(client, &url.ota_job_id, "delayed", "Waiting for Approval")
                    .await;
                fw.pending = Some(url);
                return None;
            }
            // Approval is valid for one fetch only.
            fw.approved = false;
            fw.pending = None;
            lock(&self.stats).pending_job = None;
            return Some(url);
        }
        if topic.ends_with("/params/remote") {
            if let Some(op) = body
                .get("OTA")
                .and_then(|o| o.get("Operation"))
                .and_then(Value::as_str)
            {
                match op {
                    "start" => {
                        lock(&self.stats).starts_received += 1;
                        if !downloading {
                            fw.approved = true;
                            self.fetch(client, fw).await;
                        }
                    }
                    "check" => {
                        lock(&self.stats).checks_received += 1;
                        if !downloading {
                            self.fetch(client, fw).await;
                        }
                    }
                    other => {
                        tracing::warn!(node = %self.spec.info.node_id, op = other, "unknown OTA operation")
                    }
                }
            }
            if let Some(light) = body.get("Light").and_then(Value::as_object) {
                let mut changed = serde_json::Map::new();
                if let Some(p) = light.get("Power").and_then(Value::as_bool) {
                    fw.power = p;
                    changed.insert("Power".into(), json!(p));
                }
                if let Some(b) = light.get("Brightness").and_then(Value::as_i64) {
                    fw.brightness = b.clamp(0, 100);
                    changed.insert("Brightness".into(), json!(fw.brightness));
                }
                if !changed.is_empty() {
                    self.publish(client, "params/local", json!({"Light": changed}))
                        .await;
                }
            }
        }
        None
    }
}

/// Publishes OTA status from the download task.
struct Reporter {
    node_id: String,
    basic_ingest: bool,
    stats: Arc<Mutex<NodeStats>>,
}

impl Reporter {
    async fn status(&self, client: &AsyncClient, job: &str, status: &str, text: &str) {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let body = json!({"ota_job_id": job, "status": status, "additional_info": text, "ts": ts});
        let _ = client
            .publish(
                node_topic(&self.node_id, "otastatus", self.basic_ingest),
                QoS::AtLeastOnce,
                false,
                body.to_string(),
            )
            .await;
    }
}

enum DownloadResult {
    Reboot { job: String, new_version: String },
    Ended,
}

/// Downloads and "flashes" an image, reporting progress as the firmware does.
async fn download(
    env: &FleetEnv,
    behaviour: Behaviour,
    u: &OtaUrl,
    me: &Reporter,
    c: &AsyncClient,
) -> DownloadResult {
    lock(&me.stats).downloads_started += 1;
    let job = u.ota_job_id.as_str();
    me.status(c, job, "in-progress", "Starting OTA Upgrade")
        .await;
    if behaviour == Behaviour::SameVersion {
        me.status(c, job, "rejected", "Same version received").await;
        return DownloadResult::Ended;
    }
    me.status(c, job, "in-progress", "Downloading Firmware Image")
        .await;
    let step = if behaviour == Behaviour::SlowDownload {
        env.timing.download_step * 5
    } else {
        env.timing.download_step
    };
    const ATTEMPTS: u32 = 3;
    for attempt in 1..=ATTEMPTS {
        let bytes = match env
            .http
            .get(&u.url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
        {
            Ok(r) => r.bytes().await.ok(),
            Err(e) => {
                tracing::warn!(node = %me.node_id, error = %e, "firmware download failed");
                None
            }
        };
        let Some(bytes) = bytes else {
            if attempt == ATTEMPTS {
                me.status(c, job, "failed", "Firmware image download failed")
                    .await;
                return DownloadResult::Ended;
            }
            tokio::time::sleep(step).await;
            continue;
        };
        if let Some(want) = &u.file_md5 {
            if !hex(&Md5::digest(&bytes)).eq_ignore_ascii_case(want) {
                me.status(c, job, "failed", "Image validation failed: MD5 mismatch")
                    .await;
                return DownloadResult::Ended;
            }
        }
        let stop_at = if behaviour == Behaviour::DownloadFails {
            40
        } else {
            100
        };
        for pct in (10..=stop_at).step_by(10) {
            tokio::time::sleep(step).await;
            me.status(
                c,
                job,
                "in-progress",
                &format!("Downloaded {pct}% Firmware Image"),
            )
            .await;
        }
        if behaviour == Behaviour::DownloadFails {
            if attempt == ATTEMPTS {
                me.status(
                    c,
                    job,
                    "failed",
                    "Firmware image download failed after 3 attempts",
                )
                .await;
                return DownloadResult::Ended;
            }
            me.status(
                c,
                job,
                "in-progress",
                &format!(
                    "Download interrupted, retrying (attempt {} of {ATTEMPTS})",
                    attempt + 1
                ),
            )
            .await;
            continue;
        }
        me.status(c, job, "in-progress", "Firmware Image download complete")
            .await;
        me.status(c, job, "in-progress", "Rebooting into new firmware")
            .await;
        return DownloadResult::Reboot {
            job: job.to_string(),
            new_version: u.fw_version.clone(),
        };
    }
    DownloadResult::Ended
}
