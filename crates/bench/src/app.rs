//! Figures of the desktop app: the release binary's size, and — through
//! `scripts/app-figures.sh` — cold start to the first window under Xvfb and
//! resident memory at rest on the demo fleet.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::procfs::{die_with_parent, executable};

/// What was learned about the app.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AppFigures {
    /// The binary measured.
    pub binary: Option<PathBuf>,
    /// Its size, bytes.
    pub size_bytes: Option<u64>,
    /// The `greenlight` CLI's release binary size, bytes.
    #[serde(default)]
    pub cli_size_bytes: Option<u64>,
    /// The simulator's release binary size, bytes (shipped for the demo).
    #[serde(default)]
    pub sim_size_bytes: Option<u64>,
    /// Packages found under `release/bundle` (`make package`): file name
    /// and size in bytes.
    #[serde(default)]
    pub packages: Vec<(String, u64)>,
    /// The script's output lines (cold start, memory), when it ran.
    pub script_lines: Vec<String>,
    /// Why something was not measured.
    pub not_measured: Vec<String>,
}

/// The repository root (this crate is `crates/bench`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| executable(&d.join(bin))))
}

/// Measures what can be measured; `run_script` false skips the script.
pub async fn measure(run_script: bool, runs: u32) -> AppFigures {
    let mut f = AppFigures::default();
    let root = repo_root();
    let mut candidates = vec![];
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(t).join("release/greenlight-app"));
    }
    candidates.push(root.join("target/release/greenlight-app"));
    let Some(bin) = candidates.into_iter().find(|p| executable(p)) else {
        f.not_measured.push(
            "no release build of the app (target/release/greenlight-app): build it with \
             `scripts/ui.sh build && cargo build --release -p greenlight-app`"
                .into(),
        );
        return f;
    };
    f.size_bytes = std::fs::metadata(&bin).ok().map(|m| m.len());
    f.binary = Some(bin.clone());
    let release = bin.parent().map(Path::to_path_buf).unwrap_or_default();
    let size_of = |name: &str| std::fs::metadata(release.join(name)).ok().map(|m| m.len());
    f.cli_size_bytes = size_of("greenlight");
    f.sim_size_bytes = size_of("greenlight-sim");
    for kind in ["deb", "rpm"] {
        if let Ok(dir) = std::fs::read_dir(release.join("bundle").join(kind)) {
            for e in dir.filter_map(Result::ok) {
                let name = e.file_name().to_string_lossy().to_string();
                if name.ends_with(&format!(".{kind}")) {
                    if let Ok(m) = e.metadata() {
                        f.packages.push((name, m.len()));
                    }
                }
            }
        }
    }
    f.packages.sort();
    let script = root.join("scripts/app-figures.sh");
    let missing: Vec<&str> = ["Xvfb", "xwininfo", "dbus-run-session"]
        .into_iter()
        .filter(|b| !on_path(b))
        .collect();
    if !run_script {
        f.not_measured
            .push("cold start and memory: skipped (--no-app-script)".into());
    } else if !script.exists() {
        f.not_measured
            .push("cold start and memory: scripts/app-figures.sh is missing".into());
    } else if !on_path("unshare") {
        f.not_measured.push(
            "cold start and memory: `unshare` missing; the script stops the app with \
             `pkill -f` and sums every WebKit process, so it is only run in a PID namespace \
             of its own, where it cannot touch or count anyone else's processes"
                .into(),
        );
    } else if !missing.is_empty() {
        f.not_measured.push(format!(
            "cold start and memory: {} not installed",
            missing.join(", ")
        ));
    } else {
        let target = bin
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        // A PID namespace (and /proc) of its own: the script's `pkill -f` and
        // `pgrep -f WebKit...` then see only the processes it started.
        let mut cmd = tokio::process::Command::new("unshare");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            cmd.args(["--user", "--map-root-user"]);
        }
        cmd.args(["--pid", "--fork", "--mount-proc", "bash"])
            .arg(&script)
            .arg(runs.to_string())
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", target)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        die_with_parent(&mut cmd);
        match cmd.spawn() {
            Ok(child) => {
                match tokio::time::timeout(Duration::from_secs(300), child.wait_with_output()).await
                {
                    Ok(Ok(out)) => {
                        f.script_lines = String::from_utf8_lossy(&out.stdout)
                            .lines()
                            .map(str::to_string)
                            .collect();
                        if !out.status.success() {
                            f.not_measured.push(format!(
                                "scripts/app-figures.sh failed ({}): {}",
                                out.status,
                                String::from_utf8_lossy(&out.stderr).trim()
                            ));
                        }
                    }
                    Ok(Err(e)) => f.not_measured.push(format!("app-figures.sh: {e}")),
                    Err(_) => f
                        .not_measured
                        .push("app-figures.sh did not finish within 300 s".into()),
                }
            }
            Err(e) => f
                .not_measured
                .push(format!("cannot run app-figures.sh: {e}")),
        }
    }
    f
}
