//! The data directory is its user's alone: created 0700, its files 0600
//! (Unix). It holds no secrets, but it does hold account emails, server
//! URLs, node names and the history, which other local users have no
//! business reading; and the control socket in it accepts whoever can reach
//! it. A directory or file found looser (made by an older Greenlight, or
//! under a permissive umask) is tightened, and the change is logged.
//!
//! Elsewhere (Windows) a user's profile directory is already private to
//! them through its ACL, which new files inherit: nothing is changed there.

use std::path::Path;

use crate::error::{Error, Result};

/// The data directory's mode on Unix.
pub const DIR_MODE: u32 = 0o700;
/// The mode of every file Greenlight keeps in the data directory on Unix.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and its missing parents) so that only its user can enter
/// it, and tightens it if it already exists with more permissions.
///
/// Missing parents get the default permissions: only the data directory
/// itself is Greenlight's to decide.
pub fn create_dir(dir: &Path) -> Result<()> {
    let io = |source| Error::Io {
        what: format!("creating data directory {}", dir.display()),
        source,
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    match builder.create(dir) {
        Ok(()) => {}
        // Made by another process just now, or long ago: tightened below.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(io(e)),
    }
    tighten(dir, DIR_MODE);
    Ok(())
}

/// Tightens a file Greenlight keeps in the data directory to 0600 if it
/// exists with more permissions (Unix; nothing elsewhere). A file that is
/// not there is not an error: SQLite's `-wal` and `-shm` come and go.
pub fn tighten_file(path: &Path) {
    tighten(path, FILE_MODE);
}

/// Options that create a file 0600 (Unix) for the data directory.
pub fn file_options() -> std::fs::OpenOptions {
    #[allow(unused_mut)] // Only Unix sets a mode.
    let mut o = std::fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(FILE_MODE);
    }
    o
}

/// Removes every permission beyond `mode` from `path`, logging what changed.
/// A failure is logged, not returned: a directory the user made and we
/// cannot change (not theirs) still works as before.
#[cfg(unix)]
fn tighten(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    // Not `metadata`: a symbolic link's target is not ours to change.
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.file_type().is_symlink() {
        return;
    }
    let was = meta.permissions().mode() & 0o7777;
    if was & !mode == 0 {
        return;
    }
    let now = was & mode;
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(now)) {
        Ok(()) => tracing::warn!(
            "{} was readable by other users ({was:04o}): now {now:04o}",
            path.display()
        ),
        Err(e) => tracing::warn!(
            "{} is readable by other users ({was:04o}) and could not be made private: {e}",
            path.display()
        ),
    }
}

#[cfg(not(unix))]
fn tighten(_path: &Path, _mode: u32) {}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn fresh(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("gl-private-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// Every file the data directory holds while an engine owns it.
    fn assert_private(d: &Path) {
        assert_eq!(mode(d), 0o700, "{} is {:o}", d.display(), mode(d));
        for f in [
            "greenlight.db",
            "greenlight.db-wal",
            "greenlight.db-shm",
            "owner.lock",
        ] {
            let p = d.join(f);
            assert!(p.exists(), "{} should exist", p.display());
            assert_eq!(mode(&p), 0o600, "{} is {:o}", p.display(), mode(&p));
        }
    }

    #[test]
    fn a_new_data_directory_and_its_files_are_private() {
        let d = fresh("new").join("nested");
        // The lock file first, as the CLI and the app do, then the store.
        let own = crate::control::claim(&d, "test", false).unwrap().unwrap();
        let s = crate::store::Store::open(&d).unwrap();
        s.save_account(&crate::AccountConfig::rest(
            "a",
            "https://127.0.0.1",
            "me@example.com",
        ))
        .unwrap();
        assert_private(&d);
        drop((s, own));
        std::fs::remove_dir_all(d.parent().unwrap()).unwrap();
    }

    #[test]
    fn an_existing_open_data_directory_is_tightened() {
        let d = fresh("old");
        {
            let s = crate::store::Store::open(&d).unwrap();
            s.save_account(&crate::AccountConfig::rest(
                "a",
                "https://127.0.0.1",
                "me@example.com",
            ))
            .unwrap();
        }
        // As an older Greenlight left it under umask 022.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        for f in ["greenlight.db", "greenlight.db-wal", "greenlight.db-shm"] {
            let p = d.join(f);
            if !p.exists() {
                std::fs::write(&p, b"").unwrap();
            }
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::fs::write(d.join("owner.lock"), b"").unwrap();
        std::fs::set_permissions(d.join("owner.lock"), std::fs::Permissions::from_mode(0o666))
            .unwrap();
        let own = crate::control::claim(&d, "test", false).unwrap().unwrap();
        let s = crate::store::Store::open(&d).unwrap();
        assert_eq!(s.accounts().unwrap().len(), 1, "nothing lost");
        assert_private(&d);
        drop((s, own));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_is_tightened_without_adding_permissions() {
        let d = std::env::temp_dir().join(format!("gl-private-{}", std::process::id()));
        create_dir(&d).unwrap();
        let f = d.join("f");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o444)).unwrap();
        tighten_file(&f);
        // Read-only for others and the group removed; the owner's
        // read-only bit is kept, not widened to write.
        assert_eq!(mode(&f), 0o400);
        tighten_file(&d.join("absent"));
        let _ = std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
