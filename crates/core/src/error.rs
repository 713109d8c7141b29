//! Typed errors of the engine and its sources, each with a message a person
//! can act on (the views show them as they are).

use crate::secrets::SecretError;

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error answered by the RainMaker cloud in its failure body
/// (`{"status":"failure","error_code":..,"description":..}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApiError {
    /// HTTP status.
    pub http: u16,
    /// RainMaker `error_code` (0 when the body carried none).
    pub code: u64,
    /// The cloud's description.
    pub description: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (HTTP {}, error {})",
            crate::rainmaker::parse::plain_reason_for_code(self.code, &self.description),
            self.http,
            self.code
        )
    }
}

/// Everything that can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cloud answered with a failure body.
    #[error("cloud refused: {0}")]
    Api(ApiError),
    /// The request could not be sent or no answer came in time.
    #[error("cannot reach the cloud: {0}")]
    Network(String),
    /// The cloud answered something that is not what the reference describes.
    #[error("unexpected answer from the cloud: {0}")]
    Protocol(String),
    /// The account must log in again (wrong password, refresh token expired,
    /// no credentials stored). Nothing is retried until it does.
    #[error("account {account} needs to log in again: {reason}")]
    NeedsLogin {
        /// Account name.
        account: String,
        /// Why, in plain words.
        reason: String,
    },
    /// The secret store failed.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The local database failed.
    #[error("local database: {0}")]
    Store(#[from] rusqlite::Error),
    /// A file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The MQTT connection is not there or did not acknowledge.
    #[error("MQTT: {0}")]
    Mqtt(String),
    /// A command was handed over but its acknowledgement never came: it may
    /// or may not have reached the node.
    #[error("not confirmed: {0}")]
    Unconfirmed(String),
    /// A node id that cannot be put into a topic or a query.
    #[error("invalid node id {0:?}")]
    InvalidNodeId(String),
    /// A bad configuration value.
    #[error("configuration: {0}")]
    Config(String),
    /// No such account.
    #[error("no account named {0:?}")]
    UnknownAccount(String),
    /// No such node.
    #[error("no node {0:?} in any account")]
    UnknownNode(String),
    /// The engine has stopped.
    #[error("the engine has stopped")]
    EngineStopped,
}

impl Error {
    /// True when a command that failed this way may still have been acted
    /// on (timeouts, 5xx, a lost acknowledgement): it must not be re-sent
    /// without the user's confirmation.
    pub fn maybe_delivered(&self) -> bool {
        match self {
            Error::Api(a) => a.http >= 500,
            Error::Network(_) | Error::Unconfirmed(_) => true,
            _ => false,
        }
    }

    /// Plain words for a person.
    pub fn plain(&self) -> String {
        match self {
            Error::Api(a) => crate::rainmaker::parse::plain_reason_for_code(a.code, &a.description),
            Error::NeedsLogin { reason, .. } => format!("log in again: {reason}"),
            other => other.to_string(),
        }
    }

    /// True when retrying the same request later may succeed (429, 423, 5xx,
    /// timeouts, connection failures).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Api(a) => a.http == 429 || a.http == 423 || a.http >= 500,
            Error::Network(_) => true,
            _ => false,
        }
    }
}
