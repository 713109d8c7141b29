//! The cloud's HTTP face: RainMaker's `/v1` REST API exactly as the reference
//! documents it, the firmware download endpoint, and the simulator's own admin
//! API under `/sim/` (guarded by a separate admin token).
//!
//! Bodies are parsed as JSON whatever the `Content-Type` (some clients send
//! none), and `nodeid=` is accepted wherever `node_id=` is.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::cloud::{ApiError, Cloud, DownloadWindow, Fault, JobKind};
use super::node::Fleet;
use super::scenario::JobSpec;
use super::wire::{codes, failure, success};

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The cloud.
    pub cloud: Cloud,
    /// The simulated nodes (for the admin API).
    pub fleet: Fleet,
    /// Token guarding `/sim/`.
    pub admin_token: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(failure(self.code, &self.description))).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// Builds the router.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/login2", post(login2))
        .route("/logout2", post(logout2))
        .route("/user/nodes", get(list_nodes))
        .route("/user/nodes/params", get(get_params).put(put_params))
        .route("/user/nodes/config", get(get_config))
        .route("/user/nodes/status", get(get_status))
        .route(
            "/user/nodes/ota_update",
            get(get_ota_update).post(post_ota_update),
        )
        .route("/user/nodes/ota_status", get(get_ota_status))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            faults_and_counts,
        ));
    let admin = Router::new()
        .route("/nodes", get(sim_nodes))
        .route("/nodes/{id}/online", post(sim_set_online))
        .route("/nodes/{id}/ignore_next_start", post(sim_ignore_next_start))
        .route("/nodes/{id}/clock", post(sim_set_clock))
        .route("/jobs", get(sim_jobs).post(sim_create_job))
        .route("/faults", post(sim_fault))
        .route("/token_ttl", post(sim_token_ttl))
        .route("/stats", get(sim_stats))
        .layer(middleware::from_fn_with_state(state.clone(), admin_guard));
    Router::new()
        .route(
            "/apiversions",
            get(|| async { Json(json!({"supported_versions": ["v1"]})) }),
        )
        .nest("/v1", v1)
        .route("/sim/firmware/{file}", get(firmware))
        .nest("/sim", admin)
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(404, codes::BAD_QUERY, "No such API")
}

/// Counts every `/v1` call and applies injected faults before the handler runs.
async fn faults_and_counts(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let path = req
        .uri()
        .path()
        .trim_start_matches("/v1/")
        .trim_start_matches('/')
        .to_string();
    st.cloud
        .count_request(&format!("{} {}", req.method(), path));
    if let Some(f) = st.cloud.take_fault(&path) {
        if f.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(f.delay_ms)).await;
        }
        if f.status >= 400 {
            let (code, text) = match f.status {
                429 => (
                    codes::TOO_MANY_REQUESTS,
                    "Too many requests, try again later",
                ),
                423 => (codes::TOO_MUCH_TRAFFIC, "too much traffic, try again later"),
                _ => (codes::INTERNAL, "Internal server error"),
            };
            let status =
                StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = (status, Json(failure(code, text))).into_response();
            if let Some(s) = f.retry_after {
                resp.headers_mut()
                    .insert("retry-after", HeaderValue::from(s));
            }
            return resp;
        }
    }
    next.run(req).await
}

async fn admin_guard(
    State(st): State<AppState>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim_start_matches("Bearer ").trim());
    if given != Some(st.admin_token.as_str()) {
        return ApiError::new(
            401,
            codes::UNAUTHORIZED,
            "Unauthorized: /sim/ needs the simulator's admin token",
        )
        .into_response();
    }
    next.run(req).await
}

fn auth(st: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    st.cloud
        .authorize(headers.get("authorization").and_then(|v| v.to_str().ok()))
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(400, codes::BAD_BODY, format!("Invalid request body: {e}")))
}

fn node_id_of(q: &HashMap<String, String>) -> Result<String, ApiError> {
    q.get("node_id")
        .or_else(|| q.get("nodeid"))
        .filter(|s| !s.is_empty())
        .cloned()
        .ok_or_else(|| ApiError::new(400, codes::BAD_QUERY, "Missing query parameter node_id"))
}

fn flag(q: &HashMap<String, String>, name: &str, default: bool) -> bool {
    q.get(name)
        .map(|v| v.eq_ignore_ascii_case("true") || v == "1")
        .unwrap_or(default)
}

fn ok(v: Value) -> ApiResult {
    Ok(Json(v).into_response())
}

// ---- /v1 ----------------------------------------------------------------

async fn login2(State(st): State<AppState>, body: Bytes) -> ApiResult {
    let b = parse_body(&body)?;
    if let Some(r) = b.get("refreshtoken").and_then(Value::as_str) {
        return ok(st.cloud.refresh(r)?);
    }
    let user = b.get("user_name").and_then(Value::as_str);
    let pw = b.get("password").and_then(Value::as_str);
    match (user, pw) {
        (Some(u), Some(p)) => ok(st.cloud.login(u, p)?),
        _ => Err(ApiError::new(
            400,
            codes::BAD_BODY,
            "Invalid request body: user_name and password are required",
        )),
    }
}

async fn logout2(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    auth(&st, &headers)?;
    let b: Value = if body.is_empty() {
        json!({})
    } else {
        parse_body(&body)?
    };
    st.cloud
        .logout(&token, b.get("refreshtoken").and_then(Value::as_str));
    ok(success("Logged out successfully"))
}

/// Largest page `user/nodes` serves.
pub const MAX_NUM_RECORDS: usize = 100;
/// Page size when `num_records` is not given.
pub const DEFAULT_NUM_RECORDS: usize = 25;

async fn list_nodes(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let email = auth(&st, &headers)?;
    let num = match q.get("num_records") {
        None => DEFAULT_NUM_RECORDS,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_NUM_RECORDS).contains(n))
            .ok_or_else(|| {
                ApiError::new(
                    400,
                    codes::BAD_QUERY,
                    format!("num_records must be between 1 and {MAX_NUM_RECORDS}"),
                )
            })?,
    };
    let details = flag(&q, "node_details", false);
    let (want_status, want_config, want_params) = (
        flag(&q, "status", true),
        flag(&q, "config", true),
        flag(&q, "params", true),
    );
    let start = q.get("start_id").cloned().unwrap_or_default();
    let cs = st.cloud.state();
    let mine: Vec<(&String, &super::cloud::NodeRecord)> =
        cs.nodes.iter().filter(|(_, n)| n.owner == email).collect();
    let total = mine.len();
    let from = mine
        .iter()
        .position(|(id, _)| id.as_str() >= start.as_str())
        .unwrap_or(total);
    let page = &mine[from..(from + num).min(total)];
    let mut out = json!({
        "nodes": page.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        "total": total,
    });
    if let Some((next, _)) = mine.get(from + num) {
        out["next_id"] = json!(next);
    }
    if details {
        let d: Vec<Value> = page
            .iter()
            .map(|(id, n)| {
                let mut e = json!({"id": id, "node_id": id, "role": "primary", "primary": true, "tags": [], "metadata": {}});
                if want_status {
                    e["status"] = json!({"connectivity": {"connected": n.connected, "timestamp": n.conn_ts}});
                }
                if want_config {
                    e["config"] = n.config.clone();
                }
                if want_params {
                    e["params"] = n.params.clone();
                }
                e
            })
            .collect();
        out["node_details"] = json!(d);
    }
    ok(out)
}

async fn get_params(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let email = auth(&st, &headers)?;
    ok(st.cloud.owned_node(&email, &node_id_of(&q)?)?.params)
}

async fn put_params(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> ApiResult {
    let email = auth(&st, &headers)?;
    let b = parse_body(&body)?;
    if let Some(items) = b.as_array() {
        if items.is_empty() || items.len() > 25 {
            return Err(ApiError::new(
                400,
                codes::BAD_BODY,
                "Between 1 and 25 nodes can be set in one request",
            ));
        }
        let results: Vec<Value> = items
            .iter()
            .map(|item| {
                let id = item.get("node_id").and_then(Value::as_str).unwrap_or_default();
                let payload = item.get("payload").filter(|p| p.is_object());
                match (st.cloud.owned_node(&email, id), payload) {
                    (Ok(_), Some(p)) => {
                        st.cloud.forward_params(id, p);
                        json!({"node_id": id, "status": "success", "description": "Successfully set node params"})
                    }
                    (Ok(_), None) => json!({"node_id": id, "status": "failure", "error_code": codes::BAD_BODY, "description": "payload must be a JSON object"}),
                    (Err(e), _) => json!({"node_id": id, "status": "failure", "error_code": e.code, "description": e.description}),
                }
            })
            .collect();
        return Ok((StatusCode::MULTI_STATUS, Json(json!(results))).into_response());
    }
    let id = node_id_of(&q)?;
    st.cloud.owned_node(&email, &id)?;
    if !b.is_object() {
        return Err(ApiError::new(
            400,
            codes::BAD_BODY,
            "Invalid request body: params must be a JSON object",
        ));
    }
    st.cloud.forward_params(&id, &b);
    ok(success("Successfully set node params"))
}

async fn get_config(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let email = auth(&st, &headers)?;
    ok(st.cloud.owned_node(&email, &node_id_of(&q)?)?.config)
}

async fn get_status(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let email = auth(&st, &headers)?;
    let n = st.cloud.owned_node(&email, &node_id_of(&q)?)?;
    ok(json!({"connectivity": {"connected": n.connected, "timestamp": n.conn_ts}}))
}

async fn get_ota_update(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let email = auth(&st, &headers)?;
    ok(st.cloud.ota_update_check(&email, &node_id_of(&q)?)?)
}

async fn post_ota_update(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let email = auth(&st, &headers)?;
    let b = parse_body(&body)?;
    let (Some(job), Some(node)) = (
        b.get("ota_job_id").and_then(Value::as_str),
        b.get("node_id").and_then(Value::as_str),
    ) else {
        return Err(ApiError::new(
            400,
            codes::BAD_BODY,
            "Invalid request body: ota_job_id and node_id are required",
        ));
    };
    ok(st.cloud.ota_update_approve(&email, node, job)?)
}

async fn get_ota_status(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let email = auth(&st, &headers)?;
    let node = node_id_of(&q)?;
    let job = q
        .get("ota_job_id")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApiError::new(400, codes::BAD_QUERY, "Missing query parameter ota_job_id")
        })?;
    ok(st.cloud.ota_status(&email, &node, job)?)
}

// ---- firmware -------------------------------------------------------------

async fn firmware(State(st): State<AppState>, Path(file): Path<String>) -> Response {
    let id = file.trim_end_matches(".bin");
    match st.cloud.image(id) {
        Some(img) => (
            [("content-type", "application/octet-stream")],
            Body::from(img.as_slice().to_vec()),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such firmware image").into_response(),
    }
}

// ---- /sim admin -----------------------------------------------------------

async fn sim_nodes(State(st): State<AppState>) -> Json<Value> {
    Json(json!(st.fleet.stats()))
}

#[derive(Deserialize)]
struct OnlineReq {
    online: bool,
}

async fn sim_set_online(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let r: OnlineReq = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            400,
            codes::BAD_BODY,
            format!("expected {{\"online\": bool}}: {e}"),
        )
    })?;
    if st.fleet.set_online(&id, r.online) {
        ok(success("ok"))
    } else {
        Err(no_such_node(&id))
    }
}

fn no_such_node(id: &str) -> ApiError {
    ApiError::new(404, codes::NO_NODE, format!("no simulated node {id}"))
}

async fn sim_ignore_next_start(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult {
    if st.fleet.ignore_next_start(&id) {
        ok(success("the node will ignore its next Operation=start"))
    } else {
        Err(no_such_node(&id))
    }
}

#[derive(Deserialize)]
struct ClockReq {
    /// Minutes after local midnight; `null`: the host's clock (UTC).
    minutes: Option<u16>,
}

async fn sim_set_clock(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let r: ClockReq = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            400,
            codes::BAD_BODY,
            format!("expected {{\"minutes\": N or null}}: {e}"),
        )
    })?;
    if r.minutes.is_some_and(|m| m >= 1440) {
        return Err(ApiError::new(
            400,
            codes::BAD_BODY,
            "minutes must be below 1440",
        ));
    }
    if st.fleet.set_local_time(&id, r.minutes) {
        ok(success("ok"))
    } else {
        Err(no_such_node(&id))
    }
}

/// Body of `POST /sim/jobs`.
#[derive(Deserialize)]
pub struct CreateJob {
    /// Target node ids.
    pub nodes: Vec<String>,
    /// Target version.
    pub fw_version: String,
    /// Release note.
    #[serde(default)]
    pub description: String,
    /// `plain` (default) or `user_approval`.
    #[serde(default = "plain")]
    pub kind: JobKind,
    /// Image size in bytes (default 256 KiB).
    #[serde(default)]
    pub image_size: Option<usize>,
    /// `{"start","end"}` in minutes after the node's local midnight, sent in
    /// the `otaurl` metadata.
    #[serde(default)]
    pub download_window: Option<DownloadWindow>,
}

fn plain() -> JobKind {
    JobKind::Plain
}

async fn sim_create_job(State(st): State<AppState>, body: Bytes) -> ApiResult {
    let r: CreateJob = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(400, codes::BAD_BODY, format!("bad job: {e}")))?;
    let id = st.cloud.create_job_from(&JobSpec {
        nodes: r.nodes,
        fw_version: r.fw_version,
        description: r.description,
        kind: r.kind,
        image_size: r.image_size.unwrap_or(256 * 1024),
        download_window: r.download_window,
    })?;
    ok(json!({"status": "success", "ota_job_id": id}))
}

async fn sim_jobs(State(st): State<AppState>) -> Json<Value> {
    let cs = st.cloud.state();
    let jobs: Vec<Value> = cs
        .jobs
        .values()
        .map(|j| {
            json!({
                "ota_job_id": j.id, "fw_version": j.fw_version, "description": j.description, "kind": j.kind,
                "file_size": j.image.len(), "file_md5": j.md5, "nodes": j.nodes, "approved": j.approved,
                "download_window": j.download_window, "status": j.status,
            })
        })
        .collect();
    Json(json!(jobs))
}

async fn sim_fault(State(st): State<AppState>, body: Bytes) -> ApiResult {
    let f: Fault = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(400, codes::BAD_BODY, format!("bad fault: {e}")))?;
    st.cloud.inject_fault(f);
    ok(success("fault queued"))
}

async fn sim_token_ttl(State(st): State<AppState>, body: Bytes) -> ApiResult {
    let v = parse_body(&body)?;
    let secs = v
        .get("seconds")
        .and_then(Value::as_u64)
        .ok_or_else(|| ApiError::new(400, codes::BAD_BODY, "expected {\"seconds\": N}"))?;
    st.cloud.set_token_ttl(secs);
    ok(success("token lifetime set"))
}

async fn sim_stats(State(st): State<AppState>) -> Json<Value> {
    let requests = st.cloud.state().requests.clone();
    Json(json!({"requests": requests, "nodes": st.fleet.stats()}))
}
