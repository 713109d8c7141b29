//! The control protocol's messages: one JSON object per line. A client's
//! [`Envelope`] carries a [`Call`] (the engine handle's requests, by name);
//! the owner answers with an [`Answer`] of the same id, and streams every
//! engine event as an `{"event": ...}` line.
//!
//! A client says what it is first: `{"v":1,"id":0,"call":{"method":"hello",
//! "params":{"kind":"app"}}}` ([`Call::Hello`], a [`ClientKind`]). The owner
//! counts the apps attached (`greenlight watch` shows desktop notifications
//! only while none is: an attached app shows its own) and answers
//! `{"id":0,"ok":null}`, which the client does not wait for. Saying hello
//! is optional, so protocol 1 holds: a client from before it is a client of
//! no particular kind (never an app), and an owner from before it answers
//! the hello with an error the client ignores. A call the owner does not
//! know is answered with an error under the call's own id, so a newer
//! client is never left waiting.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::event::Event;
use crate::model::{AccountConfig, HistoryFilter, Millis, NodeRef, QuietHours};

/// The protocol version; a client of another version is refused with a
/// clear error instead of misreading answers.
pub const PROTOCOL: u32 = 1;

/// The longest line either side accepts (a history of thousands of jobs
/// fits; anything longer is an error, not a memory hog).
pub(crate) const MAX_LINE: usize = 32 << 20;

/// A request line.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// [`PROTOCOL`].
    pub v: u32,
    /// Echoed in the answer.
    pub id: u64,
    /// What is asked.
    pub call: Call,
}

/// What a client of the control socket is, as it says in its first line
/// (`{"method":"hello","params":{"kind":"app"}}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// The desktop app: it shows notifications itself.
    App,
    /// `greenlight watch` attached to another owner.
    Watch,
    /// A one-shot `greenlight` command.
    Command,
}

/// What a client can ask: the engine handle's requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
pub(crate) enum Call {
    /// The client says what it is (first, once; see the module docs).
    Hello {
        kind: ClientKind,
    },
    AddAccount(Box<AccountConfig>),
    RemoveAccount(String),
    Accounts,
    Freshness,
    Login {
        account: String,
        password: String,
    },
    Nodes,
    Pending,
    Jobs,
    History(HistoryFilter),
    JobEvents(i64),
    Audit(u32),
    Approve(Vec<NodeRef>),
    ApproveAll,
    ApproveAt(Vec<NodeRef>, Millis),
    Policies,
    InstallWhenOnline(NodeRef),
    Resend(i64),
    Cancel(i64),
    Snooze(NodeRef, Option<Millis>),
    Skip(NodeRef),
    AutoApprove(NodeRef, bool),
    QuietHours(Option<QuietHours>),
    NotificationsPaused,
    SetNotificationsPaused(bool),
    CheckNow(NodeRef),
    Refresh,
    StartRollout(Box<crate::rollout::RolloutPlan>),
    Rollouts,
    RolloutAction(Option<i64>, crate::rollout::RolloutAction),
    /// Who the owner is (for `greenlight status`).
    Owner,
}

/// An answer line.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Answer {
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err: Option<WireError>,
}

/// An error as it crosses the socket: the kinds a client acts on, and the
/// owner's plain words.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum WireError {
    NeedsLogin {
        account: String,
        message: String,
    },
    UnknownNode {
        message: String,
    },
    AmbiguousNode {
        node_id: String,
        accounts: Vec<String>,
    },
    UnknownAccount {
        message: String,
    },
    Config {
        message: String,
    },
    Stopped,
    Other {
        message: String,
    },
}

impl From<&Error> for WireError {
    fn from(e: &Error) -> WireError {
        match e {
            Error::NeedsLogin { account, reason } => WireError::NeedsLogin {
                account: account.clone(),
                message: reason.clone(),
            },
            Error::UnknownNode(m) => WireError::UnknownNode { message: m.clone() },
            Error::AmbiguousNode { node_id, accounts } => WireError::AmbiguousNode {
                node_id: node_id.clone(),
                accounts: accounts.clone(),
            },
            Error::UnknownAccount(m) => WireError::UnknownAccount { message: m.clone() },
            Error::Config(m) => WireError::Config { message: m.clone() },
            Error::EngineStopped => WireError::Stopped,
            other => WireError::Other {
                message: other.plain(),
            },
        }
    }
}

impl From<WireError> for Error {
    fn from(e: WireError) -> Error {
        match e {
            WireError::NeedsLogin { account, message } => Error::NeedsLogin {
                account,
                reason: message,
            },
            WireError::UnknownNode { message } => Error::UnknownNode(message),
            WireError::AmbiguousNode { node_id, accounts } => {
                Error::AmbiguousNode { node_id, accounts }
            }
            WireError::UnknownAccount { message } => Error::UnknownAccount(message),
            WireError::Config { message } => Error::Config(message),
            WireError::Stopped => Error::EngineStopped,
            WireError::Other { message } => Error::Remote(message),
        }
    }
}

/// Reads one request line as the owner does. The version and id come
/// first, so that a call this owner does not know (a newer client's) is
/// answered under its id, not left waiting. `Err((id, error))`: answer
/// `error` under `id` (0 when the line is not JSON at all).
pub(crate) fn read_request(line: &str, owner_version: &str) -> Result<Envelope, (u64, WireError)> {
    let head: Value = serde_json::from_str(line).map_err(|e| {
        let message = format!("not a request: {e}");
        (0, WireError::Other { message })
    })?;
    let id = head.get("id").and_then(Value::as_u64).unwrap_or(0);
    let v = head.get("v").and_then(Value::as_u64).unwrap_or(0);
    if v != u64::from(PROTOCOL) {
        let message = format!(
            "this Greenlight ({owner_version}) speaks control protocol {PROTOCOL}, the client {v}: use the same version"
        );
        return Err((id, WireError::Other { message }));
    }
    serde_json::from_value(head).map_err(|e| {
        let message = format!(
            "this Greenlight ({owner_version}) does not know that request ({e}): use the same version"
        );
        (id, WireError::Other { message })
    })
}

/// One line from the owner, as a client reads it.
#[derive(Debug)]
pub(crate) enum OwnerLine {
    /// An engine event (`{"event": ...}`).
    Event(Box<Event>),
    /// The answer to a request.
    Answer(Answer),
    /// JSON, but neither an event this client knows nor an answer: skipped.
    Ignored,
    /// Not JSON.
    Unreadable,
}

/// Reads one line from the owner: an event, an answer, or nothing usable.
pub(crate) fn read_owner_line(line: &str) -> OwnerLine {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return OwnerLine::Unreadable;
    };
    if let Some(e) = v.get("event") {
        return match serde_json::from_value::<Event>(e.clone()) {
            Ok(e) => OwnerLine::Event(Box::new(e)),
            Err(_) => OwnerLine::Ignored,
        };
    }
    match serde_json::from_value::<Answer>(v) {
        Ok(a) => OwnerLine::Answer(a),
        Err(_) => OwnerLine::Ignored,
    }
}
