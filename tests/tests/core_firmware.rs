//! The engine against nodes that report the way real firmware does
//! (docs/rainmaker.md, "How real firmware reports an update"), on a real
//! mosquitto: a failed attempt that the device retries ends in success, a
//! rollback is a rollback in both of its forms, a download window is named,
//! an offer that arrives after the node is online is auto-approved, and a
//! stock-SDK node is updated through the cloud only.

#[path = "core_common/mod.rs"]
mod common;

use common::*;
use greenlight_core::{
    ApprovalResult, DelayReason, DownloadWindow, EngineHandle, JobState, OtaLayout, UpdateKind,
};
use greenlight_sim::rainmaker::wire::NodeInfo;
use greenlight_sim::rainmaker::{self, scenario, Behaviour, JobKind, JobSpec, NodeSpec, Timing};
use greenlight_tests::{eventually, node_caught_up};

fn info(n: usize, name: &str) -> NodeInfo {
    greenlight_tests::test_plug(scenario::node_id(200 + n), name)
}

fn reason_of(j: &greenlight_core::Job) -> String {
    greenlight_core::words::reason(&j.state)
}

fn node_job(node: &str, fw: &str) -> JobSpec {
    JobSpec::new(&[node.to_string()], fw, JobKind::Plain)
}

async fn approve_sent(e: &EngineHandle, node: &str) {
    pending_for(e, node, UpdateKind::NodeSide).await;
    let out = e.approve(&[node.to_string()]).await.unwrap();
    assert!(
        matches!(out[0].result, ApprovalResult::Sent { .. }),
        "{out:#?}"
    );
}

async fn states_of(e: &EngineHandle, job_id: i64) -> Vec<String> {
    e.job_events(job_id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.state.name().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_that_the_device_retries_ends_updated_not_failed() {
    let _serial = serial().await;
    init_logs();
    let id = info(0, "Retry Plug").node_id;
    let spec = NodeSpec {
        behaviour: Behaviour::RetryThenSucceeds,
        ..NodeSpec::new(info(0, "Retry Plug"), "1.0.0")
    };
    let (_mosq, sim) =
        mosq_and_nodes(vec![spec], vec![node_job(&id, "1.1.0")], Timing::fast()).await;
    let dir = data_dir("fw-retry");
    let e = engine(&dir, &sim, account(&sim, "home", Sides::Both)).await;
    approve_sent(&e, &id).await;
    let j = finished(&e, &id).await;
    assert_eq!(j.state, JobState::Success, "{j:?}");
    let states = states_of(&e, j.id).await;
    assert!(states.iter().any(|s| s == "retrying"), "{states:?}");
    assert!(
        !states.iter().any(|s| s == "failed"),
        "a retried attempt is never shown as the end: {states:?}"
    );
    assert_eq!(sim.fleet.node(&id).unwrap().fw_version, "1.1.0");
    e.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_is_a_rollback_in_both_of_its_forms() {
    let _serial = serial().await;
    init_logs();
    for (n, behaviour, words) in [
        (1, Behaviour::Rollback, "did not start properly"),
        (
            2,
            Behaviour::RollbackReportedAsFailure,
            "could not reach the cloud in time",
        ),
    ] {
        let id = info(n, "Thermostat").node_id;
        let spec = NodeSpec {
            behaviour,
            ..NodeSpec::new(info(n, "Thermostat"), "4.2.0")
        };
        let (_mosq, sim) =
            mosq_and_nodes(vec![spec], vec![node_job(&id, "4.3.0")], Timing::fast()).await;
        let dir = data_dir("fw-rollback");
        let e = engine(&dir, &sim, account(&sim, "home", Sides::Both)).await;
        approve_sent(&e, &id).await;
        let j = finished(&e, &id).await;
        match &j.state {
            JobState::RolledBack { reason } => {
                assert!(
                    reason.contains(words) || reason.contains("went back to its previous firmware"),
                    "{behaviour:?}: {reason}"
                )
            }
            other => panic!("{behaviour:?}: {other:?}"),
        }
        assert!(j.headline.starts_with("Rolled back: "), "{}", j.headline);
        assert_eq!(sim.fleet.node(&id).unwrap().fw_version, "4.2.0");
        if behaviour == Behaviour::RollbackReportedAsFailure {
            // The job stays open: the device fetches the same image again,
            // and the inbox says what happened last time.
            let p = eventually(
                WAIT,
                "the same job offered again, with a warning",
                || async {
                    e.pending()
                        .await
                        .unwrap()
                        .into_iter()
                        .find(|p| p.node_id == id && p.warning.is_some())
                },
            )
            .await;
            assert!(
                p.warning
                    .as_deref()
                    .is_some_and(|w| w.contains("already rolled back")),
                "{p:?}"
            );
            // However the rollback was first seen, the job now says that
            // the device will fetch the image again.
            let j = finished(&e, &id).await;
            assert!(
                reason_of(&j).contains("fetch the same image again"),
                "{j:?}"
            );
            // Approve-all leaves it to the user.
            let all = e.approve_all().await.unwrap();
            assert!(
                all.iter()
                    .any(|o| o.node_id == id && matches!(o.result, ApprovalResult::Skipped { .. })),
                "{all:#?}"
            );
        }
        e.shutdown().await;
        sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_window_is_named_and_the_job_goes_on_when_it_opens() {
    let _serial = serial().await;
    init_logs();
    let id = info(3, "Window Plug").node_id;
    let spec = NodeSpec {
        // 12:00 on the device's clock; the window is 02:00–04:30.
        local_time: Some(12 * 60),
        ..NodeSpec::new(info(3, "Window Plug"), "1.0.0")
    };
    let job = JobSpec {
        download_window: Some(rainmaker::DownloadWindow {
            start: 120,
            end: 270,
        }),
        ..node_job(&id, "1.1.0")
    };
    let (_mosq, sim) = mosq_and_nodes(vec![spec], vec![job], Timing::fast()).await;
    let dir = data_dir("fw-window");
    let e = engine(&dir, &sim, account(&sim, "home", Sides::Both)).await;
    approve_sent(&e, &id).await;
    let j = job_where(&e, &id, "delayed by its download window", |s| {
        matches!(
            s,
            JobState::Delayed {
                delay: DelayReason::DownloadWindow { window: Some(_) }
            }
        )
    })
    .await;
    assert_eq!(
        j.state,
        JobState::Delayed {
            delay: DelayReason::DownloadWindow {
                window: Some(DownloadWindow {
                    start_minute: 120,
                    end_minute: 270
                })
            }
        }
    );
    assert!(
        j.headline.contains("02:00–04:30 device time"),
        "{}",
        j.headline
    );
    // 03:00 on the device: inside the window.
    sim.fleet.set_local_time(&id, Some(3 * 60));
    let j = finished(&e, &id).await;
    assert_eq!(j.state, JobState::Success, "{j:?}");
    e.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_that_arrives_after_the_node_is_online_is_auto_approved() {
    let _serial = serial().await;
    init_logs();
    let id = info(4, "Late Plug").node_id;
    let spec = NodeSpec::new(info(4, "Late Plug"), "1.0.0");
    // No job yet: the node connects, reports, and has nothing to offer.
    let (_mosq, sim) = mosq_and_nodes(vec![spec], vec![], Timing::fast()).await;
    let dir = data_dir("fw-late");
    // The cloud's node list makes the node known; its offer comes later
    // over MQTT, as on a live deployment.
    let e = engine(&dir, &sim, account(&sim, "home", Sides::Both)).await;
    eventually(WAIT, "the node known and online", || async {
        e.nodes()
            .await
            .unwrap()
            .into_iter()
            .find(|n| n.node_id == id && n.is_online() && n.ota_layout.is_some())
    })
    .await;
    e.set_auto_approve(&id, true).await.unwrap();
    assert!(e.pending().await.unwrap().is_empty());
    // The admin creates a job: the cloud tells the online node, which then
    // reports its Info offer — the node record itself does not change.
    sim.create_job(
        std::slice::from_ref(&id),
        "1.1.0",
        "Late fix",
        JobKind::Plain,
    )
    .unwrap();
    let j = finished(&e, &id).await;
    assert_eq!(j.state, JobState::Success, "{j:?}");
    assert!(j.approved_by.contains("auto-approve"), "{j:?}");
    assert_eq!(sim.fleet.node(&id).unwrap().starts_received, 1);
    e.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_sdk_node_is_updated_through_the_cloud_and_never_sent_operation() {
    let _serial = serial().await;
    init_logs();
    let id = info(5, "Stock Sensor").node_id;
    let spec = NodeSpec {
        ota_layout: rainmaker::OtaLayout::Stock,
        require_approval: false,
        ..NodeSpec::new(info(5, "Stock Sensor"), "0.9.1")
    };
    let job = JobSpec {
        description: "First stable release".into(),
        ..JobSpec::new(std::slice::from_ref(&id), "1.0.0", JobKind::UserApproval)
    };
    let (_mosq, sim) = mosq_and_nodes(vec![spec], vec![job], Timing::fast()).await;
    let dir = data_dir("fw-stock");
    let e = engine(&dir, &sim, account(&sim, "home", Sides::Both)).await;
    let node = eventually(WAIT, "the stock node's layout known", || async {
        e.nodes()
            .await
            .unwrap()
            .into_iter()
            .find(|n| n.node_id == id && n.ota_layout.is_some())
    })
    .await;
    assert_eq!(node.ota_layout, Some(OtaLayout::Stock));
    assert_eq!(node.ota, None, "no Operation to write");
    let p = pending_for(&e, &id, UpdateKind::CloudApproval).await;
    assert_eq!(p.to_version, "1.0.0");
    assert!(
        !e.pending()
            .await
            .unwrap()
            .iter()
            .any(|p| p.node_id == id && p.kind == UpdateKind::NodeSide),
        "a stock node is never offered node-side approval"
    );
    // "Check now" must not write Operation to it either.
    e.check_now(&id).await.unwrap();
    let out = e.approve(std::slice::from_ref(&id)).await.unwrap();
    assert!(
        matches!(out[0].result, ApprovalResult::Sent { .. }),
        "{out:#?}"
    );
    let j = finished(&e, &id).await;
    assert_eq!(j.state, JobState::Success, "{j:?}");
    // The node has handled everything the engine had sent it by now, so no
    // Operation is still on its way when its counters are read.
    node_caught_up(&sim, &id, WAIT).await;
    let stats = sim.fleet.node(&id).unwrap();
    assert_eq!(stats.fw_version, "1.0.0");
    // A stock node counts an Operation write as ignored, never as a start or
    // a check: those two would read 0 whatever the engine wrote.
    assert_eq!(stats.operations_ignored, 0, "never sent Operation");
    e.shutdown().await;
    sim.shutdown().await;
}
