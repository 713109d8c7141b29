//! `greenlight service` (issue 13) with the real binary. systemd's user
//! manager cannot run here, so that is the boundary faked: `systemctl` is a
//! script named by GREENLIGHT_SYSTEMCTL that writes down its arguments, and
//! XDG_CONFIG_HOME points into a temporary directory. What is checked: the
//! unit file (this binary, `watch`, the data directory, quoted as systemd
//! reads it, and `systemd-analyze --user verify` accepts it when that is
//! installed), the exact systemctl calls in order, re-installing over a
//! changed unit, uninstalling, `status --json`, and a systemctl that fails.

#![cfg(target_os = "linux")]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::{json_of, text};

/// A home of its own (config, data, runtime directories) and a fake
/// systemctl writing its calls to `calls.log`.
struct Home {
    root: PathBuf,
    systemctl: PathBuf,
}

impl Home {
    /// `fail`: every systemctl call fails as it does without a user bus.
    fn new(name: &str, fail: bool) -> Home {
        let root =
            std::env::temp_dir().join(format!("greenlight-service-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let log = root.join("calls.log");
        let end = if fail {
            "echo 'Failed to connect to bus: No medium found' >&2\nexit 1"
        } else {
            "case \"$*\" in\n\
             \"--user is-enabled greenlight.service\") echo enabled ;;\n\
             \"--user is-active greenlight.service\") echo active ;;\n\
             esac\nexit 0"
        };
        let systemctl = root.join("systemctl");
        std::fs::write(
            &systemctl,
            format!("#!/bin/sh\necho \"$*\" >> '{}'\n{end}\n", log.display()),
        )
        .unwrap();
        std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
        Home { root, systemctl }
    }

    fn config(&self) -> PathBuf {
        self.root.join("config")
    }

    fn unit(&self) -> PathBuf {
        self.config().join("systemd/user/greenlight.service")
    }

    /// The platform's default data directory in this home.
    fn default_data(&self) -> PathBuf {
        self.root.join("share/greenlight")
    }

    /// The binary in this home, not yet started.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_greenlight"));
        c.args(args)
            .env("HOME", self.root.join("home"))
            .env("XDG_CONFIG_HOME", self.config())
            .env("XDG_DATA_HOME", self.root.join("share"))
            .env("GREENLIGHT_SYSTEMCTL", &self.systemctl)
            .env("USER", "greenlight-test")
            .env_remove("GREENLIGHT_DATA_DIR")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null());
        c
    }

    /// Runs the binary in this home.
    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run greenlight")
    }

    /// The systemctl calls so far (arguments, one call a line), and forgets
    /// them.
    fn calls(&self) -> Vec<String> {
        let log = self.root.join("calls.log");
        let calls = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        let _ = std::fs::remove_file(&log);
        calls
    }

    fn unit_text(&self) -> String {
        std::fs::read_to_string(self.unit()).expect("the unit file")
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The binary as the running process sees itself (symlinks resolved).
fn binary() -> String {
    std::fs::canonicalize(env!("CARGO_BIN_EXE_greenlight"))
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `systemd-analyze --user verify`, where it is installed: it needs no
/// running manager, only a runtime directory of its own.
fn verify(home: &Home) {
    let Ok(v) = Command::new("systemd-analyze").arg("--version").output() else {
        greenlight_tests::missing_prerequisite(
            "service unit verification",
            "systemd-analyze (package systemd) is not installed, so the unit is not verified",
        );
        return;
    };
    assert!(v.status.success());
    let runtime = home.root.join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let o = Command::new("systemd-analyze")
        .args(["--user", "verify"])
        .arg(home.unit())
        .env("XDG_CONFIG_HOME", home.config())
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    // It warns (exit 0) about what it ignores, e.g. a bad quote or
    // specifier: any word about our unit is a failure.
    assert!(
        o.status.success() && !err.contains("greenlight"),
        "systemd-analyze --user verify: {}\n{}",
        o.status,
        err
    );
}

#[test]
fn install_reinstall_status_uninstall() {
    let home = Home::new("cycle", false);
    // Blanks and a % in the path: quoted and escaped as systemd reads them.
    let data = home.root.join("data dir 100%");
    let data_arg = data.to_str().unwrap();

    let out = ok(&home.run(&["service", "install", "--data-dir", data_arg]));
    let unit = home.unit_text();
    let exec = format!(
        "ExecStart={} watch --data-dir \"{}\"",
        binary(),
        data_arg.replace('%', "%%")
    );
    let lines: Vec<&str> = unit.lines().collect();
    for want in [
        exec.as_str(),
        "[Service]",
        "Restart=on-failure",
        "RestartSec=10",
        "[Install]",
        "WantedBy=default.target",
    ] {
        assert!(lines.contains(&want), "no line {want:?} in:\n{unit}");
    }
    assert!(
        lines.iter().any(|l| l.starts_with("Description=")),
        "{unit}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("Environment")),
        "nothing from the environment (no secrets) goes into the unit:\n{unit}"
    );
    assert_eq!(
        home.calls(),
        [
            "--user daemon-reload",
            "--user enable --now greenlight.service"
        ]
    );
    assert!(out.contains("enabled and started"), "{out}");
    assert!(out.contains("loginctl enable-linger"), "{out}");
    verify(&home);

    // The same again: nothing to replace, still enabled and started.
    let out = ok(&home.run(&["service", "install", "--data-dir", data_arg]));
    assert!(out.contains("unchanged"), "{out}");
    assert_eq!(home.unit_text(), unit);
    assert_eq!(
        home.calls(),
        [
            "--user daemon-reload",
            "--user enable --now greenlight.service"
        ]
    );

    // The binary moved (an upgrade): the unit is replaced, said, and the
    // running daemon restarted so that it runs the new one.
    std::fs::write(
        home.unit(),
        unit.replace(&binary(), "/opt/greenlight-0.0.9/greenlight"),
    )
    .unwrap();
    let out = ok(&home.run(&["service", "install", "--data-dir", data_arg]));
    assert!(
        out.contains("differs") && out.contains("/opt/greenlight-0.0.9/greenlight"),
        "{out}"
    );
    assert_eq!(home.unit_text(), unit);
    assert_eq!(
        home.calls(),
        [
            "--user daemon-reload",
            "--user enable greenlight.service",
            "--user restart greenlight.service"
        ]
    );

    // status --json
    let o = home.run(&["--json", "service", "status", "--data-dir", data_arg]);
    let s = json_of(&o);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(s["unit_file"], home.unit().to_str().unwrap());
    assert_eq!(s["installed"], true);
    assert_eq!(s["up_to_date"], true);
    assert_eq!(
        s["exec_start"].as_str(),
        exec.strip_prefix("ExecStart="),
        "{s}"
    );
    assert_eq!(s["enabled"], "enabled");
    assert_eq!(s["active"], "active");
    assert!(s["systemctl_error"].is_null(), "{s}");
    assert_eq!(s["data_dir"], data_arg);
    assert!(s["owner"].is_null(), "nobody runs the engine here: {s}");
    assert_eq!(
        home.calls(),
        [
            "--user is-enabled greenlight.service",
            "--user is-active greenlight.service"
        ]
    );
    // Asked about another data directory, the unit is not what install
    // would write.
    let s = json_of(&home.run(&["--json", "service", "status"]));
    assert_eq!(s["up_to_date"], false, "{s}");
    home.calls();
    // And for people.
    let out = ok(&home.run(&["service", "status", "--data-dir", data_arg]));
    assert!(
        out.contains(home.unit().to_str().unwrap())
            && out.contains("Enabled:   enabled")
            && out.contains("Active:    active")
            && out.contains("Nobody runs the engine"),
        "{out}"
    );
    home.calls();

    // Uninstall: stopped and disabled, file gone, systemd told.
    let out = ok(&home.run(&["service", "uninstall"]));
    assert!(!home.unit().exists());
    assert_eq!(
        home.calls(),
        [
            "--user disable --now greenlight.service",
            "--user daemon-reload"
        ]
    );
    assert!(out.contains("removed"), "{out}");

    // Nothing installed: said, exit 0, systemd not bothered.
    let out = ok(&home.run(&["service", "uninstall"]));
    assert!(out.contains("No Greenlight service is installed"), "{out}");
    assert!(home.calls().is_empty());
    let s = json_of(&home.run(&["--json", "service", "status"]));
    assert_eq!(s["installed"], false);
    assert!(
        s["up_to_date"].is_null() && s["exec_start"].is_null(),
        "{s}"
    );
}

#[test]
fn the_default_data_directory_is_not_named_and_no_start_only_enables() {
    let home = Home::new("default", false);
    let exec = format!("ExecStart={} watch", binary());

    let o = home.run(&["--json", "service", "install", "--no-start"]);
    let j = json_of(&o);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(j["action"], "installed");
    assert_eq!(j["started"], false);
    assert!(
        home.unit_text().lines().any(|l| l == exec),
        "{}",
        home.unit_text()
    );
    assert_eq!(
        home.calls(),
        ["--user daemon-reload", "--user enable greenlight.service"]
    );

    // The default directory given explicitly is still the default.
    let default = home.default_data();
    let out = ok(&home.run(&[
        "service",
        "install",
        "--data-dir",
        default.to_str().unwrap(),
    ]));
    assert!(out.contains("unchanged"), "{out}");
    assert!(home.unit_text().lines().any(|l| l == exec));
    // A relative one is made absolute: the service does not run here.
    let o = home
        .command(&["service", "install", "--data-dir", "rel"])
        .current_dir(&home.root)
        .output()
        .unwrap();
    ok(&o);
    let want = format!("{exec} --data-dir {}", home.root.join("rel").display());
    assert!(
        home.unit_text().lines().any(|l| l == want),
        "{want}\n{}",
        home.unit_text()
    );
}

#[test]
fn without_a_user_manager_the_file_stays_and_the_user_is_told_what_to_run() {
    let home = Home::new("nobus", true);
    let data = home.root.join("data");

    let o = home.run(&["service", "install", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    for want in [
        "`systemctl --user daemon-reload` failed",
        "Failed to connect to bus: No medium found",
        "by hand",
        "  systemctl --user daemon-reload\n",
        "  systemctl --user enable --now greenlight.service\n",
        "loginctl enable-linger $USER",
    ] {
        assert!(err.contains(want), "no {want:?} in:\n{err}");
    }
    assert!(home.unit().exists(), "the unit file is kept");
    assert_eq!(
        home.calls(),
        ["--user daemon-reload"],
        "nothing more is tried once systemd cannot be reached"
    );

    // status still answers, saying why systemd could not be asked.
    let o = home.run(&[
        "--json",
        "service",
        "status",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s = json_of(&o);
    assert_eq!(s["installed"], true);
    assert!(s["enabled"].is_null() && s["active"].is_null(), "{s}");
    assert!(
        s["systemctl_error"]
            .as_str()
            .is_some_and(|e| e.contains("No medium found")),
        "{s}"
    );
    home.calls();

    // Uninstall removes the file and the link that would start it, and
    // says what is left to do.
    let wants = home
        .config()
        .join("systemd/user/default.target.wants/greenlight.service");
    std::fs::create_dir_all(wants.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(home.unit(), &wants).unwrap();
    let o = home.run(&["service", "uninstall"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("by hand") && err.contains("systemctl --user stop greenlight.service"),
        "{err}"
    );
    assert!(!home.unit().exists());
    assert!(
        wants.symlink_metadata().is_err(),
        "the wants link is removed"
    );
    assert_eq!(
        home.calls(),
        [
            "--user disable --now greenlight.service",
            "--user daemon-reload"
        ]
    );
}

#[test]
fn a_missing_systemctl_is_named() {
    let home = Home::new("nosystemctl", false);
    let o = home
        .command(&["service", "install"])
        .env("GREENLIGHT_SYSTEMCTL", home.root.join("no-such-systemctl"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no-such-systemctl was not found") && err.contains("by hand"),
        "{err}"
    );
    assert!(home.unit().exists());
}
