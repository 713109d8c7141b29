//! The admin HTTPS API (OTA start/stop with Basic auth, cookie login, users)
//! and the plain-HTTP static file server devices download firmware from.
//! Status codes, bodies and quirks follow the legacy Java server.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

use super::firmware::build_tag;
use super::server::{now_ms, Campaign, OtaCallKind, Server, APP_NAME};

const PLAIN: &str = "text/plain;charset=utf-8";
const JSON: &str = "application/json;charset=utf-8";
/// Bodies past the upload limit are still read (and dropped) up to this size,
/// so that the client sees the 413 instead of a reset connection.
const DRAIN_CAP: usize = 64 * 1024 * 1024;
/// Admin UI cookie lifetime: one month, as on the real server.
const COOKIE_MAX_AGE: u32 = 30 * 24 * 60 * 60;

/// The server's password hash: `Base64(SHA-256(utf8(password) ‖ SHA-256(lowercase(email))))`.
/// The admin UI sends this (not the password) to `/admin/login`.
pub fn hash_password(password: &str, email: &str) -> String {
    let salt = Sha256::digest(email.to_lowercase().as_bytes());
    let mut h = Sha256::new();
    h.update(password.as_bytes());
    h.update(salt);
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Routes of the admin port (HTTPS).
pub fn admin_router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/admin/ota/start", post(ota_start))
        .route("/admin/ota/stop", get(ota_stop))
        .route("/admin/login", post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/users", get(users))
        .route("/admin/users/{id}", get(user))
        .route("/static/ota/{file}", get(static_file))
        .fallback(not_found)
        .with_state(server)
}

/// Routes of the plain HTTP port: firmware downloads, no auth.
pub fn http_router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/static/ota/{file}", get(static_file))
        .fallback(not_found)
        .with_state(server)
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut r = (status, body.into()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    reply(status, PLAIN, msg.into())
}

fn empty(status: StatusCode) -> Response {
    (status, Body::empty()).into_response()
}

async fn not_found() -> Response {
    empty(StatusCode::NOT_FOUND)
}

/// Why Basic auth of `/admin/ota/*` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header: the real server then looks for another
    /// handler, finds none and answers 404.
    #[error("no Authorization header")]
    Missing,
    /// Anything that is not the super-admin's email and password: 403.
    #[error("Authentication failed.")]
    Failed,
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        match self {
            AuthError::Missing => empty(StatusCode::NOT_FOUND),
            AuthError::Failed => text(StatusCode::FORBIDDEN, self.to_string()),
        }
    }
}

/// Basic auth of `/admin/ota/*`: the super-admin's email and password.
/// Returns the admin's email.
fn basic_auth(server: &Server, headers: &HeaderMap) -> Result<String, AuthError> {
    let v = headers
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?;
    let v = v.to_str().map_err(|_| AuthError::Failed)?;
    let b64 = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))
        .ok_or(AuthError::Failed)?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| AuthError::Failed)?;
    let raw = String::from_utf8(raw).map_err(|_| AuthError::Failed)?;
    let (email, password) = raw.split_once(':').ok_or(AuthError::Failed)?;
    let st = server.lock();
    let ok = st.users.iter().any(|u| {
        u.is_super_admin
            && u.email == email
            && u.app_name == APP_NAME
            && u.pass == hash_password(password, email)
    });
    if ok {
        Ok(email.to_string())
    } else {
        Err(AuthError::Failed)
    }
}

async fn ota_start(
    State(server): State<Arc<Server>>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let auth = basic_auth(&server, &parts.headers);
    let body = match axum::body::to_bytes(body, DRAIN_CAP).await {
        Ok(b) => b,
        Err(_) => return too_large(server.upload_limit, None),
    };
    let initiator = match auth {
        Ok(e) => e,
        Err(e) => return e.into_response(),
    };
    let kind = match (q.get("token"), q.get("user")) {
        (Some(t), _) => OtaCallKind::Token(t.clone()),
        (None, Some(u)) => OtaCallKind::User {
            email: u.clone(),
            project: q.get("project").cloned(),
        },
        (None, None) => OtaCallKind::All,
    };
    let r = start_authenticated(&server, &q, &parts.headers, &body, initiator);
    server.record_ota_call(kind, r.status().as_u16());
    r
}

/// `/admin/ota/start` once the caller is known to be the super-admin.
fn start_authenticated(
    server: &Server,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
    initiator: String,
) -> Response {
    if body.len() > server.upload_limit {
        return too_large(server.upload_limit, Some(body.len()));
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some((filename, data)) = multipart_file(ct, body) else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Can't find binary data in request.",
        );
    };
    let build = build_tag(&data);
    // The real server stores the upload before looking at the query.
    let path = server.store_upload(data, &filename);
    let ok = || reply(StatusCode::OK, JSON, path.clone());
    if let Some(token) = q.get("token") {
        return match server.ota_to_token(token, &path, &initiator) {
            Ok(()) => {
                tracing::info!(token, %path, "OTA sent to one device");
                ok()
            }
            Err(e) => text(StatusCode::BAD_REQUEST, e.to_string()),
        };
    }
    let user = q.get("user");
    if let Some(email) = user {
        let known = server
            .lock()
            .users
            .iter()
            .any(|u| &u.email == email && u.app_name == APP_NAME);
        if !known {
            return text(StatusCode::BAD_REQUEST, "Requested user not found.");
        }
    }
    let Some(build) = build else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "No build tag in the firmware: a campaign (user or all devices) needs the Blynk \
             library's info string in the binary (\\0build\\0<__DATE__ __TIME__>\\0), as in a \
             sketch exported from the Arduino IDE.",
        );
    };
    let campaign = Campaign {
        initiated_by: initiator,
        initiated_at: now_ms(),
        path: path.clone(),
        build,
        project: None,
    };
    match user {
        Some(email) => {
            let project = q.get("project").cloned();
            tracing::info!(%email, ?project, build = %campaign.build, %path, "campaign for a user");
            server.campaign_for_user(email, project, campaign);
        }
        None => {
            tracing::info!(build = %campaign.build, %path, "campaign for all devices");
            server.campaign_for_all(campaign);
        }
    }
    ok()
}

fn too_large(limit: usize, got: Option<usize>) -> Response {
    let got = got
        .map(|n| format!("{n} bytes"))
        .unwrap_or_else(|| "too many bytes".into());
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("Request body of {got} is over the server's limit of {limit} bytes (web.request.max.size)."),
    )
}

async fn ota_stop(State(server): State<Arc<Server>>, headers: HeaderMap) -> Response {
    match basic_auth(&server, &headers) {
        Ok(by) => {
            server.stop_all();
            server.record_ota_call(OtaCallKind::Stop, StatusCode::OK.as_u16());
            tracing::info!(%by, "OTA stopped");
            empty(StatusCode::OK)
        }
        Err(e) => e.into_response(),
    }
}

/// The last part of a `multipart/form-data` body that carries a `filename`,
/// whatever its field name, as `(filename, bytes)`.
pub fn multipart_file(content_type: &str, body: &[u8]) -> Option<(String, Vec<u8>)> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let boundary = params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })?;
    if boundary.is_empty() {
        return None;
    }
    let delim = format!("--{boundary}").into_bytes();
    let mut close = b"\r\n".to_vec();
    close.extend_from_slice(&delim);
    let mut pos = find(body, &delim, 0)? + delim.len();
    let mut found = None;
    loop {
        if body[pos..].starts_with(b"--") {
            break;
        }
        pos += if body[pos..].starts_with(b"\r\n") {
            2
        } else {
            0
        };
        let head_end = find(body, b"\r\n\r\n", pos)?;
        let head = String::from_utf8_lossy(&body[pos..head_end]);
        let data_start = head_end + 4;
        let data_end = find(body, &close, data_start)?;
        if let Some(name) = disposition_filename(&head) {
            found = Some((name, body[data_start..data_end].to_vec()));
        }
        pos = data_end + close.len();
    }
    found
}

fn disposition_filename(head: &str) -> Option<String> {
    let line = head.lines().find(|l| {
        l.split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition"))
    })?;
    line.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("filename")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Admin UI login: form fields `email` and `password` (already hashed by the
/// UI, see [`hash_password`]). Always a 301 to `/admin`; only success sets the
/// `session` cookie.
async fn login(State(server): State<Arc<Server>>, body: axum::body::Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let mut r = empty(StatusCode::MOVED_PERMANENTLY);
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/admin"));
    let (Some(email), Some(pass)) = (form.get("email"), form.get("password")) else {
        return r;
    };
    let mut st = server.lock();
    let ok = st.users.iter().any(|u| {
        u.is_super_admin && &u.email == email && u.app_name == APP_NAME && &u.pass == pass
    });
    if ok {
        let sid = Alphanumeric.sample_string(&mut rand::rng(), 32);
        st.cookies.insert(sid.clone());
        if let Ok(v) = HeaderValue::from_str(&format!("session={sid}; Max-Age={COOKIE_MAX_AGE}")) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    r
}

async fn logout(State(server): State<Arc<Server>>, headers: HeaderMap) -> Response {
    if let Some(sid) = session_cookie(&headers) {
        server.lock().cookies.remove(&sid);
    }
    let mut r = empty(StatusCode::MOVED_PERMANENTLY);
    let h = r.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static("/admin"));
    h.insert(
        header::SET_COOKIE,
        HeaderValue::from_static("session=; Max-Age=0"),
    );
    r
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("session=").map(str::to_string))
}

fn logged_in(server: &Server, headers: &HeaderMap) -> bool {
    session_cookie(headers).is_some_and(|s| server.lock().cookies.contains(&s))
}

/// `GET /admin/users`: every user (the super-admin included), total in
/// `X-Total-Count`. Paging: the real server's ng-admin parameters `_page`
/// (from 1) and `_perPage`, or react-admin's `_start`/`_end`; sorting by
/// `_sortField`/`_sortDir` or `_sort`/`_order` (anything but `ASC` sorts
/// descending, as on the real server); `_filters={"name":"..."}` keeps users
/// whose email contains the text.
async fn users(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !logged_in(&server, &headers) {
        return empty(StatusCode::UNAUTHORIZED);
    }
    let users = server.lock().users.clone();
    let mut list: Vec<serde_json::Value> = users
        .iter()
        .filter_map(|u| serde_json::to_value(u).ok())
        .collect();
    if let Some(f) = q.get("_filters") {
        let name = serde_json::from_str::<serde_json::Value>(f)
            .ok()
            .and_then(|v| v["name"].as_str().map(str::to_lowercase));
        if let Some(name) = name {
            list.retain(|u| {
                u["email"]
                    .as_str()
                    .is_some_and(|e| e.to_lowercase().contains(&name))
            });
        }
    }
    let total = list.len();
    if let Some(field) = q.get("_sortField").or_else(|| q.get("_sort")) {
        let asc = q
            .get("_sortDir")
            .or_else(|| q.get("_order"))
            .is_some_and(|o| o == "ASC");
        list.sort_by(|a, b| {
            let o = cmp_json(&a[field.as_str()], &b[field.as_str()]);
            if asc {
                o
            } else {
                o.reverse()
            }
        });
    }
    let num = |k: &str| q.get(k).and_then(|v| v.parse::<usize>().ok());
    let page: Vec<serde_json::Value> = if let (Some(p), Some(n)) = (num("_page"), num("_perPage")) {
        list.into_iter()
            .skip(p.saturating_sub(1) * n)
            .take(n)
            .collect()
    } else {
        let start = num("_start").unwrap_or(0);
        let end = num("_end").unwrap_or(usize::MAX);
        list.into_iter()
            .skip(start)
            .take(end.saturating_sub(start))
            .collect()
    };
    let mut r = reply(
        StatusCode::OK,
        JSON,
        serde_json::Value::Array(page).to_string(),
    );
    r.headers_mut()
        .insert("X-Total-Count", HeaderValue::from(total));
    r.headers_mut().insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("X-Total-Count"),
    );
    r
}

fn cmp_json(a: &serde_json::Value, b: &serde_json::Value) -> std::cmp::Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// `GET /admin/users/{email}-{appName}` (split at the last `-`).
async fn user(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !logged_in(&server, &headers) {
        return empty(StatusCode::UNAUTHORIZED);
    }
    let Some((email, app)) = id.rsplit_once('-') else {
        return empty(StatusCode::NOT_FOUND);
    };
    let found = server
        .lock()
        .users
        .iter()
        .find(|u| u.email == email && u.app_name == app)
        .cloned();
    match found.and_then(|u| serde_json::to_string(&u).ok()) {
        Some(j) => reply(StatusCode::OK, JSON, j),
        None => empty(StatusCode::NOT_FOUND),
    }
}

async fn static_file(State(server): State<Arc<Server>>, Path(file): Path<String>) -> Response {
    match server.upload(&format!("/static/ota/{file}")) {
        Some(bytes) => reply(StatusCode::OK, "application/octet-stream", bytes.to_vec()),
        None => empty(StatusCode::NOT_FOUND),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_takes_last_file_part_of_any_name() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"fw\"; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01\r\n\x02\r\n\
--XyZ--\r\n";
        let (name, data) = multipart_file("multipart/form-data; boundary=XyZ", body).unwrap();
        assert_eq!(name, "a.bin");
        assert_eq!(data, b"\x00\x01\r\n\x02");
        assert!(multipart_file("application/octet-stream", body).is_none());
        let no_file =
            b"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--XyZ--\r\n";
        assert!(multipart_file("multipart/form-data; boundary=XyZ", no_file).is_none());
    }

    #[test]
    fn password_hash_is_salted_with_lowercase_email() {
        assert_eq!(
            hash_password("admin", "Admin@Blynk.cc"),
            hash_password("admin", "admin@blynk.cc")
        );
        assert_ne!(hash_password("admin", "a@b"), hash_password("admin", "c@d"));
        assert_eq!(hash_password("x", "y").len(), 44);
    }
}
