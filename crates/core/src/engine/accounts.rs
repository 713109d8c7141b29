//! Accounts and their sources: starting an account's MQTT watcher and REST
//! sweeper, checker and poller, combining their connection states into one
//! account state, and telling the REST sources what to do as jobs come and
//! go. Reading the keychain and certificate files happens in a task of its
//! own (a hung keychain must not stall every other account); the actor
//! only plugs the prepared sources in.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::actor::{Actor, Internal};
use super::handle::Reply;
use crate::error::{Error, Result};
use crate::event::{AccountState, Event};
use crate::model::{secret_keys, AccountConfig};
use crate::rainmaker::mqtt::{self, MqttLink};
use crate::rainmaker::rest::RestClient;
use crate::rainmaker::sweep::{self, CheckRequest, PollTarget, SweepRequest};

/// A running account.
pub(crate) struct AccountRt {
    pub cfg: AccountConfig,
    /// Which preparation is current (an account replaced while its sources
    /// were being prepared ignores the old preparation).
    pub gen: u64,
    pub rest: Option<RestClient>,
    pub mqtt: Option<Arc<MqttLink>>,
    pub tasks: Vec<JoinHandle<()>>,
    pub sweep_ask: Option<mpsc::Sender<SweepRequest>>,
    pub check_ask: Option<mpsc::Sender<CheckRequest>>,
    /// Starts a new first look at every node's cloud offers.
    pub look_again: Option<Arc<tokio::sync::Notify>>,
    pub sweep_interval: Option<watch::Sender<Duration>>,
    pub check_nodes: Option<watch::Sender<Vec<String>>>,
    pub poll_targets: Option<watch::Sender<Vec<PollTarget>>>,
    pub sources: HashMap<&'static str, AccountState>,
    pub state: AccountState,
}

impl Drop for AccountRt {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What the preparation task hands back.
pub(crate) struct Prepared {
    rest: Option<RestClient>,
    mqtt: Option<rumqttc::MqttOptions>,
}

fn combine(sources: &HashMap<&'static str, AccountState>, expected: usize) -> AccountState {
    let mut degraded = None;
    let mut reconnecting = None;
    for s in sources.values() {
        match s {
            AccountState::NeedsLogin { .. } => return s.clone(),
            AccountState::Reconnecting { .. } => reconnecting = Some(s.clone()),
            AccountState::Degraded { .. } => degraded = Some(s.clone()),
            _ => {}
        }
    }
    if let Some(r) = reconnecting {
        return r;
    }
    if let Some(d) = degraded {
        return d;
    }
    if sources.len() >= expected {
        AccountState::Connected
    } else {
        AccountState::Connecting
    }
}

impl Actor {
    /// Registers an account and prepares its sources off the actor's task;
    /// `reply` is answered once they run (or could not be prepared).
    pub(crate) fn start_account(&mut self, cfg: AccountConfig, reply: Option<Reply<()>>) {
        if cfg.name.trim().is_empty() {
            if let Some(r) = reply {
                let _ = r.send(Err(Error::Config("an account needs a name".into())));
            }
            return;
        }
        if cfg.rest.is_none() && cfg.mqtt.is_none() {
            if let Some(r) = reply {
                let _ = r.send(Err(Error::Config(format!(
                    "account {} has neither REST nor MQTT",
                    cfg.name
                ))));
            }
            return;
        }
        self.gen += 1;
        let gen = self.gen;
        let name = cfg.name.clone();
        self.accounts.insert(
            name.clone(),
            AccountRt {
                cfg: cfg.clone(),
                gen,
                rest: None,
                mqtt: None,
                tasks: vec![],
                sweep_ask: None,
                check_ask: None,
                look_again: None,
                sweep_interval: None,
                check_nodes: None,
                poll_targets: None,
                sources: HashMap::new(),
                state: AccountState::Connecting,
            },
        );
        self.emit_now(Event::AccountState {
            account: name.clone(),
            state: AccountState::Connecting,
        });
        let secrets = self.cfg.secrets.clone();
        let retry = self.cfg.retry.clone();
        let internal = self.internal.clone();
        tokio::spawn(async move {
            let prep = tokio::task::spawn_blocking(move || -> Result<Prepared> {
                let mqtt = match &cfg.mqtt {
                    Some(m) => {
                        let password = match &m.username {
                            Some(_) => secrets.get(&cfg.name, secret_keys::MQTT_PASSWORD)?,
                            None => None,
                        };
                        Some(mqtt::options(m, password)?)
                    }
                    None => None,
                };
                let rest = match &cfg.rest {
                    Some(r) => Some(RestClient::new(&cfg.name, r, secrets, retry)?),
                    None => None,
                };
                Ok(Prepared { rest, mqtt })
            })
            .await
            .unwrap_or_else(|e| Err(Error::Config(format!("account set-up task: {e}"))));
            let _ = internal.send(Internal::Prepared {
                name,
                gen,
                prep: Box::new(prep),
                reply,
            });
        });
    }

    /// Plugs prepared sources into a registered account.
    pub(crate) fn on_prepared(
        &mut self,
        name: String,
        gen: u64,
        prep: Result<Prepared>,
        reply: Option<Reply<()>>,
    ) {
        let Some(rt) = self.accounts.get_mut(&name).filter(|rt| rt.gen == gen) else {
            if let Some(r) = reply {
                let _ = r.send(Err(Error::UnknownAccount(name)));
            }
            return;
        };
        let prep = match prep {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(account = %name, error = %e, "account did not start");
                if let Some(r) = reply {
                    let _ = r.send(Err(e));
                }
                return;
            }
        };
        if let (Some(opts), Some(m)) = (prep.mqtt, &rt.cfg.mqtt) {
            rt.mqtt = Some(Arc::new(MqttLink::spawn(
                name.clone(),
                m.clone(),
                opts,
                self.facts.clone(),
            )));
        }
        if let Some(rest) = prep.rest {
            let (sweep_interval, sweep_rx) = watch::channel(self.cfg.sweep_interval);
            let (check_nodes, check_rx) = watch::channel(Vec::new());
            let (poll_targets, poll_rx) = watch::channel(Vec::new());
            let (sweep_tx, sweep_asks) = mpsc::channel(16);
            let (check_tx, check_asks) = mpsc::channel(64);
            let look_again = Arc::new(tokio::sync::Notify::new());
            rt.tasks.push(sweep::spawn_sweeper(
                rest.clone(),
                sweep_rx,
                sweep_asks,
                self.facts.clone(),
            ));
            rt.tasks.push(sweep::spawn_cloud_checker(
                rest.clone(),
                check_rx,
                self.cfg.cloud_check_interval,
                self.cfg.first_look,
                look_again.clone(),
                check_asks,
                self.facts.clone(),
            ));
            rt.tasks.push(sweep::spawn_poller(
                rest.clone(),
                poll_rx,
                self.facts.clone(),
            ));
            rt.sweep_ask = Some(sweep_tx);
            rt.check_ask = Some(check_tx);
            rt.look_again = Some(look_again);
            rt.sweep_interval = Some(sweep_interval);
            rt.check_nodes = Some(check_nodes);
            rt.poll_targets = Some(poll_targets);
            rt.rest = Some(rest);
        }
        self.core.add_account(&name);
        let has_rest = self.accounts.get(&name).is_some_and(|rt| rt.rest.is_some());
        let now = self.clock.now();
        self.core.link_start(&name, has_rest, now);
        self.flush();
        self.update_account_sources(&name);
        if let Some(r) = reply {
            let _ = r.send(Ok(()));
        }
    }

    /// A source's connection state changed.
    pub(crate) fn set_source_state(
        &mut self,
        account: &str,
        source: &'static str,
        state: AccountState,
    ) {
        let Some(rt) = self.accounts.get_mut(account) else {
            return;
        };
        let up = matches!(
            state,
            AccountState::Connected | AccountState::Degraded { .. }
        );
        // Tried and failed, not merely starting.
        let failed = matches!(
            state,
            AccountState::Reconnecting { .. } | AccountState::NeedsLogin { .. }
        );
        rt.sources.insert(source, state);
        let expected = usize::from(rt.cfg.rest.is_some()) + usize::from(rt.cfg.mqtt.is_some());
        let combined = combine(&rt.sources, expected);
        if combined != rt.state {
            rt.state = combined.clone();
            self.emit_now(Event::AccountState {
                account: account.to_string(),
                state: combined,
            });
        }
        let now = self.clock.now();
        self.core.link_source(account, source, up, now);
        if failed {
            self.core.link_failed(account, now);
        }
        self.flush();
        // MQTT up or down changes how fast the poller needs to go.
        if source == "mqtt" {
            self.update_account_sources(account);
        }
    }

    /// Recomputes what the account's REST sources should do: the nodes to
    /// check, the jobs to poll and how often, the sweep pace.
    pub(crate) fn update_account_sources(&mut self, account: &str) {
        let Some(rt) = self.accounts.get(account) else {
            return;
        };
        let (Some(check_nodes), Some(poll_targets), Some(sweep_interval)) =
            (&rt.check_nodes, &rt.poll_targets, &rt.sweep_interval)
        else {
            return;
        };
        let mqtt_live = rt.mqtt.as_ref().is_some_and(|m| m.connected());
        let plan = self.core.source_plan(account, mqtt_live);
        let targets: Vec<PollTarget> = plan
            .polls
            .into_iter()
            .map(|(node_id, job_id, fast)| PollTarget {
                node_id,
                job_id,
                every: if fast {
                    self.cfg.status_poll_fast
                } else {
                    self.cfg.status_poll_slow
                },
            })
            .collect();
        let nodes = plan.nodes;
        check_nodes.send_if_modified(|v| {
            if *v != nodes {
                *v = nodes;
                true
            } else {
                false
            }
        });
        poll_targets.send_if_modified(|v| {
            if *v != targets {
                *v = targets;
                true
            } else {
                false
            }
        });
        let every = if plan.busy {
            self.cfg.sweep_interval_busy
        } else {
            self.cfg.sweep_interval
        };
        sweep_interval.send_if_modified(|v| {
            if *v != every {
                *v = every;
                true
            } else {
                false
            }
        });
    }

    /// Asks an account for a node sweep now, without waiting for it.
    pub(crate) fn ask_sweep(&self, account: &str) {
        if let Some(ask) = self.accounts.get(account).and_then(|a| a.sweep_ask.clone()) {
            let (tx, _rx) = oneshot::channel();
            let _ = ask.try_send(tx);
        }
    }

    /// After the OS suspended us: every MQTT link dials again now, every
    /// REST account sweeps its nodes and looks again at every node's cloud
    /// offers. What changed meanwhile reaches the views (and the notifier)
    /// as ordinary events. One receiver per sweep asked for.
    pub(crate) fn resumed(&self) -> Vec<oneshot::Receiver<std::result::Result<(), String>>> {
        let mut waits = vec![];
        for (name, rt) in &self.accounts {
            tracing::info!(account = %name, "catching up after a suspend");
            if let Some(m) = &rt.mqtt {
                m.reconnect();
            }
            if let Some(again) = &rt.look_again {
                again.notify_one();
            }
            if let Some(ask) = &rt.sweep_ask {
                let (tx, rx) = oneshot::channel();
                if ask.try_send(tx).is_ok() {
                    waits.push(rx);
                }
            }
        }
        waits
    }

    /// Stores a new password off the actor's task, then logs in again.
    pub(crate) fn login(&mut self, account: &str, password: &str, reply: Reply<()>) {
        let Some(rt) = self.accounts.get(account) else {
            let _ = reply.send(Err(Error::UnknownAccount(account.into())));
            return;
        };
        let rest = rt.rest.clone();
        let sweep = rt.sweep_ask.clone();
        let (s, a, p) = (
            self.cfg.secrets.clone(),
            account.to_string(),
            password.to_string(),
        );
        tokio::spawn(async move {
            let res = tokio::task::spawn_blocking(move || {
                s.delete(&a, secret_keys::REFRESH_TOKEN)?;
                s.set(&a, secret_keys::PASSWORD, &p)
            })
            .await
            .map_err(|e| Error::Config(format!("secret task: {e}")))
            .and_then(|r| r.map_err(Error::from));
            if res.is_ok() {
                if let Some(r) = rest {
                    r.reset_login().await;
                }
                if let Some(ask) = sweep {
                    let (tx, _rx) = oneshot::channel();
                    let _ = ask.try_send(tx);
                }
            }
            let _ = reply.send(res);
        });
    }

    /// Stops and forgets an account; its password and tokens leave the
    /// keychain with it (off the actor's task), then `reply` is answered.
    pub(crate) fn remove_account(&mut self, name: &str, reply: Reply<()>) {
        let existed = self.accounts.remove(name).is_some();
        let res = self.store.remove_account(name).and_then(|_| {
            if existed {
                Ok(())
            } else {
                Err(Error::UnknownAccount(name.to_string()))
            }
        });
        let now = self.clock.now();
        self.core.remove_account(name, now);
        self.flush();
        self.emit_now(Event::AccountState {
            account: name.to_string(),
            state: AccountState::Stopped,
        });
        if !existed {
            let _ = reply.send(res);
            return;
        }
        let secrets = self.cfg.secrets.clone();
        let account = name.to_string();
        tokio::spawn(async move {
            let _ = tokio::task::spawn_blocking(move || {
                for k in [
                    secret_keys::PASSWORD,
                    secret_keys::REFRESH_TOKEN,
                    secret_keys::MQTT_PASSWORD,
                ] {
                    if let Err(e) = secrets.delete(&account, k) {
                        tracing::warn!(%account, error = %e, "could not delete a secret");
                    }
                }
            })
            .await;
            let _ = reply.send(res);
        });
    }
}
