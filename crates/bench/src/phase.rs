//! One benchmark phase, run in its own process: a broker, the simulator's
//! fleet, the engine in a child process, and the load generators. A phase
//! prints one `RESULT <json>` line on stdout; progress goes to stderr.
//!
//! Every wait has a deadline and every load loop a fixed count.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use greenlight_core::rainmaker::parse::{ingest_filters, plain_filters};
use greenlight_core::{AccountConfig, EngineConfig, MemorySecretStore};
use greenlight_sim::rainmaker::{BrokerChoice, RainmakerSim, Scenario, SimConfig, Timing};
use rumqttc::{AsyncClient, Event as MqEvent, EventLoop, MqttOptions, Packet, QoS};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::child::ChildConfig;
use crate::procfs::{self, die_with_parent, mono_ns};
use crate::stats::{summarize, Summary};

/// Which broker a phase runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Broker {
    /// A private mosquitto on a free loopback port.
    Mosquitto,
    /// rumqttd embedded in the simulator's process.
    Embedded,
}

impl std::fmt::Display for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Broker::Mosquitto => "mosquitto",
            Broker::Embedded => "embedded rumqttd",
        })
    }
}

/// What a phase does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseSpec {
    /// Name (`mqtt-mosquitto-10000`...).
    pub name: String,
    /// Broker.
    pub broker: Broker,
    /// Fleet size (0: the engine alone).
    pub nodes: usize,
    /// Info messages timed for detection latency.
    pub latency_samples: usize,
    /// Time between two of them.
    pub latency_gap_ms: u64,
    /// Param messages of the throughput load.
    pub load_msgs: usize,
    /// Length of the window at rest (0: not measured).
    pub rest_window_s: u64,
    /// `Some(jobs)`: the REST-economy phase (a REST-only account), approving this many nodes.
    pub rest_jobs: Option<usize>,
    /// Hard limit for the whole phase.
    pub deadline_s: u64,
}

/// Ingest throughput of one run: the engine and a bare subscriber on the
/// same broker, fed by the same publishers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Throughput {
    /// Param messages published.
    pub msgs: usize,
    /// Publishers.
    pub publishers: usize,
    /// From the first publish to the broker's last PUBACK.
    pub publish_s: f64,
    /// From the first publish until the engine had handled the sentinel that follows the load.
    pub engine_s: Option<f64>,
    /// Same for the bare rumqttc subscriber.
    pub bare_s: Option<f64>,
    /// Load messages the bare subscriber counted (should equal `msgs`).
    pub bare_count: usize,
}

impl Throughput {
    /// Messages per second through the engine.
    pub fn engine_rate(&self) -> Option<f64> {
        self.engine_s.map(|s| self.msgs as f64 / s)
    }
    /// Messages per second to the bare subscriber.
    pub fn bare_rate(&self) -> Option<f64> {
        self.bare_s.map(|s| self.msgs as f64 / s)
    }
    /// Engine rate over bare rate.
    pub fn ratio(&self) -> Option<f64> {
        Some(self.engine_rate()? / self.bare_rate()?)
    }
}

/// CPU of the engine process over a window with no messages.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CpuRest {
    /// Window length, s.
    pub window_s: f64,
    /// CPU time used in it (user + system), ms.
    pub cpu_ms: u64,
    /// Context switches of all its threads in it (wake-ups).
    pub ctxt_switches: u64,
    /// Event lines the engine emitted in it.
    pub events: u64,
}

impl CpuRest {
    /// Percent of one core.
    pub fn percent(&self) -> f64 {
        self.cpu_ms as f64 / (self.window_s * 10.0)
    }
    /// CPU ms per minute.
    pub fn ms_per_min(&self) -> f64 {
        self.cpu_ms as f64 * 60.0 / self.window_s
    }
    /// Wake-ups per second.
    pub fn wakeups_per_s(&self) -> f64 {
        self.ctxt_switches as f64 / self.window_s
    }
}

/// REST economy of a REST-only account.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RestEconomy {
    /// Nodes of the account.
    pub nodes: usize,
    /// From `add_account` to every node's pending update known, s.
    pub discovery_s: Option<f64>,
    /// Requests the simulator served until then, by route.
    pub discovery_requests: BTreeMap<String, u64>,
    /// Window at rest after discovery, s.
    pub idle_window_s: f64,
    /// Requests in it, by route.
    pub idle_requests: BTreeMap<String, u64>,
    /// Jobs approved.
    pub jobs: usize,
    /// Jobs the engine saw end.
    pub jobs_done: usize,
    /// Their end states as the engine reported them.
    pub job_states: BTreeMap<String, usize>,
    /// Requests from the approval until the engine saw the last job end, by route.
    pub job_requests: BTreeMap<String, u64>,
    /// `ota_status` requests in 6 s after that.
    pub tail_status_requests: u64,
    /// Approval → terminal status in the cloud, s, per job.
    pub job_durations_s: Vec<f64>,
    /// The engine's fast `ota_status` period, s.
    pub poll_every_s: f64,
    /// Approval → the engine saw the last job end, s.
    pub jobs_wall_s: Option<f64>,
}

impl RestEconomy {
    /// `ota_status` requests while the jobs ran.
    pub fn status_requests(&self) -> u64 {
        self.job_requests
            .get("GET user/nodes/ota_status")
            .copied()
            .unwrap_or(0)
    }
    /// The fewest `ota_status` requests that follow these jobs at the
    /// engine's own pace: one per poll period a job runs in the cloud, at
    /// least one per job.
    pub fn status_minimum(&self) -> u64 {
        self.job_durations_s
            .iter()
            .map(|d| ((d / self.poll_every_s).ceil() as u64).max(1))
            .sum()
    }
}

/// Everything a phase measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PhaseResult {
    /// Phase name.
    pub name: String,
    /// Broker.
    pub broker: Option<Broker>,
    /// Fleet size.
    pub nodes: usize,
    /// From the fleet's start (or re-announcement) until the engine knew every node's pending update, s.
    pub fleet_ready_s: Option<f64>,
    /// Detection latency, ms.
    pub latency: Option<Summary>,
    /// Info messages sent for it.
    pub latency_sent: usize,
    /// Of which the engine never reported.
    pub latency_lost: usize,
    /// Ingest throughput.
    pub throughput: Option<Throughput>,
    /// Engine RSS once it knew the whole fleet, before any load, KiB.
    pub rss_idle_kb: Option<u64>,
    /// Engine RSS at the end (after load and rest), KiB.
    pub rss_end_kb: Option<u64>,
    /// Engine peak RSS, KiB.
    pub hwm_kb: Option<u64>,
    /// Engine threads.
    pub threads: Option<u64>,
    /// CPU at rest.
    pub cpu_rest: Option<CpuRest>,
    /// REST economy.
    pub rest: Option<RestEconomy>,
    /// `/proc/loadavg` at the start.
    pub load_start: String,
    /// `/proc/loadavg` at the end.
    pub load_end: String,
    /// Events lost by the engine process's reader (should be 0).
    pub lags: u64,
    /// Anything worth knowing.
    pub notes: Vec<String>,
}

fn say(name: &str, msg: impl std::fmt::Display) {
    eprintln!("[{name}] {msg}");
}

// ---- mosquitto -----------------------------------------------------------------

/// A private mosquitto, killed on drop. Unlike the test fixture, its
/// queues are unbounded, so a slow subscriber gets every message late
/// instead of losing some (which would flatter its throughput).
struct Mosquitto {
    _child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn start_mosquitto() -> Result<Mosquitto> {
    let bin = [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .context("mosquitto is not installed (apt-get install mosquitto)")?;
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!(
            "greenlight-bench-mosq-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_queued_messages 0\nmax_inflight_messages 0\nlog_type error\n"
            ),
        )?;
        let mut cmd = Command::new(&bin);
        cmd.arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().context("starting mosquitto")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut up = false;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = child.try_wait() {
                last = format!("mosquitto on port {port} exited at once ({s})");
                break;
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if up {
            return Ok(Mosquitto {
                _child: child,
                port,
                dir,
            });
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    bail!("mosquitto did not start: {last}")
}

// ---- the engine process ------------------------------------------------------------

/// What the engine process has said so far.
#[derive(Debug, Default)]
struct View {
    ready_at: Option<u64>,
    state: String,
    /// Every account state reported, in order.
    states: Vec<String>,
    /// Fleet nodes with a pending update (benchmark jobs left out).
    pending_nodes: HashSet<String>,
    last_pending_at: u64,
    /// First report of each benchmark job (`BENCH-...`), ns.
    marks: HashMap<String, u64>,
    /// Node → (ns, state) of its job's end.
    jobs_ended: HashMap<String, (u64, String)>,
    approvals: Vec<String>,
    /// Last answer to `pending`: (ns, count).
    count: Option<(u64, usize)>,
    lags: u64,
    lines: u64,
    exited: bool,
}

impl View {
    fn apply(&mut self, line: &str) {
        self.lines += 1;
        let f: Vec<&str> = line.splitn(5, ' ').collect();
        let t = || f.get(1).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        match f[0] {
            "READY" => self.ready_at = Some(t()),
            "P" if f.len() >= 4 => {
                if f[3].starts_with("BENCH-") {
                    self.marks.entry(f[3].to_string()).or_insert(t());
                } else {
                    self.pending_nodes.insert(f[2].to_string());
                    self.last_pending_at = t();
                }
            }
            "S" if f.len() >= 3 => {
                self.state = f[2].to_string();
                self.states.push(self.state.clone());
            }
            "J" if f.len() >= 5 && f[4] == "1" => {
                self.jobs_ended
                    .entry(f[2].to_string())
                    .or_insert((t(), f[3].to_string()));
            }
            "A" => self.approvals.push(f[2..].join(" ")),
            "COUNT" => self.count = f.get(2).and_then(|s| s.parse().ok()).map(|n| (t(), n)),
            "LAG" => self.lags += f.get(1).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0),
            _ => {}
        }
    }
}

struct EngineProc {
    child: Child,
    pid: u32,
    stdin: ChildStdin,
    rx: mpsc::UnboundedReceiver<String>,
    view: View,
}

impl EngineProc {
    async fn spawn(cfg: &ChildConfig) -> Result<EngineProc> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["--child", "engine"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().context("starting the engine process")?;
        let pid = child.id().context("engine process id")?;
        let mut stdin = child.stdin.take().context("engine stdin")?;
        let stdout = child.stdout.take().context("engine stdout")?;
        stdin
            .write_all(format!("{}\n", serde_json::to_string(cfg)?).as_bytes())
            .await?;
        stdin.flush().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Ok(EngineProc {
            child,
            pid,
            stdin,
            rx,
            view: View::default(),
        })
    }

    /// Reads the engine's lines until `pred` holds (true) or `deadline` passes (false).
    async fn until(&mut self, deadline: Instant, pred: impl Fn(&View) -> bool) -> bool {
        loop {
            while let Ok(l) = self.rx.try_recv() {
                self.view.apply(&l);
            }
            if pred(&self.view) {
                return true;
            }
            if self.view.exited {
                return false;
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(l)) => self.view.apply(&l),
                Ok(None) => self.view.exited = true,
                Err(_) => return pred(&self.view),
            }
        }
    }

    async fn send(&mut self, cmd: &str) -> Result<()> {
        self.stdin.write_all(format!("{cmd}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// Waits until the engine has a pending update for `n` fleet nodes and
    /// returns when (ns). Normally from its events; when its event reader
    /// lagged (a sweep of 1,000 nodes emits more events at once than the
    /// engine's broadcast channel holds) from `pending()`, asked every 200 ms.
    async fn wait_pending(&mut self, n: usize, deadline: Instant) -> Option<u64> {
        loop {
            let step = (Instant::now() + Duration::from_millis(200)).min(deadline);
            if self.until(step, |v| v.pending_nodes.len() >= n).await {
                return Some(self.view.last_pending_at);
            }
            if self.view.lags > 0 {
                self.view.count = None;
                self.send("pending").await.ok()?;
                let wait = (Instant::now() + Duration::from_secs(5)).min(deadline);
                self.until(wait, |v| v.count.is_some()).await;
                if let Some((t, c)) = self.view.count {
                    if c >= n {
                        return Some(t);
                    }
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
        }
    }

    fn status(&self) -> Option<procfs::Status> {
        procfs::status(self.pid)
    }

    async fn quit(mut self) {
        let _ = self.send("quit").await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

fn data_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "greenlight-bench-{}-{name}-{}",
        std::process::id(),
        mono_ns()
    ))
}

// ---- MQTT load generators ------------------------------------------------------------

async fn mqtt_client(host: &str, port: u16, id: &str) -> Result<(AsyncClient, EventLoop)> {
    let mut o = MqttOptions::new(id, host, port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1 << 20, 1 << 20);
    o.set_clean_session(true);
    let (c, mut el) = AsyncClient::new(o, 1000);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match tokio::time::timeout_at(deadline, el.poll()).await {
            Ok(Ok(MqEvent::Incoming(Packet::ConnAck(_)))) => return Ok((c, el)),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => bail!("{id} cannot connect to the broker: {e}"),
            Err(_) => bail!("{id}: no CONNACK within 15 s"),
        }
    }
}

/// Drives a publisher's event loop, counting PUBACKs.
fn drive(mut el: EventLoop, acks: Arc<AtomicUsize>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(MqEvent::Incoming(Packet::PubAck(_))) => {
                    acks.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    })
}

async fn wait_acks(acks: &AtomicUsize, n: usize, deadline: Instant) -> bool {
    while acks.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}

/// Where the load goes: the broker and the fleet's node ids.
struct Target<'a> {
    host: &'a str,
    port: u16,
    ids: &'a [String],
}

fn info_payload(job: &str, version: &str) -> String {
    json!({"OTA": {"Info": {"job_id": job, "fw_version": version}}}).to_string()
}

/// Detection latency: a raw publisher reports a new `Info` for one node
/// every `gap`, stamping the time just before handing it to its client; the
/// engine process stamps the `PendingAdded` event when it receives it.
async fn latency(
    name: &str,
    eng: &mut EngineProc,
    to: &Target<'_>,
    samples: usize,
    gap: Duration,
    hard: Instant,
) -> Result<(Option<Summary>, usize, usize)> {
    let (c, el) = mqtt_client(to.host, to.port, "bench-latency").await?;
    let acks = Arc::new(AtomicUsize::new(0));
    let drv = drive(el, acks.clone());
    let ids = to.ids.to_vec();
    let publisher = tokio::spawn(async move {
        let start = Instant::now();
        let mut sent = Vec::with_capacity(samples);
        for k in 0..samples {
            tokio::time::sleep_until(start + gap * k as u32).await;
            // A prime stride visits distinct nodes spread over the fleet.
            let node = &ids[(k * 7919) % ids.len()];
            let payload = info_payload(&format!("BENCH-L-{k}"), &format!("9.{k}.0"));
            let t = mono_ns();
            if c.publish(
                format!("node/{node}/params/local"),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .is_err()
            {
                break;
            }
            sent.push(t);
        }
        (c, sent)
    });
    let deadline = (Instant::now() + gap * samples as u32 + Duration::from_secs(30)).min(hard);
    let all = eng
        .until(deadline, |v| {
            v.marks.keys().filter(|k| k.starts_with("BENCH-L-")).count() >= samples
        })
        .await;
    if !all {
        say(
            name,
            "latency: not every Info was reported before the deadline",
        );
    }
    let (c, sent) = publisher.await?;
    drop(c);
    drv.abort();
    let mut lat = vec![];
    let mut lost = 0;
    for (k, t) in sent.iter().enumerate() {
        match eng.view.marks.get(&format!("BENCH-L-{k}")) {
            Some(at) => lat.push(at.saturating_sub(*t) as f64 / 1e6),
            None => lost += 1,
        }
    }
    Ok((summarize(&lat), sent.len(), lost))
}

/// Ingest throughput: `publishers` raw clients publish `msgs` param reports
/// spread over every node, then one sentinel. The engine (which handles
/// one connection's messages in order) and a bare subscriber each count as
/// done when they see the sentinel.
async fn throughput(
    name: &str,
    eng: &mut EngineProc,
    to: &Target<'_>,
    msgs: usize,
    ingest: bool,
    hard: Instant,
) -> Result<Throughput> {
    const PUBLISHERS: usize = 4;
    // The bare subscriber: same filters as the engine, counts and nothing else.
    let (bc, mut bel) = mqtt_client(to.host, to.port, "bench-bare").await?;
    let mut filters = plain_filters();
    if ingest {
        filters.extend(ingest_filters());
    }
    for f in &filters {
        bc.subscribe(f.clone(), QoS::AtLeastOnce).await?;
    }
    let mut subacks = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    while subacks < filters.len() {
        match tokio::time::timeout_at(deadline, bel.poll()).await {
            Ok(Ok(MqEvent::Incoming(Packet::SubAck(_)))) => subacks += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => bail!("bare subscriber: {e}"),
            Err(_) => bail!("bare subscriber: no SUBACK within 15 s"),
        }
    }
    let (btx, brx) = tokio::sync::oneshot::channel();
    let bare = tokio::spawn(async move {
        let _keep = bc;
        let mut count = 0usize;
        loop {
            match bel.poll().await {
                Ok(MqEvent::Incoming(Packet::Publish(p))) => {
                    if p.topic.contains("BENCHSENTINEL") {
                        let _ = btx.send((count, mono_ns()));
                        break;
                    }
                    if p.topic.ends_with("/params/local") {
                        count += 1;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("bare subscriber: {e}");
                    break;
                }
            }
        }
    });

    let mut pubs = vec![];
    for i in 0..PUBLISHERS {
        let (c, el) = mqtt_client(to.host, to.port, &format!("bench-load-{i}")).await?;
        let acks = Arc::new(AtomicUsize::new(0));
        let drv = drive(el, acks.clone());
        pubs.push((c, acks, drv));
    }
    let ids = Arc::new(to.ids.to_vec());
    let t0 = mono_ns();
    let pub_deadline = Instant::now()
        + Duration::from_secs(120).min(hard.saturating_duration_since(Instant::now()));
    let mut tasks = vec![];
    for (i, (c, acks, _)) in pubs.iter().enumerate() {
        let (c, acks, ids) = (c.clone(), acks.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            for j in (i..msgs).step_by(PUBLISHERS) {
                let node = &ids[j % ids.len()];
                let payload =
                    json!({"Light": {"Brightness": j % 101, "Power": j % 2 == 0}}).to_string();
                if c.publish(
                    format!("node/{node}/params/local"),
                    QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .await
                .is_err()
                {
                    break;
                }
                n += 1;
            }
            wait_acks(&acks, n, pub_deadline).await
        }));
    }
    let mut all_acked = true;
    for t in tasks {
        all_acked &= t.await.unwrap_or(false);
    }
    let t_pub = mono_ns();
    if !all_acked {
        say(
            name,
            "throughput: the broker did not acknowledge every message in time",
        );
    }
    // The sentinel, after every load message was acknowledged by the broker.
    let (c0, acks0, _) = &pubs[0];
    let before = acks0.load(Ordering::Relaxed);
    c0.publish(
        "node/BENCHSENTINEL/params/local",
        QoS::AtLeastOnce,
        false,
        info_payload("BENCH-S-1", "9.9.9"),
    )
    .await?;
    wait_acks(acks0, before + 1, Instant::now() + Duration::from_secs(10)).await;
    let end = (Instant::now() + Duration::from_secs(240)).min(hard);
    let engine_done = eng.until(end, |v| v.marks.contains_key("BENCH-S-1")).await;
    let bare_res = tokio::time::timeout_at(end, brx).await;
    bare.abort();
    for (c, _, drv) in pubs {
        drop(c);
        drv.abort();
    }
    let (bare_count, bare_s) = match bare_res {
        Ok(Ok((n, t))) => (n, Some(t.saturating_sub(t0) as f64 / 1e9)),
        _ => (0, None),
    };
    Ok(Throughput {
        msgs,
        publishers: PUBLISHERS,
        publish_s: t_pub.saturating_sub(t0) as f64 / 1e9,
        engine_s: engine_done.then(|| eng.view.marks["BENCH-S-1"].saturating_sub(t0) as f64 / 1e9),
        bare_s,
        bare_count,
    })
}

async fn cpu_rest(eng: &mut EngineProc, window: Duration) -> Option<CpuRest> {
    let c0 = procfs::cpu_ms(eng.pid)?;
    let x0 = procfs::ctxt_switches(eng.pid);
    let l0 = eng.view.lines;
    let t0 = Instant::now();
    eng.until(t0 + window, |_| false).await;
    let c1 = procfs::cpu_ms(eng.pid)?;
    let x1 = procfs::ctxt_switches(eng.pid);
    Some(CpuRest {
        window_s: t0.elapsed().as_secs_f64(),
        cpu_ms: c1.saturating_sub(c0),
        ctxt_switches: x1.saturating_sub(x0),
        events: eng.view.lines - l0,
    })
}

async fn settle(eng: &mut EngineProc, d: Duration) {
    eng.until(Instant::now() + d, |_| false).await;
}

/// Runs a phase.
pub async fn run(spec: PhaseSpec) -> Result<PhaseResult> {
    let mut r = PhaseResult {
        name: spec.name.clone(),
        broker: Some(spec.broker),
        nodes: spec.nodes,
        load_start: procfs::loadavg(),
        ..Default::default()
    };
    let hard = Instant::now() + Duration::from_secs(spec.deadline_s);
    let res = if spec.rest_jobs.is_some() {
        rest_phase(&spec, &mut r, hard).await
    } else {
        mqtt_phase(&spec, &mut r, hard).await
    };
    if let Err(e) = res {
        say(&spec.name, format!("failed: {e:#}"));
        r.notes.push(format!("phase failed: {e:#}"));
    }
    r.load_end = procfs::loadavg();
    Ok(r)
}

fn sim_config(broker: BrokerChoice, nodes: usize, timing: Timing) -> SimConfig {
    SimConfig {
        broker,
        scenario: Scenario::Fleet,
        nodes,
        timing,
        ready_timeout: Duration::from_secs(120),
        ..SimConfig::default()
    }
}

async fn wait_connected(eng: &mut EngineProc) -> Result<()> {
    if !eng
        .until(Instant::now() + Duration::from_secs(30), |v| {
            v.state == "connected" || v.state == "degraded"
        })
        .await
    {
        bail!(
            "the engine's account did not connect within 30 s (state {:?})",
            eng.view.state
        );
    }
    Ok(())
}

async fn mqtt_phase(spec: &PhaseSpec, r: &mut PhaseResult, hard: Instant) -> Result<()> {
    let name = spec.name.as_str();
    let dir = data_dir(name);
    let mut _mosq = None;
    let (mut eng, sim, url) = match spec.broker {
        Broker::Mosquitto => {
            let m = start_mosquitto().await?;
            let url = format!("mqtt://127.0.0.1:{}", m.port);
            _mosq = Some(m);
            // The engine first: node reports are not retained, so it must be
            // listening before the fleet boots.
            let mut eng = EngineProc::spawn(&ChildConfig {
                data_dir: dir.clone(),
                account: AccountConfig::mqtt_only("bench", &url),
                password: None,
            })
            .await?;
            wait_connected(&mut eng).await?;
            if spec.nodes == 0 {
                (eng, None, url)
            } else {
                say(name, format!("starting {} nodes", spec.nodes));
                let t = mono_ns();
                let sim = RainmakerSim::start(sim_config(
                    BrokerChoice::External(url.clone()),
                    spec.nodes,
                    Timing::fast(),
                ))
                .await?;
                r.notes.push(format!(
                    "simulator up (every config at its cloud) in {:.1} s",
                    (mono_ns() - t) as f64 / 1e9
                ));
                let deadline = (Instant::now() + Duration::from_secs(180)).min(hard);
                if let Some(at) = eng.wait_pending(spec.nodes, deadline).await {
                    r.fleet_ready_s = Some(at.saturating_sub(t) as f64 / 1e9);
                } else {
                    r.notes.push(format!(
                        "the engine knew {} of {} pending updates at the deadline",
                        eng.view.pending_nodes.len(),
                        spec.nodes
                    ));
                }
                (eng, Some(sim), url)
            }
        }
        Broker::Embedded => {
            // rumqttd lives in this process and starts with the simulator,
            // so the fleet boots before the engine can listen: once the
            // engine is connected every node reconnects and announces again.
            say(name, format!("starting {} nodes", spec.nodes));
            let t = mono_ns();
            let sim = RainmakerSim::start(sim_config(
                BrokerChoice::Embedded(SocketAddr::from(([127, 0, 0, 1], 0))),
                spec.nodes,
                Timing::fast(),
            ))
            .await?;
            r.notes.push(format!(
                "simulator up on rumqttd in {:.1} s",
                (mono_ns() - t) as f64 / 1e9
            ));
            let url = sim.info.mqtt.clone();
            let mut acct = AccountConfig::mqtt_only("bench", &url);
            if let Some(m) = acct.mqtt.as_mut() {
                m.basic_ingest = false; // rumqttd drops `$` subscribers
            }
            let mut eng = EngineProc::spawn(&ChildConfig {
                data_dir: dir.clone(),
                account: acct,
                password: None,
            })
            .await?;
            wait_connected(&mut eng).await?;
            for id in &sim.info.nodes {
                sim.fleet.set_online(id, false);
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            while sim.fleet.stats().iter().any(|s| s.online) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let t = mono_ns();
            for id in &sim.info.nodes {
                sim.fleet.set_online(id, true);
            }
            let deadline = (Instant::now() + Duration::from_secs(180)).min(hard);
            if let Some(at) = eng.wait_pending(spec.nodes, deadline).await {
                r.fleet_ready_s = Some(at.saturating_sub(t) as f64 / 1e9);
                r.notes
                    .push("fleet ready = from every node reconnecting and announcing again".into());
            } else {
                r.notes.push(format!(
                    "the engine knew {} of {} pending updates at the deadline",
                    eng.view.pending_nodes.len(),
                    spec.nodes
                ));
            }
            (eng, Some(sim), url)
        }
    };
    let (host, port) = greenlight_sim::rainmaker::parse_mqtt_url(&url)?;
    settle(&mut eng, Duration::from_secs(2)).await;
    r.rss_idle_kb = eng.status().map(|s| s.rss_kb);
    say(name, format!("engine RSS {:?} KiB", r.rss_idle_kb));

    if let Some(sim) = &sim {
        let to = Target {
            host: &host,
            port,
            ids: &sim.info.nodes,
        };
        if spec.latency_samples > 0 {
            say(
                name,
                format!("latency: {} Info messages", spec.latency_samples),
            );
            let (s, sent, lost) = latency(
                name,
                &mut eng,
                &to,
                spec.latency_samples,
                Duration::from_millis(spec.latency_gap_ms),
                hard,
            )
            .await?;
            say(name, format!("latency: {s:?}, lost {lost}"));
            r.latency = s;
            r.latency_sent = sent;
            r.latency_lost = lost;
        }
        if spec.load_msgs > 0 {
            say(
                name,
                format!("throughput: {} param messages", spec.load_msgs),
            );
            let t = throughput(
                name,
                &mut eng,
                &to,
                spec.load_msgs,
                spec.broker == Broker::Mosquitto,
                hard,
            )
            .await?;
            say(
                name,
                format!(
                    "throughput: engine {:?}/s, bare {:?}/s, publish {:.1} s",
                    t.engine_rate().map(|x| x.round()),
                    t.bare_rate().map(|x| x.round()),
                    t.publish_s
                ),
            );
            r.throughput = Some(t);
        }
    }
    if spec.rest_window_s > 0 {
        settle(&mut eng, Duration::from_secs(3)).await;
        say(name, format!("at rest for {} s", spec.rest_window_s));
        r.cpu_rest = cpu_rest(&mut eng, Duration::from_secs(spec.rest_window_s)).await;
    }
    if let Some(s) = eng.status() {
        r.rss_end_kb = Some(s.rss_kb);
        r.hwm_kb = Some(s.hwm_kb);
        r.threads = Some(s.threads);
    }
    r.lags = eng.view.lags;
    if eng.view.states.iter().any(|s| s == "reconnecting") {
        r.notes.push(format!(
            "the engine lost its broker connection during the phase (states: {})",
            eng.view.states.join(" → ")
        ));
    }
    eng.quit().await;
    if let Some(sim) = sim {
        sim.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn requests(sim: &RainmakerSim) -> BTreeMap<String, u64> {
    sim.cloud.state().requests.clone()
}

fn diff(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

async fn rest_phase(spec: &PhaseSpec, r: &mut PhaseResult, hard: Instant) -> Result<()> {
    let name = spec.name.as_str();
    let jobs = spec.rest_jobs.unwrap_or(0).min(spec.nodes);
    let mosq = start_mosquitto().await?;
    say(name, format!("starting {} nodes", spec.nodes));
    // Human-scale firmware timings: a download takes about 7 s, a reboot 2 s.
    let sim = RainmakerSim::start(sim_config(
        BrokerChoice::External(format!("mqtt://127.0.0.1:{}", mosq.port)),
        spec.nodes,
        Timing::demo(),
    ))
    .await?;
    // Every node has fetched and reported its pending update to the cloud.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let n = sim
            .cloud
            .state()
            .nodes
            .values()
            .filter(|n| n.params["OTA"]["Info"]["job_id"].is_string())
            .count();
        if n >= spec.nodes {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "only {n} of {} nodes reported a pending update to the cloud",
                spec.nodes
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let job_id = sim
        .cloud
        .state()
        .jobs
        .keys()
        .next()
        .cloned()
        .context("the fleet has no job")?;
    let poll_every = EngineConfig::new("/nonexistent", Arc::new(MemorySecretStore::default()), "x")
        .status_poll_fast;
    let mut econ = RestEconomy {
        nodes: spec.nodes,
        jobs,
        poll_every_s: poll_every.as_secs_f64(),
        ..Default::default()
    };

    let r0 = requests(&sim);
    let dir = data_dir(name);
    let mut eng = EngineProc::spawn(&ChildConfig {
        data_dir: dir.clone(),
        account: AccountConfig::rest("bench", &sim.info.http, &sim.info.user),
        password: Some(sim.info.password.clone()),
    })
    .await?;
    let deadline = (Instant::now() + Duration::from_secs(60)).min(hard);
    if let Some(at) = eng.wait_pending(spec.nodes, deadline).await {
        let r1 = requests(&sim);
        econ.discovery_requests = diff(&r1, &r0);
        econ.discovery_s = eng
            .view
            .ready_at
            .map(|t0| at.saturating_sub(t0) as f64 / 1e9);
        if eng.view.lags > 0 {
            r.notes.push(format!(
                "discovery: the engine emitted more events at once than its broadcast channel \
                 holds (its event reader lost {}), so the end of discovery was read from \
                 `pending()`, polled every 200 ms",
                eng.view.lags
            ));
        }
    } else {
        r.notes.push(format!(
            "discovery: {} of {} pending updates known at the deadline",
            eng.view.pending_nodes.len(),
            spec.nodes
        ));
    }
    say(
        name,
        format!(
            "discovery: {:?} s, {:?}",
            econ.discovery_s, econ.discovery_requests
        ),
    );
    r.rss_idle_kb = eng.status().map(|s| s.rss_kb);

    if spec.rest_window_s > 0 {
        let before = requests(&sim);
        say(name, format!("at rest for {} s", spec.rest_window_s));
        r.cpu_rest = cpu_rest(&mut eng, Duration::from_secs(spec.rest_window_s)).await;
        econ.idle_requests = diff(&requests(&sim), &before);
        econ.idle_window_s = r.cpu_rest.as_ref().map(|c| c.window_s).unwrap_or(0.0);
    }

    if jobs > 0 {
        let ids: Vec<String> = sim.info.nodes.iter().take(jobs).cloned().collect();
        // Watch the cloud for each job's terminal status.
        let cloud = sim.cloud.clone();
        let (jid, wids) = (job_id.clone(), ids.clone());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_w = stop.clone();
        let watcher = tokio::spawn(async move {
            let mut ended: HashMap<String, u64> = HashMap::new();
            let give_up = Instant::now() + Duration::from_secs(300);
            while ended.len() < wids.len()
                && Instant::now() < give_up
                && !stop_w.load(Ordering::Relaxed)
            {
                {
                    let st = cloud.state();
                    if let Some(j) = st.jobs.get(&jid) {
                        for n in &wids {
                            let done = j.status.get(n).is_some_and(|s| {
                                matches!(
                                    s.status.as_str(),
                                    "success" | "completed" | "failed" | "rejected"
                                )
                            });
                            if done {
                                ended.entry(n.clone()).or_insert_with(mono_ns);
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            ended
        });
        let before = requests(&sim);
        let t_approve = mono_ns();
        say(name, format!("approving {jobs} nodes"));
        eng.send(&format!("approve {}", ids.join(","))).await?;
        let deadline = (Instant::now() + Duration::from_secs(240)).min(hard);
        let all = eng
            .until(deadline, |v| {
                ids.iter().all(|n| v.jobs_ended.contains_key(n))
            })
            .await;
        let after = requests(&sim);
        econ.job_requests = diff(&after, &before);
        econ.jobs_done = ids
            .iter()
            .filter(|n| eng.view.jobs_ended.contains_key(*n))
            .count();
        for n in &ids {
            if let Some((_, s)) = eng.view.jobs_ended.get(n) {
                *econ.job_states.entry(s.clone()).or_default() += 1;
            }
        }
        if all {
            let last = ids
                .iter()
                .filter_map(|n| eng.view.jobs_ended.get(n).map(|e| e.0))
                .max()
                .unwrap_or(t_approve);
            econ.jobs_wall_s = Some((last - t_approve) as f64 / 1e9);
        } else {
            r.notes.push(format!(
                "jobs: {} of {jobs} ended before the deadline",
                econ.jobs_done
            ));
        }
        settle(&mut eng, Duration::from_secs(6)).await;
        let tail = diff(&requests(&sim), &after);
        econ.tail_status_requests = tail.get("GET user/nodes/ota_status").copied().unwrap_or(0);
        stop.store(true, Ordering::Relaxed);
        let ended = tokio::time::timeout(Duration::from_secs(5), watcher)
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default();
        econ.job_durations_s = ids
            .iter()
            .filter_map(|n| ended.get(n))
            .map(|t| t.saturating_sub(t_approve) as f64 / 1e9)
            .collect();
        say(
            name,
            format!(
                "jobs: {} done, ota_status {} (minimum {}), requests {:?}",
                econ.jobs_done,
                econ.status_requests(),
                econ.status_minimum(),
                econ.job_requests
            ),
        );
    }
    if let Some(s) = eng.status() {
        r.rss_end_kb = Some(s.rss_kb);
        r.hwm_kb = Some(s.hwm_kb);
        r.threads = Some(s.threads);
    }
    r.lags = eng.view.lags;
    r.rest = Some(econ);
    eng.quit().await;
    sim.shutdown().await;
    drop(mosq);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
