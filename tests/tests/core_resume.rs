//! The store is the truth across restarts: a job whose engine is dropped in
//! the middle finishes under a new engine on the same database and appears
//! once in history; an intent that was recorded but never sent is shown as
//! needing confirmation and is not sent again by itself.

#[path = "core_common/mod.rs"]
mod common;

use common::*;
use greenlight_core::store::{NewJob, Store};
use greenlight_core::{ApprovalResult, Engine, JobState, UpdateKind};
use greenlight_sim::rainmaker::Timing;
use greenlight_tests::{node_caught_up, swept_again};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_finishes_under_a_new_engine_and_appears_once() {
    let _serial = serial().await;
    init_logs();
    let (_mosq, sim) = mosq_and_sim(slow_download()).await;
    let dir = data_dir("resume");
    let plug = sim.info.nodes[1].clone();
    let a = engine(&dir, &sim, account(&sim, "home", Sides::Both)).await;
    pending_for(&a, &plug, UpdateKind::NodeSide).await;
    let out = a.approve(std::slice::from_ref(&plug)).await.unwrap();
    assert!(
        matches!(out[0].result, ApprovalResult::Sent { .. }),
        "{out:?}"
    );
    job_where(&a, &plug, "in progress", |s| {
        matches!(s, JobState::InProgress { .. })
    })
    .await;
    a.shutdown().await;
    drop(a);

    // A new engine on the same directory: the account and the job come back.
    let b = Engine::open(config(&dir, secrets(&sim, "home")))
        .await
        .unwrap();
    assert!(b.jobs().await.unwrap().iter().any(|j| j.node_id == plug));
    let j = finished(&b, &plug).await;
    assert_eq!(j.state, JobState::Success, "{j:?}");
    let hist = b.history(Default::default()).await.unwrap();
    assert_eq!(
        hist.iter().filter(|j| j.node_id == plug).count(),
        1,
        "{hist:#?}"
    );
    assert_eq!(sim.fleet.node(&plug).unwrap().starts_received, 1);
    assert_eq!(sim.fleet.node(&plug).unwrap().fw_version, "1.4.0");
    b.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsent_intent_needs_confirmation_and_is_not_resent() {
    let _serial = serial().await;
    init_logs();
    let (_mosq, sim) = mosq_and_sim(Timing::fast()).await;
    let dir = data_dir("unsent");
    let plug = sim.info.nodes[1].clone();
    let a = engine(&dir, &sim, account(&sim, "home", Sides::Rest)).await;
    let p = pending_for(&a, &plug, UpdateKind::NodeSide).await;
    a.shutdown().await;
    drop(a);

    // As if the program died between writing the intent and sending it.
    {
        let mut store = Store::open(&dir).unwrap();
        let job = store
            .insert_intent(&NewJob {
                account: "home".into(),
                node_id: plug.clone(),
                ota_job_id: p.job_id.clone(),
                kind: UpdateKind::NodeSide,
                from_version: p.from_version.clone(),
                to_version: p.to_version.clone(),
                state: JobState::Requested,
                actor: "tester".into(),
                at: 0,
            })
            .unwrap();
        assert!(job.is_ok());
    }

    let b = Engine::open(config(&dir, secrets(&sim, "home")))
        .await
        .unwrap();
    let jobs = b.jobs().await.unwrap();
    let j = jobs
        .iter()
        .find(|j| j.node_id == plug)
        .expect("the intent is shown");
    assert!(matches!(j.state, JobState::NotConfirmed { .. }), "{j:?}");
    // Give the engine every chance to (wrongly) send it: a sweep asked for,
    // then one of its own timer (and its ticks in between).
    b.refresh().await.unwrap();
    swept_again(&b, "home", WAIT).await;
    // The engine records a command before it sends it: the job would have
    // left "not confirmed".
    let still = b.jobs().await.unwrap();
    let still = still.iter().find(|x| x.id == j.id).expect("the intent");
    assert!(
        matches!(still.state, JobState::NotConfirmed { .. }),
        "{still:?}"
    );
    // And nothing reached the node (it has handled all the cloud sent it).
    node_caught_up(&sim, &plug, WAIT).await;
    assert_eq!(sim.fleet.node(&plug).unwrap().starts_received, 0);
    // A second approval is refused while it waits for confirmation.
    let again = b.approve(std::slice::from_ref(&plug)).await.unwrap();
    assert!(
        matches!(
            again[0].result,
            ApprovalResult::Refused { .. } | ApprovalResult::UpToDate
        ),
        "{again:?}"
    );

    // The user confirms: now it is sent, once, and finishes.
    let o = b.confirm_resend(j.id).await.unwrap();
    assert!(matches!(o.result, ApprovalResult::Sent { .. }), "{o:?}");
    let done = finished(&b, &plug).await;
    assert_eq!(done.state, JobState::Success, "{done:?}");
    assert_eq!(done.id, j.id);
    assert_eq!(sim.fleet.node(&plug).unwrap().starts_received, 1);
    b.shutdown().await;
    sim.shutdown().await;
}
