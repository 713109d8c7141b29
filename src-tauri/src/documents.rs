//! Files the user chose, made into paths Greenlight can open again later.
//!
//! On a desktop the picker (or the typed field) gives a path or a `file://`
//! URL, used as it is: a renewed certificate written over the old file is
//! picked up at the next connection. A phone's picker gives a document URL
//! instead (Android `content://`, an iOS security-scoped file URL) that
//! only the system opens, and only while the grant lasts: its bytes are
//! read once, through the fs plugin, and kept as a copy in the data
//! directory's `files/` (owner-only), which the engine then reads like any
//! other file.

use std::path::{Path, PathBuf};

use crate::commands::chosen_file;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// A CA, client certificate or key file: a few kilobytes; a megabyte is
/// already a wrong file.
pub const CERTIFICATE_LIMIT: u64 = 1 << 20;

/// A firmware image: an ESP32's largest app partition is well below this.
pub const FIRMWARE_LIMIT: u64 = 16 << 20;

/// Where the copies of picked documents are kept, inside the data directory.
const FILES: &str = "files";

/// Whether what a dialog returned is a document only the system opens (a
/// phone's picker) rather than a path.
pub fn is_document(s: &str) -> bool {
    match s.trim().split_once("://") {
        // On a phone a file URL may need the system's security scope too.
        Some(("file", _)) => cfg!(mobile),
        Some(_) => true,
        None => false,
    }
}

/// The path to use for what the user chose (`s`: a path, a `file://` URL,
/// or a picker's document URL), reading at most `limit` bytes of a document.
pub fn opened_path(state: &AppState, s: &str, limit: u64) -> AppResult<PathBuf> {
    let s = s.trim();
    if !is_document(s) {
        return chosen_file(s);
    }
    let bytes = shell(state, s)?
        .read_document(s, limit)
        .map_err(|e| AppError::invalid(format!("{s}: {e}")))?;
    keep_copy(state.data_dir(), s, &bytes)
}

/// Writes `bytes` to a document the save dialog returned (a phone's
/// `content://` target), replacing what it held.
pub fn save(state: &AppState, url: &str, bytes: &[u8]) -> AppResult<()> {
    let url = url.trim();
    shell(state, url)?
        .write_document(url, bytes)
        .map_err(|e| AppError::invalid(format!("{url}: {e}; nothing was written")))
}

fn shell(state: &AppState, url: &str) -> AppResult<std::sync::Arc<dyn crate::state::Shell>> {
    state
        .shell()
        .ok_or_else(|| AppError::failed(format!("{url}: the app is not set up yet")))
}

/// Writes `bytes` into `<dir>/files/`, named after the document and its
/// content (the same document picked twice is one file; two documents
/// with one name are two), owner-only.
fn keep_copy(dir: &Path, url: &str, bytes: &[u8]) -> AppResult<PathBuf> {
    if bytes.is_empty() {
        return Err(AppError::invalid(format!("{url} is empty")));
    }
    let files = dir.join(FILES);
    let fail = |what: &Path, e: &dyn std::fmt::Display| {
        AppError::failed(format!("cannot keep a copy in {}: {e}", what.display()))
    };
    greenlight_core::private::create_dir(&files).map_err(|e| fail(&files, &e))?;
    let hash = greenlight_core::tls::fingerprint(bytes);
    let path = files.join(format!("{}-{}", &hash[..12], document_name(url)));
    // Through a temporary file: a crash never leaves half a certificate
    // under the name the account will read.
    let tmp = path.with_extension("part");
    write_private(&tmp, bytes).map_err(|e| fail(&tmp, &e))?;
    std::fs::rename(&tmp, &path).map_err(|e| fail(&path, &e))?;
    Ok(path)
}

/// The document's own name, as far as its URL tells it, made safe as a
/// file name: Android's document ids end in `primary:Download/ca.pem`
/// (percent-encoded).
fn document_name(url: &str) -> String {
    let last = url.rsplit('/').next().unwrap_or_default();
    // A broken escape leaves the name as it came; it is filtered below.
    let decoded = crate::commands::percent_decode(last).unwrap_or_else(|| last.to_string());
    let tail = decoded.rsplit([':', '/']).next().unwrap_or_default();
    let clean: String = tail
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(64)
        .collect();
    if clean.trim_matches('.').is_empty() {
        "document".into()
    } else {
        clean
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = greenlight_core::private::file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{AppOptions, Shell};
    use greenlight_core::blynk::BlynkHandle;
    use greenlight_core::EngineHandle;
    use std::sync::Arc;

    /// A phone's picker: one document, readable through the system only.
    struct Picker {
        url: &'static str,
        bytes: Vec<u8>,
        written: std::sync::Mutex<Option<Vec<u8>>>,
    }

    fn picker(url: &'static str, bytes: Vec<u8>) -> Picker {
        Picker {
            url,
            bytes,
            written: Default::default(),
        }
    }

    impl Shell for Picker {
        fn attach(&self, _: EngineHandle, _: u64) {}
        fn attach_blynk(&self, _: BlynkHandle, _: u64) {}
        fn app_changed(&self, _: bool) {}
        fn paused(&self, _: bool) {}
        fn autostart(&self) -> Option<bool> {
            None
        }
        fn set_autostart(&self, _: bool) -> Result<(), String> {
            Err("no".into())
        }
        fn read_document(&self, url: &str, limit: u64) -> Result<Vec<u8>, String> {
            if url != self.url {
                return Err("no such document".into());
            }
            if self.bytes.len() as u64 > limit {
                return Err(format!("larger than {limit} bytes"));
            }
            Ok(self.bytes.clone())
        }
        fn write_document(&self, url: &str, bytes: &[u8]) -> Result<(), String> {
            if url != self.url {
                return Err("no such document".into());
            }
            *self.written.lock().unwrap() = Some(bytes.to_vec());
            Ok(())
        }
    }

    fn state(dir: &Path, picker: Picker) -> (AppState, Arc<Picker>) {
        let mut opts = AppOptions::from_env();
        opts.data_dir = dir.to_path_buf();
        opts.memory_secrets = true;
        let s = AppState::new(opts);
        let picker = Arc::new(picker);
        s.set_shell(picker.clone());
        (s, picker)
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("greenlight-docs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const URL: &str =
        "content://com.android.externalstorage.documents/document/primary%3ADownload%2Fca.pem";

    #[test]
    fn a_picked_document_becomes_a_private_copy_in_the_data_directory() {
        let dir = tempdir("copy");
        let pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_vec();
        let (s, _) = state(&dir, picker(URL, pem.clone()));
        let path = opened_path(&s, URL, CERTIFICATE_LIMIT).expect("imported");
        assert!(path.starts_with(dir.join("files")), "{}", path.display());
        assert!(path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .ends_with("-ca.pem"));
        assert_eq!(std::fs::read(&path).unwrap(), pem);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&dir.join("files")), 0o700);
        }
        // Picked again: the same copy, not a second one.
        assert_eq!(opened_path(&s, URL, CERTIFICATE_LIMIT).unwrap(), path);
        assert_eq!(std::fs::read_dir(dir.join("files")).unwrap().count(), 1);
        // A typed path is used as it is.
        assert_eq!(
            opened_path(&s, "/etc/ssl/ca.pem", CERTIFICATE_LIMIT).unwrap(),
            PathBuf::from("/etc/ssl/ca.pem")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_document_too_large_or_unreadable_is_said_and_nothing_is_kept() {
        let dir = tempdir("large");
        let (s, _) = state(&dir, picker(URL, vec![b'x'; 2048]));
        let e = opened_path(&s, URL, 1024).expect_err("too large");
        assert!(e.to_string().contains("larger than 1024 bytes"), "{e}");
        let e = opened_path(&s, "content://elsewhere/document/9", 1 << 20).expect_err("unreadable");
        assert!(e.to_string().contains("content://elsewhere"), "{e}");
        assert!(!dir.join("files").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_export_to_a_phones_save_target_is_written_through_the_system() {
        let dir = tempdir("save");
        const SAVE: &str = "content://com.android.providers.downloads.documents/document/12";
        let (s, p) = state(&dir, picker(SAVE, Vec::new()));
        assert!(is_document(SAVE));
        assert!(!is_document("/home/ana/history.csv"));
        save(&s, SAVE, b"node,result\n").expect("written");
        assert_eq!(
            p.written.lock().unwrap().as_deref(),
            Some(&b"node,result\n"[..])
        );
        let e = save(&s, "content://elsewhere/7", b"x").expect_err("not granted");
        assert!(e.to_string().contains("nothing was written"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn document_names_are_safe_file_names() {
        assert_eq!(document_name(URL), "ca.pem");
        assert_eq!(document_name("content://x/document/msf%3A1000"), "1000");
        assert_eq!(
            document_name("content://x/document/..%2F..%2Fetc%2Fpasswd"),
            "passwd"
        );
        assert_eq!(document_name("content://x/document/%2E%2E"), "document");
        assert_eq!(document_name("content://x/"), "document");
    }
}
