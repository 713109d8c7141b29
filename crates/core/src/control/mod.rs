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

use serde::{Deserialize, Serialize};

#[cfg(unix)]
pub use client::connect;
#[cfg(unix)]
pub use server::serve;
pub use wire::PROTOCOL;

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
}

impl Ownership {
    /// Who owns it (this process).
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// The control socket's path.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.join(SOCKET_FILE)
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
            let _ = std::fs::remove_file(self.socket_path());
        }
        // Leave an empty lock file: "nobody" to readers.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

fn lock_file(dir: &Path) -> Result<File> {
    create_private_dir(dir)?;
    let path = dir.join(LOCK_FILE);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::Io {
            what: format!("opening {}", path.display()),
            source: e,
        })
}

/// Creates the data directory readable by its user only (the socket in it
/// accepts anyone who can reach it).
fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        what: format!("creating {}", dir.display()),
        source: e,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    Ok(())
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
}
