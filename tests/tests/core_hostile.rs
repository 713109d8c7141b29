//! A node (or anyone on the broker) publishing malformed, oversized or
//! hostile payloads does not disturb the other nodes: their pending updates
//! stay right and their approvals finish.

#[path = "core_common/mod.rs"]
mod common;

use common::*;
use greenlight_core::{ApprovalResult, JobState, UpdateKind};
use greenlight_sim::rainmaker::Timing;
use greenlight_tests::eventually;
use rumqttc::{AsyncClient, MqttOptions, QoS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_payloads_do_not_disturb_other_nodes() {
    let _serial = serial().await;
    init_logs();
    let (mosq, sim) = mosq_and_sim(Timing::fast()).await;
    let dir = data_dir("hostile");
    let e = engine(&dir, &sim, account(&sim, "home", Sides::Both)).await;
    let (desk, plug, porch) = (
        sim.info.nodes[0].clone(),
        sim.info.nodes[1].clone(),
        sim.info.nodes[2].clone(),
    );
    let before = pending_for(&e, &plug, UpdateKind::NodeSide).await;
    pending_for(&e, &porch, UpdateKind::CloudApproval).await;
    // The thermostat's own config (before the flood garbles the cloud's
    // copies): renamed, it marks how far the engine has read the flood below.
    let thermo = sim.info.nodes[5].clone();
    let marker = sim.cloud.state().nodes[&thermo].config.clone();
    assert_eq!(marker["node_id"], thermo.as_str(), "{marker}");

    let mut o = MqttOptions::new("hostile", "127.0.0.1", mosq.port);
    o.set_max_packet_size(4 << 20, 4 << 20);
    let (c, mut el) = AsyncClient::new(o, 64);
    let pump = tokio::spawn(async move { while el.poll().await.is_ok() {} });
    let nested = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let huge = format!(
        "{{\"OTA\":{{\"Info\":{{\"job_id\":\"J\",\"fw_version\":\"{}\"}}}}}}",
        "9".repeat(2 << 20)
    );
    let bad: Vec<(String, Vec<u8>)> = vec![
        (
            format!("node/{desk}/params/local"),
            b"\xff\xfe\x00garbage".to_vec(),
        ),
        (
            format!("node/{desk}/params/local"),
            br#"{"OTA":{"Info":"not json at all"}}"#.to_vec(),
        ),
        (
            format!("node/{desk}/params/local"),
            br#"{"OTA":{"Info":{"job_id":5,"fw_version":[1]}}}"#.to_vec(),
        ),
        (
            format!("node/{desk}/params/local"),
            "{\"OTA\":{\"Info\":{\"job_id\":\"a\\u0000b\",\"fw_version\":\"9\"}}}"
                .as_bytes()
                .to_vec(),
        ),
        (format!("node/{desk}/config"), nested.clone().into_bytes()),
        (format!("node/{desk}/params/local/init"), huge.into_bytes()),
        (
            format!("$aws/rules/esp_set_params/node/{desk}/params/local"),
            b"[1,2,3]".to_vec(),
        ),
        (
            format!("node/{desk}/otastatus"),
            br#"{"ota_job_id":"nope","status":"success","additional_info":"spoof"}"#.to_vec(),
        ),
        (
            "node/evil id/config".to_string(),
            br#"{"info":{"name":"x","fw_version":"1"}}"#.to_vec(),
        ),
        (
            "node/\u{00c4}\u{00d6}/config".to_string(),
            br#"{"info":{"name":"x","fw_version":"1"}}"#.to_vec(),
        ),
        (
            format!("node/{}/config", "A".repeat(300)),
            br#"{"info":{"name":"x","fw_version":"1"}}"#.to_vec(),
        ),
        (
            format!("node/{desk}/config"),
            br#"{"info":"not an object"}"#.to_vec(),
        ),
    ];
    // A well-formed message from the same client, about a node none of the
    // checks below looks at, renaming it: the broker delivers one client's
    // messages in order and the engine applies what it reads in order, so
    // once the engine shows the name, every message before it has been read
    // and handled.
    let read_past = |name: &'static str| {
        let (c, e, thermo) = (&c, &e, &thermo);
        let mut marker = marker.clone();
        marker["info"]["name"] = serde_json::json!(name);
        async move {
            c.publish(
                format!("node/{thermo}/config"),
                QoS::AtLeastOnce,
                false,
                marker.to_string(),
            )
            .await
            .unwrap();
            eventually(
                WAIT,
                &format!("the engine to read up to {name:?}"),
                || async {
                    e.nodes()
                        .await
                        .unwrap()
                        .into_iter()
                        .find(|n| n.node_id == *thermo && n.name.as_deref() == Some(name))
                },
            )
            .await;
        }
    };
    for round in 0..3 {
        for (t, p) in &bad {
            c.publish(t.clone(), QoS::AtLeastOnce, false, p.clone())
                .await
                .unwrap();
        }
        if round == 0 {
            // The first round handled on its own, the next two back to back:
            // the engine meets the flood both idle and behind on its reading.
            read_past("Thermostat, after one round").await;
        }
    }
    read_past("Thermostat, after the flood").await;

    let nodes = e.nodes().await.unwrap();
    assert!(nodes
        .iter()
        .all(|n| n.node_id.len() <= 128 && !n.node_id.contains(' ')));
    assert!(!nodes.iter().any(|n| n.node_id.starts_with('\u{00c4}')));
    let d = nodes.iter().find(|n| n.node_id == desk).unwrap();
    assert_eq!(d.fw_version.as_deref(), Some("2.1.0"), "{d:?}");
    assert!(!e.pending().await.unwrap().iter().any(|p| p.node_id == desk));
    let now = pending_for(&e, &plug, UpdateKind::NodeSide).await;
    assert_eq!(
        (now.job_id, now.to_version),
        (before.job_id, before.to_version)
    );

    let out = e.approve(&[plug.clone(), porch.clone()]).await.unwrap();
    assert!(
        out.iter()
            .all(|o| matches!(o.result, ApprovalResult::Sent { .. })),
        "{out:#?}"
    );
    for n in [&plug, &porch] {
        assert_eq!(finished(&e, n).await.state, JobState::Success);
    }
    pump.abort();
    e.shutdown().await;
    sim.shutdown().await;
}
