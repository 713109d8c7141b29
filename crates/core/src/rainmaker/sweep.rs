//! The REST sources of an account: the node sweep (one paged
//! `user/nodes?node_details=true` listing, never one call per node), the
//! cloud user-approval checks (one `ota_update` call per node, spread evenly
//! over a period, at once for a node the user is looking at) and the
//! `ota_status` poller for active jobs.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::mqtt::{read_ota_params, NodeOta};
use super::parse::{self, short_field};
use super::rest::RestClient;
use super::{Fact, InfoReport, NodeReport, Via};
use crate::error::Error;
use crate::event::AccountState;

/// A request for a sweep now; answered when its facts are applied.
pub type SweepRequest = oneshot::Sender<Result<(), String>>;

fn source_state(account: &str, e: &Error, done: Option<oneshot::Sender<()>>) -> Fact {
    let state = match e {
        Error::NeedsLogin { reason, .. } => AccountState::NeedsLogin {
            reason: reason.clone(),
        },
        other => AccountState::Reconnecting {
            reason: other.plain(),
        },
    };
    Fact::Source {
        account: account.to_string(),
        source: "rest",
        state,
        done,
    }
}

/// One `node_details` entry as a report.
pub fn report_from_detail(v: &Value) -> Option<NodeReport> {
    let id = short_field(v.get("id")).or_else(|| short_field(v.get("node_id")))?;
    parse::validate_node_id(&id).ok()?;
    let config = v.get("config").and_then(parse::parse_config);
    let ota = config.as_ref().and_then(NodeOta::of);
    let (info, ota_text) = match v.get("params") {
        Some(p) if p.is_object() => read_ota_params(p, ota.as_ref(), &id),
        _ => (InfoReport::Unknown, None),
    };
    Some(NodeReport {
        online: v
            .pointer("/status/connectivity/connected")
            .and_then(Value::as_bool),
        changed_at: v
            .pointer("/status/connectivity/timestamp")
            .and_then(Value::as_i64)
            .filter(|t| *t > 0),
        node_id: id,
        config,
        fw_version: None,
        info,
        ota_text,
    })
}

/// Sweeps at once, then every `interval` (which the engine shortens while a
/// job runs), and whenever asked.
pub fn spawn_sweeper(
    rest: RestClient,
    interval: watch::Receiver<Duration>,
    mut asks: mpsc::Receiver<SweepRequest>,
    facts: mpsc::Sender<Fact>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let account = rest.account().to_string();
        let mut first = true;
        loop {
            let mut waiters = vec![];
            if !first {
                let every = *interval.borrow();
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    a = asks.recv() => match a {
                        Some(w) => waiters.push(w),
                        None => return,
                    },
                }
            }
            first = false;
            while let Ok(w) = asks.try_recv() {
                waiters.push(w);
            }
            let observed_at = crate::model::now_ms();
            let result = match rest.list_all_nodes().await {
                Ok(details) => {
                    let nodes: Vec<NodeReport> =
                        details.iter().filter_map(report_from_detail).collect();
                    let (tx, rx) = oneshot::channel();
                    let f = Fact::Nodes {
                        account: account.clone(),
                        nodes,
                        complete: true,
                        observed_at,
                        via: Via::Rest,
                        done: Some(tx),
                    };
                    if facts.send(f).await.is_err() {
                        return;
                    }
                    let _ = rx.await;
                    let _ = facts
                        .send(Fact::Source {
                            account: account.clone(),
                            source: "rest",
                            state: AccountState::Connected,
                            done: None,
                        })
                        .await;
                    Ok(())
                }
                Err(e) => {
                    tracing::debug!(%account, error = %e, "node sweep failed");
                    // Applied before the waiters hear of the failure, so a
                    // view asking next sees what it changed.
                    let (tx, rx) = oneshot::channel();
                    if facts
                        .send(source_state(&account, &e, Some(tx)))
                        .await
                        .is_ok()
                    {
                        let _ = rx.await;
                    }
                    Err(e.plain())
                }
            };
            for w in waiters {
                let _ = w.send(result.clone());
            }
        }
    })
}

/// A request to check one node's cloud jobs now.
pub type CheckRequest = (String, Option<oneshot::Sender<()>>);

/// How many `ota_update` checks the first look runs at once: enough for
/// an inbox that is complete within seconds, few enough not to hammer the
/// cloud (each account has its own checker).
const FIRST_LOOK_CONCURRENCY: usize = 4;

/// How often the first look reports its progress, at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Checks every node the first time it is listed at once (a few at a time,
/// with progress facts, so the inbox is complete within seconds of adding
/// an account), then each node once per `period`, evenly spread, and any
/// node asked for at once. Nodes whose first check failed for a passing
/// reason are tried again after a growing pause. Without `look_first`,
/// only the spread checks and the asked-for ones run. `look_again` starts
/// a new first look at every node (after the OS suspended us, when offers
/// may have appeared unseen), whether or not `look_first` is set.
pub fn spawn_cloud_checker(
    rest: RestClient,
    mut nodes: watch::Receiver<Vec<String>>,
    period: Duration,
    look_first: bool,
    look_again: std::sync::Arc<tokio::sync::Notify>,
    mut asks: mpsc::Receiver<CheckRequest>,
    facts: mpsc::Sender<Fact>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let account = rest.account().to_string();
        let mut checked: HashSet<String> = HashSet::new();
        let mut retry_at: Option<Instant> = None;
        let mut pause = Duration::from_secs(2);
        let mut idx = 0usize;
        let mut next_at = Instant::now();
        // A look asked for by `look_again`, until every node has answered.
        let mut again = false;
        loop {
            let list = nodes.borrow_and_update().clone();
            let unchecked: Vec<String> = list
                .iter()
                .filter(|n| (look_first || again) && !checked.contains(*n))
                .cloned()
                .collect();
            if !unchecked.is_empty() && retry_at.is_none_or(|t| t <= Instant::now()) {
                let Some(all_ok) =
                    first_look(&rest, &account, unchecked, &mut checked, &facts).await
                else {
                    return;
                };
                if all_ok {
                    retry_at = None;
                    pause = Duration::from_secs(2);
                    again = false;
                } else {
                    retry_at = Some(Instant::now() + pause);
                    pause = (pause * 2).min(Duration::from_secs(120));
                }
                next_at = Instant::now();
                continue;
            }
            let gap = if list.is_empty() {
                period
            } else {
                (period / list.len() as u32).max(Duration::from_millis(100))
            };
            if next_at + gap < Instant::now() {
                next_at = Instant::now();
            }
            let wake_retry = async {
                match retry_at {
                    Some(t) if !unchecked.is_empty() => tokio::time::sleep_until(t).await,
                    _ => std::future::pending().await,
                }
            };
            let (node, done) = tokio::select! {
                _ = tokio::time::sleep_until(next_at + gap) => {
                    next_at += gap;
                    if list.is_empty() { continue; }
                    idx = (idx + 1) % list.len();
                    (list[idx].clone(), None)
                }
                _ = wake_retry => continue,
                _ = look_again.notified() => {
                    checked.clear();
                    retry_at = None;
                    again = true;
                    continue;
                }
                a = asks.recv() => match a {
                    Some(a) => a,
                    None => return,
                },
                r = nodes.changed() => {
                    if r.is_err() { return; }
                    continue;
                }
            };
            let r = rest.ota_update_check(&node).await;
            if report_check(&facts, &account, node, r, done)
                .await
                .is_none()
            {
                return;
            }
        }
    })
}

/// Tells the engine what one `ota_update` check found (or that the login
/// is needed). `None` when the engine is gone; otherwise `Some(Ok)` when
/// the cloud answered, `Some(Err(e))` with the error when it did not.
async fn report_check(
    facts: &mpsc::Sender<Fact>,
    account: &str,
    node: String,
    r: Result<Option<super::rest::CloudOffer>, Error>,
    done: Option<oneshot::Sender<()>>,
) -> Option<Result<(), Error>> {
    match r {
        Ok(offer) => {
            let f = Fact::CloudOffer {
                account: account.to_string(),
                node_id: node,
                offer,
                done,
            };
            facts.send(f).await.ok()?;
            Some(Ok(()))
        }
        Err(e) => {
            tracing::debug!(%account, %node, error = %e, "ota_update check failed");
            if matches!(e, Error::NeedsLogin { .. }) {
                facts.send(source_state(account, &e, None)).await.ok()?;
            }
            Some(Err(e))
        }
    }
}

/// Checks each of `list` once, a few at a time, reporting progress. A node
/// is marked checked unless its check failed for a passing reason. `None`
/// when the engine is gone; otherwise whether every check got an answer.
async fn first_look(
    rest: &RestClient,
    account: &str,
    list: Vec<String>,
    checked: &mut HashSet<String>,
    facts: &mpsc::Sender<Fact>,
) -> Option<bool> {
    let total = u32::try_from(list.len()).unwrap_or(u32::MAX);
    let progress = |done: u32| Fact::CheckProgress {
        account: account.to_string(),
        checking: (done < total).then_some(crate::event::Checking { done, total }),
    };
    facts.send(progress(0)).await.ok()?;
    let mut all_ok = true;
    let mut done = 0u32;
    let mut told = Instant::now();
    let mut todo = list.into_iter();
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < FIRST_LOOK_CONCURRENCY {
            let Some(node) = todo.next() else { break };
            let rest = rest.clone();
            running.spawn(async move {
                let r = rest.ota_update_check(&node).await;
                (node, r)
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        done += 1;
        let Ok((node, r)) = joined else {
            all_ok = false;
            continue;
        };
        match report_check(facts, account, node.clone(), r, None).await? {
            Err(e) if e.is_transient() => all_ok = false,
            _ => {
                checked.insert(node);
            }
        }
        if done < total && told.elapsed() >= PROGRESS_EVERY {
            told = Instant::now();
            facts.send(progress(done)).await.ok()?;
        }
    }
    facts.send(progress(total)).await.ok()?;
    Some(all_ok)
}

/// A job the poller follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollTarget {
    /// Node.
    pub node_id: String,
    /// `ota_job_id`.
    pub job_id: String,
    /// Time between polls.
    pub every: Duration,
}

/// Polls `ota_status` for each target at its own pace.
pub fn spawn_poller(
    rest: RestClient,
    mut targets: watch::Receiver<Vec<PollTarget>>,
    facts: mpsc::Sender<Fact>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let account = rest.account().to_string();
        let mut last: HashMap<(String, String), Instant> = HashMap::new();
        loop {
            let list = targets.borrow_and_update().clone();
            last.retain(|k, _| list.iter().any(|t| t.node_id == k.0 && t.job_id == k.1));
            for t in &list {
                let key = (t.node_id.clone(), t.job_id.clone());
                if last.get(&key).is_some_and(|l| l.elapsed() < t.every) {
                    continue;
                }
                last.insert(key, Instant::now());
                tracing::trace!(node = %t.node_id, "polling ota_status");
                match rest.ota_status(&t.node_id, &t.job_id).await {
                    Ok(r) => {
                        let f = Fact::OtaStatus {
                            account: account.clone(),
                            node_id: t.node_id.clone(),
                            job_id: t.job_id.clone(),
                            status: r.status,
                            text: r.text,
                            ts: r.timestamp,
                            via: Via::Rest,
                        };
                        if facts.send(f).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(%account, node = %t.node_id, error = %e, "ota_status failed");
                        if matches!(e, Error::NeedsLogin { .. }) {
                            let _ = facts.send(source_state(&account, &e, None)).await;
                        }
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                r = targets.changed() => if r.is_err() { return; },
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn details_become_reports() {
        let d = json!({
            "id": "N1", "node_id": "N1",
            "status": {"connectivity": {"connected": true, "timestamp": 1}},
            "config": {"info": {"name": "Lamp", "fw_version": "1.0"}, "services": [
                {"name": "OTA", "type": "esp.service.ota", "params": [
                    {"name": "Info", "type": "esp.param.ota_info"},
                    {"name": "Operation", "type": "esp.param.ota_operation"}]}]},
            "params": {"OTA": {"Info": "{}"}}
        });
        let r = report_from_detail(&d).unwrap();
        assert_eq!(r.online, Some(true));
        assert_eq!(r.info, InfoReport::Empty);
        assert_eq!(r.config.unwrap().fw_version.as_deref(), Some("1.0"));
        assert!(report_from_detail(&json!({"id": "bad/id"})).is_none());
        assert!(report_from_detail(&json!({})).is_none());
    }
}
