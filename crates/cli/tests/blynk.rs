//! `greenlight blynk ...` run as the real binary against the Blynk
//! simulator (HTTPS admin API with a self-signed certificate, simulated
//! devices) and a real Secret Service on a private D-Bus, as an admin's
//! script would: add the server, start for one token, a user, a user's
//! project and every device, follow to "updated", see a reboot loop and
//! stop it, and the exit codes of every refusal. Every child process and
//! every wait is bounded in time.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use greenlight_sim::blynk::{
    make_firmware, BlynkConfig, BlynkSim, BlynkTiming, DeviceBehaviour, UserSpec,
};
use greenlight_tests::{blynk_caught_up, eventually, SecretService};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

const WAIT: Duration = Duration::from_secs(45);
const NEW_BUILD: &str = "Sep 21 2017 11:02:33";
/// Day space-padded, as `__DATE__` writes it: compared as a plain string.
const NEWER_BUILD: &str = "Oct  1 2017 09:00:00";

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Env {
    keyring: SecretService,
    dir: PathBuf,
}

impl Env {
    fn new(name: &str) -> Env {
        let Some(keyring) = SecretService::start() else {
            panic!("no Secret Service could be started (dbus-daemon, gnome-keyring): run scripts/deps.sh");
        };
        let dir = std::env::temp_dir().join(format!(
            "greenlight-cli-blynk-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Env { keyring, dir }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A firmware file with this build tag.
    fn firmware(&self, name: &str, build: &str, size: usize) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, make_firmware(build, size)).unwrap();
        p.to_string_lossy().into_owned()
    }

    /// Runs `greenlight` (killed if it runs past 90 s).
    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_greenlight"));
        c.arg("--data-dir")
            .arg(self.data())
            .args(args)
            .envs(self.keyring.envs())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = c.spawn().expect("spawn greenlight");
        if let Some(mut i) = child.stdin.take() {
            if let Some(s) = stdin {
                i.write_all(s.as_bytes()).await.unwrap();
            }
        }
        tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("greenlight {args:?} did not finish within 90 s"))
            .expect("greenlight ran")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

async fn sim_with(cfg: BlynkConfig) -> BlynkSim {
    BlynkSim::start(BlynkConfig {
        timing: BlynkTiming::fast(),
        ..cfg
    })
    .await
    .expect("simulator starts")
}

async fn add(env: &Env, sim: &BlynkSim, name: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "blynk",
        "account",
        "add",
        "--name",
        name,
        "--url",
        &sim.ready.admin,
        "--user",
        &sim.ready.admin_user,
        "--password-stdin",
        "--trust-fingerprint",
        &sim.ready.fingerprint,
    ];
    args.extend_from_slice(extra);
    env.run(&args, Some(&format!("{}\n", sim.ready.admin_password)))
        .await
}

/// Takes a simulated device off the network and back: a fresh login
/// ([`greenlight_tests::blynk_bounce`]).
async fn bounce(sim: &BlynkSim, token: &str) {
    greenlight_tests::blynk_bounce(sim, token, WAIT).await;
}

fn name_of(sim: &BlynkSim, token: &str) -> String {
    sim.server.device(token).expect("registered").name
}

/// `status --follow --json` until settled; returns the final document.
async fn follow(env: &Env) -> (Output, Value) {
    let o = env
        .run(
            &[
                "--json",
                "blynk",
                "status",
                "--account",
                "home",
                "--follow",
                "--interval",
                "0.2",
            ],
            None,
        )
        .await;
    let v = json_of(&o);
    (o, v)
}

fn states(v: &Value) -> Vec<(String, String)> {
    v["campaigns"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["devices"].as_array().cloned().unwrap_or_default())
        .map(|d| {
            (
                d["name"].as_str().unwrap_or_default().to_string(),
                d["state"]["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_checks_and_every_target_followed_to_updated() {
    let _g = SERIAL.lock().await;
    let env = Env::new("targets");
    // alice: Home, Garden; bob: Office. Devices round-robin over them.
    let sim = sim_with(BlynkConfig {
        devices: vec![DeviceBehaviour::Normal; 5],
        ..BlynkConfig::default()
    })
    .await;
    let t = sim.ready.tokens.clone();
    let pw = format!("{}\n", sim.ready.admin_password);
    let base = |extra: &[&'static str]| {
        let mut v: Vec<String> = [
            "blynk",
            "account",
            "add",
            "--name",
            "home",
            "--url",
            &sim.ready.admin,
            "--user",
            &sim.ready.admin_user,
            "--password-stdin",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };

    // Self-signed and no fingerprint, no terminal: refused, fingerprint shown.
    let args = base(&[]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = env.run(&a, Some(&pw)).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--trust-fingerprint") && err.contains(&sim.ready.fingerprint),
        "{err}"
    );
    // A wrong fingerprint: refused.
    let zeros = "00".repeat(32);
    let mut args = base(&[]);
    args.extend(["--trust-fingerprint".to_string(), zeros]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = env.run(&a, Some(&pw)).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not the"),
        "{}",
        text(&o)
    );
    // The right fingerprint, a wrong password: exit 3, nothing kept.
    let o = env
        .run(
            &[
                "blynk",
                "account",
                "add",
                "--name",
                "home",
                "--url",
                &sim.ready.admin,
                "--user",
                &sim.ready.admin_user,
                "--password-stdin",
                "--trust-fingerprint",
                &sim.ready.fingerprint,
            ],
            Some("wrong\n"),
        )
        .await;
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("could not log in") && err.contains("wrong admin email or password"),
        "{err}"
    );
    let o = env.run(&["--json", "blynk", "account", "list"], None).await;
    assert_eq!(json_of(&o)["accounts"].as_array().map(Vec::len), Some(0));
    // Right pin and password.
    let o = add(&env, &sim, "home", &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        !std::fs::read_dir(env.data()).unwrap().any(|f| {
            std::fs::read(f.unwrap().path())
                .map(|b| String::from_utf8_lossy(&b).contains(&sim.ready.admin_password))
                .unwrap_or(false)
        }),
        "the password is in no file of the data directory"
    );

    // Refusals before anything is sent.
    let fw = env.firmware("fw.bin", NEW_BUILD, 64 * 1024);
    let untagged = env.dir.join("untagged.bin");
    std::fs::write(&untagged, vec![0x55u8; 4096]).unwrap();
    let untagged = untagged.to_string_lossy().into_owned();
    let start = |fw: &str, target: &[&str]| {
        let mut v = vec!["blynk", "start", "--account", "home", "--firmware"];
        v.push(fw);
        v.extend_from_slice(target);
        v.iter().map(|s| s.to_string()).collect::<Vec<String>>()
    };
    for (args, code, says) in [
        (start(&untagged, &["--all"]), 1, "no Blynk build tag"),
        (start("/nonexistent/fw.bin", &["--all"]), 2, "fw.bin"),
        (
            start(&fw, &["--all", "--user", "bob@example.com"]),
            2,
            "cannot be used with",
        ),
        (start(&fw, &["--project", "Home", "--all"]), 2, "--user"),
        (start(&fw, &[]), 2, "required"),
        (start(&fw, &["--token", "nosuchtoken"]), 2, "no device"),
    ] {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = env.run(&a, None).await;
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(says),
            "{args:?}: {}",
            text(&o)
        );
    }
    assert_eq!(sim.server.campaigns(), 0);
    // And no device was sent anything: each has read all the server wrote.
    blynk_caught_up(&sim, &sim.ready.tokens, WAIT).await;
    assert!(sim
        .all_device_stats()
        .iter()
        .all(|s| s.ota_urls_received == 0));

    // One token: sent now, followed to "updated".
    let o = env
        .run(
            &[
                "--json",
                "blynk",
                "start",
                "--account",
                "home",
                "--firmware",
                &fw,
                "--token",
                &t[0],
            ],
            None,
        )
        .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let c = json_of(&o)["campaign"].clone();
    assert_eq!(c["target"]["kind"], "token", "{c}");
    assert_eq!(c["build"], NEW_BUILD);
    assert!(
        !o.stdout.windows(t[0].len()).any(|w| w == t[0].as_bytes()),
        "token not printed"
    );
    let (o, v) = follow(&env).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        states(&v),
        vec![(name_of(&sim, &t[0]), "updated".to_string())],
        "{v}"
    );

    // One user: only bob's devices, once they log in again.
    let o = env
        .run(
            &[
                "--json",
                "blynk",
                "start",
                "--account",
                "home",
                "--firmware",
                &fw,
                "--user",
                "bob@example.com",
            ],
            None,
        )
        .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let c = json_of(&o)["campaign"].clone();
    let bobs: Vec<String> = c["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    assert!(!bobs.is_empty());
    assert!(
        c["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["state"]["state"] == "waiting"),
        "{c}"
    );
    for tok in &t {
        if bobs.contains(&name_of(&sim, tok)) {
            bounce(&sim, tok).await;
        }
    }
    let (o, v) = follow(&env).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        states(&v)
            .iter()
            .all(|(n, s)| bobs.contains(n) && s == "updated"),
        "{v}"
    );

    // One user's project, matched case-insensitively; the docs' `&` problem cannot happen.
    let o = env
        .run(
            &[
                "--json",
                "blynk",
                "start",
                "--account",
                "home",
                "--firmware",
                &fw,
                "--user",
                "alice@example.com",
                "--project",
                "gARDEN",
            ],
            None,
        )
        .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let c = json_of(&o)["campaign"].clone();
    assert!(
        c["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["project"] == "Garden"),
        "{c}"
    );
    for tok in &t {
        bounce(&sim, tok).await;
    }
    let (o, v) = follow(&env).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(states(&v).iter().all(|(_, s)| s == "updated"), "{v}");
    for tok in &t {
        let garden = sim.server.device(tok).is_some_and(|_| {
            c["devices"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["name"] == name_of(&sim, tok).as_str())
        });
        let expect_new = garden || tok == &t[0] || bobs.contains(&name_of(&sim, tok));
        assert_eq!(
            sim.device_stats(tok).unwrap().build == NEW_BUILD,
            expect_new,
            "{}",
            name_of(&sim, tok)
        );
    }

    // Every device, a newer build: refused while bob's and alice's campaigns
    // still stand on the server (devices would flip between the builds).
    let fw2 = env.firmware("fw2.bin", NEWER_BUILD, 100 * 1024);
    let o = env
        .run(
            &[
                "blynk",
                "start",
                "--account",
                "home",
                "--firmware",
                &fw2,
                "--all",
            ],
            None,
        )
        .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("still stands on the server") && err.contains("flip"),
        "{err}"
    );
    assert_eq!(sim.server.campaigns(), 2);
    let o = env
        .run(&["--json", "blynk", "stop", "--account", "home"], None)
        .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        json_of(&o)["stopped"].as_array().map(Vec::len),
        Some(2),
        "{}",
        text(&o)
    );
    assert_eq!(sim.server.campaigns(), 0);
    // Human output this time.
    let o = env
        .run(
            &[
                "blynk",
                "start",
                "--account",
                "home",
                "--firmware",
                &fw2,
                "--all",
            ],
            None,
        )
        .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("every device") && out.contains("waiting for reconnect"),
        "{out}"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("build \"{NEWER_BUILD}\"")),
        "the build is shown before the upload: {}",
        text(&o)
    );
    for tok in &t {
        bounce(&sim, tok).await;
    }
    let (o, v) = follow(&env).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(states(&v).len(), 5, "{v}");
    assert!(states(&v).iter().all(|(_, s)| s == "updated"), "{v}");
    assert!(sim
        .all_device_stats()
        .iter()
        .all(|s| s.build == NEWER_BUILD));

    // History has all four, completed; status says nothing runs.
    let o = env.run(&["--json", "blynk", "history"], None).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let h = json_of(&o)["campaigns"].as_array().cloned().unwrap();
    assert_eq!(h.len(), 4, "{h:?}");
    assert!(
        h.iter().all(|c| c["status"]["status"] == "completed"),
        "{h:?}"
    );
    let o = env.run(&["blynk", "history"], None).await;
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("completed") && out.contains(NEWER_BUILD),
        "{out}"
    );
    let o = env.run(&["blynk", "status"], None).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("No campaign running"),
        "{}",
        text(&o)
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_loop_is_reported_with_advice_and_stop_ends_it() {
    let _g = SERIAL.lock().await;
    let env = Env::new("loop");
    let sim = sim_with(BlynkConfig {
        devices: vec![DeviceBehaviour::FlashFails, DeviceBehaviour::Normal],
        users: vec![UserSpec::new("alice@example.com", &["Home"])],
        ..BlynkConfig::default()
    })
    .await;
    let (bad, good) = (sim.ready.tokens[0].clone(), sim.ready.tokens[1].clone());
    let o = add(&env, &sim, "home", &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let fw = env.firmware("fw.bin", NEW_BUILD, 8192);
    let o = env
        .run(
            &[
                "blynk",
                "start",
                "--account",
                "home",
                "--firmware",
                &fw,
                "--all",
                "--loop-after",
                "3",
            ],
            None,
        )
        .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    bounce(&sim, &bad).await;
    bounce(&sim, &good).await;

    // Followed until settled: one updated, one looping; not all updated → exit 1.
    let o = env
        .run(
            &[
                "blynk",
                "status",
                "--account",
                "home",
                "--follow",
                "--interval",
                "0.2",
            ],
            None,
        )
        .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("suspected reboot loop"), "{out}");
    assert!(
        out.contains("greenlight blynk stop --account home"),
        "{out}"
    );
    assert!(
        out.contains(&name_of(&sim, &bad)) && out.contains("updated"),
        "{out}"
    );
    assert!(sim.device_stats(&bad).unwrap().ota_urls_received >= 3);

    // Stop: global, ends the loop at the next login.
    let acks = sim.device_stats(&bad).unwrap().info_acks;
    let o = env.run(&["blynk", "stop", "--account", "home"], None).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("global"),
        "{}",
        text(&o)
    );
    assert_eq!(sim.server.campaigns(), 0);
    let n = sim.device_stats(&bad).unwrap().ota_urls_received;
    // While the campaign stood, every login of the looping device was
    // answered with the URL before the acknowledgement of its info (so no
    // acknowledgement was counted); a counted one means a login after the
    // stop was answered without the URL: the loop is over, and the device
    // stays online. (`acks` is read before the stop: that login may come
    // before the stop command has even exited.)
    eventually(
        WAIT,
        "the looping device to log in after the stop",
        || async { (sim.device_stats(&bad)?.info_acks > acks).then_some(()) },
    )
    .await;
    assert!(sim.device_stats(&bad).unwrap().ota_urls_received <= n + 1);
    let o = env
        .run(&["--json", "blynk", "status", "--account", "home"], None)
        .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json_of(&o);
    assert_eq!(v["running"], false, "{v}");
    assert_eq!(v["campaigns"][0]["status"]["status"], "stopped", "{v}");
    let o = env.run(&["blynk", "stop", "--account", "nope"], None).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_limits_checked_before_and_413_from_the_server() {
    let _g = SERIAL.lock().await;
    let env = Env::new("limits");
    let sim = sim_with(BlynkConfig {
        devices: vec![DeviceBehaviour::Normal],
        upload_limit: 10_000,
        ..BlynkConfig::default()
    })
    .await;
    // The account says 512 KiB (the default); the server takes 10 000 bytes.
    let o = add(&env, &sim, "home", &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let fw = env.firmware("big.bin", NEW_BUILD, 12_000);
    let o = env
        .run(
            &[
                "blynk",
                "start",
                "--account",
                "home",
                "--firmware",
                &fw,
                "--all",
            ],
            None,
        )
        .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("HTTP 413") && err.contains("too large"),
        "{err}"
    );
    // The attempt is in history, failed.
    let o = env.run(&["--json", "blynk", "history"], None).await;
    assert_eq!(json_of(&o)["campaigns"][0]["status"]["status"], "failed");

    // An account that knows the real limit refuses before sending anything.
    let o = add(&env, &sim, "exact", &["--upload-limit", "10000"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = env
        .run(
            &[
                "blynk",
                "start",
                "--account",
                "exact",
                "--firmware",
                &fw,
                "--all",
            ],
            None,
        )
        .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("over the server's limit of 10000 bytes") && err.contains("nothing was sent"),
        "{err}"
    );
    assert_eq!(sim.server.campaigns(), 0);
    let _ = Path::new(&fw);
    sim.shutdown().await;
}

/// `blynk start --staged` followed to the end by the CLI itself (no daemon):
/// a failing canary stops it with exit 1 before any campaign, `blynk
/// rollout status` and `cancel` end it; a good canary is extended to the
/// user once, the rest update at their next login, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_start_stops_at_a_bad_canary_and_finishes_after_a_good_one() {
    let _g = SERIAL.lock().await;
    let env = Env::new("staged");
    // alice: Device 1 (Home), Device 2 (Garden), Device 4 (Home); bob:
    // Device 3, whose flash fails.
    let sim = sim_with(BlynkConfig {
        devices: vec![
            DeviceBehaviour::Normal,
            DeviceBehaviour::Normal,
            DeviceBehaviour::FlashFails,
            DeviceBehaviour::Normal,
        ],
        ..BlynkConfig::default()
    })
    .await;
    let t = sim.ready.tokens.clone();
    let o = add(&env, &sim, "home", &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let fw = env.firmware("fw.bin", NEW_BUILD, 64 * 1024);
    let staged = |canary: &str| -> Vec<String> {
        [
            "--json",
            "blynk",
            "start",
            "--account",
            "home",
            "--firmware",
            &fw,
            "--staged",
            "--canary",
            canary,
            "--user",
            "alice@example.com",
            "--settle",
            "1s",
            "--interval",
            "0.2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let calls = || {
        let c = sim.server.ota_calls();
        (
            c.iter()
                .filter(|c| c.kind.is_start() && !c.kind.is_campaign())
                .count(),
            c.iter().filter(|c| c.kind.is_campaign()).count(),
        )
    };

    // Usage errors first: nothing sent.
    for (extra, says) in [
        (vec!["--staged", "--all"], "--canary"),
        (vec!["--canary", t[1].as_str(), "--all"], "--staged"),
        (
            vec![
                "--staged",
                "--canary",
                t[1].as_str(),
                "--token",
                t[2].as_str(),
            ],
            "not to --token",
        ),
        (
            vec![
                "--staged",
                "--canary",
                t[1].as_str(),
                "--all",
                "--settle",
                "soon",
            ],
            "--settle",
        ),
    ] {
        let mut a = vec!["blynk", "start", "--account", "home", "--firmware", &fw];
        a.extend(extra.iter().copied());
        let o = env.run(&a, None).await;
        assert_eq!(o.status.code(), Some(2), "{a:?}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(says),
            "{a:?}: {}",
            text(&o)
        );
    }
    assert_eq!(calls(), (0, 0));

    // A canary whose flash fails: stopped, exit 1, nothing more sent.
    let args = staged(&t[2]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = env.run(&a, None).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v = json_of(&o);
    assert_eq!(v["rollout"]["stage"]["stage"], "stopped", "{v}");
    let reason = v["rollout"]["stage"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("Device 3") && reason.contains("reboot loop"),
        "{v}"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("rollout resume"),
        "{}",
        text(&o)
    );
    assert_eq!(calls(), (1, 0), "{:?}", sim.server.ota_calls());
    // Another staged start on this server waits for a decision on this one.
    let args = staged(&t[0]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = env.run(&a, None).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("resume or cancel it first"),
        "{}",
        text(&o)
    );
    let o = env
        .run(&["--json", "blynk", "rollout", "status"], None)
        .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(json_of(&o)["rollouts"][0]["stage"]["stage"], "stopped");
    let o = env
        .run(&["blynk", "rollout", "cancel", "--account", "home"], None)
        .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("cancelled by"),
        "{}",
        text(&o)
    );
    assert_eq!(calls(), (1, 0));

    // A good canary: the CLI extends to alice once; her other devices
    // update when they log in again, and it ends done.
    let args = staged(&t[0]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (o, ()) = tokio::join!(env.run(&a, None), async {
        eventually(WAIT, "the campaign start on the server", || async {
            (calls().1 == 1).then_some(())
        })
        .await;
        bounce(&sim, &t[1]).await;
        bounce(&sim, &t[3]).await;
    });
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json_of(&o);
    assert_eq!(v["rollout"]["stage"]["stage"], "done", "{v}");
    assert_eq!(v["campaign"]["target"]["email"], "alice@example.com", "{v}");
    assert_eq!(calls(), (2, 1), "{:?}", sim.server.ota_calls());
    for i in [0, 1, 3] {
        assert_eq!(sim.device_stats(&t[i]).unwrap().build, NEW_BUILD, "{i}");
    }
    let o = env.run(&["blynk", "rollout", "status"], None).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("done") && out.contains("cancelled"), "{out}");
    sim.shutdown().await;
}
