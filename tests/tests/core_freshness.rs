//! What the engine claims to know, against a real simulator: the cloud's
//! user-approval offers are found by a first look at every device right
//! after an account is added (not one device per quarter hour), and when
//! the cloud goes away the devices become unknown — neither online nor
//! offline — and an approval made meanwhile waits and goes out, once, when
//! the cloud is back.

#[path = "core_common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use greenlight_core::{
    ApprovalResult, Engine, Event, JobState, Known, NodeRef, QueueReason, UpdateKind,
};
use greenlight_sim::rainmaker::{BrokerChoice, RainmakerSim, SimConfig, Timing};
use greenlight_tests::eventually;

const PORCH: &str = "7CDFA1000002";
const PLUG: &str = "7CDFA1000001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_look_finds_every_cloud_offer_at_once_and_says_it_is_checking() {
    init_logs();
    let (_mosq, sim) = mosq_and_sim(Timing::fast()).await;
    let dir = data_dir("freshness-first-look");
    let mut cfg = config(&dir, secrets(&sim, "home"));
    // As shipped: each device's cloud offers are checked once per quarter
    // hour. Only the first look can find the offer within this test.
    cfg.cloud_check_interval = Duration::from_secs(15 * 60);
    let e = Engine::open(cfg).await.expect("engine");
    let mut events = e.subscribe();
    e.add_account(account(&sim, "home", Sides::Rest))
        .await
        .expect("account");
    wait_event(&mut events, "the first look to report progress", |ev| {
        matches!(ev, Event::AccountFreshness { freshness, .. } if freshness.checking.is_some_and(|c| c.total >= 6))
    })
    .await;
    let p = pending_for(&e, PORCH, UpdateKind::CloudApproval).await;
    assert_eq!(p.to_version, "1.0.0");
    eventually(WAIT, "the first look to end", || async {
        let f = e.freshness().await.unwrap();
        f.iter()
            .find(|(a, _)| a == "home")
            .filter(|(_, f)| f.checking.is_none() && f.last_sweep.is_some())
            .map(|_| ())
    })
    .await;
    e.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_cloud_is_gone_devices_are_unknown_and_an_approval_waits_for_it_to_return() {
    init_logs();
    let (mosq, sim) = mosq_and_sim(Timing::fast()).await;
    let http: std::net::SocketAddr = sim
        .info
        .http
        .trim_start_matches("http://")
        .parse()
        .expect("the simulator's address");
    let password = sim.info.password.clone();
    let dir = data_dir("freshness-cloud-down");
    let mut cfg = config(&dir, secrets(&sim, "home"));
    cfg.retry.attempts = 2;
    let e = Engine::open(cfg).await.expect("engine");
    e.add_account(account(&sim, "home", Sides::Rest))
        .await
        .expect("account");
    let p = pending_for(&e, PLUG, UpdateKind::NodeSide).await;
    assert_eq!(p.node_online, Some(true));
    let plug = eventually(WAIT, "the plug known online from a sweep", || async {
        e.nodes()
            .await
            .unwrap()
            .into_iter()
            .find(|n| n.node_id == PLUG && n.is_online())
    })
    .await;
    assert!(
        matches!(plug.known, Known::Swept { .. }),
        "{:?}",
        plug.known
    );

    // The cloud goes away.
    sim.shutdown().await;
    let plug = eventually(WAIT, "the plug to become unknown", || async {
        e.nodes()
            .await
            .unwrap()
            .into_iter()
            .find(|n| n.node_id == PLUG && n.online.is_none())
    })
    .await;
    assert!(matches!(plug.known, Known::Unknown { .. }));
    assert!(plug.last_seen.is_some(), "when it was last known online");
    let card = e
        .pending()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.node_id == PLUG)
        .expect("the offer stays in the inbox");
    assert_eq!(card.node_online, None, "the card does not say online");

    // Approve now: not sent into the void, and not a second approval later.
    let out = e.approve([NodeRef::new("home", PLUG)]).await.unwrap();
    assert_eq!(out[0].result, ApprovalResult::Offline, "{out:?}");
    let queued = e
        .install_when_online(NodeRef::new("home", PLUG))
        .await
        .unwrap();
    let ApprovalResult::Queued { job } = queued.result else {
        panic!("{queued:?}")
    };
    assert_eq!(
        job.state,
        JobState::Queued {
            reason: QueueReason::WaitingForNode
        }
    );

    // The same cloud comes back on the same address (same jobs, new tokens).
    let back = RainmakerSim::start(SimConfig {
        http,
        password: Some(password),
        broker: BrokerChoice::External(mosq.url()),
        scenario: greenlight_sim::rainmaker::Scenario::Demo,
        nodes: 6,
        timing: Timing::fast(),
        ready_timeout: Duration::from_secs(60),
        ..SimConfig::default()
    })
    .await
    .expect("the cloud comes back");
    let done = finished(&e, PLUG).await;
    assert_eq!(done.id, job.id, "the approval made while down, not another");
    assert_eq!(done.state, JobState::Success);
    assert_eq!(
        back.fleet.node(PLUG).unwrap().starts_received,
        1,
        "delivered once"
    );
    e.shutdown().await;
    back.shutdown().await;
}
