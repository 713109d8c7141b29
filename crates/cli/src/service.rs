//! `greenlight service`: the daemon (`greenlight watch`) as a systemd user
//! service, so a home server keeps following devices after logout and
//! reboot. The unit lives in `$XDG_CONFIG_HOME/systemd/user/` (by default
//! `~/.config/systemd/user/`), runs this very binary and holds no secret:
//! the daemon reads passwords from the keychain like every command.
//!
//! systemd is driven with `systemctl --user` (or the program named by
//! `GREENLIGHT_SYSTEMCTL`, which the tests point at a fake). When the user
//! manager cannot be reached — a container, ssh without a login session —
//! the unit file is kept and the user is told what to run by hand.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use greenlight_core::control;
use serde_json::json;

use crate::args::{Cli, ServiceCmd, ServiceInstallArgs};
use crate::commands::{data_dir, owner_sentence};
use crate::{output, Failure};

type Res<T = ()> = Result<T, Failure>;

/// The unit's name.
pub const UNIT: &str = "greenlight.service";

/// Names the systemctl program to run instead of `systemctl` on `PATH`.
pub const SYSTEMCTL_ENV: &str = "GREENLIGHT_SYSTEMCTL";

/// Runs one `service` subcommand.
pub fn run(cli: &Cli, cmd: &ServiceCmd) -> Res {
    if !cfg!(target_os = "linux") {
        return Err(Failure::Failed(
            "`greenlight service` manages a systemd user unit, which exists only on Linux; \
             here, run `greenlight watch` from the system's own service manager"
                .into(),
        ));
    }
    match cmd {
        ServiceCmd::Install(a) => install(cli, a),
        ServiceCmd::Uninstall => uninstall(cli),
        ServiceCmd::Status => status(cli),
    }
}

/// Where the unit file goes: systemd's per-user configuration directory.
fn unit_path() -> Res<PathBuf> {
    // On Linux this is $XDG_CONFIG_HOME (when absolute) or ~/.config, the
    // first place systemd's user manager looks for units.
    directories::BaseDirs::new()
        .map(|b| b.config_dir().join("systemd").join("user").join(UNIT))
        .ok_or_else(|| {
            Failure::Failed(
                "no home directory, so no place for a systemd user unit (set HOME or XDG_CONFIG_HOME)"
                    .into(),
            )
        })
}

/// The data directory to name in the unit: `None` for the default one
/// (the daemon finds it itself, as the app does), else the one given, made
/// absolute since the service does not run in this directory.
fn unit_data_dir(cli: &Cli) -> Res<Option<PathBuf>> {
    let Some(given) = &cli.data_dir else {
        return Ok(None);
    };
    let dir = std::path::absolute(given).map_err(|e| {
        Failure::Failed(format!(
            "cannot make the data directory {} absolute: {e}",
            given.display()
        ))
    })?;
    match data_dir(None) {
        Ok(default) if default == dir => Ok(None),
        _ => Ok(Some(dir)),
    }
}

/// The `ExecStart=` value: this binary, `watch`, and the data directory
/// when it is not the default.
fn exec_start(cli: &Cli) -> Res<String> {
    let exe = std::env::current_exe().map_err(|e| {
        Failure::Failed(format!("cannot tell where this greenlight binary is: {e}"))
    })?;
    let exe = utf8(&exe, "this greenlight binary's path")?;
    // Linux names a running binary that was replaced or removed so.
    if exe.ends_with(" (deleted)") {
        return Err(Failure::Failed(format!(
            "this greenlight binary ({exe}) was replaced or removed while it ran; run `service install` with the installed one"
        )));
    }
    let mut words = vec![exec_word(exe), "watch".to_string()];
    if let Some(dir) = unit_data_dir(cli)? {
        words.push("--data-dir".into());
        words.push(exec_word(utf8(&dir, "the data directory")?));
    }
    Ok(words.join(" "))
}

fn utf8<'a>(p: &'a Path, what: &str) -> Res<&'a str> {
    p.to_str().ok_or_else(|| {
        Failure::Failed(format!(
            "{what} ({}) is not valid UTF-8, which a systemd unit cannot name",
            p.display()
        ))
    })
}

/// One word of an `ExecStart=` line, as systemd.service(5) reads it: `%`
/// starts a specifier and `$` a variable, so both are doubled; a word with
/// blanks, quotes or backslashes is double-quoted with C escapes.
fn exec_word(s: &str) -> String {
    let s = s.replace('%', "%%").replace('$', "$$");
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !matches!(c, '"' | '\'' | '\\'));
    if plain {
        return s;
    }
    let mut q = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            c if c.is_control() => q.push_str(&format!("\\x{:02x}", c as u32)),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// The unit file's text.
fn unit_text(exec_start: &str) -> String {
    let repo = env!("CARGO_PKG_REPOSITORY");
    // Documentation= takes URIs only; there is none to give until the
    // package names its repository.
    let docs = if repo.is_empty() {
        String::new()
    } else {
        format!("Documentation={repo}\n")
    };
    format!(
        "# Written by `greenlight service install`; `greenlight service uninstall` removes it.\n\
         # No secrets here: the daemon reads passwords from the keychain.\n\
         [Unit]\n\
         Description=Greenlight daemon: follows IoT devices and their firmware updates (greenlight watch)\n\
         {docs}\n\
         [Service]\n\
         ExecStart={exec_start}\n\
         Restart=on-failure\n\
         RestartSec=10\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n"
    )
}

/// The `ExecStart=` value of a unit file's text.
fn exec_start_of(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("ExecStart="))
        .map(str::trim)
}

/// The text at `path`, `None` when there is no file.
fn read_unit(path: &Path) -> Res<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Failure::Failed(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Writes the unit beside its final place and renames it there, so systemd
/// never reads half a file.
fn write_unit(path: &Path, text: &str) -> Res {
    let fail = |what: &str, p: &Path, e: std::io::Error| {
        Failure::Failed(format!("cannot {what} {}: {e}", p.display()))
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| fail("create", parent, e))?;
    }
    let tmp = path.with_extension("service.tmp");
    std::fs::write(&tmp, text).map_err(|e| fail("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail("write", path, e)
    })
}

/// `systemctl --user`, or the program `GREENLIGHT_SYSTEMCTL` names.
struct Systemctl {
    program: OsString,
}

impl Systemctl {
    fn new() -> Self {
        let program = std::env::var_os(SYSTEMCTL_ENV)
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "systemctl".into());
        Systemctl { program }
    }

    /// Runs `systemctl --user ARGS`: its standard output, or what went
    /// wrong in words.
    fn call(&self, args: &[&str]) -> Result<String, String> {
        let shown = format!("systemctl --user {}", args.join(" "));
        let out = Process::new(&self.program)
            .arg("--user")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    format!(
                        "`{shown}` could not run: {} was not found{}",
                        self.program.to_string_lossy(),
                        if std::env::var_os(SYSTEMCTL_ENV).is_some() {
                            format!(" (named by {SYSTEMCTL_ENV})")
                        } else {
                            " on PATH (is this a systemd system?)".into()
                        }
                    )
                } else {
                    format!("`{shown}` could not run: {e}")
                }
            })?;
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() {
            return Ok(stdout);
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let why = if stderr.is_empty() {
            String::new()
        } else {
            format!(": {stderr}")
        };
        Err(format!("`{shown}` failed ({}){why}", out.status))
    }

    /// `is-enabled` / `is-active`: they answer the state on standard output
    /// and exit non-zero for every state but the good one, so the answer
    /// counts whatever the exit status; no answer is an error.
    fn query(&self, verb: &str) -> Result<String, String> {
        let out = Process::new(&self.program)
            .args(["--user", verb, UNIT])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                format!(
                    "`systemctl --user {verb} {UNIT}` could not run ({}): {e}",
                    self.program.to_string_lossy()
                )
            })?;
        let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !state.is_empty() {
            return Ok(state);
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(format!(
            "`systemctl --user {verb} {UNIT}` failed ({}){}",
            out.status,
            if stderr.is_empty() {
                String::new()
            } else {
                format!(": {stderr}")
            }
        ))
    }
}

/// Whether the user's services run without a login (`loginctl
/// enable-linger`), which logind records as a file named after the user.
fn lingering() -> Option<bool> {
    let user = std::env::var("USER").ok().filter(|u| !u.is_empty())?;
    Some(Path::new("/var/lib/systemd/linger").join(user).exists())
}

const LINGER_HINT: &str = "On a headless server, first let this user's services run without a login (and start at boot): loginctl enable-linger $USER";

/// `service install`.
fn install(cli: &Cli, a: &ServiceInstallArgs) -> Res {
    let path = unit_path()?;
    let exec = exec_start(cli)?;
    let text = unit_text(&exec);
    let before = read_unit(&path)?;
    let action = match &before {
        None => "installed",
        Some(old) if *old == text => "unchanged",
        Some(_) => "replaced",
    };
    if let Some(old) = before.as_deref().filter(|_| action == "replaced") {
        // The usual cause: the binary moved (an upgrade) or another data
        // directory; say what was there before it is gone.
        if !cli.json {
            println!(
                "{} differs from what this greenlight writes (it runs: {}); replacing it.",
                path.display(),
                exec_start_of(old).unwrap_or("no ExecStart= line")
            );
        }
    }
    if action != "unchanged" {
        write_unit(&path, &text)?;
    }

    // A unit that changed while its daemon runs needs a restart to take
    // effect (`enable --now` leaves a running service alone).
    let mut calls: Vec<Vec<&str>> = vec![vec!["daemon-reload"]];
    if a.no_start {
        calls.push(vec!["enable", UNIT]);
    } else if action == "replaced" {
        calls.push(vec!["enable", UNIT]);
        calls.push(vec!["restart", UNIT]);
    } else {
        calls.push(vec!["enable", "--now", UNIT]);
    }
    let systemctl = Systemctl::new();
    let mut failed = None;
    for (i, args) in calls.iter().enumerate() {
        if let Err(e) = systemctl.call(args) {
            failed = Some((i, e));
            break;
        }
    }
    let by_hand: Vec<String> = match &failed {
        Some((i, _)) => calls[*i..]
            .iter()
            .map(|c| format!("systemctl --user {}", c.join(" ")))
            .collect(),
        None => Vec::new(),
    };
    let error = failed.as_ref().map(|(_, e)| e.clone());
    if cli.json {
        output::json(&json!({
            "unit_file": path,
            "action": action,
            "exec_start": exec,
            "started": failed.is_none() && !a.no_start,
            "error": error,
            "run_by_hand": by_hand,
        }))?;
    }
    if let Some(e) = error {
        let mut msg = format!(
            "{} {}, but {e}.\n\
             The unit file is kept. Usually this means systemd's user manager cannot be reached \
             (in a container, or over ssh without a login session, there is none). \
             Run this by hand, in a login session of this user:\n",
            if action == "unchanged" {
                "kept"
            } else {
                "wrote"
            },
            path.display()
        );
        for c in &by_hand {
            msg.push_str(&format!("  {c}\n"));
        }
        msg.push_str(LINGER_HINT);
        return Err(Failure::Failed(msg));
    }
    if !cli.json {
        let what = match action {
            "installed" => "Installed",
            "replaced" => "Replaced",
            _ => "Already installed (unchanged):",
        };
        let state = if a.no_start {
            "enabled; it starts with your next session (`systemctl --user start greenlight` starts it now)"
        } else if action == "replaced" {
            "enabled and (re)started"
        } else {
            "enabled and started"
        };
        println!("{what} {}: {exec}", path.display());
        println!("The service is {state}; systemd restarts it if it fails.");
        println!("Logs: journalctl --user -u greenlight. State: greenlight service status.");
        if lingering() != Some(true) {
            println!("{LINGER_HINT}");
        }
    }
    Ok(())
}

/// `service uninstall`.
fn uninstall(cli: &Cli) -> Res {
    let path = unit_path()?;
    // A dangling symlink counts as installed: it is ours to remove.
    if path.symlink_metadata().is_err() {
        let msg = format!(
            "No Greenlight service is installed ({} does not exist); nothing to do.",
            path.display()
        );
        if cli.json {
            output::json(
                &json!({"unit_file": path, "removed": false, "error": null, "run_by_hand": []}),
            )?;
        } else {
            println!("{msg}");
        }
        return Ok(());
    }
    let systemctl = Systemctl::new();
    let mut errors = Vec::new();
    let mut by_hand = Vec::new();
    let disabled = systemctl.call(&["disable", "--now", UNIT]);
    std::fs::remove_file(&path)
        .map_err(|e| Failure::Failed(format!("cannot remove {}: {e}", path.display())))?;
    if let Err(e) = disabled {
        errors.push(e);
        // What `disable` would have removed: the link that starts it with
        // the session. Without the unit file, systemctl could no longer
        // disable it by name.
        if let Some(wants) = path
            .parent()
            .map(|d| d.join("default.target.wants").join(UNIT))
        {
            if wants
                .symlink_metadata()
                .is_ok_and(|m| m.file_type().is_symlink())
            {
                let _ = std::fs::remove_file(wants);
            }
        }
        by_hand.push(format!(
            "systemctl --user stop {UNIT}    # if it still runs"
        ));
    }
    if let Err(e) = systemctl.call(&["daemon-reload"]) {
        errors.push(e);
        by_hand.push("systemctl --user daemon-reload".to_string());
    }
    if cli.json {
        output::json(&json!({
            "unit_file": path,
            "removed": true,
            "error": (!errors.is_empty()).then(|| errors.join("; ")),
            "run_by_hand": by_hand,
        }))?;
    }
    if !errors.is_empty() {
        let mut msg = format!(
            "removed {}, but {}.\nRun this by hand, in a login session of this user:\n",
            path.display(),
            errors.join("; ")
        );
        for c in &by_hand {
            msg.push_str(&format!("  {c}\n"));
        }
        return Err(Failure::Failed(msg.trim_end().to_string()));
    }
    if !cli.json {
        println!(
            "Stopped and disabled the Greenlight service, and removed {}.",
            path.display()
        );
    }
    Ok(())
}

/// `service status`.
fn status(cli: &Cli) -> Res {
    let path = unit_path()?;
    let text = read_unit(&path)?;
    // Whether `install` with these options would write the same file: a
    // moved binary or another data directory shows here.
    let expected = exec_start(cli).ok().map(|e| unit_text(&e));
    let up_to_date = match (&text, &expected) {
        (Some(t), Some(e)) => Some(t == e),
        _ => None,
    };
    let exec = text.as_deref().and_then(exec_start_of);
    let systemctl = Systemctl::new();
    let enabled = systemctl.query("is-enabled");
    let active = systemctl.query("is-active");
    let error = enabled.as_ref().err().or(active.as_ref().err()).cloned();
    let dir = data_dir(cli.data_dir.clone())?;
    let owner = control::owner(&dir);
    if cli.json {
        output::json(&json!({
            "unit_file": path,
            "installed": text.is_some(),
            "up_to_date": up_to_date,
            "exec_start": exec,
            "enabled": enabled.as_ref().ok(),
            "active": active.as_ref().ok(),
            "systemctl_error": error,
            "data_dir": dir,
            "owner": owner,
        }))?;
        return Ok(());
    }
    let installed = match (&text, up_to_date) {
        (None, _) => "no; `greenlight service install` writes it",
        (Some(_), Some(true)) => "yes, as this greenlight writes it",
        (Some(_), Some(false)) => {
            "yes, but not as this greenlight would write it now (another binary or data directory); `greenlight service install` replaces it"
        }
        (Some(_), None) => "yes",
    };
    let answer = |r: &Result<String, String>| match r {
        Ok(s) => s.clone(),
        Err(e) => format!("unknown: {e}"),
    };
    let rows: Vec<(&str, String)> = [
        Some(("Unit file", path.display().to_string())),
        Some(("Installed", installed.to_string())),
        exec.map(|e| ("Runs", e.to_string())),
        Some(("Enabled", answer(&enabled))),
        Some(("Active", answer(&active))),
        Some(("Engine", owner_sentence(&dir, owner.as_ref()))),
    ]
    .into_iter()
    .flatten()
    .collect();
    for (k, v) in rows {
        println!("{:<10} {v}", format!("{k}:"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_words_are_quoted_as_systemd_reads_them() {
        assert_eq!(exec_word("/usr/bin/greenlight"), "/usr/bin/greenlight");
        assert_eq!(exec_word("/home/me/my data"), "\"/home/me/my data\"");
        assert_eq!(exec_word("/srv/100%"), "/srv/100%%");
        assert_eq!(exec_word("/srv/$HOME"), "/srv/$$HOME");
        assert_eq!(exec_word("/a\"b\\c"), "\"/a\\\"b\\\\c\"");
        assert_eq!(exec_word("/a'b"), "\"/a'b\"");
        assert_eq!(exec_word("/a\tb"), "\"/a\\tb\"");
        assert_eq!(exec_word(""), "\"\"");
    }

    #[test]
    fn the_unit_runs_watch_and_installs_into_the_session() {
        let t = unit_text("/usr/bin/greenlight watch");
        assert!(t.contains("\nExecStart=/usr/bin/greenlight watch\n"), "{t}");
        assert!(t.contains("\nRestart=on-failure\n"), "{t}");
        assert!(t.contains("\n[Install]\nWantedBy=default.target\n"), "{t}");
        assert_eq!(exec_start_of(&t), Some("/usr/bin/greenlight watch"));
    }
}
