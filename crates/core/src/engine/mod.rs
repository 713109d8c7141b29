//! The engine: it watches every node of every account, surfaces pending
//! updates, approves each exactly once and follows every job to its end.
//!
//! Inside, a pure state core and an I/O shell around it
//! (docs/architecture.md):
//!
//! - [`handle`]: the views' handle and the requests it sends;
//! - `accounts`: each account's sources (MQTT watcher, REST sweeps and
//!   pollers) and their connection state;
//! - `core`: every rule — offers, approvals, job states from the
//!   firmware's real reports, policies — synchronous, with the time passed
//!   in, answering with effects;
//! - `actor`: reads channels and the timer, calls the core, performs its
//!   effects (store writes first, then events, then commands);
//! - `commands`: the commands an approval sends;
//! - [`clock`]: where "now" comes from.

mod accounts;
mod actor;
pub mod clock;
mod commands;
mod core;
pub mod handle;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, Semaphore};

pub use clock::{Clock, ManualClock, SystemClock};
pub use handle::EngineHandle;

use self::core::{Core, CoreConfig};
pub(crate) use self::core::{Earlier, Mode};
use crate::error::{Error, Result};
use crate::rainmaker::rest::RetryPolicy;
use crate::secrets::SecretStore;
use crate::store::Store;
use actor::Actor;

/// How the engine runs.
#[derive(Clone)]
pub struct EngineConfig {
    /// Where the database lives.
    pub data_dir: PathBuf,
    /// Passwords and tokens.
    pub secrets: Arc<dyn SecretStore>,
    /// Who approves (for the audit).
    pub actor_name: String,
    /// A running job with no change for this long is reported stuck.
    pub stuck_after: Duration,
    /// Node sweep period while no job runs (REST accounts).
    pub sweep_interval: Duration,
    /// Node sweep period while a job runs.
    pub sweep_interval_busy: Duration,
    /// Each node's cloud user-approval check comes round once per this period.
    pub cloud_check_interval: Duration,
    /// `ota_status` period while a job is started or in progress.
    pub status_poll_fast: Duration,
    /// `ota_status` period while delayed, stuck, the node offline, or MQTT
    /// already delivers the node's own status.
    pub status_poll_slow: Duration,
    /// After "success", how long to wait for the node to report its running
    /// version before deciding between success and rolled back.
    pub rollback_grace: Duration,
    /// How long to wait for a broker's PUBACK.
    pub mqtt_ack_timeout: Duration,
    /// REST timeouts and retries.
    pub retry: RetryPolicy,
    /// Start the accounts saved in the database.
    pub load_saved_accounts: bool,
    /// Check every node's cloud offers as soon as an account starts (the
    /// inbox is complete within seconds). A one-shot command that checks
    /// the nodes it needs itself turns this off, so as not to ask twice.
    pub first_look: bool,
    /// A `failed` report that names no last attempt is final after this
    /// long with no newer report for the job (docs/rainmaker.md).
    pub failure_quiet: Duration,
    /// How long a node may be away restarting into new firmware and
    /// checking it before the job can be called stuck (the firmware's
    /// rollback window is 30–600 s).
    pub verify_window: Duration,
    /// Where "now" comes from (tests inject a [`ManualClock`]).
    pub clock: Arc<dyn Clock>,
}

impl EngineConfig {
    /// Defaults: stuck after 10 min, sweep every 60 s (5 s while busy),
    /// cloud checks every 15 min per node, status every 2 s / 30 s, a
    /// failure final after 3 quiet minutes, 11 minutes to restart and verify.
    pub fn new(
        data_dir: impl Into<PathBuf>,
        secrets: Arc<dyn SecretStore>,
        actor_name: &str,
    ) -> EngineConfig {
        EngineConfig {
            data_dir: data_dir.into(),
            secrets,
            actor_name: actor_name.to_string(),
            stuck_after: Duration::from_secs(600),
            sweep_interval: Duration::from_secs(60),
            sweep_interval_busy: Duration::from_secs(5),
            cloud_check_interval: Duration::from_secs(15 * 60),
            status_poll_fast: Duration::from_secs(2),
            status_poll_slow: Duration::from_secs(30),
            rollback_grace: Duration::from_secs(120),
            mqtt_ack_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            load_saved_accounts: true,
            first_look: true,
            failure_quiet: Duration::from_secs(180),
            verify_window: Duration::from_secs(660),
            clock: Arc::new(SystemClock::default()),
        }
    }
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("data_dir", &self.data_dir)
            .field("actor_name", &self.actor_name)
            .field("stuck_after", &self.stuck_after)
            .finish_non_exhaustive()
    }
}

/// How long [`Engine::open`] waits for the saved accounts to start.
const ACCOUNT_START_WAIT: Duration = Duration::from_secs(15);

/// Opens engines.
pub struct Engine;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Engine {
    /// Opens the store, resumes every unfinished job, starts the saved
    /// accounts and returns a handle.
    pub async fn open(cfg: EngineConfig) -> Result<EngineHandle> {
        let dir = cfg.data_dir.clone();
        let mut store = tokio::task::spawn_blocking(move || Store::open(&dir))
            .await
            .map_err(|e| Error::Config(format!("store task: {e}")))??;
        let (req_tx, req_rx) = mpsc::channel(64);
        let (fact_tx, fact_rx) = mpsc::channel(1024);
        let (int_tx, int_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(1024);
        let secrets = cfg.secrets.clone();
        let mut core = Core::new(CoreConfig {
            actor_name: cfg.actor_name.clone(),
            stuck_after: ms(cfg.stuck_after),
            rollback_grace: ms(cfg.rollback_grace),
            failure_quiet: ms(cfg.failure_quiet),
            verify_window: ms(cfg.verify_window),
        });
        core.load(&mut store, cfg.clock.now())?;
        let saved = if cfg.load_saved_accounts {
            store.accounts()?
        } else {
            vec![]
        };
        let mut actor = Actor {
            clock: cfg.clock.clone(),
            cfg,
            core,
            store,
            events: events.clone(),
            facts: fact_tx,
            internal: int_tx,
            sends: Arc::new(Semaphore::new(4)),
            accounts: BTreeMap::new(),
            gen: 0,
            waiters: HashMap::new(),
            sources_stale: HashSet::new(),
        };
        let mut starting = vec![];
        for a in saved {
            let (tx, rx) = tokio::sync::oneshot::channel();
            actor.start_account(a, Some(tx));
            starting.push(rx);
        }
        tokio::spawn(actor.run(req_rx, fact_rx, int_rx));
        // The saved accounts' sources are prepared off the actor's task
        // (keychain, certificate files); a view's first request should find
        // them running. A keychain that hangs delays this by at most
        // ACCOUNT_START_WAIT; that account then starts when it answers.
        let deadline = tokio::time::Instant::now() + ACCOUNT_START_WAIT;
        for rx in starting {
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "a saved account did not start"),
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!("a saved account is still starting (keychain slow?)");
                    break;
                }
            }
        }
        Ok(EngineHandle {
            tx: req_tx,
            events,
            secrets,
        })
    }
}
