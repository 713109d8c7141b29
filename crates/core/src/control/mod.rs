//! One engine per data directory. Whichever process runs the engine — the
//! `greenlight watch` daemon, the desktop app, or a one-shot command when
//! neither runs — owns the directory: it holds an exclusive lock on
//! `owner.lock` (released by the OS when the process ends, crash included)
//! and, if it serves others, listens on `control.sock` beside it (mode
//! 0600 in a 0700 directory). Every other process is a client: it gets an
//! [`EngineHandle`](crate::EngineHandle) whose requests travel over the
//! socket, so the CLI's and the app's code is the same either way.
//!
//! The protocol (`wire.rs`) is newline-delimited JSON framed by
//! `tokio-util`'s `LinesCodec`: `{"v":1,"id":7,"call":{"method":"pending"}}`
//! is answered by `{"id":7,"ok":[...]}` or `{"id":7,"err":{...}}`, and
//! every event of the owner's engine arrives as `{"event":{...}}`. The
//! requests are the engine handle's own requests, so there is one API.
//! Each client says what it is when it connects ([`ClientKind`]); the owner
//! counts the apps attached ([`Ownership::attached_apps`]), so the daemon
//! leaves desktop notifications to an app while one is there.
//!
//! Files: `mod.rs` (ownership), `wire.rs` (messages), `server.rs` (the
//! owner's side), `client.rs` (a remote handle).

#[cfg(unix)]
mod client;
#[cfg(unix)]
mod server;
mod wire;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

#[cfg(unix)]
pub use client::{connect, connect_as};
#[cfg(unix)]
pub use server::serve;
/// The line parsers of both sides, for the fuzz targets (`crate::fuzz_api`).
#[cfg(feature = "fuzzing")]
pub(crate) use wire::{read_owner_line, read_request, Envelope, OwnerLine, MAX_LINE};
pub use wire::{ClientKind, PROTOCOL};

/// Where Unix domain sockets are missing (Windows, until the named-pipe
/// transport exists), nobody serves: every process runs its own engine,
/// and the lock still keeps two from running at once.
#[cfg(not(unix))]
pub async fn connect(
    _dir: &Path,
    _secrets: std::sync::Arc<dyn crate::secrets::SecretStore>,
) -> Result<Option<crate::EngineHandle>> {
    Ok(None)
}

/// See the Unix version; here nobody serves.
#[cfg(not(unix))]
pub async fn connect_as(
    _dir: &Path,
    _secrets: std::sync::Arc<dyn crate::secrets::SecretStore>,
    _kind: ClientKind,
) -> Result<Option<crate::EngineHandle>> {
    Ok(None)
}

/// See the Unix version; here nothing is served.
#[cfg(not(unix))]
pub fn serve(
    _own: &Ownership,
    _handle: crate::EngineHandle,
) -> Result<tokio::task::JoinHandle<()>> {
    Err(Error::Config(
        "the control socket is not available on this platform yet".into(),
    ))
}

use crate::error::{Error, Result};
use crate::model::Millis;

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "owner.lock";
/// The control socket's name in the data directory.
pub const SOCKET_FILE: &str = "control.sock";

/// The longest socket path used as is: a Unix socket address holds 108
/// bytes on Linux and 104 on macOS, terminator included.
const MAX_SOCKET_PATH: usize = 100;

/// Where the control socket of `dir` lives: inside it, or — when that path
/// is too long for a socket address — under a name derived from the
/// directory in the user's private runtime directory (`$XDG_RUNTIME_DIR`,
/// 0700 and per user). Never in a shared temporary directory, where another
/// user could put a socket of their own first.
pub fn socket_path(dir: &Path) -> Result<PathBuf> {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    socket_path_in(dir, runtime)
}

fn socket_path_in(dir: &Path, runtime: Option<PathBuf>) -> Result<PathBuf> {
    let inside = dir.join(SOCKET_FILE);
    if inside.as_os_str().len() <= MAX_SOCKET_PATH {
        return Ok(inside);
    }
    let Some(runtime) = runtime else {
        return Err(Error::Config(format!(
            "the data directory's path is too long for a control socket ({} bytes; at most {MAX_SOCKET_PATH}) and XDG_RUNTIME_DIR is not set: use a shorter --data-dir",
            inside.as_os_str().len()
        )));
    };
    use sha2::Digest;
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let digest = sha2::Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    let name: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    let path = runtime.join(format!("greenlight-{name}.sock"));
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(Error::Config(format!(
            "neither the data directory nor XDG_RUNTIME_DIR ({}) leaves room for a control socket path: use a shorter --data-dir",
            runtime.display()
        )));
    }
    Ok(path)
}

/// Who owns a data directory, as written in its lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Process id.
    pub pid: u32,
    /// `daemon`, `app` or `command` (a one-shot CLI command).
    pub kind: String,
    /// Since when.
    pub since: Millis,
    /// The owner's version.
    pub version: String,
    /// It answers on the control socket.
    pub serves: bool,
}

/// The ownership of a data directory, held while the value lives.
#[derive(Debug)]
pub struct Ownership {
    file: File,
    dir: PathBuf,
    owner: Owner,
    /// How many app clients are attached (kept by the server).
    apps: Arc<watch::Sender<usize>>,
}

impl Ownership {
    /// Who owns it (this process).
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// How many clients that said they are the app ([`ClientKind::App`])
    /// are connected to the control socket now; it changes as they come
    /// and go. Always 0 while nothing is served.
    pub fn attached_apps(&self) -> watch::Receiver<usize> {
        self.apps.subscribe()
    }

    /// The control socket's path (see [`socket_path`]).
    pub fn socket_path(&self) -> Result<PathBuf> {
        socket_path(&self.dir)
    }

    fn write_owner(&mut self) -> Result<()> {
        let text = serde_json::to_string(&self.owner).unwrap_or_default();
        let io = |e| Error::Io {
            what: format!("writing {}", self.dir.join(LOCK_FILE).display()),
            source: e,
        };
        self.file.set_len(0).map_err(io)?;
        self.file.seek(SeekFrom::Start(0)).map_err(io)?;
        self.file.write_all(text.as_bytes()).map_err(io)?;
        self.file.flush().map_err(io)
    }
}

impl Drop for Ownership {
    fn drop(&mut self) {
        if self.owner.serves {
            if let Ok(p) = self.socket_path() {
                let _ = std::fs::remove_file(p);
            }
        }
        // Leave an empty lock file: "nobody" to readers.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

fn lock_file(dir: &Path) -> Result<File> {
    // The socket in the directory accepts anyone who can reach it.
    crate::private::create_dir(dir)?;
    let path = dir.join(LOCK_FILE);
    let file = crate::private::file_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::Io {
            what: format!("opening {}", path.display()),
            source: e,
        })?;
    crate::private::tighten_file(&path);
    Ok(file)
}

/// Takes the directory if nobody owns it. `None`: someone does (see
/// [`owner`]).
pub fn claim(dir: &Path, kind: &str, serves: bool) -> Result<Option<Ownership>> {
    let file = lock_file(dir)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(Error::Io {
                what: format!("locking {}", dir.join(LOCK_FILE).display()),
                source: e,
            })
        }
    }
    let mut own = Ownership {
        file,
        dir: dir.to_path_buf(),
        owner: Owner {
            pid: std::process::id(),
            kind: kind.to_string(),
            since: crate::model::now_ms(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            serves,
        },
        apps: Arc::new(watch::Sender::new(0)),
    };
    own.write_owner()?;
    Ok(Some(own))
}

/// Who owns the directory now, if anyone (a lock file whose lock nobody
/// holds is a stale one from a process that ended).
pub fn owner(dir: &Path) -> Option<Owner> {
    let mut file = OpenOptions::new()
        .read(true)
        .open(dir.join(LOCK_FILE))
        .ok()?;
    match file.try_lock_shared() {
        // Nobody holds it.
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(_) => {
            let mut text = String::new();
            file.read_to_string(&mut text).ok()?;
            serde_json::from_str(&text).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_directory_too_deep_for_a_socket_address_gets_one_in_the_runtime_dir() {
        let short = Path::new("/home/me/.local/share/greenlight");
        assert_eq!(socket_path(short).unwrap(), short.join(SOCKET_FILE));
        let deep = Path::new("/home/me").join("very-long-directory-name/".repeat(6));
        let runtime = PathBuf::from("/run/user/1000");
        assert!(
            socket_path_in(&deep, None).is_err(),
            "never a shared temporary directory"
        );
        let p = socket_path_in(&deep, Some(runtime.clone())).unwrap();
        assert!(p.starts_with(&runtime), "{}", p.display());
        assert!(p.as_os_str().len() <= MAX_SOCKET_PATH);
        assert_eq!(p, socket_path_in(&deep, Some(runtime)).unwrap(), "stable");
    }

    #[test]
    fn one_owner_at_a_time_and_a_released_lock_is_nobody() {
        let dir = std::env::temp_dir().join(format!("greenlight-own-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = claim(&dir, "daemon", true).unwrap().expect("free");
        assert!(claim(&dir, "app", true).unwrap().is_none(), "taken");
        let o = owner(&dir).expect("an owner");
        assert_eq!((o.kind.as_str(), o.pid), ("daemon", std::process::id()));
        drop(first);
        assert!(owner(&dir).is_none(), "released");
        let again = claim(&dir, "app", false).unwrap();
        assert!(again.is_some());
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Waits (at most 10 s) for an event of `rx` that `f` accepts.
    #[cfg(unix)]
    async fn heard(
        rx: &mut tokio::sync::broadcast::Receiver<crate::Event>,
        f: impl Fn(&crate::Event) -> bool,
    ) -> bool {
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while let Ok(e) = rx.recv().await {
                if f(&e) {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false)
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_owner_counts_attached_apps_and_a_pause_reaches_everyone() {
        use crate::{Engine, EngineConfig, Event, MemorySecretStore};
        use std::time::Duration;
        let dir = std::env::temp_dir().join(format!("greenlight-apps-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let own = claim(&dir, "daemon", true).unwrap().expect("free");
        let secrets: Arc<dyn crate::SecretStore> = Arc::new(MemorySecretStore::default());
        let engine = Engine::open(EngineConfig::new(&dir, secrets.clone(), "owner"))
            .await
            .unwrap();
        let server = serve(&own, engine.clone()).unwrap();
        let mut apps = own.attached_apps();
        assert_eq!(*apps.borrow_and_update(), 0);
        let ten = Duration::from_secs(10);

        // A command is no app; its hello is read before its requests.
        let cmd = connect(&dir, secrets.clone())
            .await
            .unwrap()
            .expect("served");
        assert!(!cmd.notifications_paused().await.unwrap());
        assert_eq!(*apps.borrow_and_update(), 0, "a command is not an app");

        let app = connect_as(&dir, secrets.clone(), ClientKind::App)
            .await
            .unwrap()
            .expect("served");
        let mut app_events = app.subscribe();
        tokio::time::timeout(ten, apps.wait_for(|n| *n == 1))
            .await
            .expect("the app is counted")
            .unwrap();

        // Paused through one client: the owner holds it (in its store),
        // and the owner and the other clients hear it.
        let mut owner_events = engine.subscribe();
        cmd.set_notifications_paused(true).await.unwrap();
        assert!(engine.notifications_paused().await.unwrap());
        assert!(app.notifications_paused().await.unwrap());
        let paused = |e: &Event| matches!(e, Event::NotificationsPaused { paused: true });
        assert!(heard(&mut owner_events, paused).await, "the owner hears it");
        assert!(heard(&mut app_events, paused).await, "the app hears it");

        // The app leaves: it is no longer counted.
        app.shutdown().await;
        tokio::time::timeout(ten, apps.wait_for(|n| *n == 0))
            .await
            .expect("the app's leaving is counted")
            .unwrap();

        cmd.shutdown().await;
        server.abort();
        engine.shutdown().await;
        drop(own);
        // Kept in the data directory: a new engine on it is still paused.
        let engine = Engine::open(EngineConfig::new(&dir, secrets, "next"))
            .await
            .unwrap();
        assert!(engine.notifications_paused().await.unwrap());
        engine.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_call_the_owner_does_not_know_is_answered_under_its_id() {
        use crate::{Engine, EngineConfig, MemorySecretStore};
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let dir = std::env::temp_dir().join(format!("greenlight-newer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let own = claim(&dir, "daemon", true).unwrap().expect("free");
        let secrets = Arc::new(MemorySecretStore::default());
        let engine = Engine::open(EngineConfig::new(&dir, secrets, "owner"))
            .await
            .unwrap();
        let server = serve(&own, engine.clone()).unwrap();
        let mut s = tokio::net::UnixStream::connect(own.socket_path().unwrap())
            .await
            .unwrap();
        s.write_all(b"{\"v\":1,\"id\":5,\"call\":{\"method\":\"from_the_future\"}}\n")
            .await
            .unwrap();
        let mut lines = BufReader::new(s).lines();
        let answer = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while let Ok(Some(l)) = lines.next_line().await {
                let v: serde_json::Value = serde_json::from_str(&l).unwrap();
                if v.get("id").is_some() {
                    return v;
                }
            }
            panic!("the owner closed the connection");
        })
        .await
        .expect("an answer");
        assert_eq!(answer["id"], 5, "{answer}");
        assert!(answer["err"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not know")));
        server.abort();
        engine.shutdown().await;
        drop(own);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
