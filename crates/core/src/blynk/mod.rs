//! Over-the-air updates on a self-hosted Blynk legacy server, made safe and
//! visible (facts: `docs/blynk.md`).
//!
//! Today an admin runs `curl --insecure -u admin:pass -F file=@fw.bin
//! https://host:9443/admin/ota/start?...` and learns nothing more: the server
//! has no progress API, its stop is global, and a device whose flash fails
//! gets the URL again on every reconnect. This module:
//!
//! - validates the firmware before anything is sent ([`Firmware`]: the build
//!   tag read as the server reads it, the size against the server's upload
//!   limit, one read so the upload is exactly what was checked);
//! - talks to the admin API with verified TLS or the one certificate the user
//!   accepted, the password from the keychain ([`AdminClient`]);
//! - records every campaign in the job store and follows it by polling the
//!   users' devices, deriving per device: waiting for reconnect, installing,
//!   updated, suspected reboot loop, offline ([`track`], [`BlynkTracker`]);
//! - runs staged campaigns: one device first, the rest once it runs the new
//!   build and stays up, stopped by the first failure ([`rollout`],
//!   [`BlynkHandle::start_staged`]).
//!
//! The [`BlynkTracker`] is an actor beside the engine, on the same data
//! directory and keychain: the polls only report what the server shows; the
//! tracker decides each device's state, writes it to the store and then
//! broadcasts a [`BlynkEvent`].
//!
//! ```no_run
//! # async fn f() -> Result<(), greenlight_core::blynk::BlynkError> {
//! use std::sync::Arc;
//! use greenlight_core::blynk::{BlynkAccount, BlynkTracker, Firmware, StartTarget, TrackerConfig};
//! use greenlight_core::MemorySecretStore;
//! let blynk = BlynkTracker::open("/tmp/greenlight", Arc::new(MemorySecretStore::default()), "me", TrackerConfig::default()).await?;
//! let mut acct = BlynkAccount::new("home", "https://blynk.local:9443", "admin@blynk.cc");
//! acct.pinned_sha256 = Some("ab".repeat(32)); // the fingerprint the user accepted
//! blynk.add_account(acct, "admin-password").await?;
//! let fw = Firmware::read("sketch.ino.nodemcu.bin".as_ref())?;
//! println!("build {}", fw.build());
//! let c = blynk.start("home", &fw, StartTarget::All, None).await?;
//! blynk.refresh(Some("home")).await?;
//! for d in blynk.campaign(c.id).await?.map(|c| c.devices).unwrap_or_default() {
//!     println!("{}: {}", d.name, d.state.words());
//! }
//! # Ok(()) }
//! ```

mod actor;
pub mod client;
pub mod error;
pub mod firmware;
pub mod model;
pub mod rollout;
pub mod store;
pub mod track;
pub mod tracker;
pub mod users;

pub use client::{AdminClient, ClientOptions, Fetch};
pub use error::{BlynkError, BlynkResult};
pub use firmware::{build_tag, Firmware};
pub use model::{
    BlynkAccount, BlynkEvent, Campaign, CampaignStatus, Counts, DeviceEvent, DeviceRecord,
    DeviceSeen, DeviceState, StartTarget, Target, ADMIN_PASSWORD, DEFAULT_UPLOAD_LIMIT,
};
pub use rollout::{
    BlynkRollout, BlynkRolloutFirmware, BlynkRolloutStage, BlynkSettling, StagedOptions,
};
pub use tracker::{BlynkHandle, BlynkTracker, TrackerConfig};
