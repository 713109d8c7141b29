//! Plain words for job states: one table for the app, the CLI and the CSV
//! export, so every view says the same thing about the same job. Times are
//! left to the views (they know the user's clock); everything else is here.

use crate::model::{Attempt, DelayReason, DownloadWindow, JobState, QueueReason};

/// "02:00–04:30" for a window in minutes after midnight.
pub fn window_words(w: &DownloadWindow) -> String {
    let hm = |m: u16| format!("{:02}:{:02}", (m / 60) % 24, m % 60);
    format!("{}–{}", hm(w.start_minute), hm(w.end_minute))
}

/// "attempt 2 of 3".
pub fn attempt_words(a: &Attempt) -> String {
    format!("attempt {} of {}", a.n, a.of)
}

/// Why a node postpones, in words.
pub fn delay_words(d: &DelayReason) -> String {
    match d {
        DelayReason::WaitingForApproval => "Waiting for approval on the device".into(),
        DelayReason::DownloadWindow { window: Some(w) } => format!(
            "Outside the download window ({} device time); it starts when the window opens",
            window_words(w)
        ),
        DelayReason::DownloadWindow { window: None } => {
            "Outside the job's download window; it starts when the window opens".into()
        }
        DelayReason::NotValidYet => {
            "Not valid yet on the device's clock; the device waits for its validity to begin".into()
        }
        DelayReason::NoClock => {
            "The device has no clock yet; it tries again in about 30 seconds".into()
        }
        DelayReason::Other => "Postponed by the device".into(),
    }
}

/// One line saying where a job is.
pub fn headline(s: &JobState) -> String {
    match s {
        JobState::Queued { reason } => match reason {
            QueueReason::QuietHours { .. } => "Waiting for quiet hours to end".into(),
            QueueReason::WaitingForNode => {
                "Approved — will be delivered when the device is online".into()
            }
            QueueReason::NotTaken { offline: true, .. } => {
                "Approved — will be delivered when the device is back (it went offline before acting on it)".into()
            }
            QueueReason::NotTaken { offline: false, .. } => {
                "Approved — the device did not take it; it will be delivered when the device offers the update again".into()
            }
            QueueReason::Scheduled { .. } => "Approved — scheduled".into(),
        },
        JobState::Requested => "Requested — sending to the device".into(),
        JobState::NotConfirmed { reason } => format!("Not confirmed — {reason}"),
        JobState::Sent => "Sent — waiting for the device to answer".into(),
        JobState::Started => "Started".into(),
        JobState::InProgress { attempt: Some(a) } if a.n > 1 => {
            format!("Installing ({})", attempt_words(a))
        }
        JobState::InProgress { .. } => "Installing".into(),
        JobState::Retrying {
            attempt: Some(a),
            reason,
        } => format!(
            "{} failed: {reason}; the device tries again",
            capital(&attempt_words(a))
        ),
        JobState::Retrying {
            attempt: None,
            reason,
        } => format!("An attempt failed: {reason}; waiting to see whether the device tries again"),
        JobState::Verifying => "Restarting — checking the new firmware".into(),
        JobState::Delayed { delay } => delay_words(delay),
        JobState::Success => "Updated".into(),
        JobState::Failed { reason } => format!("Failed: {reason}"),
        JobState::Rejected { reason } => format!("Refused by the device: {reason}"),
        JobState::RolledBack { reason } if reason.is_empty() => {
            "Rolled back: the device went back to its previous firmware".into()
        }
        JobState::RolledBack { reason } => format!("Rolled back: {reason}"),
        JobState::Stuck => "No news for a long time — check the device".into(),
        JobState::Cancelled => "Cancelled".into(),
    }
}

/// The plain reason a job ended as it did, or "" when there is none.
pub fn reason(s: &JobState) -> String {
    match s {
        JobState::Failed { reason }
        | JobState::Rejected { reason }
        | JobState::NotConfirmed { reason } => reason.clone(),
        JobState::RolledBack { reason } if reason.is_empty() => "firmware rolled back".into(),
        JobState::RolledBack { reason } => reason.clone(),
        _ => String::new(),
    }
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_states_the_firmware_causes_read_as_the_issue_asks() {
        let a = |n, of| Some(Attempt { n, of });
        assert_eq!(
            headline(&JobState::InProgress { attempt: a(2, 3) }),
            "Installing (attempt 2 of 3)"
        );
        assert_eq!(
            headline(&JobState::Retrying {
                attempt: a(1, 3),
                reason: "download failed".into()
            }),
            "Attempt 1 of 3 failed: download failed; the device tries again"
        );
        assert_eq!(
            headline(&JobState::Verifying),
            "Restarting — checking the new firmware"
        );
        assert_eq!(
            headline(&JobState::Delayed {
                delay: DelayReason::DownloadWindow {
                    window: Some(DownloadWindow {
                        start_minute: 120,
                        end_minute: 270
                    })
                }
            }),
            "Outside the download window (02:00–04:30 device time); it starts when the window opens"
        );
        assert_eq!(
            reason(&JobState::RolledBack {
                reason: String::new()
            }),
            "firmware rolled back"
        );
    }
}
