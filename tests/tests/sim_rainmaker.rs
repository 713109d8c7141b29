//! The RainMaker simulator against a real mosquitto, driven over REST exactly
//! as a third-party client would: both approval patterns end to end, every
//! failure behaviour with its documented status and text, and the REST
//! contract (auth, paging, aliases, error bodies). The firmware's report
//! sequences (attempts, reboots, rollbacks, delays, the stock layout) are
//! checked message by message with a raw MQTT subscriber on the broker.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use greenlight_sim::rainmaker::wire::{parse_node_topic, NodeInfo};
use greenlight_sim::rainmaker::{
    Behaviour, BrokerChoice, DownloadWindow, Fault, JobKind, JobSpec, NodeSpec, OtaLayout,
    RainmakerSim, Scenario, SimConfig, Timing,
};
use greenlight_tests::{eventually, node_caught_up, Mosquitto, Raw};
use reqwest::Method;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use tokio::sync::Notify;

const WAIT: Duration = Duration::from_secs(45);

async fn start(mosq: &Mosquitto, scenario: Scenario, nodes: usize) -> (RainmakerSim, Raw) {
    let sim = RainmakerSim::start(SimConfig {
        broker: BrokerChoice::External(mosq.url()),
        scenario,
        nodes,
        timing: Timing::fast(),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let mut raw = Raw::new(&sim.info.http);
    raw.login(&sim.info.user, &sim.info.password).await;
    (sim, raw)
}

/// Polls `ota_status` until `done` holds for it, returning every distinct
/// (status, additional_info) seen in order (polling may miss short-lived ones).
async fn follow_until(
    raw: &Raw,
    node: &str,
    job: &str,
    done: impl Fn(&str, &str) -> bool,
) -> Vec<(String, String)> {
    let mut seen: Vec<(String, String)> = vec![];
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let b = raw
            .get(&format!(
                "/v1/user/nodes/ota_status?node_id={node}&ota_job_id={job}"
            ))
            .await;
        let s = (
            b["status"].as_str().unwrap_or_default().to_string(),
            b["additional_info"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        if done(&s.0, &s.1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ota_status of {node} never got there: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    seen
}

/// [`follow_until`] an end: `success`, `rejected`, or a `failed` after which
/// no retry follows (the last attempt, or a rollback reported as a failure).
async fn follow(raw: &Raw, node: &str, job: &str) -> Vec<(String, String)> {
    follow_until(raw, node, job, |status, text| match status {
        "success" | "rejected" => true,
        "failed" => text.contains("3/3") || text.starts_with("MQTT did not connect"),
        _ => false,
    })
    .await
}

async fn pending_info(raw: &Raw, node: &str) -> Value {
    eventually(WAIT, "Info to carry a job", || async move {
        let p = raw
            .get(&format!("/v1/user/nodes/params?node_id={node}"))
            .await;
        let info = p["OTA"]["Info"].clone();
        info.get("job_id").is_some().then_some(info)
    })
    .await
}

async fn approve_node_side(raw: &Raw, node: &str) {
    let (s, b) = raw
        .send(
            Method::PUT,
            &format!("/v1/user/nodes/params?node_id={node}"),
            Some(json!({"OTA": {"Operation": "start"}})),
        )
        .await;
    assert_eq!((s, b["status"].as_str()), (200, Some("success")), "{b}");
}

async fn fw_version(raw: &Raw, node: &str) -> String {
    raw.get(&format!("/v1/user/nodes/config?node_id={node}"))
        .await["info"]["fw_version"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_side_approval_end_to_end() {
    let mosq = Mosquitto::start();
    let (sim, raw) = start(&mosq, Scenario::Demo, 6).await;
    let node = &sim.info.nodes[1]; // Kitchen Plug: 1.3.2 with 1.4.0 waiting
    let info = pending_info(&raw, node).await;
    assert_eq!(info["fw_version"], "1.4.0");
    let job = info["job_id"].as_str().unwrap().to_string();
    let before = raw
        .get(&format!(
            "/v1/user/nodes/ota_status?node_id={node}&ota_job_id={job}"
        ))
        .await;
    assert_eq!(
        (
            before["status"].as_str(),
            before["additional_info"].as_str()
        ),
        (Some("delayed"), Some("Waiting for Approval"))
    );
    assert_eq!(before["ts_source"], "NODE");
    assert_eq!(
        sim.fleet.node(node).unwrap().starts_received,
        0,
        "nothing may start before approval"
    );

    approve_node_side(&raw, node).await;
    let seen = follow(&raw, node, &job).await;
    let statuses: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(statuses.first(), Some(&"delayed"));
    assert!(statuses.contains(&"in-progress"), "{seen:?}");
    assert_eq!(
        seen.last().unwrap(),
        &(
            "success".to_string(),
            "OTA Upgrade finished and verified successfully".to_string()
        )
    );
    assert!(
        seen.iter()
            .any(|s| s.1.starts_with("Downloaded ") && s.1.ends_with("% Firmware Image"))
            || seen.len() >= 3,
        "{seen:?}"
    );

    assert_eq!(fw_version(&raw, node).await, "1.4.0");
    let params = raw
        .get(&format!("/v1/user/nodes/params?node_id={node}"))
        .await;
    assert_eq!(
        params["OTA"]["Info"],
        json!({}),
        "Info is cleared to an object after success"
    );
    let stats = sim.fleet.node(node).unwrap();
    assert_eq!(
        (
            stats.starts_received,
            stats.downloads_started,
            stats.updates_applied
        ),
        (1, 1, 1)
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_user_approval_end_to_end() {
    let mosq = Mosquitto::start();
    let (sim, raw) = start(&mosq, Scenario::Demo, 6).await;
    let node = &sim.info.nodes[2]; // Porch Sensor: 0.9.1, a user-approval job to 1.0.0
    let upd = raw
        .get(&format!("/v1/user/nodes/ota_update?node_id={node}"))
        .await;
    assert_eq!(upd["status"], "success");
    assert_eq!(upd["ota_available"], true);
    assert_eq!(upd["fw_version"], "1.0.0");
    assert!(upd["description"]
        .as_str()
        .unwrap()
        .contains("stable release"));
    assert!(upd["file_size"].as_u64().unwrap() > 0);
    let job = upd["ota_job_id"].as_str().unwrap().to_string();
    let st = raw
        .get(&format!(
            "/v1/user/nodes/ota_status?node_id={node}&ota_job_id={job}"
        ))
        .await;
    assert_eq!(
        (st["status"].as_str(), st["ts_source"].as_str()),
        (Some("triggered"), Some("CLOUD"))
    );
    // Nothing reaches the node before approval: once its boot-time fetch is
    // out and the node has caught up with the cloud both ways, that fetch
    // has been answered (or not) and the answer handled.
    eventually(WAIT, "the node's boot-time fetch", || async {
        (sim.fleet.node(node)?.fetches >= 1).then_some(())
    })
    .await;
    node_caught_up(&sim, node, WAIT).await;
    assert_eq!(sim.fleet.node(node).unwrap().downloads_started, 0);
    assert_eq!(fw_version(&raw, node).await, "0.9.1");

    // Approve with a body sent without Content-Type, as some clients do.
    let resp = raw
        .http
        .post(format!("{}/v1/user/nodes/ota_update", raw.base))
        .header("Authorization", &raw.token)
        .body(json!({"ota_job_id": job, "node_id": node}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let seen = follow(&raw, node, &job).await;
    assert_eq!(seen.last().unwrap().0, "success", "{seen:?}");
    assert_eq!(fw_version(&raw, node).await, "1.0.0");
    let after = raw
        .get(&format!("/v1/user/nodes/ota_update?node_id={node}"))
        .await;
    assert_ne!(
        after["ota_available"], true,
        "no update is offered once installed: {after}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_behaviours_report_documented_statuses() {
    let mosq = Mosquitto::start();
    let (sim, raw) = start(&mosq, Scenario::Demo, 6).await;

    // Bedroom Fan: attempt 1 fails, attempt 2 succeeds.
    let fan = &sim.info.nodes[4];
    let job = pending_info(&raw, fan).await["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    approve_node_side(&raw, fan).await;
    let seen = follow(&raw, fan, &job).await;
    assert_eq!(
        seen.last().unwrap(),
        &(
            "success".into(),
            "OTA Upgrade finished and verified successfully".into()
        ),
        "{seen:?}"
    );
    assert_eq!(fw_version(&raw, fan).await, "1.2.0");
    assert_eq!(sim.fleet.node(fan).unwrap().attempts, 2);

    // Hall Thermostat: rolls back and says so as `failed`; the old version
    // runs, and the job stays open: the same image is offered again.
    let thermo = &sim.info.nodes[5];
    let job = pending_info(&raw, thermo).await["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    approve_node_side(&raw, thermo).await;
    let seen = follow(&raw, thermo, &job).await;
    assert_eq!(
        seen.last().unwrap(),
        &(
            "failed".into(),
            "MQTT did not connect within 90 seconds".into()
        ),
        "{seen:?}"
    );
    let stats = sim.fleet.node(thermo).unwrap();
    assert_eq!(
        (stats.boots, stats.rollbacks),
        (2, 1),
        "the node really rebooted"
    );
    assert_eq!(fw_version(&raw, thermo).await, "4.2.0");
    follow_until(&raw, thermo, &job, |s, t| {
        s == "delayed" && t == "Waiting for Approval"
    })
    .await;
    assert_eq!(pending_info(&raw, thermo).await["job_id"], job.as_str());

    // Offline: the node reported its pending update, then dropped off (last will).
    let garage = &sim.info.nodes[3];
    pending_info(&raw, garage).await;
    eventually(WAIT, "garage door to go offline", || async {
        let s = raw
            .get(&format!("/v1/user/nodes/status?node_id={garage}"))
            .await;
        (s["connectivity"]["connected"] == false).then_some(())
    })
    .await;
    // ...and comes back when told to.
    assert!(sim.fleet.set_online(garage, true));
    eventually(WAIT, "garage door back online", || async {
        let s = raw
            .get(&format!("/v1/user/nodes/status?node_id={garage}"))
            .await;
        (s["connectivity"]["connected"] == true).then_some(())
    })
    .await;
    sim.shutdown().await;
}

fn node_info(id: &str, name: &str) -> NodeInfo {
    NodeInfo {
        node_id: id.into(),
        name: name.into(),
        device_type: "esp.device.lightbulb".into(),
        model: "Test".into(),
        project_name: "test".into(),
        platform: "esp32".into(),
    }
}

fn extra(id: &str, behaviour: Behaviour, require_approval: bool) -> NodeSpec {
    NodeSpec {
        behaviour,
        require_approval,
        basic_ingest: true,
        ..NodeSpec::new(node_info(id, &format!("{behaviour:?} node")), "1.0.0")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_version_slow_flapping_and_sleepy_nodes() {
    let mosq = Mosquitto::start();
    let sim = RainmakerSim::start(SimConfig {
        broker: BrokerChoice::External(mosq.url()),
        scenario: Scenario::Plain,
        nodes: 0,
        timing: Timing::fast(),
        extra_nodes: vec![
            extra("SAMEVER", Behaviour::SameVersion, true),
            NodeSpec {
                progress: true,
                ..extra("SLOW", Behaviour::SlowDownload, false)
            },
            extra("FLAPPY", Behaviour::Flapping, true),
            extra("SLEEPY", Behaviour::Sleepy, true),
        ],
        // The same-version job exists before SAMEVER connects, so its only
        // `otaurl` before the approval answers its boot-time fetch, and the
        // offer seen below is that answer: no fetch of the node is still
        // open when the start goes out. (Created once the simulator was up
        // instead, the job was pushed at once while the boot-time fetch could
        // still be in flight; a start landing between that fetch and its
        // answer left two answers for one approval, and the later one,
        // arriving after the rejection, was offered again: "Waiting for
        // Approval" for good.)
        extra_jobs: vec![JobSpec {
            description: "same".into(),
            ..JobSpec::new(&["SAMEVER".into()], "1.0.0", JobKind::Plain)
        }],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut raw = Raw::new(&sim.info.http);
    raw.login(&sim.info.user, &sim.info.password).await;

    let info = pending_info(&raw, "SAMEVER").await;
    assert_eq!(info["fw_version"], "1.0.0");
    let job = info["job_id"].as_str().unwrap().to_string();
    approve_node_side(&raw, "SAMEVER").await;
    let seen = follow(&raw, "SAMEVER", &job).await;
    assert_eq!(
        seen.last().unwrap(),
        &("rejected".into(), "Same version received".into())
    );

    // A node without node-side approval applies a plain job at once (a forced
    // update), slowly: progress texts arrive over several steps.
    let job = sim
        .create_job(&["SLOW".into()], "1.1.0", "slow", JobKind::Plain)
        .unwrap();
    let seen = follow(&raw, "SLOW", &job).await;
    let pct = seen
        .iter()
        .filter(|s| s.1.starts_with("Downloaded "))
        .count();
    assert!(pct >= 5, "slow download reports many steps: {seen:?}");
    assert_eq!(seen.last().unwrap().0, "success");
    assert_eq!(fw_version(&raw, "SLOW").await, "1.1.0");

    // Flapping and sleepy nodes go offline and come back by themselves.
    for id in ["FLAPPY", "SLEEPY"] {
        let mut states = BTreeSet::new();
        let deadline = std::time::Instant::now() + WAIT;
        while states.len() < 2 {
            let st = raw
                .get(&format!("/v1/user/nodes/status?node_id={id}"))
                .await;
            states.insert(st["connectivity"]["connected"].as_bool().unwrap_or(false));
            assert!(
                std::time::Instant::now() < deadline,
                "{id} never changed connectivity both ways"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_contract() {
    let mosq = Mosquitto::start();
    let (sim, mut raw) = start(&mosq, Scenario::Plain, 7).await;
    let anon = Raw::new(&sim.info.http);
    assert_eq!(
        anon.get("/apiversions").await,
        json!({"supported_versions": ["v1"]})
    );

    // Wrong password → 400 101009.
    let (s, b) = anon
        .send(
            Method::POST,
            "/v1/login2",
            Some(json!({"user_name": sim.info.user, "password": "wrong"})),
        )
        .await;
    assert_eq!(
        (s, b["status"].as_str(), b["error_code"].as_u64()),
        (400, Some("failure"), Some(101009))
    );

    // Tokens are JWT-shaped with exp/email/custom:user_id.
    let login = raw.login(&sim.info.user, &sim.info.password).await;
    for k in ["idtoken", "accesstoken", "refreshtoken"] {
        assert_eq!(login[k].as_str().unwrap().split('.').count(), 3, "{k}");
    }
    let claims = greenlight_sim::rainmaker::jwt::decode_payload(&raw.token).unwrap();
    assert!(claims["exp"].as_u64().unwrap() > claims["iat"].as_u64().unwrap());
    assert_eq!(claims["email"], sim.info.user.as_str());
    assert!(claims["custom:user_id"].is_string());

    // No token, a Bearer prefix, garbage → 401 with an error body.
    for auth in [
        None,
        Some(format!("Bearer {}", raw.token)),
        Some("junk".to_string()),
    ] {
        let mut rb = raw.http.get(format!("{}/v1/user/nodes", raw.base));
        if let Some(a) = auth {
            rb = rb.header("Authorization", a);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401);
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["status"], "failure");
    }

    // Paging: 7 nodes, 3 per page.
    let mut ids = vec![];
    let mut start = String::new();
    let mut pages = 0;
    loop {
        let q = if start.is_empty() {
            String::new()
        } else {
            format!("&start_id={start}")
        };
        let b = raw
            .get(&format!(
                "/v1/user/nodes?node_details=true&num_records=3{q}"
            ))
            .await;
        pages += 1;
        assert_eq!(b["total"], 7);
        let details = b["node_details"].as_array().unwrap();
        assert_eq!(details.len(), b["nodes"].as_array().unwrap().len());
        for d in details {
            assert_eq!(d["id"], d["node_id"]);
            assert!(d["config"]["services"][0]["type"] == "esp.service.ota");
            assert!(d["status"]["connectivity"]["connected"].is_boolean());
            assert!(d["params"]["OTA"].is_object());
            ids.push(d["id"].as_str().unwrap().to_string());
        }
        match b.get("next_id").and_then(Value::as_str) {
            Some(n) => start = n.to_string(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(ids, sim.info.nodes);
    let plain = raw.get("/v1/user/nodes").await;
    assert!(plain.get("node_details").is_none());
    let (s, _) = raw
        .send(Method::GET, "/v1/user/nodes?num_records=0", None)
        .await;
    assert_eq!(s, 400);

    // nodeid= alias, initial Info is the string "{}".
    let n0 = &sim.info.nodes[0];
    let p = raw.get(&format!("/v1/user/nodes/params?nodeid={n0}")).await;
    assert_eq!(p["OTA"]["Info"], json!("{}"));
    assert!(
        raw.get(&format!("/v1/user/nodes/status?nodeid={n0}")).await["connectivity"]["timestamp"]
            .is_u64()
    );
    assert_eq!(
        raw.get(&format!("/v1/user/nodes/config?nodeid={n0}")).await["node_id"],
        n0.as_str()
    );

    // Unknown node → 400 102004; array PUT → 207 with per-node results.
    let (s, b) = raw
        .send(Method::GET, "/v1/user/nodes/params?node_id=NOPE", None)
        .await;
    assert_eq!((s, b["error_code"].as_u64()), (400, Some(102004)));
    let (s, b) = raw
        .send(Method::PUT, "/v1/user/nodes/params", Some(json!([{"node_id": n0, "payload": {"Light": {"Power": false}}}, {"node_id": "NOPE", "payload": {}}])))
        .await;
    assert_eq!(s, 207);
    assert_eq!(b[0]["status"], "success");
    assert_eq!(
        (b[1]["status"].as_str(), b[1]["error_code"].as_u64()),
        (Some("failure"), Some(102004))
    );
    // The write reached the node, which reported the change back.
    eventually(WAIT, "the node to report Power=false", || async {
        (raw.get(&format!("/v1/user/nodes/params?node_id={n0}"))
            .await["Light"]["Power"]
            == false)
            .then_some(())
    })
    .await;
    let (s, b) = raw
        .send(
            Method::PUT,
            "/v1/user/nodes/params",
            Some(json!((0..26)
                .map(|_| json!({"node_id": n0, "payload": {}}))
                .collect::<Vec<_>>())),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    let (s, _) = raw
        .send(
            Method::PUT,
            &format!("/v1/user/nodes/params?node_id={n0}"),
            Some(json!("not an object")),
        )
        .await;
    assert_eq!(s, 400);
    let r = raw
        .http
        .put(format!("{}/v1/user/nodes/params?node_id={n0}", raw.base))
        .header("Authorization", &raw.token)
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    // ota_update / ota_status errors.
    let (s, b) = raw
        .send(
            Method::GET,
            &format!("/v1/user/nodes/ota_status?node_id={n0}&ota_job_id=NOPE"),
            None,
        )
        .await;
    assert_eq!((s, b["error_code"].as_u64()), (404, Some(105024)));
    let (s, b) = raw
        .send(
            Method::POST,
            "/v1/user/nodes/ota_update",
            Some(json!({"ota_job_id": "NOPE", "node_id": n0})),
        )
        .await;
    assert_eq!((s, b["error_code"].as_u64()), (400, Some(105061)));
    let job = sim
        .create_job(
            &[sim.info.nodes[1].clone()],
            "2.0.0",
            "n",
            JobKind::UserApproval,
        )
        .unwrap();
    let (s, b) = raw
        .send(
            Method::POST,
            "/v1/user/nodes/ota_update",
            Some(json!({"ota_job_id": job, "node_id": n0})),
        )
        .await;
    assert_eq!((s, b["error_code"].as_u64()), (400, Some(105036)));
    assert_eq!(
        raw.get(&format!("/v1/user/nodes/ota_update?node_id={n0}"))
            .await["ota_available"],
        false
    );

    // An offline node cannot approve a cloud job: 102001.
    let n1 = &sim.info.nodes[1];
    sim.fleet.set_online(n1, false);
    eventually(WAIT, "node offline", || async {
        (raw.get(&format!("/v1/user/nodes/status?node_id={n1}"))
            .await["connectivity"]["connected"]
            == false)
            .then_some(())
    })
    .await;
    let (s, b) = raw
        .send(
            Method::POST,
            "/v1/user/nodes/ota_update",
            Some(json!({"ota_job_id": job, "node_id": n1})),
        )
        .await;
    assert_eq!((s, b["error_code"].as_u64()), (400, Some(102001)));

    // Injected faults: 429 with Retry-After, then normal service.
    sim.cloud.inject_fault(Fault {
        path_prefix: Some("user/nodes".into()),
        status: 429,
        count: 2,
        retry_after: Some(3),
        delay_ms: 0,
    });
    for _ in 0..2 {
        let r = raw
            .http
            .get(format!("{}/v1/user/nodes", raw.base))
            .header("Authorization", &raw.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 429);
        assert_eq!(r.headers()["retry-after"], "3");
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["error_code"], 100070);
    }
    raw.get("/v1/user/nodes").await;

    // Refresh-token login, then logout; an expired access token → 401.
    let (s, r) = anon
        .send(
            Method::POST,
            "/v1/login2",
            Some(json!({"user_name": sim.info.user, "refreshtoken": login["refreshtoken"]})),
        )
        .await;
    assert_eq!(s, 200);
    assert!(r.get("refreshtoken").is_none() && r["accesstoken"].is_string());
    let (s, b) = anon
        .send(
            Method::POST,
            "/v1/login2",
            Some(json!({"refreshtoken": "bogus"})),
        )
        .await;
    assert_eq!((s, b["error_code"].as_u64()), (400, Some(101017)));
    sim.cloud.set_token_ttl(1);
    let mut short = Raw::new(&sim.info.http);
    short.login(&sim.info.user, &sim.info.password).await;
    short.get("/v1/user/nodes").await;
    // The simulator's tokens expire on its wall clock (one-second TTL): wait
    // for the refusal itself rather than sleeping past the expiry.
    let (s, b) = eventually(WAIT, "the one-second token to expire", || async {
        let (s, b) = short.send(Method::GET, "/v1/user/nodes", None).await;
        (s != 200).then_some((s, b))
    })
    .await;
    assert_eq!((s, b["status"].as_str()), (401, Some("failure")));
    sim.cloud.set_token_ttl(3600);
    let (s, _) = raw
        .send(
            Method::POST,
            "/v1/logout2",
            Some(json!({"refreshtoken": login["refreshtoken"]})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = anon
        .send(
            Method::POST,
            "/v1/login2",
            Some(json!({"refreshtoken": login["refreshtoken"]})),
        )
        .await;
    assert_eq!(s, 400, "a logged-out refresh token is refused");
    let (s, _) = raw.send(Method::GET, "/v1/user/nodes", None).await;
    assert_eq!(s, 401, "the access token used to log out is gone too");
    raw.login(&sim.info.user, &sim.info.password).await;

    // The admin API needs its own token.
    let (s, _) = raw.send(Method::GET, "/sim/jobs", None).await;
    assert_eq!(s, 401);
    let mut admin = Raw::new(&sim.info.http);
    admin.token = sim.info.admin_token.clone();
    let jobs = admin.get("/sim/jobs").await;
    assert_eq!(jobs.as_array().unwrap().len(), 1);
    let (s, b) = admin.send(Method::POST, "/sim/jobs", Some(json!({"nodes": [n0], "fw_version": "9.9.9", "description": "x", "kind": "user_approval"}))).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        raw.get(&format!("/v1/user/nodes/ota_update?node_id={n0}"))
            .await["fw_version"],
        "9.9.9"
    );
    sim.shutdown().await;
}

// ---- The firmware's report sequences, seen on the broker ------------------

/// One message on a node topic, as a raw subscriber of the broker sees it.
#[derive(Debug, Clone)]
struct Msg {
    node: String,
    suffix: String,
    body: Value,
}

impl Msg {
    /// A one-line description, compact enough to compare whole sequences.
    fn event(&self) -> String {
        let b = &self.body;
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        match self.suffix.as_str() {
            "otastatus" => format!("{}: {}", text(&b["status"]), text(&b["additional_info"])),
            "config" => format!("config {}", text(&b["info"]["fw_version"])),
            "params/local/init" => "init".into(),
            "otafetch" => "otafetch".into(),
            "otaurl" => format!("otaurl {}", text(&b["ota_job_id"])),
            "params/remote" => "remote".into(),
            "params/local" if *b == json!({"Connectivity": {"Connected": false}}) => "WILL".into(),
            "params/local" => match b.get("OTA") {
                Some(ota) if ota.get("Status").is_some() => format!(
                    "Status {} | {}",
                    text(&ota["Status"]),
                    ota["Info"].as_str().unwrap_or("<not a string>")
                ),
                Some(ota) => match ota.get("Info") {
                    Some(Value::Object(o)) if o.is_empty() => "Info {}".into(),
                    Some(Value::Object(o)) => format!(
                        "offer {} {}",
                        o.get("job_id").map(text).unwrap_or_default(),
                        o.get("fw_version").map(text).unwrap_or_default()
                    ),
                    other => format!("Info {other:?}"),
                },
                None => "params".into(),
            },
            other => format!("{other} {b}"),
        }
    }
}

/// A raw MQTT subscriber of every node topic (both forms), started before
/// the simulator so it hears the boot messages too.
struct Tap {
    msgs: Arc<Mutex<Vec<Msg>>>,
    seen: Arc<Notify>,
    _client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Tap {
    async fn start(mosq: &Mosquitto) -> Tap {
        let mut o = MqttOptions::new(
            format!("sim-tap-{}-{}", std::process::id(), mosq.port),
            "127.0.0.1",
            mosq.port,
        );
        o.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut el) = AsyncClient::new(o, 100);
        for f in ["node/#", "$aws/rules/+/node/#"] {
            client.subscribe(f, QoS::AtLeastOnce).await.unwrap();
        }
        let acked = tokio::time::timeout(WAIT, async {
            let mut acks = 0;
            while acks < 2 {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => acks += 1,
                    Ok(_) => {}
                    Err(e) => panic!("tap cannot reach mosquitto: {e}"),
                }
            }
        })
        .await;
        assert!(
            acked.is_ok(),
            "the tap's subscriptions were not acknowledged"
        );
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Notify::new());
        let (m, n) = (msgs.clone(), seen.clone());
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let Some((node, suffix)) = parse_node_topic(&p.topic) else {
                            continue;
                        };
                        let body = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                        m.lock().unwrap().push(Msg {
                            node: node.to_string(),
                            suffix: suffix.to_string(),
                            body,
                        });
                        n.notify_waiters();
                    }
                    Ok(_) => {}
                    // The event loop reconnects on the next poll: a pause
                    // so a broker that is gone is not dialled in a busy loop
                    // (the task ends with the tap).
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        Tap {
            msgs,
            seen,
            _client: client,
            task,
        }
    }

    /// Every message of `node` so far.
    fn of(&self, node: &str) -> Vec<Msg> {
        self.msgs
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.node == node)
            .cloned()
            .collect()
    }

    /// Every event of `node` so far (see [`Msg::event`]).
    fn story(&self, node: &str) -> Vec<String> {
        self.of(node).iter().map(Msg::event).collect()
    }

    /// Waits for an event of `node` equal to `event` at index `from` or
    /// later, and for `nth` (1-based) such events; returns the index of the last.
    async fn wait(&self, node: &str, from: usize, event: &str, nth: usize) -> usize {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.seen.notified();
            if let Some((i, _)) = self
                .story(node)
                .iter()
                .enumerate()
                .skip(from)
                .filter(|(_, e)| e.as_str() == event)
                .nth(nth - 1)
            {
                return i;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "timed out waiting for {event:?} #{nth} from {node} (after #{from}); its story: {:#?}",
                    self.story(node)
                );
            }
        }
    }

    /// Waits for the first event of `node` equal to `event`.
    async fn first(&self, node: &str, event: &str) -> usize {
        self.wait(node, 0, event, 1).await
    }

    /// Waits for the next event of `node` equal to `event` after index `after`.
    async fn next(&self, node: &str, after: usize, event: &str) -> usize {
        self.wait(node, after + 1, event, 1).await
    }

    /// The story of `node` from index `from` through index `to`, without the
    /// events `keep` rejects.
    fn slice(&self, node: &str, from: usize, to: usize, keep: fn(&str) -> bool) -> Vec<String> {
        self.story(node)[from..=to]
            .iter()
            .filter(|e| keep(e))
            .cloned()
            .collect()
    }
}

/// Status reports, reboots and boots: what the attempt sequences are made of.
fn reports_and_boots(e: &str) -> bool {
    e.contains(": ") || matches!(e, "WILL" | "init") || e.starts_with("config ")
}

/// A simulator with only `nodes` and `jobs` (created before the nodes
/// connect), on `mosq`, with a tap already listening.
async fn sim_with(
    mosq: &Mosquitto,
    nodes: Vec<NodeSpec>,
    jobs: Vec<JobSpec>,
) -> (RainmakerSim, Raw, Tap) {
    let tap = Tap::start(mosq).await;
    let sim = RainmakerSim::start(SimConfig {
        broker: BrokerChoice::External(mosq.url()),
        scenario: Scenario::Plain,
        nodes: 0,
        timing: Timing::fast(),
        extra_nodes: nodes,
        extra_jobs: jobs,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let mut raw = Raw::new(&sim.info.http);
    raw.login(&sim.info.user, &sim.info.password).await;
    (sim, raw, tap)
}

/// The newest job of `node`.
fn job_of(sim: &RainmakerSim, node: &str) -> String {
    let st = sim.cloud.state();
    st.jobs
        .values()
        .filter(|j| j.nodes.contains(node))
        .max_by_key(|j| j.seq)
        .map(|j| j.id.clone())
        .expect("a job for the node")
}

fn boot_job(node: &str, version: &str) -> JobSpec {
    JobSpec::new(&[node.to_string()], version, JobKind::Plain)
}

fn plain_job(sim: &RainmakerSim, node: &str, version: &str) -> String {
    sim.create_job(&[node.to_string()], version, "test", JobKind::Plain)
        .unwrap()
}

fn attempt(n: u32) -> String {
    format!("in-progress: Starting OTA Upgrade (HTTPS attempt {n}/3)")
}

/// Writes something harmless and waits for the node to report it back: every
/// message sent to the node before has been handled by then.
async fn barrier(raw: &Raw, tap: &Tap, node: &str, power: bool) {
    raw.send(
        Method::PUT,
        &format!("/v1/user/nodes/params?node_id={node}"),
        Some(json!({"Light": {"Power": power}})),
    )
    .await;
    let want = json!({"Light": {"Power": power}});
    eventually(WAIT, "the node to report the barrier write", || async {
        tap.of(node)
            .iter()
            .any(|m| m.suffix == "params/local" && m.body == want)
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_progress_and_reboots_as_the_firmware_reports_them() {
    let mosq = Mosquitto::start();
    let (sim, raw, tap) = sim_with(
        &mosq,
        vec![
            extra("RETRY", Behaviour::RetryThenSucceeds, true),
            NodeSpec {
                basic_ingest: false,
                ..extra("FAILS", Behaviour::DownloadFails, true)
            },
            NodeSpec {
                progress: true,
                rollback: false,
                ..extra("NOROLLBACK", Behaviour::Normal, false)
            },
        ],
        vec![boot_job("RETRY", "1.1.0"), boot_job("FAILS", "1.1.0")],
    )
    .await;

    // The offer only comes after the auto-fetch: config, init, fetch, URL, offer.
    let retry_job = job_of(&sim, "RETRY");
    let fails_job = job_of(&sim, "FAILS");
    let offered = tap.first("RETRY", "delayed: Waiting for Approval").await;
    assert_eq!(
        tap.slice("RETRY", 0, offered, |_| true),
        [
            "config 1.0.0".to_string(),
            "init".into(),
            "otafetch".into(),
            format!("otaurl {retry_job}"),
            format!("offer {retry_job} 1.1.0"),
            "delayed: Waiting for Approval".into(),
        ]
    );
    assert_eq!(
        tap.of("RETRY")[1].body["OTA"]["Info"],
        json!("{}"),
        "Info is the string \"{{}}\" at boot"
    );
    tap.first("FAILS", "delayed: Waiting for Approval").await;
    approve_node_side(&raw, "RETRY").await;
    approve_node_side(&raw, "FAILS").await;

    // RetryThenSucceeds: attempt 1 fails, attempt 2 succeeds; with rollback
    // the node reboots (last will) and says `success` once back on 1.1.0.
    let start = tap.first("RETRY", &attempt(1)).await;
    let done = tap.first("RETRY", "Info {}").await;
    assert_eq!(
        tap.slice("RETRY", start, done, |e| reports_and_boots(e)
            || e == "Info {}"),
        [
            attempt(1),
            "failed: OTA Attempt 1/3 failed: ESP_ERR_HTTP_EAGAIN".into(),
            attempt(2),
            "in-progress: Rebooting into new firmware".into(),
            "WILL".into(),
            "config 1.1.0".into(),
            "init".into(),
            "success: OTA Upgrade finished and verified successfully".into(),
            "Info {}".into(),
        ]
    );
    assert!(
        !tap.story("RETRY").iter().any(|e| e.contains('%')),
        "no percentages without progress reporting: {:#?}",
        tap.story("RETRY")
    );
    for m in tap.of("RETRY").iter().filter(|m| m.suffix == "otastatus") {
        assert_eq!(m.body["ota_job_id"], retry_job.as_str());
        let ts = m.body["ts"].as_u64().unwrap();
        assert!(
            (1_600_000_000..10_000_000_000).contains(&ts),
            "otastatus.ts is epoch seconds: {ts}"
        );
    }
    // The cloud hears the same reports (it may lag behind the tap).
    follow_until(&raw, "RETRY", &retry_job, |s, _| s == "success").await;
    let rest = raw
        .get(&format!(
            "/v1/user/nodes/ota_status?node_id=RETRY&ota_job_id={retry_job}"
        ))
        .await;
    assert!(
        rest["timestamp"].as_u64().unwrap() > 1_600_000_000_000,
        "REST timestamps are epoch milliseconds: {rest}"
    );
    assert_eq!(sim.fleet.node("RETRY").unwrap().attempts, 2);

    // DownloadFails: three failed attempts, then (the job still open) a new
    // fetch later and the same offer again: approval was for one fetch.
    let start = tap.first("FAILS", &attempt(1)).await;
    let last = tap
        .next(
            "FAILS",
            start,
            "failed: OTA Attempt 3/3 failed: Image download interrupted",
        )
        .await;
    let reoffer = tap
        .next("FAILS", last, "delayed: Waiting for Approval")
        .await;
    let interrupted =
        |n: u32| format!("failed: OTA Attempt {n}/3 failed: Image download interrupted");
    assert_eq!(
        tap.slice("FAILS", start, reoffer, |_| true),
        [
            attempt(1),
            interrupted(1),
            attempt(2),
            interrupted(2),
            attempt(3),
            interrupted(3),
            "Info {}".into(),
            "otafetch".into(),
            format!("otaurl {fails_job}"),
            format!("offer {fails_job} 1.1.0"),
            "delayed: Waiting for Approval".into(),
        ]
    );
    let stats = sim.fleet.node("FAILS").unwrap();
    assert_eq!((stats.attempts, stats.fw_version.as_str()), (3, "1.0.0"));

    // Progress reporting, no rollback: `success` before the reboot, then the
    // node drops off and comes back on the new version.
    let job = plain_job(&sim, "NOROLLBACK", "1.1.0");
    let start = tap.first("NOROLLBACK", &attempt(1)).await;
    let back = tap.first("NOROLLBACK", "config 1.1.0").await;
    let mut want = vec![
        attempt(1),
        "in-progress: Downloading Firmware Image".to_string(),
    ];
    want.extend((1..=10).map(|i| format!("in-progress: Downloaded {}% Firmware Image", i * 10)));
    want.extend([
        "in-progress: Firmware Image download complete".to_string(),
        "success: OTA Upgrade finished successfully".into(),
        "Info {}".into(),
        "WILL".into(),
        "config 1.1.0".into(),
    ]);
    assert_eq!(tap.slice("NOROLLBACK", start, back, |_| true), want);
    assert!(tap
        .of("NOROLLBACK")
        .iter()
        .filter(|m| m.suffix == "otastatus")
        .all(|m| m.body["ota_job_id"] == job.as_str()),);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollbacks_come_back_on_the_old_version_in_both_forms() {
    let mosq = Mosquitto::start();
    let (sim, raw, tap) = sim_with(
        &mosq,
        vec![
            extra("ROLLBACK", Behaviour::Rollback, true),
            extra("ROLLFAIL", Behaviour::RollbackReportedAsFailure, false),
        ],
        vec![],
    )
    .await;
    let job = plain_job(&sim, "ROLLBACK", "2.0.0");
    tap.first("ROLLBACK", "delayed: Waiting for Approval").await;
    approve_node_side(&raw, "ROLLBACK").await;
    let start = tap.first("ROLLBACK", &attempt(1)).await;
    let end = tap
        .first("ROLLBACK", "rejected: Firmware rolled back")
        .await;
    assert_eq!(
        tap.slice("ROLLBACK", start, end, reports_and_boots),
        [
            attempt(1),
            "in-progress: Rebooting into new firmware".into(),
            "WILL".into(),
            "config 1.0.0".into(),
            "init".into(),
            "rejected: Firmware rolled back".into(),
        ]
    );
    assert_eq!(fw_version(&raw, "ROLLBACK").await, "1.0.0");
    let s = sim.fleet.node("ROLLBACK").unwrap();
    assert_eq!((s.boots, s.rollbacks, s.updates_applied), (2, 1, 0));
    follow_until(&raw, "ROLLBACK", &job, |s, _| s == "rejected").await;

    // Reported as `failed`: the job stays open, the node fetches the same
    // image again after the retry delay, installs it (no approval asked) and
    // rolls back again: it toggles.
    let job = plain_job(&sim, "ROLLFAIL", "2.0.0");
    let start = tap.first("ROLLFAIL", &attempt(1)).await;
    let again = tap.next("ROLLFAIL", start, &attempt(1)).await;
    assert_eq!(
        tap.slice("ROLLFAIL", start, again, |_| true),
        [
            attempt(1),
            "in-progress: Rebooting into new firmware".into(),
            "WILL".into(),
            "config 1.0.0".into(),
            "init".into(),
            "failed: MQTT did not connect within 90 seconds".into(),
            "Info {}".into(),
            "otafetch".into(),
            format!("otaurl {job}"),
            attempt(1),
        ]
    );
    tap.next(
        "ROLLFAIL",
        again,
        "failed: MQTT did not connect within 90 seconds",
    )
    .await;
    let s = sim.fleet.node("ROLLFAIL").unwrap();
    assert_eq!((s.fw_version.as_str(), s.updates_applied), ("1.0.0", 0));
    assert!(s.rollbacks >= 2);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_reported_as_failure_offers_the_same_job_again() {
    let mosq = Mosquitto::start();
    let (sim, raw, tap) = sim_with(
        &mosq,
        vec![extra("TOGGLE", Behaviour::RollbackReportedAsFailure, true)],
        vec![],
    )
    .await;
    let job = plain_job(&sim, "TOGGLE", "2.0.0");
    tap.first("TOGGLE", "delayed: Waiting for Approval").await;
    approve_node_side(&raw, "TOGGLE").await;
    let failed = tap
        .first("TOGGLE", "failed: MQTT did not connect within 90 seconds")
        .await;
    let reoffer = tap
        .next("TOGGLE", failed, "delayed: Waiting for Approval")
        .await;
    assert_eq!(
        tap.slice("TOGGLE", failed, reoffer, |_| true),
        [
            "failed: MQTT did not connect within 90 seconds".to_string(),
            "Info {}".into(),
            "otafetch".into(),
            format!("otaurl {job}"),
            format!("offer {job} 2.0.0"),
            "delayed: Waiting for Approval".into(),
        ]
    );
    assert_eq!(fw_version(&raw, "TOGGLE").await, "1.0.0");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_window_and_missing_clock_delay_the_install() {
    let mosq = Mosquitto::start();
    let (sim, raw, tap) = sim_with(
        &mosq,
        vec![
            NodeSpec {
                local_time: Some(600), // 10:00, outside 02:00-04:00
                ..extra("WINDOW", Behaviour::Normal, false)
            },
            NodeSpec {
                no_clock: true,
                ..extra("NOCLOCK", Behaviour::Normal, true)
            },
        ],
        vec![],
    )
    .await;

    let job = sim
        .create_job_from(&JobSpec {
            download_window: Some(DownloadWindow {
                start: 120,
                end: 240,
            }),
            ..JobSpec::new(&["WINDOW".into()], "1.1.0", JobKind::Plain)
        })
        .unwrap();
    // Outside the window the node says so and checks again, every time.
    tap.wait("WINDOW", 0, "delayed: Not within download window.", 2)
        .await;
    let url = tap
        .of("WINDOW")
        .into_iter()
        .find(|m| m.suffix == "otaurl")
        .unwrap();
    assert_eq!(
        url.body["metadata"],
        json!({"download_window": {"start": 120, "end": 240}})
    );
    assert_eq!(url.body["ota_job_id"], job.as_str());
    // Its clock moves into the window (through the admin API): it installs.
    let mut admin = Raw::new(&sim.info.http);
    admin.token = sim.info.admin_token.clone();
    let (s, b) = admin
        .send(
            Method::POST,
            "/sim/nodes/WINDOW/clock",
            Some(json!({"minutes": 180})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = admin
        .send(
            Method::POST,
            "/sim/nodes/NOPE/clock",
            Some(json!({"minutes": 180})),
        )
        .await;
    assert_eq!(s, 404);
    let start = tap.first("WINDOW", &attempt(1)).await;
    tap.first(
        "WINDOW",
        "success: OTA Upgrade finished and verified successfully",
    )
    .await;
    assert!(tap.story("WINDOW")[start..]
        .iter()
        .all(|e| e != "delayed: Not within download window."));
    assert!(!sim.fleet.set_local_time("NOPE", Some(1)));

    // The window travels in `ota_update` too (a cloud job, crossing midnight).
    let ua = sim
        .create_job_from(&JobSpec {
            download_window: Some(DownloadWindow {
                start: 1380,
                end: 120,
            }),
            ..JobSpec::new(&["WINDOW".into()], "1.2.0", JobKind::UserApproval)
        })
        .unwrap();
    let upd = raw.get("/v1/user/nodes/ota_update?node_id=WINDOW").await;
    assert_eq!(upd["ota_job_id"], ua.as_str());
    assert_eq!(
        upd["metadata"],
        json!({"download_window": {"start": 1380, "end": 120}})
    );
    let (s, _) = admin
        .send(
            Method::POST,
            "/sim/jobs",
            Some(json!({"nodes": ["WINDOW"], "fw_version": "1.3.0",
                        "download_window": {"start": 1500, "end": 10}})),
        )
        .await;
    assert_eq!(s, 400, "minutes beyond a day are refused");

    // No clock at boot: after approval the node first reports that it has no
    // time yet, fetches again later and installs without asking again.
    let job = plain_job(&sim, "NOCLOCK", "1.1.0");
    tap.first("NOCLOCK", "delayed: Waiting for Approval").await;
    approve_node_side(&raw, "NOCLOCK").await;
    let delayed = tap
        .first("NOCLOCK", "delayed: No time information available yet.")
        .await;
    let start = tap.first("NOCLOCK", &attempt(1)).await;
    assert_eq!(
        tap.slice("NOCLOCK", delayed, start, |_| true),
        [
            "delayed: No time information available yet.".to_string(),
            "otafetch".into(),
            format!("otaurl {job}"),
            attempt(1),
        ]
    );
    tap.first(
        "NOCLOCK",
        "success: OTA Upgrade finished and verified successfully",
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_node_has_the_stock_layout_and_ignores_operation() {
    let mosq = Mosquitto::start();
    let (sim, raw, tap) = sim_with(
        &mosq,
        vec![NodeSpec {
            ota_layout: OtaLayout::Stock,
            ..extra("STOCK", Behaviour::Normal, true)
        }],
        vec![],
    )
    .await;
    tap.first("STOCK", "otafetch").await;
    let boot = tap.of("STOCK");
    let ota = &boot[0].body["services"][0];
    assert_eq!(boot[0].suffix, "config");
    assert_eq!(ota["type"], "esp.service.ota");
    let params: Vec<(String, String, String, Value)> = ota["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["type"].as_str().unwrap().to_string(),
                p["data_type"].as_str().unwrap().to_string(),
                p["properties"].clone(),
            )
        })
        .collect();
    assert_eq!(
        params,
        [
            (
                "Status".to_string(),
                "esp.param.ota_status".to_string(),
                "string".to_string(),
                json!(["read"])
            ),
            (
                "Info".into(),
                "esp.param.ota_info".into(),
                "string".into(),
                json!(["read"])
            ),
            (
                "URL".into(),
                "esp.param.ota_url".into(),
                "string".into(),
                json!(["write"])
            ),
        ]
    );
    assert_eq!(boot[1].suffix, "params/local/init");
    assert_eq!(
        boot[1].body["OTA"],
        json!({"Status": "", "Info": "", "URL": ""})
    );

    // A write of Operation is ignored: no fetch, no report.
    let before = tap.story("STOCK").len();
    approve_node_side(&raw, "STOCK").await;
    eventually(WAIT, "the stock node to ignore Operation", || async {
        (sim.fleet.node("STOCK").unwrap().operations_ignored == 1).then_some(())
    })
    .await;
    barrier(&raw, &tap, "STOCK", false).await;
    let after: Vec<String> = tap.story("STOCK")[before..].to_vec();
    assert!(
        after.iter().all(|e| e != "otafetch" && !e.contains(": ")),
        "{after:#?}"
    );
    assert_eq!(sim.fleet.node("STOCK").unwrap().starts_received, 0);

    // A job is installed without asking; Status/Info follow as strings.
    let job = plain_job(&sim, "STOCK", "1.1.0");
    let success = tap
        .first(
            "STOCK",
            "success: OTA Upgrade finished and verified successfully",
        )
        .await;
    // Its mirror in the params comes next; the tap may not have it yet.
    let end = tap
        .next(
            "STOCK",
            success,
            "Status success | OTA Upgrade finished and verified successfully",
        )
        .await;
    let start = tap.first("STOCK", &format!("otaurl {job}")).await;
    assert_eq!(
        tap.slice("STOCK", start, end, |_| true),
        [
            format!("otaurl {job}"),
            attempt(1),
            "Status in-progress | Starting OTA Upgrade (HTTPS attempt 1/3)".into(),
            "in-progress: Rebooting into new firmware".into(),
            "Status in-progress | Rebooting into new firmware".into(),
            "WILL".into(),
            "config 1.1.0".into(),
            "init".into(),
            "success: OTA Upgrade finished and verified successfully".into(),
            "Status success | OTA Upgrade finished and verified successfully".into(),
        ]
    );
    assert!(!tap.story("STOCK").iter().any(|e| e.starts_with("delayed")));
    let p = eventually(
        WAIT,
        "the cloud to hear the stock node's Status",
        || async {
            let p = raw.get("/v1/user/nodes/params?node_id=STOCK").await;
            (p["OTA"]["Status"] == "success").then_some(p)
        },
    )
    .await;
    assert_eq!(
        p["OTA"]["Info"],
        "OTA Upgrade finished and verified successfully"
    );
    assert!(p["OTA"].get("Operation").is_none());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_node_offers_before_its_last_will() {
    let mosq = Mosquitto::start();
    let ids = ["GONE1", "GONE2", "GONE3"];
    let (sim, raw, tap) = sim_with(
        &mosq,
        ids.iter()
            .enumerate()
            .map(|(i, id)| NodeSpec {
                basic_ingest: i % 2 == 0,
                ..extra(id, Behaviour::Offline, true)
            })
            .collect(),
        vec![],
    )
    .await;
    let nodes: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    let job = sim
        .create_job(&nodes, "1.1.0", "offline", JobKind::Plain)
        .unwrap();
    for id in ids {
        let will = tap.first(id, "WILL").await;
        let offer = tap.first(id, &format!("offer {job} 1.1.0")).await;
        let delayed = tap.first(id, "delayed: Waiting for Approval").await;
        assert!(
            offer < will && delayed < will,
            "{id} published its offer before dropping off: {:#?}",
            tap.story(id)
        );
    }
    // It stays away until told otherwise, then offers again.
    let node = ids[0];
    eventually(WAIT, "the cloud to see the node offline", || async {
        (raw.get(&format!("/v1/user/nodes/status?node_id={node}"))
            .await["connectivity"]["connected"]
            == false)
            .then_some(())
    })
    .await;
    assert!(sim.fleet.set_online(node, true));
    let will = tap.first(node, "WILL").await;
    let back = tap.next(node, will, "config 1.0.0").await;
    tap.next(node, back, "delayed: Waiting for Approval").await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_start_and_a_superseding_job() {
    let mosq = Mosquitto::start();
    let (sim, raw, tap) = sim_with(
        &mosq,
        vec![extra("IGNORE", Behaviour::Normal, true)],
        vec![],
    )
    .await;
    let old = plain_job(&sim, "IGNORE", "1.1.0");
    tap.first("IGNORE", &format!("offer {old} 1.1.0")).await;
    // A newer job for the node replaces the offer.
    let new = plain_job(&sim, "IGNORE", "1.2.0");
    tap.first("IGNORE", &format!("offer {new} 1.2.0")).await;
    eventually(WAIT, "the cloud to show the newer offer", || async {
        let p = raw.get("/v1/user/nodes/params?node_id=IGNORE").await;
        (p["OTA"]["Info"]["job_id"] == new.as_str()).then_some(())
    })
    .await;

    // The next start is ignored, once: nothing follows it.
    assert!(sim.fleet.ignore_next_start("IGNORE"));
    assert!(!sim.fleet.ignore_next_start("NOPE"));
    let before = tap.story("IGNORE").len();
    approve_node_side(&raw, "IGNORE").await;
    eventually(WAIT, "the start to be ignored", || async {
        (sim.fleet.node("IGNORE").unwrap().starts_ignored == 1).then_some(())
    })
    .await;
    barrier(&raw, &tap, "IGNORE", false).await;
    let after = tap.story("IGNORE")[before..].to_vec();
    // Still waiting for approval (its offer's own report can land after
    // `before` was taken under load) is what ignoring looks like; a fetch
    // or any progress is not.
    assert!(
        after.iter().all(|e| e != "otafetch"
            && (!e.contains(": ") || e == "delayed: Waiting for Approval")),
        "{after:#?}"
    );

    // The same through the admin API.
    let mut admin = Raw::new(&sim.info.http);
    admin.token = sim.info.admin_token.clone();
    let (s, b) = admin
        .send(Method::POST, "/sim/nodes/IGNORE/ignore_next_start", None)
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = admin
        .send(Method::POST, "/sim/nodes/NOPE/ignore_next_start", None)
        .await;
    assert_eq!(s, 404);
    let before = tap.story("IGNORE").len();
    approve_node_side(&raw, "IGNORE").await;
    eventually(WAIT, "the second start to be ignored", || async {
        (sim.fleet.node("IGNORE").unwrap().starts_ignored == 2).then_some(())
    })
    .await;
    barrier(&raw, &tap, "IGNORE", true).await;
    assert!(tap.story("IGNORE")[before..]
        .iter()
        .all(|e| e != "otafetch" && !e.contains(": ")));

    // The next start works, and installs the newer job.
    approve_node_side(&raw, "IGNORE").await;
    let seen = follow(&raw, "IGNORE", &new).await;
    assert_eq!(seen.last().unwrap().0, "success", "{seen:?}");
    assert_eq!(fw_version(&raw, "IGNORE").await, "1.2.0");
    let s = sim.fleet.node("IGNORE").unwrap();
    assert_eq!((s.starts_received, s.starts_ignored), (3, 2));
    assert!(tap
        .of("IGNORE")
        .iter()
        .filter(|m| m.suffix == "otastatus" && m.body["status"] != "delayed")
        .all(|m| m.body["ota_job_id"] == new.as_str()));
    sim.shutdown().await;
}
