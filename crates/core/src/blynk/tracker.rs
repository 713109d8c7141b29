//! The Blynk tracker: one actor that owns the Blynk accounts and the
//! campaigns being followed, folds what the admin API shows into each
//! device's state, writes every change to the store and only then
//! broadcasts a [`BlynkEvent`] — the engine's shape, beside the engine.
//!
//! Network calls never run inside the actor. Starting and stopping run in
//! the caller's task (the actor only records the intent and the result);
//! polls run in tasks whose results come back as messages, so a slow server
//! never stalls the others.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

use super::actor::{Actor, Begin, Reply, Request};
use super::client::{AdminClient, ClientOptions, Fetch};
use super::error::{BlynkError, BlynkResult};
use super::firmware::Firmware;
use super::model::{
    BlynkAccount, BlynkEvent, Campaign, DeviceEvent, DeviceSeen, StartTarget, Target,
};
use super::users::devices_of;
use crate::engine::EngineConfig;
use crate::secrets::SecretStore;
use crate::store::Store;

/// How the tracker runs.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// Poll period of accounts with campaigns to follow.
    pub poll_interval: Duration,
    /// Poll on a timer. The app does; one-shot CLI commands poll when they ask
    /// ([`BlynkHandle::refresh`]).
    pub background: bool,
    /// Default for new campaigns: logins on the old build after the update was
    /// sent before a reboot loop is suspected.
    pub loop_after: u32,
    /// How long a device may be "installing" without any news.
    pub install_grace: Duration,
    /// Admin client timeouts and retries.
    pub client: ClientOptions,
}

impl Default for TrackerConfig {
    /// Poll every 10 s, suspect a loop after 3 reconnects, 5 min install grace.
    fn default() -> Self {
        TrackerConfig {
            poll_interval: Duration::from_secs(10),
            background: true,
            loop_after: 3,
            install_grace: Duration::from_secs(300),
            client: ClientOptions::default(),
        }
    }
}

/// Opens trackers.
pub struct BlynkTracker;

impl BlynkTracker {
    /// Opens the store in `data_dir` (the engine's: the same database file,
    /// its own connection), resumes following live campaigns and returns a handle.
    pub async fn open(
        data_dir: impl Into<PathBuf>,
        secrets: Arc<dyn SecretStore>,
        actor_name: &str,
        cfg: TrackerConfig,
    ) -> BlynkResult<BlynkHandle> {
        let dir = data_dir.into();
        let store = tokio::task::spawn_blocking(move || Store::open(&dir))
            .await
            .map_err(|e| BlynkError::Other(format!("store task: {e}")))??;
        let (tx, rx) = mpsc::channel(64);
        let (int_tx, int_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(1024);
        let mut actor = Actor::new(
            cfg.clone(),
            store,
            secrets,
            actor_name,
            events.clone(),
            int_tx,
        );
        actor.load()?;
        tokio::spawn(actor.run(rx, int_rx));
        Ok(BlynkHandle {
            tx,
            events,
            client: cfg.client,
            loop_after: cfg.loop_after,
        })
    }

    /// Opens a tracker beside an engine: same data directory, keychain and actor name.
    pub async fn open_beside(
        engine: &EngineConfig,
        cfg: TrackerConfig,
    ) -> BlynkResult<BlynkHandle> {
        Self::open(
            engine.data_dir.clone(),
            engine.secrets.clone(),
            &engine.actor_name,
            cfg,
        )
        .await
    }
}

/// The views' handle on the Blynk tracker. Cheap to clone; the tracker
/// stops when the last handle is dropped or [`BlynkHandle::shutdown`] is called.
#[derive(Clone)]
pub struct BlynkHandle {
    tx: mpsc::Sender<Request>,
    events: broadcast::Sender<BlynkEvent>,
    client: ClientOptions,
    loop_after: u32,
}

impl std::fmt::Debug for BlynkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlynkHandle").finish_non_exhaustive()
    }
}

fn valid_token(t: &str) -> BlynkResult<&str> {
    let t = t.trim();
    if t.is_empty()
        || t.len() > 64
        || !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(BlynkError::Invalid(
            "a device token is the 32 letters and digits the Blynk app shows (Auth Token)".into(),
        ));
    }
    Ok(t)
}

impl BlynkHandle {
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> BlynkResult<T> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| BlynkError::Stopped)?;
        rx.await.map_err(|_| BlynkError::Stopped)?
    }

    /// Subscribes to events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<BlynkEvent> {
        self.events.subscribe()
    }

    /// Checks the admin email and password against the server (a login,
    /// which changes nothing there), then keeps the password in the keychain
    /// and the account in the store. A wrong password is
    /// [`BlynkError::Auth`] and nothing is kept.
    pub async fn add_account(&self, mut account: BlynkAccount, password: &str) -> BlynkResult<()> {
        if account.name.trim().is_empty() || account.name.contains('/') {
            return Err(BlynkError::Invalid(
                "an account needs a name without '/'".into(),
            ));
        }
        if account.user.trim().is_empty() {
            return Err(BlynkError::Invalid("the admin email is empty".into()));
        }
        if password.is_empty() {
            return Err(BlynkError::Invalid("the password is empty".into()));
        }
        account.url = account.url.trim_end_matches('/').to_string();
        if let Some(p) = &account.pinned_sha256 {
            account.pinned_sha256 = Some(crate::tls::normalize_fingerprint(p)?);
        }
        if account.upload_limit == 0 {
            return Err(BlynkError::Invalid(
                "the upload limit must be more than 0 bytes".into(),
            ));
        }
        let client = AdminClient::new(&account, password, self.client.clone())?;
        client.login().await?;
        self.ask(|r| Request::SaveAccount(Box::new(account), password.to_string(), r))
            .await
    }

    /// Forgets an account and its password (its campaigns stay in history).
    pub async fn remove_account(&self, name: &str) -> BlynkResult<()> {
        self.ask(|r| Request::RemoveAccount(name.into(), r)).await
    }

    /// Every Blynk account.
    pub async fn accounts(&self) -> BlynkResult<Vec<BlynkAccount>> {
        self.ask(Request::Accounts).await
    }

    /// Starts an update: checks the upload size against the account's limit,
    /// reads what each targeted device runs now (the baseline), records the
    /// campaign, uploads exactly the validated bytes, and records the answer.
    /// `loop_after`: reconnects on the old build before a reboot loop is
    /// suspected (the tracker's default when `None`).
    ///
    /// Nothing is uploaded when the size, the token, the user or the project
    /// is wrong. An upload the server refuses is recorded as a failed campaign
    /// and returned as the error.
    pub async fn start(
        &self,
        account: &str,
        firmware: &Firmware,
        target: StartTarget,
        loop_after: Option<u32>,
    ) -> BlynkResult<Campaign> {
        let (client, acct) = self.ask(|r| Request::Client(account.into(), r)).await?;
        let size = firmware.upload_size();
        if size > acct.upload_limit {
            return Err(BlynkError::TooLarge {
                size,
                limit: acct.upload_limit,
            });
        }
        let (devices, stored) = match &target {
            StartTarget::Token(t) => {
                let t = valid_token(t)?;
                let (all, key) = client.find_token(t).await?;
                let key = key.ok_or_else(|| {
                    BlynkError::Invalid(format!(
                        "no device on {} has this token; nothing was sent",
                        acct.url
                    ))
                })?;
                let dev: Vec<DeviceSeen> = all.into_iter().filter(|d| d.key == key).collect();
                let (name, hint) = dev
                    .first()
                    .map(|d| (d.name.clone(), d.token_hint.clone()))
                    .unwrap_or_default();
                let target = Target::Token {
                    device: key,
                    name,
                    hint,
                };
                (dev, target)
            }
            StartTarget::User { email, project } => {
                let email = email.trim();
                if email.is_empty() {
                    return Err(BlynkError::Invalid("the user's email is empty".into()));
                }
                let user = client.user(email).await?.ok_or_else(|| {
                    BlynkError::Invalid(format!(
                        "no user {email} on {}; nothing was sent",
                        acct.url
                    ))
                })?;
                let project = project
                    .as_deref()
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_string);
                if let Some(p) = &project {
                    let names: Vec<String> = user
                        .pointer("/profile/dashBoards")
                        .and_then(|v| v.as_array())
                        .into_iter()
                        .flatten()
                        .filter_map(|d| d.get("name").and_then(|n| n.as_str()))
                        .map(str::to_string)
                        .collect();
                    if !names.iter().any(|n| n.eq_ignore_ascii_case(p)) {
                        return Err(BlynkError::Invalid(format!(
                            "{email} has no project called {p:?} (projects: {}); nothing was sent",
                            if names.is_empty() {
                                "none".to_string()
                            } else {
                                names.join(", ")
                            }
                        )));
                    }
                }
                let target = Target::User {
                    email: email.to_string(),
                    project,
                };
                let devs = devices_of(&user, None)
                    .0
                    .into_iter()
                    .filter(|d| target.covers(d))
                    .collect();
                (devs, target)
            }
            StartTarget::All => (client.devices(&Fetch::All).await?, Target::All),
        };
        let begin = Begin {
            account: account.to_string(),
            target: stored,
            build: firmware.build().to_string(),
            file_name: firmware.file_name().to_string(),
            size: firmware.size(),
            sha256: firmware.sha256().to_string(),
            loop_after: loop_after.unwrap_or(self.loop_after).max(1),
            devices,
        };
        let campaign = self.ask(|r| Request::Begin(Box::new(begin), r)).await?;
        let target = match target {
            StartTarget::User { email, project } => StartTarget::User {
                email: email.trim().to_string(),
                project: project
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty()),
            },
            StartTarget::Token(t) => StartTarget::Token(t.trim().to_string()),
            StartTarget::All => StartTarget::All,
        };
        let result = client.ota_start(firmware, &target).await;
        let recorded = result
            .as_ref()
            .map(String::clone)
            .map_err(|e| e.to_string());
        let campaign = self
            .ask(|r| Request::Started(campaign.id, recorded, r))
            .await?;
        result.map(|_| campaign)
    }

    /// Stops updates on the account's server. The server's stop is global:
    /// every campaign on it ends (devices already sent the URL may still
    /// install it). Returns the campaigns that ended.
    pub async fn stop(&self, account: &str) -> BlynkResult<Vec<Campaign>> {
        let (client, _) = self.ask(|r| Request::Client(account.into(), r)).await?;
        client.ota_stop().await?;
        self.ask(|r| Request::Stopped(account.into(), r)).await
    }

    /// Polls the server(s) of the followed campaigns now (one account, or
    /// all); returns once the answers are folded in. The first failure is
    /// returned (the others' results are still applied).
    pub async fn refresh(&self, account: Option<&str>) -> BlynkResult<()> {
        let waits = self
            .ask(|r| Request::Refresh(account.map(str::to_string), r))
            .await?;
        let mut first = None;
        for w in waits {
            let r = w.await.unwrap_or(Err(BlynkError::Stopped));
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The campaigns being followed (live, or just ended with devices still
    /// installing), with their devices; of one account or all.
    pub async fn status(&self, account: Option<&str>) -> BlynkResult<Vec<Campaign>> {
        self.ask(|r| Request::Status(account.map(str::to_string), r))
            .await
    }

    /// One campaign with its devices.
    pub async fn campaign(&self, id: i64) -> BlynkResult<Option<Campaign>> {
        self.ask(|r| Request::Campaign(id, r)).await
    }

    /// Campaigns, newest first, with their devices.
    pub async fn history(&self, account: Option<&str>, limit: u32) -> BlynkResult<Vec<Campaign>> {
        self.ask(|r| Request::History(account.map(str::to_string), limit, r))
            .await
    }

    /// Every state change of a campaign's devices, oldest first.
    pub async fn campaign_events(&self, id: i64) -> BlynkResult<Vec<DeviceEvent>> {
        self.ask(|r| Request::Events(id, r)).await
    }

    /// Stops the tracker.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Request::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}
