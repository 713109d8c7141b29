//! The tracker's actor: it owns the Blynk accounts, their clients and the
//! campaigns being followed; it folds each poll into the devices' states,
//! writes every change to the store and only then broadcasts an event.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

use super::client::{AdminClient, Fetch};
use super::error::{BlynkError, BlynkResult};
use super::model::{
    BlynkAccount, BlynkEvent, Campaign, CampaignStatus, DeviceEvent, DeviceSeen, DeviceState,
    Target, ADMIN_PASSWORD,
};
use super::rollout::{BlynkRollout, BlynkRolloutFirmware, BlynkRolloutStage, BlynkSettling, Step};
use super::store::ROLLOUT_KIND;
use super::track::{self, Ctx};
use super::tracker::{BlynkHandle, TrackerConfig};
use crate::model::{now_ms, Millis};
use crate::secrets::SecretStore;
use crate::store::Store;

pub(super) type Reply<T> = oneshot::Sender<BlynkResult<T>>;

/// What is recorded when a start begins.
pub(super) struct Begin {
    pub(super) account: String,
    pub(super) target: Target,
    pub(super) build: String,
    pub(super) file_name: String,
    pub(super) size: u64,
    pub(super) sha256: String,
    pub(super) loop_after: u32,
    pub(super) devices: Vec<DeviceSeen>,
    pub(super) link: Link,
}

/// What a start belongs to besides itself.
pub(super) enum Link {
    /// An ordinary start.
    None,
    /// The canary of a new staged campaign, recorded with it.
    Canary(Box<RolloutSeed>),
    /// The extension of staged campaign `id` (which must be `Extending`).
    Extension(i64),
}

/// What a staged campaign is recorded with, beside its canary's start.
pub(super) struct RolloutSeed {
    pub(super) firmware: BlynkRolloutFirmware,
    /// The final target, and its devices now (checked for conflicts).
    pub(super) target: Target,
    pub(super) devices: Vec<DeviceSeen>,
    pub(super) settle_ms: i64,
    pub(super) canary_timeout_ms: i64,
}

/// Which staged campaign.
pub(super) enum RolloutKey {
    Id(i64),
    CanaryCampaign(i64),
}

pub(super) enum Request {
    SaveAccount(Box<BlynkAccount>, String, Reply<()>),
    RemoveAccount(String, Reply<()>),
    Accounts(Reply<Vec<BlynkAccount>>),
    Client(String, Reply<(AdminClient, BlynkAccount)>),
    Begin(Box<Begin>, Reply<Campaign>),
    /// The server's answer: the stored path, or the error's words and
    /// whether it may have been taken anyway.
    Started(i64, Result<String, (String, bool)>, Reply<Campaign>),
    Stopped(String, Reply<Vec<Campaign>>),
    Refresh(
        Option<String>,
        Reply<Vec<oneshot::Receiver<BlynkResult<()>>>>,
    ),
    Status(Option<String>, Reply<Vec<Campaign>>),
    Campaign(i64, Reply<Option<Campaign>>),
    History(Option<String>, u32, Reply<Vec<Campaign>>),
    Events(i64, Reply<Vec<DeviceEvent>>),
    Rollouts(Option<String>, u32, Reply<Vec<BlynkRollout>>),
    Rollout(RolloutKey, Reply<Option<BlynkRollout>>),
    /// Answered once the extension it sends was answered (or failed).
    Resume(Option<String>, Reply<BlynkRollout>),
    /// `true` in the answer: the server's stop must be called now.
    Cancel(Option<String>, Reply<(BlynkRollout, bool)>),
    RolloutNote(i64, String, Reply<BlynkRollout>),
    Shutdown(oneshot::Sender<()>),
}

pub(super) enum Internal {
    Polled {
        account: String,
        result: BlynkResult<Vec<DeviceSeen>>,
    },
    /// An extension task ended; `failure` when it failed before or while uploading.
    Extended { id: i64, failure: Option<String> },
    /// The server's stop after a reboot loop: campaigns ended, or why not.
    ServerStopped {
        id: i64,
        account: String,
        result: Result<usize, String>,
    },
}

/// A staged campaign as last read or written by this process, with the
/// exact stored text its next write is compared against.
struct Cached {
    r: BlynkRollout,
    raw: String,
}

pub(super) struct Actor {
    cfg: TrackerConfig,
    store: Store,
    secrets: Arc<dyn SecretStore>,
    actor_name: String,
    events: broadcast::Sender<BlynkEvent>,
    internal: mpsc::UnboundedSender<Internal>,
    accounts: BTreeMap<String, BlynkAccount>,
    clients: HashMap<String, AdminClient>,
    /// Campaigns being followed.
    tracked: BTreeMap<i64, Campaign>,
    in_flight: HashSet<String>,
    waiters: HashMap<String, Vec<Reply<()>>>,
    /// The last poll failure per account (said once).
    last_error: HashMap<String, String>,
    /// To build handles for the tasks it spawns (extensions, stops);
    /// weak so that dropping the last handle still stops the tracker.
    me: mpsc::WeakSender<Request>,
    /// Active staged campaigns.
    rollouts: BTreeMap<i64, Cached>,
    /// Staged campaigns whose extension a task of this process is sending.
    extending: HashSet<i64>,
    /// Spawned tasks not finished: a shutdown waits for them, so that an
    /// extension or a stop is not cut between the upload and its record.
    tasks: usize,
    /// A shutdown waiting for `tasks` to finish.
    closing: Option<oneshot::Sender<()>>,
    /// Resumes waiting for their extension's end.
    resume_waiters: HashMap<i64, Vec<Reply<BlynkRollout>>>,
}

fn parse_rollout(id: i64, raw: &str) -> Option<BlynkRollout> {
    match serde_json::from_str::<BlynkRollout>(raw) {
        Ok(mut r) => {
            r.id = id;
            Some(r)
        }
        Err(e) => {
            tracing::warn!(id, error = %e, "a stored Blynk rollout does not read; left out");
            None
        }
    }
}

fn conflict_error(fights: &[Campaign], campaign: bool) -> BlynkError {
    let list: Vec<String> = fights
        .iter()
        .map(|c| {
            format!(
                "#{} for {} (build \"{}\")",
                c.id,
                c.target.describe(),
                c.build
            )
        })
        .collect();
    BlynkError::Conflict(format!(
        "nothing was sent: campaign {} still stands on the server for some of these devices; with both, a device would flip between the two builds on every login (the server sends the all-devices campaign first, then the user's{}). Stop updates on the server first (its stop is global)",
        list.join(", "),
        if campaign { "" } else { ", and undoes a one-device update at the next login" }
    ))
}

/// A start recorded but never answered is given up after this long (another
/// process may be in the middle of one).
const STARTING_STALE_MS: i64 = 10 * 60 * 1000;

impl Actor {
    pub(super) fn new(
        cfg: TrackerConfig,
        store: Store,
        secrets: Arc<dyn SecretStore>,
        actor_name: &str,
        events: broadcast::Sender<BlynkEvent>,
        internal: mpsc::UnboundedSender<Internal>,
        me: mpsc::WeakSender<Request>,
    ) -> Actor {
        Actor {
            cfg,
            store,
            secrets,
            actor_name: actor_name.to_string(),
            events,
            internal,
            accounts: BTreeMap::new(),
            clients: HashMap::new(),
            tracked: BTreeMap::new(),
            in_flight: HashSet::new(),
            waiters: HashMap::new(),
            last_error: HashMap::new(),
            me,
            rollouts: BTreeMap::new(),
            extending: HashSet::new(),
            tasks: 0,
            closing: None,
            resume_waiters: HashMap::new(),
        }
    }

    fn emit(&self, e: BlynkEvent) {
        let _ = self.events.send(e);
    }

    pub(super) fn load(&mut self) -> BlynkResult<()> {
        for a in self.store.blynk_accounts()? {
            self.accounts.insert(a.name.clone(), a);
        }
        let now = now_ms();
        for mut c in self.store.campaigns(None, &["starting", "active"], 1000)? {
            if c.status == CampaignStatus::Starting {
                if now - c.created_at < STARTING_STALE_MS {
                    continue;
                }
                c.status = CampaignStatus::Failed {
                    reason: "Greenlight stopped while starting this update: it may or may not have reached the server (a stop cancels it)".into(),
                };
                c.finished_at = Some(now);
                c.updated_at = now;
                self.store.save_campaign(&c)?;
                continue;
            }
            self.tracked.insert(c.id, c);
        }
        // An extension recorded but never answered: not sent again by
        // itself (`BlynkRollout::recover`), once no process can still be sending it.
        self.reload_rollouts();
        let stuck: Vec<i64> = self
            .rollouts
            .values()
            .filter(|c| matches!(c.r.stage, BlynkRolloutStage::Extending { .. }))
            .map(|c| c.r.id)
            .collect();
        for id in stuck {
            self.update_rollout(id, |r| r.recover(STARTING_STALE_MS, now));
        }
        Ok(())
    }

    pub(super) async fn run(
        mut self,
        mut reqs: mpsc::Receiver<Request>,
        mut internal: mpsc::UnboundedReceiver<Internal>,
    ) {
        let mut tick = tokio::time::interval(self.cfg.poll_interval.max(Duration::from_millis(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                r = reqs.recv() => match r {
                    None => break,
                    Some(Request::Shutdown(done)) => {
                        if self.tasks == 0 {
                            let _ = done.send(());
                            return;
                        }
                        self.closing = Some(done);
                    }
                    Some(r) => self.on_request(r).await,
                },
                Some(i) = internal.recv() => {
                    self.on_internal(i);
                    if self.tasks == 0 {
                        if let Some(done) = self.closing.take() {
                            let _ = done.send(());
                            return;
                        }
                    }
                }
                _ = tick.tick() => {
                    if self.closing.is_some() {
                        // Only the running tasks' requests are served now.
                    } else if self.cfg.background {
                        self.sync_from_store();
                        for a in self.accounts_to_poll(None) {
                            self.poll(&a).await;
                        }
                    } else {
                        self.follow_store();
                        self.reload_rollouts();
                    }
                }
            }
        }
    }

    /// Without a timer of its own (the daemon owns the directory and polls
    /// the servers), follows what the poller writes: every campaign that is
    /// active, or was when last read, is read again and announced when it
    /// changed. A store read, not a request to any server.
    fn follow_store(&mut self) {
        let mut ids: HashSet<i64> = match self.store.campaigns(None, &["active"], 1000) {
            Ok(v) => v.into_iter().map(|c| c.id).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "could not read campaigns");
                return;
            }
        };
        ids.extend(
            self.tracked
                .values()
                .filter(|c| c.status == CampaignStatus::Active)
                .map(|c| c.id),
        );
        for id in ids {
            let Ok(Some(c)) = self.store.campaign(id) else {
                continue;
            };
            if self.tracked.get(&id) != Some(&c) {
                self.tracked.insert(id, c.clone());
                self.emit(BlynkEvent::CampaignChanged { campaign: c });
            }
        }
    }

    /// Adopts campaigns another process (the CLI, the app) started or stopped.
    fn sync_from_store(&mut self) {
        let live = match self.store.campaigns(None, &["active"], 1000) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "could not read campaigns");
                return;
            }
        };
        let live_ids: HashSet<i64> = live.iter().map(|c| c.id).collect();
        for c in live {
            self.tracked.entry(c.id).or_insert(c);
        }
        let gone: Vec<i64> = self
            .tracked
            .iter()
            .filter(|(id, c)| c.status == CampaignStatus::Active && !live_ids.contains(id))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            match self.store.campaign(id) {
                Ok(Some(c)) => {
                    self.tracked.insert(id, c);
                }
                _ => {
                    self.tracked.remove(&id);
                }
            }
        }
    }

    async fn client(&mut self, account: &str) -> BlynkResult<(AdminClient, BlynkAccount)> {
        let acct = self
            .accounts
            .get(account)
            .cloned()
            .ok_or_else(|| BlynkError::UnknownAccount(account.to_string()))?;
        if let Some(c) = self.clients.get(account) {
            return Ok((c.clone(), acct));
        }
        let (s, a) = (self.secrets.clone(), account.to_string());
        let pw = tokio::task::spawn_blocking(move || s.get(&a, ADMIN_PASSWORD))
            .await
            .map_err(|e| BlynkError::Other(format!("keychain task: {e}")))??;
        let Some(pw) = pw else {
            return Err(BlynkError::Auth {
                account: account.to_string(),
                reason: "no admin password is stored in the keychain; add the account again".into(),
            });
        };
        let c = AdminClient::new(&acct, &pw, self.cfg.client.clone())?;
        self.clients.insert(account.to_string(), c.clone());
        Ok((c, acct))
    }

    async fn on_request(&mut self, r: Request) {
        match r {
            Request::SaveAccount(acct, password, reply) => {
                let res = self.save_account(*acct, password).await;
                let _ = reply.send(res);
            }
            Request::RemoveAccount(name, reply) => {
                let res = self.remove_account(&name).await;
                let _ = reply.send(res);
            }
            Request::Accounts(reply) => {
                let _ = reply.send(Ok(self.accounts.values().cloned().collect()));
            }
            Request::Client(account, reply) => {
                let res = self.client(&account).await;
                let _ = reply.send(res);
            }
            Request::Begin(b, reply) => {
                let _ = reply.send(self.begin(*b));
            }
            Request::Started(id, result, reply) => {
                let _ = reply.send(self.started(id, result));
            }
            Request::Stopped(account, reply) => {
                let _ = reply.send(self.stopped(&account));
            }
            Request::Refresh(account, reply) => {
                let accounts = self.accounts_to_poll(account.as_deref());
                let mut waits = vec![];
                for a in accounts {
                    let (tx, rx) = oneshot::channel();
                    self.waiters.entry(a.clone()).or_default().push(tx);
                    self.poll(&a).await;
                    waits.push(rx);
                }
                let _ = reply.send(Ok(waits));
            }
            Request::Status(account, reply) => {
                if !self.cfg.background {
                    self.follow_store();
                }
                let v = self
                    .tracked
                    .values()
                    .filter(|c| account.as_ref().is_none_or(|a| a == &c.account))
                    .cloned()
                    .collect();
                let _ = reply.send(Ok(v));
            }
            Request::Campaign(id, reply) => {
                let c = match self.tracked.get(&id) {
                    Some(c) => Ok(Some(c.clone())),
                    None => self.store.campaign(id).map_err(BlynkError::from),
                };
                let _ = reply.send(c);
            }
            Request::History(account, limit, reply) => {
                let _ = reply.send(
                    self.store
                        .campaigns(account.as_deref(), &[], limit)
                        .map_err(BlynkError::from),
                );
            }
            Request::Events(id, reply) => {
                let _ = reply.send(self.store.campaign_events(id).map_err(BlynkError::from));
            }
            Request::Rollouts(account, limit, reply) => {
                let _ = reply.send(self.list_rollouts(account.as_deref(), limit));
            }
            Request::Rollout(key, reply) => {
                let _ = reply.send(self.find_rollout(key));
            }
            Request::Resume(account, reply) => self.resume(account.as_deref(), reply),
            Request::Cancel(account, reply) => {
                let _ = reply.send(self.cancel(account.as_deref()));
            }
            Request::RolloutNote(id, note, reply) => {
                let res = self.update_rollout(id, |r| {
                    r.note = Some(note.clone());
                    Step::Changed
                });
                let _ = reply.send(res.map(|(r, _)| r).ok_or_else(|| {
                    BlynkError::Other(format!("staged campaign #{id} could not be updated"))
                }));
            }
            Request::Shutdown(_) => {}
        }
    }

    async fn save_account(&mut self, acct: BlynkAccount, password: String) -> BlynkResult<()> {
        let (s, a) = (self.secrets.clone(), acct.name.clone());
        tokio::task::spawn_blocking(move || s.set(&a, ADMIN_PASSWORD, &password))
            .await
            .map_err(|e| BlynkError::Other(format!("keychain task: {e}")))??;
        self.store.save_blynk_account(&acct)?;
        // The next request builds a client with the new password and pin.
        self.clients.remove(&acct.name);
        self.last_error.remove(&acct.name);
        self.accounts.insert(acct.name.clone(), acct);
        Ok(())
    }

    async fn remove_account(&mut self, name: &str) -> BlynkResult<()> {
        let existed = self.store.remove_blynk_account(name)?;
        self.accounts.remove(name);
        self.clients.remove(name);
        let (s, a) = (self.secrets.clone(), name.to_string());
        let deleted = tokio::task::spawn_blocking(move || s.delete(&a, ADMIN_PASSWORD)).await;
        if !matches!(deleted, Ok(Ok(()))) {
            tracing::warn!(
                account = name,
                "could not delete the admin password from the keychain"
            );
        }
        // Its campaigns are no longer followed; their records stay.
        self.tracked.retain(|_, c| c.account != name);
        let ids: Vec<i64> = self
            .rollouts
            .values()
            .filter(|c| c.r.account == name)
            .map(|c| c.r.id)
            .collect();
        let (by, now) = (self.actor_name.clone(), now_ms());
        for id in ids {
            self.update_rollout(id, |r| {
                r.stage = BlynkRolloutStage::Cancelled {
                    by: by.clone(),
                    reason: "the Blynk account was removed, so Greenlight follows it no more (an update it sent may still stand on the server)".into(),
                };
                r.finished_at = Some(now);
                Step::Changed
            });
        }
        if existed {
            Ok(())
        } else {
            Err(BlynkError::UnknownAccount(name.to_string()))
        }
    }

    fn ctx<'a>(&self, c: &Campaign, build: &'a str, now: Millis) -> Ctx<'a> {
        Ctx {
            build,
            campaign: c.target.is_campaign(),
            standing: c.status == CampaignStatus::Active || c.status == CampaignStatus::Starting,
            loop_after: c.loop_after,
            install_grace_ms: self.cfg.install_grace.as_millis() as i64,
            now,
        }
    }

    /// Campaigns the server still holds for `account` that a new campaign
    /// for `target` would fight: the server sends the all-devices campaign
    /// first, then the user's, each whenever the device's build differs, so
    /// two standing campaigns with different builds over the same device
    /// flip it between them on every login. A campaign of the same kind and
    /// user is not a conflict: the server replaces it.
    fn conflicts(
        &self,
        account: &str,
        target: &Target,
        build: &str,
        devices: &[DeviceSeen],
    ) -> BlynkResult<Vec<Campaign>> {
        let standing: Vec<Campaign> = self
            .store
            .campaigns(Some(account), &["active", "completed"], 1000)?
            .into_iter()
            .filter(|c| c.stands_on_server() && c.build != build)
            .collect();
        Ok(standing
            .into_iter()
            .filter(|s| match (target, &s.target) {
                (Target::Token { .. }, t) => devices.iter().any(|d| t.covers(d)),
                (Target::All, Target::User { .. }) | (Target::User { .. }, Target::All) => true,
                _ => false,
            })
            .collect())
    }

    fn begin(&mut self, b: Begin) -> BlynkResult<Campaign> {
        match &b.link {
            Link::None => {}
            Link::Canary(seed) => {
                // One staged campaign per server at a time: a stopped one
                // waits for the user's resume or cancel.
                self.reload_rollouts();
                if let Some(o) = self.rollouts.values().find(|c| c.r.account == b.account) {
                    return Err(BlynkError::Conflict(format!(
                        "nothing was sent: staged campaign #{} is under way on {} ({}); resume or cancel it first",
                        o.r.id,
                        b.account,
                        o.r.words()
                    )));
                }
                // The rest must be able to follow the canary.
                let fights = self.conflicts(&b.account, &seed.target, &b.build, &seed.devices)?;
                if !fights.is_empty() {
                    return Err(conflict_error(&fights, true));
                }
            }
            Link::Extension(id) => match self.reload_rollout(*id) {
                Some(r)
                    if matches!(r.stage, BlynkRolloutStage::Extending { .. })
                        && r.extension.is_none() => {}
                other => {
                    return Err(BlynkError::Conflict(format!(
                        "nothing was sent: staged campaign #{id} changed meanwhile{}",
                        other
                            .map(|r| format!(" ({})", r.words()))
                            .unwrap_or_default()
                    )))
                }
            },
        }
        let fights = self.conflicts(&b.account, &b.target, &b.build, &b.devices)?;
        if !fights.is_empty() {
            return Err(conflict_error(&fights, b.target.is_campaign()));
        }
        let now = now_ms();
        let mut c = Campaign {
            id: 0,
            account: b.account,
            target: b.target,
            build: b.build,
            file_name: b.file_name,
            size: b.size,
            sha256: b.sha256,
            server_path: None,
            status: CampaignStatus::Starting,
            loop_after: b.loop_after,
            started_by: self.actor_name.clone(),
            created_at: now,
            started_at: None,
            updated_at: now,
            finished_at: None,
            settled_at: None,
            withdrawn_at: None,
            devices: vec![],
        };
        let build = c.build.clone();
        let ctx = self.ctx(&c, &build, now);
        let devices = b.devices.iter().map(|d| track::baseline(d, &ctx)).collect();
        c.devices = devices;
        let mut c = self.store.insert_campaign(&c)?;
        // Linked before the upload, so that a restart finds the intent.
        let linked = match b.link {
            Link::None => Ok(()),
            Link::Canary(seed) => self.record_rollout(&c, *seed, now),
            Link::Extension(id) => match self.update_rollout(id, |r| r.extension_recorded(c.id)) {
                Some((_, Step::Changed)) => Ok(()),
                _ => Err(BlynkError::Conflict(format!(
                    "nothing was sent: staged campaign #{id} changed meanwhile"
                ))),
            },
        };
        if let Err(e) = linked {
            c.status = CampaignStatus::Failed {
                reason: format!("not sent: {e}"),
            };
            c.finished_at = Some(now);
            self.store.save_campaign(&c)?;
            return Err(e);
        }
        self.emit(BlynkEvent::CampaignChanged {
            campaign: c.clone(),
        });
        Ok(c)
    }

    /// Records a staged campaign with its canary's start `c`.
    fn record_rollout(&mut self, c: &Campaign, seed: RolloutSeed, now: Millis) -> BlynkResult<()> {
        let canary =
            c.devices.first().cloned().ok_or_else(|| {
                BlynkError::Invalid("the canary device is not on the server".into())
            })?;
        let mut r = BlynkRollout {
            id: 0,
            account: c.account.clone(),
            firmware: seed.firmware,
            canary,
            canary_campaign: c.id,
            canary_sent_at: None,
            target: seed.target,
            loop_after: c.loop_after,
            settle_ms: seed.settle_ms,
            canary_timeout_ms: seed.canary_timeout_ms,
            settling: BlynkSettling::default(),
            extension: None,
            stage: BlynkRolloutStage::Canary,
            note: None,
            started_by: self.actor_name.clone(),
            created_at: now,
            updated_at: now,
            finished_at: None,
        };
        let raw = serde_json::to_string(&r).map_err(|e| {
            BlynkError::Other(format!("a staged campaign could not be written: {e}"))
        })?;
        r.id = self.store.insert_rollout(ROLLOUT_KIND, &r, now)?;
        self.rollouts.insert(r.id, Cached { r: r.clone(), raw });
        self.emit(BlynkEvent::RolloutChanged {
            rollout: Box::new(r),
        });
        Ok(())
    }

    fn started(
        &mut self,
        id: i64,
        result: Result<String, (String, bool)>,
    ) -> BlynkResult<Campaign> {
        let c = self.started_campaign(id, result.clone())?;
        self.rollout_answer(&c, &result);
        Ok(c)
    }

    fn started_campaign(
        &mut self,
        id: i64,
        result: Result<String, (String, bool)>,
    ) -> BlynkResult<Campaign> {
        let mut c = self
            .store
            .campaign(id)?
            .ok_or_else(|| BlynkError::Other(format!("campaign {id} disappeared")))?;
        let now = now_ms();
        c.updated_at = now;
        match result {
            Ok(path) => {
                c.status = CampaignStatus::Active;
                c.server_path = Some(path);
                c.started_at = Some(now);
                // The server keeps one campaign for all devices and one per
                // user: an older one for the same devices is gone from it.
                let same = |o: &Campaign| {
                    o.id != c.id
                        && o.stands_on_server()
                        && match (&o.target, &c.target) {
                            (Target::All, Target::All) => true,
                            (Target::User { email: a, .. }, Target::User { email: b, .. }) => {
                                a.eq_ignore_ascii_case(b)
                            }
                            _ => false,
                        }
                };
                let replaced: Vec<Campaign> = self
                    .store
                    .campaigns(Some(&c.account), &["active", "completed"], 1000)?
                    .into_iter()
                    .filter(same)
                    .collect();
                for o in replaced {
                    if self.tracked.contains_key(&o.id) && o.status == CampaignStatus::Active {
                        self.end_campaign(o.id, CampaignStatus::Superseded { by: id }, now);
                    } else {
                        self.withdraw(o, now);
                    }
                }
            }
            Err((reason, _)) => {
                c.status = CampaignStatus::Failed { reason };
                c.finished_at = Some(now);
            }
        }
        if c.status == CampaignStatus::Active && !c.target.is_campaign() {
            // The server answered 200 only after sending it to the device.
            for d in &mut c.devices {
                if d.state == DeviceState::Waiting {
                    d.state = DeviceState::Installing;
                    d.changed_at = now;
                }
            }
            let refs: Vec<_> = c.devices.iter().map(|d| (d, true)).collect();
            self.store.save_campaign_devices(c.id, &refs)?;
        }
        self.store.save_campaign(&c)?;
        if c.status == CampaignStatus::Active {
            self.tracked.insert(c.id, c.clone());
        }
        self.emit(BlynkEvent::CampaignChanged {
            campaign: c.clone(),
        });
        Ok(c)
    }

    /// A campaign the server no longer holds: its waiting devices will not
    /// get it; devices already installing are followed a little longer.
    fn end_campaign(&mut self, id: i64, status: CampaignStatus, now: Millis) -> Option<Campaign> {
        let mut c = self.tracked.remove(&id)?;
        c.status = status;
        c.finished_at = Some(now);
        c.withdrawn_at = Some(now);
        c.updated_at = now;
        let mut changed = vec![];
        for d in &mut c.devices {
            if track::end(d, now) {
                changed.push(d.clone());
            }
        }
        if let Err(e) = self.store.save_campaign(&c) {
            tracing::error!(error = %e, id, "could not store a campaign change");
        }
        let refs: Vec<_> = changed.iter().map(|d| (d, true)).collect();
        if let Err(e) = self.store.save_campaign_devices(id, &refs) {
            tracing::error!(error = %e, id, "could not store device changes");
        }
        for d in changed {
            self.emit(BlynkEvent::DeviceChanged {
                campaign_id: id,
                account: c.account.clone(),
                device: d,
            });
        }
        self.update_settled(&mut c, now);
        self.emit(BlynkEvent::CampaignChanged {
            campaign: c.clone(),
        });
        if c.devices.iter().any(|d| d.state == DeviceState::Installing) {
            self.tracked.insert(id, c.clone());
        }
        Some(c)
    }

    fn stopped(&mut self, account: &str) -> BlynkResult<Vec<Campaign>> {
        let now = now_ms();
        let ids: Vec<i64> = self
            .tracked
            .values()
            .filter(|c| c.account == account && c.status == CampaignStatus::Active)
            .map(|c| c.id)
            .collect();
        let mut out = vec![];
        for id in ids {
            if let Some(c) = self.end_campaign(id, CampaignStatus::Stopped, now) {
                out.push(c);
            }
        }
        // Completed campaigns still stood on the server until now.
        for c in self
            .store
            .campaigns(Some(account), &["completed"], 1000)?
            .into_iter()
            .filter(Campaign::stands_on_server)
        {
            out.push(self.withdraw(c, now));
        }
        let ids: Vec<i64> = self
            .rollouts
            .values()
            .filter(|c| c.r.account == account)
            .map(|c| c.r.id)
            .collect();
        for id in ids {
            self.update_rollout(id, |r| r.server_stopped(now));
        }
        Ok(out)
    }

    /// Records that the server no longer holds a finished campaign.
    fn withdraw(&mut self, mut c: Campaign, now: Millis) -> Campaign {
        c.withdrawn_at = Some(now);
        c.updated_at = now;
        if let Err(e) = self.store.save_campaign(&c) {
            tracing::error!(error = %e, id = c.id, "could not store a campaign change");
        }
        if let Some(t) = self.tracked.get_mut(&c.id) {
            t.withdrawn_at = Some(now);
        }
        self.emit(BlynkEvent::CampaignChanged {
            campaign: c.clone(),
        });
        c
    }

    /// Sets `settled_at` as the devices settle or unsettle; says so once.
    fn update_settled(&self, c: &mut Campaign, now: Millis) -> bool {
        let settled = c.is_settled();
        match (settled, c.settled_at) {
            (true, None) => {
                c.settled_at = Some(now);
                if let Err(e) = self.store.save_campaign(c) {
                    tracing::error!(error = %e, "could not store a campaign change");
                }
                self.emit(BlynkEvent::CampaignSettled {
                    campaign: c.clone(),
                });
                true
            }
            (false, Some(_)) => {
                c.settled_at = None;
                true
            }
            _ => false,
        }
    }

    /// Starts a poll of `account` unless one is under way.
    async fn poll(&mut self, account: &str) {
        if self.in_flight.contains(account) {
            return;
        }
        let fetch = {
            let mut users = vec![];
            let mut all = false;
            for c in self.tracked.values().filter(|c| c.account == account) {
                match &c.target {
                    Target::All => all = true,
                    Target::User { email, .. } => users.push(email.clone()),
                    Target::Token { .. } => users.extend(c.devices.iter().map(|d| d.owner.clone())),
                }
            }
            // A canary is watched after its one-device campaign is over.
            users.extend(
                self.rollouts
                    .values()
                    .filter(|c| c.r.account == account && c.r.stage == BlynkRolloutStage::Canary)
                    .map(|c| c.r.canary.owner.clone()),
            );
            users.sort();
            users.dedup();
            if all {
                Fetch::All
            } else {
                Fetch::Users(users)
            }
        };
        let client = match self.client(account).await {
            Ok((c, _)) => c,
            Err(e) => {
                self.poll_failed(account, e);
                return;
            }
        };
        self.in_flight.insert(account.to_string());
        let internal = self.internal.clone();
        let account = account.to_string();
        tokio::spawn(async move {
            let result = client.devices(&fetch).await;
            let _ = internal.send(Internal::Polled { account, result });
        });
    }

    fn poll_failed(&mut self, account: &str, e: BlynkError) {
        let text = e.to_string();
        tracing::warn!(account, error = %text, "Blynk poll failed");
        if self.last_error.get(account) != Some(&text) {
            self.last_error.insert(account.to_string(), text.clone());
            self.emit(BlynkEvent::PollFailed {
                account: account.to_string(),
                reason: text,
                needs_login: e.is_auth(),
            });
        }
        if e.is_auth() {
            // A new password builds a new client; this one would only fail again.
            self.clients.remove(account);
        }
        for w in self.waiters.remove(account).unwrap_or_default() {
            let _ = w.send(Err(e.share()));
        }
    }

    fn on_internal(&mut self, i: Internal) {
        match i {
            Internal::Polled { account, result } => {
                self.in_flight.remove(&account);
                match result {
                    Ok(devices) => {
                        self.last_error.remove(&account);
                        self.fold(&account, &devices);
                        for w in self.waiters.remove(&account).unwrap_or_default() {
                            let _ = w.send(Ok(()));
                        }
                    }
                    Err(e) => self.poll_failed(&account, e),
                }
            }
            Internal::Extended { id, failure } => {
                self.tasks = self.tasks.saturating_sub(1);
                self.extending.remove(&id);
                if let Some(why) = failure {
                    let now = now_ms();
                    self.update_rollout(id, |r| r.extension_not_sent(&why, now));
                }
                let current = self.find_rollout(RolloutKey::Id(id)).ok().flatten();
                for w in self.resume_waiters.remove(&id).unwrap_or_default() {
                    let _ = w.send(current.clone().ok_or_else(|| {
                        BlynkError::Other(format!("staged campaign #{id} is gone"))
                    }));
                }
            }
            Internal::ServerStopped {
                id,
                account,
                result,
            } => {
                self.tasks = self.tasks.saturating_sub(1);
                let note = match result {
                    Ok(n) => format!(
                        "Greenlight stopped updates on the server: {n} campaign(s) ended"
                    ),
                    Err(e) => format!(
                        "the server's stop failed: {e} — stop updates with `greenlight blynk stop --account {account}`"
                    ),
                };
                self.update_rollout(id, |r| {
                    r.note = Some(note.clone());
                    Step::Changed
                });
            }
        }
    }

    /// Folds one poll of an account into each of its followed campaigns.
    fn fold(&mut self, account: &str, seen: &[DeviceSeen]) {
        let now = now_ms();
        let ids: Vec<i64> = self
            .tracked
            .values()
            .filter(|c| c.account == account)
            .map(|c| c.id)
            .collect();
        for id in ids {
            let Some(mut c) = self.tracked.remove(&id) else {
                continue;
            };
            let build = c.build.clone();
            let ctx = self.ctx(&c, &build, now);
            let standing = ctx.standing;
            let mut writes = vec![];
            let mut shown = vec![];
            let mut loops = vec![];
            for s in seen.iter().filter(|s| c.target.covers(s)) {
                match c.devices.iter_mut().find(|d| d.key == s.key) {
                    Some(rec) => {
                        let before = rec.state.name();
                        let visible = track::observe(rec, s, &ctx);
                        // By name: a loop's growing count is not news every poll.
                        let state_changed = rec.state.name() != before;
                        writes.push((rec.clone(), state_changed));
                        if visible {
                            shown.push(rec.clone());
                        }
                        if state_changed && matches!(rec.state, DeviceState::Looping { .. }) {
                            loops.push(rec.clone());
                        }
                    }
                    // A device registered since the start: followed from now.
                    None if standing => {
                        let rec = track::baseline(s, &ctx);
                        writes.push((rec.clone(), true));
                        shown.push(rec.clone());
                        c.devices.push(rec);
                    }
                    None => {}
                }
            }
            let refs: Vec<_> = writes.iter().map(|(d, ch)| (d, *ch)).collect();
            if let Err(e) = self.store.save_campaign_devices(id, &refs) {
                tracing::error!(error = %e, id, "could not store device changes");
            }
            for d in shown {
                self.emit(BlynkEvent::DeviceChanged {
                    campaign_id: id,
                    account: account.to_string(),
                    device: d,
                });
            }
            for d in loops {
                self.emit(BlynkEvent::LoopSuspected {
                    campaign_id: id,
                    account: account.to_string(),
                    device: d,
                });
            }
            let mut changed = writes.iter().any(|(_, ch)| *ch);
            if standing
                && !c.devices.is_empty()
                && c.devices.iter().all(|d| d.state == DeviceState::Updated)
            {
                c.status = CampaignStatus::Completed;
                c.finished_at = Some(now);
                changed = true;
            } else if standing && !c.target.is_campaign() && c.is_settled() {
                // Sent once and over: nothing more can happen to it.
                c.status = CampaignStatus::Ended;
                c.finished_at = Some(now);
                changed = true;
            }
            changed |= self.update_settled(&mut c, now);
            if changed {
                c.updated_at = now;
                if let Err(e) = self.store.save_campaign(&c) {
                    tracing::error!(error = %e, id, "could not store a campaign change");
                }
                self.emit(BlynkEvent::CampaignChanged {
                    campaign: c.clone(),
                });
            }
            // Follow live campaigns; ended ones only while a device installs.
            let keep = c.status == CampaignStatus::Active
                || c.devices.iter().any(|d| d.state == DeviceState::Installing);
            if keep {
                self.tracked.insert(id, c);
            }
        }
        self.advance_rollouts(account, seen);
    }
}

/// Staged campaigns: every write is a compare-and-set on the stored record
/// (see `Store::swap_blynk_rollout`), every change stored before it is said.
impl Actor {
    /// Re-reads the active staged campaigns (another process may have
    /// started, advanced or ended one); says what changed.
    fn reload_rollouts(&mut self) {
        let rows = match self.store.blynk_rollout_rows(true, 0) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "could not read staged campaigns");
                return;
            }
        };
        let ids: HashSet<i64> = rows.iter().map(|(id, _, _)| *id).collect();
        for (id, raw, _) in rows {
            if self.rollouts.get(&id).is_some_and(|c| c.raw == raw) {
                continue;
            }
            let Some(r) = parse_rollout(id, &raw) else {
                continue;
            };
            let shown = self
                .rollouts
                .get(&id)
                .is_none_or(|c| c.r.view() != r.view());
            self.rollouts.insert(id, Cached { r: r.clone(), raw });
            if shown {
                self.emit(BlynkEvent::RolloutChanged {
                    rollout: Box::new(r),
                });
            }
        }
        let gone: Vec<i64> = self
            .rollouts
            .keys()
            .filter(|id| !ids.contains(id))
            .copied()
            .collect();
        for id in gone {
            self.reload_rollout(id);
        }
    }

    /// Re-reads one staged campaign, active or not; says it when it changed.
    fn reload_rollout(&mut self, id: i64) -> Option<BlynkRollout> {
        let row = match self.store.blynk_rollout_row(id) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(id, error = %e, "could not read a staged campaign");
                return self.rollouts.get(&id).map(|c| c.r.clone());
            }
        };
        let old = self.rollouts.remove(&id);
        let (raw, active) = row?;
        let r = parse_rollout(id, &raw)?;
        if old.as_ref().is_some_and(|c| c.r.view() != r.view()) {
            self.emit(BlynkEvent::RolloutChanged {
                rollout: Box::new(r.clone()),
            });
        }
        if active {
            self.rollouts.insert(id, Cached { r: r.clone(), raw });
        }
        Some(r)
    }

    /// Applies `f` to a staged campaign and stores the result if it changed,
    /// only over the record this process last saw; when another process
    /// wrote first, re-reads it and applies `f` again (every rule is written
    /// so that applying it to the newer record is right). Returns the
    /// record now and what `f` asked for; `None` when it cannot be read or
    /// written.
    fn update_rollout(
        &mut self,
        id: i64,
        mut f: impl FnMut(&mut BlynkRollout) -> Step,
    ) -> Option<(BlynkRollout, Step)> {
        for _ in 0..5 {
            let (cur, raw) = match self.rollouts.get(&id) {
                Some(c) => (c.r.clone(), c.raw.clone()),
                None => {
                    let (raw, _) = self.store.blynk_rollout_row(id).ok().flatten()?;
                    (parse_rollout(id, &raw)?, raw)
                }
            };
            let mut next = cur.clone();
            let step = f(&mut next);
            if step == Step::None || next == cur {
                return Some((cur, Step::None));
            }
            let now = now_ms();
            let shown = next.view() != cur.view();
            if shown {
                next.updated_at = now;
            }
            let text = match serde_json::to_string(&next) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(id, error = %e, "a staged campaign could not be written");
                    return None;
                }
            };
            match self
                .store
                .swap_blynk_rollout(id, &raw, &text, next.is_active(), now)
            {
                Ok(true) => {
                    if next.is_active() {
                        self.rollouts.insert(
                            id,
                            Cached {
                                r: next.clone(),
                                raw: text,
                            },
                        );
                    } else {
                        self.rollouts.remove(&id);
                    }
                    if shown {
                        self.emit(BlynkEvent::RolloutChanged {
                            rollout: Box::new(next.clone()),
                        });
                    }
                    return Some((next, step));
                }
                Ok(false) => {
                    self.reload_rollout(id);
                }
                Err(e) => {
                    tracing::error!(id, error = %e, "could not store a staged campaign");
                    return None;
                }
            }
        }
        tracing::warn!(
            id,
            "a staged campaign kept changing under this process; left for the next poll"
        );
        None
    }

    /// Accounts to poll now (one, or all): those with followed campaigns,
    /// and those with a staged campaign that needs the server's news.
    fn accounts_to_poll(&mut self, only: Option<&str>) -> HashSet<String> {
        self.reload_rollouts();
        // An extension another process started is followed here too.
        let adopt: Vec<i64> = self
            .rollouts
            .values()
            .filter(|c| c.r.stage == BlynkRolloutStage::Extended)
            .filter_map(|c| c.r.extension)
            .filter(|id| !self.tracked.contains_key(id))
            .collect();
        for id in adopt {
            if let Ok(Some(c)) = self.store.campaign(id) {
                if c.status == CampaignStatus::Active {
                    self.tracked.insert(id, c);
                }
            }
        }
        self.tracked
            .values()
            .map(|c| c.account.clone())
            .chain(
                self.rollouts
                    .values()
                    .filter(|c| !c.r.needs_user())
                    .map(|c| c.r.account.clone()),
            )
            .filter(|a| only.is_none_or(|x| x == a))
            .collect()
    }

    /// After a poll of `account`: each of its staged campaigns moves on
    /// (canary news, the extended campaign, a stale extension).
    fn advance_rollouts(&mut self, account: &str, seen: &[DeviceSeen]) {
        if self.closing.is_some() {
            // Nothing new starts while shutting down; the next run goes on.
            return;
        }
        self.reload_rollouts();
        let now = now_ms();
        let grace = self.cfg.install_grace.as_millis() as i64;
        let ids: Vec<i64> = self
            .rollouts
            .values()
            .filter(|c| c.r.account == account)
            .map(|c| c.r.id)
            .collect();
        for id in ids {
            let in_flight = self.extending.contains(&id);
            let ext = self
                .rollouts
                .get(&id)
                .and_then(|c| c.r.extension)
                .and_then(|cid| match self.tracked.get(&cid) {
                    Some(c) => Some(c.clone()),
                    None => self.store.campaign(cid).ok().flatten(),
                });
            let res = self.update_rollout(id, |r| match r.stage {
                BlynkRolloutStage::Canary => {
                    let s = seen.iter().find(|s| s.key == r.canary.key);
                    r.observe_canary(s, grace, now)
                }
                BlynkRolloutStage::Extended => ext
                    .as_ref()
                    .map_or(Step::None, |c| r.follow_extension(c, now)),
                BlynkRolloutStage::Extending { .. } if !in_flight => {
                    r.recover(STARTING_STALE_MS, now)
                }
                _ => Step::None,
            });
            match res {
                Some((r, Step::Extend)) => {
                    self.spawn_extension(r);
                }
                Some((r, Step::StopServer)) => self.spawn_server_stop(r),
                _ => {}
            }
        }
    }

    fn handle(&self) -> Option<BlynkHandle> {
        let tx = self.me.upgrade()?;
        Some(BlynkHandle::from_parts(
            tx,
            self.events.clone(),
            self.cfg.client.clone(),
            self.cfg.loop_after,
        ))
    }

    /// Sends the extension of `r` (recorded `Extending`) in a task: the
    /// firmware read again and checked, the final target's devices asked
    /// for, then the start, linked to the staged campaign before the upload.
    fn spawn_extension(&mut self, r: BlynkRollout) -> bool {
        let Some(h) = self.handle() else {
            return false;
        };
        self.extending.insert(r.id);
        self.tasks += 1;
        let internal = self.internal.clone();
        tokio::spawn(async move {
            let failure = h.extend(&r).await.err().map(|e| e.to_string());
            let _ = internal.send(Internal::Extended { id: r.id, failure });
        });
        true
    }

    /// Calls the server's stop after a reboot loop in the extended campaign.
    fn spawn_server_stop(&mut self, r: BlynkRollout) {
        let Some(h) = self.handle() else {
            return;
        };
        self.tasks += 1;
        let internal = self.internal.clone();
        tokio::spawn(async move {
            let result = h
                .stop(&r.account)
                .await
                .map(|v| v.len())
                .map_err(|e| e.to_string());
            let _ = internal.send(Internal::ServerStopped {
                id: r.id,
                account: r.account,
                result,
            });
        });
    }

    /// A start answered: the staged campaign it belongs to moves on.
    fn rollout_answer(&mut self, c: &Campaign, result: &Result<String, (String, bool)>) {
        let ids: Vec<i64> = self
            .rollouts
            .values()
            .filter(|x| x.r.canary_campaign == c.id || x.r.extension == Some(c.id))
            .map(|x| x.r.id)
            .collect();
        let now = now_ms();
        for id in ids {
            self.update_rollout(id, |r| {
                let res = result.as_ref().map_err(|(t, maybe)| (t.as_str(), *maybe));
                if r.canary_campaign == c.id {
                    r.canary_answered(res.map(|_| c.devices.first()), now)
                } else {
                    r.extension_answered(c.id, res.map(|_| ()), now)
                }
            });
        }
    }

    /// The active ones and the most recent ended ones, newest first.
    fn list_rollouts(
        &mut self,
        account: Option<&str>,
        limit: u32,
    ) -> BlynkResult<Vec<BlynkRollout>> {
        self.reload_rollouts();
        Ok(self
            .store
            .blynk_rollout_rows(false, limit)?
            .into_iter()
            .filter_map(|(id, raw, _)| parse_rollout(id, &raw))
            .filter(|r| account.is_none_or(|a| a == r.account))
            .collect())
    }

    fn find_rollout(&mut self, key: RolloutKey) -> BlynkResult<Option<BlynkRollout>> {
        match key {
            RolloutKey::Id(id) => Ok(self.reload_rollout(id)),
            RolloutKey::CanaryCampaign(cid) => Ok(self
                .list_rollouts(None, crate::store::MAX_ENDED_ROLLOUTS as u32)?
                .into_iter()
                .find(|r| r.canary_campaign == cid)),
        }
    }

    /// The one active staged campaign (of `account`, when given).
    fn pick(&mut self, account: Option<&str>) -> BlynkResult<i64> {
        self.reload_rollouts();
        let found: Vec<&BlynkRollout> = self
            .rollouts
            .values()
            .map(|c| &c.r)
            .filter(|r| account.is_none_or(|a| a == r.account))
            .collect();
        match found.as_slice() {
            [r] => Ok(r.id),
            [] => Err(BlynkError::Invalid(match account {
                Some(a) => format!("no staged campaign is under way on {a}"),
                None => "no staged campaign is under way".into(),
            })),
            many => Err(BlynkError::Invalid(format!(
                "staged campaigns are under way on several servers ({}): name the account",
                many.iter()
                    .map(|r| r.account.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    fn resume(&mut self, account: Option<&str>, reply: Reply<BlynkRollout>) {
        let id = match self.pick(account) {
            Ok(id) => id,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let now = now_ms();
        let mut refused = None;
        let res = self.update_rollout(id, |r| match r.resume(now) {
            Ok(s) => {
                refused = None;
                s
            }
            Err(e) => {
                refused = Some(e);
                Step::None
            }
        });
        if let Some(e) = refused {
            let _ = reply.send(Err(BlynkError::Invalid(e)));
            return;
        }
        match res {
            Some((r, Step::Extend)) => {
                if self.spawn_extension(r) {
                    self.resume_waiters.entry(id).or_default().push(reply);
                } else {
                    let _ = reply.send(Err(BlynkError::Stopped));
                }
            }
            _ => {
                let _ = reply.send(Err(BlynkError::Other(format!(
                    "staged campaign #{id} changed meanwhile; look at it again"
                ))));
            }
        }
    }

    fn cancel(&mut self, account: Option<&str>) -> BlynkResult<(BlynkRollout, bool)> {
        let id = self.pick(account)?;
        let (by, now) = (self.actor_name.clone(), now_ms());
        let mut outcome = Err(String::new());
        let res = self.update_rollout(id, |r| {
            outcome = r.cancel(&by, now);
            if outcome.is_ok() {
                Step::Changed
            } else {
                Step::None
            }
        });
        match (outcome, res) {
            (Err(e), _) => Err(BlynkError::Invalid(e)),
            (Ok(stop), Some((r, _))) => Ok((r, stop)),
            (Ok(_), None) => Err(BlynkError::Other(format!(
                "staged campaign #{id} could not be updated"
            ))),
        }
    }
}
