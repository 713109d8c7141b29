//! Where passwords and tokens live: a small [`SecretStore`] trait, the OS
//! keychain behind it ([`KeyringSecretStore`]) and an in-memory store for
//! tests ([`MemorySecretStore`]). Nothing secret goes into the database,
//! config files or logs; when no keychain is reachable the caller is told so
//! ([`SecretError::NoKeychain`]) and nothing falls back to a file.
//!
//! The keychain is reached through `keyring-core`, with one store crate per
//! platform (never the `keyring` convenience crate, whose iOS fallback is a
//! file):
//!
//! | platform | store | crate |
//! | --- | --- | --- |
//! | Linux, FreeBSD, OpenBSD, NetBSD, DragonFly | the Secret Service (D-Bus: gnome-keyring, KWallet...) | `zbus-secret-service-keyring-store` |
//! | macOS | the login keychain | `apple-native-keyring-store`, feature `keychain` |
//! | iOS | the Protected Data store, readable after the first unlock ([`IOS_ENTRY_MODIFIERS`]) | `apple-native-keyring-store`, feature `protected` |
//! | Windows | the Credential Manager, long values in parts ([`WINDOWS_CREDENTIAL_LIMIT`]) | `windows-native-keyring-store` |
//! | Android | SharedPreferences encrypted with a key of the Android Keystore | `android-native-keyring-store` |
//!
//! Any other platform answers [`SecretError::Unsupported`].
//!
//! Each secret is one keychain item, service `"greenlight"`, user
//! `"{account}/{key}"`. Only where one item cannot hold a value (Windows: 2560
//! bytes of UTF-16) is it kept in parts; see [`KeyringSecretStore`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

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

/// How a store encodes the password of an item, which is what its size
/// limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordEncoding {
    /// UTF-8: one to four bytes a character.
    Utf8,
    /// UTF-16: two or four bytes a character (the Windows Credential Manager).
    Utf16,
}

impl PasswordEncoding {
    fn char_size(self, c: char) -> usize {
        match self {
            PasswordEncoding::Utf8 => c.len_utf8(),
            PasswordEncoding::Utf16 => 2 * c.len_utf16(),
        }
    }

    fn size(self, s: &str) -> usize {
        match self {
            PasswordEncoding::Utf8 => s.len(),
            PasswordEncoding::Utf16 => 2 * s.encode_utf16().count(),
        }
    }
}

/// The largest password one item of a store can hold, in bytes of the
/// store's encoding. Values above it are kept in parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryLimit {
    max_bytes: usize,
    encoding: PasswordEncoding,
}

impl EntryLimit {
    /// The smallest limit accepted: a header (see [`KeyringSecretStore`])
    /// must fit in one item, in either encoding.
    pub const MIN_BYTES: usize = 256;

    /// A limit of `max_bytes` bytes of `encoding`.
    ///
    /// # Panics
    ///
    /// When `max_bytes` is below [`EntryLimit::MIN_BYTES`] (at compile time
    /// in a `const`).
    pub const fn new(max_bytes: usize, encoding: PasswordEncoding) -> EntryLimit {
        assert!(
            max_bytes >= EntryLimit::MIN_BYTES,
            "an item must hold at least EntryLimit::MIN_BYTES bytes"
        );
        EntryLimit {
            max_bytes,
            encoding,
        }
    }

    /// The largest password of one item, in bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The encoding those bytes are counted in.
    pub fn encoding(&self) -> PasswordEncoding {
        self.encoding
    }

    fn fits(&self, value: &str) -> bool {
        self.encoding.size(value) <= self.max_bytes
    }

    /// Cuts `value` into the fewest parts that each fit, at character
    /// boundaries (each part is itself a valid string, which
    /// `set_password` needs).
    fn split<'a>(&self, value: &'a str) -> Vec<&'a str> {
        let mut parts = Vec::new();
        let (mut start, mut size) = (0, 0);
        for (i, c) in value.char_indices() {
            let n = self.encoding.char_size(c);
            if size + n > self.max_bytes {
                parts.push(&value[start..i]);
                (start, size) = (i, 0);
            }
            size += n;
        }
        parts.push(&value[start..]);
        parts
    }
}

/// The Windows Credential Manager's limit, as `windows-native-keyring-store`
/// 1.1 enforces it: `Cred::set_password` encodes the password as UTF-16
/// (little-endian) and `utils::validate_password` refuses a blob longer than
/// `CRED_MAX_CREDENTIAL_BLOB_SIZE` (2560 bytes in windows-sys 0.61) with
/// `Error::TooLong("password encoded as UTF-16", 2560)`, i.e. 1280 UTF-16
/// units.
///
/// Why parts rather than bytes: `set_secret` would take 2560 raw bytes, so an
/// ASCII JWT could be twice as long in one item, but a RainMaker (Cognito)
/// ID or access token grows with its claims and a refresh token is typically
/// 1.7–1.8 KB already, so no single item is guaranteed to be enough either
/// way. Parts are needed regardless; keeping every item a UTF-16 password
/// (what `get_password` of this and any other keyring client reads) keeps
/// one encoding and one code path for every platform. A 1.8 KB refresh
/// token takes a header and two parts.
pub const WINDOWS_CREDENTIAL_LIMIT: EntryLimit = EntryLimit::new(2560, PasswordEncoding::Utf16);

/// The modifiers every item is built with on iOS: the Protected Data store
/// of `apple-native-keyring-store` 1.0 (`protected::Store::build`) takes one
/// modifier, `access-policy`, whose `after-first-unlock-this-device-only`
/// maps to `kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly` (its
/// `AccessPolicy::AfterFirstUnlockThisDeviceOnly`; the crate's `instantiation`
/// example uses `after-first-unlock` "to not require per-use unlock"). The
/// store's default, `WhenUnlocked`, would make every background refresh fail
/// while the phone is locked; after the first unlock since boot the items
/// stay readable. "This device only": a backup restored onto another phone
/// does not carry the tokens, the user logs in again there.
pub const IOS_ENTRY_MODIFIERS: &[(&str, &str)] =
    &[("access-policy", "after-first-unlock-this-device-only")];

/// What starts the header item of a value kept in parts. U+0001 starts no
/// password or token; a value that does start with this is itself kept in
/// parts on a store with a limit, so the main item holds this text only as
/// a header.
const HEADER_MAGIC: &str = "\u{1}greenlight-chunks/1 ";

/// The most parts a value may take (Windows: 1280 × 256 UTF-16 units). It
/// also bounds every probe for leftover parts.
const MAX_PARTS: usize = 256;

/// The header of a value kept in parts: which of the two slots holds the
/// parts, how many there are, the value's length in UTF-8 bytes and its
/// SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartsHeader {
    slot: u8,
    count: usize,
    len: usize,
    sha256: String,
}

impl PartsHeader {
    fn of(slot: u8, count: usize, value: &str) -> PartsHeader {
        PartsHeader {
            slot,
            count,
            len: value.len(),
            sha256: sha256_hex(value),
        }
    }

    fn encode(&self) -> String {
        format!(
            "{HEADER_MAGIC}{} {} {} {}",
            self.slot, self.count, self.len, self.sha256
        )
    }

    fn parse(s: &str) -> Option<PartsHeader> {
        let mut fields = s.strip_prefix(HEADER_MAGIC)?.split(' ');
        let slot: u8 = fields.next()?.parse().ok()?;
        let count: usize = fields.next()?.parse().ok()?;
        let len: usize = fields.next()?.parse().ok()?;
        let sha256 = fields.next()?.to_string();
        let well_formed = slot <= 1
            && (1..=MAX_PARTS).contains(&count)
            && sha256.len() == 64
            && sha256.bytes().all(|b| b.is_ascii_hexdigit());
        (well_formed && fields.next().is_none()).then_some(PartsHeader {
            slot,
            count,
            len,
            sha256,
        })
    }
}

fn sha256_hex(value: &str) -> String {
    Sha256::digest(value.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The OS keychain through `keyring-core` (see the module docs for the
/// store of each platform): the Secret Service on Linux and the BSDs, the
/// login keychain on macOS, the Protected Data store on iOS (items readable
/// after the first unlock, [`IOS_ENTRY_MODIFIERS`]), the Credential Manager
/// on Windows and the Keystore-encrypted SharedPreferences store on Android.
/// [`KeyringSecretStore::open`] picks it; [`KeyringSecretStore::with_store`]
/// takes any `keyring-core` store (tests use its mock).
///
/// Each secret is the item of service [`KEYCHAIN_SERVICE`] and user
/// `"{account}/{key}"`, as in every earlier version. On a store with a size
/// limit ([`KeyringSecretStore::with_chunk_limit`]; Windows) a value that
/// does not fit in one item is kept in parts:
///
/// - the parts are items `"{account}/{key}#{slot}.{i}"`, `i` from 0, each
///   within the limit, cut at character boundaries;
/// - the item `"{account}/{key}"` then holds a header: `U+0001
///   greenlight-chunks/1 {slot} {count} {len} {sha256}`;
/// - a write puts the parts in the slot the current header does not name
///   (so the parts it names are never touched), and the header last: until
///   that one atomic write, readers get the old value; then it removes the
///   old slot's parts and any surplus of the new one;
/// - parts are written in increasing and removed in decreasing order, so the
///   parts present in a slot always run from 0 without a gap and leftovers of
///   an interrupted write or delete are found by probing upwards;
/// - a reader checks the count, the length and the SHA-256 and returns an
///   error, never a value assembled from a wrong set of parts (it reads
///   again first if the header changed meanwhile: another process wrote);
/// - a delete removes the header first, then every part of both slots.
///
/// Values that fit are one item holding the value itself, as before.
pub struct KeyringSecretStore {
    store: Arc<keyring_core::CredentialStore>,
    /// `None` on stores without a practical limit; values are then always
    /// one item.
    chunk_limit: Option<EntryLimit>,
    /// Passed to the store's `build` for every item (iOS: the access policy).
    modifiers: &'static [(&'static str, &'static str)],
    /// Serialises this process's writes and deletes of values in parts.
    writes: Mutex<()>,
}

impl std::fmt::Debug for KeyringSecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyringSecretStore")
            .field("store", &self.store.vendor())
            .field("chunk_limit", &self.chunk_limit)
            .field("modifiers", &self.modifiers)
            .finish_non_exhaustive()
    }
}

fn map_keyring(e: keyring_core::Error) -> SecretError {
    use keyring_core::Error as E;
    match e {
        E::NoStorageAccess(p) => SecretError::NoKeychain(p.to_string()),
        E::PlatformFailure(p) => SecretError::NoKeychain(p.to_string()),
        E::NoDefaultStore => SecretError::NoKeychain("no credential store configured".into()),
        E::TooLong(what, limit) => SecretError::Other(format!(
            "the keychain cannot hold this item: its {what} is longer than the keychain's limit of {limit}"
        )),
        // Display of these never shows the stored bytes.
        E::BadEncoding(_) => SecretError::Other("the keychain item is not valid text".into()),
        E::BadDataFormat(_, why) => {
            SecretError::Other(format!("the keychain item is malformed: {why}"))
        }
        E::Ambiguous(items) => SecretError::Other(format!(
            "{} keychain items match this secret; remove the extra ones",
            items.len()
        )),
        other => SecretError::Other(other.to_string()),
    }
}

impl KeyringSecretStore {
    /// Connects to the platform keychain (see the module docs). Fails with
    /// [`SecretError::NoKeychain`] when none answers, and with
    /// [`SecretError::Unsupported`] on a platform without one.
    pub fn open() -> Result<KeyringSecretStore, SecretError> {
        open_platform()
    }

    /// Secrets in `store`, one item each, without size limit or modifiers.
    pub fn with_store(store: Arc<keyring_core::CredentialStore>) -> KeyringSecretStore {
        KeyringSecretStore {
            store,
            chunk_limit: None,
            modifiers: &[],
            writes: Mutex::new(()),
        }
    }

    /// Keeps values that do not fit in one item under `limit` in parts.
    pub fn with_chunk_limit(mut self, limit: EntryLimit) -> KeyringSecretStore {
        self.chunk_limit = Some(limit);
        self
    }

    /// Builds every item with these modifiers (store-specific, e.g.
    /// [`IOS_ENTRY_MODIFIERS`]).
    pub fn with_entry_modifiers(
        mut self,
        modifiers: &'static [(&'static str, &'static str)],
    ) -> KeyringSecretStore {
        self.modifiers = modifiers;
        self
    }

    /// The size limit of one item, if the store has one.
    pub fn chunk_limit(&self) -> Option<EntryLimit> {
        self.chunk_limit
    }

    fn entry(&self, user: &str) -> Result<keyring_core::Entry, SecretError> {
        let modifiers: HashMap<&str, &str> = self.modifiers.iter().copied().collect();
        let modifiers = (!modifiers.is_empty()).then_some(&modifiers);
        self.store
            .build(KEYCHAIN_SERVICE, user, modifiers)
            .map_err(map_keyring)
    }

    fn read(&self, user: &str) -> Result<Option<String>, SecretError> {
        match self.entry(user)?.get_password() {
            Ok(s) => Ok(Some(s)),
            Err(keyring_core::Error::NoEntry) => Ok(None),
            Err(e) => Err(map_keyring(e)),
        }
    }

    fn exists(&self, user: &str) -> Result<bool, SecretError> {
        match self.entry(user)?.get_secret() {
            Ok(_) => Ok(true),
            Err(keyring_core::Error::NoEntry) => Ok(false),
            Err(e) => Err(map_keyring(e)),
        }
    }

    fn write(&self, user: &str, value: &str) -> Result<(), SecretError> {
        self.entry(user)?.set_password(value).map_err(map_keyring)
    }

    fn remove(&self, user: &str) -> Result<(), SecretError> {
        match self.entry(user)?.delete_credential() {
            Ok(()) | Err(keyring_core::Error::NoEntry) => Ok(()),
            Err(e) => Err(map_keyring(e)),
        }
    }

    fn lock_writes(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the parts a header names and checks them against it.
    fn assemble(&self, account: &str, key: &str, h: &PartsHeader) -> Result<String, SecretError> {
        let mut value = String::with_capacity(h.len);
        for i in 0..h.count {
            match self.read(&part_name(account, key, h.slot, i))? {
                Some(part) => value.push_str(&part),
                None => {
                    return Err(damaged(
                        account,
                        key,
                        &format!("part {} of {} is missing", i + 1, h.count),
                    ))
                }
            }
        }
        if value.len() != h.len || sha256_hex(&value) != h.sha256 {
            return Err(damaged(
                account,
                key,
                "its parts do not match its header (length or checksum)",
            ));
        }
        Ok(value)
    }

    /// Removes parts `from..` of `slot` (highest first, so what is left
    /// still runs from 0 without a gap).
    fn remove_parts(
        &self,
        account: &str,
        key: &str,
        slot: u8,
        from: usize,
    ) -> Result<(), SecretError> {
        let mut end = from;
        while end < MAX_PARTS && self.exists(&part_name(account, key, slot, end))? {
            end += 1;
        }
        for i in (from..end).rev() {
            self.remove(&part_name(account, key, slot, i))?;
        }
        Ok(())
    }

    /// After a value is in place: removes parts nothing names any more. A
    /// failure leaves only unreachable leftovers, which the next write or
    /// delete of this secret removes; the write itself has succeeded.
    fn remove_stale_parts(&self, account: &str, key: &str, keep: Option<(u8, usize)>) {
        let ranges = match keep {
            Some((slot, count)) => [(slot, count), (1 - slot, 0)],
            None => [(0, 0), (1, 0)],
        };
        for (slot, from) in ranges {
            if let Err(e) = self.remove_parts(account, key, slot, from) {
                tracing::warn!(
                    account,
                    key,
                    error = %e,
                    "could not remove the old parts of a keychain item; the next write or delete of it retries"
                );
            }
        }
    }

    fn set_in_parts(
        &self,
        account: &str,
        key: &str,
        value: &str,
        limit: EntryLimit,
    ) -> Result<(), SecretError> {
        let name = item_name(account, key);
        let parts = limit.split(value);
        if parts.len() > MAX_PARTS {
            return Err(SecretError::Other(format!(
                "the secret {account}/{key} is too long for the keychain ({} parts of {} bytes; at most {MAX_PARTS})",
                parts.len(),
                limit.max_bytes
            )));
        }
        // The slot the current header does not name: its parts stay intact
        // until the new header replaces it.
        let slot = match self.read(&name)? {
            Some(current) => PartsHeader::parse(&current).map_or(0, |h| 1 - h.slot),
            None => 0,
        };
        for (i, part) in parts.iter().enumerate() {
            if let Err(e) = self.write(&part_name(account, key, slot, i), part) {
                // Nothing names these parts: the old value stands. Take them
                // back (best effort; a leftover is removed by the next write).
                for j in (0..i).rev() {
                    let _ = self.remove(&part_name(account, key, slot, j));
                }
                return Err(e);
            }
        }
        // The one write that switches readers to the new value. If it fails
        // the parts stay: the store may have applied it all the same.
        self.write(&name, &PartsHeader::of(slot, parts.len(), value).encode())?;
        self.remove_stale_parts(account, key, Some((slot, parts.len())));
        Ok(())
    }
}

/// The item of a secret (its value, or the header of its parts): the name
/// every version of Greenlight has used.
fn item_name(account: &str, key: &str) -> String {
    format!("{account}/{key}")
}

/// Part `index` of `slot` of a value kept in parts. Keys are fixed names
/// ([`crate::model::secret_keys`]) without `#`, so this never names another
/// secret's item.
fn part_name(account: &str, key: &str, slot: u8, index: usize) -> String {
    format!("{account}/{key}#{slot}.{index}")
}

fn damaged(account: &str, key: &str, why: &str) -> SecretError {
    SecretError::Other(format!(
        "the keychain item {account}/{key} is damaged: {why}; store the secret again (log in again)"
    ))
}

impl SecretStore for KeyringSecretStore {
    fn get(&self, account: &str, key: &str) -> Result<Option<String>, SecretError> {
        let name = item_name(account, key);
        let mut current = match self.read(&name)? {
            Some(v) => v,
            None => return Ok(None),
        };
        if self.chunk_limit.is_none() {
            return Ok(Some(current));
        }
        // A writer in another process may replace the value while its parts
        // are read: read again while the header changes under us.
        for _ in 0..3 {
            if !current.starts_with(HEADER_MAGIC) {
                return Ok(Some(current));
            }
            let header = PartsHeader::parse(&current)
                .ok_or_else(|| damaged(account, key, "its header is unreadable"))?;
            let failure = match self.assemble(account, key, &header) {
                Ok(value) => return Ok(Some(value)),
                Err(e) => e,
            };
            match self.read(&name)? {
                None => return Ok(None),
                Some(again) if again != current => current = again,
                Some(_) => return Err(failure),
            }
        }
        Err(SecretError::Other(format!(
            "the keychain item {account}/{key} kept changing while it was read"
        )))
    }

    fn set(&self, account: &str, key: &str, value: &str) -> Result<(), SecretError> {
        let name = item_name(account, key);
        let Some(limit) = self.chunk_limit else {
            return self.write(&name, value);
        };
        let _writing = self.lock_writes();
        if limit.fits(value) && !value.starts_with(HEADER_MAGIC) {
            self.write(&name, value)?;
            self.remove_stale_parts(account, key, None);
            Ok(())
        } else {
            self.set_in_parts(account, key, value, limit)
        }
    }

    fn delete(&self, account: &str, key: &str) -> Result<(), SecretError> {
        let name = item_name(account, key);
        if self.chunk_limit.is_none() {
            return self.remove(&name);
        }
        let _writing = self.lock_writes();
        // The header first: from then on nothing reads the parts.
        self.remove(&name)?;
        self.remove_parts(account, key, 0, 0)?;
        self.remove_parts(account, key, 1, 0)
    }
}

// The platform stores. Each arm is the constructor from its crate's
// documentation; these crates only exist for their targets.

/// Linux and the BSDs: the Secret Service over D-Bus
/// (`zbus-secret-service-keyring-store` docs: `Store::new()`).
#[cfg(any(
    target_os = "linux",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
))]
fn open_platform() -> Result<KeyringSecretStore, SecretError> {
    let store = zbus_secret_service_keyring_store::Store::new().map_err(map_keyring)?;
    Ok(KeyringSecretStore::with_store(store))
}

/// macOS: the login keychain (`apple-native-keyring-store` docs, feature
/// `keychain`: `keychain::Store::new()`, "the User (aka login) keychain").
#[cfg(target_os = "macos")]
fn open_platform() -> Result<KeyringSecretStore, SecretError> {
    let store = apple_native_keyring_store::keychain::Store::new().map_err(map_keyring)?;
    Ok(KeyringSecretStore::with_store(store))
}

/// iOS: the Protected Data store (`apple-native-keyring-store` docs, feature
/// `protected`: `protected::Store::new()`, the local, not iCloud-synchronised
/// store), every item readable after the first unlock.
#[cfg(target_os = "ios")]
fn open_platform() -> Result<KeyringSecretStore, SecretError> {
    let store = apple_native_keyring_store::protected::Store::new().map_err(map_keyring)?;
    Ok(KeyringSecretStore::with_store(store).with_entry_modifiers(IOS_ENTRY_MODIFIERS))
}

/// Windows: the Credential Manager (`windows-native-keyring-store` docs:
/// `Store::new()`), values over 2560 bytes of UTF-16 in parts.
#[cfg(target_os = "windows")]
fn open_platform() -> Result<KeyringSecretStore, SecretError> {
    let store = windows_native_keyring_store::Store::new().map_err(map_keyring)?;
    Ok(KeyringSecretStore::with_store(store).with_chunk_limit(WINDOWS_CREDENTIAL_LIMIT))
}

/// Android: SharedPreferences encrypted with an Android Keystore key
/// (`android-native-keyring-store` docs: `Store::new()`, after the
/// application context is set, see [`android_context_ready`]).
#[cfg(target_os = "android")]
fn open_platform() -> Result<KeyringSecretStore, SecretError> {
    android_context_ready()?;
    let store = android_native_keyring_store::Store::new().map_err(map_keyring)?;
    Ok(KeyringSecretStore::with_store(store))
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly",
    target_os = "macos",
    target_os = "ios",
    target_os = "windows",
    target_os = "android"
)))]
fn open_platform() -> Result<KeyringSecretStore, SecretError> {
    Err(SecretError::Unsupported(
        "Greenlight knows the keychains of Linux and the BSDs, macOS, iOS, Windows and Android only",
    ))
}

/// Android: whether the JVM and application context the Android store
/// needs are set. [`KeyringSecretStore::open`] checks it first; the app may
/// call it at start-up to report a broken entry point early.
///
/// `android-native-keyring-store` 1.0 finds the JVM and the application
/// `Context` through the `ndk-context` crate (`ndk_context::android_context()`,
/// which panics while they are unset). Nothing in Greenlight sets them: the
/// Tauri app's mobile entry point does, and must stay as it is:
/// `#[cfg_attr(mobile, tauri::mobile_entry_point)]` on `run()` in
/// `src-tauri/src/lib.rs` expands to `tauri::android_binding!`, then
/// `tao::android_binding!`. The generated `WryActivity.onCreate` (wry 0.57,
/// `WryActivity.kt`) calls `Rust.onCreate(this)`, tao's
/// `ndk_glue::onCreate`, which calls
/// `ndk_context::initialize_android_context(vm, applicationContext)` once
/// (tao 0.37, `platform_impl/android/ndk_glue.rs`, in a `OnceLock`); only
/// then does it register the observer whose `onFirstActivityCreate` starts
/// `run()`. So the app must open the
/// keychain only from `run()` on (never from `JNI_OnLoad` or a static
/// initialiser), and must not also call the store's own Kotlin
/// `io.crates.keyring.Keyring.initializeNdkContext`: `ndk-context` asserts it
/// is set only once and would panic.
///
/// With an unset context this answers [`SecretError::NoKeychain`] instead of
/// panicking inside the store (it relies on `panic = "unwind"`, the
/// workspace's setting).
#[cfg(target_os = "android")]
pub fn android_context_ready() -> Result<(), SecretError> {
    std::panic::catch_unwind(ndk_context::android_context)
        .map(|_| ())
        .map_err(|_| {
            SecretError::NoKeychain(
                "the Android application context is not set (ndk-context): the app's entry point must be tauri::mobile_entry_point".into(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::any::Any;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use keyring_core::api::{Credential, CredentialApi, CredentialStoreApi};
    use keyring_core::{mock, Entry};

    const A: &str = "home";
    const K: &str = "refresh_token";
    const UTF8_SMALL: EntryLimit = EntryLimit::new(256, PasswordEncoding::Utf8);
    const UTF16_SMALL: EntryLimit = EntryLimit::new(256, PasswordEncoding::Utf16);
    const LIMITS: [EntryLimit; 3] = [UTF8_SMALL, UTF16_SMALL, WINDOWS_CREDENTIAL_LIMIT];

    /// keyring-core's mock store keeps one credential per (service, user) for
    /// its whole life (`mock::Store::build` looks the pair up before creating
    /// one), so entries built again by name see what was stored: it exercises
    /// the naming like a real keychain.
    fn mock_store() -> Arc<mock::Store> {
        mock::Store::new().unwrap()
    }

    fn over(m: &Arc<mock::Store>, limit: Option<EntryLimit>) -> KeyringSecretStore {
        let s = KeyringSecretStore::with_store(m.clone());
        match limit {
            Some(l) => s.with_chunk_limit(l),
            None => s,
        }
    }

    fn all_limits() -> [Option<EntryLimit>; 4] {
        [
            None,
            Some(UTF8_SMALL),
            Some(UTF16_SMALL),
            Some(WINDOWS_CREDENTIAL_LIMIT),
        ]
    }

    /// The item `user` of service "greenlight", as any other program sees it.
    fn raw(m: &Arc<mock::Store>, user: &str) -> Option<String> {
        match m
            .build(KEYCHAIN_SERVICE, user, None)
            .unwrap()
            .get_password()
        {
            Ok(v) => Some(v),
            Err(keyring_core::Error::NoEntry) => None,
            Err(e) => panic!("{user}: {e}"),
        }
    }

    fn raw_set(m: &Arc<mock::Store>, user: &str, value: &str) {
        let e = m.build(KEYCHAIN_SERVICE, user, None).unwrap();
        e.set_password(value).unwrap();
    }

    fn raw_delete(m: &Arc<mock::Store>, user: &str) {
        let e = m.build(KEYCHAIN_SERVICE, user, None).unwrap();
        e.delete_credential().unwrap();
    }

    /// Every item that holds something: (service, user, password), sorted.
    fn items(m: &Arc<mock::Store>) -> Vec<(String, String, String)> {
        let mut v: Vec<_> = m
            .search(&HashMap::new())
            .unwrap()
            .into_iter()
            .filter_map(|e| {
                let (service, user) = e.get_specifiers()?;
                Some((service, user, e.get_password().ok()?))
            })
            .collect();
        v.sort();
        v
    }

    fn item(user: &str, value: &str) -> (String, String, String) {
        (KEYCHAIN_SERVICE.into(), user.into(), value.into())
    }

    /// The next call on item `user` fails with `err`.
    fn inject(m: &Arc<mock::Store>, user: &str, err: keyring_core::Error) {
        let e = m.build(KEYCHAIN_SERVICE, user, None).unwrap();
        let cred: &mock::Cred = e.as_any().downcast_ref().unwrap();
        cred.set_error(err);
    }

    fn platform(msg: &str) -> keyring_core::Error {
        keyring_core::Error::PlatformFailure(Box::new(std::io::Error::other(msg.to_string())))
    }

    fn no_access(msg: &str) -> keyring_core::Error {
        keyring_core::Error::NoStorageAccess(Box::new(std::io::Error::other(msg.to_string())))
    }

    /// `chars` characters of 1 to 4 bytes in UTF-8, 1 or 2 UTF-16 units.
    fn text(chars: usize, salt: char) -> String {
        let alphabet = ['a', 'é', '€', '😀', 'b', salt];
        (0..chars).map(|i| alphabet[i % alphabet.len()]).collect()
    }

    fn header(m: &Arc<mock::Store>, account: &str, key: &str) -> PartsHeader {
        let main = raw(m, &item_name(account, key)).expect("an item");
        PartsHeader::parse(&main).expect("a header")
    }

    /// A store over a mock that records the modifiers of every `build` and
    /// lets `writes_left` more writes (sets and deletes) through; every
    /// later one fails as if the process had died there.
    /// The modifiers of one `build`, sorted.
    type Modifiers = Vec<(String, String)>;

    #[derive(Debug)]
    struct Wrapped {
        inner: Arc<mock::Store>,
        writes_left: Arc<AtomicUsize>,
        built_with: Arc<Mutex<Vec<Modifiers>>>,
    }

    impl Wrapped {
        fn new(inner: &Arc<mock::Store>, writes_left: usize) -> Arc<Wrapped> {
            Arc::new(Wrapped {
                inner: inner.clone(),
                writes_left: Arc::new(AtomicUsize::new(writes_left)),
                built_with: Arc::default(),
            })
        }
    }

    impl CredentialStoreApi for Wrapped {
        fn vendor(&self) -> String {
            "test wrapper".into()
        }
        fn id(&self) -> String {
            "wrapped".into()
        }
        fn build(
            &self,
            service: &str,
            user: &str,
            modifiers: Option<&HashMap<&str, &str>>,
        ) -> keyring_core::Result<Entry> {
            let mut seen: Modifiers = modifiers
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            seen.sort();
            self.built_with.lock().unwrap().push(seen);
            let inner = self.inner.build(service, user, None)?;
            Ok(Entry::new_with_credential(Arc::new(WrappedCred {
                inner,
                writes_left: self.writes_left.clone(),
            })))
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    #[derive(Debug)]
    struct WrappedCred {
        inner: Entry,
        writes_left: Arc<AtomicUsize>,
    }

    impl WrappedCred {
        fn may_write(&self) -> keyring_core::Result<()> {
            self.writes_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .map(|_| ())
                .map_err(|_| platform("simulated crash"))
        }
    }

    impl CredentialApi for WrappedCred {
        fn set_password(&self, password: &str) -> keyring_core::Result<()> {
            self.may_write()?;
            self.inner.set_password(password)
        }
        fn set_secret(&self, secret: &[u8]) -> keyring_core::Result<()> {
            self.may_write()?;
            self.inner.set_secret(secret)
        }
        fn get_password(&self) -> keyring_core::Result<String> {
            self.inner.get_password()
        }
        fn get_secret(&self) -> keyring_core::Result<Vec<u8>> {
            self.inner.get_secret()
        }
        fn delete_credential(&self) -> keyring_core::Result<()> {
            self.may_write()?;
            self.inner.delete_credential()
        }
        fn get_credential(&self) -> keyring_core::Result<Option<Arc<Credential>>> {
            Ok(None)
        }
        fn get_specifiers(&self) -> Option<(String, String)> {
            self.inner.get_specifiers()
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

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

    #[test]
    fn items_are_named_greenlight_and_account_slash_key() {
        for limit in all_limits() {
            let m = mock_store();
            // What an earlier version stored: one item ("greenlight", "home/password").
            raw_set(&m, "home/password", "old pw");
            let s = over(&m, limit);
            assert_eq!(
                s.get("home", "password").unwrap().as_deref(),
                Some("old pw"),
                "{limit:?}"
            );
            s.set("home", "refresh_token", "tok").unwrap();
            assert_eq!(
                items(&m),
                vec![
                    item("home/password", "old pw"),
                    item("home/refresh_token", "tok")
                ],
                "{limit:?}"
            );
            assert_eq!(s.get("work", "password").unwrap(), None);
            assert_eq!(s.get("home", "mqtt_password").unwrap(), None);
            // Another service's item of the same user is not Greenlight's.
            let other = m.build("other-app", "home/mqtt_password", None).unwrap();
            other.set_password("theirs").unwrap();
            assert_eq!(s.get("home", "mqtt_password").unwrap(), None);
            s.delete("home", "mqtt_password").unwrap();
            assert_eq!(other.get_password().unwrap(), "theirs");
        }
    }

    #[test]
    fn a_missing_secret_is_none_and_deleting_it_is_ok() {
        for limit in all_limits() {
            let m = mock_store();
            let s = over(&m, limit);
            assert_eq!(s.get(A, "password").unwrap(), None);
            s.delete(A, "password").unwrap();
            s.set(A, "password", "pw").unwrap();
            s.delete(A, "password").unwrap();
            assert_eq!(s.get(A, "password").unwrap(), None);
            s.delete(A, "password").unwrap();
            assert!(items(&m).is_empty(), "{limit:?}");
        }
    }

    #[test]
    fn keychain_errors_map_to_secret_errors() {
        for limit in all_limits() {
            let m = mock_store();
            let s = over(&m, limit);
            s.set(A, "password", "pw").unwrap();
            let main = "home/password";

            inject(&m, main, no_access("the keychain is locked"));
            match s.get(A, "password") {
                Err(SecretError::NoKeychain(why)) => assert!(why.contains("locked"), "{why}"),
                other => panic!("{limit:?}: {other:?}"),
            }
            inject(&m, main, platform("no D-Bus"));
            assert!(
                matches!(s.set(A, "password", "pw2"), Err(SecretError::NoKeychain(_))),
                "{limit:?}"
            );
            inject(&m, main, no_access("locked"));
            assert!(
                matches!(s.delete(A, "password"), Err(SecretError::NoKeychain(_))),
                "{limit:?}"
            );
            inject(
                &m,
                main,
                keyring_core::Error::TooLong("password encoded as UTF-16".into(), 2560),
            );
            match s.set(A, "password", "pw3") {
                Err(SecretError::Other(why)) => {
                    assert!(why.contains("limit of 2560"), "{why}");
                    assert!(why.contains("password encoded as UTF-16"), "{why}");
                }
                other => panic!("{limit:?}: {other:?}"),
            }
            inject(&m, main, keyring_core::Error::BadEncoding(vec![0xff]));
            assert!(
                matches!(s.get(A, "password"), Err(SecretError::Other(_))),
                "{limit:?}"
            );
            // None of that touched the value.
            assert_eq!(s.get(A, "password").unwrap().as_deref(), Some("pw"));
        }
        assert!(matches!(
            map_keyring(keyring_core::Error::NoDefaultStore),
            SecretError::NoKeychain(_)
        ));
    }

    #[test]
    fn long_values_round_trip_in_parts_within_the_limit() {
        for limit in LIMITS {
            let m = mock_store();
            let s = over(&m, Some(limit));
            let value = text(limit.max_bytes() * 3, 'x');
            assert!(limit.encoding().size(&value) > 5 * limit.max_bytes());
            s.set(A, K, &value).unwrap();
            assert_eq!(s.get(A, K).unwrap().as_deref(), Some(value.as_str()));
            // A new store object reads it too (nothing is kept in memory).
            assert_eq!(
                over(&m, Some(limit)).get(A, K).unwrap().as_deref(),
                Some(value.as_str())
            );
            let h = header(&m, A, K);
            assert!(h.count > 5, "{limit:?}: {h:?}");
            let joined: String = (0..h.count)
                .map(|i| raw(&m, &part_name(A, K, h.slot, i)).expect("a part"))
                .collect();
            assert_eq!(joined, value);
            let all = items(&m);
            assert_eq!(all.len(), h.count + 1, "only the header and the parts");
            for (service, user, v) in all {
                assert_eq!(service, KEYCHAIN_SERVICE);
                assert!(
                    limit.encoding().size(&v) <= limit.max_bytes(),
                    "{limit:?}: {user} holds {} bytes",
                    limit.encoding().size(&v)
                );
            }
        }
    }

    #[test]
    fn characters_are_never_cut_at_a_part_edge() {
        // UTF-8, 256 bytes: a 4-byte emoji would end at byte 259, a 2-byte é
        // at byte 257: both move to the next part.
        let value = format!(
            "{}😀{}é{}",
            "x".repeat(255),
            "y".repeat(251),
            "z".repeat(300)
        );
        let expected = [
            "x".repeat(255),
            format!("😀{}", "y".repeat(251)),
            format!("é{}", "z".repeat(254)),
            "z".repeat(46),
        ];
        assert_eq!(UTF8_SMALL.split(&value), expected);
        // UTF-16, 256 bytes (128 units): the emoji is a surrogate pair (4 bytes).
        let value16 = format!("{}😀{}€€€", "x".repeat(127), "é".repeat(126));
        let expected16 = [
            "x".repeat(127),
            format!("😀{}", "é".repeat(126)),
            "€€€".to_string(),
        ];
        assert_eq!(UTF16_SMALL.split(&value16), expected16);

        for (limit, value, expected) in [
            (UTF8_SMALL, &value, &expected[..]),
            (UTF16_SMALL, &value16, &expected16[..]),
        ] {
            let m = mock_store();
            let s = over(&m, Some(limit));
            s.set(A, K, value).unwrap();
            assert_eq!(s.get(A, K).unwrap().as_deref(), Some(value.as_str()));
            let h = header(&m, A, K);
            assert_eq!(h.count, expected.len());
            for (i, part) in expected.iter().enumerate() {
                assert_eq!(
                    raw(&m, &part_name(A, K, h.slot, i)).as_deref(),
                    Some(part.as_str())
                );
            }
        }
    }

    #[test]
    fn a_value_at_the_limit_is_one_item_and_one_unit_over_is_in_parts() {
        let cases = [
            (UTF8_SMALL, "y".repeat(256), "y".repeat(257)),
            (UTF8_SMALL, "é".repeat(128), format!("{}a", "é".repeat(128))),
            (UTF16_SMALL, "y".repeat(128), "y".repeat(129)),
            (WINDOWS_CREDENTIAL_LIMIT, "t".repeat(1280), "t".repeat(1281)),
        ];
        for (limit, at, over_by_one) in cases {
            let m = mock_store();
            let s = over(&m, Some(limit));
            s.set(A, K, &at).unwrap();
            // Exactly as before: one item holding the value.
            assert_eq!(items(&m), vec![item("home/refresh_token", &at)]);
            assert_eq!(s.get(A, K).unwrap().as_deref(), Some(at.as_str()));

            s.set(A, K, &over_by_one).unwrap();
            assert_eq!(header(&m, A, K).count, 2, "{limit:?}");
            assert_eq!(items(&m).len(), 3);
            assert_eq!(s.get(A, K).unwrap().as_deref(), Some(over_by_one.as_str()));

            s.set(A, K, &at).unwrap();
            assert_eq!(items(&m), vec![item("home/refresh_token", &at)]);
        }
    }

    #[test]
    fn a_shorter_value_leaves_no_surplus_parts() {
        for limit in [UTF8_SMALL, UTF16_SMALL] {
            let m = mock_store();
            let s = over(&m, Some(limit));
            let long = text(limit.max_bytes() * 4, 'l');
            let shorter = text(limit.max_bytes(), 's');
            s.set(A, K, &long).unwrap();
            let h1 = header(&m, A, K);
            assert!(h1.count >= 8, "{h1:?}");
            s.set(A, K, &shorter).unwrap();
            let h2 = header(&m, A, K);
            assert!(h2.count < h1.count && h2.count >= 2, "{h2:?}");
            assert_eq!(s.get(A, K).unwrap().as_deref(), Some(shorter.as_str()));
            assert_eq!(items(&m).len(), h2.count + 1);
            for slot in [0, 1] {
                let from = if slot == h2.slot { h2.count } else { 0 };
                for i in from..h1.count {
                    assert_eq!(raw(&m, &part_name(A, K, slot, i)), None, "{slot}.{i}");
                }
            }
            s.set(A, K, "short").unwrap();
            assert_eq!(items(&m), vec![item("home/refresh_token", "short")]);
        }
    }

    #[test]
    fn delete_removes_every_part() {
        for limit in [UTF8_SMALL, UTF16_SMALL, WINDOWS_CREDENTIAL_LIMIT] {
            let m = mock_store();
            let s = over(&m, Some(limit));
            s.set(A, "password", "stays").unwrap();
            s.set(A, K, &text(limit.max_bytes() * 2, 'd')).unwrap();
            assert!(items(&m).len() > 3);
            s.delete(A, K).unwrap();
            assert_eq!(s.get(A, K).unwrap(), None);
            assert_eq!(items(&m), vec![item("home/password", "stays")]);
        }
        // Leftovers of interrupted writes in both slots go too.
        let m = mock_store();
        let s = over(&m, Some(UTF8_SMALL));
        s.set(A, K, &text(600, 'd')).unwrap();
        for slot in [0, 1] {
            for i in 0..5 {
                raw_set(&m, &part_name(A, K, slot, i), "left over");
            }
        }
        s.delete(A, K).unwrap();
        assert!(items(&m).is_empty(), "{:?}", items(&m));
    }

    #[test]
    fn parts_without_their_header_or_a_failed_part_write_keep_the_old_value() {
        let m = mock_store();
        let s = over(&m, Some(UTF8_SMALL));
        let v1 = text(1000, '1');
        let v2 = text(700, '2');
        s.set(A, K, &v1).unwrap();
        let h1 = header(&m, A, K);

        // A writer that died after writing parts into the free slot, before
        // its header: readers still get the old value.
        for i in 0..8 {
            raw_set(&m, &part_name(A, K, 1 - h1.slot, i), &text(100, '?'));
        }
        assert_eq!(s.get(A, K).unwrap().as_deref(), Some(v1.as_str()));
        // The next write reuses that slot and removes what it does not need.
        s.set(A, K, &v2).unwrap();
        let h2 = header(&m, A, K);
        assert_eq!(h2.slot, 1 - h1.slot);
        assert_eq!(s.get(A, K).unwrap().as_deref(), Some(v2.as_str()));
        assert_eq!(items(&m).len(), h2.count + 1, "no leftover part");

        // An error on the third part's write: the old value stands and the
        // two parts written are taken back.
        let before = items(&m);
        inject(
            &m,
            &part_name(A, K, 1 - h2.slot, 2),
            platform("write failed"),
        );
        assert!(matches!(s.set(A, K, &v1), Err(SecretError::NoKeychain(_))));
        assert_eq!(s.get(A, K).unwrap().as_deref(), Some(v2.as_str()));
        assert_eq!(items(&m), before);
        // An error on the header's own write: the old value stands.
        inject(&m, "home/refresh_token", platform("header lost"));
        assert!(s.set(A, K, &v1).is_err());
        assert_eq!(s.get(A, K).unwrap().as_deref(), Some(v2.as_str()));
        // And then it works.
        s.set(A, K, &v1).unwrap();
        assert_eq!(s.get(A, K).unwrap().as_deref(), Some(v1.as_str()));
    }

    #[test]
    fn a_header_with_wrong_parts_is_an_error_never_a_wrong_value() {
        let m = mock_store();
        let s = over(&m, Some(UTF8_SMALL));
        let secret = text(800, 'S');
        s.set(A, K, &secret).unwrap();
        let h = header(&m, A, K);
        let second = part_name(A, K, h.slot, 1);
        let good = raw(&m, &second).unwrap();

        // A part replaced by one of the same size (a mixed set of parts).
        let forged: String = good.chars().rev().collect();
        assert_eq!(forged.len(), good.len());
        assert_ne!(forged, good);
        raw_set(&m, &second, &forged);
        match s.get(A, K) {
            Err(SecretError::Other(why)) => {
                assert!(why.contains("damaged"), "{why}");
                assert!(!why.contains(&good) && !why.contains(&forged), "{why}");
            }
            other => panic!("{other:?}"),
        }
        // A missing part.
        raw_set(&m, &second, &good);
        assert_eq!(s.get(A, K).unwrap().as_deref(), Some(secret.as_str()));
        raw_delete(&m, &second);
        match s.get(A, K) {
            Err(SecretError::Other(why)) => assert!(why.contains("part 2 of"), "{why}"),
            other => panic!("{other:?}"),
        }
        // An unreadable header.
        raw_set(&m, "home/refresh_token", &format!("{HEADER_MAGIC}x"));
        assert!(matches!(s.get(A, K), Err(SecretError::Other(_))));
        // A locked keychain while reading a part is a keychain error.
        s.set(A, K, &secret).unwrap();
        let h = header(&m, A, K);
        inject(&m, &part_name(A, K, h.slot, 0), no_access("locked"));
        assert!(matches!(s.get(A, K), Err(SecretError::NoKeychain(_))));
        assert_eq!(s.get(A, K).unwrap().as_deref(), Some(secret.as_str()));
    }

    #[derive(Debug, Clone, Copy)]
    enum Op<'a> {
        Set(&'a str),
        Delete,
    }

    /// Runs `op` over a store holding `before`, letting the process "die"
    /// after each possible number of writes, then reads as a restarted
    /// process would.
    fn crash_at_every_write(limit: EntryLimit, before: Option<&str>, op: Op) {
        let prepare = || {
            let m = mock_store();
            if let Some(b) = before {
                over(&m, Some(limit)).set(A, K, b).unwrap();
            }
            m
        };
        let run = |m: &Arc<mock::Store>, writes: usize| {
            let w = Wrapped::new(m, writes);
            let left = w.writes_left.clone();
            let s = KeyringSecretStore::with_store(w).with_chunk_limit(limit);
            let result = match op {
                Op::Set(v) => s.set(A, K, v),
                Op::Delete => s.delete(A, K),
            };
            (result, writes - left.load(Ordering::SeqCst))
        };
        let (result, total) = run(&prepare(), usize::MAX);
        result.unwrap();
        assert!(total > 0);
        let old = before.map(str::to_string);
        let new = match op {
            Op::Set(v) => Some(v.to_string()),
            Op::Delete => None,
        };
        let third = text(limit.max_bytes() * 2, '3');
        for n in 0..=total {
            let m = prepare();
            let (result, _) = run(&m, n);
            let s = over(&m, Some(limit));
            let after = s
                .get(A, K)
                .unwrap_or_else(|e| panic!("{op:?}, crash after {n} of {total} writes: {e}"));
            assert!(
                after == old || after == new,
                "{op:?}, crash after {n} of {total} writes: a third value"
            );
            if result.is_ok() {
                assert!(
                    after == new,
                    "{op:?}: Ok after {n} writes, but not the new value"
                );
            }
            if matches!(op, Op::Set(_)) && result.is_err() {
                assert!(
                    after == old,
                    "{op:?}: Err after {n} writes, but not the old value"
                );
            }
            // The next write and delete leave nothing behind.
            s.set(A, K, &third).unwrap();
            assert_eq!(s.get(A, K).unwrap().as_deref(), Some(third.as_str()));
            assert_eq!(items(&m).len(), header(&m, A, K).count + 1, "after {n}");
            s.delete(A, K).unwrap();
            assert!(items(&m).is_empty(), "after {n}: {:?}", items(&m));
        }
    }

    #[test]
    fn a_crash_at_any_write_leaves_the_old_or_the_new_value() {
        let l = UTF8_SMALL;
        let long = text(900, 'L');
        let longer = text(1500, 'M');
        let shorter_long = text(400, 'N');
        crash_at_every_write(l, None, Op::Set(&long));
        crash_at_every_write(l, Some(&long), Op::Set(&longer));
        crash_at_every_write(l, Some(&longer), Op::Set(&shorter_long));
        crash_at_every_write(l, Some(&long), Op::Set("short"));
        crash_at_every_write(l, Some("short"), Op::Set(&long));
        crash_at_every_write(l, Some(&long), Op::Delete);
        crash_at_every_write(UTF16_SMALL, Some(&long), Op::Set(&longer));
    }

    #[test]
    fn secrets_live_only_in_the_injected_store() {
        assert!(keyring_core::get_default_store().is_none());
        let m = mock_store();
        let s = over(&m, Some(UTF8_SMALL));
        let long = text(2000, 's');
        s.set(A, "password", "hunter2-unique").unwrap();
        s.set(A, K, &long).unwrap();
        // Nothing went through keyring-core's default store...
        assert!(keyring_core::get_default_store().is_none());
        // ...nor anywhere another store could find it.
        let other = mock_store();
        assert_eq!(over(&other, None).get(A, "password").unwrap(), None);
        assert!(items(&other).is_empty());
        for (service, _, _) in items(&m) {
            assert_eq!(service, KEYCHAIN_SERVICE);
        }
        // Nothing is kept in memory: what the keychain loses is gone.
        raw_delete(&m, "home/password");
        assert_eq!(s.get(A, "password").unwrap(), None);
        // Nor shown.
        assert!(!format!("{s:?}").contains("hunter2"));
        // A keychain that refuses a write keeps nothing, and nothing else
        // answers for it.
        inject(&m, "home/mqtt_password", no_access("locked"));
        assert!(matches!(
            s.set(A, "mqtt_password", "mqtt-secret"),
            Err(SecretError::NoKeychain(_))
        ));
        assert_eq!(s.get(A, "mqtt_password").unwrap(), None);
        assert!(!items(&m).iter().any(|(_, _, v)| v.contains("mqtt-secret")));
    }

    #[test]
    fn every_item_is_built_with_the_store_modifiers() {
        let m = mock_store();
        let w = Wrapped::new(&m, usize::MAX);
        let built = w.built_with.clone();
        let s = KeyringSecretStore::with_store(w)
            .with_chunk_limit(UTF8_SMALL)
            .with_entry_modifiers(IOS_ENTRY_MODIFIERS);
        let value = text(1000, 'm');
        s.set(A, K, &value).unwrap();
        assert_eq!(s.get(A, K).unwrap().as_deref(), Some(value.as_str()));
        s.delete(A, K).unwrap();
        let built = built.lock().unwrap();
        assert!(built.len() > 10);
        for mods in built.iter() {
            assert_eq!(
                mods,
                &[(
                    "access-policy".to_string(),
                    "after-first-unlock-this-device-only".to_string()
                )]
            );
        }
        // A store that refuses the modifiers (the mock refuses any) fails the
        // call; they are never dropped silently.
        let s =
            KeyringSecretStore::with_store(mock_store()).with_entry_modifiers(IOS_ENTRY_MODIFIERS);
        assert!(matches!(
            s.set(A, "password", "pw"),
            Err(SecretError::Other(_))
        ));
        // Without modifiers none are passed (or the mock would refuse).
        over(&mock_store(), None).set(A, "password", "pw").unwrap();
    }

    #[test]
    fn a_value_that_looks_like_a_header_is_kept_in_parts() {
        let fake = format!("{HEADER_MAGIC}0 1 3 {}", "0".repeat(64));
        for limit in [UTF8_SMALL, WINDOWS_CREDENTIAL_LIMIT] {
            let m = mock_store();
            let s = over(&m, Some(limit));
            s.set(A, "password", &fake).unwrap();
            assert_eq!(
                s.get(A, "password").unwrap().as_deref(),
                Some(fake.as_str())
            );
            let h = header(&m, A, "password");
            assert_eq!(h.count, 1);
            assert_eq!(h.sha256, sha256_hex(&fake));
        }
        // Without a limit every value is one item, as before.
        let m = mock_store();
        let s = over(&m, None);
        s.set(A, "password", &fake).unwrap();
        assert_eq!(raw(&m, "home/password").as_deref(), Some(fake.as_str()));
        assert_eq!(
            s.get(A, "password").unwrap().as_deref(),
            Some(fake.as_str())
        );
    }

    #[test]
    fn the_header_fits_the_smallest_limit_and_bad_headers_are_refused() {
        let biggest = PartsHeader {
            slot: 1,
            count: MAX_PARTS,
            len: usize::MAX,
            sha256: "f".repeat(64),
        };
        let text = biggest.encode();
        for encoding in [PasswordEncoding::Utf8, PasswordEncoding::Utf16] {
            assert!(
                encoding.size(&text) <= EntryLimit::MIN_BYTES,
                "{encoding:?}"
            );
        }
        assert_eq!(PartsHeader::parse(&text), Some(biggest));
        let sum = "a".repeat(64);
        for bad in [
            HEADER_MAGIC.to_string(),
            format!("{HEADER_MAGIC}2 1 1 {sum}"),
            format!("{HEADER_MAGIC}0 0 1 {sum}"),
            format!("{HEADER_MAGIC}0 {} 1 {sum}", MAX_PARTS + 1),
            format!("{HEADER_MAGIC}0 1 1 {}", "a".repeat(63)),
            format!("{HEADER_MAGIC}0 1 1 {}", "g".repeat(64)),
            format!("{HEADER_MAGIC}0 1 1 {sum} extra"),
            format!("{HEADER_MAGIC}0 1 -1 {sum}"),
        ] {
            assert_eq!(PartsHeader::parse(&bad), None, "{bad:?}");
        }
        // The Windows limit is the Credential Manager's 2560-byte blob, in UTF-16.
        assert_eq!(WINDOWS_CREDENTIAL_LIMIT.max_bytes(), 2560);
        assert_eq!(WINDOWS_CREDENTIAL_LIMIT.encoding(), PasswordEncoding::Utf16);
    }
}
