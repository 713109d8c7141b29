//! Pending offers: what the inbox shows now, the events that keep views in
//! step with it, and the warnings an offer carries.
//!
//! A node can hold two offers at once (its own `Info` offer and a cloud
//! user-approval job); both are shown. An offer is hidden while it is
//! approved, when its version is skipped or already running, and a node-side
//! offer is never shown for a node of the stock layout (it cannot approve).

use super::{Core, Earlier, Effect, Key};
use crate::event::Event;
use crate::model::{DownloadWindow, Millis, OtaLayout, PendingUpdate, UpdateKind};
use crate::rainmaker::rest::CloudOffer;

/// A remembered offer a source keeps repeating is rewritten at most this
/// often (a restart then says "last heard" at most this long ago).
const HEARD_SAVE_EVERY: Millis = 5 * 60_000;

/// Download windows remembered per node: one per offer and running job is
/// all that is needed; a node or cloud inventing job ids adds more.
const MAX_WINDOWS_PER_NODE: usize = 8;

/// A raw offer as a source reported it; [`Core::visible`] fills in what the
/// node record knows (name, running version, online state, warning).
pub(crate) fn raw_offer(
    k: &Key,
    job_id: String,
    to_version: String,
    kind: UpdateKind,
    first_seen: Millis,
) -> PendingUpdate {
    PendingUpdate {
        account: k.0.clone(),
        node_id: k.1.clone(),
        node_name: None,
        job_id,
        from_version: None,
        to_version,
        release_note: None,
        size: None,
        kind,
        first_seen,
        snoozed_until: None,
        node_online: None,
        node_known: crate::model::Known::Unknown { since: first_seen },
        node_last_seen: None,
        warning: None,
        remembered: None,
    }
}

impl Core {
    /// The updates of a node that are offered for approval now, as views
    /// should show them (with the node's current name, version, online
    /// state and any warning).
    pub(crate) fn visible(&self, k: &Key, now: Millis) -> Vec<PendingUpdate> {
        let node = self.nodes.get(k);
        let stock = node.is_some_and(|n| n.ota_layout == Some(OtaLayout::Stock));
        [self.node_pending.get(k), self.cloud_pending.get(k)]
            .into_iter()
            .flatten()
            .filter(|p| !(stock && p.kind == UpdateKind::NodeSide))
            .filter(|p| {
                !self
                    .approved
                    .contains(&(k.0.clone(), k.1.clone(), p.job_id.clone()))
            })
            .filter(|p| self.skips.get(k) != Some(&p.to_version))
            .filter(|p| node.and_then(|n| n.fw_version.as_ref()) != Some(&p.to_version))
            .map(|p| {
                let mut p = p.clone();
                p.snoozed_until = self.snoozes.get(k).copied().filter(|u| *u > now);
                if let Some(n) = node {
                    p.node_online = n.online;
                    p.node_known = n.known;
                    p.node_last_seen = n.last_seen;
                }
                p.node_name = node.and_then(|n| n.name.clone());
                p.from_version = node.and_then(|n| n.fw_version.clone()).or(p.from_version);
                p.warning = self.warning(k, &p.to_version);
                p
            })
            .collect()
    }

    /// Remembers a job's download window, keeping a node's windows bounded:
    /// past [`MAX_WINDOWS_PER_NODE`] only those of its current offers and
    /// running jobs stay.
    pub(crate) fn remember_window(&mut self, k: &Key, job_id: &str, w: DownloadWindow) {
        self.windows
            .insert((k.0.clone(), k.1.clone(), job_id.to_string()), w);
        let mine = self
            .windows
            .keys()
            .filter(|(a, n, _)| *a == k.0 && *n == k.1)
            .count();
        if mine <= MAX_WINDOWS_PER_NODE {
            return;
        }
        let keep: Vec<String> = [self.node_pending.get(k), self.cloud_pending.get(k)]
            .into_iter()
            .flatten()
            .map(|p| p.job_id.clone())
            .chain(
                self.jobs
                    .values()
                    .filter(|r| r.job.account == k.0 && r.job.node_id == k.1)
                    .map(|r| r.job.ota_job_id.clone()),
            )
            .chain([job_id.to_string()])
            .collect();
        self.windows
            .retain(|(a, n, j), _| *a != k.0 || *n != k.1 || keep.contains(j));
        tracing::debug!(node = %k.1, "download windows of old offers forgotten");
    }

    /// Forgets what is remembered of a node's jobs the store dropped
    /// ([`Store::trim_node`](crate::store::Store::trim_node)), as a restart would.
    pub(crate) fn forget_jobs(&mut self, k: &Key, job_ids: &[String]) {
        for j in job_ids {
            let key = (k.0.clone(), k.1.clone(), j.clone());
            self.approved.remove(&key);
            self.closed.remove(&key);
            self.windows.remove(&key);
        }
    }

    /// Plain words when this very image went wrong on this device before.
    fn warning(&self, k: &Key, version: &str) -> Option<String> {
        let e = self
            .earlier
            .get(&(k.0.clone(), k.1.clone(), version.to_string()))?;
        let mut w = if e.rolled_back {
            format!(
                "This image already rolled back on this device ({}). Approving it again will likely do the same; a device can keep switching between the two versions.",
                e.reason
            )
        } else {
            format!("This update already failed on this device ({}).", e.reason)
        };
        if self.auto.contains(k) {
            w.push_str(" Auto-approve leaves it to you.");
        }
        Some(w)
    }

    /// Tells views what changed in a node's offers since `before`: an upsert
    /// for each new or changed offer (a node going offline changes its
    /// cards), a removal for each gone one. Returns whether an offer is new.
    pub(crate) fn pending_diff(
        &mut self,
        k: &Key,
        before: Vec<PendingUpdate>,
        now: Millis,
    ) -> bool {
        self.remember_offers(k, now);
        let after = self.visible(k, now);
        let mut added = false;
        for p in &after {
            match before.iter().find(|b| b.job_id == p.job_id) {
                Some(b) if b == p => {}
                Some(_) => self.emit(Event::PendingAdded { pending: p.clone() }),
                None => {
                    added = true;
                    self.emit(Event::PendingAdded { pending: p.clone() });
                }
            }
        }
        for b in before {
            if !after.iter().any(|p| p.job_id == b.job_id) {
                self.emit(Event::PendingRemoved {
                    account: k.0.clone(),
                    node_id: k.1.clone(),
                    job_id: b.job_id,
                });
            }
        }
        added
    }

    /// Keeps the store's copy of a node's offers in step: written when they
    /// change, and again when a source repeats them after a while, so that
    /// "last heard" after a restart is at most [`HEARD_SAVE_EVERY`] old.
    fn remember_offers(&mut self, k: &Key, now: Millis) {
        let raw: Vec<PendingUpdate> = [self.node_pending.get(k), self.cloud_pending.get(k)]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let heard = raw.iter().any(|p| p.remembered.is_none());
        let write = match self.offers_saved.get(k) {
            None => !raw.is_empty(),
            Some((saved, at)) => *saved != raw || (heard && now - at >= HEARD_SAVE_EVERY),
        };
        if !write {
            return;
        }
        if raw.is_empty() {
            self.offers_saved.remove(k);
        } else {
            self.offers_saved.insert(k.clone(), (raw.clone(), now));
        }
        self.push(Effect::SaveOffers {
            key: k.clone(),
            offers: raw,
        });
    }

    /// Offers remembered from before a restart, shown until a source
    /// repeats or withdraws them.
    pub(crate) fn restore_offer(&mut self, mut p: PendingUpdate, heard_at: Millis) {
        let k = (p.account.clone(), p.node_id.clone());
        if !self.nodes.contains_key(&k) {
            return;
        }
        // An offer saved while itself remembered keeps its first hearing.
        p.remembered = Some(p.remembered.unwrap_or(heard_at));
        let map = match p.kind {
            UpdateKind::NodeSide => &mut self.node_pending,
            UpdateKind::CloudApproval => &mut self.cloud_pending,
        };
        map.insert(k.clone(), p);
        let raw: Vec<PendingUpdate> = [self.node_pending.get(&k), self.cloud_pending.get(&k)]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        self.offers_saved.insert(k, (raw, heard_at));
    }

    /// A cloud user-approval check answered for a node.
    pub(crate) fn cloud_offer(&mut self, k: &Key, offer: Option<CloudOffer>, now: Millis) {
        if !self.nodes.contains_key(k) {
            return;
        }
        let before = self.visible(k, now);
        match offer {
            Some(o) => {
                let first_seen = self
                    .cloud_pending
                    .get(k)
                    .filter(|p| p.job_id == o.job_id)
                    .map(|p| p.first_seen)
                    .unwrap_or(now);
                if let Some(w) = o.window {
                    self.remember_window(k, &o.job_id, w);
                }
                self.clear_stale_skip(k, &o.fw_version);
                let mut p = raw_offer(
                    k,
                    o.job_id,
                    o.fw_version,
                    UpdateKind::CloudApproval,
                    first_seen,
                );
                p.release_note = o.description;
                p.size = o.file_size;
                self.cloud_pending.insert(k.clone(), p);
            }
            None => {
                self.cloud_pending.remove(k);
            }
        }
        if self.pending_diff(k, before, now) {
            self.maybe_auto(k, now);
        }
    }

    /// A skip holds for one version: another version clears it.
    pub(crate) fn clear_stale_skip(&mut self, k: &Key, version: &str) {
        if self.skips.get(k).is_some_and(|v| v != version) {
            self.skips.remove(k);
            self.push(Effect::ClearSkip(k.clone()));
        }
    }

    /// Auto-approve, when the node has it on, is online, runs no job and has
    /// an update that never went wrong on it. Called whenever an offer
    /// appears or the node comes online, not only when the node appears.
    pub(crate) fn maybe_auto(&mut self, k: &Key, now: Millis) {
        if !self.auto.contains(k) || !self.online(k) {
            return;
        }
        if self
            .jobs
            .values()
            .any(|r| r.job.account == k.0 && r.job.node_id == k.1)
        {
            return;
        }
        let offers = self.visible(k, now);
        if offers.is_empty() || offers.iter().all(|p| p.warning.is_some()) {
            return;
        }
        self.push(Effect::AutoApprove(k.clone()));
    }

    /// Records that an image went wrong on a device (shown as a warning
    /// when the same version is offered again).
    pub(crate) fn remember_bad(&mut self, k: &Key, version: &str, e: Earlier) {
        self.earlier
            .insert((k.0.clone(), k.1.clone(), version.to_string()), e);
    }
}
