//! Staged ("careful") Blynk campaigns against the Blynk simulator on
//! loopback (issue 16, item 4): the canary first, the rest only once the
//! tracker saw it on the new build and stable; stopped at the first failure.
//! What reached the server is read from the simulator's log of admin calls,
//! what reached the devices from their own counters; every wait is a
//! positive signal bounded in time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use greenlight_core::blynk::{
    BlynkAccount, BlynkEvent, BlynkHandle, BlynkRollout, BlynkRolloutStage, BlynkTracker,
    DeviceState, StagedOptions, StartTarget, Target, TrackerConfig,
};
use greenlight_core::{MemorySecretStore, SecretStore};
use greenlight_sim::blynk::{
    make_firmware, BlynkConfig, BlynkSim, BlynkTiming, DeviceBehaviour, OtaCallKind, DEFAULT_BUILD,
};
use greenlight_tests::{blynk_bounce, blynk_caught_up, eventually};

const WAIT: Duration = Duration::from_secs(45);
const NEW_BUILD: &str = "Sep 21 2017 11:02:33";
const ALICE: &str = "alice@example.com";

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn sim(devices: Vec<DeviceBehaviour>) -> BlynkSim {
    BlynkSim::start(BlynkConfig {
        devices,
        timing: BlynkTiming::fast(),
        ..BlynkConfig::default()
    })
    .await
    .expect("simulator starts")
}

/// A fresh directory with the firmware file in it.
fn workdir(name: &str) -> (PathBuf, PathBuf) {
    let d = std::env::temp_dir().join(format!(
        "greenlight-rollout-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let fw = d.join("Template_ESP8266.ino.nodemcu.bin");
    std::fs::write(&fw, make_firmware(NEW_BUILD, 64 * 1024)).unwrap();
    (d.join("data"), fw)
}

/// A tracker polling only when asked (each check sees a fresh state).
async fn open(dir: &Path, secrets: &Arc<dyn SecretStore>) -> BlynkHandle {
    BlynkTracker::open(
        dir,
        secrets.clone(),
        "tester",
        TrackerConfig {
            poll_interval: Duration::from_millis(200),
            background: false,
            ..TrackerConfig::default()
        },
    )
    .await
    .expect("tracker")
}

async fn tracker(sim: &BlynkSim, dir: &Path) -> (BlynkHandle, Arc<dyn SecretStore>) {
    let secrets: Arc<dyn SecretStore> = Arc::new(MemorySecretStore::default());
    let h = open(dir, &secrets).await;
    let mut a = BlynkAccount::new("home", &sim.ready.admin, &sim.ready.admin_user);
    a.pinned_sha256 = Some(sim.ready.fingerprint.clone());
    h.add_account(a, &sim.ready.admin_password)
        .await
        .expect("account added");
    (h, secrets)
}

fn opts(settle: Duration) -> StagedOptions {
    StagedOptions {
        settle,
        loop_after: Some(2),
        ..StagedOptions::default()
    }
}

/// Starts a staged campaign on "home" from `fw`, `canary` first.
async fn staged(
    h: &BlynkHandle,
    fw: &Path,
    canary: &str,
    target: StartTarget,
    settle: Duration,
) -> BlynkRollout {
    h.start_staged("home", fw, canary, target, opts(settle))
        .await
        .expect("started")
}

fn alice() -> StartTarget {
    StartTarget::User {
        email: ALICE.into(),
        project: None,
    }
}

/// Polls (which is what moves a staged campaign on) until `pred` holds.
async fn until(
    h: &BlynkHandle,
    id: i64,
    what: &str,
    pred: impl Fn(&BlynkRollout) -> bool,
) -> BlynkRollout {
    let deadline = Instant::now() + WAIT;
    loop {
        h.refresh(Some("home")).await.expect("poll");
        let r = h.rollout(id).await.expect("read").expect("rollout exists");
        if pred(&r) {
            return r;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}: {r:#?}");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// The starts and stops the server received: (token starts, campaign
/// starts, stops).
fn calls(sim: &BlynkSim) -> (usize, usize, usize) {
    let c = sim.server.ota_calls();
    (
        c.iter()
            .filter(|c| matches!(c.kind, OtaCallKind::Token(_)))
            .count(),
        c.iter().filter(|c| c.kind.is_campaign()).count(),
        c.iter().filter(|c| c.kind == OtaCallKind::Stop).count(),
    )
}

fn name_of(sim: &BlynkSim, token: &str) -> String {
    sim.server.device(token).expect("registered").name
}

/// Each of `tokens` logs in again (the moment the server decides about
/// campaigns) and was sent no update.
async fn none_sent_at_login(sim: &BlynkSim, tokens: &[String]) {
    for t in tokens {
        let before = blynk_bounce(sim, t, WAIT).await;
        let s = sim.device_stats(t).unwrap();
        assert_eq!(
            s.ota_urls_received,
            before.ota_urls_received,
            "{} was sent an update at its login",
            name_of(sim, t)
        );
    }
    blynk_caught_up(sim, tokens, WAIT).await;
    for t in tokens {
        assert_eq!(sim.device_stats(t).unwrap().ota_urls_received, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_updates_then_the_campaign_reaches_the_rest() {
    let _g = SERIAL.lock().await;
    // alice: Device 1 (Home), 2 (Garden), 4 (Home); bob: Device 3.
    let sim = sim(vec![DeviceBehaviour::Normal; 4]).await;
    let (dir, fw) = workdir("ok");
    let (h, _) = tracker(&sim, &dir).await;
    let mut events = h.subscribe();
    let t = sim.ready.tokens.clone();

    let r = staged(&h, &fw, &t[0], alice(), Duration::from_secs(1)).await;
    assert_eq!(r.stage, BlynkRolloutStage::Canary);
    assert_eq!(r.canary.name, "Device 1");
    assert!(r.canary_sent_at.is_some());
    assert!(
        !serde_json::to_string(&r).unwrap().contains(&t[0]),
        "no token stored"
    );
    assert_eq!(calls(&sim), (1, 0, 0), "only the canary's update so far");

    let r = until(&h, r.id, "the extension", |r| {
        r.stage == BlynkRolloutStage::Extended
    })
    .await;
    assert_eq!(r.canary.state, DeviceState::Updated);
    assert_eq!(sim.device_stats(&t[0]).unwrap().build, NEW_BUILD);
    assert_eq!(
        calls(&sim),
        (1, 1, 0),
        "one token start, one campaign start: {:?}",
        sim.server.ota_calls()
    );
    let campaign_call = sim.server.ota_calls()[1].clone();
    assert_eq!(
        campaign_call.kind,
        OtaCallKind::User {
            email: ALICE.into(),
            project: None
        }
    );
    assert_eq!(campaign_call.status, 200);
    let ext = h
        .campaign(r.extension.expect("linked"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ext.target,
        Target::User {
            email: ALICE.into(),
            project: None
        }
    );

    // alice's other devices get it at their next login; bob's does not.
    for i in [1, 3] {
        blynk_bounce(&sim, &t[i], WAIT).await;
    }
    let r = until(&h, r.id, "the extended campaign to settle", |r| {
        r.stage == BlynkRolloutStage::Done
    })
    .await;
    for i in [0, 1, 3] {
        assert_eq!(sim.device_stats(&t[i]).unwrap().build, NEW_BUILD, "{i}");
    }
    none_sent_at_login(&sim, &t[2..3]).await;
    assert_eq!(sim.device_stats(&t[2]).unwrap().build, DEFAULT_BUILD);
    assert_eq!(calls(&sim), (1, 1, 0), "nothing sent twice");
    assert!(!r.is_active() && r.finished_at.is_some());

    // Each stage was told, in order, after it was stored.
    let mut stages = vec![];
    while let Ok(ev) = events.try_recv() {
        if let BlynkEvent::RolloutChanged { rollout } = ev {
            if stages.last() != Some(&rollout.stage.name()) {
                stages.push(rollout.stage.name());
            }
        }
    }
    assert_eq!(stages, ["canary", "extending", "extended", "done"]);
    let listed = h.rollouts(Some("home")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].stage, BlynkRolloutStage::Done);
    h.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_that_fails_to_flash_stops_before_any_campaign() {
    let _g = SERIAL.lock().await;
    let sim = sim(vec![
        DeviceBehaviour::FlashFails,
        DeviceBehaviour::Normal,
        DeviceBehaviour::Normal,
        DeviceBehaviour::Normal,
    ])
    .await;
    let (dir, fw) = workdir("flash");
    let (h, _) = tracker(&sim, &dir).await;
    let t = sim.ready.tokens.clone();

    let r = staged(&h, &fw, &t[0], StartTarget::All, Duration::from_secs(1)).await;
    let r = until(&h, r.id, "the stop", |r| {
        !matches!(r.stage, BlynkRolloutStage::Canary)
    })
    .await;
    let BlynkRolloutStage::Stopped {
        device,
        reason,
        resumable,
    } = &r.stage
    else {
        panic!("{r:#?}")
    };
    assert_eq!(device.as_deref(), Some("Device 1"));
    assert!(
        reason.contains("Device 1") && reason.contains("reboot loop"),
        "{reason}"
    );
    assert!(*resumable && r.needs_user());
    assert_eq!(r.extension, None);
    let s = sim.device_stats(&t[0]).unwrap();
    assert_eq!((s.flash_failures, s.build.as_str()), (1, DEFAULT_BUILD));

    // Polling on changes nothing: no campaign start ever reached the
    // server, no campaign stands there, no other device got a URL.
    for _ in 0..3 {
        h.refresh(Some("home")).await.unwrap();
    }
    assert_eq!(calls(&sim), (1, 0, 0), "{:?}", sim.server.ota_calls());
    assert_eq!(sim.server.campaigns(), 0);
    none_sent_at_login(&sim, &t[1..]).await;

    // Cancelled by the user: nothing to stop on the server.
    let c = h.cancel_rollout(None).await.expect("cancelled");
    assert!(
        matches!(c.stage, BlynkRolloutStage::Cancelled { .. }),
        "{c:#?}"
    );
    assert_eq!(calls(&sim), (1, 0, 0));
    h.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_canary_stage_goes_on_and_extends_once() {
    let _g = SERIAL.lock().await;
    let sim = sim(vec![DeviceBehaviour::Normal; 4]).await;
    let (dir, fw) = workdir("restart");
    let (h, secrets) = tracker(&sim, &dir).await;
    let t = sim.ready.tokens.clone();
    let r = staged(&h, &fw, &t[0], alice(), Duration::from_secs(1)).await;
    // Closed before a single poll: the canary stage is all it knew.
    h.shutdown().await;
    drop(h);

    let h = open(&dir, &secrets).await;
    let back = h.rollouts(None).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(
        (back[0].id, &back[0].stage),
        (r.id, &BlynkRolloutStage::Canary)
    );
    let done = until(&h, r.id, "the extension after the restart", |r| {
        r.stage == BlynkRolloutStage::Extended
    })
    .await;
    assert_eq!(done.canary.state, DeviceState::Updated);
    // More polls, and a third tracker: nothing is sent again.
    for _ in 0..3 {
        h.refresh(Some("home")).await.unwrap();
    }
    h.shutdown().await;
    let h = open(&dir, &secrets).await;
    h.refresh(Some("home")).await.unwrap();
    assert_eq!(calls(&sim), (1, 1, 0), "{:?}", sim.server.ota_calls());
    assert_eq!(sim.device_stats(&t[0]).unwrap().ota_urls_received, 1);
    h.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_in_the_canary_stage_sends_nothing_more() {
    let _g = SERIAL.lock().await;
    let sim = sim(vec![DeviceBehaviour::Normal; 3]).await;
    let (dir, fw) = workdir("cancel-canary");
    let (h, _) = tracker(&sim, &dir).await;
    let t = sim.ready.tokens.clone();
    // A settle time this test never reaches: only the cancel ends it.
    let r = staged(&h, &fw, &t[0], StartTarget::All, Duration::from_secs(3600)).await;
    until(&h, r.id, "the canary on the new build", |r| {
        r.canary.state == DeviceState::Updated
    })
    .await;
    let c = h.cancel_rollout(Some("home")).await.expect("cancelled");
    let BlynkRolloutStage::Cancelled { by, reason } = &c.stage else {
        panic!("{c:#?}")
    };
    assert_eq!(by, "tester");
    assert!(reason.contains("nothing was sent"), "{reason}");
    assert!(
        h.cancel_rollout(None).await.is_err(),
        "nothing left to cancel"
    );
    for _ in 0..3 {
        h.refresh(Some("home")).await.unwrap();
    }
    assert_eq!(calls(&sim), (1, 0, 0), "{:?}", sim.server.ota_calls());
    none_sent_at_login(&sim, &t[1..]).await;
    assert_eq!(
        h.rollout(r.id).await.unwrap().unwrap().stage.name(),
        "cancelled"
    );
    h.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_after_the_extension_stops_the_server() {
    let _g = SERIAL.lock().await;
    let sim = sim(vec![DeviceBehaviour::Normal; 3]).await;
    let (dir, fw) = workdir("cancel-extended");
    let (h, _) = tracker(&sim, &dir).await;
    let t = sim.ready.tokens.clone();
    let r = staged(&h, &fw, &t[0], StartTarget::All, Duration::from_secs(1)).await;
    until(&h, r.id, "the extension", |r| {
        r.stage == BlynkRolloutStage::Extended
    })
    .await;
    assert_eq!(sim.server.campaigns(), 1);
    let c = h.cancel_rollout(None).await.expect("cancelled");
    assert!(
        matches!(c.stage, BlynkRolloutStage::Cancelled { .. }),
        "{c:#?}"
    );
    assert!(
        c.note
            .as_deref()
            .is_some_and(|n| n.contains("stopped updates on the server")),
        "{c:#?}"
    );
    assert_eq!(calls(&sim), (1, 1, 1), "{:?}", sim.server.ota_calls());
    assert_eq!(sim.server.campaigns(), 0);
    let ext = h.campaign(c.extension.unwrap()).await.unwrap().unwrap();
    assert_eq!(ext.status.name(), "stopped");
    // The devices that had not logged in again get nothing now.
    none_sent_at_login(&sim, &t[1..]).await;
    assert_eq!(calls(&sim), (1, 1, 1));
    h.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_in_the_extended_campaign_stops_the_server() {
    let _g = SERIAL.lock().await;
    // alice: Device 1 (canary), Device 2 (its flash fails), Device 4.
    let sim = sim(vec![
        DeviceBehaviour::Normal,
        DeviceBehaviour::FlashFails,
        DeviceBehaviour::Normal,
        DeviceBehaviour::Normal,
    ])
    .await;
    let (dir, fw) = workdir("loop");
    let (h, _) = tracker(&sim, &dir).await;
    let t = sim.ready.tokens.clone();
    let r = staged(&h, &fw, &t[0], alice(), Duration::from_secs(1)).await;
    until(&h, r.id, "the extension", |r| {
        r.stage == BlynkRolloutStage::Extended
    })
    .await;
    // Device 2 logs in, gets the URL, fails, reboots, gets it again...
    blynk_bounce(&sim, &t[1], WAIT).await;
    let r = until(&h, r.id, "the stop and its server call", |r| {
        r.note
            .as_deref()
            .is_some_and(|n| n.starts_with("Greenlight stopped"))
    })
    .await;
    let BlynkRolloutStage::Stopped {
        device,
        reason,
        resumable,
    } = &r.stage
    else {
        panic!("{r:#?}")
    };
    assert_eq!(device.as_deref(), Some("Device 2"));
    assert!(
        reason.contains("reboot loop") && reason.contains("global"),
        "{reason}"
    );
    assert!(!resumable && !r.is_active());
    assert_eq!(calls(&sim), (1, 1, 1), "{:?}", sim.server.ota_calls());
    assert_eq!(sim.server.campaigns(), 0);
    // Its next login gets nothing: the loop is over.
    let sent = sim.device_stats(&t[1]).unwrap().ota_urls_received;
    assert!(sent >= 2, "{sent}");
    eventually(WAIT, "Device 2 back online", || async {
        sim.device_stats(&t[1]).filter(|s| s.online).map(|_| ())
    })
    .await;
    let before = blynk_bounce(&sim, &t[1], WAIT).await;
    blynk_caught_up(&sim, &t[1..2], WAIT).await;
    assert_eq!(
        sim.device_stats(&t[1]).unwrap().ota_urls_received,
        before.ota_urls_received
    );
    h.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_firmware_file_stops_the_extension_until_resumed() {
    let _g = SERIAL.lock().await;
    let sim = sim(vec![DeviceBehaviour::Normal; 3]).await;
    let (dir, fw) = workdir("changed");
    let (h, _) = tracker(&sim, &dir).await;
    let t = sim.ready.tokens.clone();
    let r = staged(&h, &fw, &t[0], StartTarget::All, Duration::from_secs(1)).await;
    let original = std::fs::read(&fw).unwrap();
    // Rebuilt after the canary got it: not what the canary proved.
    std::fs::write(&fw, make_firmware("Oct  1 2017 09:00:00", 64 * 1024)).unwrap();
    let r = until(&h, r.id, "the stop", |r| r.needs_user()).await;
    let BlynkRolloutStage::Stopped { reason, .. } = &r.stage else {
        panic!("{r:#?}")
    };
    assert!(
        reason.contains("changed since the canary got it"),
        "{reason}"
    );
    assert_eq!(calls(&sim), (1, 0, 0), "{:?}", sim.server.ota_calls());

    // The same file back, and the user's explicit resume: extended once.
    std::fs::write(&fw, original).unwrap();
    let r = h.resume_rollout(Some("home")).await.expect("resumed");
    assert_eq!(r.stage, BlynkRolloutStage::Extended, "{r:#?}");
    assert_eq!(calls(&sim), (1, 1, 0), "{:?}", sim.server.ota_calls());
    assert!(
        h.resume_rollout(None).await.is_err(),
        "nothing to resume now"
    );
    h.shutdown().await;
    sim.shutdown().await;
}

/// Two trackers on one data directory (the daemon and a CLI command), both
/// polling at once: the extension is sent once. Each re-reads the rollout
/// before it decides, so the two rarely decide on the same record; the
/// compare-and-set that settles that narrow race is checked in
/// `blynk::store::tests::rollout_writes_are_compare_and_set`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_trackers_on_one_directory_extend_once() {
    let _g = SERIAL.lock().await;
    let sim = sim(vec![DeviceBehaviour::Normal; 3]).await;
    let (dir, fw) = workdir("two");
    let (a, secrets) = tracker(&sim, &dir).await;
    // The daemon and a CLI command, say: each polls and moves it on.
    let b = open(&dir, &secrets).await;
    let t = sim.ready.tokens.clone();
    let r = staged(&a, &fw, &t[0], StartTarget::All, Duration::from_secs(1)).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let (x, y) = tokio::join!(a.refresh(Some("home")), b.refresh(Some("home")));
        x.unwrap();
        y.unwrap();
        let seen = b.rollout(r.id).await.unwrap().unwrap();
        if seen.stage == BlynkRolloutStage::Extended {
            break;
        }
        assert!(Instant::now() < deadline, "timed out: {seen:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..3 {
        let (x, y) = tokio::join!(a.refresh(Some("home")), b.refresh(Some("home")));
        x.unwrap();
        y.unwrap();
    }
    a.shutdown().await;
    b.shutdown().await;
    assert_eq!(calls(&sim), (1, 1, 0), "{:?}", sim.server.ota_calls());
    sim.shutdown().await;
}
