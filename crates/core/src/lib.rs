//! Greenlight's engine: it watches every ESP RainMaker node of every account,
//! surfaces pending firmware updates, approves each update exactly once and
//! follows every job to its end.
//!
//! The shape (see `docs/architecture.md`):
//!
//! - **sources** (`rainmaker::mqtt`, `rainmaker::sweep`) only report facts;
//! - the **engine** ([`engine`]) is one actor that owns the state, applies the
//!   policies and turns requests into commands;
//! - the **store** ([`store`]) is written before anyone is told, so every job
//!   survives a restart;
//! - **views** (app, tray, CLI) talk to an [`EngineHandle`] and subscribe to
//!   [`Event`]s.
//!
//! ```no_run
//! # async fn f() -> Result<(), greenlight_core::Error> {
//! use std::sync::Arc;
//! use greenlight_core::{Engine, EngineConfig, AccountConfig, MemorySecretStore};
//! let secrets = Arc::new(MemorySecretStore::default());
//! let engine = Engine::open(EngineConfig::new("/tmp/greenlight", secrets, "me")).await?;
//! engine.add_account(AccountConfig::rest("home", "https://api.rainmaker.espressif.com", "me@example.com")).await?;
//! engine.refresh().await?;
//! for p in engine.pending().await? { println!("{} → {}", p.node_id, p.to_version); }
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod blynk;
pub mod body;
pub mod control;
pub mod demo;
pub mod engine;
pub mod error;
pub mod event;
pub mod export;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz_api;
pub mod model;
pub mod notify;
pub mod policy;
pub mod private;
pub mod rainmaker;
pub mod resume;
pub mod rollout;
pub mod secrets;
pub mod setup;
pub mod store;
pub mod tls;
pub mod words;

pub use engine::{Clock, Engine, EngineConfig, EngineHandle, ManualClock, SystemClock};
pub use error::{Error, Result};
pub use event::{AccountState, Checking, Event, Freshness};
pub use model::*;
pub use notify::{Note, Notifier, BATCH_WINDOW_MS};
pub use rollout::{
    DailyWindow, MemberState, Rollout, RolloutAction, RolloutCounts, RolloutMember, RolloutPlan,
    RolloutState,
};
pub use secrets::{KeyringSecretStore, MemorySecretStore, SecretError, SecretStore};
