//! `greenlight-sim`: faithful simulators of the services Greenlight talks to,
//! so that tests, the demo and benchmarks run with no hardware and no account.
//!
//! - [`rainmaker`]: the ESP RainMaker cloud (REST + its MQTT side) and a fleet
//!   of simulated nodes speaking the firmware's OTA protocol.
//! - [`blynk`]: the Blynk legacy server's OTA side (admin HTTPS API, firmware
//!   download, hardware protocol) and a fleet of simulated devices.
//! - [`demo`]: the demo fleet both the app and the CLI show, run as
//!   `greenlight-sim demo` beside them.
//!
//! The simulators depend on nothing else of Greenlight's: the engine never
//! knows it is talking to one.

#![warn(missing_docs)]

pub mod blynk;
pub mod demo;
pub mod rainmaker;

/// Installs ring as the process's TLS crypto provider unless one is
/// installed already (the one Greenlight uses too: a test process holding
/// both sides then has one provider, and axum-server, built without a
/// provider of its own, finds it).
pub(crate) fn crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
