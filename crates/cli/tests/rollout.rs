//! `greenlight approve --all --staged` and `greenlight rollout …` as a
//! person or a script uses them, on four simulated plugs (real mosquitto,
//! real Secret Service): the first plug goes alone, the second batch's
//! rollback stops the rollout with exit 1 and the fourth plug is never
//! approved; `rollout status` says why; `rollout resume` goes on with the
//! fourth; bad plans are refused with exit 2.

mod common;

use common::*;
use greenlight_sim::rainmaker::{
    scenario, Behaviour, BrokerChoice, JobKind, JobSpec, NodeSpec, RainmakerSim, Scenario,
    SimConfig, Timing,
};
use greenlight_tests::Mosquitto;
use std::io::Read;

fn id(n: usize) -> String {
    scenario::node_id(400 + n)
}

/// Four plugs; with `rollback`, the second one rolls back.
async fn plugs(mosq: &Mosquitto, rollback: bool, timing: Timing) -> RainmakerSim {
    let ids: Vec<String> = (1..=4).map(id).collect();
    let nodes = (1..=4)
        .map(|i| NodeSpec {
            behaviour: if i == 2 && rollback {
                Behaviour::Rollback
            } else {
                Behaviour::Normal
            },
            ..NodeSpec::new(
                greenlight_tests::test_plug(id(i), &format!("Plug {i}")),
                "1.0.0",
            )
        })
        .collect();
    RainmakerSim::start(SimConfig {
        broker: BrokerChoice::External(mosq.url()),
        scenario: Scenario::Plain,
        nodes: 0,
        extra_nodes: nodes,
        extra_jobs: vec![JobSpec::new(&ids, "2.0.0", JobKind::Plain)],
        timing,
        ..SimConfig::default()
    })
    .await
    .expect("simulator")
}

/// Waits until every plug's offer is in: an offer can come a while after
/// the plug is online (docs/rainmaker.md), and `approve --all` approves
/// what is offered when it runs.
async fn all_four_offered(keyring: &greenlight_tests::SecretService, data: &std::path::Path) {
    greenlight_tests::eventually(
        std::time::Duration::from_secs(60),
        "the four plugs' offers",
        || async {
            let o = greenlight(keyring, data, &["--json", "pending", "--check"], None);
            assert_eq!(o.status.code(), Some(0), "{}", text(&o));
            (json_of(&o)["pending"].as_array().map_or(0, Vec::len) >= 4).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_approval_stops_at_a_rollback_and_resumes_on_request() {
    let keyring = keyring();
    let mosq = Mosquitto::start();
    let sim = plugs(&mosq, true, Timing::fast()).await;
    let data = std::env::temp_dir().join(format!("greenlight-cli-rollout-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    add_account(&keyring, &data, &sim);

    // Plans that mean nothing: usage errors, nothing approved.
    for (args, words) in [
        (
            vec!["approve", "--all", "--staged", "--soak", "5"],
            "give a unit",
        ),
        (
            vec!["approve", "--all", "--staged", "--batch", "0"],
            "a batch is 1 to",
        ),
        (
            vec!["approve", "--all", "--staged", "--window", "02:00-02:00"],
            "never opens",
        ),
        (vec!["approve", "--all", "--batch", "2"], "--staged"),
    ] {
        let o = greenlight(&keyring, &data, &args, None);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(words), "{args:?}: {}", text(&o));
    }
    for n in 1..=4 {
        assert_eq!(sim.fleet.node(&id(n)).unwrap().starts_received, 0);
    }

    // Plug 1 alone, then plugs 2 and 3; plug 2 rolls back.
    all_four_offered(&keyring, &data).await;
    let o = greenlight(
        &keyring,
        &data,
        &[
            "--json", "approve", "--all", "--staged", "--canary", "Plug 1", "--batch", "2",
            "--soak", "1s",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "a stopped rollout: {}", text(&o));
    let r = json_of(&o);
    assert_eq!(r["state"]["state"], "stopped", "{r:#}");
    assert_eq!(r["state"]["node_id"], id(2).as_str(), "{r:#}");
    assert!(
        r["state"]["reason"]
            .as_str()
            .is_some_and(|s| s.contains("Plug 2 rolled back")),
        "{r:#}"
    );
    assert_eq!(sim.fleet.node(&id(1)).unwrap().fw_version, "2.0.0");
    assert_eq!(
        sim.fleet.node(&id(4)).unwrap().starts_received,
        0,
        "nothing approved after the stop"
    );

    // The status says where it stopped, as stages.
    let o = greenlight(&keyring, &data, &["rollout", "status"], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        out.contains("(stopped): Stopped: Plug 2 rolled back"),
        "{out}"
    );
    assert!(out.contains("first") && out.contains("batch 1"), "{out}");

    // Resumed: plug 4 goes on; plug 2 stays failed, so the exit is still 1.
    let o = greenlight(&keyring, &data, &["--json", "rollout", "resume"], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let r = json_of(&o);
    assert_eq!(r["state"]["state"], "done", "{r:#}");
    assert_eq!(r["headline"], "Done: 3 updated, 1 failed", "{r:#}");
    let s = sim.fleet.node(&id(4)).unwrap();
    assert_eq!((s.fw_version.as_str(), s.starts_received), ("2.0.0", 1));
    assert_eq!(sim.fleet.node(&id(1)).unwrap().starts_received, 1);

    // Nothing left to act on.
    let o = greenlight(&keyring, &data, &["rollout", "cancel"], None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no rollout is running"), "{}", text(&o));
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_whose_command_is_killed_goes_on_without_a_second_approval() {
    let keyring = keyring();
    let mosq = Mosquitto::start();
    // Downloads of a few seconds, so the kill lands in the middle.
    let timing = Timing {
        download_step: std::time::Duration::from_millis(300),
        ..Timing::fast()
    };
    let sim = plugs(&mosq, false, timing).await;
    let data = std::env::temp_dir().join(format!(
        "greenlight-cli-rollout-kill-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&data);
    add_account(&keyring, &data, &sim);
    all_four_offered(&keyring, &data).await;
    let mut child = command(
        &keyring,
        &data,
        &[
            "approve", "--all", "--staged", "--batch", "3", "--soak", "1s",
        ],
    )
    .spawn()
    .expect("spawn");
    // Killed (no chance to clean up) once the first plug has its start.
    greenlight_tests::eventually(
        std::time::Duration::from_secs(60),
        "the first plug started",
        || {
            // A command that ended before any start (it refused the plan,
            // or failed) says why, instead of a minute's wait for nothing.
            if let Ok(Some(status)) = child.try_wait() {
                let mut out = String::new();
                if let Some(mut p) = child.stdout.take() {
                    let _ = p.read_to_string(&mut out);
                }
                if let Some(mut p) = child.stderr.take() {
                    let _ = p.read_to_string(&mut out);
                }
                panic!("approve --staged ended ({status}) before the first start: {out}");
            }
            let started = sim
                .fleet
                .stats()
                .iter()
                .map(|s| s.starts_received)
                .sum::<u32>();
            async move { (started == 1).then_some(()) }
        },
    )
    .await;
    child.kill().expect("SIGKILL");
    let _ = child.wait();

    let o = greenlight(&keyring, &data, &["--json", "rollout", "resume"], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = json_of(&o);
    assert_eq!(r["headline"], "Done: 4 updated", "{r:#}");
    for n in 1..=4 {
        let s = sim.fleet.node(&id(n)).unwrap();
        assert_eq!(
            (s.fw_version.as_str(), s.starts_received),
            ("2.0.0", 1),
            "plug {n}: one approval, not two"
        );
    }
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
}
