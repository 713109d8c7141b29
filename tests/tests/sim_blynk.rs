//! The Blynk simulator driven as a Blynk admin's scripts and real device
//! libraries would drive it: the admin API over HTTPS trusting exactly the
//! simulator's certificate, firmware over plain HTTP, and the hardware
//! protocol over raw TCP. Covers every OTA target (token, user, user+project,
//! all), stop, auth, the 413 and missing-build-tag errors, tracking to
//! "updated" through `/admin/users`, and the flash-failure reboot loop.

use std::time::Duration;

use greenlight_sim::blynk::protocol::{cmd, read_frame, status, Frame, FrameDecoder, OTA_MSG_ID};
use greenlight_sim::blynk::{
    hash_password, make_firmware, BlynkConfig, BlynkSim, BlynkTiming, DeviceBehaviour, DeviceStats,
    OtaCallKind, UserSpec, DEFAULT_BUILD,
};
use greenlight_tests::{blynk_caught_up, eventually};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(45);
const NEW_BUILD: &str = "Sep 21 2017 11:02:33";

async fn start(devices: Vec<DeviceBehaviour>) -> BlynkSim {
    start_with(BlynkConfig {
        devices,
        external_devices: 2,
        ..BlynkConfig::default()
    })
    .await
}

async fn start_with(cfg: BlynkConfig) -> BlynkSim {
    BlynkSim::start(BlynkConfig {
        timing: BlynkTiming::fast(),
        ..cfg
    })
    .await
    .expect("simulator starts")
}

/// An admin's HTTPS client, trusting only the simulator's certificate.
struct Admin {
    http: reqwest::Client,
    base: String,
    user: String,
    pass: String,
}

fn multipart(field: &str, filename: &str, data: &[u8]) -> (String, Vec<u8>) {
    let b = "------------------------greenlight5f2a";
    let mut body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}

impl Admin {
    fn new(sim: &BlynkSim) -> Admin {
        let cert = reqwest::Certificate::from_der(&sim.cert_der).expect("certificate");
        Admin {
            http: reqwest::Client::builder()
                .tls_certs_only([cert])
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            base: sim.ready.admin.clone(),
            user: sim.ready.admin_user.clone(),
            pass: sim.ready.admin_password.clone(),
        }
    }

    /// `POST /admin/ota/start?<query>` with `fw` as the `file` part.
    async fn start(&self, query: &str, fw: &[u8]) -> (u16, String) {
        let (ct, body) = multipart("file", "Template_ESP8266.ino.nodemcu.bin", fw);
        let resp = self
            .http
            .post(format!("{}/admin/ota/start{query}", self.base))
            .basic_auth(&self.user, Some(&self.pass))
            .header("Content-Type", ct)
            .body(body)
            .send()
            .await
            .expect("ota/start");
        let s = resp.status().as_u16();
        (s, resp.text().await.expect("body"))
    }

    async fn stop(&self) -> u16 {
        self.http
            .get(format!("{}/admin/ota/stop", self.base))
            .basic_auth(&self.user, Some(&self.pass))
            .send()
            .await
            .expect("ota/stop")
            .status()
            .as_u16()
    }

    /// Admin UI login; the `session` cookie.
    async fn login(&self) -> String {
        let resp = self
            .http
            .post(format!("{}/admin/login", self.base))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!(
                "email={}&password={}",
                form(&self.user),
                form(&hash_password(&self.pass, &self.user))
            ))
            .send()
            .await
            .expect("login");
        assert_eq!(resp.status().as_u16(), 301);
        let cookie = resp
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .expect("session cookie")
            .to_string();
        let pair = cookie.split(';').next().unwrap_or_default().to_string();
        assert!(pair.starts_with("session="), "{cookie}");
        pair
    }

    async fn get(&self, cookie: &str, path: &str) -> (u16, Option<String>, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("Cookie", cookie)
            .send()
            .await
            .expect("GET");
        let s = resp.status().as_u16();
        let total = resp
            .headers()
            .get("x-total-count")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.text().await.expect("body");
        (
            s,
            total,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The device with `token` as `/admin/users/{email}-Blynk` shows it.
    async fn device(&self, cookie: &str, email: &str, token: &str) -> Value {
        let (s, _, u) = self
            .get(cookie, &format!("/admin/users/{email}-Blynk"))
            .await;
        assert_eq!(s, 200, "{u}");
        u["profile"]["dashBoards"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|d| d["devices"].as_array().cloned().unwrap_or_default())
            .find(|d| d["token"] == token)
            .unwrap_or_else(|| panic!("{token} not under {email}: {u}"))
    }
}

fn form(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Owner email and project of every simulated device, from `/admin/users`.
async fn owners(admin: &Admin, cookie: &str) -> Vec<(String, String, String)> {
    let (s, _, list) = admin.get(cookie, "/admin/users").await;
    assert_eq!(s, 200);
    let mut out = vec![];
    for u in list.as_array().expect("users") {
        for d in u["profile"]["dashBoards"].as_array().into_iter().flatten() {
            for dev in d["devices"].as_array().into_iter().flatten() {
                out.push((
                    dev["token"].as_str().unwrap_or_default().to_string(),
                    u["email"].as_str().unwrap_or_default().to_string(),
                    d["name"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    out
}

/// See [`greenlight_tests::blynk_bounce`].
async fn bounce(sim: &BlynkSim, token: &str) -> DeviceStats {
    greenlight_tests::blynk_bounce(sim, token, WAIT).await
}

async fn wait_build(sim: &BlynkSim, token: &str, build: &str) {
    eventually(WAIT, "device to run the new build", || async {
        let s = sim.device_stats(token)?;
        (s.build == build && s.online).then_some(())
    })
    .await;
}

/// Tracking to "updated": the server itself shows the new build and ONLINE.
async fn wait_server_build(admin: &Admin, cookie: &str, email: &str, token: &str, build: &str) {
    eventually(WAIT, "/admin/users to show the new build", || async {
        let d = admin.device(cookie, email, token).await;
        (d["hardwareInfo"]["build"] == build && d["status"] == "ONLINE").then_some(d)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_target_updates_that_device_now() {
    let sim = start(vec![DeviceBehaviour::Normal; 3]).await;
    let admin = Admin::new(&sim);
    let cookie = admin.login().await;
    let t = &sim.ready.tokens;
    let fw = make_firmware(NEW_BUILD, 64 * 1024);

    let (s, path) = admin.start(&format!("?token={}", t[0]), &fw).await;
    assert_eq!(s, 200, "{path}");
    assert!(
        path.starts_with("/static/ota/FUp_") && path.ends_with("_upload.bin"),
        "{path}"
    );

    wait_build(&sim, &t[0], NEW_BUILD).await;
    let st = sim.device_stats(&t[0]).unwrap();
    assert_eq!((st.ota_urls_received, st.downloads, st.flashes), (1, 1, 1));
    let expected_url = format!("{}{path}", sim.ready.http);
    assert_eq!(st.last_ota_url.as_deref(), Some(expected_url.as_str()));
    let email = owners(&admin, &cookie)
        .await
        .into_iter()
        .find(|o| o.0 == t[0])
        .expect("owner")
        .1;
    wait_server_build(&admin, &cookie, &email, &t[0], NEW_BUILD).await;
    let d = admin.device(&cookie, &email, &t[0]).await;
    assert_eq!(
        d["deviceOtaInfo"]["otaInitiatedBy"],
        sim.ready.admin_user.as_str()
    );
    assert!(d["deviceOtaInfo"]["otaUpdateAt"].as_i64().unwrap_or(0) > 0);
    for other in &t[1..] {
        let s = sim.device_stats(other).unwrap();
        assert_eq!((s.ota_urls_received, s.build.as_str()), (0, DEFAULT_BUILD));
    }
    // A token OTA is not a campaign: reconnecting does not resend it.
    bounce(&sim, &t[0]).await;
    assert_eq!(sim.device_stats(&t[0]).unwrap().ota_urls_received, 1);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_target_errors() {
    // carol's only device is external and never connects.
    let sim = start_with(BlynkConfig {
        users: vec![
            UserSpec::new("alice@example.com", &["Home"]),
            UserSpec::new("carol@example.com", &["Lab"]),
        ],
        devices: vec![DeviceBehaviour::Normal],
        external_devices: 1,
        ..BlynkConfig::default()
    })
    .await;
    let admin = Admin::new(&sim);
    let fw = make_firmware(NEW_BUILD, 4096);
    let t0 = sim.ready.tokens[0].clone();
    let carol_dev = sim.ready.external_tokens[0].clone();

    let (s, b) = admin.start("?token=nosuchtoken", &fw).await;
    assert_eq!((s, b.as_str()), (400, "Invalid token."));
    let (s, b) = admin.start(&format!("?token={carol_dev}"), &fw).await;
    assert_eq!((s, b.as_str()), (400, "Device wasn't connected yet."));
    assert!(sim.set_online(&t0, false));
    eventually(WAIT, "device offline", || async {
        (!sim.device_stats(&t0)?.online).then_some(())
    })
    .await;
    let (s, b) = admin.start(&format!("?token={t0}"), &fw).await;
    assert_eq!((s, b.as_str()), (400, "No device in session."));
    assert_eq!(sim.device_stats(&t0).unwrap().ota_urls_received, 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_target_reaches_every_device_on_reconnect_and_tracks_to_updated() {
    let sim = start(vec![DeviceBehaviour::Normal; 4]).await;
    let admin = Admin::new(&sim);
    let cookie = admin.login().await;
    // A device of our own, online on the old build before the campaign: it
    // reads every frame the server sends it, in order.
    let probe = sim.ready.external_tokens[0].clone();
    let (mut ps, mut pdec) = raw_login(&sim.ready.hardware, &probe).await;
    send(&mut ps, info(DEFAULT_BUILD)).await;
    assert_eq!(
        next(&mut ps, &mut pdec).await,
        Some(Frame::response(2, status::OK))
    );
    let fw = make_firmware(NEW_BUILD, 128 * 1024);
    let (s, path) = admin.start("", &fw).await;
    assert_eq!(s, 200, "{path}");
    assert_eq!(sim.server.campaigns(), 1);

    // Online devices are not told: the server only decides on login. A token
    // OTA to the probe goes down the same per-connection queue as anything
    // the campaign could have sent it, after it: so it is the first frame
    // the probe reads. The simulated devices prove it for themselves: each
    // answers a heartbeat sent after the campaign started.
    let (s, token_path) = admin.start(&format!("?token={probe}"), &fw).await;
    assert_eq!(s, 200, "{token_path}");
    let first = next(&mut ps, &mut pdec).await.expect("the token OTA");
    assert_eq!(
        (first.id(), first.parts()),
        (
            OTA_MSG_ID,
            vec!["ota".to_string(), format!("{}{token_path}", sim.ready.http)]
        ),
        "the campaign reached an online device"
    );
    drop(ps);
    blynk_caught_up(&sim, &sim.ready.tokens, WAIT).await;
    assert!(sim
        .all_device_stats()
        .iter()
        .all(|s| s.ota_urls_received == 0));

    let own = owners(&admin, &cookie).await;
    for t in &sim.ready.tokens {
        bounce(&sim, t).await;
    }
    for t in &sim.ready.tokens {
        wait_build(&sim, t, NEW_BUILD).await;
        let email = &own.iter().find(|o| &o.0 == t).expect("owner").1;
        wait_server_build(&admin, &cookie, email, t, NEW_BUILD).await;
    }
    // Builds now equal: further logins get nothing.
    bounce(&sim, &sim.ready.tokens[0]).await;
    wait_build(&sim, &sim.ready.tokens[0], NEW_BUILD).await;
    for s in sim.all_device_stats() {
        assert_eq!(s.ota_urls_received, 1, "{s:?}");
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_target_only_that_users_devices() {
    let sim = start(vec![DeviceBehaviour::Normal; 6]).await;
    let admin = Admin::new(&sim);
    let cookie = admin.login().await;
    let fw = make_firmware(NEW_BUILD, 32 * 1024);

    let (s, b) = admin.start("?user=nobody@example.com", &fw).await;
    assert_eq!((s, b.as_str()), (400, "Requested user not found."));

    let (s, b) = admin.start("?user=bob@example.com", &fw).await;
    assert_eq!(s, 200, "{b}");
    let own = owners(&admin, &cookie).await;
    let sim_tokens = &sim.ready.tokens;
    for t in sim_tokens {
        bounce(&sim, t).await;
    }
    for (t, email, _) in own.iter().filter(|o| sim_tokens.contains(&o.0)) {
        if email == "bob@example.com" {
            wait_build(&sim, t, NEW_BUILD).await;
            wait_server_build(&admin, &cookie, email, t, NEW_BUILD).await;
        }
    }
    for (t, email, _) in own.iter().filter(|o| sim_tokens.contains(&o.0)) {
        if email != "bob@example.com" {
            let s = sim.device_stats(t).unwrap();
            assert_eq!(
                (s.ota_urls_received, s.build.as_str()),
                (0, DEFAULT_BUILD),
                "{email}"
            );
        }
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_project_target_matches_dashboard_name_case_insensitively() {
    let sim = start(vec![DeviceBehaviour::Normal; 6]).await;
    let admin = Admin::new(&sim);
    let cookie = admin.login().await;
    let fw = make_firmware(NEW_BUILD, 32 * 1024);
    let (s, b) = admin
        .start("?user=alice@example.com&project=gARDEN", &fw)
        .await;
    assert_eq!(s, 200, "{b}");
    let own: Vec<_> = owners(&admin, &cookie)
        .await
        .into_iter()
        .filter(|o| sim.ready.tokens.contains(&o.0))
        .collect();
    assert!(own.iter().any(|o| o.2 == "Garden") && own.iter().any(|o| o.2 == "Home"));
    for (t, ..) in &own {
        bounce(&sim, t).await;
    }
    for (t, email, project) in &own {
        if project == "Garden" {
            wait_build(&sim, t, NEW_BUILD).await;
            wait_server_build(&admin, &cookie, email, t, NEW_BUILD).await;
        }
    }
    for (t, _, project) in &own {
        if project != "Garden" {
            let s = sim.device_stats(t).unwrap();
            assert_eq!(
                (s.ota_urls_received, s.build.as_str()),
                (0, DEFAULT_BUILD),
                "{project}"
            );
        }
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_drops_every_campaign_but_sent_urls_stay_downloadable() {
    let sim = start(vec![DeviceBehaviour::Normal; 2]).await;
    let admin = Admin::new(&sim);
    let fw = make_firmware(NEW_BUILD, 16 * 1024);
    let (s, path) = admin.start("", &fw).await;
    assert_eq!(s, 200);
    let (s, _) = admin.start("?user=alice@example.com", &fw).await;
    assert_eq!(s, 200);
    let (s, _) = admin.start("?user=nobody@example.com&project=X", &fw).await;
    assert_eq!(s, 400);
    assert_eq!(sim.server.campaigns(), 2);
    assert_eq!(admin.stop().await, 200);
    assert_eq!(sim.server.campaigns(), 0);
    // The log of admin calls tests read: each call, its target, its answer.
    let calls: Vec<(OtaCallKind, u16)> = sim
        .server
        .ota_calls()
        .into_iter()
        .map(|c| (c.kind, c.status))
        .collect();
    assert_eq!(
        calls,
        vec![
            (OtaCallKind::All, 200),
            (
                OtaCallKind::User {
                    email: "alice@example.com".into(),
                    project: None
                },
                200
            ),
            (
                OtaCallKind::User {
                    email: "nobody@example.com".into(),
                    project: Some("X".into())
                },
                400
            ),
            (OtaCallKind::Stop, 200),
        ]
    );
    // Each login after the stop has had its answer (see `bounce`).
    for t in &sim.ready.tokens {
        bounce(&sim, t).await;
    }
    for s in sim.all_device_stats() {
        assert_eq!((s.ota_urls_received, s.build.as_str()), (0, DEFAULT_BUILD));
    }
    // Plain HTTP, no auth, still there after stop.
    let got = reqwest::get(format!("{}{path}", sim.ready.http))
        .await
        .expect("download");
    assert_eq!(got.status().as_u16(), 200);
    assert_eq!(got.bytes().await.expect("bytes").as_ref(), fw.as_slice());
    let missing = reqwest::get(format!("{}/static/ota/FUp_1_upload.bin", sim.ready.http))
        .await
        .expect("download");
    assert_eq!(missing.status().as_u16(), 404);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_403_and_404() {
    let sim = start(vec![DeviceBehaviour::Normal]).await;
    let mut admin = Admin::new(&sim);
    let fw = make_firmware(NEW_BUILD, 1024);
    let (ct, body) = multipart("file", "fw.bin", &fw);
    let no_auth = admin
        .http
        .post(format!("{}/admin/ota/start", admin.base))
        .header("Content-Type", ct)
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(no_auth.status().as_u16(), 404);
    let stop = admin
        .http
        .get(format!("{}/admin/ota/stop", admin.base))
        .send()
        .await
        .expect("request");
    assert_eq!(stop.status().as_u16(), 404);

    admin.pass = "wrong".into();
    let (s, b) = admin.start("", &fw).await;
    assert_eq!((s, b.as_str()), (403, "Authentication failed."));
    assert_eq!(admin.stop().await, 403);
    assert!(
        sim.server.ota_calls().is_empty(),
        "only the admin's calls are logged"
    );
    // A registered but non-admin user is refused too.
    admin.user = "alice@example.com".into();
    let (s, _) = admin.start("", &fw).await;
    assert_eq!(s, 403);
    assert_eq!(sim.server.campaigns(), 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_limit_and_missing_build_tag_and_no_file() {
    let sim = start(vec![DeviceBehaviour::Normal]).await;
    let admin = Admin::new(&sim);
    let t0 = sim.ready.tokens[0].clone();

    let big = make_firmware(NEW_BUILD, 600 * 1024);
    let (s, b) = admin.start("", &big).await;
    assert_eq!(s, 413, "{b}");
    assert!(b.contains("524288"), "{b}");
    // Just under the limit (body overhead included) is fine.
    let ok = make_firmware(NEW_BUILD, 500 * 1024);
    let (s, b) = admin.start("?user=bob@example.com", &ok).await;
    assert_eq!(s, 200, "{b}");

    let untagged = vec![0x55u8; 8192];
    for q in [
        "",
        "?user=alice@example.com",
        "?user=alice@example.com&project=Home",
    ] {
        let (s, b) = admin.start(q, &untagged).await;
        assert_eq!(s, 500, "{q}: {b}");
        assert!(b.contains("build tag"), "{b}");
    }
    // The token path does not need a tag.
    let (s, b) = admin.start(&format!("?token={t0}"), &untagged).await;
    assert_eq!(s, 200, "{b}");

    // Not multipart, or multipart without a file part.
    let raw = admin
        .http
        .post(format!("{}/admin/ota/start", admin.base))
        .basic_auth(&admin.user, Some(&admin.pass))
        .header("Content-Type", "application/octet-stream")
        .body(ok.clone())
        .send()
        .await
        .expect("request");
    assert_eq!(raw.status().as_u16(), 500);
    assert_eq!(
        raw.text().await.unwrap(),
        "Can't find binary data in request."
    );
    let b = "XyZ";
    let body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nnot a file\r\n--{b}--\r\n"
    );
    let field_only = admin
        .http
        .post(format!("{}/admin/ota/start", admin.base))
        .basic_auth(&admin.user, Some(&admin.pass))
        .header("Content-Type", format!("multipart/form-data; boundary={b}"))
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(field_only.status().as_u16(), 500);
    assert_eq!(
        field_only.text().await.unwrap(),
        "Can't find binary data in request."
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_configured_upload_limit() {
    let sim = start_with(BlynkConfig {
        devices: vec![DeviceBehaviour::Normal],
        upload_limit: 10_000,
        ..BlynkConfig::default()
    })
    .await;
    let admin = Admin::new(&sim);
    let (s, b) = admin.start("", &make_firmware(NEW_BUILD, 12_000)).await;
    assert_eq!(s, 413, "{b}");
    let (s, b) = admin.start("", &make_firmware(NEW_BUILD, 8_000)).await;
    assert_eq!(s, 200, "{b}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flash_failure_is_a_reboot_loop_on_the_old_build() {
    let sim = start(vec![DeviceBehaviour::FlashFails, DeviceBehaviour::Normal]).await;
    let admin = Admin::new(&sim);
    let cookie = admin.login().await;
    let (bad, good) = (sim.ready.tokens[0].clone(), sim.ready.tokens[1].clone());
    let (s, path) = admin.start("", &make_firmware(NEW_BUILD, 8192)).await;
    assert_eq!(s, 200);
    bounce(&sim, &bad).await;
    bounce(&sim, &good).await;
    // Nobody bounces it again: the failed flash reboots it, it logs in with
    // the old build and the standing campaign sends the URL again.
    let st = eventually(WAIT, "the URL at least three times", || async {
        let s = sim.device_stats(&bad)?;
        (s.ota_urls_received >= 3).then_some(s)
    })
    .await;
    assert_eq!(st.build, DEFAULT_BUILD);
    assert_eq!(st.flashes, 0);
    assert!(st.flash_failures >= 2 && st.downloads >= 2, "{st:?}");
    assert!(st.logins >= 3, "{st:?}");
    assert!(st
        .last_ota_url
        .as_deref()
        .is_some_and(|u| u.ends_with(&path)));
    let email = owners(&admin, &cookie)
        .await
        .into_iter()
        .find(|o| o.0 == bad)
        .expect("owner")
        .1;
    let d = admin.device(&cookie, &email, &bad).await;
    assert_eq!(d["hardwareInfo"]["build"], DEFAULT_BUILD, "{d}");
    wait_build(&sim, &good, NEW_BUILD).await;
    assert_eq!(sim.device_stats(&good).unwrap().ota_urls_received, 1);

    // Stop ends the loop at the next login: the first login after it (its
    // info answered, see `bounce`) gets the info's OK and no URL, and the
    // device stays online on its old build.
    assert_eq!(admin.stop().await, 200);
    let off = bounce(&sim, &bad).await;
    let s = sim.device_stats(&bad).unwrap();
    assert_eq!(s.ota_urls_received, off.ota_urls_received, "{s:?}");
    assert!(s.info_acks > off.info_acks, "{s:?}");
    assert_eq!(s.build, DEFAULT_BUILD);
    assert!(s.online);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_failure_reboots_on_old_build() {
    let sim = start(vec![DeviceBehaviour::DownloadFails]).await;
    let admin = Admin::new(&sim);
    let t = sim.ready.tokens[0].clone();
    let (s, _) = admin
        .start(&format!("?token={t}"), &make_firmware(NEW_BUILD, 8192))
        .await;
    assert_eq!(s, 200);
    let st = eventually(WAIT, "failed download and a new login", || async {
        let s = sim.device_stats(&t)?;
        (s.download_failures == 1 && s.online && s.logins >= 2).then_some(s)
    })
    .await;
    assert_eq!(
        (st.build.as_str(), st.flashes, st.downloads),
        (DEFAULT_BUILD, 0, 0)
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_login_and_users_listing() {
    let sim = start(vec![DeviceBehaviour::Normal; 3]).await;
    let admin = Admin::new(&sim);

    // Wrong hash: still 301, no cookie.
    let resp = admin
        .http
        .post(format!("{}/admin/login", admin.base))
        .body(format!("email={}&password=plain", form(&admin.user)))
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status().as_u16(), 301);
    assert!(resp.headers().get("set-cookie").is_none());
    let (s, ..) = admin.get("session=forged", "/admin/users").await;
    assert_eq!(s, 401);

    let cookie = admin.login().await;
    let (s, total, list) = admin.get(&cookie, "/admin/users").await;
    assert_eq!(s, 200);
    assert_eq!(total.as_deref(), Some("3"), "admin + alice + bob");
    assert_eq!(list.as_array().map(Vec::len), Some(3));
    let (_, total, page) = admin
        .get(
            &cookie,
            "/admin/users?_start=0&_end=1&_sort=email&_order=ASC",
        )
        .await;
    assert_eq!(total.as_deref(), Some("3"));
    assert_eq!(page.as_array().map(Vec::len), Some(1));
    assert_eq!(page[0]["email"], "admin@blynk.cc");
    let (_, _, page) = admin
        .get(
            &cookie,
            "/admin/users?_page=2&_perPage=2&_sortField=email&_sortDir=ASC",
        )
        .await;
    assert_eq!(page.as_array().map(Vec::len), Some(1));
    assert_eq!(page[0]["email"], "bob@example.com");

    let (s, _, alice) = admin
        .get(&cookie, "/admin/users/alice@example.com-Blynk")
        .await;
    assert_eq!(s, 200);
    assert_eq!(alice["appName"], "Blynk");
    let dashes = alice["profile"]["dashBoards"]
        .as_array()
        .expect("dashBoards");
    let names: Vec<_> = dashes
        .iter()
        .map(|d| d["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["Home", "Garden"]);
    let dev = &dashes[0]["devices"][0];
    assert_eq!(dev["status"], "ONLINE");
    assert!(dev["connectTime"].as_i64().unwrap_or(0) > 0);
    let hi = &dev["hardwareInfo"];
    assert_eq!(hi["version"], "0.6.1");
    assert_eq!(hi["boardType"], "ESP8266");
    assert_eq!(hi["build"], DEFAULT_BUILD);
    assert_eq!(hi["heartbeatInterval"], 2);
    assert_eq!(hi["buffIn"], 1024);
    assert!(dev.get("deviceOtaInfo").is_none());
    let (s, ..) = admin
        .get(&cookie, "/admin/users/nobody@example.com-Blynk")
        .await;
    assert_eq!(s, 404);

    // Offline shows up with a disconnect time.
    let t = dev["token"].as_str().unwrap().to_string();
    sim.set_online(&t, false);
    let d = eventually(WAIT, "OFFLINE", || async {
        let d = admin.device(&cookie, "alice@example.com", &t).await;
        (d["status"] == "OFFLINE").then_some(d)
    })
    .await;
    assert!(d["disconnectTime"].as_i64().unwrap_or(0) > 0);
    sim.shutdown().await;
}

// ---- raw hardware protocol, as a real device library speaks it ----

async fn send(s: &mut TcpStream, f: Frame) {
    s.write_all(&f.encode().expect("encode"))
        .await
        .expect("write");
}

async fn next(s: &mut TcpStream, dec: &mut FrameDecoder) -> Option<Frame> {
    tokio::time::timeout(Duration::from_secs(15), read_frame(s, dec))
        .await
        .expect("a frame within 15 s")
        .expect("read")
}

async fn raw_login(addr: &str, token: &str) -> (TcpStream, FrameDecoder) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut dec = FrameDecoder::default();
    send(&mut s, Frame::message(cmd::HW_LOGIN, 1, &[token])).await;
    assert_eq!(
        next(&mut s, &mut dec).await,
        Some(Frame::response(1, status::OK))
    );
    (s, dec)
}

fn info(build: &str) -> Frame {
    Frame::message(
        cmd::INTERNAL,
        2,
        &[
            "ver", "0.6.1", "h-beat", "10", "buff-in", "1024", "dev", "NodeMCU", "build", build,
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bad_token_gets_status_9() {
    let sim = start(vec![]).await;
    let mut s = TcpStream::connect(&sim.ready.hardware)
        .await
        .expect("connect");
    let mut dec = FrameDecoder::default();
    send(
        &mut s,
        Frame::message(cmd::HW_LOGIN, 1, &["0123456789abcdef0123456789abcdef"]),
    )
    .await;
    assert_eq!(
        next(&mut s, &mut dec).await,
        Some(Frame::response(1, status::INVALID_TOKEN))
    );
    // LOGIN (cmd 2) works like HW_LOGIN.
    send(
        &mut s,
        Frame::message(cmd::LOGIN, 1, &[&sim.ready.external_tokens[0]]),
    )
    .await;
    assert_eq!(
        next(&mut s, &mut dec).await,
        Some(Frame::response(1, status::OK))
    );
    send(&mut s, Frame::message(cmd::PING, 5, &[])).await;
    assert_eq!(
        next(&mut s, &mut dec).await,
        Some(Frame::response(5, status::OK))
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_device_on_another_build_gets_ota_7777_on_every_login() {
    let sim = start(vec![]).await;
    let admin = Admin::new(&sim);
    let (s, path) = admin.start("", &make_firmware(NEW_BUILD, 4096)).await;
    assert_eq!(s, 200);
    let want = format!("{}{path}", sim.ready.http);
    let token = sim.ready.external_tokens[0].clone();
    for _ in 0..2 {
        let (mut s, mut dec) = raw_login(&sim.ready.hardware, &token).await;
        send(&mut s, info(DEFAULT_BUILD)).await;
        let ota = next(&mut s, &mut dec).await.expect("OTA frame");
        assert_eq!(ota.cmd(), cmd::INTERNAL);
        assert_eq!(ota.id(), OTA_MSG_ID);
        assert_eq!(ota.parts(), vec!["ota".to_string(), want.clone()]);
        assert!(want.starts_with("http://127.0.0.1:"));
        assert_eq!(
            next(&mut s, &mut dec).await,
            Some(Frame::response(2, status::OK))
        );
        // The device does not answer; it hangs up to download.
        drop(s);
    }
    // The same build as the campaign's: nothing but the OK.
    let (mut s, mut dec) = raw_login(&sim.ready.hardware, &token).await;
    send(&mut s, info(NEW_BUILD)).await;
    assert_eq!(
        next(&mut s, &mut dec).await,
        Some(Frame::response(2, status::OK))
    );
    // Plain string comparison: an *older* date still differs, so it is sent.
    let other = sim.ready.external_tokens[1].clone();
    let (mut s, mut dec) = raw_login(&sim.ready.hardware, &other).await;
    send(&mut s, info("Jan  1 2030 00:00:00")).await;
    assert_eq!(
        next(&mut s, &mut dec).await.map(|f| f.id()),
        Some(OTA_MSG_ID)
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_mcu_info_is_ignored_for_campaigns() {
    let sim = start(vec![]).await;
    let admin = Admin::new(&sim);
    let (s, _) = admin.start("", &make_firmware(NEW_BUILD, 4096)).await;
    assert_eq!(s, 200);
    let token = sim.ready.external_tokens[0].clone();
    let (mut s, mut dec) = raw_login(&sim.ready.hardware, &token).await;
    send(
        &mut s,
        Frame::message(
            cmd::INTERNAL,
            2,
            &[
                "mcu",
                "1.0.0",
                "fw-type",
                "TMPL",
                "build",
                DEFAULT_BUILD,
                "blynk",
                "1.3.2",
                "h-beat",
                "45",
            ],
        ),
    )
    .await;
    send(&mut s, Frame::message(cmd::PING, 3, &[])).await;
    // The first thing back is the PING's reply: no OTA, no reply to the info.
    assert_eq!(
        next(&mut s, &mut dec).await,
        Some(Frame::response(3, status::OK))
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_garbage_oversize_and_idle_close_the_connection() {
    let sim = start(vec![]).await;
    let hw = sim.ready.hardware.clone();

    // Garbage instead of a login.
    let mut s = TcpStream::connect(&hw).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut dec = FrameDecoder::default();
    assert_eq!(next(&mut s, &mut dec).await, None, "closed");

    // An oversized length after login.
    let token = sim.ready.external_tokens[0].clone();
    let (mut s, mut dec) = raw_login(&hw, &token).await;
    s.write_all(&[cmd::HARDWARE, 0, 9, 0xff, 0xff])
        .await
        .expect("write");
    assert_eq!(next(&mut s, &mut dec).await, None, "closed");

    // A frame split over several writes is still one frame.
    let (mut s, mut dec) = raw_login(&hw, &token).await;
    let bytes = Frame::message(cmd::PING, 7, &[]).encode().unwrap();
    for b in bytes {
        s.write_all(&[b]).await.expect("write");
        s.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        next(&mut s, &mut dec).await,
        Some(Frame::response(7, status::OK))
    );

    // Idle past 2.3 heartbeats (h-beat 1 s): dropped, and shown OFFLINE.
    send(
        &mut s,
        Frame::message(
            cmd::INTERNAL,
            2,
            &["ver", "0.6.1", "h-beat", "1", "build", "x"],
        ),
    )
    .await;
    assert_eq!(
        next(&mut s, &mut dec).await,
        Some(Frame::response(2, status::OK))
    );
    let t = std::time::Instant::now();
    assert_eq!(next(&mut s, &mut dec).await, None, "closed for idleness");
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    eventually(WAIT, "device OFFLINE", || async {
        (sim.server.device(&token)?.status == "OFFLINE").then_some(())
    })
    .await;
    sim.shutdown().await;
}
