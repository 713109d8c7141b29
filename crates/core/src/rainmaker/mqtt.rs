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
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MqttLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Host, port and TLS from `mqtt://`, `tcp://`, `mqtts://`, `ssl://` URLs.
pub fn parse_url(url: &str) -> Result<(String, u16, bool)> {
    let (rest, tls) = if let Some(r) = url
        .strip_prefix("mqtts://")
        .or_else(|| url.strip_prefix("ssl://"))
    {
        (r, true)
    } else if let Some(r) = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
    {
        (r, false)
    } else {
        (url, false)
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') || h.starts_with('[') => (
            h,
            p.parse::<u16>()
                .map_err(|_| Error::Config(format!("bad port in broker URL {url}")))?,
        ),
        _ => (rest, if tls { 8883 } else { 1883 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(Error::Config(format!("broker URL needs a host: {url}")));
    }
    Ok((host.to_string(), port, tls))
}

fn tls_config(cfg: &MqttConfig) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, e: &dyn std::fmt::Display| Error::Config(format!("{what}: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca_file {
        Some(ca) => {
            for c in
                CertificateDer::pem_file_iter(ca).map_err(|e| bad(&format!("CA file {ca}"), &e))?
            {
                let c = c.map_err(|e| bad(&format!("CA file {ca}"), &e))?;
                roots
                    .add(c)
                    .map_err(|e| bad(&format!("CA file {ca}"), &e))?;
            }
        }
        None => {
            roots.add_parsable_certificates(
                webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned(),
            );
        }
    }
    let provider = crate::tls::provider();
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS", &e))?
        .with_root_certificates(roots);
    let c = match (&cfg.client_cert, &cfg.client_key) {
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .map_err(|e| bad(&format!("client certificate {cert}"), &e))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad(&format!("client certificate {cert}"), &e))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| bad(&format!("client key {key}"), &e))?;
            b.with_client_auth_cert(certs, key)
                .map_err(|e| bad("client certificate", &e))?
        }
        (None, None) => b.with_no_client_auth(),
        _ => {
            return Err(Error::Config(
                "a client certificate needs both client_cert and client_key".into(),
            ))
        }
    };
    Ok(Arc::new(c))
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
        let task = tokio::spawn(run(account, cfg.basic_ingest, opts, facts, conn.clone()));
        MqttLink { conn, task }
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
            match el.poll().await {
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
                Err(e) => break e,
            }
        };
        *lock(&shared) = None;
        // Dropping the waiters tells every publisher its command is unconfirmed.
        drop(acks);
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
        tokio::time::sleep(backoff.mul_f64(1.0 + jitter)).await;
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
