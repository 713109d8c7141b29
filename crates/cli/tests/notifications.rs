//! Notifications with the real binary (issue 13, item 4): "paused" is one
//! setting for every process (a pause set by one is seen by the other, and
//! kept across restarts), and `greenlight watch`, owning the directory,
//! shows desktop notifications through the freedesktop interface while no
//! app is attached — one note for several new updates, none while paused,
//! none while an app is attached (the app shows its own), and again once
//! it has left. The desktop is a tiny `org.freedesktop.Notifications`
//! server on the test keyring's private session bus.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use greenlight_core::control::{self, ClientKind};
use greenlight_core::MemorySecretStore;
use greenlight_sim::rainmaker::{scenario::node_id, JobKind};
use greenlight_tests::{Mosquitto, SecretService};

/// Polls `f` every 200 ms until it returns `Some`, for at most `limit`.
fn within<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// [`within`], or a panic saying what did not come.
fn until<T>(what: &str, limit: Duration, f: impl FnMut() -> Option<T>) -> T {
    within(limit, f).unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

/// Lines a child writes, collected as they come.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn follow(stream: impl Read + Send + 'static) -> Lines {
        let lines = Lines::default();
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                l.0.lock().unwrap().push(line);
            }
        });
        lines
    }

    /// The number of lines so far: `since` for a later wait.
    fn mark(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Waits for a line after `since` that contains every one of `parts`.
    fn wait(&self, since: usize, parts: &[&str], what: &str) {
        let found = within(Duration::from_secs(60), || {
            let all = self.0.lock().unwrap();
            all.iter()
                .skip(since)
                .any(|l| parts.iter().all(|p| l.contains(p)))
                .then_some(())
        });
        assert!(
            found.is_some(),
            "timed out waiting for {what}; the lines:\n{}",
            self.text()
        );
    }

    fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

/// `greenlight watch`, killed on drop.
struct Daemon {
    child: Child,
    out: Lines,
    err: Lines,
}

impl Daemon {
    fn start(keyring: &SecretService, data: &std::path::Path) -> Daemon {
        let mut child = command(keyring, data, &["--json", "watch"])
            .env("GREENLIGHT_LOG", "greenlight=debug")
            .spawn()
            .expect("watch");
        let out = Lines::follow(child.stdout.take().expect("stdout"));
        let err = Lines::follow(child.stderr.take().expect("stderr"));
        let pid = child.id();
        until("status to name the daemon", Duration::from_secs(30), || {
            let o = greenlight(keyring, data, &["--json", "status"], None);
            let v = json_of(&o);
            (v["owner"]["kind"] == "daemon" && v["owner"]["pid"] == pid).then_some(())
        });
        Daemon { child, out, err }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn paused(keyring: &SecretService, data: &std::path::Path) -> bool {
    let o = greenlight(keyring, data, &["--json", "notifications", "status"], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    json_of(&o)["paused"]
        .as_bool()
        .unwrap_or_else(|| panic!("no paused flag: {}", text(&o)))
}

fn ok(keyring: &SecretService, data: &std::path::Path, args: &[&str]) {
    let o = greenlight(keyring, data, args, None);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
}

#[test]
fn a_pause_set_by_one_process_is_seen_by_the_other_and_kept() {
    let keyring = keyring();
    let data = std::env::temp_dir().join(format!("greenlight-pause-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);

    assert!(!paused(&keyring, &data), "not paused at first");
    // Paused by a one-shot command (its own engine, nobody else running).
    ok(&keyring, &data, &["notifications", "pause"]);

    // The daemon's engine reads it; a command asks the daemon.
    let daemon = Daemon::start(&keyring, &data);
    assert!(paused(&keyring, &data), "the daemon sees the pause");

    // Resumed by a command through the daemon: the daemon hears it at once
    // (its notifier and every attached app follow that event).
    let since = daemon.out.mark();
    ok(&keyring, &data, &["notifications", "resume"]);
    daemon.out.wait(
        since,
        &["\"notifications_paused\"", "\"paused\":false"],
        "the daemon's event for the resume",
    );
    assert!(!paused(&keyring, &data));
    ok(&keyring, &data, &["notifications", "pause"]);
    drop(daemon);

    // Kept in the data directory: the next engine is still paused.
    assert!(paused(&keyring, &data), "kept across restarts");
    let o = greenlight(&keyring, &data, &["notifications", "status"], None);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("paused"),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(&data);
}

/// What the fake desktop was asked to show: (summary, body).
type Shown = Arc<Mutex<Vec<(String, String)>>>;

/// A notification server, as a desktop has one.
struct FakeDesktop {
    shown: Shown,
    next: AtomicU32,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl FakeDesktop {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        _app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        _actions: Vec<String>,
        _hints: HashMap<String, zbus::wire::OwnedVariant>,
        _expire_timeout: i32,
    ) -> u32 {
        self.shown.lock().unwrap().push((summary, body));
        self.next.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn get_capabilities(&self) -> Vec<String> {
        vec!["body".into()]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "fake".into(),
            "greenlight-tests".into(),
            "1".into(),
            "1.2".into(),
        )
    }

    fn close_notification(&self, _id: u32) {}
}

/// How many new updates a note announces (0: another kind of note).
fn updates_in(summary: &str) -> usize {
    if summary == "A firmware update is waiting" {
        return 1;
    }
    summary
        .strip_suffix(" firmware updates are waiting")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_shows_batched_notes_while_no_app_is_attached() {
    let keyring = keyring();
    let bus = keyring
        .envs()
        .into_iter()
        .find(|(k, _)| k == "DBUS_SESSION_BUS_ADDRESS")
        .map(|(_, v)| v)
        .expect("the keyring's bus");
    let shown: Shown = Arc::default();
    let _desktop = zbus::connection::Builder::address(bus.as_str())
        .serve_at(
            "/org/freedesktop/Notifications",
            FakeDesktop {
                shown: shown.clone(),
                next: AtomicU32::new(0),
            },
        )
        .name("org.freedesktop.Notifications")
        .build()
        .await
        .expect("the fake desktop is on the bus");
    let mosq = Mosquitto::start();
    let sim = demo_sim(&mosq).await;
    let data = std::env::temp_dir().join(format!("greenlight-notes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    add_account(&keyring, &data, &sim);

    let daemon = Daemon::start(&keyring, &data);
    let report = |d: &Daemon| {
        format!(
            "shown: {:?}\nstderr:\n{}",
            shown.lock().unwrap(),
            d.err.text()
        )
    };
    // What the fleet offered before the daemon listened may be told or not
    // (the account was added, and its offers heard, before): the test's
    // own offers come once it listens.
    daemon.err.wait(
        0,
        &["desktop notifications: shown here while no app is attached"],
        "the daemon's notifier",
    );

    // Three new releases at once: one note.
    let seen = shown.lock().unwrap().len();
    for n in [0, 1, 4] {
        sim.create_job(&[node_id(n)], "8.0.0", "a burst", JobKind::Plain)
            .expect("job");
    }
    ok(&keyring, &data, &["pending", "--check"]);
    let burst = within(Duration::from_secs(60), || {
        let s = shown.lock().unwrap();
        let mentions: usize = s[seen..]
            .iter()
            .filter(|(_, b)| b.contains("8.0.0"))
            .map(|(t, _)| updates_in(t))
            .sum();
        (mentions >= 3).then(|| {
            s[seen..]
                .iter()
                .filter(|(_, b)| b.contains("8.0.0"))
                .cloned()
                .collect::<Vec<_>>()
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "timed out waiting for the notes of three new releases: {}",
            report(&daemon)
        )
    });
    assert_eq!(
        burst.len(),
        1,
        "three new updates at once make one note: {}",
        report(&daemon)
    );
    let seen = shown.lock().unwrap().len();

    // Paused (through the daemon): a new offer is held back, not shown.
    let since = daemon.err.mark();
    ok(&keyring, &data, &["notifications", "pause"]);
    sim.create_job(&[node_id(1)], "9.0.0", "while paused", JobKind::Plain)
        .expect("job");
    ok(&keyring, &data, &["pending", "--check"]);
    daemon.err.wait(
        since,
        &["notifications held back"],
        "the daemon to hold the new offer back",
    );
    let (since, out) = (daemon.err.mark(), daemon.out.mark());
    ok(&keyring, &data, &["notifications", "resume"]);
    daemon
        .out
        .wait(out, &["\"paused\":false"], "the daemon to hear the resume");

    // An app attaches: it shows the notes, the daemon leaves them to it.
    let app = control::connect_as(
        &data,
        Arc::new(MemorySecretStore::default()),
        ClientKind::App,
    )
    .await
    .expect("the control socket")
    .expect("the daemon serves");
    daemon
        .err
        .wait(since, &["an app is attached"], "the daemon to see the app");
    let since = daemon.err.mark();
    sim.create_job(
        &[node_id(0)],
        "9.1.0",
        "while the app is there",
        JobKind::Plain,
    )
    .expect("job");
    ok(&keyring, &data, &["pending", "--check"]);
    daemon.err.wait(
        since,
        &["notification left to the attached app"],
        "the daemon to leave the note to the app",
    );

    // The app leaves: the daemon shows the next one, and only that.
    let since = daemon.err.mark();
    app.shutdown().await;
    drop(app);
    daemon.err.wait(
        since,
        &["no app is attached"],
        "the daemon to see the app go",
    );
    sim.create_job(&[node_id(4)], "9.2.0", "after the app", JobKind::Plain)
        .expect("job");
    ok(&keyring, &data, &["pending", "--check"]);
    let later = within(Duration::from_secs(60), || {
        let s = shown.lock().unwrap();
        s.iter()
            .skip(seen)
            .any(|(_, b)| b.contains("9.2.0"))
            .then(|| s[seen..].to_vec())
    })
    .unwrap_or_else(|| {
        panic!(
            "timed out waiting for the note of the offer made after the app left: {}",
            report(&daemon)
        )
    });
    assert!(
        later
            .iter()
            .all(|(_, b)| !b.contains("9.0.0") && !b.contains("9.1.0")),
        "nothing shown while paused or while the app was attached: {}",
        report(&daemon)
    );
    drop(daemon);
    let _ = std::fs::remove_dir_all(&data);
    sim.shutdown().await;
}
