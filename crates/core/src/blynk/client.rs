//! The admin client of a Blynk legacy server: OTA start and stop over HTTP
//! Basic auth, and the users (with their devices' `hardwareInfo` and
//! `deviceOtaInfo`) over the admin UI's cookie session.
//!
//! TLS is verified normally, or against the one certificate the user
//! accepted ([`crate::tls::pinned_client_config`]); there is no "insecure"
//! switch. Every request has a timeout. Reads are retried with backoff on
//! timeouts, connection failures and 5xx; a start is only retried when the
//! connection could not be made (a start that may have reached the server is
//! never sent twice behind the user's back).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rand::Rng;
use reqwest::{header, StatusCode, Url};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::error::{BlynkError, BlynkResult};
use super::firmware::Firmware;
use super::model::{BlynkAccount, DeviceSeen, StartTarget};
use super::users::devices_of;
use crate::body::{read_capped, BodyError, MAX_PAGE};
use crate::rainmaker::parse::clean;
use crate::rainmaker::rest::error_chain;

/// The app name of users the admin API is asked about (the server's default).
pub const APP_NAME: &str = "Blynk";

/// Users per page when listing.
const PAGE: usize = 100;

/// Timeouts and retries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Timeout of one request (an upload included).
    pub request_timeout: Duration,
    /// Timeout for making the connection.
    pub connect_timeout: Duration,
    /// Attempts per call, first included.
    pub attempts: u32,
    /// First backoff delay, doubled each attempt.
    pub base_delay: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            attempts: 3,
            base_delay: Duration::from_millis(300),
        }
    }
}

/// The server's password hash for the admin UI login:
/// `Base64(SHA-256(utf8(password) ‖ SHA-256(lowercase(email))))`.
pub fn hash_password(password: &str, email: &str) -> String {
    let salt = Sha256::digest(email.to_lowercase().as_bytes());
    let mut h = Sha256::new();
    h.update(password.as_bytes());
    h.update(salt);
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// What to read for a poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch {
    /// Every user (paged `/admin/users`).
    All,
    /// These users only (`/admin/users/{email}-Blynk` each).
    Users(Vec<String>),
}

/// An admin client for one server. Cheap to clone.
#[derive(Clone)]
pub struct AdminClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    account: String,
    user: String,
    password: String,
    session: Mutex<Option<String>>,
    opts: ClientOptions,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("account", &self.inner.account)
            .field("base", &self.inner.base.as_str())
            .finish_non_exhaustive()
    }
}

/// Whether retrying may repeat something the server already did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Only when the connection was never made.
    ConnectOnly,
    /// Also after timeouts and 5xx (reads, stop).
    Idempotent,
}

struct Answer {
    status: StatusCode,
    headers: header::HeaderMap,
    body: String,
}

impl AdminClient {
    /// A client for `account`, with its admin `password`.
    pub fn new(
        account: &BlynkAccount,
        password: &str,
        opts: ClientOptions,
    ) -> BlynkResult<AdminClient> {
        let base = Url::parse(&account.url)
            .map_err(|e| BlynkError::Invalid(format!("{}: not a URL ({e})", account.url)))?;
        if base.scheme() != "https" {
            return Err(BlynkError::Invalid(format!(
                "{}: the admin API must be reached over https:// (the admin password is sent with every request)",
                account.url
            )));
        }
        let http = crate::tls::http_client(
            reqwest::Client::builder()
                .timeout(opts.request_timeout)
                .connect_timeout(opts.connect_timeout)
                // The login answers 301 with the cookie: it must be read, not followed.
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("greenlight/", env!("CARGO_PKG_VERSION"))),
            crate::tls::TrustSpec {
                pinned_sha256: account.pinned_sha256.as_deref(),
                ..Default::default()
            },
        )?;
        Ok(AdminClient {
            inner: Arc::new(Inner {
                http,
                base,
                account: account.name.clone(),
                user: account.user.clone(),
                password: password.to_string(),
                session: Mutex::new(None),
                opts,
            }),
        })
    }

    /// The account name.
    pub fn account(&self) -> &str {
        &self.inner.account
    }

    fn url(&self, segments: &[&str]) -> BlynkResult<Url> {
        let mut u = self.inner.base.clone();
        let shown = u.to_string();
        {
            let mut p = u
                .path_segments_mut()
                .map_err(|_| BlynkError::Invalid(format!("{shown}: not a base URL")))?;
            p.pop_if_empty();
            for s in segments {
                p.push(s);
            }
        }
        Ok(u)
    }

    fn auth_error(&self, reason: &str) -> BlynkError {
        BlynkError::Auth {
            account: self.inner.account.clone(),
            reason: reason.to_string(),
        }
    }

    /// One call with retries; `make` builds the request afresh for each attempt.
    async fn send(
        &self,
        what: &str,
        retry: Retry,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> BlynkResult<Answer> {
        let o = &self.inner.opts;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (err, retryable) = match make().send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    // Pages of users are the largest answers; one cap for all.
                    match read_capped(resp, MAX_PAGE).await {
                        Ok(body) if status.is_server_error() && retry == Retry::Idempotent => (
                            BlynkError::Refused {
                                http: status.as_u16(),
                                message: clean(&body, 300),
                            },
                            true,
                        ),
                        Ok(body) => {
                            return Ok(Answer {
                                status,
                                headers,
                                body,
                            })
                        }
                        // Not retried: the same server would send it again.
                        Err(BodyError::TooLarge { limit, .. }) => {
                            return Err(BlynkError::AnswerTooLarge {
                                what: what.to_string(),
                                limit,
                            })
                        }
                        // Sent and received: a start may have been acted on.
                        Err(BodyError::Read(e)) if retry == Retry::ConnectOnly => (
                            BlynkError::Unanswered(format!(
                                "{what}: reading the answer: {e}; the server may or may not have taken it (a stop cancels every campaign)"
                            )),
                            false,
                        ),
                        Err(BodyError::Read(e)) => (
                            BlynkError::Network(format!("{what}: reading the answer: {e}")),
                            retry == Retry::Idempotent,
                        ),
                    }
                }
                Err(e) => {
                    let msg = if e.is_timeout() && retry == Retry::ConnectOnly {
                        // Sent but unanswered: it may have been acted on.
                        format!(
                            "{what}: no answer within {:?}; the server may or may not have taken it (a stop cancels every campaign)",
                            o.request_timeout
                        )
                    } else if e.is_timeout() {
                        format!("{what}: no answer within {:?}", o.request_timeout)
                    } else {
                        format!("{what}: {}", error_chain(&e))
                    };
                    // A connection never made cannot have been acted on.
                    let retryable =
                        e.is_connect() || (retry == Retry::Idempotent && e.is_timeout());
                    // Past the connection, a start may have been taken.
                    let err = if retry == Retry::ConnectOnly && !e.is_connect() && !e.is_builder() {
                        BlynkError::Unanswered(msg)
                    } else {
                        BlynkError::Network(msg)
                    };
                    (err, retryable)
                }
            };
            if !retryable || attempt >= o.attempts {
                return Err(err);
            }
            let backoff = o.base_delay.saturating_mul(1 << (attempt - 1).min(8));
            let jitter = rand::rng().random_range(0.0..0.5);
            tracing::debug!(account = %self.inner.account, what, attempt, error = %err, "retrying");
            tokio::time::sleep(backoff.mul_f64(1.0 + jitter)).await;
        }
    }

    fn basic(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        rb.basic_auth(&self.inner.user, Some(&self.inner.password))
    }

    /// Maps an OTA endpoint's non-200 answer.
    fn ota_error(&self, a: &Answer, size: Option<u64>) -> BlynkError {
        let body = clean(a.body.trim(), 300);
        match a.status.as_u16() {
            403 => self.auth_error("wrong admin email or password (Authentication failed.)"),
            404 => BlynkError::Protocol(format!(
                "{} answered 404: no Blynk admin API there (is it the admin port, 9443?)",
                self.inner.base
            )),
            413 => BlynkError::ServerTooLarge {
                size: size.unwrap_or(0),
                message: body,
            },
            http => BlynkError::Refused {
                http,
                message: explain(&body),
            },
        }
    }

    /// `POST /admin/ota/start` with the firmware; returns the path the
    /// server stored it under. The query follows the target (URL-encoded:
    /// the docs' unquoted `&` problem cannot happen here).
    pub async fn ota_start(&self, fw: &Firmware, target: &StartTarget) -> BlynkResult<String> {
        let mut query: Vec<(&str, &str)> = vec![];
        match target {
            StartTarget::Token(t) => query.push(("token", t)),
            StartTarget::User { email, project } => {
                query.push(("user", email));
                if let Some(p) = project {
                    query.push(("project", p));
                }
            }
            StartTarget::All => {}
        }
        let url = self.url(&["admin", "ota", "start"])?;
        let (content_type, body) = fw.multipart();
        let size = body.len() as u64;
        let a = self
            .send("starting the update", Retry::ConnectOnly, || {
                self.basic(self.inner.http.post(url.clone()))
                    .query(&query)
                    .header(header::CONTENT_TYPE, &content_type)
                    .body(body.clone())
            })
            .await?;
        if a.status != StatusCode::OK {
            return Err(self.ota_error(&a, Some(size)));
        }
        let path = clean(a.body.trim().trim_matches('"'), 300);
        if path.is_empty() {
            return Err(BlynkError::Protocol(
                "the server accepted the firmware but did not say where it stored it".into(),
            ));
        }
        Ok(path)
    }

    /// `GET /admin/ota/stop`: drops every pending campaign of the server.
    pub async fn ota_stop(&self) -> BlynkResult<()> {
        let url = self.url(&["admin", "ota", "stop"])?;
        let a = self
            .send("stopping updates", Retry::Idempotent, || {
                self.basic(self.inner.http.get(url.clone()))
            })
            .await?;
        if a.status != StatusCode::OK {
            return Err(self.ota_error(&a, None));
        }
        Ok(())
    }

    /// Logs in to the admin UI (`POST /admin/login`); keeps the session
    /// cookie. A wrong password is an [`BlynkError::Auth`]. Has no effect on
    /// the server, so it is also how an account's password is checked.
    pub async fn login(&self) -> BlynkResult<()> {
        let url = self.url(&["admin", "login"])?;
        let form = format!(
            "email={}&password={}",
            form_encode(&self.inner.user),
            form_encode(&hash_password(&self.inner.password, &self.inner.user))
        );
        let a = self
            .send("logging in", Retry::Idempotent, || {
                self.inner
                    .http
                    .post(url.clone())
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form.clone())
            })
            .await?;
        if a.status == StatusCode::NOT_FOUND {
            return Err(self.ota_error(&a, None));
        }
        let cookie = a
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find_map(|c| c.trim().strip_prefix("session="))
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        match cookie {
            Some(c) => {
                *self.inner.session.lock().await = Some(c);
                Ok(())
            }
            None if a.status.is_redirection() || a.status.is_success() => {
                Err(self.auth_error("wrong admin email or password"))
            }
            None => Err(BlynkError::Refused {
                http: a.status.as_u16(),
                message: clean(&a.body, 300),
            }),
        }
    }

    /// A GET on the cookie session, logging in first or again when needed.
    async fn get_json(&self, what: &str, url: Url) -> BlynkResult<(Answer, Option<Value>)> {
        for round in 0..2 {
            let cookie = {
                let s = self.inner.session.lock().await.clone();
                match s {
                    Some(c) => c,
                    None => {
                        self.login().await?;
                        self.inner.session.lock().await.clone().unwrap_or_default()
                    }
                }
            };
            let a = self
                .send(what, Retry::Idempotent, || {
                    self.inner
                        .http
                        .get(url.clone())
                        .header(header::COOKIE, format!("session={cookie}"))
                })
                .await?;
            if a.status == StatusCode::UNAUTHORIZED || a.status == StatusCode::FORBIDDEN {
                // The session expired (or the server restarted): log in again once.
                *self.inner.session.lock().await = None;
                if round == 0 {
                    continue;
                }
                return Err(self.auth_error("the server refused the admin session"));
            }
            if a.status == StatusCode::NOT_FOUND {
                return Ok((a, None));
            }
            if !a.status.is_success() {
                return Err(BlynkError::Refused {
                    http: a.status.as_u16(),
                    message: clean(&a.body, 300),
                });
            }
            let v = serde_json::from_str(&a.body).map_err(|e| {
                BlynkError::Protocol(format!("{what}: not JSON ({e}): {}", clean(&a.body, 100)))
            })?;
            return Ok((a, Some(v)));
        }
        Err(self.auth_error("the server refused the admin session"))
    }

    /// Every user as JSON, page by page (`X-Total-Count` says how many).
    pub async fn users(&self) -> BlynkResult<Vec<Value>> {
        let mut all = vec![];
        let mut seen = std::collections::HashSet::new();
        for page in 1..=10_000usize {
            let mut url = self.url(&["admin", "users"])?;
            url.query_pairs_mut()
                .append_pair("_page", &page.to_string())
                .append_pair("_perPage", &PAGE.to_string())
                .append_pair("_sortField", "email")
                .append_pair("_sortDir", "ASC");
            let (a, v) = self.get_json("listing users", url).await?;
            let list = match v {
                Some(Value::Array(list)) => list,
                Some(_) => {
                    return Err(BlynkError::Protocol(
                        "/admin/users did not answer a list".into(),
                    ))
                }
                None => {
                    return Err(BlynkError::Protocol(
                        "/admin/users answered 404: is this a Blynk server's admin port?".into(),
                    ))
                }
            };
            let total = a
                .headers
                .get("x-total-count")
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse::<usize>().ok());
            let n = list.len();
            // A server that ignores the paging parameters answers the same
            // users again: only new ones count, and none new ends the listing.
            let before = all.len();
            for u in list {
                let id = user_id(&u);
                if id.is_empty() || seen.insert(id) {
                    all.push(u);
                }
            }
            let done = match total {
                Some(t) => all.len() >= t,
                None => n < PAGE,
            };
            if done || n == 0 || all.len() == before {
                return Ok(all);
            }
        }
        Err(BlynkError::Protocol(
            "/admin/users paging does not end".into(),
        ))
    }

    /// One user's JSON (`/admin/users/{email}-Blynk`), `None` when there is no such user.
    pub async fn user(&self, email: &str) -> BlynkResult<Option<Value>> {
        let url = self.url(&["admin", "users", &format!("{email}-{APP_NAME}")])?;
        Ok(self.get_json("reading a user", url).await?.1)
    }

    /// The devices to look at for a poll.
    pub async fn devices(&self, fetch: &Fetch) -> BlynkResult<Vec<DeviceSeen>> {
        let mut out = vec![];
        match fetch {
            Fetch::All => {
                for u in self.users().await? {
                    out.extend(devices_of(&u, None).0);
                }
            }
            Fetch::Users(emails) => {
                for e in emails {
                    // A user deleted meanwhile simply has no devices any more.
                    if let Some(u) = self.user(e).await? {
                        out.extend(devices_of(&u, None).0);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every device, and the key of the one with `token` (if any). The
    /// token is only compared, never kept.
    pub async fn find_token(&self, token: &str) -> BlynkResult<(Vec<DeviceSeen>, Option<String>)> {
        let mut out = vec![];
        let mut found = None;
        for u in self.users().await? {
            let (d, f) = devices_of(&u, Some(token));
            out.extend(d);
            found = found.or(f);
        }
        Ok((out, found))
    }
}

/// A user's identity in a listing: `email-appName` (the `id` field when present).
fn user_id(u: &Value) -> String {
    if let Some(id) = u.get("id").and_then(Value::as_str) {
        return id.to_string();
    }
    let email = u.get("email").and_then(Value::as_str).unwrap_or_default();
    let app = u.get("appName").and_then(Value::as_str).unwrap_or(APP_NAME);
    if email.is_empty() {
        String::new()
    } else {
        format!("{email}-{app}")
    }
}

/// The known refusal texts of the OTA endpoints, with what they mean.
fn explain(body: &str) -> String {
    match body {
        "Invalid token." => "no device has this token (Invalid token.)".into(),
        "Device wasn't connected yet." => "the device has not connected since the server started (Device wasn't connected yet.): power it on, or start a campaign for its user so it gets the update when it logs in".into(),
        "No device in session." => "the device is offline (No device in session.): an update for one token only reaches an online device; start a campaign for its user so it gets the update when it logs in".into(),
        "Requested user not found." => "no such user on the server (Requested user not found.)".into(),
        "Can't find binary data in request." => "the server found no file in the upload (Can't find binary data in request.)".into(),
        "" => "no reason given".into(),
        other => other.to_string(),
    }
}

/// `application/x-www-form-urlencoded` for one value.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_the_servers_scheme() {
        // Same email in another case: same salt.
        assert_eq!(
            hash_password("admin", "Admin@Blynk.cc"),
            hash_password("admin", "admin@blynk.cc")
        );
        assert_eq!(hash_password("x", "y").len(), 44);
    }

    #[test]
    fn form_encoding() {
        assert_eq!(form_encode("a+b@c.d"), "a%2Bb%40c.d");
        assert_eq!(form_encode("x y/="), "x+y%2F%3D");
    }

    #[test]
    fn plain_http_is_refused() {
        let a = BlynkAccount::new("x", "http://127.0.0.1:9443", "a@b");
        let e = AdminClient::new(&a, "pw", ClientOptions::default()).unwrap_err();
        assert!(e.to_string().contains("https://"), "{e}");
    }
}
