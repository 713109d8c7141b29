//! An embedded MQTT broker (rumqttd) for running without mosquitto.
//!
//! rumqttd has no shutdown and binds the address it is given, so the port is
//! chosen here (bind `:0`, read it, release it) and the broker lives on its own
//! thread until the process ends: one embedded broker per process.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::json;

/// Errors starting the embedded broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The address could not be bound.
    #[error("cannot bind embedded broker on {addr}: {source}")]
    Bind {
        /// Requested address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// Configuration rejected by rumqttd.
    #[error("embedded broker configuration: {0}")]
    Config(String),
    /// The broker did not accept connections in time.
    #[error("embedded broker did not start listening on {0}")]
    NotListening(SocketAddr),
    /// A second embedded broker was requested in this process.
    #[error("an embedded broker is already running in this process on {0}")]
    AlreadyRunning(SocketAddr),
}

static RUNNING: OnceLock<SocketAddr> = OnceLock::new();

/// Starts rumqttd on `addr` (port 0 picks a free port) and returns the bound address.
pub fn start_embedded(addr: SocketAddr) -> Result<SocketAddr, BrokerError> {
    if let Some(a) = RUNNING.get() {
        return Err(BrokerError::AlreadyRunning(*a));
    }
    let bound = {
        let l = TcpListener::bind(addr).map_err(|source| BrokerError::Bind { addr, source })?;
        l.local_addr()
            .map_err(|source| BrokerError::Bind { addr, source })?
    };
    let cfg = json!({
        "id": 0,
        "router": {
            "max_connections": 20010,
            "max_outgoing_packet_count": 200,
            "max_segment_size": 4_194_304,
            "max_segment_count": 4
        },
        "v4": {
            "1": {
                "name": "v4-1",
                "listen": bound.to_string(),
                "next_connection_delay_ms": 0,
                "connections": {
                    "connection_timeout_ms": 60000,
                    "max_payload_size": 1_048_576,
                    "max_inflight_count": 500,
                    "dynamic_filters": true
                }
            }
        }
    });
    let config: rumqttd::Config =
        serde_json::from_value(cfg).map_err(|e| BrokerError::Config(e.to_string()))?;
    std::thread::Builder::new()
        .name("embedded-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })
        .map_err(|e| BrokerError::Config(e.to_string()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&bound, Duration::from_millis(200)).is_ok() {
            let _ = RUNNING.set(bound);
            return Ok(bound);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError::NotListening(bound))
}
