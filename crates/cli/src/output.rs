//! How results are shown: aligned tables and plain sentences for people,
//! one JSON document (or one object per line) with stable field names for
//! scripts. Commands build values; this module only prints them.

use std::io::{self, Write};

use greenlight_core::{
    ApprovalOutcome, ApprovalResult, Job, JobState, Known, Millis, Node, PendingUpdate,
};
use serde::Serialize;

/// Prints `value` as one pretty JSON document.
pub fn json<T: Serialize>(value: &T) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)
}

/// Prints `value` as one compact JSON line (for `watch --json`).
pub fn json_line<T: Serialize>(value: &T) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    out.flush()
}

/// Prints rows under a header, each column as wide as its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    println!("{}", line(header.to_vec()));
    for r in rows {
        println!("{}", line(r.iter().map(String::as_str).collect()));
    }
}

/// "3 min ago", "just now", "2 h ago".
pub fn ago(then: Millis, now: Millis) -> String {
    let s = ((now - then).max(0) / 1000) as u64;
    match s {
        0..=9 => "just now".into(),
        10..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        7200..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86400),
    }
}

/// "in 3 h 20 min", "now".
pub fn in_words(ms: Millis) -> String {
    if ms <= 0 {
        "now".into()
    } else {
        format!("in {}", duration(ms))
    }
}

/// "1 min 05 s", "42 s".
pub fn duration(ms: Millis) -> String {
    let s = (ms.max(0) / 1000) as u64;
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
    }
}

/// A size in KiB/MiB.
pub fn size(bytes: Option<u64>) -> String {
    match bytes {
        None => "-".into(),
        Some(b) if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        Some(b) => format!("{} KiB", b.div_ceil(1024)),
    }
}

/// The name people know a node by.
pub fn node_label(name: Option<&str>, id: &str) -> String {
    match name {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => id.to_string(),
    }
}

/// A job's state in plain words, with its reason: core's words (the same
/// as the app's), with the times a terminal can show relative to now.
pub fn state_words(s: &JobState) -> String {
    match s {
        JobState::Queued {
            reason: greenlight_core::QueueReason::Scheduled { at },
        } => format!(
            "approved — scheduled ({})",
            in_words(*at - greenlight_core::now_ms())
        ),
        JobState::Queued {
            reason: greenlight_core::QueueReason::QuietHours { until },
        } => format!(
            "waiting for quiet hours to end ({})",
            in_words(*until - greenlight_core::now_ms())
        ),
        JobState::Queued {
            reason:
                greenlight_core::QueueReason::NotTaken {
                    since,
                    offline: true,
                },
        } => format!(
            "{} — offline since {}",
            greenlight_core::words::headline(s),
            ago(*since, greenlight_core::now_ms())
        ),
        other => greenlight_core::words::headline(other),
    }
}

/// True for the outcomes that count as "an operation failed" (exit 1).
pub fn outcome_failed(o: &ApprovalOutcome) -> bool {
    matches!(
        o.result,
        ApprovalResult::Failed { .. }
            | ApprovalResult::Refused { .. }
            | ApprovalResult::NotConfirmed { .. }
    )
}

/// One line for an approval outcome.
pub fn outcome_words(o: &ApprovalOutcome, label: &str) -> String {
    match &o.result {
        ApprovalResult::Sent { job } => format!("{label}: approved, {} → {} sent", job.from_version.as_deref().unwrap_or("?"), job.to_version),
        ApprovalResult::Queued { job } => format!("{label}: {}", state_words(&job.state)),
        ApprovalResult::NotConfirmed { job } => format!("{label}: {}", state_words(&job.state)),
        ApprovalResult::UpToDate => format!("{label}: skipped — already up to date"),
        ApprovalResult::Offline => format!("{label}: skipped — the device is offline (use --when-online to install when it comes back)"),
        ApprovalResult::Skipped { reason } => format!("{label}: skipped — {reason}"),
        ApprovalResult::Refused { reason } => format!("{label}: refused — {reason}"),
        ApprovalResult::Failed { reason } => format!("{label}: failed — {reason}"),
    }
}

/// Whether a device is online and how that is known: "online",
/// "offline (as of 2 min ago)", "unknown since 5 min ago". Live states
/// need no time; a swept one says how old it is; an unknown one since when.
pub fn presence_words(online: Option<bool>, known: Known, now: Millis) -> String {
    let state = match online {
        Some(true) => "online",
        Some(false) => "offline",
        None => "unknown",
    };
    match known {
        Known::Live => state.into(),
        Known::Swept { at } if now - at < 90_000 => state.into(),
        Known::Swept { at } => format!("{state} (as of {})", ago(at, now)),
        Known::Unknown { since } => format!("unknown since {}", ago(since, now)),
        Known::Remembered { online, at } => format!(
            "{} {} (not confirmed since)",
            if online { "was online" } else { "was offline" },
            ago(at, now)
        ),
    }
}

/// Rows for `nodes`.
pub fn node_rows(nodes: &[Node], now: Millis) -> Vec<Vec<String>> {
    nodes
        .iter()
        .map(|n| {
            vec![
                node_label(n.name.as_deref(), &n.node_id),
                n.node_id.clone(),
                n.model.clone().unwrap_or_else(|| "-".into()),
                n.fw_version.clone().unwrap_or_else(|| "?".into()),
                presence_words(n.online, n.known, now),
                match (n.online, n.last_seen) {
                    (Some(true), _) => "now".into(),
                    (_, Some(t)) => ago(t, now),
                    (_, None) => "-".into(),
                },
                updates_words(n),
                n.account.clone(),
            ]
        })
        .collect()
}

/// How a node takes updates, for `nodes`: it asks first (the user-approval
/// layout), or it takes cloud jobs (the stock SDK layout, with its last OTA
/// text), or nothing is known of its OTA service.
pub fn updates_words(n: &Node) -> String {
    match n.ota_layout {
        Some(greenlight_core::OtaLayout::UserApproval) => "asks before installing".into(),
        Some(greenlight_core::OtaLayout::Stock) => match &n.ota_text {
            Some(t) => format!("cloud jobs only (last: {t})"),
            None => "cloud jobs only".into(),
        },
        None => "-".into(),
    }
}

/// Rows for `pending`.
pub fn pending_rows(p: &[PendingUpdate], now: Millis) -> Vec<Vec<String>> {
    p.iter()
        .map(|u| {
            let mut note = match &u.warning {
                Some(_) => "⚠ went wrong here before (below)".to_string(),
                None => u.release_note.clone().unwrap_or_default(),
            };
            if note.chars().count() > 48 {
                note = note.chars().take(47).collect::<String>() + "…";
            }
            let mut snoozed = match u.snoozed_until {
                Some(t) if t > now => " (snoozed)".to_string(),
                _ => String::new(),
            };
            if let Some(t) = u.remembered {
                snoozed.push_str(&format!(" (heard {}, not confirmed since)", ago(t, now)));
            }
            vec![
                format!(
                    "{}{snoozed}",
                    node_label(u.node_name.as_deref(), &u.node_id)
                ),
                format!(
                    "{} → {}",
                    u.from_version.as_deref().unwrap_or("?"),
                    u.to_version
                ),
                match u.kind {
                    greenlight_core::UpdateKind::NodeSide => "device".into(),
                    greenlight_core::UpdateKind::CloudApproval => "cloud".into(),
                },
                size(u.size),
                presence_words(u.node_online, u.node_known, now),
                note,
            ]
        })
        .collect()
}

/// Rows for `jobs` and `history`.
pub fn job_rows(jobs: &[Job], names: &dyn Fn(&str) -> String, now: Millis) -> Vec<Vec<String>> {
    jobs.iter()
        .map(|j| {
            let mut state = state_words(&j.state);
            if !j.state.is_terminal() {
                if let Some(t) = &j.progress_text {
                    state = format!("{state}: {t}");
                }
            }
            let took = j.finished_at.unwrap_or(now) - j.created_at;
            vec![
                j.id.to_string(),
                names(&j.node_id),
                format!(
                    "{} → {}",
                    j.from_version.as_deref().unwrap_or("?"),
                    j.to_version
                ),
                state,
                duration(took),
                ago(j.created_at, now),
            ]
        })
        .collect()
}
