//! Shared set-up for the engine tests: a simulator on a given broker, an
//! engine on a fresh data directory with fast timings, and waits on the
//! engine's state.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use greenlight_core::rainmaker::rest::RetryPolicy;
use greenlight_core::{
    secret_keys, AccountConfig, Engine, EngineConfig, EngineHandle, HistoryFilter, Job, JobState,
    MemorySecretStore, PendingUpdate, SecretStore, UpdateKind,
};
use greenlight_sim::rainmaker::{BrokerChoice, RainmakerSim, Scenario, SimConfig, Timing};
use greenlight_tests::eventually;

/// Generous: the machine is small and busy.
pub const WAIT: Duration = Duration::from_secs(60);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs the tests of one file one at a time: `Mosquitto::start` picks a
/// port by binding `:0` and releasing it, so a simulator starting in a
/// parallel test can take that port first (the broker then fails to start
/// and the test talks to an HTTP server). Serial runs avoid that race and
/// the load of three fleets at once on a 2-core machine.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A fresh, empty data directory.
pub fn data_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "greenlight-core-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Test timings with a download long enough to catch a job in the middle.
pub fn slow_download() -> Timing {
    Timing {
        download_step: Duration::from_millis(400),
        ..Timing::fast()
    }
}

/// Starts the demo fleet on `broker`.
pub async fn sim(broker: BrokerChoice, timing: Timing) -> RainmakerSim {
    RainmakerSim::start(SimConfig {
        broker,
        scenario: Scenario::Demo,
        nodes: 6,
        timing,
        ready_timeout: Duration::from_secs(60),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

/// A fresh mosquitto and the demo fleet on it.
pub async fn mosq_and_sim(timing: Timing) -> (greenlight_tests::Mosquitto, RainmakerSim) {
    on_fresh_mosquitto(SimConfig {
        scenario: Scenario::Demo,
        nodes: 6,
        timing,
        ..SimConfig::default()
    })
    .await
}

/// A fresh mosquitto and a simulator with only `nodes` and `jobs` (no demo
/// fleet).
pub async fn mosq_and_nodes(
    nodes: Vec<greenlight_sim::rainmaker::NodeSpec>,
    jobs: Vec<greenlight_sim::rainmaker::JobSpec>,
    timing: Timing,
) -> (greenlight_tests::Mosquitto, RainmakerSim) {
    on_fresh_mosquitto(SimConfig {
        scenario: Scenario::Plain,
        nodes: 0,
        extra_nodes: nodes,
        extra_jobs: jobs,
        timing,
        ..SimConfig::default()
    })
    .await
}

/// Starts `cfg` on a fresh mosquitto. Retried: `Mosquitto::start` picks its
/// port by binding `:0` and releasing it, and anything else on the machine
/// (another test binary) can take that port in between.
async fn on_fresh_mosquitto(cfg: SimConfig) -> (greenlight_tests::Mosquitto, RainmakerSim) {
    let mut last = String::new();
    for _ in 0..3 {
        let mosq = greenlight_tests::Mosquitto::start();
        match RainmakerSim::start(SimConfig {
            broker: BrokerChoice::External(mosq.url()),
            ready_timeout: Duration::from_secs(30),
            ..cfg.clone()
        })
        .await
        {
            Ok(sim) => return (mosq, sim),
            Err(e) => last = e.to_string(),
        }
    }
    panic!("simulator did not start on a fresh mosquitto three times: {last}");
}

/// The engine configuration used by the tests: fast polls and sweeps.
pub fn config(dir: &PathBuf, secrets: Arc<dyn SecretStore>) -> EngineConfig {
    let mut c = EngineConfig::new(dir, secrets, "tester");
    c.sweep_interval = Duration::from_secs(2);
    c.sweep_interval_busy = Duration::from_millis(700);
    c.cloud_check_interval = Duration::from_secs(3);
    c.status_poll_fast = Duration::from_millis(300);
    c.status_poll_slow = Duration::from_secs(2);
    c.rollback_grace = Duration::from_secs(10);
    c.retry = RetryPolicy {
        attempts: 8,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(3),
        request_timeout: Duration::from_secs(10),
    };
    c
}

/// Secrets holding the simulator user's password for `account`.
pub fn secrets(sim: &RainmakerSim, account: &str) -> Arc<MemorySecretStore> {
    let s = Arc::new(MemorySecretStore::default());
    s.set(account, secret_keys::PASSWORD, &sim.info.password)
        .unwrap();
    s
}

/// Which sides an account uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sides {
    /// REST only.
    Rest,
    /// MQTT only.
    Mqtt,
    /// Both.
    Both,
}

/// The account config for the simulator.
pub fn account(sim: &RainmakerSim, name: &str, sides: Sides) -> AccountConfig {
    let rest = AccountConfig::rest(name, &sim.info.http, &sim.info.user);
    match sides {
        Sides::Rest => rest,
        Sides::Both => rest.with_mqtt(&sim.info.mqtt),
        Sides::Mqtt => AccountConfig::mqtt_only(name, &sim.info.mqtt),
    }
}

/// Opens an engine with `acct` added.
pub async fn engine(dir: &PathBuf, sim: &RainmakerSim, acct: AccountConfig) -> EngineHandle {
    let e = Engine::open(config(dir, secrets(sim, &acct.name)))
        .await
        .expect("engine opens");
    e.add_account(acct).await.expect("account added");
    e
}

/// Waits until `node` has a pending update of `kind`.
pub async fn pending_for(e: &EngineHandle, node: &str, kind: UpdateKind) -> PendingUpdate {
    eventually(
        WAIT,
        &format!("a {kind:?} pending update for {node}"),
        || async {
            e.pending()
                .await
                .unwrap()
                .into_iter()
                .find(|p| p.node_id == node && p.kind == kind)
        },
    )
    .await
}

/// Waits until the newest job of `node` satisfies `pred`.
pub async fn job_where(
    e: &EngineHandle,
    node: &str,
    what: &str,
    pred: impl Fn(&JobState) -> bool,
) -> Job {
    eventually(WAIT, &format!("{node}: {what}"), || async {
        let h = e
            .history(HistoryFilter {
                node_id: Some(node.to_string()),
                ..Default::default()
            })
            .await
            .unwrap();
        h.into_iter().next().filter(|j| pred(&j.state))
    })
    .await
}

/// Waits for a terminal job of `node`.
pub async fn finished(e: &EngineHandle, node: &str) -> Job {
    job_where(e, node, "a finished job", |s| s.is_terminal()).await
}

/// Waits for an event matching `pred`.
pub async fn wait_event(
    rx: &mut tokio::sync::broadcast::Receiver<greenlight_core::Event>,
    what: &str,
    pred: impl Fn(&greenlight_core::Event) -> bool,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(ev)) if pred(&ev) => return,
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("event stream ended while waiting for {what}: {e}"),
            Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
        }
    }
}
