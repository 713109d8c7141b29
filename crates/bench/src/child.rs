//! The engine process: the benchmark re-executes itself in this mode so the
//! engine's memory and CPU are its own, not mixed with the simulator's,
//! the broker's or the load generators'.
//!
//! Protocol (one line each way at a time):
//! - stdin, first line: a [`ChildConfig`] as JSON; then commands:
//!   `approve ID,ID,...`, `pending`, `quit`.
//! - stdout: `READY <t>` once the account is added (`<t>` is when
//!   `add_account` was called), then one line per interesting event, every
//!   one stamped with `CLOCK_MONOTONIC` nanoseconds taken when this process
//!   received it:
//!   `P <t> <node> <job>` pending update added, `S <t> <state>` account state,
//!   `J <t> <node> <state> <terminal 0|1>` job changed, `A <t> <json>` approval
//!   outcome, `COUNT <t> <n>` answer to `pending`, `LAG <n>` events lost because
//!   this reader fell behind the engine's broadcast channel.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use greenlight_core::{
    secret_keys, AccountConfig, Engine, EngineConfig, Event, MemorySecretStore, SecretStore,
};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

use crate::procfs::mono_ns;

/// What the engine process runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildConfig {
    /// A fresh data directory.
    pub data_dir: PathBuf,
    /// The one account.
    pub account: AccountConfig,
    /// Its RainMaker password (REST accounts).
    pub password: Option<String>,
}

type Out = Arc<Mutex<std::io::BufWriter<std::io::Stdout>>>;

fn say(out: &Out, line: &str, flush: bool) {
    let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
    let _ = writeln!(o, "{line}");
    if flush {
        let _ = o.flush();
    }
}

fn event_line(t: u64, e: &Event) -> Option<String> {
    Some(match e {
        Event::PendingAdded { pending } => {
            format!("P {t} {} {}", pending.node_id, pending.job_id)
        }
        Event::AccountState { state, .. } => {
            let s = serde_json::to_value(state).ok()?;
            format!("S {t} {}", s["state"].as_str().unwrap_or("unknown"))
        }
        Event::JobChanged { job } => format!(
            "J {t} {} {} {}",
            job.node_id,
            job.state.name(),
            u8::from(job.state.is_terminal())
        ),
        Event::Approval { outcome } => {
            format!("A {t} {}", serde_json::to_string(outcome).ok()?)
        }
        _ => return None,
    })
}

/// Runs the engine process until `quit` or the end of stdin.
pub async fn run() -> anyhow::Result<()> {
    let mut first = String::new();
    std::io::stdin()
        .read_line(&mut first)
        .context("reading the config line")?;
    let cfg: ChildConfig = serde_json::from_str(&first).context("parsing the config line")?;
    let secrets = Arc::new(MemorySecretStore::default());
    if let Some(p) = &cfg.password {
        secrets.set(&cfg.account.name, secret_keys::PASSWORD, p)?;
    }
    let mut ec = EngineConfig::new(&cfg.data_dir, secrets, "bench");
    ec.load_saved_accounts = false;
    let engine = Engine::open(ec).await?;
    let out: Out = Arc::new(Mutex::new(std::io::BufWriter::new(std::io::stdout())));

    let mut rx = engine.subscribe();
    let o = out.clone();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(e) => {
                    let t = mono_ns();
                    if let Some(l) = event_line(t, &e) {
                        say(&o, &l, rx.is_empty());
                    } else if rx.is_empty() {
                        let _ = o.lock().unwrap_or_else(|e| e.into_inner()).flush();
                    }
                }
                Err(RecvError::Lagged(n)) => say(&o, &format!("LAG {n}"), true),
                Err(RecvError::Closed) => break,
            }
        }
    });

    let t_add = mono_ns();
    engine.add_account(cfg.account.clone()).await?;
    say(&out, &format!("READY {t_add}"), true);

    // Commands come on a blocking thread; the engine runs on the runtime.
    let (tx, mut cmds) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(cmd) = cmds.recv().await {
        let cmd = cmd.trim();
        if cmd == "quit" {
            break;
        } else if cmd == "pending" {
            let n = engine.pending().await.map(|p| p.len()).unwrap_or(0);
            say(&out, &format!("COUNT {} {n}", mono_ns()), true);
        } else if let Some(ids) = cmd.strip_prefix("approve ") {
            let ids: Vec<String> = ids.split(',').map(str::to_string).collect();
            let e = engine.clone();
            tokio::spawn(async move {
                if let Err(err) = e.approve(&ids).await {
                    eprintln!("engine child: approve failed: {err}");
                }
            });
        } else {
            eprintln!("engine child: unknown command {cmd:?}");
        }
    }
    engine.shutdown().await;
    let _ = out.lock().unwrap_or_else(|e| e.into_inner()).flush();
    Ok(())
}
