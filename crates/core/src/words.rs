//! Plain words for job states and for failures to reach a server: one
//! table for the app, the CLI and the CSV export, so every view says the
//! same thing about the same job or error. Times are left to the views
//! (they know the user's clock); everything else is here.

use crate::error::{ApiError, NetKind};
use crate::model::{Attempt, DelayReason, DownloadWindow, JobState, QueueReason};

/// What a failure to reach the cloud means, and what to do about it.
pub fn network(kind: NetKind) -> &'static str {
    match kind {
        NetKind::Refused => "The cloud refused the connection: nothing answers at that address. Check the URL and port; if they are right, the service is down and Greenlight keeps trying.",
        NetKind::Dns => "The cloud's host name could not be found. Check the spelling of the URL and this computer's internet connection.",
        NetKind::Unreachable => "The cloud cannot be reached from this computer. Check the network connection; Greenlight keeps trying.",
        NetKind::ConnectTimeout => "The cloud did not accept a connection in time. Check the internet connection; Greenlight keeps trying.",
        NetKind::Tls => "The cloud's certificate is not trusted, so no secure connection was made. If this is your own server, add the account again and accept its certificate fingerprint.",
        NetKind::CertChanged => "The server's certificate changed since you trusted it, so no connection was made. If you expected this, remove the account and add it again to accept the new certificate.",
        NetKind::Timeout => "The cloud did not answer in time. Greenlight keeps trying.",
        NetKind::Broken => "The connection to the cloud broke before its answer came. Greenlight keeps trying.",
        NetKind::Other => "The cloud could not be reached. Greenlight keeps trying.",
    }
}

/// Why the MQTT broker connection is down, and what to do about it.
pub fn broker_lost(e: &rumqttc::ConnectionError) -> String {
    use rumqttc::ConnectionError as C;
    match e {
        C::Io(io) => match NetKind::of_io(io) {
            NetKind::Refused => "The MQTT broker refused the connection: nothing answers at that address, or it is down. Greenlight keeps trying.".into(),
            NetKind::Dns => "The MQTT broker's host name could not be found. Check the broker URL and the internet connection.".into(),
            NetKind::ConnectTimeout => "The MQTT broker did not accept a connection in time. Greenlight keeps trying.".into(),
            _ => "The connection to the MQTT broker was lost. Greenlight keeps trying.".into(),
        },
        C::ConnectionRefused(code) => format!(
            "The MQTT broker refused the login ({code:?}): check the user name, password or client certificate."
        ),
        C::Tls(_) => "The MQTT broker's certificate is not trusted, so no secure connection was made.".into(),
        C::NetworkTimeout => "The MQTT broker did not answer in time. Greenlight keeps trying.".into(),
        _ => "The connection to the MQTT broker was lost. Greenlight keeps trying.".into(),
    }
}

/// What an error answer of the cloud means, and what to do about it.
pub fn api_error(a: &ApiError) -> String {
    let known = crate::rainmaker::parse::plain_reason_for_code(a.code, &a.description);
    if known != a.description {
        return sentence(&known);
    }
    let said = if a.description.trim().is_empty() {
        String::new()
    } else {
        format!(
            " It said: \"{}\".",
            crate::rainmaker::parse::clean(&a.description, 160)
        )
    };
    let what = match a.http {
        401 => "The cloud refused the login: check the user name and password.".to_string(),
        403 => "The cloud refused: this account may not do that.".to_string(),
        404 => "The cloud has no such API at this address: check the URL (the cloud's base address, such as https://api.rainmaker.espressif.com).".to_string(),
        429 => "The cloud is busy and asked to slow down; Greenlight tries again later.".to_string(),
        s if s >= 500 => format!("The cloud has a problem right now (HTTP {s}); Greenlight tries again."),
        s => format!("The cloud refused the request (HTTP {s})."),
    };
    format!("{what}{said}")
}

/// "node is offline" → "Node is offline."
fn sentence(s: &str) -> String {
    let mut c = s.chars();
    let mut out = match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect::<String>(),
        None => return String::new(),
    };
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

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
            QueueReason::Unreachable { .. } => {
                "Approved — not sent yet: nothing reached the device; it is sent when the cloud can be reached".into()
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
