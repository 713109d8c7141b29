//! The ESP RainMaker simulator: cloud REST API, the cloud's MQTT side, a fleet
//! of simulated nodes and an optional embedded broker, started together.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use greenlight_sim::rainmaker::{RainmakerSim, SimConfig, BrokerChoice, Scenario};
//! let sim = RainmakerSim::start(SimConfig {
//!     broker: BrokerChoice::External("mqtt://127.0.0.1:1883".into()),
//!     scenario: Scenario::Demo,
//!     ..SimConfig::default()
//! }).await?;
//! println!("{}", sim.ready_line());
//! # Ok(()) }
//! ```

pub mod broker;
pub mod cloud;
pub mod jwt;
pub mod node;
pub mod rest;
pub mod scenario;
pub mod wire;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use rand::distr::{Alphanumeric, SampleString};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use cloud::{Cloud, DownloadWindow, Fault, JobKind};
pub use node::{texts, Behaviour, Fleet, NodeSpec, NodeStats, Timing};
pub use scenario::{JobSpec, Scenario};
pub use wire::OtaLayout;

/// Where the cloud and nodes find their broker.
#[derive(Debug, Clone)]
pub enum BrokerChoice {
    /// Start rumqttd in this process on this address (port 0: any free port).
    Embedded(SocketAddr),
    /// Use a broker that is already running, `mqtt://HOST:PORT`.
    External(String),
}

/// How to start the simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address of the HTTP(S) server (port 0: any free port).
    pub http: SocketAddr,
    /// Serve HTTPS with a certificate generated at start.
    pub https: bool,
    /// Broker.
    pub broker: BrokerChoice,
    /// Number of nodes (the demo has at least six).
    pub nodes: usize,
    /// Preset.
    pub scenario: Scenario,
    /// The user's email.
    pub user: String,
    /// The user's password (random when `None`).
    pub password: Option<String>,
    /// Firmware timings.
    pub timing: Timing,
    /// Extra nodes beyond the scenario's, with their own behaviours.
    pub extra_nodes: Vec<NodeSpec>,
    /// Extra jobs beyond the scenario's, created before any node connects.
    pub extra_jobs: Vec<JobSpec>,
    /// How long to wait for every node's config before giving up.
    pub ready_timeout: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            https: false,
            broker: BrokerChoice::Embedded(SocketAddr::from(([127, 0, 0, 1], 0))),
            nodes: 6,
            scenario: Scenario::Demo,
            user: "demo@greenlight.local".into(),
            password: None,
            timing: Timing::demo(),
            extra_nodes: vec![],
            extra_jobs: vec![],
            ready_timeout: Duration::from_secs(180),
        }
    }
}

/// The ready line's content: everything a client needs to connect.
#[derive(Debug, Clone, Serialize)]
pub struct ReadyInfo {
    /// Base URL of the REST API (`/v1` is below it).
    pub http: String,
    /// Broker URL.
    pub mqtt: String,
    /// User email.
    pub user: String,
    /// User password.
    pub password: String,
    /// Token for `/sim/`.
    pub admin_token: String,
    /// Every node id.
    pub nodes: Vec<String>,
    /// SHA-256 of the server certificate (DER), lowercase hex, with `--https`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// A running simulator.
pub struct RainmakerSim {
    /// Connection details.
    pub info: ReadyInfo,
    /// The cloud state (jobs, faults, request counts...).
    pub cloud: Cloud,
    /// The simulated nodes.
    pub fleet: Fleet,
    /// DER of the HTTPS certificate, with `https`.
    pub cert_der: Option<Vec<u8>>,
    server: axum_server::Handle<SocketAddr>,
    cloud_task: tokio::task::JoinHandle<()>,
}

/// Parses `mqtt://host:port` (also `tcp://`, or a bare `host:port`).
pub fn parse_mqtt_url(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .unwrap_or(url);
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest
        .rsplit_once(':')
        .context("broker URL needs a port: mqtt://HOST:PORT")?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("bad port in broker URL {url}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("broker URL needs a host: mqtt://HOST:PORT");
    }
    Ok((host.to_string(), port))
}

impl RainmakerSim {
    /// Starts everything and returns once the HTTP server listens and every
    /// node that starts online has published its config.
    pub async fn start(cfg: SimConfig) -> anyhow::Result<RainmakerSim> {
        // Its HTTPS server and the nodes' download clients need one.
        crate::crypto_provider();
        let (host, port) = match &cfg.broker {
            BrokerChoice::Embedded(addr) => {
                let a = broker::start_embedded(*addr)?;
                (a.ip().to_string(), a.port())
            }
            BrokerChoice::External(url) => parse_mqtt_url(url)?,
        };
        let mqtt_url = format!(
            "mqtt://{}:{port}",
            if host.contains(':') {
                format!("[{host}]")
            } else {
                host.clone()
            }
        );

        let cloud = Cloud::new();
        let password = cfg
            .password
            .clone()
            .unwrap_or_else(|| Alphanumeric.sample_string(&mut rand::rng(), 16));
        cloud.add_user(&cfg.user, &password);
        let admin_token = Alphanumeric.sample_string(&mut rand::rng(), 32);

        let (mut specs, jobs) = scenario::build(cfg.scenario, cfg.nodes);
        specs.extend(cfg.extra_nodes.iter().cloned());
        // rumqttd refuses subscriptions to `$` topics (as AWS IoT does not
        // deliver basic-ingest topics to subscribers either), so on the
        // embedded broker every node publishes in the plain `node/<id>/` form.
        let embedded = matches!(cfg.broker, BrokerChoice::Embedded(_));
        if embedded {
            for s in &mut specs {
                s.basic_ingest = false;
            }
        }
        for s in &specs {
            cloud.map_node(&s.info.node_id, &cfg.user);
        }

        // HTTP(S) server first, so firmware URLs are known before any job exists.
        let std_listener = std::net::TcpListener::bind(cfg.http)
            .with_context(|| format!("cannot bind HTTP on {}", cfg.http))?;
        std_listener.set_nonblocking(true)?;
        let http_addr = std_listener.local_addr()?;
        let (scheme, cert_der, fingerprint, tls) = if cfg.https {
            let ck = rcgen::generate_simple_self_signed(vec![
                "localhost".to_string(),
                http_addr.ip().to_string(),
            ])?;
            let der = ck.cert.der().to_vec();
            let fp = cloud::hex(&Sha256::digest(&der));
            let tls = axum_server::tls_rustls::RustlsConfig::from_der(
                vec![der.clone()],
                ck.signing_key.serialize_der(),
            )
            .await?;
            ("https", Some(der), Some(fp), Some(tls))
        } else {
            ("http", None, None, None)
        };
        let base = format!("{scheme}://{http_addr}");
        cloud.set_firmware_base(&base);

        let mut http = reqwest::Client::builder().timeout(Duration::from_secs(60));
        if let Some(der) = &cert_der {
            http = http.tls_certs_only([reqwest::Certificate::from_der(der)?]);
        }
        let env = node::FleetEnv {
            host: host.clone(),
            port,
            timing: cfg.timing.clone(),
            http: http.build()?,
        };

        let cloud_task = tokio::spawn(cloud.clone().run_mqtt(host.clone(), port, !embedded));
        // The nodes publish their config once per connection: start them only
        // when the cloud is listening (a CI run under load lost 5 of 6).
        if !cloud.wait_subscribed(cfg.ready_timeout).await {
            cloud_task.abort();
            bail!(
                "the simulated cloud could not subscribe on the broker at {host}:{port} within {:?}",
                cfg.ready_timeout
            );
        }
        // Jobs exist before any node connects, so every node learns of its
        // job the way real ones do: by its auto-fetch after connecting.
        for j in jobs.iter().chain(&cfg.extra_jobs) {
            cloud
                .create_job_from(j)
                .map_err(|e| anyhow::anyhow!(e.description))?;
        }
        let fleet = Fleet::spawn(specs.clone(), env);
        let state = rest::AppState {
            cloud: cloud.clone(),
            fleet: fleet.clone(),
            admin_token: admin_token.clone(),
        };
        let app = rest::router(state).into_make_service();
        let handle = axum_server::Handle::new();
        let h = handle.clone();
        match tls {
            Some(tls) => {
                let srv = axum_server::from_tcp_rustls(std_listener, tls)?.handle(h);
                tokio::spawn(async move {
                    if let Err(e) = srv.serve(app).await {
                        tracing::error!(error = %e, "HTTPS server stopped");
                    }
                });
            }
            None => {
                let srv = axum_server::from_tcp(std_listener)?.handle(h);
                tokio::spawn(async move {
                    if let Err(e) = srv.serve(app).await {
                        tracing::error!(error = %e, "HTTP server stopped");
                    }
                });
            }
        }

        // rumqttd matches each new topic against every subscription, so a big
        // fleet on the embedded broker takes minutes, not seconds, to come up.
        let ready_timeout = cfg.ready_timeout + Duration::from_millis(50 * specs.len() as u64);
        if !cloud.wait_configs(specs.len(), ready_timeout).await {
            bail!(
                "only {} of {} nodes published their config within {:?}",
                cloud.configs_received(),
                specs.len(),
                cfg.ready_timeout
            );
        }
        let info = ReadyInfo {
            http: base,
            mqtt: mqtt_url,
            user: cfg.user.clone(),
            password,
            admin_token,
            nodes: specs.iter().map(|s| s.info.node_id.clone()).collect(),
            fingerprint,
        };
        Ok(RainmakerSim {
            info,
            cloud,
            fleet,
            cert_der,
            server: handle,
            cloud_task,
        })
    }

    /// The one JSON line printed when ready.
    pub fn ready_line(&self) -> String {
        serde_json::to_string(&self.info).unwrap_or_default()
    }

    /// Creates an OTA job (see [`Cloud::create_job`]).
    pub fn create_job(
        &self,
        nodes: &[String],
        fw_version: &str,
        description: &str,
        kind: JobKind,
    ) -> anyhow::Result<String> {
        self.cloud
            .create_job(nodes, fw_version, description, kind, 128 * 1024)
            .map_err(|e| anyhow::anyhow!(e.description))
    }

    /// Creates an OTA job from a full [`JobSpec`] (download window, image
    /// size...); see [`Cloud::create_job_from`].
    pub fn create_job_from(&self, spec: &JobSpec) -> anyhow::Result<String> {
        self.cloud
            .create_job_from(spec)
            .map_err(|e| anyhow::anyhow!(e.description))
    }

    /// Stops the server, the cloud client and every node.
    pub async fn shutdown(self) {
        self.server
            .graceful_shutdown(Some(Duration::from_millis(500)));
        self.cloud_task.abort();
        self.fleet.abort();
    }
}
