//! `greenlight-sim`: runs a simulator until SIGINT/SIGTERM.
//!
//! Contract (other tools rely on it): when ready it prints exactly one JSON
//! line on stdout; logs go to stderr; on SIGINT/SIGTERM it exits 0 within two
//! seconds.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use greenlight_sim::rainmaker::{BrokerChoice, RainmakerSim, Scenario, SimConfig, Timing};

#[derive(Parser)]
#[command(
    name = "greenlight-sim",
    version,
    about = "Simulators of the services Greenlight talks to"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Speed {
    /// Everything within a second or two (tests).
    Fast,
    /// Downloads take a few seconds (default).
    Demo,
    /// The firmware's own defaults.
    Real,
}

#[derive(Subcommand)]
enum Cmd {
    /// ESP RainMaker cloud + nodes.
    Rainmaker {
        /// HTTP address (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        http: SocketAddr,
        /// Serve HTTPS with a certificate generated at start; its SHA-256 fingerprint is in the ready line.
        #[arg(long)]
        https: bool,
        /// Start an embedded MQTT broker on this address.
        #[arg(
            long,
            conflicts_with = "mqtt_url",
            required_unless_present = "mqtt_url"
        )]
        embedded_broker: Option<SocketAddr>,
        /// Use this broker: mqtt://HOST:PORT.
        #[arg(long)]
        mqtt_url: Option<String>,
        /// Number of nodes.
        #[arg(long)]
        nodes: Option<usize>,
        /// Preset fleet.
        #[arg(long, value_enum, default_value = "plain")]
        scenario: Scenario,
        /// The user's email.
        #[arg(long, default_value = "demo@greenlight.local")]
        user: String,
        /// The user's password (random when not given).
        #[arg(long)]
        password: Option<String>,
        /// Firmware timings.
        #[arg(long, value_enum, default_value = "demo")]
        speed: Speed,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,greenlight_sim=info".into()),
        )
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Rainmaker {
                http,
                https,
                embedded_broker,
                mqtt_url,
                nodes,
                scenario,
                user,
                password,
                speed,
            } => {
                let broker = match (embedded_broker, mqtt_url) {
                    (Some(a), _) => BrokerChoice::Embedded(a),
                    (None, Some(u)) => BrokerChoice::External(u),
                    (None, None) => anyhow::bail!("give --embedded-broker ADDR or --mqtt-url URL"),
                };
                let default_nodes = match scenario {
                    Scenario::Demo => 6,
                    _ => 10,
                };
                let timing = match speed {
                    Speed::Fast => Timing::fast(),
                    Speed::Demo => Timing::demo(),
                    Speed::Real => Timing::real(),
                };
                let started = std::time::Instant::now();
                let sim = RainmakerSim::start(SimConfig {
                    http,
                    https,
                    broker,
                    nodes: nodes.unwrap_or(default_nodes),
                    scenario,
                    user,
                    password,
                    timing,
                    ..SimConfig::default()
                })
                .await
                .context("starting the RainMaker simulator")?;
                tracing::info!(
                    nodes = sim.info.nodes.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "ready"
                );
                let mut out = std::io::stdout().lock();
                writeln!(out, "{}", sim.ready_line())?;
                out.flush()?;
                drop(out);
                wait_for_signal().await;
                tracing::info!("stopping");
                let _ = tokio::time::timeout(Duration::from_millis(1500), sim.shutdown()).await;
                Ok(())
            }
        }
    })?;
    // The embedded broker has no shutdown; leave without waiting for its thread.
    std::process::exit(0);
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
