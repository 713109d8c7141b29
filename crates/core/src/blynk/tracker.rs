//! The Blynk tracker: one actor that owns the Blynk accounts and the
//! campaigns being followed, folds what the admin API shows into each
//! device's state, writes every change to the store and only then
//! broadcasts a [`BlynkEvent`] — the engine's shape, beside the engine.
//!
//! Network calls never run inside the actor. Starting and stopping run in
//! the caller's task (the actor only records the intent and the result);
//! polls run in tasks whose results come back as messages, so a slow server
//! never stalls the others.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

use super::actor::{Actor, Begin, Link, Reply, Request, RolloutKey, RolloutSeed};
use super::client::{AdminClient, ClientOptions, Fetch};
use super::error::{BlynkError, BlynkResult};
use super::firmware::Firmware;
use super::model::{
    BlynkAccount, BlynkEvent, Campaign, DeviceEvent, DeviceSeen, StartTarget, Target,
};
use super::rollout::{BlynkRollout, BlynkRolloutFirmware, StagedOptions};
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
            tx.downgrade(),
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

fn check_size(firmware: &Firmware, acct: &BlynkAccount) -> BlynkResult<()> {
    let size = firmware.upload_size();
    if size > acct.upload_limit {
        return Err(BlynkError::TooLarge {
            size,
            limit: acct.upload_limit,
        });
    }
    Ok(())
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

/// A target as resolved on the server: its devices now, how it is stored,
/// how it is sent.
struct Resolved {
    devices: Vec<DeviceSeen>,
    stored: Target,
    send: StartTarget,
}

impl BlynkHandle {
    /// A handle for the actor's own tasks.
    pub(super) fn from_parts(
        tx: mpsc::Sender<Request>,
        events: broadcast::Sender<BlynkEvent>,
        client: ClientOptions,
        loop_after: u32,
    ) -> BlynkHandle {
        BlynkHandle {
            tx,
            events,
            client,
            loop_after,
        }
    }

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
        check_size(firmware, &acct)?;
        let resolved = self.resolve(&client, &acct, &target).await?;
        self.send(&client, account, firmware, resolved, loop_after, Link::None)
            .await
    }

    /// Which devices `target` covers on the server now. Nothing is sent
    /// when the token, the user or the project is wrong.
    async fn resolve(
        &self,
        client: &AdminClient,
        acct: &BlynkAccount,
        target: &StartTarget,
    ) -> BlynkResult<Resolved> {
        Ok(match target {
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
                Resolved {
                    devices: dev,
                    stored: Target::Token {
                        device: key,
                        name,
                        hint,
                    },
                    send: StartTarget::Token(t.to_string()),
                }
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
                let stored = Target::User {
                    email: email.to_string(),
                    project: project.clone(),
                };
                let devices = devices_of(&user, None)
                    .0
                    .into_iter()
                    .filter(|d| stored.covers(d))
                    .collect();
                Resolved {
                    devices,
                    stored,
                    send: StartTarget::User {
                        email: email.to_string(),
                        project,
                    },
                }
            }
            StartTarget::All => Resolved {
                devices: client.devices(&Fetch::All).await?,
                stored: Target::All,
                send: StartTarget::All,
            },
        })
    }

    /// Records the start (with what it is linked to), uploads exactly the
    /// validated bytes, records the answer.
    async fn send(
        &self,
        client: &AdminClient,
        account: &str,
        firmware: &Firmware,
        resolved: Resolved,
        loop_after: Option<u32>,
        link: Link,
    ) -> BlynkResult<Campaign> {
        let begin = Begin {
            account: account.to_string(),
            target: resolved.stored,
            build: firmware.build().to_string(),
            file_name: firmware.file_name().to_string(),
            size: firmware.size(),
            sha256: firmware.sha256().to_string(),
            loop_after: loop_after.unwrap_or(self.loop_after).max(1),
            devices: resolved.devices,
            link,
        };
        let campaign = self.ask(|r| Request::Begin(Box::new(begin), r)).await?;
        let result = client.ota_start(firmware, &resolved.send).await;
        let recorded = result
            .as_ref()
            .map(String::clone)
            .map_err(|e| (e.to_string(), e.maybe_delivered()));
        let campaign = self
            .ask(|r| Request::Started(campaign.id, recorded, r))
            .await?;
        result.map(|_| campaign)
    }

    /// Starts a staged ("careful") campaign: the update goes to the canary
    /// device now (one-device start), and to `target` — a user, one of
    /// their projects, or every device — only once the tracker has seen the
    /// canary run the new build, online and without logging in again, for
    /// `opts.settle`. It stops at the first failure: the canary back on its
    /// old build, restarting on the new one, not updated within
    /// `opts.canary_timeout`; after the extension, the first device
    /// suspected in a reboot loop (the server's stop is then called: it is
    /// global). Follow it with [`BlynkEvent::RolloutChanged`] or
    /// [`BlynkHandle::rollouts`]; it moves on as the tracker polls
    /// (background, or [`BlynkHandle::refresh`]).
    ///
    /// The firmware is read from `firmware` now and again for the
    /// extension, which is refused if the file changed (its SHA-256) or is
    /// gone. Nothing is sent when the firmware, the canary (unknown, offline,
    /// reporting no build or already on this build), the target, or a
    /// campaign still standing on the server is wrong, or another staged
    /// campaign is under way on this server. An upload the server refuses
    /// ends the staged campaign and is returned as the error.
    pub async fn start_staged(
        &self,
        account: &str,
        firmware: &Path,
        canary_token: &str,
        target: StartTarget,
        opts: StagedOptions,
    ) -> BlynkResult<BlynkRollout> {
        if matches!(target, StartTarget::Token(_)) {
            return Err(BlynkError::Invalid(
                "after the canary a staged campaign goes to a user, a project or every device, not to one token".into(),
            ));
        }
        if opts.canary_timeout.is_zero() {
            return Err(BlynkError::Invalid(
                "the canary's timeout must be more than 0".into(),
            ));
        }
        let path = std::path::absolute(firmware).map_err(|e| BlynkError::Io {
            what: format!("reading {}", firmware.display()),
            source: e,
        })?;
        let p = path.clone();
        let fw = tokio::task::spawn_blocking(move || Firmware::read(&p))
            .await
            .map_err(|e| BlynkError::Other(format!("file task: {e}")))??;
        let (client, acct) = self.ask(|r| Request::Client(account.into(), r)).await?;
        check_size(&fw, &acct)?;
        let canary = self
            .resolve(
                &client,
                &acct,
                &StartTarget::Token(canary_token.to_string()),
            )
            .await?;
        let dev = canary.devices.first().ok_or_else(|| {
            BlynkError::Invalid("the canary device is not on the server; nothing was sent".into())
        })?;
        match dev.build.as_deref() {
            None => {
                return Err(BlynkError::Invalid(format!(
                    "the canary {} reports no build (Blynk library 1.3+, or no info): Greenlight could never see it updated; choose another device. Nothing was sent",
                    dev.name
                )))
            }
            Some(b) if b == fw.build() => {
                return Err(BlynkError::Invalid(format!(
                    "the canary {} already runs build \"{b}\": it cannot show that this firmware installs; choose a device on another build. Nothing was sent",
                    dev.name
                )))
            }
            Some(_) => {}
        }
        if !dev.online {
            return Err(BlynkError::Invalid(format!(
                "the canary {} is offline: the server sends a one-device update only to an online device. Nothing was sent",
                dev.name
            )));
        }
        let rest = self.resolve(&client, &acct, &target).await?;
        let ms = |d: Duration| d.as_millis().min(i64::MAX as u128) as i64;
        let seed = RolloutSeed {
            firmware: BlynkRolloutFirmware {
                path: path.to_string_lossy().into_owned(),
                file_name: fw.file_name().to_string(),
                build: fw.build().to_string(),
                size: fw.size(),
                sha256: fw.sha256().to_string(),
            },
            target: rest.stored,
            devices: rest.devices,
            settle_ms: ms(opts.settle),
            canary_timeout_ms: ms(opts.canary_timeout),
        };
        let c = self
            .send(
                &client,
                account,
                &fw,
                canary,
                opts.loop_after,
                Link::Canary(Box::new(seed)),
            )
            .await?;
        self.ask(|r| Request::Rollout(RolloutKey::CanaryCampaign(c.id), r))
            .await?
            .ok_or_else(|| BlynkError::Other("the staged campaign disappeared".into()))
    }

    /// Sends the extension of a staged campaign recorded `Extending`: the
    /// firmware file read again and checked against the SHA-256 the canary
    /// got, the final target resolved now. An error before the upload is
    /// worded for the staged campaign's stop.
    pub(super) async fn extend(&self, r: &BlynkRollout) -> BlynkResult<Campaign> {
        let t = r.target.describe();
        let path = PathBuf::from(&r.firmware.path);
        let p = path.clone();
        let fw = tokio::task::spawn_blocking(move || Firmware::read(&p))
            .await
            .map_err(|e| BlynkError::Other(format!("file task: {e}")))?
            .map_err(|e| {
                BlynkError::Invalid(format!(
                    "the update for {t} was not sent: the firmware file {} cannot be read again ({e}). Put the same file back and resume, or cancel",
                    path.display()
                ))
            })?;
        if fw.sha256() != r.firmware.sha256 {
            return Err(BlynkError::Invalid(format!(
                "the update for {t} was not sent: the firmware file {} changed since the canary got it (SHA-256 {} now, {} then). Put the same file back and resume, or cancel",
                path.display(),
                fw.sha256(),
                r.firmware.sha256
            )));
        }
        let not_sent =
            |e: BlynkError| BlynkError::Other(format!("the update for {t} was not sent: {e}"));
        let (client, acct) = self
            .ask(|x| Request::Client(r.account.clone(), x))
            .await
            .map_err(not_sent)?;
        check_size(&fw, &acct).map_err(not_sent)?;
        let resolved = self
            .resolve(&client, &acct, &r.final_target())
            .await
            .map_err(not_sent)?;
        self.send(
            &client,
            &r.account,
            &fw,
            resolved,
            Some(r.loop_after),
            Link::Extension(r.id),
        )
        .await
    }

    /// Staged campaigns of one account or all: the active ones and the
    /// most recent ended ones (at most 20), newest first.
    pub async fn rollouts(&self, account: Option<&str>) -> BlynkResult<Vec<BlynkRollout>> {
        self.ask(|r| Request::Rollouts(account.map(str::to_string), 20, r))
            .await
    }

    /// One staged campaign by id.
    pub async fn rollout(&self, id: i64) -> BlynkResult<Option<BlynkRollout>> {
        self.ask(|r| Request::Rollout(RolloutKey::Id(id), r)).await
    }

    /// Extends a staged campaign stopped before its extension, or whose
    /// extension is not confirmed (sends it again): the user's explicit
    /// choice. Returns once the server answered the extension (or it
    /// failed: the staged campaign then says why). `account`: which one,
    /// when several servers have one.
    pub async fn resume_rollout(&self, account: Option<&str>) -> BlynkResult<BlynkRollout> {
        self.ask(|r| Request::Resume(account.map(str::to_string), r))
            .await
    }

    /// Cancels a staged campaign. Before the extension nothing is left on
    /// the server (the canary's update is sent once); after it, or when
    /// the extension is not confirmed, the server's stop is called — it is
    /// global: every campaign on that server ends. Refused while the
    /// extension is being sent. An error from the stop is returned; the
    /// staged campaign is cancelled anyway and says so.
    pub async fn cancel_rollout(&self, account: Option<&str>) -> BlynkResult<BlynkRollout> {
        let (r, stop) = self
            .ask(|x| Request::Cancel(account.map(str::to_string), x))
            .await?;
        if !stop {
            return Ok(r);
        }
        let (note, res) = match self.stop(&r.account).await {
            Ok(ended) => (
                format!(
                    "Greenlight stopped updates on the server: {} campaign(s) ended",
                    ended.len()
                ),
                Ok(()),
            ),
            Err(e) => (
                format!(
                    "the server's stop failed: {e} — stop updates with `greenlight blynk stop --account {}`",
                    r.account
                ),
                Err(e),
            ),
        };
        let r = self.ask(|x| Request::RolloutNote(r.id, note, x)).await?;
        res.map(|_| r)
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
