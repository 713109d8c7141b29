//! The firmware to upload, validated before anything is sent.
//!
//! A [`Firmware`] is read from disk once; its bytes, build tag, size and
//! SHA-256 are fixed from then on and the upload sends exactly those bytes,
//! so what the user was shown is what the server gets (no second read that
//! could see a file rebuilt in between).

use std::path::Path;
use std::sync::Arc;

use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

use super::error::{BlynkError, BlynkResult};

/// The marker the server looks for: `NUL b u i l d NUL`.
pub const BUILD_MARKER: &[u8] = b"\0build\0";

/// Nothing bigger fits any ESP flash (16 MiB); refusing earlier keeps a
/// wrongly chosen file (a disk image...) out of memory.
pub const MAX_FILE: u64 = 16 * 1024 * 1024;

/// The build tag of a firmware image, read exactly as the server reads it:
/// the value after the *first* `\0build\0`, up to the next NUL (or the end).
/// `None` when there is no marker, or the value is empty or not UTF-8 — the
/// cases in which the server refuses a campaign.
pub fn build_tag(bytes: &[u8]) -> Option<String> {
    let at = bytes
        .windows(BUILD_MARKER.len())
        .position(|w| w == BUILD_MARKER)?
        + BUILD_MARKER.len();
    let rest = &bytes[at..];
    let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    let value = std::str::from_utf8(&rest[..end]).ok()?;
    (!value.is_empty()).then(|| value.to_string())
}

/// A firmware image that passed validation. Cheap to clone (the bytes are shared).
#[derive(Clone)]
pub struct Firmware {
    file_name: String,
    bytes: Arc<[u8]>,
    build: String,
    sha256: String,
}

impl std::fmt::Debug for Firmware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Firmware")
            .field("file_name", &self.file_name)
            .field("size", &self.bytes.len())
            .field("build", &self.build)
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl Firmware {
    /// Reads `path` once and validates it (not empty, not absurdly big, a
    /// build tag present). Only a regular file is read: a directory, a
    /// device, a pipe or a socket is refused, and so is a symbolic link (it
    /// can point anywhere, and be re-pointed after the user chose the file);
    /// the file read is checked to be the one looked at.
    pub fn read(path: &Path) -> BlynkResult<Firmware> {
        use std::io::Read;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let io = |source| BlynkError::Io {
            what: format!("reading {}", path.display()),
            source,
        };
        let meta = std::fs::symlink_metadata(path).map_err(io)?;
        if meta.file_type().is_symlink() {
            let to = std::fs::read_link(path)
                .map(|t| format!(" (to {})", t.display()))
                .unwrap_or_default();
            return Err(BlynkError::Invalid(format!(
                "{} is a symbolic link{to}; choose the firmware file itself",
                path.display()
            )));
        }
        if !meta.is_file() {
            return Err(BlynkError::Invalid(format!(
                "{} is not a file{}",
                path.display(),
                if meta.is_dir() { " (a directory)" } else { "" }
            )));
        }
        if meta.len() > MAX_FILE {
            return Err(BlynkError::NotFirmware {
                file: name,
                size: meta.len(),
            });
        }
        let file = std::fs::File::open(path).map_err(io)?;
        // The file opened must be the regular file looked at, not something
        // swapped in between.
        let opened = file.metadata().map_err(io)?;
        if !opened.is_file() || !same_file(&meta, &opened) {
            return Err(BlynkError::Invalid(format!(
                "{} changed while it was being read; choose it again",
                path.display()
            )));
        }
        let mut bytes = Vec::new();
        file.take(MAX_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        Firmware::from_bytes(&name, bytes)
    }

    /// Validates bytes already in memory (`file_name` is shown and sent as the upload's name).
    pub fn from_bytes(file_name: &str, bytes: Vec<u8>) -> BlynkResult<Firmware> {
        let file = file_name.to_string();
        if bytes.is_empty() {
            return Err(BlynkError::EmptyFirmware { file });
        }
        if bytes.len() as u64 > MAX_FILE {
            return Err(BlynkError::NotFirmware {
                file,
                size: bytes.len() as u64,
            });
        }
        let build = build_tag(&bytes).ok_or(BlynkError::NoBuildTag { file })?;
        let sha256 = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Firmware {
            file_name: file_name.to_string(),
            bytes: bytes.into(),
            build,
            sha256,
        })
    }

    /// The file's name.
    pub fn file_name(&self) -> &str {
        &self.file_name
    }

    /// The build tag (what every updated device will report).
    pub fn build(&self) -> &str {
        &self.build
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// SHA-256 of the bytes, lowercase hex: compare it with the file you built.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The bytes that will be uploaded.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The name sent in the upload: only safe characters, keeping the
    /// extension (the server names its stored copy after it).
    fn upload_name(&self) -> String {
        let n: String = self
            .file_name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            .take(100)
            .collect();
        if n.is_empty() || n.starts_with('.') {
            format!("firmware{n}")
        } else {
            n
        }
    }

    /// The size of the multipart request body the upload sends (what
    /// the server's `web.request.max.size` is compared with).
    pub fn upload_size(&self) -> u64 {
        (self.head("B".repeat(BOUNDARY_LEN).as_str()).len() + self.bytes.len() + tail_len()) as u64
    }

    fn head(&self, boundary: &str) -> String {
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n",
            self.upload_name()
        )
    }

    /// A `multipart/form-data` body with the firmware as the `file` part:
    /// `(content type, body)`. The boundary is random and checked not to
    /// occur in the bytes, so the server reads back exactly these bytes.
    pub(crate) fn multipart(&self) -> (String, Vec<u8>) {
        let mut boundary;
        loop {
            boundary = format!(
                "greenlight-{}",
                Alphanumeric.sample_string(&mut rand::rng(), BOUNDARY_LEN - 11)
            );
            let b = boundary.as_bytes();
            if !self.bytes.windows(b.len()).any(|w| w == b) {
                break;
            }
        }
        let mut body = self.head(&boundary).into_bytes();
        body.reserve(self.bytes.len() + tail_len());
        body.extend_from_slice(&self.bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        (format!("multipart/form-data; boundary={boundary}"), body)
    }
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.len() == b.len() && a.modified().ok() == b.modified().ok()
}

const BOUNDARY_LEN: usize = 40;

fn tail_len() -> usize {
    "\r\n----\r\n".len() + BOUNDARY_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(build: &str) -> Vec<u8> {
        let mut v = b"\xe9\x03\x02\x40 some code".to_vec();
        v.extend_from_slice(b"\0ver\x000.6.1\0build\0");
        v.extend_from_slice(build.as_bytes());
        v.extend_from_slice(b"\0more\0build\0second\0");
        v
    }

    #[test]
    fn tag_is_read_like_the_server() {
        assert_eq!(
            build_tag(&image("Aug  4 2017 20:31:49")).as_deref(),
            Some("Aug  4 2017 20:31:49")
        );
        assert_eq!(build_tag(b"no tag here"), None);
        assert_eq!(build_tag(b"x\0build\0\0"), None);
        assert_eq!(build_tag(b"x\0build\0\xff\xfe\0"), None);
        assert_eq!(build_tag(b"x\0build\0tail").as_deref(), Some("tail"));
    }

    #[test]
    fn validation() {
        assert!(matches!(
            Firmware::from_bytes("a.bin", vec![]),
            Err(BlynkError::EmptyFirmware { .. })
        ));
        let e = Firmware::from_bytes("a.bin", vec![0x55; 100]).unwrap_err();
        assert!(matches!(e, BlynkError::NoBuildTag { .. }));
        assert!(
            e.to_string().contains("a.bin has no Blynk build tag"),
            "{e}"
        );
        let fw = Firmware::from_bytes("a.bin", image("B1")).unwrap();
        assert_eq!(fw.build(), "B1");
        assert_eq!(fw.sha256().len(), 64);
    }

    /// A fresh directory with a valid firmware file in it.
    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "greenlight-fw-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("good.bin"), image("B3")).unwrap();
        d
    }

    #[test]
    fn a_regular_file_is_read() {
        let d = scratch("good");
        let fw = Firmware::read(&d.join("good.bin")).unwrap();
        assert_eq!((fw.build(), fw.file_name()), ("B3", "good.bin"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn directories_missing_files_and_devices_are_refused_clearly() {
        let d = scratch("nonfiles");
        let e = Firmware::read(&d).unwrap_err().to_string();
        assert!(e.contains("is not a file (a directory)"), "{e}");
        let e = Firmware::read(&d.join("missing.bin"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.bin"), "{e}");
        #[cfg(unix)]
        {
            let e = Firmware::read(Path::new("/dev/zero"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("is not a file"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_links_are_refused_even_to_a_good_file() {
        let d = scratch("symlink");
        std::os::unix::fs::symlink(d.join("good.bin"), d.join("link.bin")).unwrap();
        let e = Firmware::read(&d.join("link.bin")).unwrap_err().to_string();
        assert!(
            e.contains("is a symbolic link") && e.contains("good.bin"),
            "{e}"
        );
        // A link to something outside what was chosen, e.g. a secret.
        std::os::unix::fs::symlink("/etc/hostname", d.join("sneaky.bin")).unwrap();
        let e = Firmware::read(&d.join("sneaky.bin"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a symbolic link"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[cfg(unix)]
    #[test]
    fn a_named_pipe_is_refused_without_blocking() {
        let d = scratch("fifo");
        let fifo = d.join("pipe.bin");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if made {
            // Opening a pipe for reading would wait for a writer forever.
            let e = Firmware::read(&fifo).unwrap_err().to_string();
            assert!(e.contains("is not a file"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn multipart_carries_exactly_the_bytes() {
        let fw = Firmware::from_bytes("my fw\"1.ino.bin", image("B2")).unwrap();
        let (ct, body) = fw.multipart();
        let boundary = ct.split("boundary=").nth(1).unwrap();
        assert_eq!(body.len() as u64, fw.upload_size());
        let head_end = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&body[..head_end]);
        assert!(head.contains("filename=\"myfw1.ino.bin\""), "{head}");
        let tail = format!("\r\n--{boundary}--\r\n");
        assert!(body.ends_with(tail.as_bytes()));
        assert_eq!(&body[head_end..body.len() - tail.len()], fw.bytes());
    }
}
