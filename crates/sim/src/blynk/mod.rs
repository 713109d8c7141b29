//! The Blynk legacy server simulator (OTA side): the admin HTTPS API with its
//! self-signed certificate, the plain-HTTP firmware download, the hardware
//! protocol over TCP, and a fleet of simulated devices — faithful to
//! `docs/blynk.md`, quirks included (string comparison of builds,
//! the URL re-sent on every reconnect, global stop, in-memory campaigns).
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use greenlight_sim::blynk::{BlynkConfig, BlynkSim, DeviceBehaviour};
//! let sim = BlynkSim::start(BlynkConfig {
//!     devices: vec![DeviceBehaviour::Normal, DeviceBehaviour::FlashFails],
//!     ..BlynkConfig::default()
//! })
//! .await?;
//! println!("{}", sim.ready_line());
//! # Ok(()) }
//! ```

pub mod admin;
pub mod device;
pub mod firmware;
pub mod hardware;
pub mod protocol;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::distr::{Alphanumeric, SampleString};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

pub use admin::hash_password;
pub use device::{BlynkTiming, DeviceBehaviour, DeviceStats};
pub use firmware::{build_tag, make_firmware, DEFAULT_BUILD};
pub use server::{OtaCall, OtaCallKind, Server, TokenOtaError};

/// The real server's `web.request.max.size`: 512 KiB.
pub const DEFAULT_UPLOAD_LIMIT: usize = 524_288;

/// A user and the names of their projects (dashboards).
#[derive(Debug, Clone)]
pub struct UserSpec {
    /// Email.
    pub email: String,
    /// Project names, in order.
    pub projects: Vec<String>,
}

impl UserSpec {
    /// A user with these projects.
    pub fn new(email: &str, projects: &[&str]) -> UserSpec {
        UserSpec {
            email: email.to_string(),
            projects: projects.iter().map(|p| p.to_string()).collect(),
        }
    }
}

/// How to start the simulator.
#[derive(Debug, Clone)]
pub struct BlynkConfig {
    /// Admin HTTPS address (port 0: any free port).
    pub admin: SocketAddr,
    /// Hardware TCP address.
    pub hardware: SocketAddr,
    /// Plain HTTP address for firmware downloads.
    pub http: SocketAddr,
    /// Host put in OTA URLs (the real `server.host`); default: the HTTP
    /// listener's IP. Set it to something unreachable to play the NAT problem.
    pub server_host: Option<String>,
    /// Super-admin email.
    pub admin_email: String,
    /// Super-admin password (random when `None`).
    pub admin_password: Option<String>,
    /// Users and their projects; devices are spread over every project of
    /// every user, round-robin.
    pub users: Vec<UserSpec>,
    /// One simulated device per entry, with its behaviour.
    pub devices: Vec<DeviceBehaviour>,
    /// Registered devices nobody simulates, for real device libraries.
    pub external_devices: usize,
    /// Build every simulated device starts on.
    pub initial_build: String,
    /// Largest admin request body; larger uploads get 413.
    pub upload_limit: usize,
    /// Device and heartbeat timings.
    pub timing: BlynkTiming,
    /// How long to wait for every simulated device's first info message.
    pub ready_timeout: Duration,
}

impl Default for BlynkConfig {
    fn default() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        BlynkConfig {
            admin: any,
            hardware: any,
            http: any,
            server_host: None,
            admin_email: "admin@blynk.cc".into(),
            admin_password: None,
            users: vec![
                UserSpec::new("alice@example.com", &["Home", "Garden"]),
                UserSpec::new("bob@example.com", &["Office"]),
            ],
            devices: vec![DeviceBehaviour::Normal; 4],
            external_devices: 0,
            initial_build: DEFAULT_BUILD.into(),
            upload_limit: DEFAULT_UPLOAD_LIMIT,
            timing: BlynkTiming::real(),
            ready_timeout: Duration::from_secs(60),
        }
    }
}

/// The ready line's content.
#[derive(Debug, Clone, Serialize)]
pub struct BlynkReady {
    /// Admin API base, `https://IP:PORT` (paths start with `/admin`).
    pub admin: String,
    /// Hardware port, `IP:PORT`.
    pub hardware: String,
    /// Firmware download base, `http://IP:PORT`.
    pub http: String,
    /// Super-admin email.
    pub admin_user: String,
    /// Super-admin password.
    pub admin_password: String,
    /// SHA-256 of the admin certificate (DER), lowercase hex.
    pub fingerprint: String,
    /// Device owners' emails.
    pub users: Vec<String>,
    /// Tokens of the simulated devices, in config order.
    pub tokens: Vec<String>,
    /// Tokens of registered devices the simulator does not run.
    pub external_tokens: Vec<String>,
}

/// A running simulator.
pub struct BlynkSim {
    /// Connection details (the ready line).
    pub ready: BlynkReady,
    /// DER of the admin certificate, to trust exactly it.
    pub cert_der: Vec<u8>,
    /// Server state (devices as the admin API shows them, campaigns...).
    pub server: Arc<Server>,
    devices: Vec<device::DeviceHandle>,
    admin_handle: axum_server::Handle<SocketAddr>,
    http_handle: axum_server::Handle<SocketAddr>,
    stop: watch::Sender<bool>,
    hardware_task: tokio::task::JoinHandle<()>,
}

fn token() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

fn host_for_url(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Users with their dashboards and devices: simulated devices first, then
/// external ones, round-robin over every (user, project).
fn layout(cfg: &BlynkConfig, admin_pass: &str) -> (Vec<server::User>, Vec<String>, Vec<String>) {
    let now = server::now_ms();
    let mut users: Vec<server::User> = vec![];
    let mk_user =
        |email: &str, pass: String, admin: bool, dashes: Vec<server::DashBoard>| server::User {
            id: format!("{email}-{}", server::APP_NAME),
            name: email.to_string(),
            email: email.to_string(),
            app_name: server::APP_NAME.into(),
            region: "local".into(),
            pass,
            last_modified_ts: now,
            last_logged_at: 0,
            profile: server::Profile {
                dash_boards: dashes,
            },
            is_facebook_user: false,
            is_super_admin: admin,
            energy: if admin { 100_000 } else { 2_000 },
        };
    users.push(mk_user(
        &cfg.admin_email,
        hash_password(admin_pass, &cfg.admin_email),
        true,
        vec![],
    ));
    let first = users.len();
    for (n, u) in cfg.users.iter().enumerate() {
        let dashes = u
            .projects
            .iter()
            .enumerate()
            .map(|(i, p)| server::DashBoard {
                id: (n * 100 + i + 1) as i32,
                name: p.clone(),
                created_at: now,
                updated_at: now,
                widgets: vec![],
                devices: vec![],
                theme: "Blynk".into(),
                keep_screen_on: false,
                is_app_connected_on: false,
                is_shared: false,
                is_active: false,
            })
            .collect();
        let pass = hash_password(&token(), &u.email);
        users.push(mk_user(&u.email, pass, false, dashes));
    }
    let slots: Vec<(usize, usize)> = users
        .iter()
        .enumerate()
        .skip(first)
        .flat_map(|(u, user)| (0..user.profile.dash_boards.len()).map(move |d| (u, d)))
        .collect();
    let (mut sim_tokens, mut ext_tokens) = (vec![], vec![]);
    let total = cfg.devices.len() + cfg.external_devices;
    for k in 0..total {
        let Some(&(u, d)) = slots.get(k % slots.len().max(1)) else {
            break;
        };
        let t = token();
        let external = k >= cfg.devices.len();
        let name = if external {
            format!("External {}", k - cfg.devices.len() + 1)
        } else {
            format!("Device {}", k + 1)
        };
        let dash = &mut users[u].profile.dash_boards[d];
        dash.devices.push(server::Device {
            id: dash.devices.len() as i32,
            name,
            board_type: "ESP8266".into(),
            token: t.clone(),
            connection_type: "WI_FI".into(),
            status: "OFFLINE".into(),
            disconnect_time: 0,
            connect_time: 0,
            first_connect_time: 0,
            data_received_at: 0,
            last_logged_ip: None,
            hardware_info: None,
            device_ota_info: None,
            is_user_icon: false,
        });
        if external {
            ext_tokens.push(t);
        } else {
            sim_tokens.push(t);
        }
    }
    (users, sim_tokens, ext_tokens)
}

impl BlynkSim {
    /// Starts the three listeners and the simulated devices; returns once
    /// every simulated device has logged in and had its info acknowledged.
    pub async fn start(cfg: BlynkConfig) -> anyhow::Result<BlynkSim> {
        // Its admin HTTPS server and the devices' download clients need one.
        crate::crypto_provider();
        let total = cfg.devices.len() + cfg.external_devices;
        if total > 0 && cfg.users.iter().all(|u| u.projects.is_empty()) {
            bail!("devices need at least one user with a project");
        }
        let admin_password = cfg
            .admin_password
            .clone()
            .unwrap_or_else(|| Alphanumeric.sample_string(&mut rand::rng(), 16));

        let bind = |a: SocketAddr, what: &str| -> anyhow::Result<std::net::TcpListener> {
            let l = std::net::TcpListener::bind(a)
                .with_context(|| format!("cannot bind the {what} port on {a}"))?;
            l.set_nonblocking(true)?;
            Ok(l)
        };
        let admin_l = bind(cfg.admin, "admin")?;
        let http_l = bind(cfg.http, "HTTP")?;
        let hw_l = tokio::net::TcpListener::from_std(bind(cfg.hardware, "hardware")?)?;
        let (admin_addr, http_addr, hw_addr) = (
            admin_l.local_addr()?,
            http_l.local_addr()?,
            hw_l.local_addr()?,
        );

        let ck = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            admin_addr.ip().to_string(),
        ])?;
        let cert_der = ck.cert.der().to_vec();
        let fingerprint: String = Sha256::digest(&cert_der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let tls = axum_server::tls_rustls::RustlsConfig::from_der(
            vec![cert_der.clone()],
            ck.signing_key.serialize_der(),
        )
        .await?;

        let host = cfg
            .server_host
            .clone()
            .unwrap_or_else(|| http_addr.ip().to_string());
        let url_base = format!("http://{}:{}", host_for_url(&host), http_addr.port());
        let (users, tokens, external_tokens) = layout(&cfg, &admin_password);
        let owners = cfg.users.iter().map(|u| u.email.clone()).collect();
        let server = Arc::new(Server::new(
            users,
            url_base,
            cfg.admin_email.clone(),
            cfg.upload_limit,
            cfg.timing.heartbeat,
        ));

        let admin_handle = axum_server::Handle::new();
        let srv = axum_server::from_tcp_rustls(admin_l, tls)?.handle(admin_handle.clone());
        let app = admin::admin_router(server.clone()).into_make_service();
        tokio::spawn(async move {
            if let Err(e) = srv.serve(app).await {
                tracing::error!(error = %e, "admin HTTPS server stopped");
            }
        });
        let http_handle = axum_server::Handle::new();
        let srv = axum_server::from_tcp(http_l)?.handle(http_handle.clone());
        let app = admin::http_router(server.clone()).into_make_service();
        tokio::spawn(async move {
            if let Err(e) = srv.serve(app).await {
                tracing::error!(error = %e, "firmware HTTP server stopped");
            }
        });
        let (stop, stop_rx) = watch::channel(false);
        let hardware_task = tokio::spawn(hardware::serve(server.clone(), hw_l, stop_rx));

        let env = device::DeviceEnv {
            hardware: hw_addr,
            timing: cfg.timing.clone(),
            http: reqwest::Client::builder()
                .timeout(cfg.timing.io_timeout)
                .build()?,
        };
        let devices: Vec<_> = tokens
            .iter()
            .zip(&cfg.devices)
            .map(|(t, b)| device::spawn(t.clone(), cfg.initial_build.clone(), *b, env.clone()))
            .collect();

        let sim = BlynkSim {
            ready: BlynkReady {
                admin: format!("https://{admin_addr}"),
                hardware: hw_addr.to_string(),
                http: format!("http://{http_addr}"),
                admin_user: cfg.admin_email.clone(),
                admin_password,
                fingerprint,
                users: owners,
                tokens,
                external_tokens,
            },
            cert_der,
            server,
            devices,
            admin_handle,
            http_handle,
            stop,
            hardware_task,
        };
        // Generous for big fleets on a loaded machine.
        let deadline =
            Instant::now() + cfg.ready_timeout + Duration::from_millis(20 * total as u64);
        loop {
            let waiting = sim
                .devices
                .iter()
                .filter(|d| d.stats.lock().map(|s| s.info_acks == 0).unwrap_or(true))
                .count();
            if waiting == 0 {
                break;
            }
            if Instant::now() > deadline {
                let n = sim.devices.len();
                sim.shutdown().await;
                bail!(
                    "{waiting} of {n} simulated devices did not log in within {:?}",
                    cfg.ready_timeout
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(sim)
    }

    /// The one JSON line printed when ready.
    pub fn ready_line(&self) -> String {
        serde_json::to_string(&self.ready).unwrap_or_default()
    }

    fn handle(&self, token: &str) -> Option<&device::DeviceHandle> {
        let i = self.ready.tokens.iter().position(|t| t == token)?;
        self.devices.get(i)
    }

    /// A simulated device's counters (`None` for other tokens).
    pub fn device_stats(&self, token: &str) -> Option<DeviceStats> {
        self.handle(token)
            .map(|h| h.stats.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Every simulated device's counters, in token order.
    pub fn all_device_stats(&self) -> Vec<DeviceStats> {
        self.ready
            .tokens
            .iter()
            .filter_map(|t| self.device_stats(t))
            .collect()
    }

    /// Takes a simulated device off the network (it disconnects and stays
    /// away) or brings it back. `false` for an unknown token.
    pub fn set_online(&self, token: &str, online: bool) -> bool {
        match self.handle(token) {
            Some(h) => {
                h.online.send_replace(online);
                true
            }
            None => false,
        }
    }

    /// Makes a simulated device send a heartbeat PING now instead of at its
    /// next heartbeat (at its next login if it is offline), so a test's wait
    /// on `pings_answered` takes a round trip, not a heartbeat. `false` for
    /// an unknown token.
    pub fn ping_now(&self, token: &str) -> bool {
        match self.handle(token) {
            Some(h) => {
                h.ping_now.notify_one();
                true
            }
            None => false,
        }
    }

    /// Stops the listeners, every connection and every simulated device.
    pub async fn shutdown(self) {
        for d in &self.devices {
            d.task.abort();
        }
        let _ = self.stop.send(true);
        self.hardware_task.abort();
        self.admin_handle
            .graceful_shutdown(Some(Duration::from_millis(500)));
        self.http_handle
            .graceful_shutdown(Some(Duration::from_millis(500)));
        tokio::task::yield_now().await;
    }
}
