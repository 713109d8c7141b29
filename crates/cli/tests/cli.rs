//! The `greenlight` binary against the simulator (real mosquitto, real
//! Secret Service on a private D-Bus), as a script or a person would use it:
//! add an account, list pending updates, approve them all, follow the jobs,
//! read the history; and the exit codes for a wrong password and bad usage.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use greenlight_sim::rainmaker::{BrokerChoice, RainmakerSim, Scenario, SimConfig, Timing};
use greenlight_tests::{eventually, node_caught_up, Mosquitto, SecretService};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_pending_approve_jobs_history() {
    let Some(keyring) = SecretService::start() else {
        panic!(
            "no Secret Service could be started (dbus-daemon, gnome-keyring): run scripts/deps.sh"
        );
    };
    let mosq = Mosquitto::start();
    let sim = RainmakerSim::start(SimConfig {
        broker: BrokerChoice::External(mosq.url()),
        scenario: Scenario::Demo,
        timing: Timing::fast(),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let data = std::env::temp_dir().join(format!("greenlight-cli-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let (http, user) = (sim.info.http.clone(), sim.info.user.clone());

    // Wrong password: exit 3, a clear message, nothing kept.
    let o = greenlight(
        &keyring,
        &data,
        &[
            "account",
            "add",
            "rainmaker",
            "--name",
            "bad",
            "--url",
            &http,
            "--user",
            &user,
            "--password-stdin",
        ],
        Some("wrong\n"),
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("could not log in") && err.to_lowercase().contains("password"),
        "{err}"
    );
    let o = greenlight(&keyring, &data, &["--json", "account", "list"], None);
    assert_eq!(
        json_of(&o).as_array().map(Vec::len),
        Some(0),
        "a failed login leaves no account behind"
    );

    // The real account, password on stdin (never argv).
    add_account(&keyring, &data, &sim);
    assert!(
        !std::fs::read_dir(&data).unwrap().any(|f| {
            let p = f.unwrap().path();
            std::fs::read(&p)
                .map(|b| String::from_utf8_lossy(&b).contains(&sim.info.password))
                .unwrap_or(false)
        }),
        "the password is in no file of the data directory"
    );

    // pending --check --json lists the demo fleet's pending updates (node-side and cloud).
    let deadline = Instant::now() + Duration::from_secs(60);
    let pending = loop {
        let o = greenlight(&keyring, &data, &["--json", "pending", "--check"], None);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let p = json_of(&o)["pending"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if p.len() >= 5 || Instant::now() > deadline {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut ids: Vec<&str> = pending
        .iter()
        .map(|p| p["node_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        sim.info.nodes[1..]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        "{pending:?}"
    );
    let porch = pending
        .iter()
        .find(|p| p["node_id"] == sim.info.nodes[2].as_str())
        .unwrap();
    assert_eq!(
        (porch["kind"].as_str(), porch["to_version"].as_str()),
        (Some("cloud_approval"), Some("1.0.0"))
    );

    // approve --all --json: one outcome per node; the offline Garage Door is
    // skipped and says so; the rollback makes it exit 1 (the Bedroom Fan's
    // failed first attempt is retried by the device and ends updated).
    let o = greenlight(&keyring, &data, &["--json", "approve", "--all"], None);
    let out = json_of(&o);
    assert_eq!(o.status.code(), Some(1), "a rolled-back job: {}", text(&o));
    let outcomes = out["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 5, "{out}");
    let result_of = |i: usize| {
        outcomes
            .iter()
            .find(|x| x["node_id"] == sim.info.nodes[i].as_str())
            .map(|x| {
                x["result"]["result"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
    };
    assert_eq!(result_of(3).as_deref(), Some("offline"));
    for i in [1, 2, 4, 5] {
        assert_eq!(result_of(i).as_deref(), Some("sent"), "{out}");
    }
    let finals = out["jobs"].as_array().unwrap();
    let state_of = |i: usize| {
        finals
            .iter()
            .find(|j| j["node_id"] == sim.info.nodes[i].as_str())
            .map(|j| j["state"]["state"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(state_of(1).as_deref(), Some("success"));
    assert_eq!(state_of(2).as_deref(), Some("success"));
    assert_eq!(state_of(4).as_deref(), Some("success"));
    assert_eq!(state_of(5).as_deref(), Some("rolled_back"));

    // Approving again is refused: nothing is sent twice.
    let o = greenlight(
        &keyring,
        &data,
        &["--json", "approve", &sim.info.nodes[1]],
        None,
    );
    let again = json_of(&o);
    assert_ne!(again["outcomes"][0]["result"]["result"], "sent", "{again}");
    assert_eq!(
        sim.fleet.node(&sim.info.nodes[1]).unwrap().starts_received,
        1
    );

    // jobs --json shows them in their terminal states.
    let o = greenlight(&keyring, &data, &["--json", "jobs"], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let jobs = json_of(&o)["jobs"].as_array().cloned().unwrap();
    assert_eq!(jobs.len(), 4, "{jobs:?}");
    assert!(jobs
        .iter()
        .all(|j| ["success", "failed", "rolled_back"]
            .contains(&j["state"]["state"].as_str().unwrap())));

    // history --csv lists them with plain reasons.
    let o = greenlight(&keyring, &data, &["history", "--csv"], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let csv = String::from_utf8_lossy(&o.stdout).to_string();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with(
        "job,approved_at,approved_by,account,node_id,device,from_version,to_version,result,reason"
    ));
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(
        csv.contains("Kitchen Plug") && csv.contains(",1.3.2,1.4.0,success,"),
        "{csv}"
    );
    assert!(csv.contains(",rolled_back,"), "{csv}");
    assert!(csv.contains("Hall Thermostat"), "{csv}");
    let o = greenlight(&keyring, &data, &["history", "--result", "success"], None);
    let t = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        t.contains("Kitchen Plug") && t.contains("Bedroom Fan") && !t.contains("Hall Thermostat"),
        "{t}"
    );

    // Usage errors exit 2.
    let o = greenlight(&keyring, &data, &["approve"], None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = greenlight(
        &keyring,
        &data,
        &["snooze", "Kitchen Plug", "--for", "soon"],
        None,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn no_keychain_means_exit_3_and_nothing_written() {
    let data =
        std::env::temp_dir().join(format!("greenlight-cli-nokeychain-{}", std::process::id()));
    let mut c = Command::new(env!("CARGO_BIN_EXE_greenlight"));
    c.arg("--data-dir").arg(&data).args([
        "account",
        "add",
        "rainmaker",
        "--name",
        "x",
        "--url",
        "http://127.0.0.1:9",
        "--user",
        "a@b.c",
        "--password-stdin",
    ]);
    c.env_remove("DBUS_SESSION_BUS_ADDRESS").env(
        "DBUS_SESSION_BUS_ADDRESS",
        "unix:path=/nonexistent/greenlight-no-bus",
    );
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"s3cret-pw\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("keychain"), "{err}");
    if data.exists() {
        for f in std::fs::read_dir(&data).unwrap() {
            let b = std::fs::read(f.unwrap().path()).unwrap_or_default();
            assert!(!String::from_utf8_lossy(&b).contains("s3cret-pw"));
        }
    }
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_server_is_trusted_only_by_fingerprint_and_a_change_is_refused() {
    let Some(keyring) = SecretService::start() else {
        panic!(
            "no Secret Service could be started (dbus-daemon, gnome-keyring): run scripts/deps.sh"
        );
    };
    let mosq = Mosquitto::start();
    let cfg = SimConfig {
        broker: BrokerChoice::External(mosq.url()),
        https: true,
        scenario: Scenario::Plain,
        nodes: 2,
        timing: Timing::fast(),
        ..SimConfig::default()
    };
    let sim = RainmakerSim::start(cfg.clone()).await.expect("simulator");
    let fp = sim.info.fingerprint.clone().unwrap();
    let data = std::env::temp_dir().join(format!("greenlight-cli-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let pw = format!("{}\n", sim.info.password);
    let add = |extra: &[&str]| {
        let mut args = vec![
            "account",
            "add",
            "rainmaker",
            "--name",
            "self",
            "--url",
            &sim.info.http,
            "--user",
            &sim.info.user,
            "--password-stdin",
        ];
        args.extend_from_slice(extra);
        greenlight(&keyring, &data, &args, Some(&pw))
    };

    // No terminal, no fingerprint: refused, and the fingerprint is shown.
    let o = add(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        err.contains("--trust-fingerprint") && err.contains(&fp),
        "{err}"
    );

    // A wrong fingerprint is refused.
    let o = add(&["--trust-fingerprint", &"00".repeat(32)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    // The right one (colon form) works.
    let colons: String = fp
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_uppercase())
        .collect::<Vec<_>>()
        .join(":");
    let o = add(&["--trust-fingerprint", &colons]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = greenlight(&keyring, &data, &["--json", "nodes"], None);
    assert_eq!(
        json_of(&o)["nodes"].as_array().map(Vec::len),
        Some(2),
        "{}",
        text(&o)
    );

    // The server comes back with another certificate on the same address: refused, clearly.
    let addr: std::net::SocketAddr = sim
        .info
        .http
        .trim_start_matches("https://")
        .parse()
        .unwrap();
    let password = sim.info.password.clone();
    sim.shutdown().await;
    // The first server lets go of the address in the background (a graceful
    // shutdown): wait until it can be bound again, as the simulator binds it.
    eventually(
        Duration::from_secs(30),
        "the first server to release its address",
        || async { std::net::TcpListener::bind(addr).ok().map(drop) },
    )
    .await;
    let other = RainmakerSim::start(SimConfig {
        http: addr,
        password: Some(password),
        ..cfg
    })
    .await
    .expect("second simulator");
    assert_ne!(other.info.fingerprint.as_deref(), Some(fp.as_str()));
    let o = greenlight(&keyring, &data, &["nodes"], None);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("certificate changed"), "{}", text(&o));
    other.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_approval_snooze_skip_and_policies() {
    let Some(keyring) = SecretService::start() else {
        panic!(
            "no Secret Service could be started (dbus-daemon, gnome-keyring): run scripts/deps.sh"
        );
    };
    let mosq = Mosquitto::start();
    let sim = RainmakerSim::start(SimConfig {
        broker: BrokerChoice::External(mosq.url()),
        scenario: Scenario::Demo,
        timing: Timing::fast(),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let data = std::env::temp_dir().join(format!("greenlight-cli-policy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let pw = format!("{}\n", sim.info.password);
    let o = greenlight(
        &keyring,
        &data,
        &[
            "account",
            "add",
            "rainmaker",
            "--name",
            "home",
            "--url",
            &sim.info.http,
            "--user",
            &sim.info.user,
            "--password-stdin",
        ],
        Some(&pw),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = greenlight(&keyring, &data, &["--json", "pending"], None);
        if json_of(&o)["pending"].as_array().map(Vec::len).unwrap_or(0) >= 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than 4 pending updates after 60 s: {}",
            text(&o)
        );
        // The pace of this bounded poll; the pending list is the signal.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Approve now, install later: the job waits, nothing reaches the node.
    let o = greenlight(
        &keyring,
        &data,
        &["--json", "approve", "Kitchen Plug", "--at", "03:17"],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = json_of(&o);
    assert_eq!(out["outcomes"][0]["result"]["result"], "queued", "{out}");
    assert_eq!(
        out["outcomes"][0]["result"]["job"]["state"]["reason"]["why"], "scheduled",
        "{out}"
    );
    let at = out["outcomes"][0]["result"]["job"]["state"]["reason"]["at"]
        .as_i64()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        at > now && at <= now + 86_400_000,
        "the next 03:17 is within a day"
    );
    // The approving process has exited, so whatever it sent is in the
    // cloud's hands; once the plug has caught up with its cloud, a `start`
    // sent meanwhile would have reached it.
    node_caught_up(&sim, &sim.info.nodes[1], Duration::from_secs(60)).await;
    assert_eq!(
        sim.fleet.node(&sim.info.nodes[1]).unwrap().starts_received,
        0
    );

    // Snooze, skip, auto-approve, quiet hours: all shown by `policy show`.
    for args in [
        vec!["snooze", "Bedroom Fan", "--for", "2h"],
        vec!["skip", "Hall Thermostat"],
        vec!["policy", "auto-approve", "Living Room Light", "on"],
        vec!["policy", "quiet-hours", "22:00-07:00"],
    ] {
        let o = greenlight(&keyring, &data, &args, None);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
    }
    let o = greenlight(&keyring, &data, &["--json", "policy", "show"], None);
    let p = json_of(&o);
    assert_eq!(p["quiet_hours"]["start_minute"], 22 * 60, "{p}");
    assert_eq!(p["auto_approve"][0]["node_id"], sim.info.nodes[0].as_str());
    assert_eq!(p["skipped"][0]["node_id"], sim.info.nodes[5].as_str());
    assert_eq!(p["skipped"][0]["value"], "4.3.0");
    assert_eq!(p["snoozed"][0]["node_id"], sim.info.nodes[4].as_str());
    let o = greenlight(&keyring, &data, &["policy", "show"], None);
    let t = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        t.contains("Quiet hours: 22:00-07:00") && t.contains("Hall Thermostat 4.3.0"),
        "{t}"
    );

    // The skipped version is no longer offered; the snoozed one is marked.
    let o = greenlight(&keyring, &data, &["--json", "pending"], None);
    let pending = json_of(&o)["pending"].as_array().cloned().unwrap();
    assert!(
        !pending
            .iter()
            .any(|p| p["node_id"] == sim.info.nodes[5].as_str()),
        "{pending:?}"
    );
    let fan = pending
        .iter()
        .find(|p| p["node_id"] == sim.info.nodes[4].as_str())
        .expect("snoozed update still listed");
    assert!(fan["snoozed_until"].as_i64().is_some());
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_stops_following_a_job_the_device_never_starts_and_says_so() {
    use greenlight_sim::rainmaker::{scenario, JobKind, JobSpec, NodeSpec};
    let Some(keyring) = SecretService::start() else {
        panic!(
            "no Secret Service could be started (dbus-daemon, gnome-keyring): run scripts/deps.sh"
        );
    };
    let mosq = Mosquitto::start();
    let node = NodeSpec::new(
        greenlight_sim::rainmaker::wire::NodeInfo {
            node_id: scenario::node_id(400),
            name: "Shed Door".into(),
            device_type: "esp.device.garage-door".into(),
            model: "ESP32 Door Controller".into(),
            project_name: "door_ctrl".into(),
            platform: "esp32".into(),
        },
        "3.0.0",
    );
    let id = node.info.node_id.clone();
    let sim = RainmakerSim::start(SimConfig {
        broker: BrokerChoice::External(mosq.url()),
        scenario: Scenario::Plain,
        nodes: 0,
        extra_nodes: vec![node],
        extra_jobs: vec![JobSpec::new(
            std::slice::from_ref(&id),
            "3.0.1",
            JobKind::Plain,
        )],
        timing: Timing::fast(),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let data = std::env::temp_dir().join(format!("greenlight-cli-bound-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    add_account(&keyring, &data, &sim);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = greenlight(&keyring, &data, &["--json", "pending", "--check"], None);
        let n = json_of(&o)["pending"].as_array().map(Vec::len).unwrap_or(0);
        if n == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no pending update: {}", text(&o));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The device misses the `start`: it never acts on it.
    assert!(sim.fleet.ignore_next_start(&id));
    let began = Instant::now();
    let o = greenlight(
        &keyring,
        &data,
        &["approve", "--all", "--start-timeout", "5"],
        None,
    );
    let took = began.elapsed();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "the approval was accepted: {out}");
    assert!(out.contains("Shed Door: approved"), "{out}");
    assert!(
        out.contains("Still waiting for Shed Door: approved, not started by the device yet"),
        "{out}"
    );
    assert!(
        out.contains("Sent — waiting for the device to answer"),
        "the job claims no more than is known: {out}"
    );
    assert!(!out.contains("Waiting for approval on the device"), "{out}");
    // Bounded: the 5 s start timeout plus start-up, far from the nine
    // minutes users saw.
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert_eq!(sim.fleet.node(&id).unwrap().starts_ignored, 1);
    let _ = std::fs::remove_dir_all(&data);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_say_unknown_not_offline_when_the_cloud_cannot_be_reached() {
    let keyring = keyring();
    let mosq = Mosquitto::start();
    let sim = demo_sim(&mosq).await;
    let data = std::env::temp_dir().join(format!("greenlight-cli-unknown-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    add_account(&keyring, &data, &sim);
    let o = greenlight(&keyring, &data, &["--json", "nodes"], None);
    let nodes = json_of(&o)["nodes"].as_array().cloned().unwrap_or_default();
    let plug = nodes
        .iter()
        .find(|n| n["node_id"] == "7CDFA1000001")
        .unwrap_or_else(|| panic!("the plug is listed: {}", text(&o)));
    assert_eq!(plug["online"], true, "{plug}");

    sim.shutdown().await;
    let o = greenlight(&keyring, &data, &["--json", "nodes"], None);
    let nodes = json_of(&o)["nodes"].as_array().cloned().unwrap_or_default();
    let plug = nodes
        .iter()
        .find(|n| n["node_id"] == "7CDFA1000001")
        .unwrap_or_else(|| panic!("still listed from the last run: {}", text(&o)));
    assert!(plug["online"].is_null(), "not known, so null: {plug}");
    // Unknown since the cloud failed, or — while the broker still answers
    // but the device says nothing — as last heard, never "offline".
    let known = &plug["known"];
    assert!(
        known["how"] == "unknown" || (known["how"] == "remembered" && known["online"] == true),
        "{plug}"
    );
    assert!(
        plug["last_seen"].as_i64().is_some(),
        "when it was last seen online: {plug}"
    );
    // The table says it in words, and why the cloud could not be asked.
    let o = greenlight(&keyring, &data, &["nodes"], None);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("unknown since") || out.contains("was online"),
        "{}",
        text(&o)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("refused the connection"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn a_broker_password_over_plain_mqtt_is_refused_unless_confirmed() {
    let Some(keyring) = SecretService::start() else {
        panic!(
            "no Secret Service could be started (dbus-daemon, gnome-keyring): run scripts/deps.sh"
        );
    };
    let mosq = Mosquitto::start();
    let data = std::env::temp_dir().join(format!("greenlight-cli-plain-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    // 0.0.0.0 is not a loopback address, so the check applies; connecting
    // to it on Linux still reaches this computer's own broker (tests talk
    // to loopback only).
    let url = mosq.url().replace("127.0.0.1", "0.0.0.0");
    let add = |extra: &[&str]| {
        let mut args = vec![
            "account",
            "add",
            "mqtt",
            "--name",
            "lan",
            "--mqtt-url",
            &url,
            "--username",
            "watcher",
            "--password-stdin",
        ];
        args.extend_from_slice(extra);
        greenlight(&keyring, &data, &args, Some("plain-pw\n"))
    };

    // Refused before the password is even read: usage (2), said plainly,
    // nothing saved.
    let o = add(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("is mqtt:// (not encrypted): the password would travel in clear")
            && err.contains("--allow-plaintext-password"),
        "{err}"
    );
    let o = greenlight(&keyring, &data, &["--json", "account", "list"], None);
    assert_eq!(json_of(&o), serde_json::json!([]), "{}", text(&o));

    // Confirmed: added, and the choice is kept with the account.
    let o = add(&["--allow-plaintext-password"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = greenlight(&keyring, &data, &["--json", "account", "list"], None);
    let list = json_of(&o);
    let lan = list
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == "lan"))
        .unwrap_or_else(|| panic!("lan is listed: {list}"));
    assert_eq!(lan["mqtt"]["allow_plaintext_password"], true, "{lan}");
    let _ = std::fs::remove_dir_all(&data);
}
