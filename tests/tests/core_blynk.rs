//! The Blynk client and campaign tracker against the Blynk simulator (real
//! HTTPS admin API with its self-signed certificate, real hardware protocol,
//! simulated devices), all on loopback: every target (token, user,
//! user+project, all), stop, the 413 and missing-build-tag errors, tracking
//! to "updated", reboot-loop detection for a device whose flash fails, a
//! wrong admin password and a wrong pinned fingerprint. Every wait is
//! bounded in time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use greenlight_core::blynk::{
    BlynkAccount, BlynkError, BlynkEvent, BlynkHandle, BlynkTracker, Campaign, CampaignStatus,
    DeviceState, Firmware, StartTarget, Target, TrackerConfig,
};
use greenlight_core::MemorySecretStore;
use greenlight_sim::blynk::{
    make_firmware, BlynkConfig, BlynkSim, BlynkTiming, DeviceBehaviour, UserSpec, DEFAULT_BUILD,
};
use greenlight_tests::{blynk_caught_up, eventually};

const WAIT: Duration = Duration::from_secs(45);
const NEW_BUILD: &str = "Sep 21 2017 11:02:33";

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One simulator at a time: the machine has two cores.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

async fn sim_with(cfg: BlynkConfig) -> BlynkSim {
    BlynkSim::start(BlynkConfig {
        timing: BlynkTiming::fast(),
        ..cfg
    })
    .await
    .expect("simulator starts")
}

async fn sim(devices: Vec<DeviceBehaviour>) -> BlynkSim {
    sim_with(BlynkConfig {
        devices,
        ..BlynkConfig::default()
    })
    .await
}

fn data_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "greenlight-blynk-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn account(sim: &BlynkSim) -> BlynkAccount {
    let mut a = BlynkAccount::new("home", &sim.ready.admin, &sim.ready.admin_user);
    a.pinned_sha256 = Some(sim.ready.fingerprint.clone());
    a
}

/// A tracker on a fresh directory with the simulator's account added.
async fn tracker(sim: &BlynkSim, name: &str) -> (BlynkHandle, std::path::PathBuf) {
    let dir = data_dir(name);
    let h = BlynkTracker::open(
        &dir,
        Arc::new(MemorySecretStore::default()),
        "tester",
        TrackerConfig {
            poll_interval: Duration::from_millis(200),
            // Polls are asked for explicitly: each check sees a fresh state.
            background: false,
            ..TrackerConfig::default()
        },
    )
    .await
    .expect("tracker");
    h.add_account(account(sim), &sim.ready.admin_password)
        .await
        .expect("account added");
    (h, dir)
}

fn firmware(build: &str, size: usize) -> Firmware {
    Firmware::from_bytes(
        "Template_ESP8266.ino.nodemcu.bin",
        make_firmware(build, size),
    )
    .expect("valid firmware")
}

fn name_of(sim: &BlynkSim, token: &str) -> String {
    sim.server.device(token).expect("registered").name
}

/// See [`greenlight_tests::blynk_bounce`].
async fn bounce(sim: &BlynkSim, token: &str) {
    greenlight_tests::blynk_bounce(sim, token, WAIT).await;
}

/// Polls until `pred` holds for the campaign (bounded by [`WAIT`]).
async fn until(h: &BlynkHandle, id: i64, what: &str, pred: impl Fn(&Campaign) -> bool) -> Campaign {
    let deadline = Instant::now() + WAIT;
    loop {
        h.refresh(Some("home")).await.expect("poll");
        let c = h
            .campaign(id)
            .await
            .expect("read")
            .expect("campaign exists");
        if pred(&c) {
            return c;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}: {c:#?}");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

fn state_of(c: &Campaign, name: &str) -> DeviceState {
    c.devices
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("{name} not in the campaign: {c:#?}"))
        .state
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_target_is_sent_now_and_tracked_to_updated() {
    let _g = serial().await;
    let sim = sim(vec![
        DeviceBehaviour::Normal,
        DeviceBehaviour::Normal,
        DeviceBehaviour::Normal,
        DeviceBehaviour::FlashFails,
    ])
    .await;
    let (h, dir) = tracker(&sim, "token").await;
    let t0 = sim.ready.tokens[0].clone();
    let fw = firmware(NEW_BUILD, 64 * 1024);

    let c = h
        .start("home", &fw, StartTarget::Token(t0.clone()), None)
        .await
        .expect("started");
    assert_eq!(c.status, CampaignStatus::Active);
    assert!(c
        .server_path
        .as_deref()
        .is_some_and(|p| p.starts_with("/static/ota/")));
    assert_eq!(c.devices.len(), 1, "only that device: {c:#?}");
    let Target::Token { name, hint, .. } = &c.target else {
        panic!("{:?}", c.target)
    };
    assert_eq!(name, &name_of(&sim, &t0));
    assert!(hint.len() < 10 && !serde_json::to_string(&c).unwrap().contains(&t0));
    assert_eq!(c.devices[0].build_before.as_deref(), Some(DEFAULT_BUILD));

    let c = until(&h, c.id, "the device to be updated", |c| {
        c.status == CampaignStatus::Completed
    })
    .await;
    assert_eq!(c.devices[0].state, DeviceState::Updated);
    assert_eq!(c.devices[0].build_now.as_deref(), Some(NEW_BUILD));
    assert_eq!(sim.device_stats(&t0).unwrap().build, NEW_BUILD);
    // The others have read all the server sent them: none was told.
    blynk_caught_up(&sim, &sim.ready.tokens[1..], WAIT).await;
    for t in &sim.ready.tokens[1..] {
        assert_eq!(sim.device_stats(t).unwrap().ota_urls_received, 0);
    }
    // A device whose flash fails comes back on its old build: a token update
    // is sent once, so that one is over, not updated.
    let t3 = sim.ready.tokens[3].clone();
    let failed = h
        .start("home", &fw, StartTarget::Token(t3.clone()), None)
        .await
        .expect("started");
    assert_eq!(failed.devices[0].state, DeviceState::Installing);
    let failed = until(&h, failed.id, "the token update to end", |c| {
        c.status == CampaignStatus::Ended
    })
    .await;
    assert!(
        matches!(&failed.devices[0].state, DeviceState::NotUpdated { reason } if reason.contains("old build")),
        "{failed:#?}"
    );
    assert_eq!(sim.device_stats(&t3).unwrap().ota_urls_received, 1);
    assert!(h.status(Some("home")).await.unwrap().is_empty());
    // History keeps it, with every state change.
    let hist = h.history(Some("home"), 10).await.unwrap();
    assert_eq!(hist[1].id, c.id);
    let events = h.campaign_events(c.id).await.unwrap();
    assert!(
        events.iter().any(|e| e.state == DeviceState::Updated),
        "{events:?}"
    );

    // An unknown token is refused before anything is uploaded.
    let e = h
        .start("home", &fw, StartTarget::Token("nosuchtoken".into()), None)
        .await
        .unwrap_err();
    assert!(e.is_usage() && e.to_string().contains("no device"), "{e}");
    h.shutdown().await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_target_updates_only_that_users_devices() {
    let _g = serial().await;
    let sim = sim(vec![DeviceBehaviour::Normal; 6]).await;
    let (h, dir) = tracker(&sim, "user").await;
    let fw = firmware(NEW_BUILD, 32 * 1024);

    let e = h
        .start(
            "home",
            &fw,
            StartTarget::User {
                email: "nobody@example.com".into(),
                project: None,
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no user nobody@example.com"), "{e}");
    assert_eq!(sim.server.campaigns(), 0);

    let c = h
        .start(
            "home",
            &fw,
            StartTarget::User {
                email: "bob@example.com".into(),
                project: None,
            },
            None,
        )
        .await
        .expect("started");
    let bobs: Vec<String> = c.devices.iter().map(|d| d.name.clone()).collect();
    assert!(!bobs.is_empty() && c.devices.iter().all(|d| d.owner == "bob@example.com"));
    // Online devices wait: the server decides only when a device logs in.
    assert!(
        c.devices.iter().all(|d| d.state == DeviceState::Waiting),
        "{c:#?}"
    );
    for t in &sim.ready.tokens {
        bounce(&sim, t).await;
    }
    let c = until(&h, c.id, "bob's devices to be updated", |c| {
        c.status == CampaignStatus::Completed
    })
    .await;
    assert!(c.devices.iter().all(|d| d.state == DeviceState::Updated));
    for t in &sim.ready.tokens {
        let s = sim.device_stats(t).unwrap();
        let expected = if bobs.contains(&name_of(&sim, t)) {
            NEW_BUILD
        } else {
            DEFAULT_BUILD
        };
        assert_eq!(s.build, expected, "{}", name_of(&sim, t));
    }
    h.shutdown().await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_project_target_only_that_project() {
    let _g = serial().await;
    let sim = sim(vec![DeviceBehaviour::Normal; 6]).await;
    let (h, dir) = tracker(&sim, "project").await;
    let fw = firmware(NEW_BUILD, 32 * 1024);
    let alice = |p: &str| StartTarget::User {
        email: "alice@example.com".into(),
        project: Some(p.into()),
    };

    let e = h.start("home", &fw, alice("Shed"), None).await.unwrap_err();
    assert!(
        e.to_string().contains("no project called \"Shed\"") && e.to_string().contains("Garden"),
        "{e}"
    );
    assert_eq!(sim.server.campaigns(), 0);

    // Matched case-insensitively, as the server does.
    let c = h
        .start("home", &fw, alice("gARDEN"), None)
        .await
        .expect("started");
    assert!(!c.devices.is_empty());
    assert!(c.devices.iter().all(|d| d.project == "Garden"), "{c:#?}");
    for t in &sim.ready.tokens {
        bounce(&sim, t).await;
    }
    let c = until(&h, c.id, "Garden's devices to be updated", |c| {
        c.status == CampaignStatus::Completed
    })
    .await;
    let garden: Vec<String> = c.devices.iter().map(|d| d.name.clone()).collect();
    for t in &sim.ready.tokens {
        let updated = sim.device_stats(t).unwrap().build == NEW_BUILD;
        assert_eq!(updated, garden.contains(&name_of(&sim, t)));
    }
    h.shutdown().await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_target_offline_device_then_updated_and_resumed_after_restart() {
    let _g = serial().await;
    let sim = sim(vec![DeviceBehaviour::Normal; 4]).await;
    let (h, dir) = tracker(&sim, "all").await;
    let t = sim.ready.tokens.clone();
    // One device is off before the start.
    assert!(sim.set_online(&t[3], false));
    eventually(WAIT, "device offline", || async {
        (!sim.device_stats(&t[3])?.online).then_some(())
    })
    .await;
    let fw = firmware(NEW_BUILD, 128 * 1024);
    let c = h
        .start("home", &fw, StartTarget::All, None)
        .await
        .expect("started");
    assert_eq!(c.devices.len(), 4, "{c:#?}");
    assert_eq!(state_of(&c, &name_of(&sim, &t[3])), DeviceState::Offline);
    for tok in &t[..3] {
        bounce(&sim, tok).await;
    }
    let c = until(&h, c.id, "three updated, one offline: settled", |c| {
        c.is_settled() && c.counts().updated == 3
    })
    .await;
    assert_eq!(c.counts().offline, 1);
    assert!(c.settled_at.is_some());
    assert_eq!(
        c.status,
        CampaignStatus::Active,
        "the offline device may still come"
    );

    // A restart resumes following it from the store.
    h.shutdown().await;
    let h = BlynkTracker::open(
        &dir,
        Arc::new(MemorySecretStore::default()),
        "tester",
        TrackerConfig {
            background: false,
            ..TrackerConfig::default()
        },
    )
    .await
    .unwrap();
    // The keychain of this test lives in memory: give the password again.
    h.add_account(account(&sim), &sim.ready.admin_password)
        .await
        .unwrap();
    assert_eq!(h.status(Some("home")).await.unwrap()[0].id, c.id);
    assert!(sim.set_online(&t[3], true));
    let c = until(&h, c.id, "the late device to be updated", |c| {
        c.status == CampaignStatus::Completed
    })
    .await;
    assert!(c.devices.iter().all(|d| d.state == DeviceState::Updated));
    h.shutdown().await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_every_campaign_and_waiting_devices_get_nothing() {
    let _g = serial().await;
    let sim = sim(vec![DeviceBehaviour::Normal; 2]).await;
    let (h, dir) = tracker(&sim, "stop").await;
    let fw = firmware(NEW_BUILD, 16 * 1024);
    let all = h.start("home", &fw, StartTarget::All, None).await.unwrap();
    // Another build for alice while the all-devices campaign stands: her
    // devices would flip between the two on every login. Refused.
    let other = firmware("Oct  1 2017 09:00:00", 16 * 1024);
    let alice = StartTarget::User {
        email: "alice@example.com".into(),
        project: None,
    };
    let e = h.start("home", &other, alice, None).await.unwrap_err();
    assert!(matches!(e, BlynkError::Conflict(_)), "{e}");
    assert!(e.to_string().contains(&format!("#{}", all.id)), "{e}");
    assert_eq!(sim.server.campaigns(), 1);
    // The same build is no conflict.
    let user = h
        .start(
            "home",
            &fw,
            StartTarget::User {
                email: "alice@example.com".into(),
                project: None,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(sim.server.campaigns(), 2);
    let stopped = h.stop("home").await.expect("stopped");
    assert_eq!(stopped.len(), 2, "the server's stop is global");
    assert_eq!(sim.server.campaigns(), 0);
    for id in [all.id, user.id] {
        let c = h.campaign(id).await.unwrap().unwrap();
        assert_eq!(c.status, CampaignStatus::Stopped);
        assert!(c
            .devices
            .iter()
            .all(|d| matches!(d.state, DeviceState::NotUpdated { .. })));
    }
    // Each login after the stop has had its answer (see `bounce`).
    for t in &sim.ready.tokens {
        bounce(&sim, t).await;
    }
    for s in sim.all_device_stats() {
        assert_eq!((s.ota_urls_received, s.build.as_str()), (0, DEFAULT_BUILD));
    }
    assert!(h.status(Some("home")).await.unwrap().is_empty());
    h.shutdown().await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_and_missing_build_tag_are_clear_errors() {
    let _g = serial().await;
    // The server's limit is lower than the account's default of 512 KiB.
    let sim = sim_with(BlynkConfig {
        devices: vec![DeviceBehaviour::Normal],
        upload_limit: 10_000,
        ..BlynkConfig::default()
    })
    .await;
    let (h, dir) = tracker(&sim, "limits").await;

    // Over the account's limit: refused before anything is sent.
    let big = firmware(NEW_BUILD, 600 * 1024);
    let e = h
        .start("home", &big, StartTarget::All, None)
        .await
        .unwrap_err();
    assert!(
        matches!(e, BlynkError::TooLarge { limit: 524_288, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("nothing was sent"), "{e}");
    assert!(h.history(None, 10).await.unwrap().is_empty());

    // Under ours, over the server's: its 413 becomes a typed error, and the
    // attempt is in history as failed.
    let e = h
        .start("home", &firmware(NEW_BUILD, 12_000), StartTarget::All, None)
        .await
        .unwrap_err();
    assert!(matches!(e, BlynkError::ServerTooLarge { .. }), "{e}");
    assert!(e.to_string().contains("HTTP 413"), "{e}");
    let hist = h.history(None, 10).await.unwrap();
    assert!(
        matches!(&hist[0].status, CampaignStatus::Failed { reason } if reason.contains("413")),
        "{hist:#?}"
    );
    assert_eq!(sim.server.campaigns(), 0);

    // No build tag: refused when the file is read, with what to do.
    let path = dir.join("untagged.bin");
    std::fs::write(&path, vec![0x55u8; 8192]).unwrap();
    let e = Firmware::read(&path).unwrap_err();
    assert!(matches!(e, BlynkError::NoBuildTag { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("untagged.bin has no Blynk build tag")
            && msg.contains("Export compiled binary"),
        "{msg}"
    );
    // A tagged file read from disk shows its build and is what gets uploaded.
    let path = dir.join("ok.bin");
    let bytes = make_firmware(NEW_BUILD, 8_000);
    std::fs::write(&path, &bytes).unwrap();
    let fw = Firmware::read(&path).unwrap();
    assert_eq!((fw.build(), fw.bytes()), (NEW_BUILD, bytes.as_slice()));
    let c = h.start("home", &fw, StartTarget::All, None).await.unwrap();
    let stored = sim
        .server
        .upload(c.server_path.as_deref().unwrap())
        .expect("stored on the server");
    assert_eq!(stored.as_slice(), bytes.as_slice());
    h.shutdown().await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flash_failure_is_detected_as_a_reboot_loop() {
    let _g = serial().await;
    let sim = sim(vec![DeviceBehaviour::FlashFails, DeviceBehaviour::Normal]).await;
    let (h, dir) = tracker(&sim, "loop").await;
    let mut events = h.subscribe();
    let (bad, good) = (sim.ready.tokens[0].clone(), sim.ready.tokens[1].clone());
    let c = h
        .start(
            "home",
            &firmware(NEW_BUILD, 8192),
            StartTarget::All,
            Some(3),
        )
        .await
        .unwrap();
    bounce(&sim, &bad).await;
    bounce(&sim, &good).await;
    let (bad_name, good_name) = (name_of(&sim, &bad), name_of(&sim, &good));
    let c = until(&h, c.id, "a suspected reboot loop", |c| {
        matches!(state_of(c, &bad_name), DeviceState::Looping { .. })
            && state_of(c, &good_name) == DeviceState::Updated
    })
    .await;
    let DeviceState::Looping { reconnects } = state_of(&c, &bad_name) else {
        unreachable!()
    };
    assert!(reconnects >= 3, "{reconnects}");
    assert!(state_of(&c, &bad_name)
        .words()
        .contains("suspected reboot loop"));
    assert!(c.is_settled());
    let s = sim.device_stats(&bad).unwrap();
    assert_eq!(s.build, DEFAULT_BUILD);
    assert!(s.ota_urls_received >= 3 && s.flash_failures >= 2, "{s:?}");

    // The loop was announced, and the campaign's settling too.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut looped, mut settled) = (false, false);
    while Instant::now() < deadline && !(looped && settled) {
        match tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
            Ok(Ok(BlynkEvent::LoopSuspected { device, .. })) => looped |= device.name == bad_name,
            Ok(Ok(BlynkEvent::CampaignSettled { campaign })) => settled |= campaign.id == c.id,
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => {}
        }
    }
    assert!(looped && settled, "looped {looped}, settled {settled}");

    // Stopping ends the loop: the device stays on its old build, online.
    h.stop("home").await.unwrap();
    let at_stop = sim.device_stats(&bad).unwrap();
    let c = h.campaign(c.id).await.unwrap().unwrap();
    assert!(matches!(
        state_of(&c, &bad_name),
        DeviceState::NotUpdated { .. }
    ));
    // While the campaign stood, every login of the device on its old build
    // got the URL and never the info's OK (the server writes the OTA command
    // first, and the device hangs up on it). An acknowledged info is a login
    // the server answered after the stop: the loop is over, and at most one
    // URL (for a login answered before the stop) was still on its way.
    let s = eventually(WAIT, "a login answered without the URL", || async {
        let s = sim.device_stats(&bad)?;
        (s.info_acks > at_stop.info_acks).then_some(s)
    })
    .await;
    assert!(
        s.ota_urls_received <= at_stop.ota_urls_received + 1,
        "{s:?}"
    );
    assert_eq!(s.build, DEFAULT_BUILD, "{s:?}");
    assert!(s.online, "{s:?}");
    h.shutdown().await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_wrong_fingerprint_are_refused() {
    let _g = serial().await;
    let sim = sim_with(BlynkConfig {
        devices: vec![DeviceBehaviour::Normal],
        users: vec![UserSpec::new("alice@example.com", &["Home"])],
        ..BlynkConfig::default()
    })
    .await;
    let dir = data_dir("auth");
    let h = BlynkTracker::open(
        &dir,
        Arc::new(MemorySecretStore::default()),
        "tester",
        TrackerConfig::default(),
    )
    .await
    .unwrap();

    let e = h.add_account(account(&sim), "wrong").await.unwrap_err();
    assert!(e.is_auth(), "{e}");
    assert!(
        e.to_string().contains("wrong admin email or password"),
        "{e}"
    );
    assert!(h.accounts().await.unwrap().is_empty(), "nothing kept");

    let mut pinned = account(&sim);
    pinned.pinned_sha256 = Some("00".repeat(32));
    let e = h
        .add_account(pinned, &sim.ready.admin_password)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("certificate changed"), "{e}");
    assert!(h.accounts().await.unwrap().is_empty());

    // Without a pin the self-signed certificate is not trusted either.
    let mut plain = account(&sim);
    plain.pinned_sha256 = None;
    let e = h
        .add_account(plain, &sim.ready.admin_password)
        .await
        .unwrap_err();
    assert!(matches!(e, BlynkError::Network(_)), "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");

    // The right pin (colon form) and password work.
    let mut ok = account(&sim);
    ok.pinned_sha256 = Some(greenlight_core::tls::pretty(&sim.ready.fingerprint));
    h.add_account(ok, &sim.ready.admin_password).await.unwrap();
    assert_eq!(h.accounts().await.unwrap().len(), 1);
    h.shutdown().await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
