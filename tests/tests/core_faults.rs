//! A hostile network: bursts of 429 and 500 from the cloud and an access
//! token expiring in the middle of a job (the job still finishes), and a
//! broker restarted while nodes are pending (pending updates still surface
//! after the watcher reconnects).

#[path = "core_common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use greenlight_core::{
    AccountConfig, AccountState, ApprovalResult, Engine, Event, JobState, UpdateKind,
};
use greenlight_sim::rainmaker::{
    BrokerChoice, Fault, JobKind, RainmakerSim, Scenario, SimConfig, Timing,
};
use greenlight_tests::Mosquitto;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_429_and_500_and_token_expiry_mid_job() {
    let _serial = serial().await;
    init_logs();
    let (_mosq, sim) = mosq_and_sim(slow_download()).await;
    // Tokens minted from now on live 3 s: several refreshes during the jobs.
    sim.cloud.set_token_ttl(3);
    let dir = data_dir("faults");
    let e = engine(&dir, &sim, account(&sim, "home", Sides::Rest)).await;
    let (plug, porch) = (sim.info.nodes[1].clone(), sim.info.nodes[2].clone());
    pending_for(&e, &plug, UpdateKind::NodeSide).await;
    pending_for(&e, &porch, UpdateKind::CloudApproval).await;

    sim.cloud.inject_fault(Fault {
        path_prefix: None,
        status: 429,
        count: 4,
        retry_after: Some(1),
        delay_ms: 0,
    });
    sim.cloud.inject_fault(Fault {
        path_prefix: Some("user/nodes/ota_status".into()),
        status: 500,
        count: 8,
        retry_after: None,
        delay_ms: 0,
    });
    sim.cloud.inject_fault(Fault {
        path_prefix: Some("user/nodes".into()),
        status: 503,
        count: 3,
        retry_after: None,
        delay_ms: 0,
    });
    let out = e.approve(&[plug.clone(), porch.clone()]).await.unwrap();
    assert!(
        out.iter()
            .all(|o| matches!(o.result, ApprovalResult::Sent { .. })),
        "{out:#?}"
    );
    // More trouble in the middle of the jobs.
    sim.cloud.inject_fault(Fault {
        path_prefix: None,
        status: 500,
        count: 5,
        retry_after: None,
        delay_ms: 0,
    });
    for node in [&plug, &porch] {
        let j = finished(&e, node).await;
        assert_eq!(j.state, JobState::Success, "{j:?}");
    }
    let logins = sim
        .cloud
        .state()
        .requests
        .get("POST login2")
        .copied()
        .unwrap_or(0);
    assert!(
        logins >= 2,
        "the token was refreshed ({logins} login2 calls)"
    );
    assert_eq!(sim.fleet.node(&plug).unwrap().starts_received, 1);
    e.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_updates_surface_after_a_broker_restart() {
    let _serial = serial().await;
    init_logs();
    let mut mosq = Mosquitto::start();
    let port = mosq.port;
    // The engine watches the broker before the nodes boot (MQTT only).
    let dir = data_dir("restart");
    let secrets = std::sync::Arc::new(greenlight_core::MemorySecretStore::default());
    let e = Engine::open(config(&dir, secrets)).await.unwrap();
    let mut events = e.subscribe();
    e.add_account(AccountConfig::mqtt_only("local", &mosq.url()))
        .await
        .unwrap();
    let sim = RainmakerSim::start(SimConfig {
        broker: BrokerChoice::External(mosq.url()),
        scenario: Scenario::Demo,
        nodes: 6,
        timing: Timing::fast(),
        ready_timeout: Duration::from_secs(30),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let (desk, plug) = (sim.info.nodes[0].clone(), sim.info.nodes[1].clone());
    // Kitchen Plug publishes on the basic-ingest topics: seen through them.
    pending_for(&e, &plug, UpdateKind::NodeSide).await;

    mosq.kill();
    wait_event(
        &mut events,
        "the watcher to notice the broker is gone",
        |ev| {
            matches!(
                ev,
                Event::AccountState {
                    state: AccountState::Reconnecting { .. },
                    ..
                }
            )
        },
    )
    .await;
    let _mosq2 = Mosquitto::start_on(port);
    wait_event(&mut events, "the watcher to reconnect", |ev| {
        matches!(
            ev,
            Event::AccountState {
                state: AccountState::Connected,
                ..
            }
        )
    })
    .await;
    // A new update for a node that had none, published after the restart.
    sim.create_job(
        std::slice::from_ref(&desk),
        "2.2.0",
        "Night mode",
        JobKind::Plain,
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let p = loop {
        if let Some(p) = e
            .pending()
            .await
            .unwrap()
            .into_iter()
            .find(|p| p.node_id == desk)
        {
            break p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new update never surfaced"
        );
        // The cloud's push may race the node's re-subscription: ask the node
        // to check (Operation=check, published by the watcher).
        let _ = e.check_now(&desk).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(p.to_version, "2.2.0");
    assert!(e.pending().await.unwrap().iter().any(|p| p.node_id == plug));
    e.shutdown().await;
    sim.shutdown().await;
}
