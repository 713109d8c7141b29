//! Facts about nodes: reports from the MQTT watcher and the REST sweep,
//! folded into the node records and their offers, and what each one means
//! for the node's jobs (a node back on the new version has updated; back on
//! the old one after restarting, it rolled back; online again, an "install
//! when online" can be delivered).

use std::collections::HashSet;

use super::{Core, Effect, Key};
use crate::model::{JobState, Known, Millis, Node, OtaLayout, QueueReason, UpdateKind};
use crate::rainmaker::{InfoReport, NodeReport, Via};

/// A node that offers the approved job again sooner than this after the
/// `start` was acknowledged may simply have crossed it in flight.
const REOFFER_GUARD_MS: Millis = 3_000;

/// How many times one approval is delivered to a device that keeps asking.
const MAX_DELIVERIES: u32 = 3;

/// What one node report says, for the node's jobs.
#[derive(Clone, Copy)]
struct NodeNews<'a> {
    node: &'a Node,
    /// The version this very report says the node runs.
    reported_fw: Option<&'a str>,
    /// The offer this very report carries.
    offered_now: Option<&'a str>,
    /// The node said it just now (MQTT), not the cloud's copy of what it
    /// last said (a sweep, which can repeat an offer the node made before
    /// the approval).
    live: bool,
    went_offline: bool,
    observed_at: Millis,
}

/// What a node report means for its account's REST sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SourcesImpact {
    /// Nothing they use changed (by far the most common: a param report).
    None,
    /// A node appeared: the cloud checker's list grows, within a tick.
    NodeAdded,
    /// A node with a running job went on- or offline: its poll pace changes now.
    Now,
}

impl Core {
    /// Reports about nodes of an account. `complete`: the account's whole
    /// node list (a sweep), so nodes missing from it are gone.
    pub(crate) fn node_reports(
        &mut self,
        account: &str,
        reports: Vec<NodeReport>,
        complete: bool,
        observed_at: Millis,
        via: Via,
        now: Millis,
    ) {
        if !self.accounts.contains(account) {
            return;
        }
        let mut seen = HashSet::new();
        let mut impact = SourcesImpact::None;
        for r in reports {
            seen.insert(r.node_id.clone());
            impact = impact.max(self.apply_node(account, r, observed_at, via, now));
        }
        if complete && via == Via::Rest {
            self.link_swept(account, observed_at, now);
        }
        if complete {
            let gone: Vec<Key> = self
                .nodes
                .keys()
                .filter(|k| k.0 == account && !seen.contains(&k.1))
                .cloned()
                .collect();
            for k in gone {
                self.forget_node(&k, now);
            }
            impact = SourcesImpact::Now;
        }
        // Recomputing the sources walks every node of the account, so it is
        // not done for each of the thousands of param reports a fleet sends,
        // only when something they use changed.
        match impact {
            SourcesImpact::Now => self.push(Effect::Sources {
                account: account.to_string(),
                now: true,
            }),
            SourcesImpact::NodeAdded => self.push(Effect::Sources {
                account: account.to_string(),
                now: false,
            }),
            SourcesImpact::None => {}
        }
    }

    /// The cloud told a node about a job with a download window.
    pub(crate) fn job_window(
        &mut self,
        k: &Key,
        job_id: &str,
        window: crate::model::DownloadWindow,
        now: Millis,
    ) {
        if !self.accounts.contains(&k.0) {
            return;
        }
        self.remember_window(k, job_id, window);
        // A job already delayed by its window now shows which window.
        let ids: Vec<i64> = self
            .jobs
            .iter()
            .filter(|(_, r)| {
                r.job.account == k.0 && r.job.node_id == k.1 && r.job.ota_job_id == job_id
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(JobState::Delayed { delay }) =
                self.jobs.get(&id).map(|r| r.job.state.clone())
            {
                let delay = self.with_window(k, job_id, delay);
                self.set_state(id, JobState::Delayed { delay }, None, now);
            }
        }
    }

    fn apply_node(
        &mut self,
        account: &str,
        r: NodeReport,
        observed_at: Millis,
        via: Via,
        now: Millis,
    ) -> SourcesImpact {
        let k = (account.to_string(), r.node_id.clone());
        let before = self.visible(&k, now);
        let is_new = !self.nodes.contains_key(&k);
        let known = self.known_for(account, via == Via::Mqtt, observed_at);
        let node = self.nodes.entry(k.clone()).or_insert_with(|| Node {
            account: account.to_string(),
            node_id: r.node_id.clone(),
            name: None,
            model: None,
            fw_version: None,
            online: None,
            known: Known::Unknown { since: now },
            ota: None,
            ota_layout: None,
            ota_text: None,
            last_seen: None,
        });
        let old = node.clone();
        // The version this very report says the node runs (a config or an
        // otafetch), as opposed to the one remembered from before.
        let reported_fw = r
            .config
            .as_ref()
            .and_then(|c| c.fw_version.clone())
            .or_else(|| r.fw_version.clone());
        if let Some(c) = r.config {
            node.name = c.name.clone().or(node.name.take());
            node.model = c.model.clone().or(node.model.take());
            node.fw_version = c.fw_version.clone().or(node.fw_version.take());
            if let Some(layout) = c.layout() {
                node.ota_layout = Some(layout);
                node.ota = c.ota.clone();
            }
        }
        if let Some(fw) = r.fw_version {
            node.fw_version = Some(fw);
        }
        if r.ota_text.is_some() {
            node.ota_text = r.ota_text;
        }
        if let Some(o) = r.online {
            node.online = Some(o);
            node.known = known;
            // "Last seen" is the last time the node was reported online: now
            // for an online report, the cloud's time of the disconnect for
            // an offline one.
            if o {
                node.last_seen = Some(observed_at.max(node.last_seen.unwrap_or(0)));
            } else if let Some(t) = r.changed_at.filter(|t| *t <= observed_at) {
                node.last_seen = Some(t);
            }
        }
        let node = node.clone();
        let came_online = node.is_online() && !old.is_online();
        let went_offline = node.online == Some(false) && old.online == Some(true);
        if super::presence::shape(&node) != super::presence::shape(&old) {
            self.push(Effect::SaveNode(node.clone()));
            self.emit(crate::event::Event::NodeUpdated {
                node: self.node_now(&node),
            });
        } else if super::worth_saving(&old, &node) {
            // Only a timestamp moved: kept for the next start, not announced.
            self.push(Effect::SaveNode(node.clone()));
        }
        let stock = node.ota_layout == Some(OtaLayout::Stock);
        // The offer this very report carries (not one remembered from before).
        let offered_now = match &r.info {
            InfoReport::Pending(i) if !stock => Some(i.job_id.clone()),
            _ => None,
        };
        match r.info {
            // A stock node's Info is free text: never an offer.
            InfoReport::Pending(_) if stock => {}
            InfoReport::Pending(i) => {
                self.clear_stale_skip(&k, &i.fw_version);
                let first_seen = self
                    .node_pending
                    .get(&k)
                    .filter(|p| p.job_id == i.job_id)
                    .map(|p| p.first_seen)
                    .unwrap_or(now);
                self.node_pending.insert(
                    k.clone(),
                    super::offers::raw_offer(
                        &k,
                        i.job_id,
                        i.fw_version,
                        UpdateKind::NodeSide,
                        first_seen,
                    ),
                );
            }
            InfoReport::Empty => {
                self.node_pending.remove(&k);
            }
            InfoReport::Unknown => {}
        }
        let offered = self.pending_diff(&k, before, now);
        let ids: Vec<i64> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.job.account == k.0 && j.job.node_id == k.1)
            .map(|(id, _)| *id)
            .collect();
        let impact = if (came_online || went_offline) && !ids.is_empty() {
            SourcesImpact::Now
        } else if is_new {
            SourcesImpact::NodeAdded
        } else {
            SourcesImpact::None
        };
        let news = NodeNews {
            node: &node,
            reported_fw: reported_fw.as_deref(),
            offered_now: offered_now.as_deref(),
            live: via == Via::Mqtt,
            went_offline,
            observed_at,
        };
        for id in ids {
            self.node_news_for_job(id, &news, now);
        }
        // Every reaction follows the offer whenever it arrives: a live node
        // usually reports it after it is already known and online.
        if offered || came_online {
            self.maybe_auto(&k, now);
        }
        impact
    }

    /// What a node report means for one of its jobs.
    fn node_news_for_job(&mut self, id: i64, news: &NodeNews<'_>, now: Millis) {
        let NodeNews {
            node,
            reported_fw,
            offered_now,
            live,
            went_offline,
            observed_at,
        } = *news;
        let Some(rt) = self.jobs.get(&id) else {
            return;
        };
        let job = rt.job.clone();
        let (answered, deliveries) = (rt.answered, rt.deliveries);
        let k = (job.account.clone(), job.node_id.clone());
        // Restarting into the new firmware (or "success" claimed while the
        // node still said its old version): the version it comes back with
        // settles it.
        let settling = rt.success_claimed.or(match job.state {
            JobState::Verifying => rt.verify_since,
            _ => None,
        });
        let away = rt.away;
        if settling.is_some() && went_offline {
            if let Some(rt) = self.jobs.get_mut(&id) {
                rt.away = true;
            }
        }
        if let (Some(since), Some(fw)) = (settling, reported_fw) {
            if fw == job.to_version {
                self.set_state(
                    id,
                    JobState::Success,
                    Some("Running the new firmware".into()),
                    now,
                );
                return;
            }
            let back_on_old = away
                && observed_at > since
                && Some(fw) == job.from_version.as_deref()
                && node.is_online();
            if back_on_old && live {
                let reason = format!(
                    "the new firmware did not hold, so the device went back to its previous firmware {fw} after restarting"
                );
                self.set_state(
                    id,
                    JobState::RolledBack { reason },
                    Some("The device came back on its old firmware".into()),
                    now,
                );
                return;
            }
            if back_on_old {
                // The cloud's copy can show the node connected before its
                // new config arrived: give it the grace period to say which
                // version it runs before calling it a rollback.
                if let Some(rt) = self.jobs.get_mut(&id) {
                    rt.success_claimed.get_or_insert(now);
                }
            }
        }
        // Waiting for a device that never answered, which comes back on the
        // new version: it took the start after all (its reports were lost).
        if matches!(
            job.state,
            JobState::Queued {
                reason: QueueReason::NotTaken { .. }
            }
        ) && reported_fw == Some(job.to_version.as_str())
        {
            self.set_state(
                id,
                JobState::Success,
                Some("Running the new firmware".into()),
                now,
            );
            return;
        }
        // Sent, and the device has not answered: did it take it?
        if job.kind == UpdateKind::NodeSide && job.state == JobState::Sent && !answered {
            if went_offline {
                let waiting = JobState::Queued {
                    reason: QueueReason::NotTaken {
                        since: now,
                        offline: true,
                    },
                };
                let text = "The device went offline before it acted on the approval".to_string();
                self.set_state(id, waiting, Some(text), now);
                return;
            }
            let sent_at = job.sent_at.unwrap_or(job.created_at);
            if live
                && offered_now == Some(job.ota_job_id.as_str())
                && observed_at >= sent_at + REOFFER_GUARD_MS
            {
                // It asks again: the first `start` can no longer be acted on,
                // so this is the same approval delivered again, not a second one.
                if deliveries >= MAX_DELIVERIES {
                    let reason = format!(
                        "the device asked for approval again {deliveries} times without acting on it"
                    );
                    self.set_state(id, JobState::Failed { reason }, None, now);
                } else {
                    tracing::info!(node = %job.node_id, job = %job.ota_job_id, "the device asks again; delivering the same approval");
                    self.release(id, now);
                }
                return;
            }
        }
        let waiting_for_device = matches!(
            job.state,
            JobState::Queued {
                reason: QueueReason::WaitingForNode
                    | QueueReason::NotTaken { .. }
                    | QueueReason::Unreachable { .. },
            }
        );
        if waiting_for_device && node.is_online() {
            match job.kind {
                // The cloud delivers it: the node only has to be online.
                UpdateKind::CloudApproval => self.release(id, now),
                // The node's approval holds for one fetch: deliver it when
                // the node, online, offers this same job again.
                UpdateKind::NodeSide => match offered_now {
                    Some(j) if j == job.ota_job_id => self.release(id, now),
                    Some(_) => {
                        let version = self
                            .node_pending
                            .get(&k)
                            .map(|p| p.to_version.clone())
                            .unwrap_or_default();
                        let text = format!(
                            "The device now offers another update ({version}); this approval no longer applies and the new one waits for you"
                        );
                        self.set_state(id, JobState::Cancelled, Some(text), now);
                    }
                    None => {}
                },
            }
        }
    }
}
