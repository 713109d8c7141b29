//! Whether each device is online, and how the engine knows: live over
//! MQTT, from the cloud's device list at a given time, or not at all since
//! the sources that would say went quiet. The views show exactly this —
//! never "online" for a device nobody can currently vouch for.
//!
//! The rules:
//! - A node's state is *live* while the account's MQTT link is up (every
//!   change is pushed), *swept* when it comes from a REST listing with no
//!   live link, and *unknown* from the moment no source can say (MQTT down
//!   or absent and the last sweep failed, or nothing answered yet).
//! - When the state becomes unknown, a node that was online is remembered
//!   as last seen at the last moment it was known online.
//! - After a restart, each node shows what was last heard of it
//!   (*remembered*, with when), vouched for by nobody: it is not "online"
//!   for any decision until a source reports. When a source is tried and
//!   fails and none can say, it becomes *unknown* like the rest.
//! - Knowledge comes back only with a report (a sweep, an MQTT message):
//!   a live link lost or back again asks for a sweep at once when the account
//!   has REST.

use super::{Core, Effect};
use crate::event::{Checking, Event, Freshness};
use crate::model::{JobState, Known, Millis, Node, QueueReason, UpdateKind};

/// The links of one account, as far as node presence is concerned.
#[derive(Debug, Clone, Default)]
pub(crate) struct Link {
    pub has_rest: bool,
    /// The MQTT link was up at some point: coming up again is a reconnect.
    pub mqtt_was_up: bool,
    /// The last sweep succeeded.
    pub rest_up: bool,
    /// `fresh.live` is whether the MQTT link is up now.
    pub fresh: Freshness,
}

impl Link {
    fn knowable(&self) -> bool {
        self.fresh.live || (self.rest_up && self.fresh.last_sweep.is_some())
    }
}

/// A saved node's `last_seen` is rewritten at most this often while the
/// node stays online (a restart then shows a time at most this old).
const SEEN_SAVE_EVERY: Millis = 5 * 60_000;

/// The part of a node the views care about: two records equal under this
/// differ only in timestamps that move with every report.
pub(crate) fn shape(n: &Node) -> Node {
    let mut a = n.clone();
    if a.is_online() {
        a.last_seen = None;
    }
    if let Known::Swept { .. } = a.known {
        a.known = Known::Swept { at: 0 };
    }
    a
}

/// Whether a changed node record is worth writing (its shape changed, or
/// its online `last_seen` moved far enough).
pub(crate) fn worth_saving(old: &Node, new: &Node) -> bool {
    shape(old) != shape(new)
        || match (old.last_seen, new.last_seen) {
            (Some(a), Some(b)) => b - a >= SEEN_SAVE_EVERY,
            (a, b) => a != b,
        }
}

/// How a node read back from the store is shown until a source reports:
/// its state as last heard, and when (`saved_at` is when its record was
/// written; the state was true then).
pub(crate) fn remembered(n: &Node, saved_at: Millis, now: Millis) -> Known {
    let Some(online) = n.online else {
        return match n.known {
            r @ Known::Remembered { .. } => r,
            _ => Known::Unknown { since: now },
        };
    };
    let at = match n.known {
        Known::Live => saved_at,
        Known::Swept { at } => at.max(saved_at),
        Known::Remembered { at, .. } => at,
        Known::Unknown { .. } => 0,
    };
    let at = if online {
        at.max(n.last_seen.unwrap_or(0))
    } else {
        at
    };
    if at > 0 {
        Known::Remembered { online, at }
    } else {
        Known::Unknown { since: now }
    }
}

impl Core {
    /// An account's links start: nothing is known until a source answers.
    pub(crate) fn link_start(&mut self, account: &str, has_rest: bool, now: Millis) {
        let link = Link {
            has_rest,
            fresh: Freshness {
                unknown_since: Some(now),
                ..Freshness::default()
            },
            ..Link::default()
        };
        self.links.insert(account.to_string(), link);
        self.emit_freshness(account);
    }

    /// The freshness of an account's device states now.
    pub(crate) fn freshness(&self, account: &str) -> Freshness {
        self.links
            .get(account)
            .map(|l| l.fresh.clone())
            .unwrap_or_default()
    }

    fn emit_freshness(&mut self, account: &str) {
        let freshness = self.freshness(account);
        self.emit(Event::AccountFreshness {
            account: account.to_string(),
            freshness,
        });
    }

    /// A source of an account went up or down.
    pub(crate) fn link_source(&mut self, account: &str, source: &str, up: bool, now: Millis) {
        let Some(l) = self.links.get_mut(account) else {
            return;
        };
        let before = (l.fresh.live, l.rest_up);
        match source {
            "mqtt" => l.fresh.live = up,
            "rest" => l.rest_up = up,
            _ => return,
        }
        if before == (l.fresh.live, l.rest_up) {
            return;
        }
        let has_rest = l.has_rest;
        // The first connect needs no sweep of its own: the sweeper lists the
        // account when it starts.
        let mqtt_came_back = !before.0 && l.fresh.live && l.mqtt_was_up;
        let mqtt_went_down = before.0 && !l.fresh.live;
        l.mqtt_was_up |= l.fresh.live;
        if mqtt_went_down {
            // What was live was true until now; from here on it ages.
            let keys = self.account_keys(account);
            for k in keys {
                if let Some(n) = self.nodes.get_mut(&k) {
                    if n.known == Known::Live {
                        n.known = Known::Swept { at: now };
                        let n = n.clone();
                        self.emit(Event::NodeUpdated { node: n });
                    }
                }
            }
        }
        // Either way, the cloud's list says at once what is true now: what
        // the live link missed while it was down, or what it no longer tells.
        if (mqtt_came_back || mqtt_went_down) && has_rest {
            self.push(Effect::Sweep(account.to_string()));
        }
        self.relink(account, now);
        self.emit_freshness(account);
        if up {
            self.release_unreachable(account, now);
        }
    }

    /// A sweep of the account's whole node list succeeded at `at`.
    pub(crate) fn link_swept(&mut self, account: &str, at: Millis, now: Millis) {
        let Some(l) = self.links.get_mut(account) else {
            return;
        };
        l.rest_up = true;
        l.fresh.last_sweep = Some(at.max(l.fresh.last_sweep.unwrap_or(0)));
        self.relink(account, now);
        self.emit_freshness(account);
        self.release_unreachable(account, now);
    }

    /// The first look at every node's cloud offers progressed.
    pub(crate) fn link_checking(&mut self, account: &str, checking: Option<Checking>) {
        let Some(l) = self.links.get_mut(account) else {
            return;
        };
        if l.fresh.checking == checking {
            return;
        }
        l.fresh.checking = checking;
        self.emit_freshness(account);
    }

    /// Approvals that could not be sent because nothing was reachable go
    /// out once the device is known online again (a node-side one only
    /// while the device still offers that job: its approval is for one
    /// offer).
    fn release_unreachable(&mut self, account: &str, now: Millis) {
        let ids: Vec<i64> = self
            .jobs
            .iter()
            .filter(|(_, r)| {
                let j = &r.job;
                let k = (j.account.clone(), j.node_id.clone());
                j.account == account
                    && matches!(
                        j.state,
                        JobState::Queued {
                            reason: QueueReason::Unreachable { .. }
                        }
                    )
                    && self.online(&k)
                    && (j.kind == UpdateKind::CloudApproval
                        || self
                            .node_pending
                            .get(&k)
                            .is_some_and(|p| p.job_id == j.ota_job_id))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.release(id, now);
        }
    }

    /// Marks the account's nodes unknown when no source can say any more.
    fn relink(&mut self, account: &str, now: Millis) {
        let Some(l) = self.links.get_mut(account) else {
            return;
        };
        if l.knowable() {
            l.fresh.unknown_since = None;
            return;
        }
        if l.fresh.unknown_since.is_some() {
            return;
        }
        l.fresh.unknown_since = Some(now);
        for k in self.account_keys(account) {
            let before = self.visible(&k, now);
            let Some(n) = self.nodes.get_mut(&k) else {
                continue;
            };
            if n.online.is_none() {
                continue;
            }
            if n.online == Some(true) {
                // The last moment it was known online.
                let last = match n.known {
                    Known::Swept { at } => at,
                    _ => now,
                };
                n.last_seen = Some(last.max(n.last_seen.unwrap_or(0)));
            }
            n.online = None;
            n.known = Known::Unknown { since: now };
            let n = n.clone();
            self.push(Effect::SaveNode(n.clone()));
            self.emit(Event::NodeUpdated { node: n });
            self.pending_diff(&k, before, now);
        }
    }

    /// A source of an account was tried and failed (not merely starting).
    /// When none can say, what was remembered from before the restart
    /// gives way to "unknown since" (with the last time seen online), which
    /// also says why.
    pub(crate) fn link_failed(&mut self, account: &str, now: Millis) {
        let Some(l) = self.links.get(account) else {
            return;
        };
        if l.knowable() {
            return;
        }
        let since = l.fresh.unknown_since.unwrap_or(now);
        tracing::debug!(%account, "a source failed and none can say: remembered states become unknown");
        self.forget_remembered(account, since, now);
    }

    fn forget_remembered(&mut self, account: &str, since: Millis, now: Millis) {
        for k in self.account_keys(account) {
            let before = self.visible(&k, now);
            let Some(n) = self.nodes.get_mut(&k) else {
                continue;
            };
            if !matches!(n.known, Known::Remembered { .. }) {
                continue;
            }
            n.known = Known::Unknown { since };
            let n = n.clone();
            self.emit(Event::NodeUpdated { node: n });
            self.pending_diff(&k, before, now);
        }
    }

    fn account_keys(&self, account: &str) -> Vec<super::Key> {
        self.nodes
            .keys()
            .filter(|k| k.0 == account)
            .cloned()
            .collect()
    }

    /// How a report of a node's connectivity is known.
    pub(crate) fn known_for(&self, account: &str, live: bool, observed_at: Millis) -> Known {
        let mqtt_up = self.links.get(account).is_some_and(|l| l.fresh.live);
        if live || mqtt_up {
            Known::Live
        } else {
            Known::Swept { at: observed_at }
        }
    }

    /// A node as the views should see it now: a swept state carries the
    /// time of the account's latest sweep (the stored record keeps the time
    /// its state last changed, so a sweep does not rewrite every node).
    pub(crate) fn node_now(&self, n: &Node) -> Node {
        let mut n = n.clone();
        if let Known::Swept { at } = n.known {
            if let Some(last) = self.links.get(&n.account).and_then(|l| l.fresh.last_sweep) {
                n.known = Known::Swept { at: at.max(last) };
            }
        }
        n
    }
}
