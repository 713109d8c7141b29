//! Faults and hostile input beyond core_faults.rs and core_hostile.rs: the
//! broker killed and restarted in the middle of a job; a cloud that accepts
//! the connection and never answers, and one that is merely slow; 423 and
//! 5xx storms on the approval command itself; a data directory that is
//! read-only or full; node clocks that jump; hostile node ids in the cloud's
//! node list; markup and control characters in names and release notes.
//!
//! The invariant everywhere: an approval reaches a node at most once, and
//! never without being recorded first; a job that reached the node is
//! followed to its end.

#[path = "core_common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use greenlight_core::rainmaker::rest::RetryPolicy;
use greenlight_core::{ApprovalResult, Engine, Event, JobState, UpdateKind};
use greenlight_sim::rainmaker::{Fault, JobKind, Timing};
use greenlight_tests::{
    db, eventually, missing_prerequisite, node_caught_up, swept_again, Mosquitto,
};
use rumqttc::{AsyncClient, MqttOptions, QoS};

fn fault(path: Option<&str>, status: u16, count: u32, delay_ms: u64) -> Fault {
    Fault {
        path_prefix: path.map(str::to_string),
        status,
        count,
        retry_after: (status == 423 || status == 429).then_some(1),
        delay_ms,
    }
}

fn is_sent(r: &ApprovalResult) -> bool {
    matches!(r, ApprovalResult::Sent { .. })
}

/// The job `id` is still waiting for the user's confirmation.
async fn assert_not_confirmed(e: &greenlight_core::EngineHandle, id: i64) {
    let jobs = e.jobs().await.unwrap();
    let j = jobs.iter().find(|j| j.id == id).expect("the job is open");
    assert!(matches!(j.state, JobState::NotConfirmed { .. }), "{j:?}");
}

/// A raw MQTT client: what "the node" (or anyone on the broker) publishes.
async fn publisher(port: u16) -> (AsyncClient, tokio::task::JoinHandle<()>) {
    let (c, mut el) = AsyncClient::new(MqttOptions::new("spoofer", "127.0.0.1", port), 16);
    let pump = tokio::spawn(async move { while el.poll().await.is_ok() {} });
    (c, pump)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_and_restarted_mid_job_the_job_finishes_once() {
    let _serial = serial().await;
    init_logs();
    let (mut mosq, sim) = mosq_and_sim(slow_download()).await;
    let port = mosq.port;
    let dir = data_dir("broker-mid-job");
    let e = engine(&dir, &sim, account(&sim, "home", Sides::Both)).await;
    let mut events = e.subscribe();
    let plug = sim.info.nodes[1].clone();
    pending_for(&e, &plug, UpdateKind::NodeSide).await;
    let out = e.approve(std::slice::from_ref(&plug)).await.unwrap();
    assert!(is_sent(&out[0].result), "{out:?}");
    job_where(&e, &plug, "in progress", |s| {
        matches!(s, JobState::InProgress { .. })
    })
    .await;

    mosq.kill();
    wait_event(&mut events, "the watcher to notice", |ev| {
        matches!(
            ev,
            Event::AccountState {
                state: greenlight_core::AccountState::Reconnecting { .. },
                ..
            }
        )
    })
    .await;
    // The outage lasts a while (the node's download goes on meanwhile and
    // its reports are lost). This is the scenario's length, not a wait for
    // anything: what is asserted below is waited for.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _mosq2 = Mosquitto::start_on(port);

    let j = finished(&e, &plug).await;
    assert_eq!(j.state, JobState::Success, "{j:?}");
    assert_eq!(sim.fleet.node(&plug).unwrap().starts_received, 1);
    assert_eq!(sim.fleet.node(&plug).unwrap().fw_version, "1.4.0");
    e.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_cloud_leaves_the_approval_unconfirmed_and_a_slow_one_still_finishes() {
    let _serial = serial().await;
    init_logs();
    let (_mosq, sim) = mosq_and_sim(Timing::fast()).await;
    let dir = data_dir("hanging");
    let mut cfg = config(&dir, secrets(&sim, "home"));
    cfg.retry = RetryPolicy {
        attempts: 4,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
    };
    // Cloud checks only when asked: the injected faults meet the approval.
    cfg.cloud_check_interval = Duration::from_secs(3600);
    let e = Engine::open(cfg).await.unwrap();
    e.add_account(account(&sim, "home", Sides::Rest))
        .await
        .unwrap();
    let porch = sim.info.nodes[2].clone();
    let p = eventually(WAIT, "the porch's cloud offer", || async {
        let _ = e.check_now(&porch).await;
        e.pending()
            .await
            .unwrap()
            .into_iter()
            .find(|p| p.node_id == porch && p.kind == UpdateKind::CloudApproval)
    })
    .await;

    // The cloud takes the POST and never answers (within any timeout).
    sim.cloud
        .inject_fault(fault(Some("user/nodes/ota_update"), 0, 1, 120_000));
    let out = e.approve(std::slice::from_ref(&porch)).await.unwrap();
    let ApprovalResult::NotConfirmed { job } = &out[0].result else {
        panic!("a hanging cloud cannot confirm the approval: {out:?}")
    };
    assert!(
        matches!(&job.state, JobState::NotConfirmed { reason } if reason.contains("may or may not")),
        "{job:?}"
    );
    // Never re-sent by itself: not on a sweep of the engine's own timer, nor
    // on its ticks in between. The engine records a command before sending
    // it, so the job would have left "not confirmed".
    swept_again(&e, "home", WAIT).await;
    assert_not_confirmed(&e, job.id).await;
    let approvals = |sim: &greenlight_sim::rainmaker::RainmakerSim| {
        sim.cloud
            .state()
            .requests
            .get("POST user/nodes/ota_update")
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(approvals(&sim), 1);
    node_caught_up(&sim, &porch, WAIT).await;
    assert_eq!(sim.fleet.node(&porch).unwrap().downloads_started, 0);

    // The user confirms; the cloud is slow now (every call 700 ms), not dead.
    sim.cloud.inject_fault(fault(None, 0, 40, 700));
    let o = e.confirm_resend(job.id).await.unwrap();
    assert!(is_sent(&o.result), "{o:?}");
    let j = finished(&e, &porch).await;
    assert_eq!(j.state, JobState::Success, "{j:?}");
    assert_eq!(j.id, job.id);
    assert_eq!(approvals(&sim), 2);
    assert_eq!(sim.fleet.node(&porch).unwrap().downloads_started, 1);
    assert_eq!(sim.fleet.node(&porch).unwrap().fw_version, p.to_version);
    e.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storms_of_423_and_5xx_on_the_approval_command() {
    let _serial = serial().await;
    init_logs();
    let (_mosq, sim) = mosq_and_sim(Timing::fast()).await;
    let dir = data_dir("storms");
    let mut cfg = config(&dir, secrets(&sim, "home"));
    cfg.cloud_check_interval = Duration::from_secs(3600);
    let e = Engine::open(cfg).await.unwrap();
    e.add_account(account(&sim, "home", Sides::Rest))
        .await
        .unwrap();
    let (plug, porch) = (sim.info.nodes[1].clone(), sim.info.nodes[2].clone());
    pending_for(&e, &plug, UpdateKind::NodeSide).await;
    eventually(WAIT, "the porch's cloud offer", || async {
        let _ = e.check_now(&porch).await;
        e.pending()
            .await
            .unwrap()
            .into_iter()
            .find(|p| p.node_id == porch)
    })
    .await;

    // 423 "too much traffic": the cloud did not take the request on, so it
    // is retried (after Retry-After) and goes through once.
    sim.cloud
        .inject_fault(fault(Some("user/nodes/ota_update"), 423, 3, 0));
    let out = e.approve(std::slice::from_ref(&porch)).await.unwrap();
    assert!(is_sent(&out[0].result), "{out:?}");
    assert_eq!(finished(&e, &porch).await.state, JobState::Success);
    assert_eq!(sim.fleet.node(&porch).unwrap().downloads_started, 1);

    // A 500 on the node-side start (PUT params): it may have been acted on,
    // so it is not repeated; it waits for the user.
    sim.cloud
        .inject_fault(fault(Some("user/nodes/params"), 500, 1, 0));
    let out = e.approve(std::slice::from_ref(&plug)).await.unwrap();
    let ApprovalResult::NotConfirmed { job } = &out[0].result else {
        panic!("a 500 on the command is not a confirmation: {out:?}")
    };
    // Not repeated by itself: not on a sweep of the engine's own timer, nor
    // on its ticks in between; and nothing reached the node.
    swept_again(&e, "home", WAIT).await;
    assert_not_confirmed(&e, job.id).await;
    node_caught_up(&sim, &plug, WAIT).await;
    assert_eq!(sim.fleet.node(&plug).unwrap().starts_received, 0);
    // 502/503/504 from a proxy in front of the cloud, then through.
    for s in [502, 503, 504] {
        sim.cloud
            .inject_fault(fault(Some("user/nodes/params"), s, 1, 0));
    }
    let o = e.confirm_resend(job.id).await.unwrap();
    // 503 is retried; 502 and 504 may have been acted on: confirm again.
    let mut o = o;
    for _ in 0..4 {
        if is_sent(&o.result) {
            break;
        }
        assert!(
            matches!(o.result, ApprovalResult::NotConfirmed { .. }),
            "{o:?}"
        );
        o = e.confirm_resend(job.id).await.unwrap();
    }
    assert!(is_sent(&o.result), "{o:?}");
    assert_eq!(finished(&e, &plug).await.state, JobState::Success);
    assert_eq!(sim.fleet.node(&plug).unwrap().starts_received, 1);
    e.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_clocks_that_jump_do_not_freeze_a_job() {
    let _serial = serial().await;
    init_logs();
    let (mosq, sim) = mosq_and_sim(slow_download()).await;
    let dir = data_dir("clock");
    let e = engine(&dir, &sim, account(&sim, "home", Sides::Mqtt)).await;
    let plug = sim.info.nodes[1].clone();
    let p = pending_for(&e, &plug, UpdateKind::NodeSide).await;
    let out = e.approve(std::slice::from_ref(&plug)).await.unwrap();
    assert!(is_sent(&out[0].result), "{out:?}");
    job_where(&e, &plug, "in progress", |s| {
        matches!(s, JobState::InProgress { .. })
    })
    .await;

    // The node's clock jumps ten years ahead for one report, then back; and
    // once it reports from 1970 (no time sync yet after a reboot).
    let (c, pump) = publisher(mosq.port).await;
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for ts in [now_s + 10 * 365 * 86400, 12] {
        let body = serde_json::json!({
            "ota_job_id": p.job_id, "status": "in-progress",
            "additional_info": "Downloaded 5% Firmware Image", "ts": ts,
        });
        c.publish(
            format!("node/{plug}/otastatus"),
            QoS::AtLeastOnce,
            false,
            body.to_string(),
        )
        .await
        .unwrap();
    }
    let j = finished(&e, &plug).await;
    assert_eq!(j.state, JobState::Success, "{j:?}");
    assert_eq!(sim.fleet.node(&plug).unwrap().starts_received, 1);
    pump.abort();
    e.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ids_names_and_notes_from_the_cloud_and_the_broker() {
    let _serial = serial().await;
    init_logs();
    let (mosq, sim) = mosq_and_sim(Timing::fast()).await;
    // The cloud lists nodes whose ids would be wildcards or worse in a topic.
    let evil_ids = [
        "evil+id".to_string(),
        "evil#".to_string(),
        "a/b".to_string(),
        "$SYS".to_string(),
        "nul\u{0}id".to_string(),
        "x".repeat(300),
    ];
    for id in &evil_ids {
        sim.cloud.map_node(id, &sim.info.user);
    }
    // A release note with markup and control characters.
    let desk = sim.info.nodes[0].clone();
    let note = "<script>alert('x')</script><img src=x onerror=alert(1)> \u{1b}[31mred\u{7} & more";
    sim.create_job(
        std::slice::from_ref(&desk),
        "9.9.9",
        note,
        JobKind::UserApproval,
    )
    .unwrap();
    let dir = data_dir("hostile-more");
    let e = engine(&dir, &sim, account(&sim, "home", Sides::Both)).await;
    let p = pending_for(&e, &desk, UpdateKind::CloudApproval).await;
    let shown = p.release_note.clone().unwrap_or_default();
    // Kept as text (the UI shows it as text, never as markup) without the
    // control characters that could drive a terminal.
    assert!(shown.contains("<script>alert('x')</script>"), "{shown:?}");
    assert!(!shown.chars().any(char::is_control), "{shown:?}");

    // A node renamed to markup, control characters and wildcards over MQTT.
    let plug = sim.info.nodes[1].clone();
    let (c, pump) = publisher(mosq.port).await;
    let cfg = serde_json::json!({
        "node_id": plug,
        "info": {"name": "<b onmouseover=alert(1)>Plug</b>\u{1b}]0;pwned\u{7}+#/\u{202e}", "fw_version": "1.3.2"},
        "services": [],
    });
    c.publish(
        format!("node/{plug}/config"),
        QoS::AtLeastOnce,
        false,
        cfg.to_string(),
    )
    .await
    .unwrap();
    let n = eventually(WAIT, "the renamed node", || async {
        e.nodes().await.unwrap().into_iter().find(|n| {
            n.node_id == plug && n.name.as_deref().is_some_and(|m| m.contains("Plug</b>"))
        })
    })
    .await;
    let name = n.name.unwrap();
    assert!(!name.chars().any(char::is_control), "{name:?}");
    assert!(name.starts_with("<b onmouseover=alert(1)>"), "{name:?}");

    // None of the hostile ids became a node; the real ones are all there.
    e.refresh().await.unwrap();
    let nodes = e.nodes().await.unwrap();
    for id in &evil_ids {
        assert!(!nodes.iter().any(|n| &n.node_id == id), "{id:?} accepted");
    }
    for id in &sim.info.nodes {
        assert!(nodes.iter().any(|n| &n.node_id == id), "{id} missing");
    }
    pump.abort();
    e.shutdown().await;
    sim.shutdown().await;
}

// ---- a data directory that is read-only, or full ------------------------------

/// A small tmpfs of our own: the honest way to make a full disk or a
/// read-only file system (root ignores file permissions). Mounted with
/// root's rights (see [`privileged`]), owned by whoever runs the test;
/// unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts one, or says why it could not.
    fn mount(name: &str, size: &str) -> Result<Tmpfs, String> {
        let d = data_dir(name);
        std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        let opts = format!("size={size},mode=0700,uid={},gid={}", id("-u"), id("-g"));
        let mut c = privileged("mount");
        c.args(["-t", "tmpfs", "-o", &opts, "tmpfs"]).arg(&d);
        match run(c) {
            Ok(()) => Ok(Tmpfs(d)),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&d);
                Err(e)
            }
        }
    }
    fn remount(&self, mode: &str) {
        let mut c = privileged("mount");
        c.args(["-o", &format!("remount,{mode}")]).arg(&self.0);
        if let Err(e) = run(c) {
            panic!("remount {mode}: {e}");
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = privileged("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `id FLAG` (`-u`, `-g`) of this process.
fn id(flag: &str) -> String {
    Command::new("id")
        .arg(flag)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn is_root() -> bool {
    id("-u") == "0"
}

/// `cmd` with root's rights: itself when we are root, else through `sudo -n`
/// (passwordless sudo, as CI machines have; it fails at once rather than
/// asking for a password).
fn privileged(cmd: &str) -> Command {
    if is_root() {
        Command::new(cmd)
    } else {
        let mut c = Command::new("sudo");
        c.args(["-n", cmd]);
        c
    }
}

/// Runs `c`; `Err` says what failed and what it printed.
fn run(mut c: Command) -> Result<(), String> {
    let what = format!("{c:?}");
    match c.output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "{what}: {} {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

/// Fills the file system holding `dir` (one file, written until it is full).
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).unwrap();
    let chunk = vec![0x5a; 64 * 1024];
    for _ in 0..100_000 {
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    let small = vec![0x5a; 512];
    for _ in 0..1000 {
        if f.write_all(&small).is_err() {
            break;
        }
    }
    let _ = f.flush();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_or_full_data_directory_is_a_clear_error_without_damage() {
    const TEST: &str = "read_only_or_full_data_directory_is_a_clear_error_without_damage";
    let _serial = serial().await;
    init_logs();
    // Both halves want a tmpfs of their own. Without one, the read-only half
    // falls back on file permissions (not as root, which ignores them) and
    // the full-disk half cannot run: under CI either is a failure.
    let fs = match Tmpfs::mount("tmpfs", "16m") {
        Ok(t) => Some(t),
        Err(why) => {
            let what = format!(
                "no tmpfs could be mounted for a read-only or full data directory \
                 (it needs root, or passwordless sudo for mount): {why}"
            );
            if is_root() {
                // Root ignores file permissions: nothing is left to test.
                missing_prerequisite(
                    TEST,
                    &format!("{what}; as root nothing else makes a directory read-only, so neither half can run"),
                );
                return;
            }
            missing_prerequisite(
                TEST,
                &format!("{what}; the full-disk half cannot run (the read-only half uses file permissions)"),
            );
            None
        }
    };
    let (_mosq, sim) = mosq_and_sim(Timing::fast()).await;
    let dir = match &fs {
        Some(t) => t.0.join("data"),
        None => data_dir("readonly"),
    };
    let plug = sim.info.nodes[1].clone();
    let e = engine(&dir, &sim, account(&sim, "home", Sides::Rest)).await;
    pending_for(&e, &plug, UpdateKind::NodeSide).await;
    e.shutdown().await;
    drop(e);

    // Read-only: opening says so plainly; nothing is written, nothing sent.
    match &fs {
        Some(t) => t.remount("ro"),
        None => {
            use std::os::unix::fs::PermissionsExt;
            for f in std::fs::read_dir(&dir).unwrap().flatten() {
                std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o444)).unwrap();
            }
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
    }
    match Engine::open(config(&dir, secrets(&sim, "home"))).await {
        Err(err) => {
            let m = err.to_string().to_lowercase();
            assert!(
                m.contains("cannot be written")
                    && (m.contains("read-only") || m.contains("permission")),
                "a read-only data directory is named as such: {err}"
            );
        }
        Ok(e) => {
            // Opened for reading: any approval must fail to record, and so
            // not be sent. Just opened, the engine counts no node online
            // until a source has reported: a sweep first (its writes may
            // fail too), so that the approval meets the store, not "offline".
            let _ = e.refresh().await;
            let out = e.approve(std::slice::from_ref(&plug)).await.unwrap();
            eprintln!("read-only data directory: approval: {:?}", out[0].result);
            assert!(
                matches!(&out[0].result, ApprovalResult::Failed { reason } if reason.contains("could not record")),
                "{out:?}"
            );
            e.shutdown().await;
        }
    }
    // Whatever the cloud was given has reached the node by now.
    node_caught_up(&sim, &plug, WAIT).await;
    assert_eq!(sim.fleet.node(&plug).unwrap().starts_received, 0);
    match &fs {
        Some(t) => t.remount("rw"),
        None => {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            for f in std::fs::read_dir(&dir).unwrap().flatten() {
                std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
    }
    assert_eq!(db::integrity_check(&dir.join("greenlight.db")), "ok");

    // Full: whatever fails, fails with words, and an approval is never sent
    // without being recorded.
    let mut sent = false;
    if let Some(t) = &fs {
        // The engine is running when the disk fills up (nodes, jobs and
        // history keep being written), then the user approves.
        let e = Engine::open(config(&dir, secrets(&sim, "home")))
            .await
            .unwrap();
        pending_for(&e, &plug, UpdateKind::NodeSide).await;
        let filler = fill(&t.0);
        let _ = e.refresh().await;
        let out = e.approve(std::slice::from_ref(&plug)).await.unwrap();
        eprintln!("full disk: approval: {:?}", out[0].result);
        match &out[0].result {
            // SQLite may still have room in its write-ahead log.
            ApprovalResult::Sent { .. } => sent = true,
            ApprovalResult::Failed { reason } => {
                assert!(reason.contains("could not record"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        e.shutdown().await;
        drop(e);
        // Opening on a full disk says so.
        if let Err(err) = Engine::open(config(&dir, secrets(&sim, "home"))).await {
            eprintln!("full disk: opening: {err}");
            assert!(err.to_string().contains("No space left"), "{err}");
        }
        std::fs::remove_file(filler).unwrap();
        if !sent {
            // Whatever the cloud was given has reached the node by now.
            node_caught_up(&sim, &plug, WAIT).await;
            assert_eq!(sim.fleet.node(&plug).unwrap().starts_received, 0);
        }
        assert_eq!(db::integrity_check(&dir.join("greenlight.db")), "ok");
    }

    // With room again, everything works and the update happens once.
    let e = Engine::open(config(&dir, secrets(&sim, "home")))
        .await
        .unwrap();
    if !sent {
        pending_for(&e, &plug, UpdateKind::NodeSide).await;
        // Just reopened, the engine counts no node online until a source has
        // reported: a sweep first, or the approval may meet "offline".
        e.refresh().await.unwrap();
        let out = e.approve(std::slice::from_ref(&plug)).await.unwrap();
        assert!(is_sent(&out[0].result), "{out:?}");
    }
    assert_eq!(finished(&e, &plug).await.state, JobState::Success);
    assert_eq!(sim.fleet.node(&plug).unwrap().starts_received, 1);
    e.shutdown().await;
    drop(e);
    assert_eq!(db::integrity_check(&dir.join("greenlight.db")), "ok");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_name_that_does_not_resolve_is_a_clear_network_error() {
    init_logs();
    let secrets = std::sync::Arc::new(greenlight_core::MemorySecretStore::default());
    greenlight_core::SecretStore::set(
        &*secrets,
        "nowhere",
        greenlight_core::secret_keys::PASSWORD,
        "pw",
    )
    .unwrap();
    // `.invalid` never resolves (RFC 2606), here or anywhere.
    let acct = greenlight_core::AccountConfig::rest(
        "nowhere",
        "http://greenlight-no-such-host.invalid",
        "a@b.c",
    );
    let client = greenlight_core::rainmaker::rest::RestClient::new(
        "nowhere",
        acct.rest.as_ref().unwrap(),
        secrets,
        RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(200),
            request_timeout: Duration::from_secs(5),
        },
    )
    .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(90), client.access_token())
        .await
        .expect("a name that does not resolve is given up on, not retried forever")
        .unwrap_err();
    assert!(
        matches!(
            err,
            greenlight_core::Error::Network {
                kind: greenlight_core::error::NetKind::Dns,
                ..
            }
        ),
        "{err:?}"
    );
    // The person reads what it means and what to do, and nothing was sent.
    assert!(
        err.plain().contains("host name could not be found"),
        "{}",
        err.plain()
    );
    assert!(err.never_sent() && !err.maybe_delivered());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_a_refused_connection_in_plain_words_and_provably_not_sent() {
    init_logs();
    let secrets = std::sync::Arc::new(greenlight_core::MemorySecretStore::default());
    greenlight_core::SecretStore::set(
        &*secrets,
        "closed",
        greenlight_core::secret_keys::PASSWORD,
        "pw",
    )
    .unwrap();
    // A port that was just free on loopback: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let acct = greenlight_core::AccountConfig::rest(
        "closed",
        &format!("http://127.0.0.1:{port}"),
        "a@b.c",
    );
    let client = greenlight_core::rainmaker::rest::RestClient::new(
        "closed",
        acct.rest.as_ref().unwrap(),
        secrets,
        RetryPolicy {
            attempts: 2,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(50),
            request_timeout: Duration::from_secs(5),
        },
    )
    .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(30), client.access_token())
        .await
        .expect("a refused connection is answered at once")
        .unwrap_err();
    assert!(
        matches!(
            err,
            greenlight_core::Error::Network {
                kind: greenlight_core::error::NetKind::Refused,
                ..
            }
        ),
        "{err:?}"
    );
    let words = err.plain();
    assert!(words.contains("refused the connection"), "{words}");
    assert!(
        !words.contains("os error") && !words.contains("tcp connect"),
        "{words}"
    );
    assert!(err.never_sent() && !err.maybe_delivered());
}
