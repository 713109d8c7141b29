//! `greenlight-sim`: faithful simulators of the services Greenlight talks to,
//! so that tests, the demo and benchmarks run with no hardware and no account.
//!
//! - [`rainmaker`]: the ESP RainMaker cloud (REST + its MQTT side) and a fleet
//!   of simulated nodes speaking the firmware's OTA protocol.
//!
//! The simulators depend on nothing else of Greenlight's: the engine never
//! knows it is talking to one.

#![warn(missing_docs)]

pub mod rainmaker;
