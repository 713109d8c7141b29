//! Where `tracing` output goes: standard error, in the usual human format
//! in a terminal or a file; and, when standard error is the journal (the
//! daemon run by `greenlight service`), as lines journald reads well: no
//! colours, no timestamps (journald stamps every line itself), and each line
//! prefixed with its syslog priority (`<3>` error … `<7>` debug), which
//! journald's `SyslogLevelPrefix=` (on by default) turns into the entry's
//! priority, so `journalctl -p warning` and the colours of `journalctl` work.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// What is logged when `GREENLIGHT_LOG` does not say. The platform verifier
/// logs every untrusted certificate as an error; the fingerprint prompt
/// already says it in words.
const DEFAULT_FILTER: &str = "error,rumqttd=off,rustls_platform_verifier=off";

/// The daemon's default: what it decided and why (a handful of lines a
/// day) reaches the journal; the libraries' chatter does not.
const DAEMON_FILTER: &str =
    "warn,greenlight=info,greenlight_core=info,rumqttd=off,rustls_platform_verifier=off";

/// Installs the process's subscriber (once, at start). `GREENLIGHT_LOG`
/// overrides the default, which is errors only for one-shot commands (their
/// output says the rest) and informative for the daemon.
pub fn init(daemon: bool) {
    let default = if daemon {
        DAEMON_FILTER
    } else {
        DEFAULT_FILTER
    };
    let filter = EnvFilter::try_from_env("GREENLIGHT_LOG").unwrap_or_else(|_| default.into());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if stderr_is_journal() {
        builder
            .with_ansi(false)
            .event_format(Journald::default())
            .init();
    } else {
        builder.init();
    }
}

/// The journal's format: the human one without time or colours, each line
/// prefixed with the event's syslog priority.
#[derive(Debug)]
pub struct Journald {
    inner: Format<Full, ()>,
}

impl Default for Journald {
    fn default() -> Self {
        Journald {
            inner: Format::default().without_time().with_ansi(false),
        }
    }
}

/// The syslog priority journald reads from a `<N>` prefix.
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        // Debug and trace: syslog has nothing below debug.
        _ => 7,
    }
}

impl<S, N> FormatEvent<S, N> for Journald
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Formatted into a writer of our own, which never has ANSI escapes
        // whatever the layer was told, and so that every line of a message
        // that spans several gets the prefix: journald reads one per line.
        let mut text = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut text), event)?;
        let p = priority(*event.metadata().level());
        for line in text.lines() {
            writeln!(writer, "<{p}>{line}")?;
        }
        Ok(())
    }
}

/// Whether standard error is connected to the journal. systemd sets
/// `JOURNAL_STREAM=DEVICE:INODE` for a service's output streams; the
/// variable is inherited by children whose stderr may go elsewhere, so (as
/// sd_journal_stream_fd(3) says) it only counts when stderr is that very
/// stream.
fn stderr_is_journal() -> bool {
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some(var) = var.to_str() else {
        return false;
    };
    stderr_id().is_some_and(|(dev, ino)| is_stream(var, dev, ino))
}

/// Device and inode of standard error (fstat on a duplicate of fd 2).
#[cfg(unix)]
fn stderr_id() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// No journal outside Unix.
#[cfg(not(unix))]
fn stderr_id() -> Option<(u64, u64)> {
    None
}

/// Whether `JOURNAL_STREAM`'s value names the stream `dev`:`ino`.
fn is_stream(var: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = var.trim().split_once(':') else {
        return false;
    };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(b);
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn journal_lines_carry_the_priority_and_no_colours_or_time() {
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            // Even a layer told to colour writes none into the journal.
            .with_ansi(true)
            .with_max_level(Level::TRACE)
            .event_format(Journald::default())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(node = "7CDFA1000001", "broker refused the login");
            tracing::warn!("retrying in 5 s");
            tracing::info!("watching 2 account(s)");
            tracing::debug!("sweep done");
            tracing::trace!("frame");
            tracing::error!("first line\nsecond line");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains('\x1b'), "no ANSI escapes: {text:?}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 7, "{text}");
        let prefixes: Vec<&str> = lines.iter().map(|l| &l[..3]).collect();
        assert_eq!(
            prefixes,
            ["<3>", "<4>", "<6>", "<7>", "<7>", "<3>", "<3>"],
            "{text}"
        );
        assert!(
            lines[0].starts_with("<3>ERROR ") && lines[0].contains("broker refused the login"),
            "the level follows the prefix directly (no timestamp): {}",
            lines[0]
        );
        assert!(lines[0].contains("node=\"7CDFA1000001\""), "{}", lines[0]);
        assert!(lines[2].starts_with("<6> INFO "), "{}", lines[2]);
        assert_eq!(
            lines[6], "<3>second line",
            "every line of a message is prefixed"
        );
    }

    #[test]
    fn journal_stream_must_name_stderr_itself() {
        assert!(is_stream("8:1234", 8, 1234));
        assert!(is_stream("8:1234\n", 8, 1234));
        assert!(!is_stream("8:1235", 8, 1234), "another stream");
        assert!(!is_stream("9:1234", 8, 1234));
        assert!(!is_stream("", 8, 1234));
        assert!(!is_stream("8", 8, 1234));
        assert!(!is_stream("x:y", 8, 1234));
    }
}
