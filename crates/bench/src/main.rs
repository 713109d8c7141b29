//! `greenlight-bench`: shows, with numbers measured side by side, how fast
//! Greenlight notices a pending update, how much of the broker's traffic it
//! keeps up with, what it costs at rest, how kind it is to the cloud API,
//! and how big and quick the app is (issue 8).
//!
//! ```text
//! cargo run --release -p greenlight-bench -- [--quick] [--write BENCHMARKS.md]
//! ```
//!
//! Each phase runs in a fresh process of this binary (`--child phase`), and
//! the engine in a process of its own below it (`--child engine`); see
//! `phase.rs` for what is measured and how.

mod app;
mod child;
mod phase;
mod procfs;
mod report;
mod stats;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use phase::{Broker, PhaseResult, PhaseSpec};

#[derive(Parser, Debug)]
#[command(
    name = "greenlight-bench",
    about = "Benchmarks Greenlight's engine against the simulator on mosquitto and the embedded broker"
)]
struct Cli {
    /// Shorter windows at rest and fewer samples (the whole run in a few minutes).
    #[arg(long)]
    quick: bool,
    /// Also write the report (Markdown) here, e.g. BENCHMARKS.md.
    #[arg(long)]
    write: Option<PathBuf>,
    /// Run only the phases whose name contains one of these (comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Do not run scripts/app-figures.sh (the app's size is still reported).
    #[arg(long)]
    no_app_script: bool,
    /// Internal: run as a phase (`phase`) or the engine process (`engine`).
    #[arg(long, hide = true)]
    child: Option<String>,
}

/// The phases of a run. Embedded-broker runs stay at 1,000 nodes: rumqttd
/// matches each new topic against every subscription, so a fleet's start
/// grows with the square of its size (5,000 nodes took ~126 s to become
/// ready, against 2.6 s on mosquitto; 10,000 would take several minutes).
fn plan(quick: bool) -> Vec<PhaseSpec> {
    let rest_s = if quick { 10 } else { 60 };
    let mk = |name: &str, broker, nodes, samples, load, rest, deadline| PhaseSpec {
        name: name.to_string(),
        broker,
        nodes,
        latency_samples: samples,
        latency_gap_ms: 10,
        load_msgs: load,
        rest_window_s: rest,
        rest_jobs: None,
        deadline_s: deadline,
    };
    let (s1, s10, l1, l10) = if quick {
        (300, 300, 10_000, 50_000)
    } else {
        (1000, 2000, 20_000, 100_000)
    };
    vec![
        mk("mqtt-mosquitto-0", Broker::Mosquitto, 0, 0, 0, rest_s, 180),
        mk(
            "mqtt-mosquitto-1000",
            Broker::Mosquitto,
            1000,
            s1,
            l1,
            rest_s,
            360,
        ),
        mk(
            "mqtt-mosquitto-10000",
            Broker::Mosquitto,
            10_000,
            s10,
            l10,
            rest_s,
            600,
        ),
        mk("mqtt-embedded-1000", Broker::Embedded, 1000, s1, l1, 0, 420),
        PhaseSpec {
            rest_jobs: Some(if quick { 5 } else { 20 }),
            ..mk(
                "rest-mosquitto-1000",
                Broker::Mosquitto,
                1000,
                0,
                0,
                rest_s,
                420,
            )
        },
    ]
}

async fn run_phase(spec: &PhaseSpec) -> PhaseResult {
    let failed = |why: String| PhaseResult {
        name: spec.name.clone(),
        broker: Some(spec.broker),
        nodes: spec.nodes,
        load_start: procfs::loadavg(),
        load_end: procfs::loadavg(),
        notes: vec![why],
        ..Default::default()
    };
    let go = async {
        let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
        cmd.args(["--child", "phase"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        procfs::die_with_parent(&mut cmd);
        let mut child = cmd.spawn().context("starting the phase process")?;
        let mut stdin = child.stdin.take().context("phase stdin")?;
        stdin
            .write_all(format!("{}\n", serde_json::to_string(spec)?).as_bytes())
            .await?;
        drop(stdin);
        let mut lines = BufReader::new(child.stdout.take().context("phase stdout")?).lines();
        let mut result = None;
        while let Some(l) = lines.next_line().await? {
            if let Some(j) = l.strip_prefix("RESULT ") {
                result = Some(serde_json::from_str::<PhaseResult>(j)?);
            }
        }
        let _ = child.wait().await;
        result.context("the phase process ended without a result")
    };
    match tokio::time::timeout(Duration::from_secs(spec.deadline_s + 30), go).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => failed(format!("phase failed: {e:#}")),
        Err(_) => failed(format!(
            "phase killed after its hard limit of {} s",
            spec.deadline_s + 30
        )),
    }
}

fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

async fn orchestrate(cli: Cli) -> Result<()> {
    let started = Instant::now();
    let date = utc_now();
    let load_start = procfs::loadavg();
    let mut args: Vec<String> = vec![];
    if cli.quick {
        args.push("--quick".into());
    }
    if let Some(w) = &cli.write {
        args.push(format!("--write {}", w.display()));
    }
    if !cli.only.is_empty() {
        args.push(format!("--only {}", cli.only.join(",")));
    }
    if cli.no_app_script {
        args.push("--no-app-script".into());
    }
    let command = format!(
        "cargo run --release -p greenlight-bench --{}",
        if args.is_empty() {
            String::new()
        } else {
            format!(" {}", args.join(" "))
        }
    );
    let phases: Vec<PhaseSpec> = plan(cli.quick)
        .into_iter()
        .filter(|p| cli.only.is_empty() || cli.only.iter().any(|o| p.name.contains(o.as_str())))
        .collect();
    let mut results = vec![];
    for spec in &phases {
        eprintln!("== {} (hard limit {} s)", spec.name, spec.deadline_s);
        let r = run_phase(spec).await;
        eprintln!("== {} done, load {}", spec.name, r.load_end);
        results.push(r);
    }
    let app = if cli.only.is_empty() || cli.only.iter().any(|o| o == "app") {
        eprintln!("== app");
        app::measure(!cli.no_app_script, if cli.quick { 3 } else { 5 }).await
    } else {
        app::AppFigures {
            not_measured: vec!["not run (--only)".into()],
            ..Default::default()
        }
    };
    let rep = report::Report {
        machine: procfs::machine(),
        date,
        command,
        load: (load_start, procfs::loadavg()),
        wall_s: started.elapsed().as_secs_f64(),
        quick: cli.quick,
        phases: results,
        app,
    };
    let rows = report::rows(&rep);
    println!("\n{}", report::table(&rows));
    println!(
        "machine: {}\nload average: {} → {}; {:.0} s",
        rep.machine, rep.load.0, rep.load.1, rep.wall_s
    );
    if let Some(path) = &cli.write {
        let old = std::fs::read_to_string(path).unwrap_or_default();
        let md = report::markdown(&rep, &rows, report::kept_analysis(&old));
        std::fs::write(path, md).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error,rumqttd=off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Runtime::new()?;
    match cli.child.as_deref() {
        None => rt.block_on(orchestrate(cli)),
        Some("engine") => rt.block_on(child::run()),
        Some("phase") => rt.block_on(async {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let spec: PhaseSpec = serde_json::from_str(&line).context("phase spec")?;
            let r = phase::run(spec).await?;
            println!("RESULT {}", serde_json::to_string(&r)?);
            // Leave at once: the simulator's and broker's threads never end.
            std::process::exit(0)
        }),
        Some(other) => bail!("unknown child mode {other}"),
    }
}
