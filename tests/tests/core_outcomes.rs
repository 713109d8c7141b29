//! Truthful endings on the demo fleet: a job that stops moving is reported
//! stuck with its last text, a node that comes back on its old firmware is
//! reported rolled back, a failed first attempt that the device retries ends
//! updated, and an offline node is offered "install when online", which
//! then happens.

#[path = "core_common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use greenlight_core::{ApprovalResult, Engine, JobState, UpdateKind};
use greenlight_tests::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_rolled_back_and_failed_are_reported() {
    let _serial = serial().await;
    init_logs();
    let (_mosq, sim) = mosq_and_sim(slow_download()).await;
    let dir = data_dir("outcomes");
    let mut cfg = config(&dir, secrets(&sim, "home"));
    cfg.stuck_after = Duration::from_secs(3);
    let e = Engine::open(cfg).await.unwrap();
    e.add_account(account(&sim, "home", Sides::Both))
        .await
        .unwrap();
    let (plug, fan, thermo) = (
        sim.info.nodes[1].clone(),
        sim.info.nodes[4].clone(),
        sim.info.nodes[5].clone(),
    );
    for n in [&plug, &fan, &thermo] {
        pending_for(&e, n, UpdateKind::NodeSide).await;
    }
    let out = e
        .approve(&[plug.clone(), fan.clone(), thermo.clone()])
        .await
        .unwrap();
    assert!(
        out.iter()
            .all(|o| matches!(o.result, ApprovalResult::Sent { .. })),
        "{out:#?}"
    );

    // The plug drops off the network in the middle of its download.
    // (Once it has reported a percentage: the plug is built to send them.)
    eventually(WAIT, "the plug downloading, with a percentage", || async {
        e.jobs()
            .await
            .unwrap()
            .into_iter()
            .find(|j| j.node_id == plug && j.percent.is_some())
    })
    .await;
    sim.fleet.set_online(&plug, false);
    let stuck = job_where(&e, &plug, "stuck", |s| *s == JobState::Stuck).await;
    assert!(stuck.progress_text.is_some(), "{stuck:?}");

    let rb = finished(&e, &thermo).await;
    assert!(matches!(rb.state, JobState::RolledBack { .. }), "{rb:?}");
    assert_eq!(sim.fleet.node(&thermo).unwrap().fw_version, "4.2.0");

    // The fan's first attempt fails and the firmware tries again.
    let fan_job = finished(&e, &fan).await;
    assert_eq!(fan_job.state, JobState::Success, "{fan_job:?}");
    let fan_steps = e.job_events(fan_job.id).await.unwrap();
    assert!(
        fan_steps
            .iter()
            .any(|s| matches!(s.state, JobState::Retrying { .. })),
        "{fan_steps:#?}"
    );
    assert_eq!(
        fan_job.percent, None,
        "no percentage from a device that sends none"
    );

    // Percentages were only taken from the node's own texts (the plug is
    // built to send them).
    let steps = e.job_events(stuck.id).await.unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s.text.as_deref().is_some_and(|t| t.contains('%'))),
        "{steps:#?}"
    );
    e.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_node_is_offered_install_when_online() {
    let _serial = serial().await;
    init_logs();
    let (_mosq, sim) = mosq_and_sim(greenlight_sim::rainmaker::Timing::fast()).await;
    let dir = data_dir("offline");
    let e = engine(&dir, &sim, account(&sim, "home", Sides::Both)).await;
    let garage = sim.info.nodes[3].clone();
    pending_for(&e, &garage, UpdateKind::NodeSide).await;
    eventually(WAIT, "the garage door to be offline", || async {
        e.nodes()
            .await
            .unwrap()
            .into_iter()
            .find(|n| n.node_id == garage && n.online == Some(false))
    })
    .await;
    let out = e.approve(std::slice::from_ref(&garage)).await.unwrap();
    assert_eq!(out[0].result, ApprovalResult::Offline);
    let all = e.approve_all().await.unwrap();
    assert!(
        all.iter()
            .any(|o| o.node_id == garage && o.result == ApprovalResult::Offline),
        "{all:#?}"
    );
    let q = e.install_when_online(&garage).await.unwrap();
    assert!(matches!(q.result, ApprovalResult::Queued { .. }), "{q:?}");
    assert_eq!(sim.fleet.node(&garage).unwrap().starts_received, 0);

    sim.fleet.set_online(&garage, true);
    let j = finished(&e, &garage).await;
    assert_eq!(j.state, JobState::Success, "{j:?}");
    assert_eq!(sim.fleet.node(&garage).unwrap().fw_version, "3.0.1");
    assert_eq!(sim.fleet.node(&garage).unwrap().starts_received, 1);
    e.shutdown().await;
    sim.shutdown().await;
}
