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
