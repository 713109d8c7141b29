//! Where passwords and tokens live: a small [`SecretStore`] trait, the OS
//! keychain behind it ([`KeyringSecretStore`]) and an in-memory store for
//! tests ([`MemorySecretStore`]). Nothing secret goes into the database,
//! config files or logs; when no keychain is reachable the caller is told so
//! ([`SecretError::NoKeychain`]) and nothing falls back to a file.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Why a secret could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// No keychain service answered (no Secret Service on D-Bus, keychain
    /// locked...). The app and CLI must say so; secrets are never written to a file instead.
    #[error("no keychain is reachable: {0}")]
    NoKeychain(String),
    /// This platform has no keychain support in this build.
    #[error("keychain not supported on this platform: {0}")]
    Unsupported(&'static str),
    /// The keychain answered with an error.
    #[error("keychain error: {0}")]
    Other(String),
}

/// Stores secrets by account and key (see [`crate::model::secret_keys`]).
/// Calls may block (D-Bus): the engine calls them off its async threads.
pub trait SecretStore: Send + Sync + 'static {
    /// The secret, or `None` when there is none.
    fn get(&self, account: &str, key: &str) -> Result<Option<String>, SecretError>;
    /// Stores or replaces a secret.
    fn set(&self, account: &str, key: &str, value: &str) -> Result<(), SecretError>;
    /// Deletes a secret (no error when there is none).
    fn delete(&self, account: &str, key: &str) -> Result<(), SecretError>;
}

/// Secrets in memory only, for tests and demos.
#[derive(Debug, Default, Clone)]
pub struct MemorySecretStore {
    map: Arc<Mutex<HashMap<(String, String), String>>>,
}

impl MemorySecretStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), String>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SecretStore for MemorySecretStore {
    fn get(&self, account: &str, key: &str) -> Result<Option<String>, SecretError> {
        Ok(self.lock().get(&(account.into(), key.into())).cloned())
    }
    fn set(&self, account: &str, key: &str, value: &str) -> Result<(), SecretError> {
        self.lock()
            .insert((account.into(), key.into()), value.into());
        Ok(())
    }
    fn delete(&self, account: &str, key: &str) -> Result<(), SecretError> {
        self.lock().remove(&(account.into(), key.into()));
        Ok(())
    }
}

/// The service name under which Greenlight's keychain items are stored.
pub const KEYCHAIN_SERVICE: &str = "greenlight";

/// The OS keychain through `keyring-core`: the Secret Service (D-Bus) on
/// Linux. Other platforms answer [`SecretError::Unsupported`] in this build
/// (their store crates are not wired in yet).
pub struct KeyringSecretStore {
    #[cfg(target_os = "linux")]
    store: Arc<zbus_secret_service_keyring_store::Store>,
}

impl std::fmt::Debug for KeyringSecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyringSecretStore").finish_non_exhaustive()
    }
}

fn map_keyring(e: keyring_core::Error) -> SecretError {
    match e {
        keyring_core::Error::NoStorageAccess(p) => SecretError::NoKeychain(p.to_string()),
        keyring_core::Error::PlatformFailure(p) => SecretError::NoKeychain(p.to_string()),
        keyring_core::Error::NoDefaultStore => {
            SecretError::NoKeychain("no credential store configured".into())
        }
        other => SecretError::Other(other.to_string()),
    }
}

impl KeyringSecretStore {
    /// Connects to the platform keychain. Fails with
    /// [`SecretError::NoKeychain`] when none answers.
    #[cfg(target_os = "linux")]
    pub fn open() -> Result<KeyringSecretStore, SecretError> {
        let store = zbus_secret_service_keyring_store::Store::new().map_err(map_keyring)?;
        Ok(KeyringSecretStore { store })
    }

    /// Connects to the platform keychain (not supported in this build here).
    #[cfg(not(target_os = "linux"))]
    pub fn open() -> Result<KeyringSecretStore, SecretError> {
        Err(SecretError::Unsupported(
            "only the Linux Secret Service is wired in; macOS, Windows, iOS and Android stores are not yet",
        ))
    }

    #[cfg(target_os = "linux")]
    fn entry(&self, account: &str, key: &str) -> Result<keyring_core::Entry, SecretError> {
        use keyring_core::api::CredentialStoreApi;
        self.store
            .build(KEYCHAIN_SERVICE, &format!("{account}/{key}"), None)
            .map_err(map_keyring)
    }

    #[cfg(not(target_os = "linux"))]
    fn entry(&self, _account: &str, _key: &str) -> Result<keyring_core::Entry, SecretError> {
        Err(SecretError::Unsupported("no keychain store in this build"))
    }
}

impl SecretStore for KeyringSecretStore {
    fn get(&self, account: &str, key: &str) -> Result<Option<String>, SecretError> {
        match self.entry(account, key)?.get_password() {
            Ok(s) => Ok(Some(s)),
            Err(keyring_core::Error::NoEntry) => Ok(None),
            Err(e) => Err(map_keyring(e)),
        }
    }
    fn set(&self, account: &str, key: &str, value: &str) -> Result<(), SecretError> {
        self.entry(account, key)?
            .set_password(value)
            .map_err(map_keyring)
    }
    fn delete(&self, account: &str, key: &str) -> Result<(), SecretError> {
        match self.entry(account, key)?.delete_credential() {
            Ok(()) | Err(keyring_core::Error::NoEntry) => Ok(()),
            Err(e) => Err(map_keyring(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_round_trip() {
        let s = MemorySecretStore::default();
        assert_eq!(s.get("a", "password").unwrap(), None);
        s.set("a", "password", "pw").unwrap();
        assert_eq!(s.get("a", "password").unwrap().as_deref(), Some("pw"));
        assert_eq!(s.get("b", "password").unwrap(), None);
        s.delete("a", "password").unwrap();
        s.delete("a", "password").unwrap();
        assert_eq!(s.get("a", "password").unwrap(), None);
    }

    #[test]
    fn keychain_absent_is_a_distinct_error() {
        // With no session bus, opening must fail with NoKeychain, never panic.
        if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
            match KeyringSecretStore::open() {
                Err(SecretError::NoKeychain(_)) | Err(SecretError::Unsupported(_)) => {}
                Err(e) => panic!("unexpected error kind: {e}"),
                Ok(s) => {
                    // Some systems autolaunch a bus; then reads must still not panic.
                    let _ = s.get("greenlight-test", "none");
                }
            }
        }
    }
}
