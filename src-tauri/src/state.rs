//! What the app keeps while it runs: the engine on the user's data (shared
//! with the `greenlight` CLI), the demo fleet's engine when the demo is on,
//! whether a keychain answered, and the notification rules. Commands ask
//! [`AppState::engine`] for whichever engine is showing.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use greenlight_core::blynk::{BlynkHandle, BlynkTracker, TrackerConfig};
use greenlight_core::demo::{DemoProcess, DemoSpeed};
use greenlight_core::{control, demo as demo_fleet};
use greenlight_core::{
    Engine, EngineConfig, EngineHandle, KeyringSecretStore, MemorySecretStore, Notifier,
    SecretError, SecretStore,
};
use serde::Serialize;

use crate::error::{AppError, AppResult};

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
    pub demo_speed: DemoSpeed,
    /// The demo's simulator; `None`: found beside the app or on PATH
    /// ([`greenlight_core::demo::find_simulator`]).
    pub simulator: Option<PathBuf>,
    /// Engine timers (tests shorten them).
    pub tune: fn(&mut EngineConfig),
    /// How long the opening waits for a one-shot command to let go of the
    /// data directory before it says so (the window is up meanwhile).
    pub launch_wait: Duration,
}

impl AppOptions {
    /// The defaults for a real run: platform data directory, OS keychain.
    pub fn from_env() -> AppOptions {
        let data_dir = data_dir_arg(std::env::args())
            // GREENLIGHT_DATA_DIR, else the directory the CLI uses too.
            .or_else(greenlight_core::setup::default_data_dir)
            .unwrap_or_else(|| std::env::temp_dir().join("greenlight"));
        let actor = std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .unwrap_or_else(|_| "you".into());
        let demo_speed = DemoSpeed::from_env();
        AppOptions {
            data_dir,
            actor,
            memory_secrets: false,
            demo_speed,
            simulator: None,
            tune: |_| {},
            launch_wait: LAUNCH_WAIT,
        }
    }
}

/// Why the user's engine is not open.
enum NotOpen {
    /// Someone else holds the data directory (a one-shot `greenlight`
    /// command following a job, say): worth trying again once it is done.
    Held(String),
    /// It cannot be opened at all (a broken database, a directory that
    /// cannot be created).
    Failed(String),
}

/// How long the opening waits for a one-shot command to let go of the data
/// directory before the window says who holds it (the engine follows in the
/// background once it is free).
pub const LAUNCH_WAIT: Duration = Duration::from_secs(2);

/// The user's engine: the daemon's, when `greenlight watch` runs it (the
/// app is then its client, and says it is the app: the daemon leaves the
/// notifications to it while it is attached), or the
/// app's own, which then owns the data directory and serves it to every
/// `greenlight` command. A one-shot command holding the directory is
/// waited for until `deadline` (`None`: for as long as it holds it).
async fn open_real(
    cfg: EngineConfig,
    secrets: Arc<dyn SecretStore>,
    deadline: Option<std::time::Instant>,
) -> Result<(EngineHandle, Option<control::Ownership>), NotOpen> {
    let dir = cfg.data_dir.clone();
    loop {
        match control::connect_as(&dir, secrets.clone(), control::ClientKind::App).await {
            Ok(Some(h)) => {
                tracing::info!(dir = %dir.display(), "the greenlight daemon runs the engine; the app is its client");
                return Ok((h, None));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "control socket"),
        }
        match control::claim(&dir, "app", true) {
            Ok(Some(own)) => {
                let h = Engine::open(cfg).await.map_err(|e| {
                    NotOpen::Failed(format!(
                        "the local database in {} could not be opened: {}",
                        dir.display(),
                        e.plain()
                    ))
                })?;
                if let Err(e) = control::serve(&own, h.clone()) {
                    // Commands then wait for the app, or run after it; the
                    // app itself works.
                    tracing::warn!(error = %e, "the control socket could not be opened");
                }
                return Ok((h, Some(own)));
            }
            Ok(None) => {}
            Err(e) => return Err(NotOpen::Failed(format!("{}: {}", dir.display(), e.plain()))),
        }
        if deadline.is_some_and(|d| std::time::Instant::now() > d) {
            let who = control::owner(&dir)
                .map(|o| format!("a greenlight {} (pid {})", o.kind, o.pid))
                .unwrap_or_else(|| "another process".into());
            return Err(NotOpen::Held(format!(
                "{who} is using {}; Greenlight shows your devices as soon as it is done",
                dir.display()
            )));
        }
        // No notification of a released lock exists to wait on; a fifth of
        // a second is well below what a person notices.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The Blynk tracker beside the user's engine. One poller per data
/// directory: as the daemon's client (`background` false) the app leaves
/// the timer polls to it (`greenlight watch` follows every campaign).
async fn open_blynk(cfg: &EngineConfig, background: bool) -> Result<BlynkHandle, String> {
    BlynkTracker::open_beside(
        cfg,
        TrackerConfig {
            background,
            ..TrackerConfig::default()
        },
    )
    .await
    .map_err(|e| format!("the Blynk tracker could not start: {e}"))
}

/// `--data-dir PATH` or `--data-dir=PATH` on the command line: a second
/// profile (and what the end-to-end tests give each app they start).
fn data_dir_arg(args: impl Iterator<Item = String>) -> Option<PathBuf> {
    let mut args = args.skip(1);
    while let Some(a) = args.next() {
        if a == "--data-dir" {
            return args.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--data-dir=") {
            return Some(PathBuf::from(v));
        }
    }
    None
}

/// The demo fleet: the simulator process and the engine and tracker
/// watching it.
struct Demo {
    process: DemoProcess,
    engine: EngineHandle,
    blynk: BlynkHandle,
    dir: PathBuf,
}

struct Engines {
    real: Result<EngineHandle, String>,
    /// The data directory, while this app runs its engine (and serves it
    /// to `greenlight` commands); `None` while it is the daemon's client.
    owned: Option<control::Ownership>,
    blynk: Result<BlynkHandle, String>,
    demo: Option<Demo>,
    /// Set while a one-shot command holds the directory at launch: what
    /// [`AppState::finish_opening`] needs to open the engine once it lets go.
    waiting: Option<(EngineConfig, Arc<dyn SecretStore>)>,
    /// True from launch until [`AppState::open_user`] has asked the keychain
    /// and tried the data directory.
    opening: bool,
}

/// What the state needs from the app around it, without knowing its
/// runtime type (so commands stay plain functions the mock runtime can call).
pub trait Shell: Send + Sync {
    /// Forward this engine's events to the window, tray and notifier.
    fn attach(&self, engine: EngineHandle, generation: u64);
    /// Forward this Blynk tracker's events likewise.
    fn attach_blynk(&self, blynk: BlynkHandle, generation: u64);
    /// Tell the window to reload (demo on/off).
    fn app_changed(&self, demo: bool);
    /// Reflect "pause notifications" in the tray menu.
    fn paused(&self, paused: bool);
    /// Whether the app starts at login; `None` where that is not offered
    /// (mobile, tests).
    fn autostart(&self) -> Option<bool>;
    /// Turns start-at-login on or off.
    fn set_autostart(&self, on: bool) -> Result<(), String>;
    /// Reads a document the system's file picker returned as a URL (an
    /// Android `content://` document, an iOS file URL that must be opened
    /// through the system), at most `limit` bytes.
    fn read_document(&self, url: &str, limit: u64) -> Result<Vec<u8>, String>;
    /// Writes a document the save dialog returned as a URL (an Android
    /// `content://` target), replacing its content.
    fn write_document(&self, url: &str, bytes: &[u8]) -> Result<(), String>;
}

impl<R: tauri::Runtime> Shell for tauri::AppHandle<R> {
    fn attach(&self, engine: EngineHandle, generation: u64) {
        crate::events::attach(self, engine, generation);
    }
    fn attach_blynk(&self, blynk: BlynkHandle, generation: u64) {
        crate::events::attach_blynk(self, blynk, generation);
    }
    fn app_changed(&self, demo: bool) {
        use tauri_specta::Event as _;
        let _ = crate::events::AppChanged { demo }.emit(self);
    }
    fn paused(&self, paused: bool) {
        crate::tray::reflect_paused(self, paused);
    }
    #[cfg(not(any(target_os = "android", target_os = "ios")))]
    fn autostart(&self) -> Option<bool> {
        use tauri::Manager;
        self.try_state::<tauri_plugin_autostart::AutoLaunchManager>()
            .and_then(|m| m.is_enabled().ok())
    }
    #[cfg(not(any(target_os = "android", target_os = "ios")))]
    fn set_autostart(&self, on: bool) -> Result<(), String> {
        use tauri::Manager;
        let m = self
            .try_state::<tauri_plugin_autostart::AutoLaunchManager>()
            .ok_or("start at login is not available here")?;
        if on { m.enable() } else { m.disable() }.map_err(|e| e.to_string())
    }
    fn read_document(&self, url: &str, limit: u64) -> Result<Vec<u8>, String> {
        use std::io::Read;
        let mut opts = tauri_plugin_fs::OpenOptions::default();
        opts.read(true);
        let file = open_document(self, url, opts)?;
        let mut bytes = Vec::new();
        file.take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| format!("it could not be read: {e}"))?;
        if bytes.len() as u64 > limit {
            return Err(format!("it is larger than {limit} bytes"));
        }
        Ok(bytes)
    }
    fn write_document(&self, url: &str, bytes: &[u8]) -> Result<(), String> {
        use std::io::Write;
        let mut opts = tauri_plugin_fs::OpenOptions::default();
        opts.write(true).create(true).truncate(true);
        let mut file = open_document(self, url, opts)?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("it could not be written: {e}"))
    }
    #[cfg(any(target_os = "android", target_os = "ios"))]
    fn autostart(&self) -> Option<bool> {
        None
    }
    #[cfg(any(target_os = "android", target_os = "ios"))]
    fn set_autostart(&self, _on: bool) -> Result<(), String> {
        Err("start at login is not available on mobile".into())
    }
}

/// Opens a picker's document through the fs plugin (the only way to a
/// `content://` document; on iOS it also starts the security scope).
fn open_document<R: tauri::Runtime>(
    app: &tauri::AppHandle<R>,
    url: &str,
    opts: tauri_plugin_fs::OpenOptions,
) -> Result<std::fs::File, String> {
    use tauri::Manager;
    let fs = app
        .try_state::<tauri_plugin_fs::Fs<R>>()
        .ok_or("this build of Greenlight cannot open documents from the file picker")?;
    let parsed = tauri::Url::parse(url).map_err(|e| e.to_string())?;
    fs.open(tauri_plugin_fs::FilePath::Url(parsed), opts)
        .map_err(|e| format!("it could not be opened: {e}"))
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
    /// Whether a keychain answered at start (`Available` until it is asked).
    keychain: Mutex<KeychainStatus>,
    /// Whether the window was told "opening", so it must reload once open.
    told_opening: std::sync::atomic::AtomicBool,
    /// Whether the OS lets us notify, and whether this run asked.
    pub permission: crate::notify::Permission,
    opts: AppOptions,
}

impl AppState {
    /// The state as the window first sees it: nothing opened yet, so the
    /// launch never waits on the keychain or the disk (a Secret Service
    /// that asks to be unlocked, a slow disk, a command holding the
    /// directory). [`AppState::open_user`] does that work in a task.
    pub fn new(opts: AppOptions) -> AppState {
        const OPENING: &str = "Greenlight is opening your data";
        AppState {
            engines: tokio::sync::Mutex::new(Engines {
                real: Err(OPENING.into()),
                owned: None,
                blynk: Err(OPENING.into()),
                demo: None,
                waiting: None,
                opening: true,
            }),
            generation: AtomicU64::new(0),
            notifier: Mutex::new(Notifier::default()),
            keychain: Mutex::new(KeychainStatus::Available),
            told_opening: std::sync::atomic::AtomicBool::new(false),
            permission: crate::notify::Permission::default(),
            opts,
            shell: std::sync::OnceLock::new(),
        }
    }

    /// Opens the user's engine: asks the keychain, then opens the data
    /// directory (or attaches to the daemon that has it). A database that
    /// cannot be opened does not stop the app: the demo still works and the
    /// error is shown. True when a window was told "opening" meanwhile and
    /// must reload to show what opened.
    pub async fn open_user(&self) -> bool {
        let opts = &self.opts;
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
        *lock(&self.keychain) = keychain;
        let mut cfg = EngineConfig::new(&opts.data_dir, secrets.clone(), &opts.actor);
        (opts.tune)(&mut cfg);
        let deadline = std::time::Instant::now() + opts.launch_wait;
        let (real, owned, blynk, waiting) =
            match open_real(cfg.clone(), secrets.clone(), Some(deadline)).await {
                Ok((h, owned)) => {
                    let blynk = open_blynk(&cfg, owned.is_some()).await;
                    (Ok(h), owned, blynk, None)
                }
                Err(NotOpen::Failed(e)) => {
                    let blynk = open_blynk(&cfg, true).await;
                    (Err(e), None, blynk, None)
                }
                // The window says so; the engine follows.
                Err(NotOpen::Held(e)) => (Err(e.clone()), None, Err(e), Some((cfg, secrets))),
            };
        let mut g = self.engines.lock().await;
        (g.real, g.owned, g.blynk, g.waiting) = (real, owned, blynk, waiting);
        g.opening = false;
        self.told_opening.load(Ordering::SeqCst)
    }

    /// Whether passwords can be kept in the OS keychain.
    pub fn keychain(&self) -> KeychainStatus {
        lock(&self.keychain).clone()
    }

    /// Opens the user's engine once a one-shot command that held the data
    /// directory at launch lets go (it may be following a job for
    /// minutes); until then the window shows who holds it. True when it
    /// opened here: the caller forwards its events and reloads the window.
    pub async fn finish_opening(&self) -> bool {
        let Some((cfg, secrets)) = self.engines.lock().await.waiting.clone() else {
            return false;
        };
        let opened = open_real(cfg.clone(), secrets, None).await;
        let blynk = open_blynk(&cfg, !matches!(opened, Ok((_, None)))).await;
        let mut g = self.engines.lock().await;
        g.waiting = None;
        match opened {
            Ok((h, owned)) => {
                g.real = Ok(h);
                g.owned = owned;
                g.blynk = blynk;
                true
            }
            Err(NotOpen::Held(e) | NotOpen::Failed(e)) => {
                g.real = Err(e);
                g.blynk = blynk;
                false
            }
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

    /// Who runs the user's engine: `opening` (not known yet), `app`,
    /// `daemon`, `waiting` (a command holds the directory) or `none`.
    pub async fn engine_owner(&self) -> &'static str {
        let g = self.engines.lock().await;
        if g.opening {
            self.told_opening.store(true, Ordering::SeqCst);
            return "opening";
        }
        match (&g.real, &g.owned) {
            (Err(_), _) if g.waiting.is_some() => "waiting",
            (Err(_), _) => "none",
            (Ok(_), Some(_)) => "app",
            (Ok(_), None) => "daemon",
        }
    }

    /// The engine the window shows: the demo's while the demo is on.
    pub async fn engine(&self) -> AppResult<EngineHandle> {
        let g = self.engines.lock().await;
        if let Some(d) = g.demo.as_ref() {
            return Ok(d.engine.clone());
        }
        g.real.clone().map_err(AppError::failed)
    }

    /// The Blynk tracker the window shows: the demo's while the demo is on.
    pub async fn blynk(&self) -> AppResult<BlynkHandle> {
        let g = self.engines.lock().await;
        if let Some(d) = g.demo.as_ref() {
            return Ok(d.blynk.clone());
        }
        g.blynk.clone().map_err(AppError::failed)
    }

    /// The user's own Blynk tracker.
    pub async fn real_blynk(&self) -> AppResult<BlynkHandle> {
        self.engines
            .lock()
            .await
            .blynk
            .clone()
            .map_err(AppError::failed)
    }

    /// The demo's sample firmware file, while the demo is on.
    pub async fn demo_firmware(&self) -> Option<String> {
        let g = self.engines.lock().await;
        g.demo
            .as_ref()
            .map(|d| d.process.info().firmware.display().to_string())
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

    /// The machine slept or the OS suspended the app: the user's engine
    /// reconnects and sweeps now, and what changed while away reaches the
    /// notifier as ordinary engine events. Not the demo's: its simulator
    /// is a child process that slept with us. When the daemon owns the
    /// engine this asks it for a sweep (it runs its own detector).
    pub async fn resumed(&self) {
        if let Ok(e) = self.real_engine().await {
            if let Err(err) = e.resumed().await {
                tracing::warn!(error = %err, "catching up after a suspend");
            }
        }
    }

    /// Whether the OS lets Greenlight notify, as last read.
    pub fn notification_permission(&self) -> crate::notify::NotificationPermission {
        self.permission.get()
    }

    /// True while the demo fleet is showing.
    pub async fn demo_active(&self) -> bool {
        self.engines.lock().await.demo.is_some()
    }

    /// The demo's simulator, if one is installed (or given).
    pub fn simulator(&self) -> Option<PathBuf> {
        self.opts
            .simulator
            .clone()
            .or_else(greenlight_core::demo::find_simulator)
    }

    /// Where the user's data lives.
    pub fn data_dir(&self) -> &PathBuf {
        &self.opts.data_dir
    }

    /// Starts the demo fleet (or returns the running one's engine): the
    /// simulator as a separate process (`greenlight-sim demo`, installed
    /// beside the app) and a throw-away engine and Blynk tracker on it.
    pub async fn start_demo(&self) -> AppResult<(EngineHandle, Option<BlynkHandle>)> {
        let mut g = self.engines.lock().await;
        if let Some(d) = g.demo.as_ref() {
            return Ok((d.engine.clone(), Some(d.blynk.clone())));
        }
        // One directory per demo started in this process: the generation
        // alone is not unique when one process holds two apps (the tests
        // run several at once), and a second demo would remove the first's
        // data from under it.
        static DEMOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "greenlight-app-demo-{}-{}",
            std::process::id(),
            DEMOS.fetch_add(1, Ordering::SeqCst)
        ));
        // The demo's password and data are throw-away: memory and a
        // temporary directory, never the user's keychain or database.
        let _ = std::fs::remove_dir_all(&dir);
        let exe = self.simulator().ok_or_else(|| {
            AppError::failed(
                "the demo needs the simulator (greenlight-sim), which is not installed beside Greenlight",
            )
        })?;
        let process = DemoProcess::start_with(&exe, self.opts.demo_speed, &dir).await?;
        let info = process.info().clone();
        let mut cfg =
            demo_fleet::engine_config(&info, &dir, &format!("{} (demo)", self.opts.actor))?;
        (self.opts.tune)(&mut cfg);
        let tracker = TrackerConfig {
            poll_interval: Duration::from_secs(2),
            ..TrackerConfig::default()
        };
        let blynk = BlynkTracker::open_beside(&cfg, tracker)
            .await
            .map_err(|e| AppError::failed(format!("the demo Blynk tracker did not start: {e}")))?;
        let (blynk_account, blynk_password) = demo_fleet::blynk_account(&info);
        blynk
            .add_account(blynk_account, &blynk_password)
            .await
            .map_err(|e| AppError::failed(format!("the demo Blynk server: {e}")))?;
        let engine = Engine::open(cfg).await?;
        engine.add_account(demo_fleet::account(&info)).await?;
        g.demo = Some(Demo {
            process,
            engine: engine.clone(),
            blynk: blynk.clone(),
            dir,
        });
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok((engine, Some(blynk)))
    }

    /// Stops the demo (its engine, tracker and simulator); returns the
    /// user's engine and tracker, if they opened.
    pub async fn stop_demo(&self) -> (Option<EngineHandle>, Option<BlynkHandle>) {
        let mut g = self.engines.lock().await;
        if let Some(d) = g.demo.take() {
            d.blynk.shutdown().await;
            d.engine.shutdown().await;
            d.process.stop().await;
            let _ = std::fs::remove_dir_all(&d.dir);
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        (g.real.clone().ok(), g.blynk.clone().ok())
    }

    /// Stops every engine (app exit).
    pub async fn shutdown(&self) {
        let mut g = self.engines.lock().await;
        if let Some(d) = g.demo.take() {
            d.blynk.shutdown().await;
            d.engine.shutdown().await;
            d.process.stop().await;
            let _ = std::fs::remove_dir_all(&d.dir);
        }
        if let Ok(b) = &g.blynk {
            b.shutdown().await;
        }
        if let Ok(e) = &g.real {
            e.shutdown().await;
        }
    }
}

/// A poisoned lock still holds a usable value (a status, the rules).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_from_the_command_line() {
        let a = |v: &[&str]| data_dir_arg(v.iter().map(|s| s.to_string()));
        assert_eq!(a(&["app", "--data-dir", "/x"]), Some(PathBuf::from("/x")));
        assert_eq!(
            a(&["app", "--minimized", "--data-dir=/y"]),
            Some(PathBuf::from("/y"))
        );
        assert_eq!(a(&["app", "--minimized"]), None);
        // The program name is never taken for the flag.
        assert_eq!(a(&["--data-dir=/z"]), None);
    }
}
