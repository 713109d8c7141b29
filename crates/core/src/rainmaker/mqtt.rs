//! The MQTT watcher: one connection per account to a broker the nodes
//! publish to. It subscribes to params, config and otastatus in the plain
//! and (optionally) the AWS basic-ingest form, turns each message into a
//! [`Fact`], publishes `{"OTA":{"Operation":...}}` commands to
//! `node/<id>/params/remote` and waits for the broker's PUBACK, and
//! reconnects with backoff, subscribing again each time.
//!
//! Brokers such as rumqttd drop a client that subscribes to a `$` filter;
//! a connection lost right after the basic-ingest subscription is taken as
//! such a refusal and the watcher continues with plain topics only (with a
//! warning), instead of looping.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use rumqttc::{
    AsyncClient, Event as MqEvent, MqttOptions, Outgoing, Packet, QoS, SubscribeFilter,
    SubscribeReasonCode, TlsConfiguration, Transport,
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::parse::{self, parse_topic, short_field, ConfigInfo, StockNames, Suffix};
use super::{Fact, InfoReport, NodeReport, Via};
use crate::error::{Error, Result};
use crate::event::AccountState;
use crate::model::{MqttConfig, OtaNames};

/// What the watcher remembers of a node's OTA service from its config, so
/// later params reports are read by the right layout (docs/rainmaker.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeOta {
    /// `Operation` + object `Info`: `Info` carries offers.
    Approval(OtaNames),
    /// Stock SDK strings: free text, never an offer.
    Stock(StockNames),
}

impl NodeOta {
    /// The layout a config declares, if any.
    pub fn of(cfg: &ConfigInfo) -> Option<NodeOta> {
        match (&cfg.ota, &cfg.stock) {
            (Some(n), _) => Some(NodeOta::Approval(n.clone())),
            (None, Some(s)) => Some(NodeOta::Stock(s.clone())),
            (None, None) => None,
        }
    }
}

/// Largest payload the watcher reads; bigger messages are dropped.
pub const MAX_PAYLOAD: usize = 64 * 1024;

type Waiter = oneshot::Sender<()>;

#[derive(Default)]
struct Acks {
    /// Publishes handed to the client, in order, not yet given a packet id.
    queued: VecDeque<Waiter>,
    by_pkid: HashMap<u16, Waiter>,
}

#[derive(Clone)]
struct Conn {
    client: AsyncClient,
    acks: Arc<Mutex<Acks>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running watcher: publishes commands; dropping it stops the watcher.
pub struct MqttLink {
    conn: Arc<Mutex<Option<Conn>>>,
    /// Wakes the watcher to drop its connection and dial again at once.
    reconnect: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MqttLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Host, port and TLS from `mqtt://`, `tcp://`, `mqtts://`, `ssl://` URLs
/// (`host[:port]` alone is plain MQTT). Read by the `url` crate, as
/// `setup::check_broker_url` reads an account's URL, so the watcher
/// connects to the host and port that were checked. MQTT has no paths, and
/// a user name or password belongs in its own field (and the keychain), not
/// in the URL: a URL with any of these is refused.
pub fn parse_url(url: &str) -> Result<(String, u16, bool)> {
    let bad = |why: String| Error::Config(format!("broker URL {url}: {why}"));
    let full = if url.contains("://") {
        url.to_string()
    } else {
        format!("mqtt://{url}")
    };
    let parsed = url::Url::parse(&full).map_err(|e| bad(e.to_string()))?;
    let tls = match parsed.scheme() {
        "mqtts" | "ssl" => true,
        "mqtt" | "tcp" => false,
        other => {
            return Err(bad(format!(
                "{other}:// is not MQTT; use mqtt:// or mqtts://"
            )))
        }
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Not repeated in the message: it may hold a password.
        return Err(Error::Config(
            "the broker URL holds a user name or password: give them in their own fields, not in the URL".into(),
        ));
    }
    if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() || parsed.fragment().is_some()
    {
        return Err(bad("MQTT has no paths: use mqtt://host:port".into()));
    }
    let host = parsed.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("it needs a host".into()));
    }
    let port = parsed.port().unwrap_or(if tls { 8883 } else { 1883 });
    Ok((host.to_string(), port, tls))
}

fn tls_config(cfg: &MqttConfig) -> Result<Arc<rustls::ClientConfig>> {
    let client_auth = match (&cfg.client_cert, &cfg.client_key) {
        (Some(cert), Some(key)) => Some((cert.as_str(), key.as_str())),
        (None, None) => None,
        _ => {
            return Err(Error::Config(
                "a client certificate needs both client_cert and client_key".into(),
            ))
        }
    };
    Ok(Arc::new(crate::tls::client_config(
        crate::tls::TrustSpec {
            ca_file: cfg.ca_file.as_deref(),
            pinned_sha256: None,
            client_auth,
        },
    )?))
}

/// Builds the MQTT options of an account (TLS, credentials, limits).
pub fn options(cfg: &MqttConfig, password: Option<String>) -> Result<MqttOptions> {
    let (host, port, tls) = parse_url(&cfg.url)?;
    let id = cfg
        .client_id
        .clone()
        .unwrap_or_else(|| format!("greenlight-{:08x}", rand::rng().random::<u32>()));
    let mut o = MqttOptions::new(id, host, port);
    o.set_keep_alive(Duration::from_secs(30));
    // Large enough that a hostile oversized message is read and dropped by
    // us instead of tearing the connection down for every node.
    o.set_max_packet_size(16 << 20, 256 * 1024);
    o.set_clean_session(true);
    if tls || cfg.ca_file.is_some() || cfg.client_cert.is_some() {
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls_config(cfg)?,
        )));
    }
    if let Some(u) = &cfg.username {
        // Accounts added before the check keep working, and are named.
        if password.as_ref().is_some_and(|p| !p.is_empty())
            && crate::setup::check_broker_password(&cfg.url, cfg.allow_plaintext_password).is_err()
        {
            tracing::warn!(url = %cfg.url, "the broker password is sent unencrypted (mqtt://): use mqtts://, or add the account again to confirm");
        }
        o.set_credentials(u.clone(), password.unwrap_or_default());
    }
    Ok(o)
}

impl MqttLink {
    /// Starts watching; facts go to `facts`.
    pub fn spawn(
        account: String,
        cfg: MqttConfig,
        opts: MqttOptions,
        facts: mpsc::Sender<Fact>,
    ) -> MqttLink {
        let conn: Arc<Mutex<Option<Conn>>> = Arc::new(Mutex::new(None));
        let reconnect = Arc::new(tokio::sync::Notify::new());
        let task = tokio::spawn(run(
            account,
            cfg.basic_ingest,
            opts,
            facts,
            conn.clone(),
            reconnect.clone(),
        ));
        MqttLink {
            conn,
            reconnect,
            task,
        }
    }

    /// Drops the connection and dials again now, without backoff. After the
    /// OS suspended us the socket is usually dead without either side
    /// knowing, and waiting for the keep-alive to notice would leave the
    /// account deaf for up to a minute (longer with a backoff in progress).
    pub fn reconnect(&self) {
        // A stored permit: a watcher busy elsewhere sees it at its next wait.
        self.reconnect.notify_one();
    }

    /// True while connected.
    pub fn connected(&self) -> bool {
        lock(&self.conn).is_some()
    }

    /// Publishes `payload` to `node/<id>/params/remote` with QoS 1 and waits
    /// for the broker's PUBACK. An error after the publish was handed over
    /// means it may or may not have reached the node.
    pub async fn publish_params(
        &self,
        node_id: &str,
        payload: &Value,
        wait: Duration,
    ) -> Result<()> {
        parse::validate_node_id(node_id)?;
        let conn = lock(&self.conn)
            .clone()
            .ok_or_else(|| Error::Mqtt("not connected to the broker".into()))?;
        let (tx, rx) = oneshot::channel();
        {
            // The waiter and the request enter their queues under one lock so
            // packet ids are matched to waiters in order.
            let mut acks = lock(&conn.acks);
            acks.queued.push_back(tx);
            if let Err(e) = conn.client.try_publish(
                format!("node/{node_id}/params/remote"),
                QoS::AtLeastOnce,
                false,
                payload.to_string(),
            ) {
                acks.queued.pop_back();
                return Err(Error::Mqtt(format!("publish not queued: {e}")));
            }
        }
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Error::Unconfirmed(
                "the broker connection dropped before it acknowledged the command".into(),
            )),
            Err(_) => Err(Error::Unconfirmed(format!(
                "the broker did not acknowledge the command within {wait:?}"
            ))),
        }
    }
}

async fn run(
    account: String,
    mut ingest: bool,
    opts: MqttOptions,
    facts: mpsc::Sender<Fact>,
    shared: Arc<Mutex<Option<Conn>>>,
    reconnect: Arc<tokio::sync::Notify>,
) {
    let mut names: HashMap<String, NodeOta> = HashMap::new();
    // Why basic-ingest topics are off, once the broker refused them.
    let mut refused: Option<String> = None;
    let mut backoff = Duration::from_millis(200);
    let state = |s: AccountState| Fact::Source {
        account: account.clone(),
        source: "mqtt",
        state: s,
        done: None,
    };
    loop {
        let (client, mut el) = AsyncClient::new(opts.clone(), 64);
        let mut net = rumqttc::NetworkOptions::new();
        net.set_connection_timeout(10);
        el.set_network_options(net);
        let acks = Arc::new(Mutex::new(Acks::default()));
        let mut subacks_seen = 0u32;
        let mut awaiting_ingest = false;
        let err = loop {
            let polled = tokio::select! {
                p = el.poll() => p,
                _ = reconnect.notified() => break None,
            };
            match polled {
                Ok(MqEvent::Incoming(Packet::ConnAck(_))) => {
                    backoff = Duration::from_millis(200);
                    let plain: Vec<SubscribeFilter> = parse::plain_filters()
                        .into_iter()
                        .map(|f| SubscribeFilter::new(f, QoS::AtLeastOnce))
                        .collect();
                    let _ = client.try_subscribe_many(plain);
                    if ingest {
                        let ing: Vec<SubscribeFilter> = parse::ingest_filters()
                            .into_iter()
                            .map(|f| SubscribeFilter::new(f, QoS::AtLeastOnce))
                            .collect();
                        let _ = client.try_subscribe_many(ing);
                        awaiting_ingest = true;
                    }
                    *lock(&shared) = Some(Conn {
                        client: client.clone(),
                        acks: acks.clone(),
                    });
                    let now = match &refused {
                        Some(r) => AccountState::Degraded { reason: r.clone() },
                        None => AccountState::Connected,
                    };
                    let _ = facts.send(state(now)).await;
                }
                Ok(MqEvent::Incoming(Packet::SubAck(ack))) => {
                    subacks_seen += 1;
                    let failed = ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, SubscribeReasonCode::Failure));
                    if awaiting_ingest && subacks_seen >= 2 {
                        awaiting_ingest = false;
                        if failed {
                            ingest = false;
                            tracing::warn!(%account, "broker refused the basic-ingest ($aws) subscriptions; plain topics only");
                            let reason = "the broker refused basic-ingest ($aws/rules/...) topics; nodes publishing only there are not seen".to_string();
                            refused = Some(reason.clone());
                            let _ = facts.send(state(AccountState::Degraded { reason })).await;
                        }
                    } else if failed {
                        tracing::warn!(%account, "broker refused a subscription");
                    }
                }
                Ok(MqEvent::Incoming(Packet::Publish(p))) => {
                    if let Some(f) = on_publish(&account, &p.topic, &p.payload, &mut names) {
                        if facts.send(f).await.is_err() {
                            return;
                        }
                    }
                }
                Ok(MqEvent::Outgoing(Outgoing::Publish(pkid))) if pkid != 0 => {
                    let mut a = lock(&acks);
                    if let Some(w) = a.queued.pop_front() {
                        a.by_pkid.insert(pkid, w);
                    }
                }
                Ok(MqEvent::Incoming(Packet::PubAck(pa))) => {
                    if let Some(w) = lock(&acks).by_pkid.remove(&pa.pkid) {
                        let _ = w.send(());
                    }
                }
                Ok(_) => {}
                Err(e) => break Some(e),
            }
        };
        *lock(&shared) = None;
        // Dropping the waiters tells every publisher its command is unconfirmed.
        drop(acks);
        let Some(err) = err else {
            // Asked to reconnect (after a suspend): straight back, and no
            // "reconnecting" state, since nothing is known to be wrong.
            tracing::debug!(%account, "reconnecting to the broker on request");
            backoff = Duration::from_millis(200);
            continue;
        };
        if awaiting_ingest {
            ingest = false;
            tracing::warn!(%account, error = %err, "broker dropped the connection after the basic-ingest ($aws) subscription; continuing with plain topics only");
            let reason = "the broker drops clients subscribing to basic-ingest ($aws/rules/...) topics; plain topics only".to_string();
            refused = Some(reason.clone());
            let _ = facts.send(state(AccountState::Degraded { reason })).await;
            // Straight back: this was not a network problem.
            continue;
        } else {
            tracing::debug!(%account, error = %err, "MQTT connection lost");
            let _ = facts
                .send(state(AccountState::Reconnecting {
                    reason: crate::words::broker_lost(&err),
                }))
                .await;
        }
        let jitter = rand::rng().random_range(0.0..0.3);
        tokio::select! {
            _ = tokio::time::sleep(backoff.mul_f64(1.0 + jitter)) => {}
            // Woken from a suspend in the middle of a backoff: try now.
            _ = reconnect.notified() => backoff = Duration::from_millis(200),
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Turns one message into a fact; `None` for anything unusable (logged).
pub fn on_publish(
    account: &str,
    topic: &str,
    payload: &[u8],
    names: &mut HashMap<String, NodeOta>,
) -> Option<Fact> {
    let Some((node_id, suffix)) = parse_topic(topic) else {
        tracing::debug!(topic = %parse::clean(topic, 120), "ignoring message on an unexpected topic");
        return None;
    };
    if payload.len() > MAX_PAYLOAD {
        tracing::warn!(
            node = node_id,
            bytes = payload.len(),
            "ignoring oversized message"
        );
        return None;
    }
    let body: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(_) => {
            tracing::warn!(node = node_id, "ignoring malformed JSON");
            return None;
        }
    };
    if !body.is_object() {
        tracing::warn!(
            node = node_id,
            "ignoring a message that is not a JSON object"
        );
        return None;
    }
    let node = |r: NodeReport| Fact::Nodes {
        account: account.to_string(),
        nodes: vec![r],
        complete: false,
        observed_at: crate::model::now_ms(),
        via: Via::Mqtt,
        done: None,
    };
    let mut report = NodeReport {
        node_id: node_id.to_string(),
        config: None,
        fw_version: None,
        online: Some(true),
        changed_at: None,
        info: InfoReport::Unknown,
        ota_text: None,
    };
    match suffix {
        Suffix::Config => {
            let cfg = parse::parse_config(&body)?;
            if let Some(o) = NodeOta::of(&cfg) {
                if names.len() < 100_000 || names.contains_key(node_id) {
                    names.insert(node_id.to_string(), o);
                }
            }
            report.config = Some(cfg);
            Some(node(report))
        }
        Suffix::Params | Suffix::ParamsInit => {
            if let Some(c) = parse::params_connectivity(&body) {
                report.online = Some(c);
                return Some(node(report));
            }
            let (info, text) = read_ota_params(&body, names.get(node_id), node_id);
            report.info = info;
            report.ota_text = text;
            Some(node(report))
        }
        Suffix::OtaUrl => {
            // The cloud's delivery of a job to the node: a watcher on the
            // same broker learns the job's download window from it. It says
            // nothing about the node being online (the cloud sent it).
            let job_id = short_field(body.get("ota_job_id"))?;
            let window = parse::download_window(body.get("metadata"))?;
            Some(Fact::JobWindow {
                account: account.to_string(),
                node_id: node_id.to_string(),
                job_id,
                window,
            })
        }
        Suffix::OtaFetch => {
            report.fw_version = short_field(body.get("fw_version"));
            Some(node(report))
        }
        Suffix::OtaStatus => {
            let job_id = short_field(body.get("ota_job_id"))?;
            let status = body
                .get("status")
                .and_then(Value::as_str)
                .map(|s| parse::clean(s, 40))?;
            let text = body
                .get("additional_info")
                .and_then(Value::as_str)
                .map(|s| parse::clean(s, parse::MAX_TEXT))
                .unwrap_or_default();
            let ts = body
                .get("ts")
                .and_then(Value::as_i64)
                .map(parse::epoch_ms)
                .unwrap_or(0);
            Some(Fact::OtaStatus {
                account: account.to_string(),
                node_id: node_id.to_string(),
                job_id,
                status,
                text,
                ts,
                via: Via::Mqtt,
            })
        }
    }
}

/// A params report read by the node's layout: the `Info` offer of a
/// user-approval node, or the last OTA text of a stock node (whose string
/// `Info` is never an offer). A node whose config was never seen is read as
/// the recipe layout with the usual names, since only that layout's `Info`
/// parses as an offer (free text does not).
pub fn read_ota_params(
    params: &Value,
    ota: Option<&NodeOta>,
    node_id: &str,
) -> (InfoReport, Option<String>) {
    match ota {
        Some(NodeOta::Stock(s)) => (InfoReport::Unknown, parse::stock_text(params, s)),
        Some(NodeOta::Approval(n)) => (info_from_params(params, n, node_id), None),
        None => (
            info_from_params(params, &OtaNames::default(), node_id),
            None,
        ),
    }
}

/// The `Info` param out of a params report (object or string form).
pub fn info_from_params(params: &Value, names: &OtaNames, node_id: &str) -> InfoReport {
    let Some(v) = params.get(&names.service).and_then(|s| s.get(&names.info)) else {
        return InfoReport::Unknown;
    };
    match parse::parse_info(v) {
        Ok(Some(i)) => InfoReport::Pending(i),
        Ok(None) => InfoReport::Empty,
        Err(e) => {
            tracing::warn!(node = node_id, error = %e, "ignoring unreadable OTA Info");
            InfoReport::Unknown
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("mqtt://127.0.0.1:1883").unwrap(),
            ("127.0.0.1".into(), 1883, false)
        );
        assert_eq!(
            parse_url("mqtts://h.example").unwrap(),
            ("h.example".into(), 8883, true)
        );
        assert_eq!(parse_url("tcp://h:1").unwrap(), ("h".into(), 1, false));
        assert!(parse_url("mqtt://h:notaport").is_err());
        assert!(parse_url("mqtt://:1").is_err());
    }

    /// Found by `fuzz/fuzz_targets/urls.rs` (crash input below, verbatim):
    /// setup accepted a broker URL with a path, and the watcher took
    /// `host/path` for the host name. Now both read it with the `url` crate
    /// and refuse a path, a query and credentials in the URL.
    #[test]
    fn fuzz_regression_a_path_is_never_part_of_the_broker_host() {
        let crash: &[u8] = b"mqtts://broker.e!x/otaurlample.com";
        let url = std::str::from_utf8(crash).unwrap();
        assert!(parse_url(url).is_err());
        assert!(crate::setup::check_broker_url(url).is_err());
        for bad in [
            "mqtt://h/x",
            "mqtt://h:1/x",
            "mqtt://h?x=1",
            "mqtt://user:pw@h:1883",
            "ws://h:80",
            "mqtt://",
        ] {
            assert!(parse_url(bad).is_err(), "{bad:?}");
        }
        for (url, host, port, tls) in [
            ("mqtt://[::1]", "::1", 1883, false),
            ("ssl://[::1]:8883", "::1", 8883, true),
            ("mqtts://h/", "h", 8883, true),
            ("MQTTS://h:1", "h", 1, true),
            ("h:1", "h", 1, false),
            (" mqtt://h:2 ", "h", 2, false),
        ] {
            assert_eq!(
                parse_url(url).unwrap(),
                (host.to_string(), port, tls),
                "{url:?}"
            );
        }
    }

    /// The refusal is shown to people and logged: it must say what is wrong
    /// without repeating the password it refuses.
    #[test]
    fn a_broker_url_with_credentials_is_refused_without_echoing_them() {
        for url in ["mqtt://user:s3cr3t-pw@h:1883", "mqtts://s3cr3t-pw@h"] {
            let msg = parse_url(url).unwrap_err().to_string();
            assert!(msg.contains("user name or password"), "{msg}");
            assert!(!msg.contains("s3cr3t-pw"), "{msg}");
        }
    }

    #[test]
    fn messages_become_facts_and_garbage_does_not() {
        let mut names = HashMap::new();
        let f = on_publish(
            "a",
            "$aws/rules/esp_set_params/node/N1/params/local",
            br#"{"OTA":{"Info":{"job_id":"J","fw_version":"2"}}}"#,
            &mut names,
        );
        match f {
            Some(Fact::Nodes { nodes, .. }) => {
                assert_eq!(
                    nodes[0].info,
                    InfoReport::Pending(parse::OtaInfo {
                        job_id: "J".into(),
                        fw_version: "2".into()
                    })
                )
            }
            other => panic!("{other:?}"),
        }
        let f = on_publish(
            "a",
            "node/N1/params/local",
            br#"{"Connectivity":{"Connected":false}}"#,
            &mut names,
        );
        assert!(matches!(f, Some(Fact::Nodes { ref nodes, .. }) if nodes[0].online == Some(false)));
        assert!(on_publish("a", "node/N1/params/local", b"\xff\xfe garbage", &mut names).is_none());
        assert!(on_publish("a", "node/N1/params/local", b"[1,2,3]", &mut names).is_none());
        let big = format!("{{\"x\":\"{}\"}}", "a".repeat(MAX_PAYLOAD));
        assert!(on_publish("a", "node/N1/params/local", big.as_bytes(), &mut names).is_none());
        assert!(on_publish("a", "node/N+1/config", b"{}", &mut names).is_none());
        assert!(on_publish(
            "a",
            "node/N1/otastatus",
            br#"{"status":"success"}"#,
            &mut names
        )
        .is_none());
        let f = on_publish(
            "a",
            "node/N1/otastatus",
            &serde_json::to_vec(&json!({"ota_job_id":"J","status":"in-progress","additional_info":"Downloaded 10% Firmware Image","ts":1700000000})).unwrap(),
            &mut names,
        );
        assert!(matches!(
            f,
            Some(Fact::OtaStatus {
                ts: 1_700_000_000_000,
                ..
            })
        ));
        // Unreadable Info: the node is seen, its pending state is not touched.
        let f = on_publish(
            "a",
            "node/N1/params/local",
            br#"{"OTA":{"Info":"garbage"}}"#,
            &mut names,
        );
        assert!(
            matches!(f, Some(Fact::Nodes { ref nodes, .. }) if nodes[0].info == InfoReport::Unknown)
        );
    }
}
