//! Crash safety of the engine process: the real `greenlight` binary
//! (`approve --all` and `watch`, on one data directory) is killed with
//! SIGKILL at random points while it approves updates and follows jobs, and
//! started again, many times, against the simulator on a real mosquitto.
//!
//! Three ways to run: `approve --all` alone, `watch` alone, and the
//! owner/client split — a `watch` that owns the directory and serves an
//! `approve --all` that runs as its client over the control socket, where
//! the owner, the client or both are killed (and whichever survives is
//! killed a moment later, unless it ends by itself).
//!
//! Kill points are drawn from a seeded generator: after a random delay, right
//! after an approval intent is written, right after a node (or the cloud)
//! receives an approval (the window between "sent" and "recorded as sent"),
//! in the middle of a download, or right after a device rolled back. After
//! every kill: the database passes `PRAGMA integrity_check`, no node has
//! received an approval twice (counted at the simulated nodes and in the
//! cloud), and an update that rolled back is never recorded as a success.
//! At the end of every round of updates: each approved update ended once in
//! the history — as a success, or, on the devices whose new image never
//! starts, as one rollback that nobody approved again by itself. An approval
//! the engine cannot prove it sent is shown as "not confirmed" and never
//! re-sent by itself; the test plays the careful user who, having checked
//! the device, cancels it and approves again.
//!
//! Bounded: at most `GREENLIGHT_SOAK_KILLS` kills (default
//! [`DEFAULT_KILLS`]) within `GREENLIGHT_SOAK_SECONDS` of killing (default
//! [`DEFAULT_KILL_PHASE`]), every run and every wait with its own deadline.
//! With `GREENLIGHT_SOAK_KILLS` set (`make soak`) fewer kills than asked is a
//! failure. The seed is printed; set `GREENLIGHT_CRASH_SEED` to replay one.

use std::collections::BTreeMap;
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

/// Kills of the short run (`make test`, CI).
const DEFAULT_KILLS: u32 = 28;
/// Killing time of the short run.
const DEFAULT_KILL_PHASE: Duration = Duration::from_secs(80);
const SETTLE: Duration = Duration::from_secs(60);
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// How long the test kills, and how many kills it needs.
struct Bounds {
    max_kills: u32,
    kill_phase: Duration,
    /// Fewer kills than this at the end fails the test.
    required_kills: u32,
}

impl Bounds {
    /// The short run unless `GREENLIGHT_SOAK_KILLS` / `GREENLIGHT_SOAK_SECONDS`
    /// ask for a longer one. A soak (kills asked for) must land all of them:
    /// a machine too slow to reach them within the time fails, not passes.
    fn from_env() -> Bounds {
        let num = |name: &str| -> Option<u64> {
            let v = std::env::var(name).ok()?;
            match v.trim().parse::<u64>() {
                Ok(n) if n > 0 => Some(n),
                _ => panic!("{name}={v:?}: expected a positive whole number"),
            }
        };
        let kills = num("GREENLIGHT_SOAK_KILLS").map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        let seconds = num("GREENLIGHT_SOAK_SECONDS");
        Bounds {
            max_kills: kills.unwrap_or(DEFAULT_KILLS),
            kill_phase: seconds.map_or(DEFAULT_KILL_PHASE, Duration::from_secs),
            required_kills: kills.unwrap_or(5),
        }
    }
}

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
    /// This long after the next device falls back to its old image (its
    /// report of the rollback is on its way to the engine).
    OnRollback(Duration),
    /// Not at all (an `approve` ends by itself; a `watch` is stopped once the round is done).
    Never,
}

impl Kill {
    /// The kind of kill point, for the figures at the end.
    fn kind(self) -> &'static str {
        match self {
            Kill::After(_) => "after a random delay",
            Kill::OnIntent(_) => "just after an approval intent was written",
            Kill::OnSend(_) => "just after an approval reached a node or the cloud",
            Kill::MidJob(_) => "mid-download",
            Kill::OnRollback(_) => "just after a device rolled back",
            Kill::Never => "once the round was done",
        }
    }
}

/// What the simulated side has received so far, per node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Seen {
    starts: BTreeMap<String, u32>,
    downloads: BTreeMap<String, u32>,
    rollbacks: BTreeMap<String, u32>,
    cloud_approvals: u64,
}

impl Seen {
    fn of(sim: &RainmakerSim) -> Seen {
        let mut s = Seen::default();
        for n in sim.fleet.stats() {
            s.starts.insert(n.node_id.clone(), n.starts_received);
            s.downloads.insert(n.node_id.clone(), n.downloads_started);
            s.rollbacks.insert(n.node_id, n.rollbacks);
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
    fn total_rollbacks(&self) -> u64 {
        self.rollbacks.values().map(|v| u64::from(*v)).sum()
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
        let mut c = Command::new(binary());
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

    /// Waits until the `watch` `owner` owns the data directory and answers
    /// on its control socket: a command started now is its client. Panics
    /// if the watch ends or does not get there within [`RUN_LIMIT`].
    async fn serving(&self, owner: &mut Child, ctx: &str) {
        let socket = greenlight_core::control::socket_path(&self.data)
            .expect("a control socket path for the data directory");
        let t0 = Instant::now();
        loop {
            let owns = greenlight_core::control::owner(&self.data)
                .is_some_and(|o| o.pid == owner.id() && o.serves);
            // A socket file left by a killed owner refuses connections: one
            // that accepts is the live owner's (only the lock holder binds).
            if owns && std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                return;
            }
            if let Ok(Some(st)) = owner.try_wait() {
                panic!("{ctx}: the watch ended ({st}) before it served the directory");
            }
            assert!(
                t0.elapsed() < RUN_LIMIT,
                "{ctx}: the watch did not serve the directory within {RUN_LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The `greenlight` under test: cargo's build of it, or the copy named by
/// `GREENLIGHT_CRASH_BIN` (`make soak` copies it first, so that a build in
/// a shared target directory during a long run does not change the binary
/// half-way).
fn binary() -> PathBuf {
    std::env::var_os("GREENLIGHT_CRASH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_greenlight").into())
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
    /// Approved on the node (`Operation=start`); a plain job.
    node_side: Vec<String>,
    /// Approved through the cloud; a "User Approval" job.
    cloud_side: Vec<String>,
    /// Of both, the devices whose new image never starts: every update
    /// rolls back.
    rolls_back: Vec<String>,
    /// Of those, the node-side one that reports its rollback as `failed`,
    /// fetches the same image again and offers it again (auto-approve on:
    /// neither that nor approve-all may take the offer up by itself).
    toggles: String,
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
    fn rolls_back(&self, node: &str) -> bool {
        self.rolls_back.iter().any(|n| n == node)
    }
}

/// How a rollback may end in the history: the firmware says `rejected`
/// "Firmware rolled back", or `failed` "MQTT did not connect" (both mean
/// rolled back; an engine that only saw the old version come back may say
/// failed).
fn ended_as_rollback(state: &str) -> bool {
    matches!(state, "rolled_back" | "failed")
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

/// The checks after every kill: an intact database, nothing received twice,
/// no rollback taken for a success.
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
    // The store never holds two live approvals of one update (an ended one
    // counts: a rollback approved again by itself would be a second).
    let rows = db::jobs(&h.db());
    for node in fleet.all() {
        let job = fleet.job_of(r, node);
        let live: Vec<_> = rows
            .iter()
            .filter(|j| &j.node_id == node && j.ota_job_id == job && j.state != "cancelled")
            .collect();
        assert!(live.len() <= 1, "{ctx}: {node} approved twice: {live:?}");
        if fleet.rolls_back(node) {
            assert!(
                live.iter().all(|j| j.state != "success"),
                "{ctx}: {node} rolled back, and the history says success: {live:?}"
            );
        }
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

/// Has every node of the round ended its update: on the new version with a
/// successful job, or — a device that rolls back — back on its old one with
/// the rollback in the history?
fn round_done(h: &Harness, sim: &RainmakerSim, fleet: &Fleet, r: &Round) -> bool {
    let now = Seen::of(sim);
    let devices_done = fleet.all().all(|n| {
        if *n == fleet.toggles {
            // Rolled back and offering the same image again.
            now.rollbacks[n] > r.before.rollbacks[n]
                && sim
                    .fleet
                    .node(n)
                    .is_some_and(|s| s.pending_job.as_deref() == Some(r.node_job.as_str()))
        } else if fleet.rolls_back(n) {
            now.rollbacks[n] > r.before.rollbacks[n]
        } else {
            sim.fleet.node(n).is_some_and(|s| s.fw_version == r.version)
        }
    });
    if !devices_done {
        return false;
    }
    let rows = db::jobs(&h.db());
    fleet.all().all(|n| {
        rows.iter().any(|j| {
            &j.node_id == n
                && j.ota_job_id == fleet.job_of(r, n)
                && if fleet.rolls_back(n) {
                    ended_as_rollback(&j.state)
                } else {
                    j.state == "success"
                }
        })
    })
}

/// The end of a round: each update approved once and ended once — as a
/// success, or as one rollback that was not approved again.
fn check_round(h: &Harness, sim: &RainmakerSim, fleet: &Fleet, r: &Round) {
    let rows = db::jobs(&h.db());
    let now = Seen::of(sim);
    for n in fleet.all() {
        let job = fleet.job_of(r, n);
        let mine: Vec<_> = rows
            .iter()
            .filter(|j| &j.node_id == n && j.ota_job_id == job)
            .collect();
        let (end, ended): (&str, fn(&str) -> bool) = if fleet.rolls_back(n) {
            ("a rollback", ended_as_rollback)
        } else {
            ("a success", |s| s == "success")
        };
        assert_eq!(
            mine.iter().filter(|j| ended(&j.state)).count(),
            1,
            "{n}: the update ends once in history, as {end}: {mine:?}"
        );
        assert!(
            mine.iter()
                .all(|j| ended(&j.state) || j.state == "cancelled"),
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
        if fleet.rolls_back(n) {
            assert_eq!(
                now.rollbacks[n] - r.before.rollbacks[n],
                1,
                "{n}: one rollback"
            );
        }
    }
}

/// The end of a round, where the device that rolled back offers the same
/// image again: `approve --all` leaves it to the user, saying why, and sends
/// nothing at all (every other update of the round has ended).
fn check_reoffer_left_to_user(h: &Harness, sim: &RainmakerSim, fleet: &Fleet, r: &Round) {
    let o = h
        .command(&["--json", "approve", "--all", "--no-wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run greenlight approve --all");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("approve --all --json printed no JSON ({e}): {text}"));
    let outcomes = v["outcomes"].as_array().cloned().unwrap_or_default();
    let toggling = outcomes
        .iter()
        .find(|x| x["node_id"] == fleet.toggles.as_str())
        .unwrap_or_else(|| panic!("approve --all said nothing of {}: {text}", fleet.toggles));
    assert_eq!(
        toggling["result"]["result"], "skipped",
        "the image that rolled back is offered again and left to the user: {text}"
    );
    assert!(
        toggling["result"]["reason"]
            .as_str()
            .is_some_and(|w| w.contains("rolled back")),
        "the user is told it rolled back: {text}"
    );
    for x in &outcomes {
        assert!(
            !matches!(
                x["result"]["result"].as_str(),
                Some("sent" | "queued" | "not_confirmed")
            ),
            "nothing is left to approve at the end of a round: {text}"
        );
    }
    check_after_run(h, sim, fleet, r, "approve --all at the end of the round");
}

/// Which processes one run starts, and which of them the kill point is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// `approve --all`, owning the directory.
    Approve,
    /// `watch`, owning the directory.
    Watch,
    /// `watch` owning and serving, `approve --all` as its client; the kill
    /// point is for the owner, the client or both.
    Split(Victim),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    Owner,
    Client,
    Both,
}

/// Counts of what happened, printed at the end.
#[derive(Default)]
struct Figures {
    /// Kills by (process, kill point).
    by_kind: BTreeMap<(&'static str, &'static str), u32>,
    split_runs: u32,
    cancelled: u32,
    unconfirmed: u32,
}

impl Figures {
    fn killed(&mut self, h: &mut Harness, role: &'static str, point: &'static str) {
        h.kills += 1;
        *self.by_kind.entry((role, point)).or_default() += 1;
    }
}

/// One run: starts the processes of `setup`, kills at `plan` (or lets an
/// `approve` end by itself), and kills whatever survives a moment later.
#[allow(clippy::too_many_arguments)]
async fn one_run(
    h: &mut Harness,
    sim: &RainmakerSim,
    fleet: &Fleet,
    round: &Round,
    setup: Setup,
    plan: Kill,
    rng: &mut Rng,
    fig: &mut Figures,
    ctx: &str,
) {
    // (role, process) and which of them the kill point is for.
    let mut procs: Vec<(&'static str, Child)> = vec![];
    let victims: Vec<usize> = match setup {
        Setup::Approve => {
            procs.push(("approve (alone)", h.spawn(&["--json", "approve", "--all"])));
            vec![0]
        }
        Setup::Watch => {
            procs.push(("watch (alone)", h.spawn(&["--json", "watch"])));
            vec![0]
        }
        Setup::Split(v) => {
            fig.split_runs += 1;
            let mut owner = h.spawn(&["--json", "watch"]);
            h.serving(&mut owner, ctx).await;
            procs.push(("watch (owner, serving approve)", owner));
            procs.push((
                "approve (client of watch)",
                h.spawn(&["--json", "approve", "--all"]),
            ));
            match v {
                Victim::Owner => vec![0],
                Victim::Client => vec![1],
                Victim::Both => vec![0, 1],
            }
        }
    };
    let watching = setup != Setup::Approve;
    let t0 = Instant::now();
    let base_seen = Seen::of(sim);
    let poll = db::Poll::open(&h.db());
    let intents = poll.count(&["requested"]);
    let mut fire_at: Option<Instant> = match plan {
        Kill::After(d) => Some(t0 + d),
        _ => None,
    };
    // Triggers that never come (nothing left to send) fall back to a plain delay.
    let fallback = t0 + rng.ms(1500, 6000);
    let mut fired = false;
    loop {
        // A victim that ended by itself (an `approve` done) is not killed.
        let mut all_ended = true;
        for &i in &victims {
            if !matches!(procs[i].1.try_wait(), Ok(Some(_))) {
                all_ended = false;
            }
        }
        if all_ended {
            break;
        }
        let now = Instant::now();
        if fire_at.is_none() {
            let s = Seen::of(sim);
            fire_at = match plan {
                Kill::OnIntent(d) if poll.count(&["requested"]) > intents => Some(now + d),
                Kill::OnSend(d) if s.sends() > base_seen.sends() => Some(now + d),
                Kill::MidJob(d) if s.total_downloads() > base_seen.total_downloads() => {
                    Some(now + d)
                }
                Kill::OnRollback(d) if s.total_rollbacks() > base_seen.total_rollbacks() => {
                    Some(now + d)
                }
                Kill::Never if watching && round_done(h, sim, fleet, round) => Some(now),
                Kill::Never => None,
                _ if now > fallback => Some(now),
                _ => None,
            };
        }
        if fire_at.is_some_and(|t| now >= t) || now - t0 > RUN_LIMIT {
            fired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    drop(poll);
    if fired {
        for &i in &victims {
            let (role, child) = &mut procs[i];
            if matches!(child.try_wait(), Ok(Some(_))) {
                continue;
            }
            kill(child);
            fig.killed(h, role, plan.kind());
        }
    }
    // The others: a client whose owner died may end by itself (or take the
    // directory over); an owner whose client died keeps running. Either is
    // killed after a random moment, unless it ended by then.
    for (i, (role, child)) in procs.iter_mut().enumerate() {
        if victims.contains(&i) {
            continue;
        }
        let until = Instant::now() + rng.ms(0, 3000);
        while Instant::now() < until && !matches!(child.try_wait(), Ok(Some(_))) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if !matches!(child.try_wait(), Ok(Some(_))) {
            kill(child);
            let after = match (fired, i) {
                (true, 0) => "a moment after its client was killed",
                (true, _) => "a moment after its owner was killed",
                (false, _) => "a moment after its client ended",
            };
            fig.killed(h, role, after);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_points_the_engine_never_sends_twice_nor_loses_an_approval() {
    let bounds = Bounds::from_env();
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
    eprintln!(
        "crash test: GREENLIGHT_CRASH_SEED={seed}: up to {} kills in {} s of killing, {}",
        bounds.max_kills,
        bounds.kill_phase.as_secs(),
        binary().display()
    );

    let Some(keyring) = SecretService::start() else {
        panic!(
            "no Secret Service could be started (dbus-daemon, gnome-keyring): run scripts/deps.sh"
        );
    };
    let mosq = Mosquitto::start();
    let device = |n: usize, name: String, behaviour: Behaviour, node_side: bool| NodeSpec {
        info: NodeInfo {
            node_id: scenario::node_id(n),
            name,
            device_type: "esp.device.sensor".into(),
            model: "ESP32-S3 Sensor".into(),
            project_name: "sensor".into(),
            platform: "esp32s3".into(),
        },
        fw_version: "1.0.0".into(),
        behaviour,
        require_approval: node_side,
        basic_ingest: false,
        ..NodeSpec::default()
    };
    // Four nodes with node-side approval (plain and basic-ingest topics) and
    // two approved through the cloud ("User Approval" jobs); then three whose
    // new image never starts: on the node side one that reports the rollback
    // as `rejected` and one that reports it as `failed` (and fetches and
    // offers the same image again), and one approved through the cloud.
    let cloud_nodes: Vec<NodeSpec> = (0..2)
        .map(|i| {
            device(
                100 + i,
                format!("Cloud Sensor {}", i + 1),
                Behaviour::Normal,
                false,
            )
        })
        .collect();
    let rollback_nodes = vec![
        device(200, "Rollback Sensor".into(), Behaviour::Rollback, true),
        device(
            201,
            "Toggling Sensor".into(),
            Behaviour::RollbackReportedAsFailure,
            true,
        ),
        device(
            202,
            "Cloud Rollback Sensor".into(),
            Behaviour::Rollback,
            false,
        ),
    ];
    let id_of = |s: &NodeSpec| s.info.node_id.clone();
    let sim = RainmakerSim::start(SimConfig {
        broker: BrokerChoice::External(mosq.url()),
        scenario: Scenario::Plain,
        nodes: 4,
        extra_nodes: cloud_nodes.iter().chain(&rollback_nodes).cloned().collect(),
        // Downloads long enough (about a second) to be killed in the middle.
        // The toggling node offers its image again 8 s after reporting the
        // rollback (the firmware: 5 min): an engine that is down for all of
        // that time misses the report, since the cloud then only holds the
        // new "Waiting for Approval", and keeps the job open as delayed (a
        // known gap: SECURITY.md, "Exactly once"). Between runs of this
        // test no engine runs for about a second, so only the live and the
        // resumed reading of the rollback are exercised here.
        timing: Timing {
            download_step: Duration::from_millis(100),
            refetch_after_fail: Duration::from_secs(8),
            ..Timing::fast()
        },
        ready_timeout: Duration::from_secs(60),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let fleet = Fleet {
        node_side: sim.info.nodes[..4]
            .iter()
            .cloned()
            .chain(rollback_nodes[..2].iter().map(id_of))
            .collect(),
        cloud_side: cloud_nodes
            .iter()
            .chain(&rollback_nodes[2..])
            .map(id_of)
            .collect(),
        rolls_back: rollback_nodes.iter().map(id_of).collect(),
        toggles: id_of(&rollback_nodes[1]),
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
    // Two nodes are auto-approved: `watch` approves their new images by
    // itself, and must leave the toggling node's image that rolled back to
    // the user when it is offered again.
    h.ok(&["policy", "auto-approve", &fleet.node_side[0], "on"], None);
    h.ok(&["policy", "auto-approve", &fleet.toggles, "on"], None);

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
    let mut fig = Figures::default();
    let started = Instant::now();

    // ---- the kill phase ----
    while h.kills < bounds.max_kills && started.elapsed() < bounds.kill_phase {
        if round_done(&h, &sim, &fleet, &round) {
            check_round(&h, &sim, &fleet, &round);
            check_reoffer_left_to_user(&h, &sim, &fleet, &round);
            rounds_done += 1;
            round = new_round(rounds_done);
        }
        let setup = match rng.below(10) {
            0..=3 => Setup::Approve,
            4..=6 => Setup::Watch,
            7 => Setup::Split(Victim::Owner),
            8 => Setup::Split(Victim::Client),
            _ => Setup::Split(Victim::Both),
        };
        let plan = match rng.below(14) {
            0..=2 => Kill::After(rng.ms(30, 3000)),
            3..=4 => Kill::OnIntent(rng.ms(0, 3)),
            5..=7 => Kill::OnSend(rng.ms(0, 15)),
            8..=10 => Kill::MidJob(rng.ms(0, 600)),
            11..=12 => Kill::OnRollback(rng.ms(0, 300)),
            _ => Kill::Never,
        };
        let ctx = format!(
            "run {} ({setup:?}, {plan:?}, round {rounds_done})",
            h.runs + 1
        );
        one_run(
            &mut h, &sim, &fleet, &round, setup, plan, &mut rng, &mut fig, &ctx,
        )
        .await;
        // Whatever the killed process had written to its sockets lands now.
        // (Something that lands later still counts: the checks of the next
        // run, of the round and of the whole test count everything.)
        tokio::time::sleep(Duration::from_millis(400)).await;
        check_after_run(&h, &sim, &fleet, &round, &ctx);
        fig.unconfirmed += db::jobs(&h.db())
            .iter()
            .filter(|j| matches!(j.state.as_str(), "requested" | "not_confirmed"))
            .count() as u32;
        fig.cancelled += cancel_unsent(&h, &sim, &fleet, &round).await;
    }
    let kill_phase = started.elapsed();

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
        fig.cancelled += cancel_unsent(&h, &sim, &fleet, &round).await;
    }
    check_round(&h, &sim, &fleet, &round);
    check_reoffer_left_to_user(&h, &sim, &fleet, &round);
    rounds_done += 1;
    assert_eq!(db::integrity_check(&h.db()), "ok");

    // Over the whole test: one start (node-side) or one download (cloud-side)
    // per node per round, nothing more; the devices that roll back rolled
    // back once a round and never ran a new image.
    for s in sim.fleet.stats() {
        let expect = rounds_done as u32;
        assert_eq!(s.downloads_started, expect, "{}: {s:?}", s.node_id);
        if fleet.node_side.contains(&s.node_id) {
            assert_eq!(s.starts_received, expect, "{}: {s:?}", s.node_id);
        }
        if fleet.rolls_back(&s.node_id) {
            assert_eq!(s.rollbacks, expect, "{}: {s:?}", s.node_id);
            assert_eq!(s.updates_applied, 0, "{}: {s:?}", s.node_id);
        }
    }
    let mut kinds: BTreeMap<&str, u32> = BTreeMap::new();
    for ((_, point), n) in &fig.by_kind {
        *kinds.entry(point).or_default() += n;
    }
    let mut report = format!(
        "crash test: seed {seed}: {} SIGKILLs in {} runs ({} of them an owner and its client), {rounds_done} rounds of {} updates ({} rolling back), {unconfirmed} times a kill left an approval unconfirmed ({cancelled} of them never sent: cancelled and approved again; the rest resolved by the node's reports), {:.0} s of killing, {:.0} s in all\n",
        h.kills,
        h.runs,
        fig.split_runs,
        fleet.all().count(),
        fleet.rolls_back.len(),
        kill_phase.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        unconfirmed = fig.unconfirmed,
        cancelled = fig.cancelled,
    );
    report.push_str("  kill points:\n");
    for (point, n) in kinds {
        report.push_str(&format!("    {n:4}  {point}\n"));
    }
    report.push_str("  processes killed, by kill point:\n");
    for ((role, point), n) in &fig.by_kind {
        report.push_str(&format!("    {n:4}  {role}, {point}\n"));
    }
    // Through the process's own stderr: the harness swallows `eprintln!` of
    // a test that passes, and `make soak` prints these figures.
    let _ = std::io::stderr().lock().write_all(report.as_bytes());
    assert!(
        h.kills >= bounds.required_kills,
        "{} kills, {} asked for, in {:.0} s: too few to mean anything",
        h.kills,
        bounds.required_kills,
        kill_phase.as_secs_f64()
    );
    sim.shutdown().await;
    drop(mosq);
    let _ = std::fs::remove_dir_all(&base);
}
