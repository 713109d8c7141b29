//! The app's commands and event forwarding, through Tauri's IPC layer on the
//! mock runtime, against the real engine and simulators.

mod common;

use std::time::Duration;

use greenlight_sim::rainmaker::{BrokerChoice, RainmakerSim, Scenario, SimConfig, Timing};
use greenlight_tests::Mosquitto;
use serde_json::{json, Value};

const KITCHEN_PLUG: &str = "7CDFA1000001";

fn job_state(ev: &Value, node: &str) -> Option<String> {
    let e = &ev["event"];
    (e["type"] == "job_changed" && e["job"]["node_id"] == node).then(|| {
        e["job"]["state"]["state"]
            .as_str()
            .unwrap_or("")
            .to_string()
    })
}

#[test]
fn approving_through_a_command_is_followed_to_success_in_events_and_history() {
    let dir = tempdir("demo");
    let t = common::start(common::options(&dir, true));
    let status = t.call("app_status", json!({})).expect("status");
    assert_eq!(status["demo"], false);

    t.call("demo_start", json!({})).expect("demo starts");
    assert_eq!(t.call("app_status", json!({})).unwrap()["demo"], true);
    let pending = t.poll(
        "pending",
        json!({}),
        Duration::from_secs(20),
        "the plug's update",
        |v| {
            v.as_array()
                .is_some_and(|a| a.iter().any(|p| p["node_id"] == KITCHEN_PLUG))
        },
    );
    let plug = pending
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["node_id"] == KITCHEN_PLUG)
        .unwrap();
    assert_eq!(plug["from_version"], "1.3.2");
    assert_eq!(plug["to_version"], "1.4.0");
    assert_eq!(plug["kind"], "node_side");

    let out = t
        .call(
            "approve",
            json!({ "nodes": [{ "account": null, "node_id": KITCHEN_PLUG }] }),
        )
        .expect("approve answers");
    assert_eq!(out[0]["result"]["result"], "sent", "{out}");

    // The window hears every step, ending in success.
    let mut seen = Vec::new();
    t.wait_event(Duration::from_secs(30), "the plug's job to succeed", |ev| {
        if let Some(s) = job_state(ev, KITCHEN_PLUG) {
            seen.push(s.clone());
        }
        job_state(ev, KITCHEN_PLUG).as_deref() == Some("success")
    });
    assert!(
        seen.len() >= 2 && seen.iter().any(|s| s == "in_progress" || s == "started"),
        "the steps before success reach the window too: {seen:?}"
    );
    let pending = t.call("pending", json!({})).unwrap();
    assert!(
        !pending
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["node_id"] == KITCHEN_PLUG),
        "the installed update left the inbox: {pending}"
    );

    let history = t
        .call(
            "history",
            json!({ "query": { "node_id": KITCHEN_PLUG, "limit": 10 } }),
        )
        .unwrap();
    let job = &history[0];
    assert_eq!(job["state"]["state"], "success");
    assert_eq!(job["approved_by"], "tester (demo)");
    assert!(job["finished_at"].as_i64().is_some());

    // Approving again sends nothing: the node is up to date now.
    let again = t
        .call(
            "approve",
            json!({ "nodes": [{ "account": null, "node_id": KITCHEN_PLUG }] }),
        )
        .unwrap();
    assert_ne!(again[0]["result"]["result"], "sent", "{again}");

    // Leaving the demo goes back to the user's (empty) accounts.
    t.call("demo_stop", json!({})).unwrap();
    assert_eq!(t.call("accounts", json!({})).unwrap(), json!([]));
    assert_eq!(t.call("app_status", json!({})).unwrap()["demo"], false);
}

const HALL_THERMOSTAT: &str = "7CDFA1000005";

fn rollout_of(ev: &Value) -> Option<&Value> {
    let e = &ev["event"];
    (e["type"] == "rollout_changed").then(|| &e["rollout"])
}

fn member<'a>(r: &'a Value, node: &str) -> &'a Value {
    r["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["node_id"] == node))
        .unwrap_or_else(|| panic!("{node} is not in the rollout: {r}"))
}

/// "Approve all…", then "Carefully", on the demo fleet: one device goes
/// first, the window hears every step, the thermostat's rollback stops the
/// rollout with its reason, and Retry failed and Cancel act on it.
#[test]
fn a_careful_approval_goes_one_first_and_stops_at_the_demo_thermostat_rollback() {
    let dir = tempdir("rollout");
    let t = common::start(common::options(&dir, true));
    t.call("demo_start", json!({})).expect("demo starts");
    // Every offer of the demo is in (the thermostat's is the last one).
    t.poll(
        "pending",
        json!({}),
        Duration::from_secs(30),
        "the demo's five offers",
        |v| v.as_array().is_some_and(|a| a.len() >= 5),
    );
    assert_eq!(t.call("rollouts", json!({})).unwrap(), json!([]));

    let r = t
        .call(
            "start_rollout",
            json!({ "plan": { "batch": 2, "soak_secs": 1 } }),
        )
        .expect("the rollout starts");
    assert_eq!(r["state"]["state"], "running", "{r}");
    assert_eq!(r["batch"], 2);
    assert_eq!(r["approved_by"], "tester (demo)");
    let members = r["members"].as_array().unwrap();
    assert_eq!(members.len(), 5, "every offered device is in it: {r}");
    // One device goes first (the first online one), the rest wait; the
    // offline Garage Door is in the rollout and waits for its turn online.
    assert_eq!(members[0]["stage"], 0, "{r}");
    assert!(
        ["releasing", "running"].contains(&members[0]["state"]["state"].as_str().unwrap()),
        "{r}"
    );
    assert!(
        members[1..]
            .iter()
            .all(|m| m["stage"].is_null() && m["state"]["state"] == "waiting"),
        "{r}"
    );
    assert_eq!(member(&r, "7CDFA1000003")["state"]["state"], "waiting");
    assert!(
        r["headline"].as_str().unwrap().contains(" goes first: "),
        "{r}"
    );
    let id = r["id"].as_i64().unwrap();
    let listed = t.call("rollouts", json!({})).unwrap();
    assert_eq!(listed[0]["id"], id, "{listed}");

    // A second one while this one runs: refused in plain words.
    let e = t
        .call(
            "start_rollout",
            json!({ "plan": { "batch": 2, "soak_secs": 1 } }),
        )
        .expect_err("one rollout at a time");
    assert_eq!(e["kind"], "invalid", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("already running"),
        "{e}"
    );

    // Followed in events: the first device is watched, then the batches
    // go, and the thermostat's rollback stops it.
    let mut seen: Vec<String> = vec![];
    let stopped = t.wait_event(
        Duration::from_secs(120),
        "the rollout to stop at the thermostat",
        |ev| {
            let Some(r) = rollout_of(ev) else {
                return false;
            };
            let h = r["headline"].as_str().unwrap_or("").to_string();
            if seen.last() != Some(&h) {
                seen.push(h);
            }
            r["state"]["state"] == "stopped"
        },
    );
    let r = rollout_of(&stopped).unwrap().clone();
    assert_eq!(r["state"]["node_id"], HALL_THERMOSTAT, "{r}");
    assert!(
        r["state"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("Hall Thermostat"),
        "{r}"
    );
    assert!(
        r["headline"].as_str().unwrap().starts_with("Stopped: "),
        "{r}"
    );
    assert!(
        seen.iter().any(|h| h.contains("must stay online")),
        "the first device was watched before the rest: {seen:?}"
    );
    assert!(
        seen.iter().any(|h| h.starts_with("Batch 1")),
        "then a batch: {seen:?}"
    );
    assert_eq!(member(&r, HALL_THERMOSTAT)["state"]["state"], "failed");
    // The offline Garage Door never went: it still waits.
    assert_eq!(member(&r, "7CDFA1000003")["state"]["state"], "waiting");
    let stage = |n: &str| member(&r, n)["stage"].as_u64();
    assert_eq!(stage(KITCHEN_PLUG), Some(0), "the plug went first: {r}");
    assert!(stage(HALL_THERMOSTAT) > Some(0), "{r}");
    // The app's notifier heard the stop before the window did (events.rs
    // folds every event in first): told once, it has nothing more to say
    // about it, where a notifier that never heard it would.
    let rollout: greenlight_core::Rollout = serde_json::from_value(r.clone()).unwrap();
    let ev = greenlight_core::Event::RolloutChanged { rollout };
    let state = tauri::Manager::state::<greenlight_app::AppState>(&t.app);
    let again = state
        .notifier
        .lock()
        .unwrap()
        .on_event(&ev, greenlight_core::now_ms());
    assert!(
        again.iter().all(|n| !n.title.starts_with("Careful update")),
        "{again:?}"
    );
    let fresh = greenlight_core::Notifier::default().on_event(&ev, greenlight_core::now_ms());
    assert!(
        fresh
            .first()
            .is_some_and(|n| n.title.starts_with("Careful update stopped at ")),
        "{fresh:?}"
    );

    // Resume on a running rollout is refused; Cancel ends it, and the
    // device that never went is left out, said why.
    let r = t
        .call("rollout_action", json!({ "id": id, "action": "cancel" }))
        .expect("cancel");
    assert_eq!(r["state"]["state"], "cancelled", "{r}");
    assert!(
        r["headline"].as_str().unwrap().starts_with("Cancelled: "),
        "{r}"
    );
    assert_eq!(
        member(&r, "7CDFA1000003")["state"]["reason"],
        "the rollout was cancelled before its turn"
    );
    let e = t
        .call("rollout_action", json!({ "id": id, "action": "resume" }))
        .expect_err("nothing to resume");
    assert_eq!(e["kind"], "invalid", "{e}");
    assert!(e["message"].as_str().unwrap().contains("no rollout"), "{e}");
    // The ended one is still listed, for Activity's "recent".
    let listed = t.call("rollouts", json!({})).unwrap();
    assert_eq!(listed[0]["id"], id, "{listed}");
    assert_eq!(listed[0]["state"]["state"], "cancelled", "{listed}");
    t.call("demo_stop", json!({})).unwrap();
}

/// A plan that means nothing is refused before anything is approved, in
/// words the window can show as they are.
#[test]
fn a_rollout_plan_that_means_nothing_is_a_clear_error() {
    let dir = tempdir("rollout-plan");
    let t = common::start(common::options(&dir, true));
    let refused = |plan: Value| {
        let e = t
            .call("start_rollout", json!({ "plan": plan }))
            .expect_err("refused");
        assert_eq!(e["kind"], "invalid", "{e}");
        e["message"].as_str().unwrap().to_string()
    };
    assert_eq!(
        refused(json!({ "batch": 0, "soak_secs": 300 })),
        "a batch is 1 to 100 devices, not 0"
    );
    assert!(refused(json!({ "batch": 2, "soak_secs": 300,
        "window": { "start_minute": 120, "end_minute": 120, "utc_offset_minutes": 60 } }))
    .contains("never opens"));
    assert!(refused(json!({ "batch": 2, "soak_secs": 30 * 86_400 })).contains("at most a week"));
    // A sound plan with nothing to approve says so.
    assert_eq!(
        refused(json!({ "batch": 2, "soak_secs": 300 })),
        "no update is waiting for approval"
    );
    let e = t
        .call("rollout_action", json!({ "id": null, "action": "cancel" }))
        .expect_err("no rollout");
    assert_eq!(e["message"], "no rollout is running", "{e}");
    assert_eq!(t.call("rollouts", json!({})).unwrap(), json!([]));
}

#[test]
fn errors_reach_the_front_end_typed_and_in_plain_words() {
    let dir = tempdir("errors");
    let t = common::start(common::options(&dir, true));
    // Approvals answer per node, so one bad id does not hide the others' fate.
    let out = t
        .call(
            "approve",
            json!({ "nodes": [{ "account": null, "node_id": "no-such-node" }] }),
        )
        .expect("per-node outcomes");
    assert_eq!(out[0]["result"]["result"], "refused", "{out}");
    assert!(out[0]["result"]["reason"]
        .as_str()
        .unwrap()
        .contains("no-such-node"));
    let e = t
        .call(
            "skip",
            json!({ "node": { "account": null, "node_id": "no-such-node" } }),
        )
        .expect_err("unknown node");
    assert_eq!(e["kind"], "invalid", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("no-such-node"),
        "{e}"
    );

    let e = t
        .call(
            "add_rainmaker_account",
            json!({ "input": { "name": "home", "url": "ftp://x", "user": "a@b", "password": "pw",
                               "mqtt_url": null, "trust_fingerprint": null } }),
        )
        .expect_err("bad url");
    assert_eq!(e["kind"], "invalid", "{e}");

    let e = t
        .call(
            "set_quiet_hours",
            json!({ "quiet": { "start_minute": 5000, "end_minute": 1, "utc_offset_minutes": 0 } }),
        )
        .expect_err("bad quiet hours");
    assert_eq!(e["kind"], "invalid");
    // A malformed argument is refused by the IPC layer, not a panic.
    assert!(t.call("snooze", json!({ "node": 5, "hours": 1 })).is_err());
}

#[test]
fn a_self_signed_cloud_is_added_only_after_its_fingerprint_is_accepted() {
    let broker = Mosquitto::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt
        .block_on(RainmakerSim::start(SimConfig {
            broker: BrokerChoice::External(broker.url()),
            https: true,
            scenario: Scenario::Plain,
            nodes: 3,
            timing: Timing::fast(),
            ..SimConfig::default()
        }))
        .expect("sim");
    let fingerprint = sim
        .info
        .fingerprint
        .clone()
        .expect("https sim has a fingerprint");
    let dir = tempdir("tls");
    let t = common::start(common::options(&dir, true));
    let input = |trust: Value, password: &str| {
        json!({ "input": { "name": "lab", "url": sim.info.http, "user": sim.info.user,
                           "password": password, "mqtt_url": null, "trust_fingerprint": trust } })
    };

    let e = t
        .call(
            "add_rainmaker_account",
            input(Value::Null, &sim.info.password),
        )
        .expect_err("unknown certificate");
    assert_eq!(e["kind"], "untrusted_certificate", "{e}");
    assert_eq!(e["fingerprint"], fingerprint.as_str());
    assert_eq!(
        t.call("accounts", json!({})).unwrap(),
        json!([]),
        "nothing saved"
    );

    let wrong = "ab".repeat(32);
    let e = t
        .call(
            "add_rainmaker_account",
            input(json!(wrong), &sim.info.password),
        )
        .expect_err("wrong pin");
    assert!(e["message"].as_str().unwrap().contains("not the"), "{e}");

    let e = t
        .call(
            "add_rainmaker_account",
            input(json!(fingerprint), "wrong-password"),
        )
        .expect_err("wrong password");
    assert_eq!(e["kind"], "needs_login", "{e}");
    assert_eq!(
        t.call("accounts", json!({})).unwrap(),
        json!([]),
        "nothing saved"
    );

    let n = t
        .call(
            "add_rainmaker_account",
            input(json!(fingerprint), &sim.info.password),
        )
        .expect("added once accepted");
    assert_eq!(n, json!(3));
    let accounts = t.call("accounts", json!({})).unwrap();
    assert_eq!(accounts[0]["pinned_fingerprint"], fingerprint.as_str());
    assert!(accounts[0].get("password").is_none());
    drop(t);
    rt.block_on(sim.shutdown());
}

fn tempdir(what: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "greenlight-app-test-{what}-{}-{}",
        std::process::id(),
        greenlight_tests::free_port()
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn the_app_is_a_client_of_the_daemon_when_it_runs_the_engine() {
    use greenlight_core::{control, Engine, EngineConfig, MemorySecretStore, QuietHours};
    let dir = tempdir("client-of-daemon");
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A daemon: owns the directory, runs the engine, serves it.
    let own = control::claim(&dir, "daemon", true)
        .unwrap()
        .expect("the directory is free");
    let engine = rt
        .block_on(Engine::open(EngineConfig::new(
            &dir,
            std::sync::Arc::new(MemorySecretStore::default()),
            "daemon",
        )))
        .expect("daemon engine");
    let _served = rt
        .block_on(async { control::serve(&own, engine.clone()) })
        .expect("serves");
    let mut apps = own.attached_apps();
    let quiet = QuietHours {
        start_minute: 22 * 60,
        end_minute: 7 * 60,
        utc_offset_minutes: 0,
    };
    rt.block_on(engine.set_quiet_hours(Some(quiet))).unwrap();

    // The app opens on the same directory: one engine, the daemon's.
    let t = common::start(common::options(&dir, true));
    let status = t.call("app_status", json!({})).expect("status");
    assert_eq!(status["engine_owner"], "daemon", "{status}");
    let p = t.call("policies", json!({})).expect("policies");
    assert_eq!(p["quiet_hours"]["start_minute"], 22 * 60, "{p}");
    // What the app sets, the daemon's engine holds.
    t.call("set_quiet_hours", json!({ "quiet": null }))
        .expect("cleared through the daemon");
    let held = rt.block_on(engine.policies()).unwrap();
    assert!(held.quiet_hours.is_none());
    // The app said what it is: the daemon leaves notifications to it.
    assert_eq!(*apps.borrow_and_update(), 1, "the app is counted");
    // A pause set in the app is the daemon's (shared, kept); one set
    // elsewhere is the app's.
    assert_eq!(status["notifications_paused"], false, "{status}");
    t.call("set_notifications_paused", json!({ "paused": true }))
        .expect("paused through the daemon");
    assert!(rt.block_on(engine.notifications_paused()).unwrap());
    rt.block_on(engine.set_notifications_paused(false)).unwrap();
    let status = t.call("app_status", json!({})).expect("status");
    assert_eq!(status["notifications_paused"], false, "{status}");
}

/// Issue 13 with the app as the owner: while the app runs the engine on an
/// MQTT-only account, a `greenlight` command is its client (the same
/// `control::connect` the CLI uses) and sees what the app heard; an approval
/// made by the command is carried out by the app's engine, and the node
/// receives exactly one start however many front ends ask.
#[test]
fn commands_are_clients_of_the_app_when_it_runs_the_engine() {
    use greenlight_core::{control, ApprovalResult, MemorySecretStore, NodeRef};
    let broker = Mosquitto::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempdir("app-owner");
    let t = common::start(common::options(&dir, true));
    let status = t.call("app_status", json!({})).expect("status");
    assert_eq!(status["engine_owner"], "app", "{status}");
    t.call(
        "add_mqtt_account",
        json!({ "input": { "name": "lan", "url": broker.url(), "ca_file": null,
                           "client_cert": null, "client_key": null,
                           "username": null, "password": null } }),
    )
    .expect("broker added");
    // Devices announce themselves once, at boot, not retained
    // (rainmaker.md, "MQTT-only deployments"): they are switched on once
    // the app listens, as a fleet powering up beside a running app.
    t.poll(
        "accounts",
        json!({}),
        Duration::from_secs(30),
        "the app to be connected to the broker",
        |v| v[0]["state"]["state"] == "connected",
    );
    let sim = rt
        .block_on(RainmakerSim::start(SimConfig {
            broker: BrokerChoice::External(broker.url()),
            scenario: Scenario::Demo,
            timing: Timing::fast(),
            ..SimConfig::default()
        }))
        .expect("sim");

    // A command opens the same directory: it finds the app and asks it.
    let cmd = rt
        .block_on(control::connect(
            &dir,
            std::sync::Arc::new(MemorySecretStore::default()),
        ))
        .expect("connects")
        .expect("the app serves its directory");

    // `pending --check` through the app, asked again each round: an
    // MQTT-only account knows a device once it has heard it.
    let end = std::time::Instant::now() + Duration::from_secs(60);
    let pending = loop {
        let p = rt.block_on(cmd.pending()).expect("pending through the app");
        if p.iter().any(|p| p.node_id == KITCHEN_PLUG) {
            break p;
        }
        assert!(
            std::time::Instant::now() < end,
            "the plug's offer never reached the command: {p:?}, nodes {:?}, accounts {:?}",
            rt.block_on(cmd.nodes()),
            t.call("accounts", json!({}))
        );
        for n in rt.block_on(cmd.nodes()).expect("nodes through the app") {
            let _ = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), cmd.check_now(n.node_id.as_str()))
                    .await
            });
        }
    };
    let offer = pending
        .iter()
        .find(|p| p.node_id == KITCHEN_PLUG)
        .expect("found above");
    assert_eq!(offer.to_version, "1.4.0");
    // The app's own inbox is the same list.
    let in_app = t.call("pending", json!({})).unwrap();
    assert!(
        in_app
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["node_id"] == KITCHEN_PLUG),
        "{in_app}"
    );
    let nodes = rt.block_on(cmd.nodes()).unwrap();
    let plug = nodes
        .iter()
        .find(|n| n.node_id == KITCHEN_PLUG)
        .expect("the plug is listed");
    assert_eq!(plug.online, Some(true), "as the app knows it: {plug:?}");

    // The command approves; the app's engine sends it and follows it.
    let out = rt
        .block_on(cmd.approve([NodeRef::from(KITCHEN_PLUG)]))
        .expect("approve answers");
    assert!(
        matches!(out[0].result, ApprovalResult::Sent { .. }),
        "{out:?}"
    );
    // The app's window, asked a moment later, cannot send it again.
    let again = t
        .call(
            "approve",
            json!({ "nodes": [{ "account": null, "node_id": KITCHEN_PLUG }] }),
        )
        .expect("per-node outcome");
    assert_ne!(again[0]["result"]["result"], "sent", "{again}");
    t.wait_event(
        Duration::from_secs(60),
        "the app to follow the plug's job to success",
        |ev| job_state(ev, KITCHEN_PLUG).as_deref() == Some("success"),
    );
    assert_eq!(
        sim.fleet.node(KITCHEN_PLUG).unwrap().starts_received,
        1,
        "one start, by one engine"
    );
    // The command sees the end the app saw.
    let jobs = rt
        .block_on(cmd.history(greenlight_core::HistoryFilter {
            node_id: Some(KITCHEN_PLUG.into()),
            ..Default::default()
        }))
        .expect("history through the app");
    assert_eq!(jobs.len(), 1, "one job: {jobs:?}");
    assert_eq!(jobs[0].state.name(), "success", "{:?}", jobs[0]);
    drop(cmd);
    drop(t);
    rt.block_on(sim.shutdown());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The launch never waits on the data directory (nor the keychain, opened
/// in the same task): with a command holding the directory and the app told
/// to wait an hour for it, the setup still returns, the window's status
/// says "opening" at once, and the engine opens when the command lets go.
#[test]
fn the_window_opens_before_the_data_does() {
    use greenlight_core::control;
    let dir = tempdir("opening");
    let held = control::claim(&dir, "command", false)
        .unwrap()
        .expect("the directory is free");
    let mut opts = common::options(&dir, true);
    opts.launch_wait = Duration::from_secs(3600);

    // Before, the setup hook opened the state with `block_on`: this
    // launch would have hung for the hour. The app lives on its own thread
    // so a hang is a failed wait here, not a hung test.
    let (tx, rx) = std::sync::mpsc::channel();
    let (go_on, released) = std::sync::mpsc::channel::<()>();
    let app = std::thread::spawn(move || {
        let t = common::launch(opts);
        let _ = tx.send(t.call("app_status", json!({})).expect("status"));
        released.recv().expect("the test goes on");
        t.poll(
            "app_status",
            json!({}),
            Duration::from_secs(30),
            "the app to own its directory once the command let go",
            |v| v["engine_owner"] == "app",
        );
        t.call("accounts", json!({})).expect("the engine answers")
    });
    let status = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the launch returns while the directory is held");
    assert_eq!(status["engine_owner"], "opening", "{status}");
    assert_eq!(status["data_dir"], dir.display().to_string(), "{status}");

    drop(held);
    go_on.send(()).unwrap();
    let accounts = app.join().expect("the app's thread");
    assert_eq!(accounts, json!([]));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A one-shot command that holds the data directory at launch (say
/// `greenlight approve` following a job) neither blocks the window nor
/// leaves the app without an engine: the app says who holds it, and opens
/// the engine itself the moment the command lets go.
#[test]
fn the_app_opens_its_engine_once_a_command_lets_go_of_the_directory() {
    use greenlight_core::control;
    let dir = tempdir("held");
    let held = control::claim(&dir, "command", false)
        .unwrap()
        .expect("the directory is free");

    let t = common::start(common::options(&dir, true));
    let status = t.call("app_status", json!({})).expect("status");
    assert_eq!(status["engine_owner"], "waiting", "{status}");
    let e = t
        .call("accounts", json!({}))
        .expect_err("no engine while the command holds the directory");
    let pid = std::process::id().to_string();
    assert!(
        e["message"].as_str().is_some_and(|m| m.contains(&pid)),
        "names who holds it: {e}"
    );

    drop(held);
    t.poll(
        "app_status",
        json!({}),
        Duration::from_secs(30),
        "the app to own its directory",
        |v| v["engine_owner"] == "app",
    );
    assert_eq!(t.call("accounts", json!({})).unwrap(), json!([]));
    // …and serves it: the next command is its client.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt
        .block_on(control::connect(
            &dir,
            std::sync::Arc::new(greenlight_core::MemorySecretStore::default()),
        ))
        .expect("connects");
    assert!(client.is_some(), "the app serves its directory");
    drop(t);
    let _ = std::fs::remove_dir_all(&dir);
}

fn export_query(path: Value) -> Value {
    json!({ "query": { "account": null, "node_id": null, "limit": null }, "path": path })
}

#[test]
fn history_is_exported_to_the_file_chosen_in_the_save_dialog() {
    let dir = tempdir("export");
    let t = common::start(common::options(&dir, true));
    let out = tempdir("export-out");
    std::fs::create_dir_all(&out).unwrap();
    let header = greenlight_core::export::HISTORY_COLUMNS.join(",");

    // The dialog already asked whether to replace an existing file.
    let target = out.join("my history.csv");
    std::fs::write(&target, "an older export\n").unwrap();
    let saved = t
        .call(
            "export_history_csv",
            export_query(json!(target.display().to_string())),
        )
        .expect("exported");
    assert_eq!(saved, json!(target.display().to_string()));
    let csv = std::fs::read_to_string(&target).unwrap();
    assert_eq!(csv.lines().next(), Some(header.as_str()), "{csv}");

    // A `file://` URL (what some pickers hand back) is the same file.
    let url = format!(
        "file://{}",
        out.join("from url.csv")
            .display()
            .to_string()
            .replace(' ', "%20")
    );
    let saved = t
        .call("export_history_csv", export_query(json!(url)))
        .expect("exported to a file:// URL");
    assert_eq!(saved, json!(out.join("from url.csv").display().to_string()));

    // Nothing else is left beside them (the temporary file was renamed).
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["from url.csv", "my history.csv"]);
}

#[test]
fn an_unwritable_export_target_is_a_clear_error_that_loses_nothing() {
    let dir = tempdir("export-bad");
    let t = common::start(common::options(&dir, true));
    let out = tempdir("export-bad-out");
    std::fs::create_dir_all(&out).unwrap();

    // A "folder" that is a file: nothing can be written under it.
    let blocker = out.join("notes.txt");
    std::fs::write(&blocker, "keep me\n").unwrap();
    let target = blocker.join("history.csv");
    let e = t
        .call(
            "export_history_csv",
            export_query(json!(target.display().to_string())),
        )
        .expect_err("cannot write under a file");
    assert_eq!(e["kind"], "failed", "{e}");
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains(&target.display().to_string()) && msg.contains("nothing was written"),
        "the message names the file and says nothing was written: {msg}"
    );
    assert_eq!(std::fs::read_to_string(&blocker).unwrap(), "keep me\n");

    // Only a .csv file is written: another kind of file is not replaced.
    let e = t
        .call(
            "export_history_csv",
            export_query(json!(blocker.display().to_string())),
        )
        .expect_err("not a .csv name");
    assert_eq!(e["kind"], "invalid", "{e}");
    assert!(e["message"].as_str().unwrap().contains(".csv"), "{e}");
    assert_eq!(std::fs::read_to_string(&blocker).unwrap(), "keep me\n");

    // A folder is not replaced by the export.
    let folder = out.join("exports.csv");
    std::fs::create_dir_all(folder.join("inside")).unwrap();
    let e = t
        .call(
            "export_history_csv",
            export_query(json!(folder.display().to_string())),
        )
        .expect_err("a folder is not a file");
    assert_eq!(e["kind"], "failed", "{e}");
    assert!(e["message"].as_str().unwrap().contains("folder"), "{e}");
    assert!(folder.join("inside").is_dir());

    // An Android document URI is refused in plain words, not mistaken for a path.
    let e = t
        .call(
            "export_history_csv",
            export_query(json!(
                "content://com.android.providers.downloads.documents/document/7"
            )),
        )
        .expect_err("content:// is not a path");
    assert_eq!(e["kind"], "invalid", "{e}");
    assert!(e["message"].as_str().unwrap().contains("content://"), "{e}");

    // Nothing was left behind by any of them.
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["exports.csv", "notes.txt"]);
}

#[test]
fn a_firmware_file_chosen_in_the_dialog_is_read_from_its_path_or_file_url() {
    let dir = tempdir("firmware");
    let t = common::start(common::options(&dir, true));
    let e = t
        .call(
            "blynk_check_firmware",
            json!({ "path": "content://com.android.externalstorage.documents/document/primary%3Afw.bin" }),
        )
        .expect_err("content:// is not a path");
    assert_eq!(e["kind"], "invalid", "{e}");
    assert!(e["message"].as_str().unwrap().contains("content://"), "{e}");

    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("my sketch.ino.bin");
    std::fs::write(
        &file,
        greenlight_sim::blynk::firmware::make_firmware("Nov 30 2026 12:00:00", 4096),
    )
    .unwrap();
    let as_path = t
        .call(
            "blynk_check_firmware",
            json!({ "path": file.display().to_string() }),
        )
        .expect("read by path");
    assert_eq!(as_path["build"], "Nov 30 2026 12:00:00", "{as_path}");
    assert_eq!(as_path["file_name"], "my sketch.ino.bin", "{as_path}");
    let as_url = t
        .call(
            "blynk_check_firmware",
            json!({ "path": format!("file://{}", file.display().to_string().replace(' ', "%20")) }),
        )
        .expect("read by file:// URL");
    assert_eq!(as_path, as_url, "a file:// URL is read as the same file");
}
