//! The RainMaker simulator against a real mosquitto, driven over REST exactly
//! as a third-party client would: both approval patterns end to end, every
//! failure behaviour with its documented status and text, and the REST
//! contract (auth, paging, aliases, error bodies).

use std::collections::BTreeSet;
use std::time::Duration;

use greenlight_sim::rainmaker::{
    Behaviour, BrokerChoice, Fault, JobKind, NodeSpec, RainmakerSim, Scenario, SimConfig, Timing,
};
use greenlight_tests::{eventually, Mosquitto, Raw};
use reqwest::Method;
use serde_json::{json, Value};

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

/// Polls `ota_status` until a terminal status, returning every distinct
/// (status, additional_info) seen in order.
async fn follow(raw: &Raw, node: &str, job: &str) -> Vec<(String, String)> {
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
        if matches!(s.0.as_str(), "success" | "failed" | "rejected") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no terminal ota_status for {node}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    seen
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
    // Nothing reaches the node before approval.
    tokio::time::sleep(Duration::from_millis(500)).await;
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

    // Download fails → failed.
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
            "failed".into(),
            "Firmware image download failed after 3 attempts".into()
        ),
        "{seen:?}"
    );
    assert_eq!(fw_version(&raw, fan).await, "1.1.0");

    // Rollback → rejected "Firmware rolled back", old version kept.
    let thermo = &sim.info.nodes[5];
    let job = pending_info(&raw, thermo).await["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    approve_node_side(&raw, thermo).await;
    let seen = follow(&raw, thermo, &job).await;
    assert_eq!(
        seen.last().unwrap(),
        &("rejected".into(), "Firmware rolled back".into()),
        "{seen:?}"
    );
    assert_eq!(
        sim.fleet.node(thermo).unwrap().boots,
        2,
        "the node really rebooted"
    );
    assert_eq!(fw_version(&raw, thermo).await, "4.2.0");

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

fn extra(id: &str, behaviour: Behaviour, require_approval: bool) -> NodeSpec {
    NodeSpec {
        info: greenlight_sim::rainmaker::wire::NodeInfo {
            node_id: id.into(),
            name: format!("{behaviour:?} node"),
            device_type: "esp.device.lightbulb".into(),
            model: "Test".into(),
            project_name: "test".into(),
            platform: "esp32".into(),
        },
        fw_version: "1.0.0".into(),
        behaviour,
        require_approval,
        basic_ingest: true,
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
            extra("SLOW", Behaviour::SlowDownload, false),
            extra("FLAPPY", Behaviour::Flapping, true),
            extra("SLEEPY", Behaviour::Sleepy, true),
        ],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut raw = Raw::new(&sim.info.http);
    raw.login(&sim.info.user, &sim.info.password).await;

    let job = sim
        .create_job(&["SAMEVER".into()], "1.0.0", "same", JobKind::Plain)
        .unwrap();
    pending_info(&raw, "SAMEVER").await;
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
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, b) = short.send(Method::GET, "/v1/user/nodes", None).await;
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
