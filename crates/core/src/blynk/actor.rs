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
use super::track::{self, Ctx};
use super::tracker::TrackerConfig;
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
}

pub(super) enum Request {
    SaveAccount(Box<BlynkAccount>, String, Reply<()>),
    RemoveAccount(String, Reply<()>),
    Accounts(Reply<Vec<BlynkAccount>>),
    Client(String, Reply<(AdminClient, BlynkAccount)>),
    Begin(Box<Begin>, Reply<Campaign>),
    Started(i64, Result<String, String>, Reply<Campaign>),
    Stopped(String, Reply<Vec<Campaign>>),
    Refresh(
        Option<String>,
        Reply<Vec<oneshot::Receiver<BlynkResult<()>>>>,
    ),
    Status(Option<String>, Reply<Vec<Campaign>>),
    Campaign(i64, Reply<Option<Campaign>>),
    History(Option<String>, u32, Reply<Vec<Campaign>>),
    Events(i64, Reply<Vec<DeviceEvent>>),
    Shutdown(oneshot::Sender<()>),
}

pub(super) enum Internal {
    Polled {
        account: String,
        result: BlynkResult<Vec<DeviceSeen>>,
    },
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
                        let _ = done.send(());
                        return;
                    }
                    Some(r) => self.on_request(r).await,
                },
                Some(i) = internal.recv() => self.on_internal(i),
                _ = tick.tick() => {
                    if self.cfg.background {
                        self.sync_from_store();
                        let accounts: HashSet<String> =
                            self.tracked.values().map(|c| c.account.clone()).collect();
                        for a in accounts {
                            self.poll(&a).await;
                        }
                    } else {
                        self.follow_store();
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
                let accounts: HashSet<String> = self
                    .tracked
                    .values()
                    .map(|c| c.account.clone())
                    .filter(|a| account.as_ref().is_none_or(|x| x == a))
                    .collect();
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
    fn conflicts(&self, b: &Begin) -> BlynkResult<Vec<Campaign>> {
        let standing: Vec<Campaign> = self
            .store
            .campaigns(Some(&b.account), &["active", "completed"], 1000)?
            .into_iter()
            .filter(|c| c.stands_on_server() && c.build != b.build)
            .collect();
        Ok(standing
            .into_iter()
            .filter(|s| match (&b.target, &s.target) {
                (Target::Token { .. }, t) => b.devices.iter().any(|d| t.covers(d)),
                (Target::All, Target::User { .. }) | (Target::User { .. }, Target::All) => true,
                _ => false,
            })
            .collect())
    }

    fn begin(&mut self, b: Begin) -> BlynkResult<Campaign> {
        let fights = self.conflicts(&b)?;
        if !fights.is_empty() {
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
            return Err(BlynkError::Conflict(format!(
                "nothing was sent: campaign {} still stands on the server for some of these devices; with both, a device would flip between the two builds on every login (the server sends the all-devices campaign first, then the user's{}). Stop updates on the server first (its stop is global)",
                list.join(", "),
                if b.target.is_campaign() { "" } else { ", and undoes a one-device update at the next login" }
            )));
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
        let c = self.store.insert_campaign(&c)?;
        self.emit(BlynkEvent::CampaignChanged {
            campaign: c.clone(),
        });
        Ok(c)
    }

    fn started(&mut self, id: i64, result: Result<String, String>) -> BlynkResult<Campaign> {
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
            Err(reason) => {
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
    }
}
