//! Staged approvals ("approve all, carefully") against simulated devices on
//! a real mosquitto: a failing first device stops everything (no other
//! device receives a start), a good one releases the rest never more than
//! a batch at a time, a rollback in a later batch stops the rest, and a
//! restart in the middle goes on without approving anything twice.
//!
//! The soak is a second of real time here: the engine's own rules for the
//! soak (and the window) are tested on a virtual clock in
//! `crates/core/src/engine/core/rollout_tests.rs`.

#[path = "core_common/mod.rs"]
mod common;

use std::collections::HashSet;

use common::*;
use greenlight_core::{
    Engine, EngineHandle, Event, JobState, MemberState, NodeRef, Rollout, RolloutAction,
    RolloutPlan, RolloutState, UpdateKind,
};
use greenlight_sim::rainmaker::{scenario, Behaviour, JobKind, JobSpec, NodeSpec, RainmakerSim};
use tokio::sync::broadcast::Receiver;

fn id(n: usize) -> String {
    scenario::node_id(300 + n)
}

/// `n` identical plugs on 1.0.0 with one job to 2.0.0 (a download takes
/// about 4 s, so a test can catch one in the middle); `odd` behave so.
async fn fleet(
    n: usize,
    odd: &[(usize, Behaviour)],
) -> (greenlight_tests::Mosquitto, RainmakerSim, Vec<String>) {
    let ids: Vec<String> = (1..=n).map(id).collect();
    let specs = (1..=n)
        .map(|i| NodeSpec {
            behaviour: odd
                .iter()
                .find(|(j, _)| *j == i)
                .map(|(_, b)| *b)
                .unwrap_or(Behaviour::Normal),
            ..NodeSpec::new(
                greenlight_tests::test_plug(id(i), &format!("Plug {i}")),
                "1.0.0",
            )
        })
        .collect();
    let job = JobSpec::new(&ids, "2.0.0", JobKind::Plain);
    let (mosq, sim) = mosq_and_nodes(specs, vec![job], slow_download()).await;
    (mosq, sim, ids)
}

async fn all_offered(e: &EngineHandle, ids: &[String]) {
    for n in ids {
        pending_for(e, n, UpdateKind::NodeSide).await;
    }
}

fn plan(batch: u32, soak_secs: u32) -> RolloutPlan {
    RolloutPlan {
        batch,
        soak_secs,
        ..RolloutPlan::default()
    }
}

/// Waits for a rollout event matching `pred`; returns the rollout.
async fn rollout_where(
    rx: &mut Receiver<Event>,
    what: &str,
    pred: impl Fn(&Rollout) -> bool,
) -> Rollout {
    // A rollout is several devices' updates one after another.
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(Event::RolloutChanged { rollout })) if pred(&rollout) => return rollout,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("event stream broke while waiting for {what}: {e}"),
            Err(_) => panic!("timed out after {:?} waiting for {what}", WAIT * 3),
        }
    }
}

fn member(r: &Rollout, node: &str) -> MemberState {
    r.members
        .iter()
        .find(|m| m.node_id == node)
        .map(|m| m.state.clone())
        .expect("member")
}

fn starts(sim: &RainmakerSim, node: &str) -> u32 {
    sim.fleet.node(node).expect("node").starts_received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_first_device_stops_everything() {
    let _serial = serial().await;
    init_logs();
    let (_mosq, sim, ids) = fleet(4, &[(1, Behaviour::DownloadFails)]).await;
    let dir = data_dir("rollout-canary-fails");
    let e = engine(&dir, &sim, account(&sim, "home", Sides::Both)).await;
    all_offered(&e, &ids).await;
    let mut rx = e.subscribe();
    let r = e
        .start_rollout(RolloutPlan {
            canary: Some(NodeRef::from(ids[0].as_str())),
            ..plan(3, 1)
        })
        .await
        .unwrap();
    assert_eq!(r.members[0].node_id, ids[0], "the chosen device goes first");
    let stopped = rollout_where(&mut rx, "the rollout stopped", |r| {
        matches!(r.state, RolloutState::Stopped { .. })
    })
    .await;
    match &stopped.state {
        RolloutState::Stopped {
            node_id, reason, ..
        } => {
            assert_eq!(node_id, &ids[0]);
            assert!(reason.contains("Plug 1 failed"), "{reason}");
        }
        s => panic!("{s:?}"),
    }
    // The device fetches the image again after its failure and offers it
    // anew: by then the rollout has had many chances to approve others.
    pending_for(&e, &ids[0], UpdateKind::NodeSide).await;
    assert_eq!(starts(&sim, &ids[0]), 1);
    for n in &ids[1..] {
        assert_eq!(starts(&sim, n), 0, "{n} received a start");
        assert_eq!(
            member(&e.rollouts().await.unwrap()[0], n),
            MemberState::Waiting
        );
    }
    // Cancelled: nothing more, ever.
    let c = e.rollout_action(None, RolloutAction::Cancel).await.unwrap();
    assert_eq!(c.state, RolloutState::Cancelled);
    assert!(
        c.headline.starts_with("Cancelled: 0 updated"),
        "{}",
        c.headline
    );
    e.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_first_device_releases_the_rest_a_batch_at_a_time() {
    let _serial = serial().await;
    init_logs();
    let (_mosq, sim, ids) = fleet(5, &[]).await;
    let dir = data_dir("rollout-batches");
    let e = engine(&dir, &sim, account(&sim, "home", Sides::Both)).await;
    all_offered(&e, &ids).await;
    let mut rx = e.subscribe();
    let r = e.start_rollout(plan(2, 1)).await.unwrap();
    let first = r.members[0].node_id.clone();
    // Every job the engine reports as approved and not ended, at once.
    let mut running: HashSet<i64> = HashSet::new();
    let mut most = 0;
    let mut first_updated = false;
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    let done = loop {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("the rollout ends in time")
            .expect("events");
        match ev {
            Event::JobChanged { job } => {
                if job.node_id != first {
                    assert!(
                        first_updated,
                        "{} started before the first device soaked",
                        job.node_id
                    );
                }
                if job.state.is_terminal() {
                    running.remove(&job.id);
                } else {
                    running.insert(job.id);
                }
                most = most.max(running.len());
                assert!(running.len() <= 2, "{} running at once", running.len());
            }
            Event::RolloutChanged { rollout } => {
                if member(&rollout, &first) == MemberState::Updated {
                    first_updated = true;
                }
                if rollout.state != RolloutState::Running {
                    break rollout;
                }
            }
            _ => {}
        }
    };
    assert_eq!(done.state, RolloutState::Done, "{}", done.headline);
    assert!(done.succeeded());
    assert_eq!(most, 2, "batches of two did run");
    let stages: HashSet<Option<u32>> = done.members.iter().map(|m| m.stage).collect();
    assert_eq!(stages, HashSet::from([Some(0), Some(1), Some(2)]));
    for n in &ids {
        let s = sim.fleet.node(n).unwrap();
        assert_eq!(
            (s.fw_version.as_str(), s.starts_received),
            ("2.0.0", 1),
            "{n}"
        );
    }
    e.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_in_a_later_batch_stops_the_rest() {
    let _serial = serial().await;
    init_logs();
    // Plug 1 first, then batch 1 = plugs 2 and 3; plug 3 rolls back.
    let (_mosq, sim, ids) = fleet(5, &[(3, Behaviour::Rollback)]).await;
    let dir = data_dir("rollout-rollback");
    let e = engine(&dir, &sim, account(&sim, "home", Sides::Both)).await;
    all_offered(&e, &ids).await;
    let mut rx = e.subscribe();
    e.start_rollout(RolloutPlan {
        canary: Some(NodeRef::from(ids[0].as_str())),
        ..plan(2, 1)
    })
    .await
    .unwrap();
    let stopped = rollout_where(&mut rx, "the rollout stopped", |r| {
        matches!(r.state, RolloutState::Stopped { .. })
    })
    .await;
    match &stopped.state {
        RolloutState::Stopped {
            node_id, reason, ..
        } => {
            assert_eq!(node_id, &ids[2]);
            assert!(reason.contains("rolled back"), "{reason}");
        }
        s => panic!("{s:?}"),
    }
    assert_eq!(member(&stopped, &ids[0]), MemberState::Updated);
    // Plug 2, in the same batch, finishes on its own.
    let j = finished(&e, &ids[1]).await;
    assert_eq!(j.state, JobState::Success);
    let after = rollout_where(&mut rx, "plug 2 watched to its end", |r| {
        member(r, &ids[1]) == MemberState::Updated
    })
    .await;
    assert!(matches!(after.state, RolloutState::Stopped { .. }));
    for n in &ids[3..] {
        assert_eq!(starts(&sim, n), 0, "{n} received a start");
    }
    assert_eq!(sim.fleet.node(&ids[2]).unwrap().fw_version, "1.0.0");
    e.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_goes_on_without_a_second_approval() {
    let _serial = serial().await;
    init_logs();
    let (_mosq, sim, ids) = fleet(3, &[]).await;
    let dir = data_dir("rollout-restart");
    let e = engine(&dir, &sim, account(&sim, "home", Sides::Both)).await;
    all_offered(&e, &ids).await;
    let mut rx = e.subscribe();
    let r = e.start_rollout(plan(1, 1)).await.unwrap();
    let first = r.members[0].node_id.clone();
    // Stopped while the first device downloads.
    job_where(&e, &first, "downloading", |s| {
        matches!(s, JobState::InProgress { .. })
    })
    .await;
    drop(rx);
    e.shutdown().await;
    assert_eq!(starts(&sim, &first), 1);

    // The same data directory, a new engine: it follows the job it had
    // approved and goes on.
    let e = Engine::open(config(&dir, secrets(&sim, "home")))
        .await
        .unwrap();
    rx = e.subscribe();
    let now = e.rollouts().await.unwrap();
    assert_eq!(now[0].id, r.id, "the rollout is still there");
    let done = rollout_where(&mut rx, "the rollout done", |r| {
        r.state != RolloutState::Running
    })
    .await;
    assert_eq!(done.state, RolloutState::Done, "{}", done.headline);
    for n in &ids {
        let s = sim.fleet.node(n).unwrap();
        assert_eq!(
            (s.fw_version.as_str(), s.starts_received),
            ("2.0.0", 1),
            "{n}"
        );
    }
    let jobs = e.history(Default::default()).await.unwrap();
    assert_eq!(jobs.len(), 3, "one approval per device: {jobs:#?}");
    e.shutdown().await;
    sim.shutdown().await;
}
