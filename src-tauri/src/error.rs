//! The one error type commands return. The front end gets a tagged value
//! (`kind`) it can act on and a `message` in plain words it can show; a
//! panic or a bare string never crosses the IPC boundary.

use serde::Serialize;

/// An error as the front end sees it.
#[derive(Debug, Clone, Serialize, specta::Type, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AppError {
    /// The account's cloud wants a (new) password.
    #[error("{message}")]
    NeedsLogin {
        /// Account name.
        account: String,
        /// Plain words.
        message: String,
    },
    /// The server's certificate is not trusted by the system: show the
    /// fingerprint and ask; retry with it to pin it.
    #[error("{message}")]
    UntrustedCertificate {
        /// SHA-256, lowercase hex.
        fingerprint: String,
        /// Plain words.
        message: String,
    },
    /// No OS keychain answered; nothing was saved.
    #[error("{message}")]
    NoKeychain {
        /// Plain words.
        message: String,
    },
    /// The user's input is not usable (empty name, bad URL...).
    #[error("{message}")]
    Invalid {
        /// Plain words.
        message: String,
    },
    /// Anything else: a server, network or database failure.
    #[error("{message}")]
    Failed {
        /// Plain words.
        message: String,
    },
}

impl AppError {
    /// An invalid-input error.
    pub fn invalid(message: impl Into<String>) -> Self {
        AppError::Invalid {
            message: message.into(),
        }
    }

    /// A generic failure.
    pub fn failed(message: impl Into<String>) -> Self {
        AppError::Failed {
            message: message.into(),
        }
    }
}

impl From<greenlight_core::Error> for AppError {
    /// Core decides what kind of failure it is (one table for the app's
    /// error kinds and the CLI's exit codes).
    fn from(e: greenlight_core::Error) -> Self {
        use greenlight_core::setup::ErrorClass;
        match (e.class(), e) {
            (_, greenlight_core::Error::UntrustedCertificate { url, fingerprint }) => {
                AppError::UntrustedCertificate {
                    message: format!(
                        "{url} shows a certificate your system does not trust. If this is your server, compare its fingerprint {} and trust it.",
                        greenlight_core::tls::pretty(&fingerprint)
                    ),
                    fingerprint,
                }
            }
            (ErrorClass::Auth, e) => AppError::NeedsLogin {
                account: match &e {
                    greenlight_core::Error::NeedsLogin { account, .. } => account.clone(),
                    _ => String::new(),
                },
                message: e.plain(),
            },
            (ErrorClass::Keychain, e) => AppError::NoKeychain {
                message: format!("no keychain answered ({e}); nothing was saved"),
            },
            (ErrorClass::Usage, e) => AppError::Invalid { message: e.plain() },
            (_, e) => AppError::Failed { message: e.plain() },
        }
    }
}

impl From<greenlight_core::SecretError> for AppError {
    fn from(e: greenlight_core::SecretError) -> Self {
        greenlight_core::Error::from(e).into()
    }
}

/// What every command returns.
pub type AppResult<T> = Result<T, AppError>;
