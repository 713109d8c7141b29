//! Crash safety of the engine process: the real `greenlight` binary
//! (`approve --all` and `watch`, on one data directory) is killed with
//! SIGKILL at random points while it approves updates and follows jobs, and
//! started again, many times, against the simulator on a real mosquitto.
//!
//! Kill points are drawn from a seeded generator: after a random delay, right
//! after a node (or the cloud) receives an approval (the window between "sent"
//! and "recorded as sent"), or in the middle of a download. After every kill:
//! the database passes `PRAGMA integrity_check`, and no node has received an
//! approval twice (counted at the simulated nodes and in the cloud). At the end
//! of every round of updates: each approved update ended once, as a success,
//! in the history. An approval the engine cannot prove it sent is shown as
//! "not confirmed" and never re-sent by itself; the test plays the careful
//! user who, having checked the device, cancels it and approves again.
//!
//! Bounded: at most `MAX_KILLS` kills and `KILL_PHASE` of killing, every run
//! and every wait with its own deadline. The seed is printed; set
//! `GREENLIGHT_CRASH_SEED` to replay one.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use greenlight_sim::rainmaker::wire::NodeInfo;
use greenlight_sim::rainmaker::{
    scenario, Behaviour, BrokerChoice, JobKind, NodeSpec, RainmakerSim, Scenario, SimConfig, Timing,
};
use greenlight_tests::{db, Mosquitto, SecretService};

const MAX_KILLS: u32 = 28;
const KILL_PHASE: Duration = Duration::from_secs(80);
const SETTLE: Duration = Duration::from_secs(60);
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// xorshift64*: small, seeded, good enough to pick kill points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// Prints the seed (and where the logs are) if the test fails.
struct OnFailure {
    seed: u64,
    logs: PathBuf,
}

impl Drop for OnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "crash test failed with GREENLIGHT_CRASH_SEED={} (run logs in {})",
                self.seed,
                self.logs.display()
            );
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// After this long.
    After(Duration),
    /// This long after the next approval intent is written (before it is sent).
    OnIntent(Duration),
    /// This long after the next approval reaches a node or the cloud.
    OnSend(Duration),
    /// This long after the next download starts.
    MidJob(Duration),
    /// Not at all (an `approve` ends by itself; a `watch` is stopped once the round is done).
    Never,
}

/// What the simulated side has received so far, per node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Seen {
    starts: BTreeMap<String, u32>,
    downloads: BTreeMap<String, u32>,
    cloud_approvals: u64,
}

impl Seen {
    fn of(sim: &RainmakerSim) -> Seen {
        let mut s = Seen::default();
        for n in sim.fleet.stats() {
            s.starts.insert(n.node_id.clone(), n.starts_received);
            s.downloads.insert(n.node_id, n.downloads_started);
        }
        s.cloud_approvals = sim
            .cloud
            .state()
            .requests
            .get("POST user/nodes/ota_update")
            .copied()
            .unwrap_or(0);
        s
    }
    fn sends(&self) -> u64 {
        self.starts.values().map(|v| u64::from(*v)).sum::<u64>() + self.cloud_approvals
    }
    fn total_downloads(&self) -> u64 {
        self.downloads.values().map(|v| u64::from(*v)).sum()
    }
}

struct Harness {
    keyring: SecretService,
    data: PathBuf,
    logs: PathBuf,
    runs: u32,
    kills: u32,
}

impl Harness {
    fn db(&self) -> PathBuf {
        self.data.join("greenlight.db")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_greenlight"));
        c.arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .envs(self.keyring.envs())
            .env("GREENLIGHT_LOG", "info,rumqttc=warn")
            .stdin(Stdio::piped());
        c
    }

    /// A command that must succeed (set-up).
    fn ok(&self, args: &[&str], stdin: Option<&str>) {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn greenlight");
        if let (Some(mut i), Some(s)) = (child.stdin.take(), stdin) {
            i.write_all(s.as_bytes()).unwrap();
        }
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "greenlight {args:?}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }

    fn spawn(&mut self, args: &[&str]) -> Child {
        self.runs += 1;
        let out =
            std::fs::File::create(self.logs.join(format!("run-{:03}.out", self.runs))).unwrap();
        let err =
            std::fs::File::create(self.logs.join(format!("run-{:03}.err", self.runs))).unwrap();
        let mut c = self.command(args);
        c.stdout(out).stderr(err);
        let mut child = c.spawn().expect("spawn greenlight");
        drop(child.stdin.take());
        child
    }
}

fn kill(child: &mut Child) {
    // `Child::kill` is SIGKILL on Unix: no destructor, no flush, no goodbye.
    let _ = child.kill();
    let _ = child.wait();
}

/// One round: a new update for every node.
struct Round {
    version: String,
    node_job: String,
    cloud_job: String,
    before: Seen,
}

struct Fleet {
    node_side: Vec<String>,
    cloud_side: Vec<String>,
}

impl Fleet {
    fn all(&self) -> impl Iterator<Item = &String> {
        self.node_side.iter().chain(self.cloud_side.iter())
    }
    fn job_of<'a>(&self, r: &'a Round, node: &str) -> &'a str {
        if self.node_side.iter().any(|n| n == node) {
            &r.node_job
        } else {
            &r.cloud_job
        }
    }
}

/// Did the approval of this round reach `node` (or the cloud, for it)?
fn received(sim: &RainmakerSim, fleet: &Fleet, r: &Round, node: &str) -> bool {
    let now = Seen::of(sim);
    if now.starts[node] > r.before.starts[node] || now.downloads[node] > r.before.downloads[node] {
        return true;
    }
    fleet.cloud_side.iter().any(|n| n == node)
        && sim
            .cloud
            .state()
            .jobs
            .get(&r.cloud_job)
            .is_some_and(|j| j.approved.contains(node))
}

/// The checks after every kill: an intact database, nothing received twice.
fn check_after_run(h: &Harness, sim: &RainmakerSim, fleet: &Fleet, r: &Round, ctx: &str) {
    let ic = db::integrity_check(&h.db());
    assert_eq!(ic, "ok", "{ctx}: the database is damaged");
    let now = Seen::of(sim);
    for node in fleet.all() {
        let starts = now.starts[node] - r.before.starts[node];
        let downloads = now.downloads[node] - r.before.downloads[node];
        assert!(
            starts <= 1 && downloads <= 1,
            "{ctx}: {node} received {starts} starts and began {downloads} downloads for one approval"
        );
    }
    // The cloud was asked to approve each cloud-side node at most once.
    let cloud_sent = now.cloud_approvals - r.before.cloud_approvals;
    assert!(
        cloud_sent <= fleet.cloud_side.len() as u64,
        "{ctx}: {cloud_sent} POST ota_update for {} nodes",
        fleet.cloud_side.len()
    );
    // The store never holds two live approvals of one update.
    let rows = db::jobs(&h.db());
    for node in fleet.all() {
        let job = fleet.job_of(r, node);
        let live: Vec<_> = rows
            .iter()
            .filter(|j| &j.node_id == node && j.ota_job_id == job && j.state != "cancelled")
            .collect();
        assert!(live.len() <= 1, "{ctx}: {node} approved twice: {live:?}");
    }
}

/// Plays the user who checked the device: an approval that was never proven
/// sent, and that the node (and cloud) never got, is cancelled so it can be
/// approved again. Returns how many were cancelled.
async fn cancel_unsent(h: &Harness, sim: &RainmakerSim, fleet: &Fleet, r: &Round) -> u32 {
    let rows = db::jobs(&h.db());
    let unsent: Vec<i64> = rows
        .iter()
        .filter(|j| {
            matches!(j.state.as_str(), "requested" | "not_confirmed")
                && fleet.job_of(r, &j.node_id) == j.ota_job_id
                && !received(sim, fleet, r, &j.node_id)
        })
        .map(|j| j.id)
        .collect();
    if unsent.is_empty() {
        return 0;
    }
    let mut cfg = greenlight_core::EngineConfig::new(
        &h.data,
        Arc::new(greenlight_core::MemorySecretStore::default()),
        "the careful user",
    );
    cfg.load_saved_accounts = false;
    let e = greenlight_core::Engine::open(cfg)
        .await
        .expect("engine on the data directory");
    for id in &unsent {
        e.cancel(*id)
            .await
            .expect("an unconfirmed job can be cancelled");
    }
    e.shutdown().await;
    unsent.len() as u32
}

/// Is every node of the round on its new version, with one successful job each?
fn round_done(h: &Harness, sim: &RainmakerSim, fleet: &Fleet, r: &Round) -> bool {
    let versions_ok = fleet
        .all()
        .all(|n| sim.fleet.node(n).is_some_and(|s| s.fw_version == r.version));
    if !versions_ok {
        return false;
    }
    let rows = db::jobs(&h.db());
    fleet.all().all(|n| {
        rows.iter()
            .any(|j| &j.node_id == n && j.ota_job_id == fleet.job_of(r, n) && j.state == "success")
    })
}

/// The end of a round: each update approved once, ended once, as a success.
fn check_round(h: &Harness, sim: &RainmakerSim, fleet: &Fleet, r: &Round) {
    let rows = db::jobs(&h.db());
    let now = Seen::of(sim);
    for n in fleet.all() {
        let job = fleet.job_of(r, n);
        let mine: Vec<_> = rows
            .iter()
            .filter(|j| &j.node_id == n && j.ota_job_id == job)
            .collect();
        assert_eq!(
            mine.iter().filter(|j| j.state == "success").count(),
            1,
            "{n}: the update ends once in history: {mine:?}"
        );
        assert!(
            mine.iter()
                .all(|j| j.state == "success" || j.state == "cancelled"),
            "{n}: {mine:?}"
        );
        assert_eq!(
            now.downloads[n] - r.before.downloads[n],
            1,
            "{n}: one download"
        );
        if fleet.node_side.contains(n) {
            assert_eq!(now.starts[n] - r.before.starts[n], 1, "{n}: one start");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_points_the_engine_never_sends_twice_nor_loses_an_approval() {
    let seed = std::env::var("GREENLIGHT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let mut rng = Rng(seed);
    let base = std::env::temp_dir().join(format!("greenlight-crash-{}-{seed}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let logs = base.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let _guard = OnFailure {
        seed,
        logs: logs.clone(),
    };
    eprintln!("crash test: GREENLIGHT_CRASH_SEED={seed}");

    let Some(keyring) = SecretService::start() else {
        panic!(
            "no Secret Service could be started (dbus-daemon, gnome-keyring): run scripts/deps.sh"
        );
    };
    let mosq = Mosquitto::start();
    // Four nodes with node-side approval (plain and basic-ingest topics) and
    // two approved through the cloud ("User Approval" jobs).
    let cloud_nodes: Vec<NodeSpec> = (0..2)
        .map(|i| NodeSpec {
            info: NodeInfo {
                node_id: scenario::node_id(100 + i),
                name: format!("Cloud Sensor {}", i + 1),
                device_type: "esp.device.sensor".into(),
                model: "ESP32-S3 Sensor".into(),
                project_name: "sensor".into(),
                platform: "esp32s3".into(),
            },
            fw_version: "1.0.0".into(),
            behaviour: Behaviour::Normal,
            require_approval: false,
            basic_ingest: false,
            ..NodeSpec::default()
        })
        .collect();
    let sim = RainmakerSim::start(SimConfig {
        broker: BrokerChoice::External(mosq.url()),
        scenario: Scenario::Plain,
        nodes: 4,
        extra_nodes: cloud_nodes,
        // Downloads long enough (about a second) to be killed in the middle.
        timing: Timing {
            download_step: Duration::from_millis(100),
            ..Timing::fast()
        },
        ready_timeout: Duration::from_secs(60),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let fleet = Fleet {
        node_side: sim.info.nodes[..4].to_vec(),
        cloud_side: sim.info.nodes[4..].to_vec(),
    };
    let mut h = Harness {
        keyring,
        data: base.join("data"),
        logs: logs.clone(),
        runs: 0,
        kills: 0,
    };
    h.ok(
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
        Some(&format!("{}\n", sim.info.password)),
    );
    // One node is auto-approved: `watch` approves it by itself.
    h.ok(&["policy", "auto-approve", &fleet.node_side[0], "on"], None);

    let new_round = |n: usize| {
        let version = format!("{}.0.0", n + 2);
        let node_job = sim
            .create_job(&fleet.node_side, &version, "crash round", JobKind::Plain)
            .unwrap();
        let cloud_job = sim
            .create_job(
                &fleet.cloud_side,
                &version,
                "crash round",
                JobKind::UserApproval,
            )
            .unwrap();
        Round {
            version,
            node_job,
            cloud_job,
            before: Seen::of(&sim),
        }
    };
    let mut rounds_done = 0usize;
    let mut round = new_round(0);
    let mut cancelled = 0u32;
    let mut unconfirmed = 0u32;
    let mut by_kind: HashMap<&'static str, u32> = HashMap::new();
    let started = Instant::now();

    // ---- the kill phase ----
    while h.kills < MAX_KILLS && started.elapsed() < KILL_PHASE {
        if round_done(&h, &sim, &fleet, &round) {
            check_round(&h, &sim, &fleet, &round);
            rounds_done += 1;
            round = new_round(rounds_done);
        }
        let watch = rng.below(10) < 4;
        let plan = match rng.below(12) {
            0..=2 => Kill::After(rng.ms(30, 3000)),
            3..=4 => Kill::OnIntent(rng.ms(0, 3)),
            5..=7 => Kill::OnSend(rng.ms(0, 15)),
            8..=10 => Kill::MidJob(rng.ms(0, 600)),
            _ => Kill::Never,
        };
        let args: &[&str] = if watch {
            &["--json", "watch"]
        } else {
            &["--json", "approve", "--all"]
        };
        let ctx = format!(
            "run {} ({args:?}, {plan:?}, round {rounds_done})",
            h.runs + 1
        );
        let mut child = h.spawn(args);
        let t0 = Instant::now();
        let base_seen = Seen::of(&sim);
        let poll = db::Poll::open(&h.db());
        let intents = poll.count(&["requested"]);
        let mut fire_at: Option<Instant> = match plan {
            Kill::After(d) => Some(t0 + d),
            _ => None,
        };
        // Triggers that never come (nothing left to send) fall back to a plain delay.
        let fallback = t0 + rng.ms(1500, 6000);
        let mut killed = false;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            let now = Instant::now();
            if fire_at.is_none() {
                let s = Seen::of(&sim);
                fire_at = match plan {
                    Kill::OnIntent(d) if poll.count(&["requested"]) > intents => Some(now + d),
                    Kill::OnSend(d) if s.sends() > base_seen.sends() => Some(now + d),
                    Kill::MidJob(d) if s.total_downloads() > base_seen.total_downloads() => {
                        Some(now + d)
                    }
                    Kill::Never if watch && round_done(&h, &sim, &fleet, &round) => Some(now),
                    Kill::Never => None,
                    _ if now > fallback => Some(now),
                    _ => None,
                };
            }
            if fire_at.is_some_and(|t| now >= t) || now - t0 > RUN_LIMIT {
                kill(&mut child);
                killed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        drop(poll);
        if killed {
            h.kills += 1;
            *by_kind
                .entry(match plan {
                    Kill::After(_) => "after a delay",
                    Kill::OnIntent(_) => "just after an intent",
                    Kill::OnSend(_) => "just after a send",
                    Kill::MidJob(_) => "mid-download",
                    Kill::Never => "after the round",
                })
                .or_default() += 1;
        }
        // Whatever the killed process had written to its sockets lands now.
        tokio::time::sleep(Duration::from_millis(400)).await;
        check_after_run(&h, &sim, &fleet, &round, &ctx);
        unconfirmed += db::jobs(&h.db())
            .iter()
            .filter(|j| matches!(j.state.as_str(), "requested" | "not_confirmed"))
            .count() as u32;
        cancelled += cancel_unsent(&h, &sim, &fleet, &round).await;
    }

    // ---- settle: no more kills; the last round is finished and checked ----
    let settle_start = Instant::now();
    while !round_done(&h, &sim, &fleet, &round) {
        assert!(
            settle_start.elapsed() < SETTLE,
            "round {rounds_done} did not finish after the kills: {:#?}\nnodes: {:#?}",
            db::jobs(&h.db()),
            sim.fleet.stats()
        );
        let mut child = h.spawn(&["--json", "approve", "--all"]);
        let t0 = Instant::now();
        while !matches!(child.try_wait(), Ok(Some(_))) && t0.elapsed() < RUN_LIMIT {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        kill(&mut child);
        if !round_done(&h, &sim, &fleet, &round) {
            // Jobs a killed run left behind are followed by a watcher.
            let mut w = h.spawn(&["--json", "watch"]);
            let t0 = Instant::now();
            while !round_done(&h, &sim, &fleet, &round) && t0.elapsed() < Duration::from_secs(10) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            kill(&mut w);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        check_after_run(&h, &sim, &fleet, &round, "settle");
        cancelled += cancel_unsent(&h, &sim, &fleet, &round).await;
    }
    check_round(&h, &sim, &fleet, &round);
    rounds_done += 1;
    assert_eq!(db::integrity_check(&h.db()), "ok");

    // Over the whole test: one start (node-side) or one download (cloud-side)
    // per node per round, nothing more.
    for s in sim.fleet.stats() {
        let expect = rounds_done as u32;
        assert_eq!(s.downloads_started, expect, "{}: {s:?}", s.node_id);
        if fleet.node_side.contains(&s.node_id) {
            assert_eq!(s.starts_received, expect, "{}: {s:?}", s.node_id);
        }
    }
    eprintln!(
        "crash test: seed {seed}: {} runs, {} SIGKILLs ({by_kind:?}), {rounds_done} rounds of {} updates, {unconfirmed} times a kill left an approval unconfirmed ({cancelled} of them never sent: cancelled and approved again; the rest resolved by the node's reports), {:.0} s",
        h.runs,
        h.kills,
        fleet.all().count(),
        started.elapsed().as_secs_f64()
    );
    assert!(h.kills >= 5, "too few kills to mean anything: {}", h.kills);
    sim.shutdown().await;
    drop(mosq);
    let _ = std::fs::remove_dir_all(&base);
}
