//! The simulated RainMaker cloud: users, tokens, the user–node mapping, the
//! cloud's copy of every node's config/params/connectivity, and OTA jobs.
//!
//! It is an MQTT client of a broker, like the real cloud is of AWS IoT: it
//! listens to what nodes publish (both topic forms), and publishes
//! `params/remote` for accepted param writes and `otaurl` when a job is pushed
//! or approved. The REST layer (`rest.rs`) only reads and changes this state.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use rand::Rng;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::jwt::{self, TokenUse};
use super::scenario::JobSpec;
use super::wire::parse_node_topic;

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How an admin's OTA job reaches nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Nodes get the URL when they fetch (and when the job is created while
    /// they are online); nodes with node-side approval then ask their user.
    Plain,
    /// A "User Approval" job: nothing is sent until the user approves it with
    /// `POST user/nodes/ota_update`.
    UserApproval,
}

/// When a job may be downloaded: minutes after local midnight in the node's
/// time zone, as in the `otaurl` metadata. `start > end` crosses midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadWindow {
    /// First minute of the window (0..1440).
    pub start: u16,
    /// Last minute of the window (0..1440).
    pub end: u16,
}

impl DownloadWindow {
    /// Whether `minute` (after local midnight) is inside the window, with the
    /// firmware's arithmetic (both ends included).
    pub fn contains(&self, minute: u16) -> bool {
        let (start, end) = (u32::from(self.start), u32::from(self.end));
        let cur = u32::from(minute) % MINUTES_IN_DAY;
        if start <= end {
            (start..=end).contains(&cur)
        } else {
            cur >= start || cur <= end
        }
    }

    /// Minutes from `minute` until the window opens (0 when inside it).
    pub fn minutes_until_open(&self, minute: u16) -> u32 {
        if self.contains(minute) {
            return 0;
        }
        (u32::from(self.start) + MINUTES_IN_DAY - u32::from(minute) % MINUTES_IN_DAY)
            % MINUTES_IN_DAY
    }

    fn valid(&self) -> bool {
        u32::from(self.start) < MINUTES_IN_DAY && u32::from(self.end) < MINUTES_IN_DAY
    }
}

const MINUTES_IN_DAY: u32 = 24 * 60;

/// The cloud's record of one node's status for one job.
#[derive(Debug, Clone, Serialize)]
pub struct OtaStatus {
    /// `triggered`, `started`, `in-progress`, `delayed`, `success`, `failed`, `rejected`.
    pub status: String,
    /// Node- or cloud-provided text.
    pub additional_info: String,
    /// Milliseconds since the epoch.
    pub timestamp: u64,
    /// `NODE` or `CLOUD`.
    pub ts_source: &'static str,
}

/// An OTA job as the admin created it.
#[derive(Debug, Clone)]
pub struct Job {
    /// `ota_job_id`.
    pub id: String,
    /// Target firmware version.
    pub fw_version: String,
    /// Admin's release note.
    pub description: String,
    /// Delivery kind.
    pub kind: JobKind,
    /// The image bytes served by the firmware endpoint.
    pub image: Arc<Vec<u8>>,
    /// Hex MD5 of `image`.
    pub md5: String,
    /// Target nodes.
    pub nodes: BTreeSet<String>,
    /// Nodes for which the user approved a user-approval job.
    pub approved: BTreeSet<String>,
    /// Per-node status.
    pub status: HashMap<String, OtaStatus>,
    /// Creation time, ms.
    pub created: u64,
    /// Creation order: a newer job for a node supersedes an older one even
    /// when both were created within the same millisecond.
    pub seq: u64,
    /// Download window sent in the `otaurl` metadata, if any.
    pub download_window: Option<DownloadWindow>,
}

/// The cloud's copy of one node.
#[derive(Debug, Clone)]
pub struct NodeRecord {
    /// Owner's email.
    pub owner: String,
    /// Last config the node published (`{}` before the first).
    pub config: Value,
    /// Params as last reported.
    pub params: Value,
    /// Connectivity as the cloud sees it.
    pub connected: bool,
    /// When `connected` last changed, ms.
    pub conn_ts: u64,
}

/// A failure injected into the REST API, for tests of client resilience.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Fault {
    /// Only paths starting with this (after `/v1/`), e.g. `user/nodes/ota_status`; `None` = every call.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// HTTP status to answer with (429, 423, 500, 503...). 0 = no error (only the delay).
    #[serde(default)]
    pub status: u16,
    /// How many requests it applies to.
    pub count: u32,
    /// `Retry-After` header to send, seconds.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Delay before answering (a slow or hanging cloud), ms.
    #[serde(default)]
    pub delay_ms: u64,
}

#[derive(Debug)]
struct Session {
    email: String,
    exp: u64,
}

/// Mutable cloud state, behind one mutex (never held across an await).
#[derive(Debug, Default)]
pub struct CloudState {
    users: HashMap<String, (String, String)>, // email -> (password, user_id)
    access: HashMap<String, Session>,
    refresh: HashMap<String, String>,
    /// Every mapped node, by id.
    pub nodes: BTreeMap<String, NodeRecord>,
    /// Every job, by id.
    pub jobs: BTreeMap<String, Job>,
    faults: VecDeque<Fault>,
    /// Requests served per route (`GET user/nodes` ...), for economy measurements.
    pub requests: BTreeMap<String, u64>,
}

/// The cloud. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct Cloud {
    inner: Arc<CloudInner>,
}

struct CloudInner {
    state: Mutex<CloudState>,
    secret: [u8; 32],
    nonce: AtomicU64,
    job_seq: AtomicU64,
    token_ttl_s: AtomicU64,
    mqtt: Mutex<Option<AsyncClient>>,
    firmware_base: Mutex<String>,
    configs_seen: Notify,
    /// True once the broker acknowledged every subscription of the current
    /// connection: node publishes before that would be lost.
    subscribed: tokio::sync::watch::Sender<bool>,
}

/// Errors the cloud answers with; `rest.rs` turns them into HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub http: u16,
    /// RainMaker `error_code`.
    pub code: u64,
    /// Human text.
    pub description: String,
}

impl ApiError {
    /// Builds an error.
    pub fn new(http: u16, code: u64, description: impl Into<String>) -> Self {
        ApiError {
            http,
            code,
            description: description.into(),
        }
    }
}

use super::wire::codes;

impl Default for Cloud {
    fn default() -> Self {
        Self::new()
    }
}

impl Cloud {
    /// A cloud with no users, nodes or jobs.
    pub fn new() -> Self {
        let mut secret = [0u8; 32];
        rand::rng().fill(&mut secret);
        Cloud {
            inner: Arc::new(CloudInner {
                state: Mutex::new(CloudState::default()),
                secret,
                nonce: AtomicU64::new(1),
                job_seq: AtomicU64::new(1),
                token_ttl_s: AtomicU64::new(3600),
                mqtt: Mutex::new(None),
                firmware_base: Mutex::new(String::new()),
                configs_seen: Notify::new(),
                subscribed: tokio::sync::watch::channel(false).0,
            }),
        }
    }

    /// Locks the state. A poisoned lock only means a panic elsewhere in a test;
    /// the data is still consistent enough to serve.
    pub fn state(&self) -> MutexGuard<'_, CloudState> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the base URL (`http://127.0.0.1:PORT`) used in firmware URLs.
    pub fn set_firmware_base(&self, base: &str) {
        *self
            .inner
            .firmware_base
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = base.trim_end_matches('/').to_string();
    }

    /// Sets the lifetime of access tokens minted from now on (default 3600 s).
    pub fn set_token_ttl(&self, secs: u64) {
        self.inner.token_ttl_s.store(secs.max(1), Ordering::Relaxed);
    }

    /// Adds a user.
    pub fn add_user(&self, email: &str, password: &str) -> String {
        let user_id = format!("u{:x}", fxhash(email));
        self.state().users.insert(
            email.to_lowercase(),
            (password.to_string(), user_id.clone()),
        );
        user_id
    }

    /// Maps a node to its owner before it ever connects (as claiming does).
    pub fn map_node(&self, node_id: &str, owner: &str) {
        self.state()
            .nodes
            .entry(node_id.to_string())
            .or_insert_with(|| NodeRecord {
                owner: owner.to_lowercase(),
                config: json!({}),
                params: json!({}),
                connected: false,
                conn_ts: now_ms(),
            });
    }

    /// Queues a fault for the next matching REST calls.
    pub fn inject_fault(&self, fault: Fault) {
        self.state().faults.push_back(fault);
    }

    /// Takes one matching fault, if any.
    pub fn take_fault(&self, path: &str) -> Option<Fault> {
        let mut st = self.state();
        let idx = st
            .faults
            .iter()
            .position(|f| f.path_prefix.as_deref().is_none_or(|p| path.starts_with(p)))?;
        let f = st.faults.get_mut(idx)?;
        let out = f.clone();
        f.count = f.count.saturating_sub(1);
        if f.count == 0 {
            st.faults.remove(idx);
        }
        Some(out)
    }

    /// Counts one request for `route`.
    pub fn count_request(&self, route: &str) {
        *self.state().requests.entry(route.to_string()).or_default() += 1;
    }

    // ---- auth -------------------------------------------------------------

    fn mint_pair(
        &self,
        st: &mut CloudState,
        email: &str,
        user_id: &str,
        with_refresh: bool,
    ) -> Value {
        let now = now_ms() / 1000;
        let ttl = self.inner.token_ttl_s.load(Ordering::Relaxed);
        let n = self.inner.nonce.fetch_add(3, Ordering::Relaxed);
        let access = jwt::mint(
            &self.inner.secret,
            TokenUse::Access,
            email,
            user_id,
            now,
            now + ttl,
            n,
        );
        let id = jwt::mint(
            &self.inner.secret,
            TokenUse::Id,
            email,
            user_id,
            now,
            now + ttl,
            n + 1,
        );
        st.access.insert(
            access.clone(),
            Session {
                email: email.to_string(),
                exp: now + ttl,
            },
        );
        let mut body = json!({
            "status": "success",
            "description": "Login successful",
            "idtoken": id,
            "accesstoken": access,
        });
        if with_refresh {
            let refresh = jwt::mint(
                &self.inner.secret,
                TokenUse::Refresh,
                email,
                user_id,
                now,
                now + 30 * 86400,
                n + 2,
            );
            st.refresh.insert(refresh.clone(), email.to_string());
            body["refreshtoken"] = json!(refresh);
        }
        body
    }

    /// `login2` with a user name and password.
    pub fn login(&self, user: &str, password: &str) -> Result<Value, ApiError> {
        let mut st = self.state();
        let email = user.to_lowercase();
        match st.users.get(&email).cloned() {
            Some((pw, uid)) if pw == password => Ok(self.mint_pair(&mut st, &email, &uid, true)),
            _ => Err(ApiError::new(
                400,
                codes::BAD_CREDENTIALS,
                "Incorrect user name or password",
            )),
        }
    }

    /// `login2` with a refresh token.
    pub fn refresh(&self, refresh: &str) -> Result<Value, ApiError> {
        let mut st = self.state();
        let bad = || {
            ApiError::new(
                400,
                codes::BAD_REFRESH,
                "Failed to refresh token: invalid or expired refresh token",
            )
        };
        let email = st.refresh.get(refresh).cloned().ok_or_else(bad)?;
        let uid = st.users.get(&email).map(|u| u.1.clone()).ok_or_else(bad)?;
        Ok(self.mint_pair(&mut st, &email, &uid, false))
    }

    /// `logout2`: drops the refresh token (and the access token used).
    pub fn logout(&self, access: &str, refresh: Option<&str>) {
        let mut st = self.state();
        st.access.remove(access);
        if let Some(r) = refresh {
            st.refresh.remove(r);
        }
    }

    /// Every access and refresh token handed out so far: what a client must
    /// keep secret (the security tests look for them where they must not be).
    pub fn issued_tokens(&self) -> Vec<String> {
        let st = self.state();
        st.access.keys().chain(st.refresh.keys()).cloned().collect()
    }

    /// Checks an access token; returns the user's email.
    pub fn authorize(&self, token: Option<&str>) -> Result<String, ApiError> {
        let unauthorized =
            |why: &str| ApiError::new(401, codes::UNAUTHORIZED, format!("Unauthorized: {why}"));
        let token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthorized("missing Authorization header"))?;
        let st = self.state();
        let s = st
            .access
            .get(token)
            .ok_or_else(|| unauthorized("invalid access token"))?;
        if s.exp <= now_ms() / 1000 {
            return Err(unauthorized("the access token has expired"));
        }
        Ok(s.email.clone())
    }

    /// Checks that `node_id` is mapped to `email`.
    pub fn owned_node(&self, email: &str, node_id: &str) -> Result<NodeRecord, ApiError> {
        let st = self.state();
        match st.nodes.get(node_id) {
            Some(n) if n.owner == email => Ok(n.clone()),
            _ => Err(ApiError::new(
                400,
                codes::NO_NODE,
                format!("Node {node_id} does not exist"),
            )),
        }
    }

    // ---- jobs -------------------------------------------------------------

    /// Creates a job with a generated image of `image_size` bytes, pushes the
    /// URL to online targeted nodes when it is a plain job, and returns its id.
    pub fn create_job(
        &self,
        nodes: &[String],
        fw_version: &str,
        description: &str,
        kind: JobKind,
        image_size: usize,
    ) -> Result<String, ApiError> {
        self.create_job_from(&JobSpec {
            nodes: nodes.to_vec(),
            fw_version: fw_version.to_string(),
            description: description.to_string(),
            kind,
            image_size,
            download_window: None,
        })
    }

    /// Creates a job from a full [`JobSpec`] (with a download window, say).
    /// A new job for a node supersedes its older ones in what the node is
    /// offered next.
    pub fn create_job_from(&self, spec: &JobSpec) -> Result<String, ApiError> {
        let JobSpec {
            nodes,
            fw_version,
            description,
            kind,
            image_size,
            download_window,
        } = spec;
        let (kind, image_size, download_window) = (*kind, *image_size, *download_window);
        if download_window.is_some_and(|w| !w.valid()) {
            return Err(ApiError::new(
                400,
                codes::BAD_BODY,
                "download_window start and end are minutes after midnight (0..1439)",
            ));
        }
        let id = {
            let mut st = self.state();
            for n in nodes {
                if !st.nodes.contains_key(n) {
                    return Err(ApiError::new(
                        400,
                        codes::NO_NODE,
                        format!("Node {n} does not exist"),
                    ));
                }
            }
            // The same jobs, created in the same order, get the same ids: a
            // simulator restarted on the same scenario is the same cloud
            // after an outage (a real cloud keeps its jobs), so an approval
            // recorded while it was down still names a job it knows.
            let seed = format!("{}|{nodes:?}|{fw_version}|{description}", st.jobs.len());
            let digest = Md5::digest(seed.as_bytes());
            let mut n = [0u8; 8];
            n.copy_from_slice(&digest[..8]);
            let id = format!("{:016X}", u64::from_be_bytes(n) & 0x00FF_FFFF_FFFF_FFFF);
            let image = Arc::new(make_image(fw_version, image_size.clamp(1024, 64 << 20)));
            let md5 = hex(&Md5::digest(image.as_slice()));
            let now = now_ms();
            let status = nodes
                .iter()
                .map(|n| {
                    let s = OtaStatus {
                        status: "triggered".into(),
                        additional_info: "Job created".into(),
                        timestamp: now,
                        ts_source: "CLOUD",
                    };
                    (n.clone(), s)
                })
                .collect();
            st.jobs.insert(
                id.clone(),
                Job {
                    id: id.clone(),
                    fw_version: fw_version.to_string(),
                    description: description.to_string(),
                    kind,
                    image,
                    md5,
                    nodes: nodes.iter().cloned().collect(),
                    approved: BTreeSet::new(),
                    status,
                    created: now,
                    seq: self.inner.job_seq.fetch_add(1, Ordering::Relaxed),
                    download_window,
                },
            );
            id
        };
        if kind == JobKind::Plain {
            let online: Vec<String> = {
                let st = self.state();
                nodes
                    .iter()
                    .filter(|n| st.nodes.get(*n).is_some_and(|r| r.connected))
                    .cloned()
                    .collect()
            };
            for n in online {
                self.push_url(&id, &n);
            }
        }
        Ok(id)
    }

    /// `GET user/nodes/ota_update`: a pending user-approval job for the node.
    pub fn ota_update_check(&self, email: &str, node_id: &str) -> Result<Value, ApiError> {
        self.owned_node(email, node_id)?;
        let st = self.state();
        let node_fw = st
            .nodes
            .get(node_id)
            .and_then(|n| n.config["info"]["fw_version"].as_str().map(str::to_string));
        let job = st
            .jobs
            .values()
            .filter(|j| {
                j.kind == JobKind::UserApproval
                    && j.nodes.contains(node_id)
                    && !j.approved.contains(node_id)
            })
            .filter(|j| node_fw.as_deref() != Some(j.fw_version.as_str()))
            .filter(|j| j.status.get(node_id).is_none_or(|s| !closes_job(&s.status)))
            .max_by_key(|j| j.seq);
        Ok(match job {
            Some(j) => {
                let mut body = json!({
                    "status": "success",
                    "ota_available": true,
                    "description": j.description,
                    "fw_version": j.fw_version,
                    "ota_job_id": j.id,
                    "file_size": j.image.len(),
                    "file_md5": j.md5,
                    "url": self.firmware_url(&j.id),
                });
                if let Some(m) = metadata(j) {
                    body["metadata"] = m;
                }
                body
            }
            None => {
                json!({"status": "success", "ota_available": false, "description": "No update available"})
            }
        })
    }

    /// `POST user/nodes/ota_update`: the user approves a job for a node.
    pub fn ota_update_approve(
        &self,
        email: &str,
        node_id: &str,
        job_id: &str,
    ) -> Result<Value, ApiError> {
        let node = self.owned_node(email, node_id)?;
        {
            let mut st = self.state();
            let job = st
                .jobs
                .get_mut(job_id)
                .ok_or_else(|| ApiError::new(400, codes::INVALID_JOB, "Invalid OTA job"))?;
            if !job.nodes.contains(node_id) {
                return Err(ApiError::new(
                    400,
                    codes::JOB_NOT_FOR_NODE,
                    "OTA job is not associated with the node",
                ));
            }
            if !node.connected {
                return Err(ApiError::new(400, codes::NODE_OFFLINE, "Node is offline"));
            }
            job.approved.insert(node_id.to_string());
            job.status.insert(
                node_id.to_string(),
                OtaStatus {
                    status: "started".into(),
                    additional_info: "Approved by user".into(),
                    timestamp: now_ms(),
                    ts_source: "CLOUD",
                },
            );
        }
        self.push_url(job_id, node_id);
        Ok(json!({"status": "success", "description": "OTA update approved"}))
    }

    /// `GET user/nodes/ota_status`.
    pub fn ota_status(&self, email: &str, node_id: &str, job_id: &str) -> Result<Value, ApiError> {
        self.owned_node(email, node_id)?;
        let st = self.state();
        let s = st
            .jobs
            .get(job_id)
            .and_then(|j| j.status.get(node_id))
            .ok_or_else(|| ApiError::new(404, codes::STATUS_NOT_FOUND, "OTA status not found"))?;
        Ok(json!({
            "node_id": node_id,
            "status": s.status,
            "timestamp": s.timestamp,
            "additional_info": s.additional_info,
            "ts_source": s.ts_source,
        }))
    }

    /// The image of a job, for the firmware endpoint.
    pub fn image(&self, job_id: &str) -> Option<Arc<Vec<u8>>> {
        self.state().jobs.get(job_id).map(|j| j.image.clone())
    }

    fn firmware_url(&self, job_id: &str) -> String {
        let base = self
            .inner
            .firmware_base
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        format!("{base}/sim/firmware/{job_id}.bin")
    }

    fn otaurl_payload(&self, job_id: &str) -> Option<Value> {
        let st = self.state();
        let j = st.jobs.get(job_id)?;
        let mut body = json!({
            "ota_job_id": j.id,
            "url": self.firmware_url(&j.id),
            "fw_version": j.fw_version,
            "file_size": j.image.len(),
            "file_md5": j.md5,
        });
        if let Some(m) = metadata(j) {
            body["metadata"] = m;
        }
        Some(body)
    }

    fn push_url(&self, job_id: &str, node_id: &str) {
        if let Some(p) = self.otaurl_payload(job_id) {
            self.publish(format!("node/{node_id}/otaurl"), p.to_string());
        }
    }

    /// Publishes `params/remote` for an accepted param write.
    pub fn forward_params(&self, node_id: &str, payload: &Value) {
        self.publish(format!("node/{node_id}/params/remote"), payload.to_string());
    }

    fn publish(&self, topic: String, payload: String) {
        let client = self
            .inner
            .mqtt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match client {
            Some(c) => {
                if let Err(e) = c.try_publish(topic.clone(), QoS::AtLeastOnce, false, payload) {
                    tracing::warn!(%topic, error = %e, "cloud could not queue publish");
                }
            }
            None => tracing::warn!(%topic, "cloud has no MQTT connection; publish dropped"),
        }
    }

    // ---- the MQTT side ----------------------------------------------------

    /// Number of mapped nodes whose config the cloud has received.
    pub fn configs_received(&self) -> usize {
        self.state()
            .nodes
            .values()
            .filter(|n| n.config.get("node_id").is_some())
            .count()
    }

    /// Waits until the cloud's subscriptions are acknowledged by the broker
    /// (nodes started before that would publish their config into the void,
    /// and they publish it only once per connection). False on timeout.
    pub async fn wait_subscribed(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.subscribed.subscribe();
        let ok = matches!(
            tokio::time::timeout(timeout, rx.wait_for(|v| *v)).await,
            Ok(Ok(_))
        );
        ok
    }

    /// Waits until at least `n` configs have been received or `timeout` passes.
    pub async fn wait_configs(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.configs_seen.notified();
            if self.configs_received() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.configs_received() >= n;
            }
        }
    }

    /// Connects to the broker at `host:port` and serves node traffic until the
    /// task is dropped. Reconnects by itself (rumqttc retries on poll).
    /// `basic_ingest`: also subscribe to `$aws/rules/+/node/+/#` (brokers such
    /// as rumqttd refuse `$` filters and drop the connection).
    pub async fn run_mqtt(self, host: String, port: u16, basic_ingest: bool) {
        let mut opts = MqttOptions::new(
            format!("greenlight-sim-cloud-{:x}", rand::rng().random::<u32>()),
            host,
            port,
        );
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_max_packet_size(1 << 20, 1 << 20);
        opts.set_inflight(1000);
        let (client, mut eventloop) = AsyncClient::new(opts, 10_000);
        *self.inner.mqtt.lock().unwrap_or_else(|e| e.into_inner()) = Some(client.clone());
        let filters: &[&str] = if basic_ingest {
            &["node/+/#", "$aws/rules/+/node/+/#"]
        } else {
            &["node/+/#"]
        };
        let mut acked = 0usize;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    acked = 0;
                    self.inner.subscribed.send_replace(false);
                    for f in filters {
                        if let Err(e) = client.subscribe(*f, QoS::AtLeastOnce).await {
                            tracing::warn!(error = %e, "cloud subscribe failed");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    acked += 1;
                    if acked == filters.len() {
                        self.inner.subscribed.send_replace(true);
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    self.on_node_message(&p.topic, &p.payload)
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "cloud MQTT connection error; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Folds one node publish into the cloud's state.
    pub fn on_node_message(&self, topic: &str, payload: &[u8]) {
        let Some((node_id, suffix)) = parse_node_topic(topic) else {
            return;
        };
        if matches!(suffix, "params/remote" | "otaurl") {
            return; // our own publishes, echoed back by the wildcard subscription
        }
        let Ok(body) = serde_json::from_slice::<Value>(payload) else {
            tracing::warn!(%topic, "ignoring malformed JSON from node");
            return;
        };
        let now = now_ms();
        let mut reply: Option<String> = None;
        {
            let mut st = self.state();
            let Some(node) = st.nodes.get_mut(node_id) else {
                tracing::debug!(%node_id, "message from an unmapped node ignored");
                return;
            };
            match suffix {
                "config" => {
                    node.config = body;
                    set_connected(node, true, now);
                    self.inner.configs_seen.notify_waiters();
                }
                "params/local/init" => {
                    node.params = body;
                    set_connected(node, true, now);
                }
                "params/local" => {
                    if body.get("Connectivity").and_then(|c| c.get("Connected"))
                        == Some(&Value::Bool(false))
                    {
                        set_connected(node, false, now);
                    } else {
                        merge_params(&mut node.params, &body);
                        set_connected(node, true, now);
                    }
                }
                "otafetch" => {
                    set_connected(node, true, now);
                    let fw = body
                        .get("fw_version")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    if let (Some(fw), Some(obj)) = (
                        fw,
                        node.config.get_mut("info").and_then(Value::as_object_mut),
                    ) {
                        obj.insert("fw_version".into(), Value::String(fw));
                    }
                    reply = select_job_for_fetch(&st, node_id);
                }
                "otastatus" => {
                    let job_id = body
                        .get("ota_job_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    let status = body
                        .get("status")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown")
                        .to_string();
                    let info = body
                        .get("additional_info")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    let ts = body
                        .get("ts")
                        .and_then(Value::as_u64)
                        .map(|s| s * 1000)
                        .unwrap_or(now);
                    if let Some(job) = st.jobs.get_mut(&job_id) {
                        if job.nodes.contains(node_id) {
                            job.status.insert(
                                node_id.to_string(),
                                OtaStatus {
                                    status,
                                    additional_info: info,
                                    timestamp: ts,
                                    ts_source: "NODE",
                                },
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(job_id) = reply {
            self.push_url(&job_id, node_id);
        }
    }
}

fn set_connected(node: &mut NodeRecord, connected: bool, now: u64) {
    if node.connected != connected {
        node.connected = connected;
        node.conn_ts = now;
    }
}

/// The `metadata` object of a job's `otaurl` and `ota_update` answers.
fn metadata(j: &Job) -> Option<Value> {
    j.download_window
        .map(|w| json!({"download_window": {"start": w.start, "end": w.end}}))
}

/// Which job a fetching node gets: the newest plain job (or approved
/// user-approval job) for it that has not ended for it. A `failed` job is
/// offered again (the firmware fetches again after a final failure or a
/// rollback reported as `failed`); only `success` and `rejected` close it.
fn select_job_for_fetch(st: &CloudState, node_id: &str) -> Option<String> {
    st.jobs
        .values()
        .filter(|j| j.nodes.contains(node_id))
        .filter(|j| j.kind == JobKind::Plain || j.approved.contains(node_id))
        .filter(|j| j.status.get(node_id).is_none_or(|s| !closes_job(&s.status)))
        .max_by_key(|j| j.seq)
        .map(|j| j.id.clone())
}

/// The cloud closes a job for a node only on these: `failed` may be followed
/// by another attempt or fetch.
fn closes_job(status: &str) -> bool {
    matches!(status, "success" | "completed" | "rejected")
}

/// Merges a params report into the stored params, device by device.
pub fn merge_params(stored: &mut Value, report: &Value) {
    let Some(src) = report.as_object() else {
        return;
    };
    if !stored.is_object() {
        *stored = json!({});
    }
    let Some(dst) = stored.as_object_mut() else {
        return;
    };
    for (dev, vals) in src {
        match (dst.get_mut(dev), vals.as_object()) {
            (Some(Value::Object(existing)), Some(v)) => {
                for (k, val) in v {
                    existing.insert(k.clone(), val.clone());
                }
            }
            _ => {
                dst.insert(dev.clone(), vals.clone());
            }
        }
    }
}

/// Generates a firmware image: an ESP-IDF-like header with the version and
/// deterministic filler, so the same version always has the same MD5.
pub fn make_image(fw_version: &str, size: usize) -> Vec<u8> {
    let mut img = Vec::with_capacity(size);
    img.extend_from_slice(&[0xE9, 0x03, 0x02, 0x20]); // ESP image magic + segment count
    img.extend_from_slice(format!("\0GREENLIGHT-SIM\0version\0{fw_version}\0").as_bytes());
    let mut x: u32 = 0x9E37_79B9 ^ fxhash(fw_version) as u32;
    while img.len() < size {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        img.push((x & 0xFF) as u8);
    }
    img.truncate(size);
    img
}

/// The version written in the header of an image made by [`make_image`], as
/// the firmware reads it from the image header before writing the rest.
pub fn image_version(image: &[u8]) -> Option<String> {
    const MARK: &[u8] = b"\0GREENLIGHT-SIM\0version\0";
    let head = &image[..image.len().min(256)];
    let at = head.windows(MARK.len()).position(|w| w == MARK)? + MARK.len();
    let rest = &head[at..];
    let end = rest.iter().position(|b| *b == 0)?;
    String::from_utf8(rest[..end].to_vec()).ok()
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_other_params() {
        let mut p = json!({"Light": {"Power": true, "Brightness": 5}, "OTA": {"Info": "{}"}});
        merge_params(
            &mut p,
            &json!({"OTA": {"Info": {"job_id": "J", "fw_version": "2"}}}),
        );
        assert_eq!(p["Light"]["Brightness"], 5);
        assert_eq!(p["OTA"]["Info"]["job_id"], "J");
    }

    #[test]
    fn download_window_arithmetic_matches_the_firmware() {
        let day = DownloadWindow {
            start: 120,
            end: 240,
        };
        assert!(day.contains(120) && day.contains(180) && day.contains(240));
        assert!(!day.contains(600) && !day.contains(119));
        assert_eq!(day.minutes_until_open(600), 960);
        assert_eq!(day.minutes_until_open(60), 60);
        assert_eq!(day.minutes_until_open(150), 0);
        let night = DownloadWindow {
            start: 1380,
            end: 120,
        };
        assert!(night.contains(1400) && night.contains(30) && night.contains(120));
        assert!(!night.contains(600));
        assert_eq!(night.minutes_until_open(1080), 300);
        assert!(!DownloadWindow {
            start: 1440,
            end: 0
        }
        .valid());
    }

    #[test]
    fn image_is_deterministic_and_sized() {
        let a = make_image("1.2.3", 4096);
        assert_eq!(a.len(), 4096);
        assert_eq!(a, make_image("1.2.3", 4096));
        assert_ne!(a, make_image("1.2.4", 4096));
        assert_eq!(image_version(&a).as_deref(), Some("1.2.3"));
        assert_eq!(image_version(b"junk"), None);
    }

    #[test]
    fn login_and_authorize() {
        let c = Cloud::new();
        c.add_user("A@b.c", "pw");
        assert_eq!(
            c.login("a@b.c", "nope").unwrap_err().code,
            codes::BAD_CREDENTIALS
        );
        let body = c.login("a@b.c", "pw").unwrap();
        let tok = body["accesstoken"].as_str().unwrap();
        assert_eq!(c.authorize(Some(tok)).unwrap(), "a@b.c");
        assert_eq!(c.authorize(Some("junk")).unwrap_err().http, 401);
        let r = c.refresh(body["refreshtoken"].as_str().unwrap()).unwrap();
        assert!(r.get("refreshtoken").is_none());
        assert!(c.authorize(r["accesstoken"].as_str()).is_ok());
    }
}
