//! What can go wrong with a Blynk server, each in words an admin can act on.
//!
//! Kept apart from the engine's [`crate::Error`] so the Blynk side can grow
//! without touching the types every view already matches on; engine errors
//! (database, keychain) are carried inside as [`BlynkError::Core`].

use crate::secrets::SecretError;

/// Result with a [`BlynkError`].
pub type BlynkResult<T> = std::result::Result<T, BlynkError>;

/// Everything that can go wrong on the Blynk side.
#[derive(Debug, thiserror::Error)]
pub enum BlynkError {
    /// The firmware file is empty.
    #[error("{file} is empty: it cannot be a firmware image")]
    EmptyFirmware {
        /// File name.
        file: String,
    },
    /// No `\0build\0<value>\0` in the binary: the server would refuse a
    /// campaign, and nothing could tell an updated device from an old one.
    #[error(
        "{file} has no Blynk build tag: the server reads the firmware's build from the Blynk \
         library's info string (\"\\0build\\0<date time>\\0\") and would refuse a campaign. \
         Build the sketch with the Blynk library and export it from the Arduino IDE \
         (Sketch → Export compiled binary)"
    )]
    NoBuildTag {
        /// File name.
        file: String,
    },
    /// The file is far bigger than any ESP flash: not a firmware image.
    #[error("{file} is {size} bytes, more than any ESP flash holds: not a firmware image")]
    NotFirmware {
        /// File name.
        file: String,
        /// Its size.
        size: u64,
    },
    /// Checked before sending: the upload would be over the server's limit.
    #[error(
        "the upload would be {size} bytes, over the server's limit of {limit} bytes \
         (web.request.max.size, 512 KiB by default): nothing was sent. Make the sketch smaller, \
         or raise web.request.max.size in the server's server.properties and set the account's \
         upload limit to match"
    )]
    TooLarge {
        /// Bytes the request body would have.
        size: u64,
        /// The account's configured limit.
        limit: u64,
    },
    /// The server answered 413: its limit is lower than the account says.
    #[error(
        "the server refused the {size}-byte upload as too large (HTTP 413): its limit \
         (web.request.max.size) is lower than that. Server said: {message}"
    )]
    ServerTooLarge {
        /// Bytes sent.
        size: u64,
        /// The server's words.
        message: String,
    },
    /// The admin email or password was refused, or none is stored.
    #[error("the Blynk server {account} refused the admin login: {reason}")]
    Auth {
        /// Account name.
        account: String,
        /// Why, in plain words.
        reason: String,
    },
    /// Refused for safety: another campaign still on the server would fight
    /// this one (devices flipping between two builds on every login).
    #[error("{0}")]
    Conflict(String),
    /// The server refused the request (400/500 with its reason).
    #[error("the Blynk server refused: {message} (HTTP {http})")]
    Refused {
        /// HTTP status.
        http: u16,
        /// The server's words, explained.
        message: String,
    },
    /// The request could not be sent, or no answer came in time.
    #[error("cannot reach the Blynk server: {0}")]
    Network(String),
    /// A start was sent but its answer never came (timeout, connection
    /// lost while reading): the server may or may not have taken it.
    /// Never retried by itself: a second start would be a second upload.
    #[error("no answer from the Blynk server: {0}")]
    Unanswered(String),
    /// The server answered something the reference does not describe.
    #[error("unexpected answer from the Blynk server: {0}")]
    Protocol(String),
    /// The server's answer is larger than Greenlight reads (see
    /// [`crate::body`]): it was not read.
    #[error("the server's answer to {what} is larger than {limit} bytes (a broken or hostile server?): not read")]
    AnswerTooLarge {
        /// What was asked.
        what: String,
        /// The cap it passed.
        limit: usize,
    },
    /// No such Blynk account.
    #[error("no Blynk account named {0:?}")]
    UnknownAccount(String),
    /// A bad value given by the user (target, URL, fingerprint...).
    #[error("{0}")]
    Invalid(String),
    /// A file could not be read.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The engine's store or keychain failed.
    #[error(transparent)]
    Core(#[from] crate::Error),
    /// The tracker has stopped.
    #[error("the Blynk tracker has stopped")]
    Stopped,
    /// Another failure, already in words (a shared copy of an error).
    #[error("{0}")]
    Other(String),
}

impl From<SecretError> for BlynkError {
    fn from(e: SecretError) -> Self {
        BlynkError::Core(crate::Error::Secret(e))
    }
}

impl From<rusqlite::Error> for BlynkError {
    fn from(e: rusqlite::Error) -> Self {
        BlynkError::Core(crate::Error::Store(e))
    }
}

impl BlynkError {
    /// True when the user must give a password (wrong one, none stored, no keychain).
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            BlynkError::Auth { .. }
                | BlynkError::Core(crate::Error::NeedsLogin { .. })
                | BlynkError::Core(crate::Error::Secret(SecretError::NoKeychain(_)))
                | BlynkError::Core(crate::Error::Secret(SecretError::Unsupported(_)))
        )
    }

    /// True for a bad request by the user (unknown account, bad value, missing file).
    pub fn is_usage(&self) -> bool {
        match self {
            BlynkError::UnknownAccount(_) | BlynkError::Invalid(_) => true,
            BlynkError::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            _ => false,
        }
    }

    /// True when the request may have been acted on although it failed:
    /// what it asked must not be sent again without the user.
    pub fn maybe_delivered(&self) -> bool {
        matches!(self, BlynkError::Unanswered(_))
    }

    /// A copy for every waiter of one poll (the error itself is not `Clone`):
    /// same variant where it matters (auth, network), text otherwise.
    pub(crate) fn share(&self) -> BlynkError {
        match self {
            BlynkError::Auth { account, reason } => BlynkError::Auth {
                account: account.clone(),
                reason: reason.clone(),
            },
            BlynkError::Network(s) => BlynkError::Network(s.clone()),
            BlynkError::Unanswered(s) => BlynkError::Unanswered(s.clone()),
            BlynkError::Protocol(s) => BlynkError::Protocol(s.clone()),
            BlynkError::UnknownAccount(s) => BlynkError::UnknownAccount(s.clone()),
            BlynkError::Refused { http, message } => BlynkError::Refused {
                http: *http,
                message: message.clone(),
            },
            BlynkError::Core(crate::Error::NeedsLogin { account, reason }) => {
                BlynkError::Core(crate::Error::NeedsLogin {
                    account: account.clone(),
                    reason: reason.clone(),
                })
            }
            BlynkError::Core(crate::Error::Secret(e)) => {
                BlynkError::Core(crate::Error::Secret(e.clone()))
            }
            other => BlynkError::Other(other.to_string()),
        }
    }
}
