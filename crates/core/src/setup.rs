//! The flows both front ends share, written once: where the data lives,
//! adding an account (check everything, store the secrets, log in once,
//! undo on failure), and what kind of failure an error is. The CLI and the
//! app only gather input and show the outcome, so they cannot disagree.

use std::path::{Path, PathBuf};

use crate::engine::EngineHandle;
use crate::error::{Error, Result};
use crate::model::secret_keys;
use crate::model::{AccountConfig, MqttConfig};
use crate::tls;

/// The data directory both the app and the CLI use unless told otherwise:
/// `GREENLIGHT_DATA_DIR`, else the platform's per-user data directory.
/// `None` when the platform has no home directory to offer.
pub fn default_data_dir() -> Option<PathBuf> {
    std::env::var_os("GREENLIGHT_DATA_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            directories::ProjectDirs::from("dev", "greenlight", "greenlight")
                .map(|p| p.data_dir().to_path_buf())
        })
}

/// What kind of failure an error is, which decides the CLI's exit code and
/// the app's error kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The input was wrong (a name, a URL, a node that does not exist):
    /// retrying the same will fail the same way.
    Usage,
    /// An account must log in again.
    Auth,
    /// No keychain answered: nothing secret could be kept or read.
    Keychain,
    /// A certificate the system does not trust: show its fingerprint.
    UntrustedCertificate,
    /// Anything else (network, cloud, disk).
    Failed,
}

impl Error {
    /// What kind of failure this is (see [`ErrorClass`]).
    pub fn class(&self) -> ErrorClass {
        use crate::secrets::SecretError;
        match self {
            Error::NeedsLogin { .. } => ErrorClass::Auth,
            Error::Secret(SecretError::NoKeychain(_))
            | Error::Secret(SecretError::Unsupported(_)) => ErrorClass::Keychain,
            Error::UntrustedCertificate { .. } => ErrorClass::UntrustedCertificate,
            Error::InvalidNodeId(_)
            | Error::UnknownAccount(_)
            | Error::UnknownNode(_)
            | Error::AmbiguousNode { .. }
            | Error::AccountExists(_)
            | Error::Config(_)
            | Error::PlaintextPassword { .. } => ErrorClass::Usage,
            _ => ErrorClass::Failed,
        }
    }
}

/// A RainMaker cloud login for a new account.
#[derive(Debug, Clone)]
pub struct NewCloud {
    /// Cloud URL; the public cloud when empty.
    pub url: String,
    /// Login email.
    pub user: String,
    /// Password: goes to the keychain, nowhere else.
    pub password: String,
    /// A certificate fingerprint the user accepted after being shown it.
    pub trust_fingerprint: Option<String>,
}

/// A broker for a new account.
#[derive(Debug, Clone, Default)]
pub struct NewBroker {
    /// `mqtt://` or `mqtts://` URL.
    pub url: String,
    /// Broker user name, if it asks for one.
    pub username: Option<String>,
    /// Broker password (with a user name): keychain only.
    pub password: Option<String>,
    /// CA certificate file (PEM) for `mqtts://`.
    pub ca_file: Option<String>,
    /// Client certificate file (PEM).
    pub client_cert: Option<String>,
    /// Client key file (PEM).
    pub client_key: Option<String>,
    /// The user confirmed that the password may be sent over plain
    /// `mqtt://` (see [`check_broker_password`]).
    pub allow_plaintext_password: bool,
}

/// A RainMaker account to add: a cloud login, a broker, or both.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// Unique name, used as `ACCOUNT/NODE` too.
    pub name: String,
    /// The cloud side.
    pub cloud: Option<NewCloud>,
    /// The direct-MQTT side.
    pub broker: Option<NewBroker>,
}

fn usage(m: impl Into<String>) -> Error {
    Error::Config(m.into())
}

/// A trimmed, non-empty account name that can be named on a command line
/// (`ACCOUNT/NODE`) and in the keychain.
pub fn check_account_name(name: &str) -> Result<String> {
    let n = name.trim();
    if n.is_empty() {
        return Err(usage("the account name is empty"));
    }
    if n.chars().count() > 64 {
        return Err(usage("the account name is longer than 64 characters"));
    }
    if n.contains('/') || n.chars().any(char::is_control) {
        return Err(usage(format!(
            "{n:?}: an account name cannot contain '/' or control characters"
        )));
    }
    Ok(n.to_string())
}

/// A broker URL Greenlight can connect to: `mqtt://` or `mqtts://`, with a
/// host.
pub fn check_broker_url(url: &str) -> Result<String> {
    let u = url.trim();
    let parsed = url::Url::parse(u).map_err(|e| {
        usage(format!(
            "{u:?} is not a broker URL ({e}); use mqtt://host:1883 or mqtts://host:8883"
        ))
    })?;
    if !matches!(parsed.scheme(), "mqtt" | "mqtts") {
        return Err(usage(format!(
            "{u:?}: the broker URL must start with mqtt:// or mqtts://"
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(usage(format!("{u:?}: the broker URL has no host")));
    }
    // What the watcher will connect with (no path, no credentials in it).
    crate::rainmaker::mqtt::parse_url(u)?;
    Ok(u.to_string())
}

/// Refuses a broker password over plain `mqtt://` unless the user
/// confirmed it (`allow`): anyone on the path could read it. A broker on
/// this computer (`localhost`, 127.0.0.0/8, `::1`) is exempt: the password
/// never leaves the machine. Call it with a URL [`check_broker_url`] took.
pub fn check_broker_password(url: &str, allow: bool) -> Result<()> {
    let Ok(u) = url::Url::parse(url.trim()) else {
        return Ok(());
    };
    if u.scheme() != "mqtt" || allow {
        return Ok(());
    }
    let loopback = match u.host() {
        // `mqtt` is not a scheme the URL standard knows, so an IPv4
        // address comes back as a name.
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost")
                || d.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
        }
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    };
    if loopback {
        return Ok(());
    }
    Err(Error::PlaintextPassword {
        url: url.trim().to_string(),
    })
}

fn check_file(what: &str, p: &Option<String>) -> Result<Option<String>> {
    match p.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        None => Ok(None),
        Some(p) if Path::new(p).is_file() => Ok(Some(p.to_string())),
        Some(p) => Err(usage(format!("{p}: no such file (the {what})"))),
    }
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Adds an account, all or nothing: checks the name (an existing one is
/// refused: remove it first), the URLs and files, how to trust the cloud's
/// certificate ([`Error::UntrustedCertificate`] carries the fingerprint to
/// show), stores the passwords in the keychain, logs in once so a wrong
/// password is said now, and only then saves the account. On any failure
/// the secrets it stored are deleted again.
pub async fn add_account(engine: &EngineHandle, new: NewAccount) -> Result<AccountConfig> {
    let name = check_account_name(&new.name)?;
    if new.cloud.is_none() && new.broker.is_none() {
        return Err(usage("an account needs a cloud login or a broker"));
    }
    let mut cfg = AccountConfig {
        name: name.clone(),
        rest: None,
        mqtt: None,
    };
    let mut secrets_to_set: Vec<(&str, String)> = vec![];
    if let Some(c) = &new.cloud {
        let user = c.user.trim();
        if user.is_empty() {
            return Err(usage("the email is empty"));
        }
        if c.password.is_empty() {
            return Err(usage("the password is empty"));
        }
        let url = match c.url.trim() {
            "" => crate::rainmaker::rest::PUBLIC_BASE,
            u => u,
        };
        let url = crate::rainmaker::rest::canonical_base(url).map_err(|e| usage(e.to_string()))?;
        cfg = AccountConfig::rest(&name, &url, user);
        secrets_to_set.push((secret_keys::PASSWORD, c.password.clone()));
    }
    if let Some(b) = &new.broker {
        let url = check_broker_url(&b.url)?;
        let username = nonempty(&b.username);
        if let (Some(_), Some(pw)) = (&username, b.password.as_ref().filter(|p| !p.is_empty())) {
            check_broker_password(&url, b.allow_plaintext_password)?;
            secrets_to_set.push((secret_keys::MQTT_PASSWORD, pw.clone()));
        }
        cfg.mqtt = Some(MqttConfig {
            url,
            ca_file: check_file("CA certificate", &b.ca_file)?,
            client_cert: check_file("client certificate", &b.client_cert)?,
            client_key: check_file("client key", &b.client_key)?,
            username,
            basic_ingest: true,
            client_id: None,
            allow_plaintext_password: b.allow_plaintext_password,
        });
    }
    if engine.accounts().await?.iter().any(|(c, _)| c.name == name) {
        return Err(Error::AccountExists(name));
    }
    if let (Some(rest), Some(c)) = (cfg.rest.as_mut(), &new.cloud) {
        let decided = tls::decide_trust(&rest.base_url, nonempty(&c.trust_fingerprint).as_deref())
            .await
            // Not the server the user vouched for (or none answers): a
            // failure to report, not a typo to correct.
            .map_err(|e| Error::Refresh(format!("{}; the account was not added", e.plain())))?;
        match decided {
            tls::Trust::System => {}
            tls::Trust::Pinned(fp) => rest.pinned_sha256 = Some(fp),
            tls::Trust::Unknown { fingerprint } => {
                return Err(Error::UntrustedCertificate {
                    url: rest.base_url.clone(),
                    fingerprint,
                })
            }
        }
    }

    // From here on, what was stored is taken back on failure.
    let secrets = engine.secrets();
    let undo = |set: &[&str]| {
        for k in set.iter().copied().chain([secret_keys::REFRESH_TOKEN]) {
            let _ = secrets.delete(&name, k);
        }
    };
    let mut stored: Vec<&str> = vec![];
    for (k, v) in &secrets_to_set {
        if let Err(e) = secrets.set(&name, k, v) {
            undo(&stored);
            return Err(e.into());
        }
        stored.push(k);
    }
    if let Some(rest) = &cfg.rest {
        if let Err(e) = crate::rainmaker::rest::verify_login(&name, rest, secrets.clone()).await {
            undo(&stored);
            return Err(match e {
                e @ Error::NeedsLogin { .. } => e,
                other => Error::Refresh(format!(
                    "could not reach {}: {}; the account was not added",
                    rest.base_url,
                    other.plain()
                )),
            });
        }
    }
    if let Err(e) = engine.add_account(cfg.clone()).await {
        undo(&stored);
        return Err(e);
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_break_a_command_line_or_the_keychain_are_refused() {
        assert_eq!(check_account_name("  home ").unwrap(), "home");
        for bad in ["", "   ", "a/b", "x\ny", &"n".repeat(65)] {
            let e = check_account_name(bad).unwrap_err();
            assert_eq!(e.class(), ErrorClass::Usage, "{bad:?}");
        }
    }

    #[test]
    fn broker_urls_need_an_mqtt_scheme_and_a_host() {
        assert_eq!(
            check_broker_url(" mqtt://127.0.0.1:1883 ").unwrap(),
            "mqtt://127.0.0.1:1883"
        );
        assert!(check_broker_url("mqtts://broker.local").is_ok());
        for bad in [
            "http://h:1883",
            "127.0.0.1:1883",
            "mqtt://",
            "mqtt:///x",
            "",
        ] {
            assert!(check_broker_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_password_over_plain_mqtt_needs_the_users_word_except_on_this_computer() {
        for url in [
            "mqtt://broker.example.com:1883",
            "mqtt://192.168.1.10",
            "mqtt://[fe80::1]:1883",
        ] {
            let e = check_broker_password(url, false).unwrap_err();
            assert!(matches!(e, Error::PlaintextPassword { .. }), "{url}: {e:?}");
            assert_eq!(e.class(), ErrorClass::Usage);
            assert!(e.to_string().contains("would travel in clear"), "{e}");
            assert!(check_broker_password(url, true).is_ok(), "{url}");
        }
        for url in [
            "mqtts://broker.example.com:8883",
            "mqtt://127.0.0.1:1883",
            "mqtt://127.8.9.1",
            "mqtt://localhost:1883",
            "mqtt://LOCALHOST",
            "mqtt://[::1]:1883",
        ] {
            assert!(check_broker_password(url, false).is_ok(), "{url}");
        }
    }

    #[test]
    fn every_error_has_one_class() {
        assert_eq!(
            Error::NeedsLogin {
                account: "a".into(),
                reason: "r".into()
            }
            .class(),
            ErrorClass::Auth
        );
        assert_eq!(Error::AccountExists("a".into()).class(), ErrorClass::Usage);
        assert_eq!(
            Error::AmbiguousNode {
                node_id: "n".into(),
                accounts: vec!["a".into(), "b".into()]
            }
            .class(),
            ErrorClass::Usage
        );
        assert_eq!(Error::Mqtt("down".into()).class(), ErrorClass::Failed);
    }
}
