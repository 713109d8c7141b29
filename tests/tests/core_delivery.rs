//! An approval the device never takes, on a real mosquitto: the simulator's
//! node is told to ignore one `start`, so each case happens on purpose, not
//! by timing. The job says it waits for the device, the approval is
//! delivered (once) when the device asks again, and a device back with
//! another update closes the old approval.

#[path = "core_common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use greenlight_core::{ApprovalResult, EngineHandle, JobState, QueueReason, UpdateKind};
use greenlight_sim::rainmaker::wire::NodeInfo;
use greenlight_sim::rainmaker::{scenario, JobKind, JobSpec, NodeSpec, RainmakerSim, Timing};
use greenlight_tests::{eventually, node_caught_up, Mosquitto};

fn spec(n: usize) -> NodeSpec {
    NodeSpec::new(
        NodeInfo {
            node_id: scenario::node_id(300 + n),
            name: format!("Door {n}"),
            device_type: "esp.device.garage-door".into(),
            model: "ESP32 Door Controller".into(),
            project_name: "door_ctrl".into(),
            platform: "esp32".into(),
        },
        "3.0.0",
    )
}

async fn start(n: usize) -> (Mosquitto, RainmakerSim, String) {
    let s = spec(n);
    let id = s.info.node_id.clone();
    let job = JobSpec::new(std::slice::from_ref(&id), "3.0.1", JobKind::Plain);
    let (mosq, sim) = mosq_and_nodes(vec![s], vec![job], Timing::fast()).await;
    (mosq, sim, id)
}

/// Approves while the node will ignore the `start`; returns the job id once
/// the node has ignored it.
async fn approve_ignored(e: &EngineHandle, sim: &RainmakerSim, id: &str) -> i64 {
    pending_for(e, id, UpdateKind::NodeSide).await;
    assert!(sim.fleet.ignore_next_start(id));
    let out = e.approve(&[id.to_string()]).await.unwrap();
    let job = match &out[0].result {
        ApprovalResult::Sent { job } => job.id,
        other => panic!("{other:?}"),
    };
    eventually(WAIT, "the node to ignore the start", || async {
        (sim.fleet.node(id)?.starts_ignored == 1).then_some(())
    })
    .await;
    job
}

async fn state(e: &EngineHandle, job: i64) -> JobState {
    e.history(Default::default())
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.id == job)
        .expect("job")
        .state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_gone_before_it_acted_gets_the_approval_when_it_is_back_exactly_once() {
    let _serial = serial().await;
    init_logs();
    let (_mosq, sim, id) = start(0).await;
    let dir = data_dir("delivery-gone");
    let e = engine(&dir, &sim, account(&sim, "home", Sides::Both)).await;
    let job = approve_ignored(&e, &sim, &id).await;
    assert_eq!(state(&e, job).await, JobState::Sent);
    sim.fleet.set_online(&id, false);
    let j = job_where(&e, &id, "waiting for the device", |s| {
        matches!(
            s,
            JobState::Queued {
                reason: QueueReason::NotTaken { offline: true, .. }
            }
        )
    })
    .await;
    assert!(
        j.headline
            .contains("will be delivered when the device is back"),
        "{}",
        j.headline
    );
    sim.fleet.set_online(&id, true);
    let j = finished(&e, &id).await;
    assert_eq!(j.state, JobState::Success, "{j:?}");
    let n = sim.fleet.node(&id).unwrap();
    assert_eq!(n.fw_version, "3.0.1");
    assert_eq!(
        n.starts_received, 2,
        "one ignored, one delivered after it came back"
    );
    assert_eq!(n.downloads_started, 1, "exactly one install");
    e.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_asks_again_gets_the_same_approval_delivered() {
    let _serial = serial().await;
    init_logs();
    let (_mosq, sim, id) = start(1).await;
    let dir = data_dir("delivery-asks");
    let e = engine(&dir, &sim, account(&sim, "home", Sides::Both)).await;
    let job = approve_ignored(&e, &sim, &id).await;
    assert_eq!(state(&e, job).await, JobState::Sent);
    // An offer that crossed the `start` in flight is not an answer; the
    // engine only takes one from a few seconds after it. This pause spaces
    // the next action; nothing is asserted on the strength of it.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    // "Check now": the device fetches again and asks for approval again.
    e.check_now(&id).await.unwrap();
    let j = finished(&e, &id).await;
    assert_eq!(j.id, job, "the same approval, not a new one");
    assert_eq!(j.state, JobState::Success, "{j:?}");
    let n = sim.fleet.node(&id).unwrap();
    assert_eq!(n.starts_received, 2);
    assert_eq!(n.downloads_started, 1, "exactly one install");
    e.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_back_with_another_update_closes_the_old_approval() {
    let _serial = serial().await;
    init_logs();
    let (_mosq, sim, id) = start(2).await;
    let dir = data_dir("delivery-other");
    let e = engine(&dir, &sim, account(&sim, "home", Sides::Both)).await;
    let job = approve_ignored(&e, &sim, &id).await;
    // Powered off: when it comes back it boots, fetches, and gets the
    // newest job.
    sim.fleet.power_off(&id);
    job_where(&e, &id, "waiting for the device", |s| {
        matches!(s, JobState::Queued { .. })
    })
    .await;
    sim.create_job(
        std::slice::from_ref(&id),
        "3.0.2",
        "Newer fix",
        JobKind::Plain,
    )
    .unwrap();
    sim.fleet.set_online(&id, true);
    let j = finished(&e, &id).await;
    assert_eq!(j.id, job);
    assert_eq!(j.state, JobState::Cancelled, "{j:?}");
    assert!(
        j.progress_text
            .as_deref()
            .is_some_and(|t| t.contains("another update (3.0.2)")),
        "{j:?}"
    );
    let p = eventually(WAIT, "the new offer to wait for the user", || async {
        e.pending()
            .await
            .unwrap()
            .into_iter()
            .find(|p| p.node_id == id && p.to_version == "3.0.2")
    })
    .await;
    assert_eq!(p.kind, UpdateKind::NodeSide);
    // The new offer waits for the user. The engine records a job before it
    // sends anything, in the step that showed the offer: none is open. And
    // the node has handled everything the cloud had sent it.
    let open = e.jobs().await.unwrap();
    assert!(!open.iter().any(|j| j.node_id == id), "{open:#?}");
    node_caught_up(&sim, &id, WAIT).await;
    assert_eq!(sim.fleet.node(&id).unwrap().starts_received, 1);
    assert_eq!(sim.fleet.node(&id).unwrap().downloads_started, 0);
    e.shutdown().await;
    sim.shutdown().await;
}
