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
use greenlight_sim::blynk::{BlynkConfig, BlynkSim, BlynkTiming, DeviceBehaviour};
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
    /// The demo fleet the app and `greenlight demo` show: six RainMaker
    /// devices on an embedded broker and a Blynk server with three devices.
    /// Its ready line is `greenlight_sim::demo::DemoInfo`.
    Demo {
        /// Device timings.
        #[arg(long, value_enum, default_value = "demo")]
        speed: Speed,
        /// Where to write the sample Blynk firmware (default: a temporary directory).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// Also stop when standard input closes: the app and the CLI hold
        /// it open, so the demo never outlives them, even after a crash.
        #[arg(long)]
        exit_with_parent: bool,
    },
    /// Blynk legacy server (admin HTTPS API, firmware HTTP, hardware TCP) + devices.
    Blynk {
        /// Admin HTTPS address (self-signed certificate; fingerprint in the ready line).
        #[arg(long, default_value = "127.0.0.1:0")]
        admin: SocketAddr,
        /// Hardware protocol (TCP) address.
        #[arg(long, default_value = "127.0.0.1:0")]
        hardware: SocketAddr,
        /// Plain HTTP address firmware is downloaded from.
        #[arg(long, default_value = "127.0.0.1:0")]
        http: SocketAddr,
        /// Simulated devices.
        #[arg(long, default_value_t = 4)]
        devices: usize,
        /// Registered devices the simulator does not run (for real device libraries).
        #[arg(long, default_value_t = 0)]
        external_devices: usize,
        /// How many of the simulated devices fail to flash (the last ones).
        #[arg(long, default_value_t = 0)]
        flash_fails: usize,
        /// How many fail to download (the ones before the flash failures).
        #[arg(long, default_value_t = 0)]
        download_fails: usize,
        /// Super-admin email.
        #[arg(long, default_value = "admin@blynk.cc")]
        admin_email: String,
        /// Super-admin password (random when not given).
        #[arg(long)]
        admin_password: Option<String>,
        /// Host put in OTA URLs (default: the HTTP listener's IP).
        #[arg(long)]
        server_host: Option<String>,
        /// Largest admin upload in bytes (the real default: 512 KiB).
        #[arg(long, default_value_t = greenlight_sim::blynk::DEFAULT_UPLOAD_LIMIT)]
        upload_limit: usize,
        /// Device timings (`fast`: 2 s heartbeat, instant reconnects; otherwise the library's).
        #[arg(long, value_enum, default_value = "real")]
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
                let stop = StopSignals::install()?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "{}", sim.ready_line())?;
                out.flush()?;
                drop(out);
                stop.wait().await;
                tracing::info!("stopping");
                let _ = tokio::time::timeout(Duration::from_millis(1500), sim.shutdown()).await;
                Ok(())
            }
            Cmd::Demo {
                speed,
                dir,
                exit_with_parent,
            } => {
                let timing = match speed {
                    Speed::Fast => Timing::fast(),
                    Speed::Demo => Timing::demo(),
                    Speed::Real => Timing::real(),
                };
                let dir = dir.unwrap_or_else(|| {
                    std::env::temp_dir().join(format!("greenlight-demo-sim-{}", std::process::id()))
                });
                let demo = greenlight_sim::demo::Demo::start(timing, &dir)
                    .await
                    .context("starting the demo fleet")?;
                let stop = StopSignals::install()?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "{}", demo.ready_line())?;
                out.flush()?;
                drop(out);
                if exit_with_parent {
                    tokio::select! {
                        _ = stop.wait() => {}
                        _ = stdin_closed() => {}
                    }
                } else {
                    stop.wait().await;
                }
                tracing::info!("stopping");
                let _ = tokio::time::timeout(Duration::from_millis(1500), demo.shutdown()).await;
                Ok(())
            }
            Cmd::Blynk {
                admin,
                hardware,
                http,
                devices,
                external_devices,
                flash_fails,
                download_fails,
                admin_email,
                admin_password,
                server_host,
                upload_limit,
                speed,
            } => {
                if flash_fails + download_fails > devices {
                    anyhow::bail!(
                        "--flash-fails {flash_fails} + --download-fails {download_fails} exceeds --devices {devices}"
                    );
                }
                let normal = devices - flash_fails - download_fails;
                let mut behaviours = vec![DeviceBehaviour::Normal; normal];
                behaviours.extend(vec![DeviceBehaviour::DownloadFails; download_fails]);
                behaviours.extend(vec![DeviceBehaviour::FlashFails; flash_fails]);
                let timing = match speed {
                    Speed::Fast => BlynkTiming::fast(),
                    Speed::Demo | Speed::Real => BlynkTiming::real(),
                };
                let sim = BlynkSim::start(BlynkConfig {
                    admin,
                    hardware,
                    http,
                    server_host,
                    admin_email,
                    admin_password,
                    devices: behaviours,
                    external_devices,
                    upload_limit,
                    timing,
                    ..BlynkConfig::default()
                })
                .await
                .context("starting the Blynk simulator")?;
                tracing::info!(devices = sim.ready.tokens.len(), "ready");
                let stop = StopSignals::install()?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "{}", sim.ready_line())?;
                out.flush()?;
                drop(out);
                stop.wait().await;
                tracing::info!("stopping");
                let _ = tokio::time::timeout(Duration::from_millis(1500), sim.shutdown()).await;
                Ok(())
            }
        }
    })?;
    // The embedded broker has no shutdown; leave without waiting for its thread.
    std::process::exit(0);
}

/// SIGINT/SIGTERM listeners, installed *before* the ready line is printed:
/// a caller may signal the instant it reads that line, and a signal that
/// arrives before tokio listens kills the process with the default action
/// instead of a clean exit 0.
struct StopSignals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                int: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
                term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => {}
                _ = self.term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Returns once standard input reaches its end (the parent closed it or
/// died); whatever it sends is ignored.
async fn stdin_closed() {
    use tokio::io::AsyncReadExt;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}
