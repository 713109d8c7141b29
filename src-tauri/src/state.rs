//! What the app keeps while it runs: the engine on the user's data (shared
//! with the `greenlight` CLI), the demo fleet's engine when the demo is on,
//! whether a keychain answered, and the notification rules. Commands ask
//! [`AppState::engine`] for whichever engine is showing.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use greenlight_core::{
    secret_keys, AccountConfig, Engine, EngineConfig, EngineHandle, KeyringSecretStore,
    MemorySecretStore, SecretError, SecretStore,
};
use greenlight_sim::rainmaker::{BrokerChoice, RainmakerSim, Scenario, SimConfig, Timing};
use serde::Serialize;

use crate::error::{AppError, AppResult};
use crate::notify::Notifier;

/// Whether passwords can be kept in the OS keychain.
#[derive(Debug, Clone, Serialize, specta::Type)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum KeychainStatus {
    /// The OS keychain answered.
    Available,
    /// None answered: passwords are held in memory for this run only and
    /// asked for again next time. Never written to a file.
    Unavailable {
        /// Why, in plain words.
        reason: String,
    },
}

/// How the app is set up.
#[derive(Debug, Clone)]
pub struct AppOptions {
    /// The user's data directory (shared with the CLI).
    pub data_dir: PathBuf,
    /// Who approvals are recorded as.
    pub actor: String,
    /// Use an in-memory secret store instead of the OS keychain (tests).
    pub memory_secrets: bool,
    /// The demo fleet's pace.
    pub demo_timing: Timing,
    /// Engine timers (tests shorten them).
    pub tune: fn(&mut EngineConfig),
}

impl AppOptions {
    /// The defaults for a real run: platform data directory, OS keychain.
    pub fn from_env() -> AppOptions {
        let data_dir = std::env::var_os("GREENLIGHT_DATA_DIR")
            .map(PathBuf::from)
            .or_else(|| {
                directories::ProjectDirs::from("dev", "greenlight", "greenlight")
                    .map(|p| p.data_dir().to_path_buf())
            })
            .unwrap_or_else(|| std::env::temp_dir().join("greenlight"));
        let actor = std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .unwrap_or_else(|_| "you".into());
        // The end-to-end test runs the demo at the simulator's fast pace.
        let demo_timing = match std::env::var("GREENLIGHT_DEMO_SPEED").as_deref() {
            Ok("fast") => Timing::fast(),
            _ => Timing::demo(),
        };
        AppOptions {
            data_dir,
            actor,
            memory_secrets: false,
            demo_timing,
            tune: |_| {},
        }
    }
}

/// The demo fleet: the simulator and the engine watching it.
struct Demo {
    sim: Arc<RainmakerSim>,
    engine: Option<EngineHandle>,
    dir: PathBuf,
}

struct Engines {
    real: Result<EngineHandle, String>,
    demo: Option<Demo>,
}

/// What the state needs from the app around it, without knowing its
/// runtime type (so commands stay plain functions the mock runtime can call).
pub trait Shell: Send + Sync {
    /// Forward this engine's events to the window, tray and notifier.
    fn attach(&self, engine: EngineHandle, generation: u64);
    /// Tell the window to reload (demo on/off).
    fn app_changed(&self, demo: bool);
    /// Reflect "pause notifications" in the tray menu.
    fn paused(&self, paused: bool);
}

impl<R: tauri::Runtime> Shell for tauri::AppHandle<R> {
    fn attach(&self, engine: EngineHandle, generation: u64) {
        crate::events::attach(self, engine, generation);
    }
    fn app_changed(&self, demo: bool) {
        use tauri_specta::Event as _;
        let _ = crate::events::AppChanged { demo }.emit(self);
    }
    fn paused(&self, paused: bool) {
        crate::tray::reflect_paused(self, paused);
    }
}

/// Managed Tauri state.
pub struct AppState {
    shell: std::sync::OnceLock<Arc<dyn Shell>>,
    engines: tokio::sync::Mutex<Engines>,
    /// Bumped whenever the showing engine changes, so an old event forwarder
    /// knows to stop.
    pub generation: AtomicU64,
    /// Notification rules.
    pub notifier: Mutex<Notifier>,
    /// Whether a keychain answered at start.
    pub keychain: KeychainStatus,
    opts: AppOptions,
}

impl AppState {
    /// Opens the user's engine. A database that cannot be opened does not
    /// stop the app: the demo still works and the error is shown.
    pub async fn open(opts: AppOptions) -> AppState {
        let (secrets, keychain): (Arc<dyn SecretStore>, KeychainStatus) = if opts.memory_secrets {
            (
                Arc::new(MemorySecretStore::default()),
                KeychainStatus::Available,
            )
        } else {
            match open_keychain().await {
                Ok(s) => (s, KeychainStatus::Available),
                Err(reason) => {
                    tracing::warn!(%reason, "no keychain; passwords are kept for this run only");
                    (
                        Arc::new(MemorySecretStore::default()),
                        KeychainStatus::Unavailable { reason },
                    )
                }
            }
        };
        let mut cfg = EngineConfig::new(&opts.data_dir, secrets, &opts.actor);
        (opts.tune)(&mut cfg);
        let real = Engine::open(cfg).await.map_err(|e| {
            format!(
                "the local database in {} could not be opened: {}",
                opts.data_dir.display(),
                e.plain()
            )
        });
        AppState {
            engines: tokio::sync::Mutex::new(Engines { real, demo: None }),
            generation: AtomicU64::new(0),
            notifier: Mutex::new(Notifier::default()),
            keychain,
            opts,
            shell: std::sync::OnceLock::new(),
        }
    }

    /// Connects the state to the app around it (once, at setup).
    pub fn set_shell(&self, shell: Arc<dyn Shell>) {
        let _ = self.shell.set(shell);
    }

    /// The app around the state, once set up.
    pub fn shell(&self) -> Option<Arc<dyn Shell>> {
        self.shell.get().cloned()
    }

    /// The engine the window shows: the demo's while the demo is on.
    pub async fn engine(&self) -> AppResult<EngineHandle> {
        let g = self.engines.lock().await;
        if let Some(e) = g.demo.as_ref().and_then(|d| d.engine.clone()) {
            return Ok(e);
        }
        g.real.clone().map_err(AppError::failed)
    }

    /// The user's own engine (not the demo's).
    pub async fn real_engine(&self) -> AppResult<EngineHandle> {
        self.engines
            .lock()
            .await
            .real
            .clone()
            .map_err(AppError::failed)
    }

    /// True while the demo fleet is showing.
    pub async fn demo_active(&self) -> bool {
        self.engines
            .lock()
            .await
            .demo
            .as_ref()
            .is_some_and(|d| d.engine.is_some())
    }

    /// Where the user's data lives.
    pub fn data_dir(&self) -> &PathBuf {
        &self.opts.data_dir
    }

    /// Starts the demo fleet (or returns the running one's engine). The
    /// simulator stays up once started: its embedded broker cannot be stopped
    /// and restarted in one process, so "stop" only detaches the engine and a
    /// second start reuses the same devices.
    pub async fn start_demo(&self) -> AppResult<EngineHandle> {
        let mut g = self.engines.lock().await;
        if let Some(e) = g.demo.as_ref().and_then(|d| d.engine.clone()) {
            return Ok(e);
        }
        if g.demo.is_none() {
            let addr = "127.0.0.1:0"
                .parse()
                .map_err(|_| AppError::failed("bad loopback address"))?;
            let sim = RainmakerSim::start(SimConfig {
                broker: BrokerChoice::Embedded(addr),
                scenario: Scenario::Demo,
                timing: self.opts.demo_timing.clone(),
                ..SimConfig::default()
            })
            .await
            .map_err(|e| AppError::failed(format!("the demo fleet did not start: {e:#}")))?;
            let dir = std::env::temp_dir().join(format!(
                "greenlight-app-demo-{}-{}",
                std::process::id(),
                self.generation.load(Ordering::SeqCst)
            ));
            g.demo = Some(Demo {
                sim: Arc::new(sim),
                engine: None,
                dir,
            });
        }
        let demo = g
            .demo
            .as_mut()
            .ok_or_else(|| AppError::failed("demo fleet missing"))?;
        // The demo's password and data are throw-away: memory and a temporary
        // directory, never the user's keychain or database.
        let _ = std::fs::remove_dir_all(&demo.dir);
        let secrets = Arc::new(MemorySecretStore::default());
        secrets.set("demo", secret_keys::PASSWORD, &demo.sim.info.password)?;
        let mut cfg = EngineConfig::new(&demo.dir, secrets, &format!("{} (demo)", self.opts.actor));
        cfg.load_saved_accounts = false;
        cfg.cloud_check_interval = Duration::from_secs(30);
        (self.opts.tune)(&mut cfg);
        let engine = Engine::open(cfg).await?;
        let mut account = AccountConfig::rest("demo", &demo.sim.info.http, &demo.sim.info.user)
            .with_mqtt(&demo.sim.info.mqtt);
        if let Some(m) = account.mqtt.as_mut() {
            m.basic_ingest = false; // the embedded broker refuses `$` subscriptions
        }
        engine.add_account(account).await?;
        demo.engine = Some(engine.clone());
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(engine)
    }

    /// Stops showing the demo; returns the user's engine, if it opened.
    pub async fn stop_demo(&self) -> Option<EngineHandle> {
        let mut g = self.engines.lock().await;
        if let Some(e) = g.demo.as_mut().and_then(|d| d.engine.take()) {
            e.shutdown().await;
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        g.real.clone().ok()
    }

    /// Stops every engine (app exit).
    pub async fn shutdown(&self) {
        let mut g = self.engines.lock().await;
        if let Some(e) = g.demo.as_mut().and_then(|d| d.engine.take()) {
            e.shutdown().await;
        }
        if let Some(d) = g.demo.take() {
            let _ = std::fs::remove_dir_all(&d.dir);
        }
        if let Ok(e) = &g.real {
            e.shutdown().await;
        }
    }
}

/// Opens the OS keychain and checks that it answers (a Secret Service may be
/// registered on D-Bus yet fail every call, e.g. no keyring daemon).
async fn open_keychain() -> Result<Arc<dyn SecretStore>, String> {
    let probe = tokio::task::spawn_blocking(|| -> Result<KeyringSecretStore, SecretError> {
        let s = KeyringSecretStore::open()?;
        s.get("greenlight-probe", "none")?;
        Ok(s)
    });
    match tokio::time::timeout(Duration::from_secs(5), probe).await {
        Ok(Ok(Ok(s))) => Ok(Arc::new(s)),
        Ok(Ok(Err(e))) => Err(e.to_string()),
        Ok(Err(e)) => Err(format!("keychain check crashed: {e}")),
        Err(_) => Err("the keychain did not answer within 5 s".into()),
    }
}
