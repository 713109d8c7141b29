//! The RainMaker cloud REST client: login and token refresh (ahead of
//! expiry, one refresh at a time for all callers, a clear "needs login"
//! state instead of a loop), paged node listing, params, config, status and
//! the OTA calls, with a timeout on every request and retries with
//! exponential backoff and jitter on 429/423/5xx/timeouts, honouring
//! `Retry-After`.
//!
//! Commands that change something (`PUT params`, `POST ota_update`) are only
//! retried when the cloud said it did not process them (429, 423, 503) or the
//! connection could not be made: a timeout or a 500 after the request went
//! out may have been acted on, and repeating an OTA start is exactly what
//! the engine must never do.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::parse::{self, clean, parse_error_body, short_field, MAX_TEXT};
use crate::body::{read_capped, BodyError, MAX_ANSWER, MAX_PAGE};
use crate::error::{Error, NetKind, Result};
use crate::model::{secret_keys, RestConfig};
use crate::secrets::SecretStore;

/// Retry and timeout settings.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per call, first included.
    pub attempts: u32,
    /// First backoff delay; doubled each attempt.
    pub base_delay: Duration,
    /// Upper bound of one delay (also caps `Retry-After`).
    pub max_delay: Duration,
    /// Timeout of one request.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            request_timeout: Duration::from_secs(20),
        }
    }
}

#[derive(Default)]
struct Tokens {
    access: Option<String>,
    /// Expiry, epoch seconds.
    exp: u64,
    /// Seconds to refresh ahead of `exp`.
    margin: u64,
    refresh: Option<String>,
    needs_login: Option<String>,
}

/// An update a cloud "User Approval" job offers (`GET user/nodes/ota_update`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudOffer {
    /// `ota_job_id`.
    pub job_id: String,
    /// `fw_version`.
    pub fw_version: String,
    /// `description` (the admin's release note).
    pub description: Option<String>,
    /// `file_size`.
    pub file_size: Option<u64>,
    /// The job's download window, from its `metadata` (layout unverified).
    pub window: Option<crate::model::DownloadWindow>,
}

/// One `ota_status` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// `status`.
    pub status: String,
    /// `additional_info`.
    pub text: String,
    /// `timestamp`, ms.
    pub timestamp: i64,
}

/// A REST client for one account. Cheap to clone.
#[derive(Clone)]
pub struct RestClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    account: String,
    user: String,
    secrets: Arc<dyn SecretStore>,
    tokens: Mutex<Tokens>,
    retry: RetryPolicy,
}

/// How much of an answer to `path` is read: a page of nodes (100, each
/// with its config and params) may be large, anything else is small.
fn answer_limit(path: &str) -> usize {
    if path == "user/nodes" {
        MAX_PAGE
    } else {
        MAX_ANSWER
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn secret_get(
    secrets: &Arc<dyn SecretStore>,
    account: &str,
    key: &'static str,
) -> Result<Option<String>> {
    let (s, a) = (secrets.clone(), account.to_string());
    tokio::task::spawn_blocking(move || s.get(&a, key))
        .await
        .map_err(|e| Error::Config(format!("secret lookup task: {e}")))?
        .map_err(Error::from)
}

async fn secret_set(secrets: &Arc<dyn SecretStore>, account: &str, key: &'static str, v: &str) {
    let (s, a, v) = (secrets.clone(), account.to_string(), v.to_string());
    let r = tokio::task::spawn_blocking(move || s.set(&a, key, &v)).await;
    if !matches!(r, Ok(Ok(()))) {
        // Only a convenience (a refresh token); the password still works.
        tracing::warn!(account = %account, "could not keep the refresh token in the keychain");
    }
}

impl RestClient {
    /// A client for `cfg`; secrets are read from `secrets` under `account`.
    pub fn new(
        account: &str,
        cfg: &RestConfig,
        secrets: Arc<dyn SecretStore>,
        retry: RetryPolicy,
    ) -> Result<RestClient> {
        let http = crate::tls::http_client(
            reqwest::Client::builder()
                .timeout(retry.request_timeout)
                .connect_timeout(retry.request_timeout.min(Duration::from_secs(10)))
                .user_agent(concat!("greenlight/", env!("CARGO_PKG_VERSION"))),
            crate::tls::TrustSpec {
                ca_file: cfg.ca_file.as_deref(),
                pinned_sha256: cfg.pinned_sha256.as_deref(),
                client_auth: None,
            },
        )?;
        Ok(RestClient {
            inner: Arc::new(Inner {
                http,
                // Accounts saved before URLs were normalised may say `/v1`.
                base: canonical_base(&cfg.base_url)
                    .unwrap_or_else(|_| cfg.base_url.trim_end_matches('/').to_string()),
                account: account.to_string(),
                user: cfg.user.clone(),
                secrets,
                tokens: Mutex::new(Tokens::default()),
                retry,
            }),
        })
    }

    /// The account name.
    pub fn account(&self) -> &str {
        &self.inner.account
    }

    /// Forgets a "needs login" state (after the user stored a new password).
    pub async fn reset_login(&self) {
        let mut t = self.inner.tokens.lock().await;
        *t = Tokens::default();
    }

    /// A valid access token: refreshed ahead of expiry, by one caller at a
    /// time (the others wait on the lock and reuse the result).
    pub async fn access_token(&self) -> Result<String> {
        let mut t = self.inner.tokens.lock().await;
        if let Some(reason) = &t.needs_login {
            return Err(self.needs_login(reason));
        }
        if let Some(a) = &t.access {
            if now_s() + t.margin < t.exp {
                return Ok(a.clone());
            }
        }
        // Refresh token first (memory, then keychain), then the password.
        let refresh = match t.refresh.clone() {
            Some(r) => Some(r),
            None => {
                secret_get(
                    &self.inner.secrets,
                    &self.inner.account,
                    secret_keys::REFRESH_TOKEN,
                )
                .await?
            }
        };
        if let Some(r) = refresh {
            let body = json!({"refreshtoken": r, "user_name": self.inner.user});
            match self.login_call(body).await {
                Ok(v) => return self.take_tokens(&mut t, &v, Some(r)).await,
                Err(Error::Api(a)) if a.http == 400 || a.http == 401 => {
                    tracing::info!(account = %self.inner.account, "refresh token refused; logging in with the password");
                    t.refresh = None;
                }
                Err(e) => return Err(e),
            }
        }
        let password = secret_get(
            &self.inner.secrets,
            &self.inner.account,
            secret_keys::PASSWORD,
        )
        .await?;
        let Some(pw) = password else {
            let reason = "no password or valid refresh token is stored".to_string();
            t.needs_login = Some(reason.clone());
            return Err(self.needs_login(&reason));
        };
        let body = json!({"user_name": self.inner.user, "password": pw});
        match self.login_call(body).await {
            Ok(v) => self.take_tokens(&mut t, &v, None).await,
            Err(Error::Api(a)) if a.http == 400 || a.http == 401 => {
                let reason = parse::plain_reason_for_code(a.code, &a.description);
                t.needs_login = Some(reason.clone());
                Err(self.needs_login(&reason))
            }
            Err(e) => Err(e),
        }
    }

    fn needs_login(&self, reason: &str) -> Error {
        Error::NeedsLogin {
            account: self.inner.account.clone(),
            reason: reason.to_string(),
        }
    }

    async fn take_tokens(
        &self,
        t: &mut Tokens,
        v: &Value,
        old_refresh: Option<String>,
    ) -> Result<String> {
        let access = v
            .get("accesstoken")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Protocol("login2 answered without accesstoken".into()))?
            .to_string();
        let now = now_s();
        let (iat, exp) = parse::jwt_times(&access).unwrap_or((Some(now), now + 3600));
        let lifetime = exp.saturating_sub(iat.unwrap_or(now));
        // Refresh a minute ahead, or a fifth of the lifetime for short-lived tokens.
        t.margin = (lifetime / 5).min(60);
        t.exp = exp;
        t.access = Some(access.clone());
        match v.get("refreshtoken").and_then(Value::as_str) {
            Some(r) => {
                t.refresh = Some(r.to_string());
                secret_set(
                    &self.inner.secrets,
                    &self.inner.account,
                    secret_keys::REFRESH_TOKEN,
                    r,
                )
                .await;
            }
            None => t.refresh = old_refresh,
        }
        t.needs_login = None;
        Ok(access)
    }

    async fn login_call(&self, body: Value) -> Result<Value> {
        // Boxed: `send` fetches tokens through here, so the futures nest.
        Box::pin(self.send(Method::POST, "login2", &[], Some(body), false, false)).await
    }

    /// Logs out (drops the refresh token on the cloud and in the keychain).
    pub async fn logout(&self) -> Result<()> {
        let refresh = self.inner.tokens.lock().await.refresh.clone();
        let body = refresh.map(|r| json!({"refreshtoken": r}));
        let r = self
            .send(Method::POST, "logout2", &[], body, false, true)
            .await;
        *self.inner.tokens.lock().await = Tokens::default();
        let (s, a) = (self.inner.secrets.clone(), self.inner.account.clone());
        let _ = tokio::task::spawn_blocking(move || s.delete(&a, secret_keys::REFRESH_TOKEN)).await;
        r.map(|_| ())
    }

    async fn invalidate(&self, used: &str) {
        let mut t = self.inner.tokens.lock().await;
        if t.access.as_deref() == Some(used) {
            t.access = None;
        }
    }

    /// One call with retries. `idempotent`: may be repeated after a timeout
    /// or 5xx. `auth`: sends the access token.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
        idempotent: bool,
        auth: bool,
    ) -> Result<Value> {
        let url = format!("{}/v1/{}", self.inner.base, path);
        let p = &self.inner.retry;
        let mut attempt = 0u32;
        let mut auth_retried = false;
        loop {
            attempt += 1;
            let token = if auth {
                Some(self.access_token().await?)
            } else {
                None
            };
            tracing::trace!(%url, attempt, "request");
            let mut rb = self.inner.http.request(method.clone(), &url).query(query);
            if let Some(t) = &token {
                rb = rb.header("Authorization", t);
            }
            if let Some(b) = &body {
                rb = rb.json(b);
            }
            let (err, retry_after) = match rb.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = match read_capped(resp, answer_limit(path)).await {
                        Ok(t) => t,
                        Err(BodyError::TooLarge { limit, .. }) => {
                            // Not retried: the same server would send it again.
                            return Err(Error::AnswerTooLarge {
                                what: path.to_string(),
                                limit,
                            });
                        }
                        Err(BodyError::Read(e)) => {
                            if idempotent && attempt < p.attempts {
                                tracing::debug!(%url, error = %e, "body read failed; retrying");
                                self.backoff(attempt, None).await;
                                continue;
                            }
                            return Err(Error::network(NetKind::Broken, e.to_string()));
                        }
                    };
                    if status.is_success() {
                        return serde_json::from_str(&text).map_err(|e| {
                            Error::Protocol(format!(
                                "{path}: not JSON ({e}): {}",
                                clean(&text, 100)
                            ))
                        });
                    }
                    let api = parse_error_body(status.as_u16(), &text);
                    if status == StatusCode::UNAUTHORIZED && auth {
                        if let Some(t) = &token {
                            self.invalidate(t).await;
                        }
                        if !auth_retried {
                            auth_retried = true;
                            attempt -= 1;
                            continue;
                        }
                        return Err(Error::Api(api));
                    }
                    let transient = match status.as_u16() {
                        // The cloud says it did not take the request on.
                        429 | 423 | 503 => true,
                        s if s >= 500 => idempotent,
                        _ => false,
                    };
                    if !transient {
                        return Err(Error::Api(api));
                    }
                    (Error::Api(api), retry_after)
                }
                Err(e) => {
                    // A connection that was never made cannot have been acted on;
                    // a certificate we do not trust stays untrusted, however
                    // often it is asked again (the user waits for the answer).
                    let kind = NetKind::of_request(&e);
                    let retry = !matches!(kind, NetKind::Tls | NetKind::CertChanged)
                        && (e.is_connect() || (idempotent && (e.is_timeout() || e.is_request())));
                    let err = Error::network(
                        kind,
                        if kind == NetKind::Timeout {
                            format!("{path}: no answer within {:?}", p.request_timeout)
                        } else {
                            format!("{path}: {}", error_chain(&e))
                        },
                    );
                    if !retry {
                        return Err(err);
                    }
                    (err, None)
                }
            };
            if attempt >= p.attempts {
                return Err(err);
            }
            tracing::debug!(%url, attempt, error = %err, "transient failure; backing off");
            self.backoff(attempt, retry_after).await;
        }
    }

    async fn backoff(&self, attempt: u32, retry_after: Option<Duration>) {
        let p = &self.inner.retry;
        let exp = p
            .base_delay
            .saturating_mul(1u32 << attempt.min(16).saturating_sub(1))
            .min(p.max_delay);
        let jitter = rand::rng().random_range(0.0..0.5);
        let d = exp.mul_f64(1.0 + jitter);
        let d = match retry_after {
            Some(r) => r.min(p.max_delay).max(d),
            None => d,
        };
        tokio::time::sleep(d).await;
    }

    /// One page of `GET user/nodes?node_details=true`: (details, next_id).
    pub async fn list_nodes_page(
        &self,
        start_id: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>)> {
        let mut q: Vec<(&str, &str)> = vec![("node_details", "true"), ("num_records", "100")];
        if let Some(s) = start_id {
            q.push(("start_id", s));
        }
        let v = self
            .send(Method::GET, "user/nodes", &q, None, true, true)
            .await?;
        Ok(page_from_body(&v))
    }

    /// Every node with details, following `next_id`.
    pub async fn list_all_nodes(&self) -> Result<Vec<Value>> {
        let mut all = vec![];
        let mut next: Option<String> = None;
        for _ in 0..10_000 {
            let (mut page, n) = self.list_nodes_page(next.as_deref()).await?;
            all.append(&mut page);
            match n {
                Some(n) if Some(&n) != next.as_ref() => next = Some(n),
                _ => return Ok(all),
            }
        }
        Err(Error::Protocol("user/nodes paging does not end".into()))
    }

    /// `GET user/nodes/params`.
    pub async fn get_params(&self, node_id: &str) -> Result<Value> {
        parse::validate_node_id(node_id)?;
        self.send(
            Method::GET,
            "user/nodes/params",
            &[("node_id", node_id)],
            None,
            true,
            true,
        )
        .await
    }

    /// `GET user/nodes/config`.
    pub async fn get_config(&self, node_id: &str) -> Result<Value> {
        parse::validate_node_id(node_id)?;
        self.send(
            Method::GET,
            "user/nodes/config",
            &[("node_id", node_id)],
            None,
            true,
            true,
        )
        .await
    }

    /// `GET user/nodes/status`: connected or not.
    pub async fn get_connected(&self, node_id: &str) -> Result<bool> {
        parse::validate_node_id(node_id)?;
        let v = self
            .send(
                Method::GET,
                "user/nodes/status",
                &[("node_id", node_id)],
                None,
                true,
                true,
            )
            .await?;
        v.pointer("/connectivity/connected")
            .and_then(Value::as_bool)
            .ok_or_else(|| Error::Protocol("status without connectivity.connected".into()))
    }

    /// `PUT user/nodes/params` for one node (a command: not repeated after a timeout).
    pub async fn put_params(&self, node_id: &str, payload: &Value) -> Result<()> {
        parse::validate_node_id(node_id)?;
        self.send(
            Method::PUT,
            "user/nodes/params",
            &[("node_id", node_id)],
            Some(payload.clone()),
            false,
            true,
        )
        .await
        .map(|_| ())
    }

    /// `GET user/nodes/ota_update`: the cloud job waiting for this user's approval, if any.
    pub async fn ota_update_check(&self, node_id: &str) -> Result<Option<CloudOffer>> {
        parse::validate_node_id(node_id)?;
        let v = self
            .send(
                Method::GET,
                "user/nodes/ota_update",
                &[("node_id", node_id)],
                None,
                true,
                true,
            )
            .await?;
        offer_from_body(&v)
    }

    /// `POST user/nodes/ota_update`: approves a cloud job (a command).
    pub async fn ota_update_approve(&self, node_id: &str, job_id: &str) -> Result<()> {
        parse::validate_node_id(node_id)?;
        self.send(
            Method::POST,
            "user/nodes/ota_update",
            &[],
            Some(json!({"ota_job_id": job_id, "node_id": node_id})),
            false,
            true,
        )
        .await
        .map(|_| ())
    }

    /// `GET user/nodes/ota_status`.
    pub async fn ota_status(&self, node_id: &str, job_id: &str) -> Result<StatusReport> {
        parse::validate_node_id(node_id)?;
        let v = self
            .send(
                Method::GET,
                "user/nodes/ota_status",
                &[("node_id", node_id), ("ota_job_id", job_id)],
                None,
                true,
                true,
            )
            .await?;
        Ok(status_from_body(&v))
    }
}

/// The public ESP RainMaker service: the default cloud of the app and the
/// CLI, in its canonical form (see [`canonical_base`]).
pub const PUBLIC_BASE: &str = "https://api.rainmaker.espressif.com";

/// A cloud base URL as people paste it — with or without `/v1`, with
/// trailing slashes, spaces around it — in its one canonical form:
/// `scheme://host[:port][/path]` without a trailing `/v1` or `/` (the
/// client adds `/v1/` itself; `…/v1/v1/login2` answers "No such API").
/// Only `http` and `https` with a host are accepted.
pub fn canonical_base(url: &str) -> Result<String> {
    let raw = url.trim();
    let parsed = url::Url::parse(raw).map_err(|e| {
        Error::Config(format!(
            "{} is not a cloud URL ({e}); it looks like {PUBLIC_BASE}",
            clean(raw, 80)
        ))
    })?;
    let host = match parsed.host_str() {
        Some(h) if matches!(parsed.scheme(), "http" | "https") && !h.is_empty() => h,
        _ => {
            return Err(Error::Config(format!(
                "the cloud URL must start with https:// (or http:// for a local test server): {}",
                clean(raw, 80)
            )))
        }
    };
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(Error::Config(format!(
            "the cloud URL takes no ?query or #fragment: {}",
            clean(raw, 80)
        )));
    }
    let mut path = parsed.path().trim_end_matches('/').to_string();
    // Every trailing `/v1`: the canonical form of a canonical form is itself
    // (the client canonicalises a saved base again).
    while path.to_ascii_lowercase().ends_with("/v1") {
        path.truncate(path.len() - 3);
        path = path.trim_end_matches('/').to_string();
    }
    let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
    // IPv6 hosts keep their brackets.
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    Ok(format!("{}://{host}{port}{path}", parsed.scheme()))
}

/// Reads a `GET user/nodes/ota_update` answer: the offer, `None` when
/// `ota_available` is not `true`, an error when it is but the job id or
/// version is missing or unusable. Strings are bounded and cleaned.
pub fn offer_from_body(v: &Value) -> Result<Option<CloudOffer>> {
    if v.get("ota_available").and_then(Value::as_bool) != Some(true) {
        return Ok(None);
    }
    let (Some(job_id), Some(fw_version)) = (
        short_field(v.get("ota_job_id")),
        short_field(v.get("fw_version")),
    ) else {
        return Err(Error::Protocol(
            "ota_update: ota_available without a valid ota_job_id/fw_version".into(),
        ));
    };
    Ok(Some(CloudOffer {
        job_id,
        fw_version,
        description: v
            .get("description")
            .and_then(Value::as_str)
            .map(|s| clean(s, MAX_TEXT)),
        file_size: v.get("file_size").and_then(Value::as_u64),
        window: super::parse::download_window(v.get("metadata")),
    }))
}

/// Reads a `GET user/nodes/ota_status` answer; missing fields become
/// `unknown`, empty text and timestamp 0. Strings are bounded and cleaned.
pub fn status_from_body(v: &Value) -> StatusReport {
    StatusReport {
        status: v
            .get("status")
            .and_then(Value::as_str)
            .map(|s| clean(s, 40))
            .unwrap_or_else(|| "unknown".into()),
        text: v
            .get("additional_info")
            .and_then(Value::as_str)
            .map(|s| clean(s, MAX_TEXT))
            .unwrap_or_default(),
        timestamp: v
            .get("timestamp")
            .and_then(Value::as_i64)
            .map(super::parse::epoch_ms)
            .unwrap_or(0),
    }
}

/// Reads one `GET user/nodes?node_details=true` page: the `node_details`
/// entries (unchecked; see `sweep::report_from_detail`) and `next_id`.
pub fn page_from_body(v: &Value) -> (Vec<Value>, Option<String>) {
    let details = v
        .get("node_details")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let next = v
        .get("next_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    (details, next)
}

/// Logs in once with the password already in `secrets`, so a view can say
/// "wrong password" when an account is added rather than at first use. On
/// failure the account's password and refresh token are deleted again:
/// nothing is kept for an account that was not added.
pub async fn verify_login(
    account: &str,
    cfg: &RestConfig,
    secrets: Arc<dyn SecretStore>,
) -> Result<()> {
    let client = RestClient::new(account, cfg, secrets.clone(), RetryPolicy::default())?;
    if let Err(e) = client.access_token().await {
        for k in [secret_keys::PASSWORD, secret_keys::REFRESH_TOKEN] {
            let _ = secrets.delete(account, k);
        }
        return Err(e);
    }
    Ok(())
}

/// An error with its causes: reqwest's own message hides the one that
/// matters (a refused or changed certificate, a refused connection).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        src = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pasted_form_of_a_cloud_url_is_one_canonical_base() {
        for form in [
            "https://api.rainmaker.espressif.com",
            "https://api.rainmaker.espressif.com/",
            "https://api.rainmaker.espressif.com/v1",
            "https://api.rainmaker.espressif.com/v1/",
            " https://api.rainmaker.espressif.com/V1// ",
        ] {
            assert_eq!(
                canonical_base(form).unwrap(),
                "https://api.rainmaker.espressif.com",
                "{form:?}"
            );
        }
        assert_eq!(
            canonical_base("http://127.0.0.1:8080/rm/v1/").unwrap(),
            "http://127.0.0.1:8080/rm"
        );
        assert_eq!(
            canonical_base("http://[::1]:9/v1").unwrap(),
            "http://[::1]:9"
        );
        assert_eq!(canonical_base(PUBLIC_BASE).unwrap(), PUBLIC_BASE);
        for bad in [
            "",
            "api.rainmaker.espressif.com",
            "ftp://x",
            "https://",
            "https://h/v1?x=1",
        ] {
            assert!(canonical_base(bad).is_err(), "{bad:?}");
        }
    }

    /// Found by `fuzz/fuzz_targets/urls.rs` (crash input below, verbatim):
    /// only one trailing `/v1` was dropped, so the "canonical" base still
    /// ended with `/v1` and canonicalising it again (as `RestClient::new`
    /// does with a saved base) gave another URL.
    #[test]
    fn fuzz_regression_a_canonical_base_is_its_own_canonical_form() {
        let crash: &[u8] = b"https://12tps://126.06.0.0.2.0.0./rmttps://126.0.0.2.0.0./rm/v1/v1/";
        let url = std::str::from_utf8(crash).unwrap();
        let c = canonical_base(url).unwrap();
        assert!(!c.to_ascii_lowercase().ends_with("/v1"), "{c}");
        assert_eq!(canonical_base(&c).unwrap(), c);
        assert_eq!(
            canonical_base("http://127.0.0.1:8080/rm/v1/V1//v1/").unwrap(),
            "http://127.0.0.1:8080/rm"
        );
        assert_eq!(canonical_base("https://v1/v1").unwrap(), "https://v1");
    }

    /// What the loopback cloud below answers to one request.
    enum Reply {
        /// A 200 with this body and its `Content-Length`.
        Json(String),
        /// Announces this `Content-Length`, then sends nothing (and keeps
        /// the connection open until the client leaves).
        Announces(u64),
        /// A body with no `Content-Length` that does not end (until the
        /// client hangs up, or 256 MiB as a bound on the test itself).
        Endless,
    }

    /// A real HTTP/1.1 server on loopback answering requests in turn from
    /// `replies`. Returns its base URL and, per request, how many body
    /// bytes it got out before the client hung up.
    async fn cloud(replies: Vec<Reply>) -> (String, tokio::sync::mpsc::UnboundedReceiver<u64>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            for reply in replies {
                let Ok((mut c, _)) = l.accept().await else {
                    return;
                };
                // The request: its head, then as many body bytes as it says.
                let mut req = Vec::new();
                let mut b = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 65536 {
                    match c.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&b[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&req).to_ascii_lowercase();
                let end = head.find("\r\n\r\n").unwrap_or(head.len()) + 4;
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let mut body = req.len().saturating_sub(end);
                while body < len {
                    match c.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => body += n,
                    }
                }
                let mut sent = 0u64;
                match reply {
                    Reply::Json(j) => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            j.len()
                        );
                        let _ = c.write_all(head.as_bytes()).await;
                        let _ = c.write_all(j.as_bytes()).await;
                        sent = j.len() as u64;
                    }
                    Reply::Announces(n) => {
                        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n");
                        let _ = c.write_all(head.as_bytes()).await;
                        // Until the client leaves.
                        let _ = c.read(&mut b).await;
                    }
                    Reply::Endless => {
                        let _ = c
                            .write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n[")
                            .await;
                        let chunk = [b' '; 65536];
                        for _ in 0..4096 {
                            if c.write_all(&chunk).await.is_err() {
                                break;
                            }
                            sent += chunk.len() as u64;
                        }
                    }
                }
                let _ = tx.send(sent);
            }
        });
        (base, rx)
    }

    fn client(base: &str) -> RestClient {
        let secrets = Arc::new(crate::MemorySecretStore::default());
        secrets.set("a", secret_keys::PASSWORD, "pw").unwrap();
        let cfg = RestConfig {
            base_url: base.into(),
            user: "me@example.com".into(),
            ca_file: None,
            pinned_sha256: None,
        };
        let retry = RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            // Were the cap not applied, the endless answer would end here
            // as a timeout, not as "too large".
            request_timeout: Duration::from_secs(10),
        };
        RestClient::new("a", &cfg, secrets, retry).unwrap()
    }

    #[tokio::test]
    async fn oversized_answers_are_refused_unread_and_the_account_still_works() {
        let login = r#"{"status":"success","accesstoken":"tok"}"#.to_string();
        // A page of nodes just under its cap is read whole.
        let page_nodes = format!(
            r#"{{"node_details":[{{"id":"n1","config":{{"pad":"{}"}}}}]}}"#,
            "x".repeat(MAX_PAGE - 1024)
        );
        let (base, mut sent) = cloud(vec![
            Reply::Announces(1 << 40),
            Reply::Endless,
            Reply::Json(login),
            Reply::Json(page_nodes),
            Reply::Endless,
        ])
        .await;
        let c = client(&base);

        // A terabyte announced: refused on the header, nothing waited for.
        let e = c.access_token().await.unwrap_err();
        assert!(
            matches!(&e, Error::AnswerTooLarge { what, limit } if what == "login2" && *limit == MAX_ANSWER),
            "{e:?}"
        );
        assert!(e.to_string().contains("larger than 1048576 bytes"), "{e}");
        assert_eq!(sent.recv().await, Some(0));

        // No Content-Length and no end: reading stops past the cap and the
        // connection is dropped; the server could not push much more than
        // the cap and the sockets' buffers.
        let e = c.access_token().await.unwrap_err();
        assert!(matches!(&e, Error::AnswerTooLarge { .. }), "{e:?}");
        let pushed = sent.recv().await.unwrap();
        assert!(pushed < 16 << 20, "the server pushed {pushed} bytes");

        // Nothing lost: the next normal answer logs in, a big page is read.
        assert_eq!(c.access_token().await.unwrap(), "tok");
        let (nodes, _) = c.list_nodes_page(None).await.unwrap();
        assert_eq!(nodes.len(), 1);
        // A page that does not end is refused at the page cap.
        let e = c.list_nodes_page(None).await.unwrap_err();
        assert!(
            matches!(&e, Error::AnswerTooLarge { what, limit } if what == "user/nodes" && *limit == MAX_PAGE),
            "{e:?}"
        );
        // The request reached the server: an approval answered this way
        // is "not confirmed", never re-sent by itself.
        assert!(e.maybe_delivered());
    }
}
