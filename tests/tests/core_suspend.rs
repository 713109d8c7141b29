//! After the machine slept (or a phone suspended the app): the engine's
//! `resumed()` finds at once what appeared while it was away, instead of
//! at the next scheduled sweep, and dials the broker again instead of
//! trusting a connection the suspend may have killed without a word.

#[path = "core_common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use greenlight_core::{AccountState, Engine, Event, UpdateKind};
use greenlight_sim::rainmaker::{JobKind, Timing};
use greenlight_tests::eventually;

const PORCH: &str = "7CDFA1000002";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_made_while_asleep_is_announced_on_resume_without_waiting_for_the_schedule() {
    let _serial = serial().await;
    init_logs();
    let (_mosq, sim) = mosq_and_sim(Timing::fast()).await;
    let dir = data_dir("suspend-offer");
    let mut cfg = config(&dir, secrets(&sim, "home"));
    // Nothing scheduled would look again within this test: only the
    // resume can find the new offer.
    cfg.sweep_interval = Duration::from_secs(3600);
    cfg.sweep_interval_busy = Duration::from_secs(3600);
    cfg.cloud_check_interval = Duration::from_secs(3600);
    let e = Engine::open(cfg).await.expect("engine");
    e.add_account(account(&sim, "home", Sides::Rest))
        .await
        .expect("account");
    // The first look is over: the demo's cloud offer is in, nothing is
    // being checked.
    pending_for(&e, PORCH, UpdateKind::CloudApproval).await;
    eventually(WAIT, "the first look to end", || async {
        let f = e.freshness().await.unwrap();
        f.iter()
            .find(|(a, _)| a == "home")
            .filter(|(_, f)| f.checking.is_none() && f.last_sweep.is_some())
            .map(|_| ())
    })
    .await;
    let before = e
        .freshness()
        .await
        .unwrap()
        .into_iter()
        .find(|(a, _)| a == "home")
        .and_then(|(_, f)| f.last_sweep);

    // While "asleep", the cloud gets a new user-approval release.
    let node = sim.info.nodes[4].clone();
    sim.create_job(
        std::slice::from_ref(&node),
        "9.9.9",
        "Released while the laptop slept",
        JobKind::UserApproval,
    )
    .expect("job created");

    let mut events = e.subscribe();
    e.resumed().await.expect("resume catches up");
    let after = e
        .freshness()
        .await
        .unwrap()
        .into_iter()
        .find(|(a, _)| a == "home")
        .and_then(|(_, f)| f.last_sweep);
    assert!(after > before, "resumed() returns after a new node sweep");
    // The event the notifiers turn into "an update waits".
    wait_event(&mut events, "the new offer to be announced", |ev| {
        matches!(ev, Event::PendingAdded { pending }
            if pending.node_id == node && pending.to_version == "9.9.9"
                && pending.kind == UpdateKind::CloudApproval)
    })
    .await;
    e.shutdown().await;
    sim.shutdown().await;
}

/// A TCP relay in front of the broker that counts the connections it
/// relays and those that ended.
struct Relay {
    port: u16,
    opened: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: String) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("relay binds");
        let port = listener.local_addr().expect("relay address").port();
        let opened = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (o, c) = (opened.clone(), closed.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                o.fetch_add(1, Ordering::SeqCst);
                let c = c.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                    c.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Relay {
            port,
            opened,
            closed,
            task,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_dials_the_broker_again_at_once() {
    let _serial = serial().await;
    init_logs();
    let (_mosq, sim) = mosq_and_sim(Timing::fast()).await;
    let upstream = sim
        .info
        .mqtt
        .trim_start_matches("mqtt://")
        .trim_end_matches('/')
        .to_string();
    let relay = Relay::start(upstream).await;
    let dir = data_dir("suspend-mqtt");
    let e = Engine::open(config(&dir, secrets(&sim, "home")))
        .await
        .expect("engine");
    let mut events = e.subscribe();
    e.add_account(greenlight_core::AccountConfig::mqtt_only(
        "home",
        &format!("mqtt://127.0.0.1:{}", relay.port),
    ))
    .await
    .expect("account");
    wait_event(&mut events, "the account to connect", |ev| {
        matches!(ev, Event::AccountState { account, state: AccountState::Connected } if account == "home")
    })
    .await;
    assert_eq!(relay.opened.load(Ordering::SeqCst), 1);

    // The relay keeps the old connection alive, so the keep-alive would
    // never replace it: only the resume does.
    e.resumed().await.expect("resume");
    eventually(
        WAIT,
        "a new broker connection, the old one closed",
        || async {
            (relay.opened.load(Ordering::SeqCst) == 2 && relay.closed.load(Ordering::SeqCst) == 1)
                .then_some(())
        },
    )
    .await;
    eventually(WAIT, "the account connected again", || async {
        e.accounts()
            .await
            .unwrap()
            .into_iter()
            .find(|(c, s)| c.name == "home" && *s == AccountState::Connected)
            .map(|_| ())
    })
    .await;
    e.shutdown().await;
    relay.task.abort();
    sim.shutdown().await;
}
