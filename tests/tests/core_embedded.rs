//! Against the embedded broker (rumqttd), which drops any client that
//! subscribes to a `$aws/...` filter: the watcher notices, says so, and goes
//! on with plain topics instead of reconnecting forever. (One embedded
//! broker per process: this file has one test.)

#[path = "core_common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use greenlight_core::{AccountConfig, AccountState, Engine, Event};
use greenlight_sim::rainmaker::{BrokerChoice, RainmakerSim, Scenario, SimConfig, Timing};
use greenlight_tests::{eventually, node_caught_up};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_ingest_refusal_falls_back_to_plain_topics() {
    init_logs();
    let sim = RainmakerSim::start(SimConfig {
        broker: BrokerChoice::Embedded(SocketAddr::from(([127, 0, 0, 1], 0))),
        scenario: Scenario::Demo,
        nodes: 6,
        timing: Timing::fast(),
        ready_timeout: Duration::from_secs(60),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let dir = data_dir("embedded");
    let secrets = std::sync::Arc::new(greenlight_core::MemorySecretStore::default());
    let e = Engine::open(config(&dir, secrets)).await.unwrap();
    e.add_account(AccountConfig::mqtt_only("local", &sim.info.mqtt))
        .await
        .unwrap();
    eventually(WAIT, "the account to report the refused topics", || async {
        e.accounts()
            .await
            .unwrap()
            .into_iter()
            .find_map(|(_, s)| match s {
                AccountState::Degraded { reason } => Some(reason),
                _ => None,
            })
    })
    .await;
    // Plain topics still work: the plug re-announces its pending update when
    // it reconnects, and the watcher sees it.
    let plug = sim.info.nodes[1].clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    let p = loop {
        if let Some(p) = e
            .pending()
            .await
            .unwrap()
            .into_iter()
            .find(|p| p.node_id == plug)
        {
            break p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the plug's pending update never surfaced"
        );
        // Make the plug reconnect and announce again.
        sim.fleet.set_online(&plug, false);
        eventually(WAIT, "the plug to go offline", || async {
            (!sim.fleet.node(&plug).unwrap().online).then_some(())
        })
        .await;
        sim.fleet.set_online(&plug, true);
        // Polling pace of this bounded loop (the pending update is the
        // signal it waits for), not a wait anything is asserted on.
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    assert_eq!(p.to_version, "1.4.0");
    // And the watcher stays connected (no reconnect loop): a command sent
    // over its connection now reaches the plug (once the plug is surely
    // listening), and meanwhile the account said nothing but "degraded".
    let mut events = e.subscribe();
    node_caught_up(&sim, &plug, WAIT).await;
    let checks = sim.fleet.node(&plug).unwrap().checks_received;
    e.check_now(&plug).await.unwrap();
    eventually(
        WAIT,
        "the plug to get a check sent over the watcher's connection",
        || async { (sim.fleet.node(&plug)?.checks_received > checks).then_some(()) },
    )
    .await;
    let states = e.accounts().await.unwrap();
    assert!(
        matches!(states[0].1, AccountState::Degraded { .. }),
        "{states:?}"
    );
    loop {
        use tokio::sync::broadcast::error::TryRecvError;
        match events.try_recv() {
            Ok(Event::AccountState { state, .. }) => assert!(
                matches!(state, AccountState::Degraded { .. }),
                "the watcher changed state meanwhile: {state:?}"
            ),
            Ok(_) | Err(TryRecvError::Lagged(_)) => {}
            Err(_) => break,
        }
    }
    e.shutdown().await;
    sim.shutdown().await;
}
