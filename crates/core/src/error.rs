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

/// Why a request got no answer. The first five provably never left this
/// computer; the others may have reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetKind {
    /// Nothing accepts connections at that address (down, or wrong port).
    Refused,
    /// The host name could not be resolved.
    Dns,
    /// No route to the host (this computer offline, or the address unreachable).
    Unreachable,
    /// No connection could be made in time.
    ConnectTimeout,
    /// The secure connection could not be set up (certificate not trusted).
    Tls,
    /// The server presents another certificate than the one the user
    /// pinned: refused, and said plainly (it can mean someone is in between).
    CertChanged,
    /// Connected, but no complete answer came in time.
    Timeout,
    /// The connection broke after the request went out.
    Broken,
    /// Something else, after the connection was made.
    Other,
}

impl NetKind {
    /// The kind of a failed connect.
    pub fn of_io(e: &std::io::Error) -> NetKind {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::ConnectionRefused => NetKind::Refused,
            K::TimedOut => NetKind::ConnectTimeout,
            K::HostUnreachable | K::NetworkUnreachable | K::NetworkDown | K::AddrNotAvailable => {
                NetKind::Unreachable
            }
            _ if looks_like_dns(&e.to_string()) => NetKind::Dns,
            _ => NetKind::Unreachable,
        }
    }

    /// The kind of a failed request (walks the error's causes: reqwest
    /// wraps hyper, which wraps the I/O, resolver or TLS error).
    pub fn of_request(e: &reqwest::Error) -> NetKind {
        let mut io_kind = None;
        let mut text = String::new();
        let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
        while let Some(s) = src {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                io_kind.get_or_insert(NetKind::of_io(io));
            }
            // The TLS error usually sits inside an I/O error that hides it
            // from `source`; its text (below) is what is found then.
            if let Some(t) = s.downcast_ref::<rustls::Error>() {
                return match t {
                    rustls::Error::General(m) if m.contains("certificate changed") => {
                        NetKind::CertChanged
                    }
                    _ => NetKind::Tls,
                };
            }
            text.push_str(&s.to_string().to_ascii_lowercase());
            text.push(' ');
            src = s.source();
        }
        // Our pinning verifier's words, however deep the TLS error sits.
        if text.contains("the server's certificate changed") {
            return NetKind::CertChanged;
        }
        if e.is_connect() {
            if looks_like_dns(&text) {
                return NetKind::Dns;
            }
            if text.contains("certificate") || text.contains("tls") || text.contains("handshake") {
                return NetKind::Tls;
            }
            if e.is_timeout() || text.contains("timed out") {
                return NetKind::ConnectTimeout;
            }
            // A connect that failed can have sent nothing.
            return match io_kind {
                Some(NetKind::Refused) => NetKind::Refused,
                Some(k) if k.never_sent() => k,
                _ => NetKind::Unreachable,
            };
        }
        if e.is_timeout() {
            NetKind::Timeout
        } else if e.is_request() || e.is_body() || e.is_decode() {
            NetKind::Broken
        } else {
            NetKind::Other
        }
    }

    /// True when the request provably never reached the server.
    pub fn never_sent(self) -> bool {
        matches!(
            self,
            NetKind::Refused
                | NetKind::Dns
                | NetKind::Unreachable
                | NetKind::ConnectTimeout
                | NetKind::Tls
                | NetKind::CertChanged
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
    #[error("cannot reach the cloud: {detail}")]
    Network {
        /// What went wrong, as far as it decides what to say and whether
        /// the request may have been acted on.
        kind: NetKind,
        /// The technical detail, for logs.
        detail: String,
    },
    /// The cloud answered something that is not what the reference describes.
    #[error("unexpected answer from the cloud: {0}")]
    Protocol(String),
    /// The cloud's answer is larger than Greenlight reads (see
    /// [`crate::body`]): it was not read.
    #[error("the cloud's answer to {what} is larger than {limit} bytes (a broken or hostile server?): not read")]
    AnswerTooLarge {
        /// The request (its path).
        what: String,
        /// The cap it passed.
        limit: usize,
    },
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
    /// A broker password would be sent over plain `mqtt://` to a broker
    /// beyond this computer, and the user did not say that is acceptable.
    #[error("the broker URL {url} is mqtt:// (not encrypted): the password would travel in clear; use mqtts:// or confirm that sending it unencrypted is acceptable")]
    PlaintextPassword {
        /// The broker URL.
        url: String,
    },
    /// No such account.
    #[error("no account named {0:?}")]
    UnknownAccount(String),
    /// No such node.
    #[error("no node {0:?} in any account")]
    UnknownNode(String),
    /// A node id without an account that is in more than one account.
    #[error("node {node_id} is in more than one account ({}): say which", accounts.join(", "))]
    AmbiguousNode {
        /// The id.
        node_id: String,
        /// The accounts that have it.
        accounts: Vec<String>,
    },
    /// An account of that name exists already.
    #[error("there is already an account named {0}; remove it first to add it again")]
    AccountExists(String),
    /// A server shows a certificate the system does not trust: the user
    /// must compare its fingerprint and accept it (it is then pinned).
    #[error("{url} shows a certificate your system does not trust (self-signed?). Its SHA-256 fingerprint is {}. If this is your server, compare the fingerprint and trust it", crate::tls::pretty(fingerprint))]
    UntrustedCertificate {
        /// The server.
        url: String,
        /// Its certificate's SHA-256 fingerprint (hex).
        fingerprint: String,
    },
    /// A sweep asked for by a view failed (the words of each failure).
    #[error("{0}")]
    Refresh(String),
    /// An error the owner of the data directory answered (its words).
    #[error("{0}")]
    Remote(String),
    /// The engine has stopped.
    #[error("the engine has stopped")]
    EngineStopped,
    /// The demo fleet could not be started (no simulator installed, or it
    /// failed), in plain words.
    #[error("the demo fleet: {0}")]
    Demo(String),
}

impl Error {
    /// True when a command that failed this way may still have been acted
    /// on (timeouts, 5xx, a lost acknowledgement): it must not be re-sent
    /// without the user's confirmation.
    pub fn maybe_delivered(&self) -> bool {
        match self {
            // 503 and 429 say the server did not take the request on.
            Error::Api(a) => a.http >= 500 && a.http != 503,
            Error::Network { kind, .. } => !kind.never_sent(),
            Error::Unconfirmed(_) => true,
            // The server got the request and answered: it may have acted.
            Error::AnswerTooLarge { .. } => true,
            _ => false,
        }
    }

    /// True when the request provably never left this computer (no
    /// connection was made, or the broker link was down): it can be sent
    /// later without any risk of acting twice.
    pub fn never_sent(&self) -> bool {
        match self {
            Error::Network { kind, .. } => kind.never_sent(),
            Error::Mqtt(_) => true,
            _ => false,
        }
    }

    /// A network error.
    pub fn network(kind: NetKind, detail: impl Into<String>) -> Error {
        Error::Network {
            kind,
            detail: detail.into(),
        }
    }

    /// Plain words for a person: what happened and what to do, without the
    /// technical detail (which goes to the log).
    pub fn plain(&self) -> String {
        match self {
            Error::Api(a) => crate::words::api_error(a),
            Error::Network {
                kind: NetKind::CertChanged,
                detail,
            } => match detail.find("the server's certificate changed") {
                // The pinning verifier's own words carry both fingerprints.
                Some(i) => format!("The{}", &detail[i + 3..]),
                None => crate::words::network(NetKind::CertChanged).to_string(),
            },
            Error::Network { kind, .. } => crate::words::network(*kind).to_string(),
            Error::NeedsLogin { reason, .. } => format!("Log in again: {reason}."),
            Error::Mqtt(_) => {
                "The MQTT broker is not connected, so nothing could be sent. Greenlight keeps trying to connect.".into()
            }
            other => other.to_string(),
        }
    }

    /// True when retrying the same request later may succeed (429, 423, 5xx,
    /// timeouts, connection failures).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Api(a) => a.http == 429 || a.http == 423 || a.http >= 500,
            Error::Network { .. } => true,
            _ => false,
        }
    }
}

fn looks_like_dns(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("dns error")
        || t.contains("failed to lookup address")
        || t.contains("name or service not known")
        || t.contains("no address associated")
        || t.contains("nodename nor servname")
}
