//! Node-side and cloud-side approvals end to end, from pending to success,
//! through MQTT+REST and through REST only; and exactly once: the same node
//! approved twice, and from two engines on one data directory, gives one
//! `start` at the node.

#[path = "core_common/mod.rs"]
mod common;

use common::*;
use greenlight_core::{ApprovalResult, Event, JobState, UpdateKind};
use greenlight_sim::rainmaker::Timing;
use greenlight_tests::eventually;

async fn both_kinds_end_to_end(sides: Sides) {
    let _serial = serial().await;
    init_logs();
    let (_mosq, sim) = mosq_and_sim(Timing::fast()).await;
    let dir = data_dir(&format!("e2e-{sides:?}"));
    let e = engine(&dir, &sim, account(&sim, "home", sides)).await;
    let mut events = e.subscribe();
    let (plug, porch) = (sim.info.nodes[1].clone(), sim.info.nodes[2].clone());

    let p1 = pending_for(&e, &plug, UpdateKind::NodeSide).await;
    assert_eq!(
        (p1.from_version.as_deref(), p1.to_version.as_str()),
        (Some("1.3.2"), "1.4.0")
    );
    let p2 = pending_for(&e, &porch, UpdateKind::CloudApproval).await;
    assert_eq!(p2.to_version, "1.0.0");
    assert!(p2
        .release_note
        .as_deref()
        .unwrap_or_default()
        .contains("stable release"));
    assert!(p2.size.unwrap_or(0) > 0);
    // The up-to-date node offers nothing.
    assert!(!e
        .pending()
        .await
        .unwrap()
        .iter()
        .any(|p| p.node_id == sim.info.nodes[0]));
    assert_eq!(sim.fleet.node(&plug).unwrap().starts_received, 0);

    let out = e
        .approve(&[plug.clone(), porch.clone(), sim.info.nodes[0].clone()])
        .await
        .unwrap();
    assert_eq!(out.len(), 3);
    assert!(
        matches!(out[0].result, ApprovalResult::Sent { .. }),
        "{out:?}"
    );
    assert!(
        matches!(out[1].result, ApprovalResult::Sent { .. }),
        "{out:?}"
    );
    assert_eq!(out[2].result, ApprovalResult::UpToDate);

    let j1 = finished(&e, &plug).await;
    assert_eq!(j1.state, JobState::Success, "{j1:?}");
    assert_eq!(j1.kind, UpdateKind::NodeSide);
    let j2 = finished(&e, &porch).await;
    assert_eq!(j2.state, JobState::Success, "{j2:?}");
    assert_eq!(j2.kind, UpdateKind::CloudApproval);
    assert_eq!(sim.fleet.node(&plug).unwrap().fw_version, "1.4.0");
    assert_eq!(sim.fleet.node(&porch).unwrap().fw_version, "1.0.0");
    assert_eq!(sim.fleet.node(&plug).unwrap().starts_received, 1);

    // The history of the job has its steps, and the pending updates are gone.
    let steps = e.job_events(j1.id).await.unwrap();
    assert!(steps.len() >= 3, "{steps:?}");
    assert_eq!(steps.first().unwrap().state, JobState::Requested);
    eventually(WAIT, "pending updates to disappear", || async {
        let p = e.pending().await.unwrap();
        (!p.iter().any(|p| p.node_id == plug || p.node_id == porch)).then_some(())
    })
    .await;
    let mut saw_job_event = false;
    while let Ok(ev) = events.try_recv() {
        saw_job_event |= matches!(ev, Event::JobChanged { .. });
    }
    assert!(saw_job_event);
    e.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_end_to_end_mqtt_and_rest() {
    both_kinds_end_to_end(Sides::Both).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_end_to_end_rest_only() {
    both_kinds_end_to_end(Sides::Rest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_start_from_double_approvals_and_two_engines() {
    let _serial = serial().await;
    init_logs();
    let (_mosq, sim) = mosq_and_sim(Timing::fast()).await;
    let dir = data_dir("once");
    let a = engine(&dir, &sim, account(&sim, "home", Sides::Both)).await;
    // The second engine finds the account in the shared database.
    let b = greenlight_core::Engine::open(config(&dir, secrets(&sim, "home")))
        .await
        .unwrap();
    let plug = sim.info.nodes[1].clone();
    pending_for(&a, &plug, UpdateKind::NodeSide).await;
    pending_for(&b, &plug, UpdateKind::NodeSide).await;

    let ids = vec![plug.clone()];
    let (ra, ra2, rb) = tokio::join!(a.approve(&ids), a.approve(&ids), b.approve(&ids));
    let all: Vec<_> = [ra.unwrap(), ra2.unwrap(), rb.unwrap()].concat();
    let sent = all
        .iter()
        .filter(|o| matches!(o.result, ApprovalResult::Sent { .. }))
        .count();
    assert_eq!(sent, 1, "{all:#?}");
    for o in &all {
        if let ApprovalResult::Refused { reason } = &o.result {
            assert!(reason.contains("already"), "{reason}");
        }
    }
    let j = finished(&a, &plug).await;
    assert_eq!(j.state, JobState::Success);
    // Approving again after success is refused or finds nothing to do.
    let again = a.approve(&ids).await.unwrap();
    assert!(
        !matches!(again[0].result, ApprovalResult::Sent { .. }),
        "{again:?}"
    );
    assert_eq!(sim.fleet.node(&plug).unwrap().starts_received, 1);
    let hist = a.history(Default::default()).await.unwrap();
    assert_eq!(
        hist.iter().filter(|j| j.node_id == plug).count(),
        1,
        "{hist:#?}"
    );
    a.shutdown().await;
    b.shutdown().await;
    sim.shutdown().await;
}
