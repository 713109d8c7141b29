//! Simulated ESP RainMaker nodes, each its own MQTT client (own client id,
//! last will, QoS 1), behaving like Espressif's node firmware
//! (`esp_rmaker_ota.c`) as `docs/rainmaker.md` describes it:
//!
//! - At boot: `config` and `params/local/init` (the user-approval layout's
//!   `Info` as the string `"{}"`), then the automatic `otafetch`; the offer
//!   (`Info={"job_id","fw_version"}` and `delayed` "Waiting for Approval")
//!   only arrives once the cloud has answered on `otaurl`.
//! - An install: the clock and download-window checks, then up to 3 attempts,
//!   each starting with "Starting OTA Upgrade (HTTPS attempt N/3)" and failing
//!   with `"OTA Attempt N/3 failed: <cause>"`; after the last failed attempt the
//!   node fetches again later (the job is still open in the cloud).
//! - Progress percentages only on nodes built with progress reporting.
//! - With rollback enabled: "Rebooting into new firmware", a real reboot (the
//!   connection drops without DISCONNECT, so the last will fires), and
//!   `success` only once the new image is connected again; without rollback,
//!   `success` before the reboot.
//! - Rollbacks reported as `rejected` or as `failed`, two OTA service layouts,
//!   and the ways real devices misbehave (see [`Behaviour`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::cloud::{hex, image_version, DownloadWindow};
use super::wire::{initial_params, node_config, node_topic, NodeInfo, OtaLayout};

/// Download attempts per fetch (the firmware's `CONFIG_ESP_RMAKER_OTA_MAX_RETRIES` default).
pub const ATTEMPTS: u32 = 3;

/// The texts the simulated firmware reports in `otastatus.additional_info`,
/// verbatim from the reference.
pub mod texts {
    use super::ATTEMPTS;

    /// `delayed`: the user-approval recipe asks its user.
    pub const WAITING_FOR_APPROVAL: &str = "Waiting for Approval";
    /// `delayed`: the node has no clock yet and fetches again later.
    pub const NO_TIME: &str = "No time information available yet.";
    /// `delayed`: the job's download window is closed now.
    pub const NOT_IN_DOWNLOAD_WINDOW: &str = "Not within download window.";
    /// `in-progress`, progress reporting only.
    pub const DOWNLOADING: &str = "Downloading Firmware Image";
    /// `in-progress`, progress reporting only.
    pub const DOWNLOAD_COMPLETE: &str = "Firmware Image download complete";
    /// `in-progress`, rollback enabled: the node is about to reboot.
    pub const REBOOTING: &str = "Rebooting into new firmware";
    /// `success`, rollback enabled: the new image connected after its reboot.
    pub const VERIFIED: &str = "OTA Upgrade finished and verified successfully";
    /// `success`, rollback disabled: sent before the reboot.
    pub const FINISHED: &str = "OTA Upgrade finished successfully";
    /// `rejected`: the old image is back after a failed verification.
    pub const ROLLED_BACK: &str = "Firmware rolled back";
    /// `failed`: the same rollback, from firmware built to report it as a failure.
    pub const ROLLBACK_AS_FAILURE: &str = "MQTT did not connect within 90 seconds";
    /// `rejected`: the image carries the running version.
    pub const SAME_VERSION: &str = "Same version received";
    /// Cause of a failed attempt: the connection broke during the download.
    pub const INTERRUPTED: &str = "Image download interrupted";
    /// Cause of a failed attempt: the HTTP read timed out.
    pub const EAGAIN: &str = "ESP_ERR_HTTP_EAGAIN";

    /// `in-progress` at the start of attempt `attempt` (1-based).
    pub fn starting(attempt: u32) -> String {
        format!("Starting OTA Upgrade (HTTPS attempt {attempt}/{ATTEMPTS})")
    }

    /// `failed` for attempt `attempt` (1-based); final only for the last one.
    pub fn attempt_failed(attempt: u32, cause: &str) -> String {
        format!("OTA Attempt {attempt}/{ATTEMPTS} failed: {cause}")
    }

    /// `in-progress` every 10 %, progress reporting only.
    pub fn downloaded(pct: u32) -> String {
        format!("Downloaded {pct}% Firmware Image")
    }
}

/// How a simulated node behaves when it is asked to update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Downloads, reboots, reports success.
    Normal,
    /// Every attempt breaks off ("OTA Attempt N/3 failed: Image download
    /// interrupted" three times); the node fetches again after
    /// [`Timing::refetch_after_fail`].
    DownloadFails,
    /// Attempt 1 fails ("OTA Attempt 1/3 failed: ESP_ERR_HTTP_EAGAIN"),
    /// attempt 2 succeeds.
    RetryThenSucceeds,
    /// The node refuses the image: `rejected` "Same version received" (any
    /// node does so for an image of its running version).
    SameVersion,
    /// The new image never connects; after [`Timing::verify_window`] the old
    /// one boots and reports `rejected` "Firmware rolled back".
    Rollback,
    /// The same rollback reported as `failed` "MQTT did not connect within 90
    /// seconds": the job stays open and the node fetches (and offers) the same
    /// image again after [`Timing::refetch_after_fail`], so it can toggle.
    RollbackReportedAsFailure,
    /// Like `Normal`, with a download five times slower.
    SlowDownload,
    /// At its first boot, publishes its offer and then drops off the network
    /// ([`Timing::offline_after`] after the offer is acknowledged by the
    /// broker) until told to come back.
    Offline,
    /// Drops off and comes back periodically.
    Flapping,
    /// Online a few seconds out of every period (battery device).
    Sleepy,
}

impl Behaviour {
    fn rolls_back(self) -> bool {
        matches!(
            self,
            Behaviour::Rollback | Behaviour::RollbackReportedAsFailure
        )
    }
}

/// Timings of the simulated firmware. Tests use [`Timing::fast`], the demo
/// [`Timing::demo`], and [`Timing::real`] is the firmware's own.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Delay from MQTT connect to the automatic `otafetch` (firmware: 5 s).
    pub auto_fetch: Duration,
    /// Time per 10 % of download.
    pub download_step: Duration,
    /// From the last report of an install ("Rebooting into new firmware", or
    /// `success` without rollback) to the reboot (firmware: 10 s).
    pub reboot_delay: Duration,
    /// Time the node is away while rebooting.
    pub reboot: Duration,
    /// How long a new image has to connect before the bootloader goes back to
    /// the old one (firmware: 90 s, configurable 30–600 s). A rolling-back node
    /// stays offline for `reboot + verify_window`.
    pub verify_window: Duration,
    /// After the last attempt failed (or a rollback was reported as `failed`),
    /// the node fetches again this much later (firmware: 5 min).
    pub refetch_after_fail: Duration,
    /// A node without a clock fetches again this much later (firmware: 30 s).
    pub no_clock_retry: Duration,
    /// Pause between a failed download attempt and the next one (the
    /// firmware's own pause is not documented; the demo's lets people read
    /// "attempt 1 of 3 failed").
    pub retry_delay: Duration,
    /// A node outside the download window checks again after this long, or
    /// when the window opens if that is sooner.
    pub window_recheck: Duration,
    /// `Offline` nodes drop off this long after their offer was acknowledged.
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
            reboot_delay: Duration::from_secs(1),
            reboot: Duration::from_secs(2),
            verify_window: Duration::from_secs(3),
            refetch_after_fail: Duration::from_secs(30),
            no_clock_retry: Duration::from_secs(3),
            retry_delay: Duration::from_secs(4),
            window_recheck: Duration::from_secs(5),
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
            reboot_delay: Duration::from_millis(50),
            reboot: Duration::from_millis(200),
            verify_window: Duration::from_millis(300),
            refetch_after_fail: Duration::from_millis(1500),
            no_clock_retry: Duration::from_millis(200),
            retry_delay: Duration::from_millis(50),
            window_recheck: Duration::from_millis(200),
            offline_after: Duration::from_millis(300),
            flap_period: Duration::from_secs(2),
            sleepy_awake: Duration::from_millis(800),
            sleepy_period: Duration::from_secs(3),
        }
    }

    /// The firmware's own defaults.
    pub fn real() -> Self {
        Timing {
            auto_fetch: Duration::from_secs(5),
            download_step: Duration::from_secs(2),
            reboot_delay: Duration::from_secs(10),
            reboot: Duration::from_secs(6),
            verify_window: Duration::from_secs(90),
            refetch_after_fail: Duration::from_secs(300),
            no_clock_retry: Duration::from_secs(30),
            retry_delay: Duration::from_secs(5),
            // The firmware waits for the window to open, however far away.
            window_recheck: Duration::from_secs(86_400),
            ..Self::demo()
        }
    }
}

/// Everything needed to start one node. [`NodeSpec::new`] gives the common
/// real device: user-approval layout, rollback on, no progress reports.
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
    /// Only the user-approval layout can ask.
    pub require_approval: bool,
    /// Publish on `$aws/rules/<rule>/node/<id>/...` (the firmware default)
    /// instead of `node/<id>/...`.
    pub basic_ingest: bool,
    /// Layout of the `esp.service.ota` service.
    pub ota_layout: OtaLayout,
    /// Built with progress reporting ("Downloading Firmware Image",
    /// "Downloaded N% Firmware Image", "Firmware Image download complete").
    /// Off by default, as in the firmware.
    pub progress: bool,
    /// Built with rollback (common): `success` only after the reboot, once the
    /// new image is connected. The rollback behaviours imply it.
    pub rollback: bool,
    /// No clock at boot: the first install after each boot reports `delayed`
    /// "No time information available yet." and fetches again after
    /// [`Timing::no_clock_retry`]. (The firmware checks the clock only for
    /// jobs with a download window or validity; the flag forces it for any
    /// job so that a test needs no window.)
    pub no_clock: bool,
    /// Pins the node's local time of day, in minutes after midnight, for the
    /// download-window check; `None`: the host's clock in UTC. Changed at run
    /// time with [`Fleet::set_local_time`].
    pub local_time: Option<u16>,
}

impl NodeSpec {
    /// A node running `fw_version` with the defaults of most real devices.
    pub fn new(info: NodeInfo, fw_version: &str) -> Self {
        NodeSpec {
            info,
            fw_version: fw_version.to_string(),
            behaviour: Behaviour::Normal,
            require_approval: true,
            basic_ingest: true,
            ota_layout: OtaLayout::UserApproval,
            progress: false,
            rollback: true,
            no_clock: false,
            local_time: None,
        }
    }
}

impl Default for NodeSpec {
    fn default() -> Self {
        NodeSpec::new(NodeInfo::default(), "1.0.0")
    }
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
    /// Layout of the OTA service.
    pub ota_layout: OtaLayout,
    /// Whether node-side approval is on.
    pub require_approval: bool,
    /// Connected to the broker right now.
    pub online: bool,
    /// `Operation=start` writes received (ignored ones included).
    pub starts_received: u32,
    /// `Operation=start` writes ignored on purpose ([`Fleet::ignore_next_start`]).
    pub starts_ignored: u32,
    /// `Operation` writes a stock-layout node ignored (it has no `Operation`).
    pub operations_ignored: u32,
    /// `Operation=check` writes received.
    pub checks_received: u32,
    /// `otafetch` messages sent.
    pub fetches: u32,
    /// Job waiting for approval, if any.
    pub pending_job: Option<String>,
    /// Installs started (one per accepted URL, whatever its attempts).
    pub downloads_started: u32,
    /// Download attempts started.
    pub attempts: u32,
    /// Updates that ended with the new firmware running.
    pub updates_applied: u32,
    /// Reboots into a new image that rolled back to the old one.
    pub rollbacks: u32,
    /// Boots that reached MQTT (1 at start).
    pub boots: u32,
}

/// Run-time controls of one node, changed through the [`Fleet`].
#[derive(Debug, Default)]
struct Control {
    ignore_next_start: bool,
    local_time: Option<u16>,
    /// The next time the node comes online it boots afresh (it was powered
    /// off, not just off the network).
    cold_boot: bool,
}

struct NodeHandle {
    node_id: String,
    stats: Arc<Mutex<NodeStats>>,
    control: Arc<Mutex<Control>>,
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
                    ota_layout: spec.ota_layout,
                    require_approval: spec.require_approval,
                    online: false,
                    starts_received: 0,
                    starts_ignored: 0,
                    operations_ignored: 0,
                    checks_received: 0,
                    fetches: 0,
                    pending_job: None,
                    downloads_started: 0,
                    attempts: 0,
                    updates_applied: 0,
                    rollbacks: 0,
                    boots: 0,
                }));
                let control = Arc::new(Mutex::new(Control {
                    cold_boot: false,
                    ignore_next_start: false,
                    local_time: spec.local_time,
                }));
                let (tx, rx) = watch::channel(true);
                let tx = Arc::new(tx);
                let node_id = spec.info.node_id.clone();
                let node = SimNode {
                    spec,
                    env: env.clone(),
                    stats: stats.clone(),
                    control: control.clone(),
                    stock: Arc::new(Mutex::new(StockOta::default())),
                    want_online: tx.clone(),
                    online_rx: rx,
                };
                let delay = Duration::from_micros(i as u64 * 500);
                let task = tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    node.run().await;
                });
                NodeHandle {
                    node_id,
                    stats,
                    control,
                    want_online: tx,
                    task,
                }
            })
            .collect();
        Fleet {
            nodes: Arc::new(nodes),
        }
    }

    fn handle(&self, id: &str) -> Option<&NodeHandle> {
        self.nodes.iter().find(|n| n.node_id == id)
    }

    /// A snapshot of every node's stats.
    pub fn stats(&self) -> Vec<NodeStats> {
        self.nodes.iter().map(|n| lock(&n.stats).clone()).collect()
    }

    /// One node's stats.
    pub fn node(&self, id: &str) -> Option<NodeStats> {
        self.handle(id).map(|n| lock(&n.stats).clone())
    }

    /// Brings a node onto the network or takes it off. False if unknown.
    pub fn set_online(&self, id: &str, online: bool) -> bool {
        self.handle(id)
            .map(|n| n.want_online.send_replace(online))
            .is_some()
    }

    /// Makes the node ignore the next `Operation=start` it receives (it is
    /// counted in `starts_received` and `starts_ignored`, nothing else
    /// happens), as a device that misses a write. False if unknown.
    pub fn ignore_next_start(&self, id: &str) -> bool {
        self.handle(id)
            .map(|n| lock(&n.control).ignore_next_start = true)
            .is_some()
    }

    /// Powers a node off (it drops off the network); the next
    /// [`Fleet::set_online`] boots it afresh: `Info` back to `"{}"`, a new
    /// fetch, whatever job the cloud now has for it. False if unknown.
    pub fn power_off(&self, id: &str) -> bool {
        match self.handle(id) {
            Some(n) => {
                lock(&n.control).cold_boot = true;
                n.want_online.send_replace(false);
                true
            }
            None => false,
        }
    }

    /// Pins the node's local time of day (minutes after midnight, taken
    /// modulo a day) for its download-window checks; `None` goes back to the
    /// host's clock in UTC. A node waiting for its window sees the change at
    /// its next check. False if unknown.
    pub fn set_local_time(&self, id: &str, minutes: Option<u16>) -> bool {
        self.handle(id)
            .map(|n| lock(&n.control).local_time = minutes.map(|m| m % 1440))
            .is_some()
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
    #[serde(default)]
    metadata: Option<Value>,
}

impl OtaUrl {
    /// The download window of the metadata; a malformed one is ignored, as
    /// the firmware's lenient JSON reader would.
    fn download_window(&self) -> Option<DownloadWindow> {
        let w = self.metadata.as_ref()?.get("download_window")?;
        serde_json::from_value(w.clone()).ok()
    }
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

/// What the node reports once it is connected after an install's reboot.
enum AfterBoot {
    /// The new image connected: `success`.
    Verified { job: String },
    /// The old image is back: `rejected`, or `failed` when built so.
    RolledBack { job: String, as_failure: bool },
}

/// The stock layout's `Status` and `Info` params: the last report, kept
/// across reboots.
#[derive(Debug, Default)]
struct StockOta {
    status: String,
    info: String,
}

struct SimNode {
    spec: NodeSpec,
    env: FleetEnv,
    stats: Arc<Mutex<NodeStats>>,
    control: Arc<Mutex<Control>>,
    stock: Arc<Mutex<StockOta>>,
    want_online: Arc<watch::Sender<bool>>,
    online_rx: watch::Receiver<bool>,
}

/// Mutable firmware state that survives across sessions (but not reboots,
/// for the parts a boot resets).
struct Firmware {
    fw_version: String,
    power: bool,
    brightness: i64,
    /// The user-approval layout's `Info`: the string `"{}"` at boot, objects later.
    info: Value,
    /// `Operation=start` received: the next URL is installed.
    approved: bool,
    /// A job delayed by the clock or window check: its URL is installed when
    /// it comes back, without asking again.
    resume_job: Option<String>,
    /// False at boot on nodes without a clock, until their first time check.
    clock_ready: bool,
    /// When the next `otafetch` goes out.
    next_fetch: Option<Instant>,
}

/// What an incoming message leads to.
enum Action {
    None,
    /// The node published an offer (`Info` and "Waiting for Approval").
    Offered,
    /// Install this URL now.
    Install(OtaUrl),
}

/// How an install ended.
enum Installed {
    /// Downloaded; the node reboots.
    Reboot { job: String, new_version: String },
    /// Every attempt failed: the node fetches again later.
    Failed,
    /// The image was refused.
    Rejected,
}

/// Longest wait for the broker to acknowledge what a node published before
/// it drops off (a broker that went away acknowledges nothing).
const ACK_GRACE: Duration = Duration::from_secs(3);

impl SimNode {
    async fn run(mut self) {
        let mut fw = Firmware {
            fw_version: self.spec.fw_version.clone(),
            power: true,
            brightness: 60,
            info: json!("{}"),
            approved: false,
            resume_job: None,
            clock_ready: true,
            next_fetch: None,
        };
        let mut after: Option<AfterBoot> = None;
        let mut boot = true;
        loop {
            while !*self.online_rx.borrow_and_update() {
                if self.online_rx.changed().await.is_err() {
                    return;
                }
            }
            boot |= std::mem::take(&mut lock(&self.control).cold_boot);
            if boot {
                lock(&self.stats).boots += 1;
                lock(&self.stats).pending_job = None;
                fw.info = json!("{}");
                fw.approved = false;
                fw.resume_job = None;
                fw.clock_ready = !self.spec.no_clock;
                fw.next_fetch = None;
            }
            let end = self.session(&mut fw, boot, after.take()).await;
            lock(&self.stats).online = false;
            boot = false;
            match end {
                SessionEnd::Reboot { job, new_version } => {
                    let t = &self.env.timing;
                    if self.spec.behaviour.rolls_back() {
                        // The new image never reaches MQTT; the bootloader goes
                        // back to the old one once the verification window passed.
                        tokio::time::sleep(t.reboot + t.verify_window).await;
                        lock(&self.stats).rollbacks += 1;
                        after = Some(AfterBoot::RolledBack {
                            job,
                            as_failure: self.spec.behaviour == Behaviour::RollbackReportedAsFailure,
                        });
                    } else {
                        tokio::time::sleep(t.reboot).await;
                        fw.fw_version = new_version;
                        let mut s = lock(&self.stats);
                        s.fw_version = fw.fw_version.clone();
                        s.updates_applied += 1;
                        after = self.spec.rollback.then_some(AfterBoot::Verified { job });
                    }
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

    /// Only the user-approval layout can ask: a stock node installs what it gets.
    fn asks_approval(&self) -> bool {
        self.spec.ota_layout == OtaLayout::UserApproval && self.spec.require_approval
    }

    /// One MQTT connection, from connect to drop.
    async fn session(
        &mut self,
        fw: &mut Firmware,
        boot: bool,
        after: Option<AfterBoot>,
    ) -> SessionEnd {
        let (client, mut el) = AsyncClient::new(self.mqtt_options(), 64);
        // A broker busy accepting thousands of nodes can take longer than
        // rumqttc's default 5 s to answer CONNECT; giving up then only adds a
        // reconnect storm of duplicate client ids.
        let mut net = rumqttc::NetworkOptions::new();
        net.set_connection_timeout(60);
        el.set_network_options(net);
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
        let me = self.reporter(client);
        lock(&self.stats).online = true;
        self.announce(&me, fw, boot).await;
        let t = self.env.timing.clone();
        let now = Instant::now();
        fw.next_fetch = Some(match (&after, boot) {
            // The job is still open after a rollback reported as `failed`: the
            // node asks for it again, but only after the usual retry delay.
            (
                Some(AfterBoot::RolledBack {
                    as_failure: true, ..
                }),
                _,
            ) => now + t.refetch_after_fail,
            (_, true) => now + t.auto_fetch,
            (_, false) => {
                let soon = now + Duration::from_millis(50);
                fw.next_fetch.map_or(soon, |f| f.min(soon))
            }
        });
        if let Some(a) = after {
            self.report_after_boot(&me, fw, a).await;
        }

        let far = now + Duration::from_secs(86400 * 365);
        // An `Offline` node leaves after its offer; one that gets no offer
        // leaves anyway, well after the fetch has had its answer.
        let offline =
            self.spec.behaviour == Behaviour::Offline && boot && lock(&self.stats).boots == 1;
        let mut offline_at = offline.then(|| now + t.auto_fetch * 4 + t.offline_after * 10);
        let periodic = match self.spec.behaviour {
            Behaviour::Flapping => Some((now + t.flap_period, t.flap_period / 2)),
            Behaviour::Sleepy => Some((
                now + t.sleepy_awake,
                t.sleepy_period.saturating_sub(t.sleepy_awake),
            )),
            _ => None,
        };
        let (dl_tx, mut dl_rx) = mpsc::channel::<Installed>(1);
        let mut install: Option<JoinHandle<()>> = None;
        let mut downloading = false;
        // Set when the session is to end: it does once the broker has
        // acknowledged everything published, so a report is never overtaken
        // by the last will.
        let mut ending: Option<(SessionEnd, Instant)> = None;
        let mut online_rx = self.online_rx.clone();
        loop {
            if let Some((_, since)) = &ending {
                if me.unacked.load(Ordering::SeqCst) == 0 || since.elapsed() > ACK_GRACE {
                    if let Some(h) = install.take() {
                        h.abort();
                    }
                    // Dropping the event loop closes the socket without
                    // DISCONNECT: the broker publishes the last will.
                    drop(el);
                    return match ending.take() {
                        Some((end, _)) => end,
                        None => SessionEnd::Offline,
                    };
                }
            }
            let fetch_due = fw.next_fetch.filter(|_| !downloading && ending.is_none());
            let offline_due = offline_at.filter(|_| !downloading && ending.is_none());
            let periodic_due = periodic
                .as_ref()
                .map(|p| p.0)
                .filter(|_| !downloading && ending.is_none());
            tokio::select! {
                ev = el.poll() => match ev {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        match self.on_message(&me, fw, &p.topic, &p.payload, downloading).await {
                            Action::Install(url) => {
                                downloading = true;
                                let job = Install {
                                    env: self.env.clone(),
                                    behaviour: self.spec.behaviour,
                                    progress: self.spec.progress,
                                    rollback: self.spec.rollback || self.spec.behaviour.rolls_back(),
                                    running: fw.fw_version.clone(),
                                    url,
                                    me: me.clone(),
                                };
                                let tx = dl_tx.clone();
                                install = Some(tokio::spawn(async move {
                                    let r = job.run().await;
                                    let _ = tx.send(r).await;
                                }));
                            }
                            Action::Offered => {
                                if offline_at.is_some() {
                                    offline_at = Some(Instant::now() + t.offline_after);
                                }
                            }
                            Action::None => {}
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        let _ = me.unacked.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                            Some(n.saturating_sub(1))
                        });
                    }
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        // The broker came back (e.g. restarted): subscribe again,
                        // re-report everything and fetch, as the firmware does
                        // on every MQTT connect.
                        me.unacked.store(0, Ordering::SeqCst);
                        lock(&self.stats).online = true;
                        self.announce(&me, fw, false).await;
                        if !downloading {
                            fw.next_fetch = Some(Instant::now() + Duration::from_millis(50));
                        }
                    }
                    Ok(_) => {}
                    Err(_) => {
                        lock(&self.stats).online = false;
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                },
                _ = tokio::time::sleep_until(fetch_due.unwrap_or(far)), if fetch_due.is_some() => {
                    fw.next_fetch = None;
                    self.fetch(&me, fw).await;
                }
                r = dl_rx.recv() => {
                    downloading = false;
                    install = None;
                    match r {
                        Some(Installed::Reboot { job, new_version }) => {
                            // Without rollback `success` is already out: the
                            // offer is used up before the reboot.
                            if !self.spec.rollback && !self.spec.behaviour.rolls_back() {
                                self.clear_offer(&me, fw).await;
                            }
                            ending = Some((SessionEnd::Reboot { job, new_version }, Instant::now()));
                        }
                        Some(Installed::Failed) => {
                            self.clear_offer(&me, fw).await;
                            fw.next_fetch = Some(Instant::now() + t.refetch_after_fail);
                        }
                        Some(Installed::Rejected) => self.clear_offer(&me, fw).await,
                        None => {}
                    }
                }
                _ = tokio::time::sleep_until(periodic_due.unwrap_or(far)), if periodic_due.is_some() => {
                    let away = periodic.as_ref().map_or(Duration::ZERO, |p| p.1);
                    ending = Some((SessionEnd::Away(away), Instant::now()));
                }
                _ = tokio::time::sleep_until(offline_due.unwrap_or(far)), if offline_due.is_some() => {
                    ending = Some((SessionEnd::Offline, Instant::now()));
                }
                _ = tokio::time::sleep(Duration::from_millis(20)), if ending.is_some() => {}
                r = online_rx.changed() => {
                    if r.is_err() || !*online_rx.borrow() {
                        if let Some(h) = install.take() {
                            h.abort();
                        }
                        drop(el);
                        return SessionEnd::Offline;
                    }
                }
            }
        }
    }

    fn reporter(&self, client: AsyncClient) -> Reporter {
        Reporter {
            node_id: self.spec.info.node_id.clone(),
            basic_ingest: self.spec.basic_ingest,
            layout: self.spec.ota_layout,
            client,
            unacked: Arc::new(AtomicUsize::new(0)),
            stats: self.stats.clone(),
            stock: self.stock.clone(),
        }
    }

    /// Subscribes and reports config and params (at boot: the initial params,
    /// with the user-approval layout's `Info` as the string `"{}"`).
    async fn announce(&self, me: &Reporter, fw: &Firmware, first: bool) {
        let id = &self.spec.info.node_id;
        for s in ["params/remote", "otaurl"] {
            let _ = me
                .client
                .subscribe(format!("node/{id}/{s}"), QoS::AtLeastOnce)
                .await;
        }
        let layout = self.spec.ota_layout;
        me.publish(
            "config",
            node_config(&self.spec.info, &fw.fw_version, layout),
        )
        .await;
        let mut params = initial_params(&self.spec.info, fw.power, fw.brightness, layout);
        match layout {
            OtaLayout::UserApproval => params["OTA"]["Info"] = fw.info.clone(),
            OtaLayout::Stock => {
                let s = lock(&self.stock);
                params["OTA"]["Status"] = json!(s.status);
                params["OTA"]["Info"] = json!(s.info);
            }
        }
        let suffix = if first {
            "params/local/init"
        } else {
            "params/local"
        };
        me.publish(suffix, params).await;
    }

    async fn report_after_boot(&self, me: &Reporter, fw: &mut Firmware, a: AfterBoot) {
        match a {
            AfterBoot::Verified { job } => me.status(&job, "success", texts::VERIFIED).await,
            AfterBoot::RolledBack {
                job,
                as_failure: false,
            } => me.status(&job, "rejected", texts::ROLLED_BACK).await,
            AfterBoot::RolledBack {
                job,
                as_failure: true,
            } => me.status(&job, "failed", texts::ROLLBACK_AS_FAILURE).await,
        }
        self.clear_offer(me, fw).await;
    }

    /// The offer is used up: the user-approval layout's `Info` goes back to `{}`.
    async fn clear_offer(&self, me: &Reporter, fw: &mut Firmware) {
        lock(&self.stats).pending_job = None;
        if self.spec.ota_layout == OtaLayout::UserApproval {
            fw.info = json!({});
            me.publish("params/local", json!({"OTA": {"Info": {}}}))
                .await;
        }
    }

    async fn fetch(&self, me: &Reporter, fw: &Firmware) {
        lock(&self.stats).fetches += 1;
        me.publish(
            "otafetch",
            json!({"node_id": self.spec.info.node_id, "fw_version": fw.fw_version}),
        )
        .await;
    }

    /// The node's local time of day in minutes, for the download window.
    fn local_minute(&self) -> u16 {
        lock(&self.control).local_time.unwrap_or_else(|| {
            let secs = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            ((secs / 60) % 1440) as u16
        })
    }

    /// Handles one message; returns what the session should do next.
    async fn on_message(
        &self,
        me: &Reporter,
        fw: &mut Firmware,
        topic: &str,
        payload: &[u8],
        downloading: bool,
    ) -> Action {
        let Ok(body) = serde_json::from_slice::<Value>(payload) else {
            tracing::warn!(node = %self.spec.info.node_id, %topic, "node ignoring malformed message");
            return Action::None;
        };
        if topic.ends_with("/otaurl") {
            let url: OtaUrl = match serde_json::from_value(body) {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!(node = %self.spec.info.node_id, error = %e, "node ignoring malformed otaurl");
                    return Action::None;
                }
            };
            if downloading {
                return Action::None;
            }
            return self.on_ota_url(me, fw, url).await;
        }
        if topic.ends_with("/params/remote") {
            self.on_params(me, fw, &body, downloading).await;
        }
        Action::None
    }

    /// An `otaurl`: offer it, delay it, or install it, in the firmware's order
    /// (the approval recipe first, then the metadata's time checks).
    async fn on_ota_url(&self, me: &Reporter, fw: &mut Firmware, url: OtaUrl) -> Action {
        let job = url.ota_job_id.clone();
        let resumed = fw.resume_job.take().is_some_and(|j| j == job);
        if self.asks_approval() && !fw.approved && !resumed {
            fw.info = json!({"job_id": job, "fw_version": url.fw_version});
            lock(&self.stats).pending_job = Some(job.clone());
            me.publish("params/local", json!({"OTA": {"Info": fw.info}}))
                .await;
            me.status(&job, "delayed", texts::WAITING_FOR_APPROVAL)
                .await;
            return Action::Offered;
        }
        // Approval is valid for one fetch only.
        fw.approved = false;
        let t = &self.env.timing;
        if !fw.clock_ready {
            // SNTP has synchronised by the time the retry comes round.
            fw.clock_ready = true;
            fw.resume_job = Some(job.clone());
            me.status(&job, "delayed", texts::NO_TIME).await;
            fw.next_fetch = Some(Instant::now() + t.no_clock_retry);
            return Action::None;
        }
        if let Some(w) = url.download_window() {
            let minute = self.local_minute();
            if !w.contains(minute) {
                fw.resume_job = Some(job.clone());
                me.status(&job, "delayed", texts::NOT_IN_DOWNLOAD_WINDOW)
                    .await;
                // The firmware sleeps until the window opens (+5 s); the
                // simulator checks more often so a test can move the clock.
                let until = Duration::from_secs(u64::from(w.minutes_until_open(minute)) * 60 + 5);
                fw.next_fetch = Some(Instant::now() + until.min(t.window_recheck));
                return Action::None;
            }
        }
        lock(&self.stats).pending_job = None;
        Action::Install(url)
    }

    async fn on_params(&self, me: &Reporter, fw: &mut Firmware, body: &Value, downloading: bool) {
        let ota = body.get("OTA");
        if let Some(op) = ota.and_then(|o| o.get("Operation")) {
            if self.spec.ota_layout == OtaLayout::Stock {
                lock(&self.stats).operations_ignored += 1;
                tracing::info!(node = %self.spec.info.node_id, %op, "stock OTA service has no Operation; write ignored");
            } else {
                match op.as_str() {
                    Some("start") => {
                        let ignore = {
                            let mut c = lock(&self.control);
                            std::mem::take(&mut c.ignore_next_start)
                        };
                        {
                            let mut s = lock(&self.stats);
                            s.starts_received += 1;
                            s.starts_ignored += u32::from(ignore);
                        }
                        if ignore {
                            tracing::info!(node = %self.spec.info.node_id, "ignoring this Operation=start, as told");
                        } else if !downloading {
                            fw.approved = true;
                            self.fetch(me, fw).await;
                        }
                    }
                    Some("check") => {
                        lock(&self.stats).checks_received += 1;
                        if !downloading {
                            self.fetch(me, fw).await;
                        }
                    }
                    _ => {
                        tracing::warn!(node = %self.spec.info.node_id, %op, "unknown OTA operation")
                    }
                }
            }
        }
        if let Some(url) = ota.and_then(|o| o.get("URL")) {
            // The cloud of this simulator delivers jobs on `otaurl` only.
            tracing::info!(node = %self.spec.info.node_id, %url, "OTA URL param writes are not simulated; ignored");
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
                me.publish("params/local", json!({"Light": changed})).await;
            }
        }
    }
}

/// Publishes for one session of a node, counting what the broker has not
/// acknowledged yet. Cheap to clone (the install task has one).
#[derive(Clone)]
struct Reporter {
    node_id: String,
    basic_ingest: bool,
    layout: OtaLayout,
    client: AsyncClient,
    unacked: Arc<AtomicUsize>,
    stats: Arc<Mutex<NodeStats>>,
    stock: Arc<Mutex<StockOta>>,
}

impl Reporter {
    async fn publish(&self, suffix: &str, payload: Value) {
        self.unacked.fetch_add(1, Ordering::SeqCst);
        let r = self
            .client
            .publish(
                node_topic(&self.node_id, suffix, self.basic_ingest),
                QoS::AtLeastOnce,
                false,
                payload.to_string(),
            )
            .await;
        if r.is_err() {
            let _ = self
                .unacked
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    Some(n.saturating_sub(1))
                });
        }
    }

    /// Reports OTA status on `otastatus`; a stock node also mirrors it in its
    /// `Status` and `Info` params, as the SDK's OTA over params does.
    async fn status(&self, job: &str, status: &str, text: &str) {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.publish(
            "otastatus",
            json!({"ota_job_id": job, "status": status, "additional_info": text, "ts": ts}),
        )
        .await;
        if self.layout == OtaLayout::Stock {
            {
                let mut s = lock(&self.stock);
                s.status = status.to_string();
                s.info = text.to_string();
            }
            self.publish(
                "params/local",
                json!({"OTA": {"Status": status, "Info": text}}),
            )
            .await;
        }
    }
}

/// One accepted URL, installed in its own task while the session goes on.
struct Install {
    env: FleetEnv,
    behaviour: Behaviour,
    progress: bool,
    rollback: bool,
    running: String,
    url: OtaUrl,
    me: Reporter,
}

/// How one attempt ended.
enum Attempt {
    Downloaded,
    Failed(String),
    Rejected(&'static str),
}

impl Install {
    /// The firmware's retry loop, then its reboot sequence.
    async fn run(self) -> Installed {
        lock(&self.me.stats).downloads_started += 1;
        let job = self.url.ota_job_id.as_str();
        for attempt in 1..=ATTEMPTS {
            lock(&self.me.stats).attempts += 1;
            self.me
                .status(job, "in-progress", &texts::starting(attempt))
                .await;
            match self.attempt(attempt).await {
                Attempt::Downloaded => {}
                Attempt::Failed(cause) => {
                    tracing::info!(node = %self.me.node_id, attempt, %cause, "simulated OTA attempt failed");
                    self.me
                        .status(job, "failed", &texts::attempt_failed(attempt, &cause))
                        .await;
                    if attempt < ATTEMPTS {
                        tokio::time::sleep(self.env.timing.retry_delay).await;
                    }
                    continue;
                }
                Attempt::Rejected(text) => {
                    self.me.status(job, "rejected", text).await;
                    return Installed::Rejected;
                }
            }
            if self.rollback {
                self.me.status(job, "in-progress", texts::REBOOTING).await;
            } else {
                self.me.status(job, "success", texts::FINISHED).await;
            }
            tokio::time::sleep(self.env.timing.reboot_delay).await;
            return Installed::Reboot {
                job: job.to_string(),
                new_version: self.url.fw_version.clone(),
            };
        }
        Installed::Failed
    }

    async fn attempt(&self, attempt: u32) -> Attempt {
        let job = self.url.ota_job_id.as_str();
        if self.progress {
            self.me.status(job, "in-progress", texts::DOWNLOADING).await;
        }
        let step = if self.behaviour == Behaviour::SlowDownload {
            self.env.timing.download_step * 5
        } else {
            self.env.timing.download_step
        };
        let bytes = match self
            .env
            .http
            .get(&self.url.url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
        {
            Ok(r) => match r.bytes().await {
                Ok(b) => b,
                Err(_) => return Attempt::Failed(texts::INTERRUPTED.into()),
            },
            Err(e) => {
                tracing::warn!(node = %self.me.node_id, error = %e, "firmware download failed");
                let cause = if e.is_status() {
                    "ESP_FAIL"
                } else {
                    "ESP_ERR_HTTP_CONNECT"
                };
                return Attempt::Failed(cause.into());
            }
        };
        // The firmware reads the image header before writing anything.
        if self.behaviour == Behaviour::SameVersion
            || image_version(&bytes).as_deref() == Some(self.running.as_str())
        {
            return Attempt::Rejected(texts::SAME_VERSION);
        }
        let breaks_after = match (self.behaviour, attempt) {
            (Behaviour::DownloadFails, _) => Some((40, texts::INTERRUPTED)),
            (Behaviour::RetryThenSucceeds, 1) => Some((40, texts::EAGAIN)),
            _ => None,
        };
        for pct in (10..=100).step_by(10) {
            tokio::time::sleep(step).await;
            if self.progress {
                self.me
                    .status(job, "in-progress", &texts::downloaded(pct))
                    .await;
            }
            if let Some((at, cause)) = breaks_after {
                if pct >= at {
                    return Attempt::Failed(cause.into());
                }
            }
        }
        if let Some(want) = &self.url.file_md5 {
            if !hex(&Md5::digest(&bytes)).eq_ignore_ascii_case(want) {
                return Attempt::Failed("Image validation failed".into());
            }
        }
        if self.progress {
            self.me
                .status(job, "in-progress", texts::DOWNLOAD_COMPLETE)
                .await;
        }
        Attempt::Downloaded
    }
}
