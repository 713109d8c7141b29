//! The same approval flows on the simulator's embedded broker (rumqttd), and
//! the HTTPS mode. One embedded broker per process, so one test here.

use std::time::Duration;

use greenlight_sim::rainmaker::{BrokerChoice, RainmakerSim, Scenario, SimConfig, Timing};
use greenlight_tests::{eventually, Raw};
use reqwest::Method;
use serde_json::json;
use sha2::{Digest, Sha256};

const WAIT: Duration = Duration::from_secs(45);

async fn terminal(raw: &Raw, node: &str, job: &str) -> (String, String) {
    eventually(WAIT, "a terminal ota_status", || async move {
        let b = raw
            .get(&format!(
                "/v1/user/nodes/ota_status?node_id={node}&ota_job_id={job}"
            ))
            .await;
        let s = b["status"].as_str().unwrap_or_default().to_string();
        matches!(s.as_str(), "success" | "failed" | "rejected").then(|| {
            (
                s,
                b["additional_info"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_approval_patterns_on_embedded_broker_over_https() {
    let sim = RainmakerSim::start(SimConfig {
        broker: BrokerChoice::Embedded("127.0.0.1:0".parse().unwrap()),
        https: true,
        scenario: Scenario::Demo,
        // The thermostat's rollback is reported as `failed` and the same
        // image offered again after this delay: long enough to see the end.
        timing: Timing {
            refetch_after_fail: Duration::from_secs(20),
            ..Timing::fast()
        },
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts on the embedded broker");
    assert!(sim.info.http.starts_with("https://"));
    let der = sim.cert_der.clone().expect("certificate");
    assert_eq!(
        sim.info.fingerprint.as_deref(),
        Some(hex(&Sha256::digest(&der)).as_str()),
        "fingerprint is the SHA-256 of the served certificate"
    );

    // A client that trusts exactly that certificate can talk to it...
    let mut raw = Raw::new(&sim.info.http);
    raw.http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_der(&der).unwrap()])
        .build()
        .unwrap();
    raw.login(&sim.info.user, &sim.info.password).await;
    // ...and one that uses the system roots refuses it.
    assert!(reqwest::Client::new()
        .get(format!("{}/apiversions", sim.info.http))
        .send()
        .await
        .is_err());

    // Node-side approval.
    let node = &sim.info.nodes[1];
    let info = eventually(WAIT, "Info", || async {
        let p = raw
            .get(&format!("/v1/user/nodes/params?node_id={node}"))
            .await;
        p["OTA"]["Info"]
            .get("job_id")
            .is_some()
            .then(|| p["OTA"]["Info"].clone())
    })
    .await;
    let job = info["job_id"].as_str().unwrap().to_string();
    let (s, _) = raw
        .send(
            Method::PUT,
            &format!("/v1/user/nodes/params?node_id={node}"),
            Some(json!({"OTA": {"Operation": "start"}})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(terminal(&raw, node, &job).await.0, "success");
    assert_eq!(
        raw.get(&format!("/v1/user/nodes/config?node_id={node}"))
            .await["info"]["fw_version"],
        "1.4.0"
    );
    assert_eq!(sim.fleet.node(node).unwrap().starts_received, 1);

    // Cloud user-approval job, on a node of the stock SDK's layout.
    let node = &sim.info.nodes[2];
    let upd = raw
        .get(&format!("/v1/user/nodes/ota_update?node_id={node}"))
        .await;
    assert_eq!(upd["ota_available"], true);
    let job = upd["ota_job_id"].as_str().unwrap().to_string();
    let (s, b) = raw
        .send(
            Method::POST,
            "/v1/user/nodes/ota_update",
            Some(json!({"ota_job_id": job, "node_id": node})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(terminal(&raw, node, &job).await.0, "success");
    assert_eq!(
        raw.get(&format!("/v1/user/nodes/config?node_id={node}"))
            .await["info"]["fw_version"],
        "1.0.0"
    );

    // A rollback, reported as a failure by this firmware; the old version runs.
    let node = &sim.info.nodes[5];
    let job = eventually(WAIT, "Info", || async {
        let p = raw
            .get(&format!("/v1/user/nodes/params?node_id={node}"))
            .await;
        p["OTA"]["Info"]["job_id"].as_str().map(str::to_string)
    })
    .await;
    raw.send(
        Method::PUT,
        &format!("/v1/user/nodes/params?node_id={node}"),
        Some(json!({"OTA": {"Operation": "start"}})),
    )
    .await;
    assert_eq!(
        terminal(&raw, node, &job).await,
        (
            "failed".to_string(),
            "MQTT did not connect within 90 seconds".to_string()
        )
    );
    assert_eq!(
        raw.get(&format!("/v1/user/nodes/config?node_id={node}"))
            .await["info"]["fw_version"],
        "4.2.0"
    );
    sim.shutdown().await;
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
