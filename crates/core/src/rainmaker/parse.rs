//! Pure parsing of what RainMaker nodes and the cloud send: topics, the OTA
//! `Info` param in its three shapes, node configs, error bodies, status
//! strings, progress texts and JWT expiry. Nothing here trusts its input:
//! every string is bounded and cleaned before it reaches the engine.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

use crate::error::{ApiError, Error};
use crate::model::{Attempt, DelayReason, DownloadWindow, OtaLayout, OtaNames};

/// Longest node id accepted.
pub const MAX_NODE_ID: usize = 128;
/// Longest version, job id or name kept.
pub const MAX_SHORT: usize = 128;
/// Longest free text kept (progress texts, release notes).
pub const MAX_TEXT: usize = 2000;

/// Checks that a node id can go into a topic or a query: 1..=128 characters
/// of `A-Z a-z 0-9 - _ . :` (so no `/`, `+`, `#`, `$`, spaces or control characters).
pub fn validate_node_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= MAX_NODE_ID
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidNodeId(clean(id, 40)))
    }
}

/// Drops control characters and cuts to `max` characters.
pub fn clean(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// A version or job id: non-empty, bounded, no control characters.
pub fn short_field(v: Option<&Value>) -> Option<String> {
    let s = v?.as_str()?.trim();
    if s.is_empty() || s.len() > MAX_SHORT || s.chars().any(char::is_control) {
        return None;
    }
    Some(s.to_string())
}

/// What a node topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suffix {
    /// `config`.
    Config,
    /// `params/local/init`.
    ParamsInit,
    /// `params/local`.
    Params,
    /// `otastatus`.
    OtaStatus,
    /// `otafetch`.
    OtaFetch,
    /// `otaurl` (the cloud to the node: a job's URL and metadata).
    OtaUrl,
}

/// Splits `node/<id>/<suffix>` or `$aws/rules/<rule>/node/<id>/<suffix>`,
/// validating the node id. Unknown suffixes give `None`.
pub fn parse_topic(topic: &str) -> Option<(&str, Suffix)> {
    let rest = match topic.strip_prefix("$aws/rules/") {
        Some(r) => r.split_once('/')?.1,
        None => topic,
    };
    let rest = rest.strip_prefix("node/")?;
    let (id, suffix) = rest.split_once('/')?;
    validate_node_id(id).ok()?;
    let s = match suffix {
        "config" => Suffix::Config,
        "params/local/init" => Suffix::ParamsInit,
        "params/local" => Suffix::Params,
        "otastatus" => Suffix::OtaStatus,
        "otafetch" => Suffix::OtaFetch,
        "otaurl" => Suffix::OtaUrl,
        _ => return None,
    };
    Some((id, s))
}

/// The subscription filters for the plain topic form.
pub fn plain_filters() -> Vec<String> {
    [
        "params/local",
        "params/local/init",
        "config",
        "otastatus",
        "otaurl",
    ]
    .iter()
    .map(|s| format!("node/+/{s}"))
    .collect()
}

/// The subscription filters for the AWS basic-ingest form.
pub fn ingest_filters() -> Vec<String> {
    [
        ("esp_set_params", "params/local"),
        ("esp_init_params", "params/local/init"),
        ("esp_node_config", "config"),
        ("esp_node_otastatus", "otastatus"),
    ]
    .iter()
    .map(|(rule, s)| format!("$aws/rules/{rule}/node/+/{s}"))
    .collect()
}

/// A pending node-side update as the `Info` param reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtaInfo {
    /// `job_id`.
    pub job_id: String,
    /// `fw_version` offered.
    pub fw_version: String,
}

/// Why an `Info` value was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable OTA Info: {0}")]
pub struct InfoError(pub String);

/// Parses `Info`: an object, the string `"{}"`, or a string holding JSON.
/// `Ok(None)`: nothing pending. `Err`: garbage (the caller keeps what it had).
pub fn parse_info(v: &Value) -> Result<Option<OtaInfo>, InfoError> {
    parse_info_depth(v, 0)
}

fn parse_info_depth(v: &Value, depth: u8) -> Result<Option<OtaInfo>, InfoError> {
    match v {
        Value::Null => Ok(None),
        Value::Object(m) if m.is_empty() => Ok(None),
        Value::Object(m) => {
            let job = short_field(m.get("job_id"));
            let fw = short_field(m.get("fw_version"));
            match (job, fw) {
                (Some(job_id), Some(fw_version)) => Ok(Some(OtaInfo { job_id, fw_version })),
                (None, None) => Ok(None),
                _ => Err(InfoError("job_id or fw_version missing or invalid".into())),
            }
        }
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() || t == "{}" {
                return Ok(None);
            }
            if depth > 0 {
                return Err(InfoError("nested string".into()));
            }
            let inner: Value = serde_json::from_str(t)
                .map_err(|_| InfoError(format!("not JSON: {}", clean(t, 40))))?;
            if !inner.is_object() {
                return Err(InfoError("string does not hold an object".into()));
            }
            parse_info_depth(&inner, depth + 1)
        }
        other => Err(InfoError(format!("unexpected {}", kind(other)))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The params of a stock-SDK-layout OTA service (docs/rainmaker.md): free
/// text about the last update, never an offer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StockNames {
    /// Name of the service of type `esp.service.ota`.
    pub service: String,
    /// Name of its `esp.param.ota_status` param, when declared.
    pub status: Option<String>,
    /// Name of its string `esp.param.ota_info` param, when declared.
    pub info: Option<String>,
}

/// What a node config tells the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigInfo {
    /// `info.name`.
    pub name: Option<String>,
    /// `info.fw_version`.
    pub fw_version: Option<String>,
    /// `info.model`.
    pub model: Option<String>,
    /// The OTA service in the user-approval layout (`Operation` + object
    /// `Info`), found by types.
    pub ota: Option<OtaNames>,
    /// The OTA service in the stock SDK layout (no `Operation`, string `Info`).
    pub stock: Option<StockNames>,
}

impl ConfigInfo {
    /// Which layout the config declares, if it declares an OTA service.
    pub fn layout(&self) -> Option<OtaLayout> {
        if self.ota.is_some() {
            Some(OtaLayout::UserApproval)
        } else if self.stock.is_some() {
            Some(OtaLayout::Stock)
        } else {
            None
        }
    }
}

/// Reads a node config; `None` when it is not an object with `info`.
///
/// The OTA service is found by its type and its params by theirs, never by
/// names. It is the user-approval layout only when it declares an
/// `esp.param.ota_operation` *and* its `esp.param.ota_info` is not a string;
/// anything else of type `esp.service.ota` is the stock layout, whose string
/// `Info` is never read as an offer and which is never sent `Operation`.
pub fn parse_config(v: &Value) -> Option<ConfigInfo> {
    let info = v.get("info")?.as_object()?;
    let text = |k: &str| {
        info.get(k)
            .and_then(Value::as_str)
            .map(|s| clean(s, MAX_SHORT))
    };
    let svc = v
        .get("services")
        .and_then(Value::as_array)
        .and_then(|svcs| {
            svcs.iter()
                .find(|s| s.get("type").and_then(Value::as_str) == Some("esp.service.ota"))
        });
    let mut ota = None;
    let mut stock = None;
    if let Some(svc) = svc {
        if let Some(service) = short_field(svc.get("name")) {
            let params: &[Value] = svc
                .get("params")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let by_type = |t: &str| {
                params
                    .iter()
                    .find(|p| p.get("type").and_then(Value::as_str) == Some(t))
            };
            let name_of = |p: Option<&Value>| p.and_then(|p| short_field(p.get("name")));
            let info_p = by_type("esp.param.ota_info");
            let info_is_string = info_p
                .and_then(|p| p.get("data_type"))
                .and_then(Value::as_str)
                == Some("string");
            let op = name_of(by_type("esp.param.ota_operation"));
            match (op, name_of(info_p)) {
                (Some(operation), Some(info)) if !info_is_string => {
                    ota = Some(OtaNames {
                        service,
                        info,
                        operation,
                    })
                }
                (_, info) => {
                    stock = Some(StockNames {
                        service,
                        status: name_of(by_type("esp.param.ota_status")),
                        info,
                    })
                }
            }
        }
    }
    Some(ConfigInfo {
        name: text("name"),
        fw_version: short_field(info.get("fw_version")),
        model: text("model"),
        ota,
        stock,
    })
}

/// The last OTA text of a stock-layout node out of a params report: its
/// `Status` string, else its `Info` string. `None` when the report has neither.
pub fn stock_text(params: &Value, names: &StockNames) -> Option<String> {
    let svc = params.get(&names.service)?;
    let read = |n: &Option<String>| {
        n.as_ref()
            .and_then(|n| svc.get(n))
            .and_then(Value::as_str)
            .map(|s| clean(s.trim(), 200))
            .filter(|s| !s.is_empty())
    };
    read(&names.status).or_else(|| read(&names.info))
}

/// The download window in an `otaurl` or `ota_update` `metadata` object.
/// The layout is unverified (docs/rainmaker.md): `{"start":m,"end":m}` or
/// `[m, m]`, minutes after the device's local midnight, are accepted.
pub fn download_window(metadata: Option<&Value>) -> Option<DownloadWindow> {
    let w = metadata?.get("download_window")?;
    let minute = |v: Option<&Value>| {
        v.and_then(Value::as_u64)
            .filter(|m| *m < 1440)
            .map(|m| m as u16)
    };
    let (start, end) = match w {
        Value::Array(a) if a.len() == 2 => (minute(a.first()), minute(a.get(1))),
        Value::Object(o) => (minute(o.get("start")), minute(o.get("end"))),
        _ => (None, None),
    };
    Some(DownloadWindow {
        start_minute: start?,
        end_minute: end?,
    })
}

/// Connectivity in a params report (the last will `{"Connectivity":{"Connected":false}}`).
pub fn params_connectivity(v: &Value) -> Option<bool> {
    v.get("Connectivity")?.get("Connected")?.as_bool()
}

/// Parses a RainMaker failure body; `error_code` may be an integer or a string.
pub fn parse_error_body(http: u16, body: &str) -> ApiError {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let code = match v.get("error_code") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    };
    let description = v
        .get("description")
        .and_then(Value::as_str)
        .map(|s| clean(s, 300))
        .unwrap_or_else(|| {
            if body.trim().is_empty() {
                format!("HTTP {http}")
            } else {
                clean(body, 200)
            }
        });
    ApiError {
        http,
        code,
        description,
    }
}

/// Plain words for documented error codes.
pub fn plain_reason_for_code(code: u64, description: &str) -> String {
    match code {
        102001 => "node is offline".into(),
        102004 => "node is not in this account".into(),
        105036 => "this update is not meant for this node".into(),
        105061 => "the update job is no longer valid".into(),
        105024 => "no status yet".into(),
        101009 => "wrong user name or password".into(),
        101017 => "the login has expired".into(),
        100070 | 105078 => "the cloud is busy, try again later".into(),
        _ => description.to_string(),
    }
}

/// Plain words for a node's failure or rejection text.
pub fn plain_reason_for_text(text: &str) -> String {
    let t = text.to_ascii_lowercase();
    if t.contains("same version") {
        "same version".into()
    } else if t.contains("rolled back") || t.contains("rollback") {
        "firmware rolled back".into()
    } else if t.contains("project name mismatch") {
        "the firmware is for another product".into()
    } else if t.contains("md5") || t.contains("validation") {
        "the downloaded image was damaged".into()
    } else if t.contains("download") {
        "download failed".into()
    } else if t.contains("offline") {
        "node is offline".into()
    } else if t.trim().is_empty() {
        "no reason given".into()
    } else {
        clean(text, 200)
    }
}

/// The percentage in a progress text such as "Downloaded 40% Firmware Image".
/// Only a number directly followed by `%`, 0..=100; anything else is `None`.
pub fn percent_from_text(text: &str) -> Option<u8> {
    let bytes = text.as_bytes();
    let pos = text.find('%')?;
    let mut start = pos;
    while start > 0 && bytes[start - 1].is_ascii_digit() {
        start -= 1;
    }
    if start == pos || pos - start > 3 {
        return None;
    }
    let n: u16 = text[start..pos].parse().ok()?;
    (n <= 100).then_some(n as u8)
}

/// A node or cloud timestamp in milliseconds since the epoch. MQTT
/// `otastatus.ts` is in seconds and REST `ota_status.timestamp` in
/// milliseconds (docs/rainmaker.md); a value below 10^11 can only be
/// seconds (as milliseconds it would be 1973), so either unit is read
/// right wherever it turns up. Zero or negative: unknown (0).
pub fn epoch_ms(v: i64) -> i64 {
    match v {
        i64::MIN..=0 => 0,
        1..=99_999_999_999 => v.saturating_mul(1000),
        _ => v,
    }
}

/// "attempt 2/3" anywhere in a text ("Starting OTA Upgrade (HTTPS attempt
/// 2/3)", "OTA Attempt 1/3 failed: ..."), with `1 <= n <= of <= 20`.
pub fn attempt_in(text: &str) -> Option<Attempt> {
    let lower = text.to_ascii_lowercase();
    let at = lower.find("attempt")?;
    let rest = lower[at + "attempt".len()..].trim_start();
    let (n, rest) = rest.split_once('/')?;
    let of: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let n: u8 = n.trim().parse().ok()?;
    let of: u8 = of.parse().ok()?;
    (n >= 1 && n <= of && of <= 20).then_some(Attempt { n, of })
}

/// An OTA status string and its text, classified by what they mean for a
/// job (docs/rainmaker.md, "How real firmware reports an update").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusClass {
    /// `triggered`: the job exists, not approved yet.
    Triggered,
    /// `started`.
    Started,
    /// `in-progress`: downloading or flashing.
    InProgress {
        /// The attempt, when the text names one.
        attempt: Option<Attempt>,
    },
    /// `in-progress` "Rebooting into new firmware": the node restarts and
    /// checks the new image.
    Rebooting,
    /// `delayed`, with why.
    Delayed(DelayReason),
    /// `success` / `completed`.
    Success,
    /// `failed` that is not a rollback.
    Failed {
        /// Plain reason.
        reason: String,
        /// The attempt, when the text names one.
        attempt: Option<Attempt>,
        /// No retry can follow: the last attempt, or a final text
        /// ("OTA download window lapsed.").
        last: bool,
    },
    /// `rejected`, with a plain reason.
    Rejected(String),
    /// The new image did not hold and the node went back to the old one:
    /// `rejected` "Firmware rolled back" or `failed` "MQTT did not connect
    /// within 90 seconds".
    RolledBack {
        /// Reported as `failed`: the job stays open in the cloud and the
        /// device will fetch the same image again.
        as_failure: bool,
        /// The node's own text.
        text: String,
    },
    /// `unknown` or anything not documented.
    Unknown,
}

fn is_rollback_text(t: &str) -> bool {
    t.contains("rolled back") || t.contains("rollback") || t.contains("mqtt did not connect")
}

/// Why a node postpones, from its `delayed` text.
pub fn delay_reason(text: &str) -> DelayReason {
    let t = text.to_ascii_lowercase();
    if t.contains("waiting for approval") {
        DelayReason::WaitingForApproval
    } else if t.contains("download window") {
        DelayReason::DownloadWindow { window: None }
    } else if t.contains("valid window") {
        DelayReason::NotValidYet
    } else if t.contains("no time information") {
        DelayReason::NoClock
    } else {
        DelayReason::Other
    }
}

/// Maps an OTA status and its `additional_info` text.
pub fn classify_status(status: &str, text: &str) -> StatusClass {
    let s = status.trim().to_ascii_lowercase().replace('_', "-");
    let t = text.to_ascii_lowercase();
    match s.as_str() {
        "triggered" => StatusClass::Triggered,
        "started" => StatusClass::Started,
        "in-progress" | "inprogress" if t.contains("rebooting") => StatusClass::Rebooting,
        "in-progress" | "inprogress" => StatusClass::InProgress {
            attempt: attempt_in(text),
        },
        "delayed" => StatusClass::Delayed(delay_reason(text)),
        "success" | "completed" => StatusClass::Success,
        "failed" | "rejected" if is_rollback_text(&t) => StatusClass::RolledBack {
            as_failure: s == "failed",
            text: clean(text, 200),
        },
        "failed" => {
            let attempt = attempt_in(text);
            // "OTA Attempt 1/3 failed: <cause>": the cause is what matters.
            let cause = text.split_once(':').map(|(_, c)| c.trim()).unwrap_or(text);
            let reason = if t.contains("window lapsed") {
                "the job's download window lapsed".to_string()
            } else if attempt.is_some() {
                let r = plain_reason_for_text(cause);
                if r == clean(cause, 200) && !r.is_empty() {
                    format!("download failed ({r})")
                } else {
                    r
                }
            } else {
                plain_reason_for_text(text)
            };
            let last = t.contains("window lapsed") || attempt.is_some_and(|a| a.n >= a.of);
            StatusClass::Failed {
                reason,
                attempt,
                last,
            }
        }
        "rejected" => StatusClass::Rejected(plain_reason_for_text(text)),
        _ => StatusClass::Unknown,
    }
}

/// `(iat, exp)` of a JWT (seconds), read without checking the signature.
pub fn jwt_times(token: &str) -> Option<(Option<u64>, u64)> {
    let mut parts = token.split('.');
    let (_h, p, _s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    let exp = v.get("exp")?.as_u64()?;
    Some((v.get("iat").and_then(Value::as_u64), exp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn info_in_every_shape() {
        let want = Some(OtaInfo {
            job_id: "J1".into(),
            fw_version: "2.0".into(),
        });
        assert_eq!(
            parse_info(&json!({"job_id":"J1","fw_version":"2.0"})),
            Ok(want.clone())
        );
        assert_eq!(parse_info(&json!("{}")), Ok(None));
        assert_eq!(parse_info(&json!({})), Ok(None));
        assert_eq!(parse_info(&json!("")), Ok(None));
        assert_eq!(parse_info(&Value::Null), Ok(None));
        assert_eq!(
            parse_info(&json!("{\"job_id\":\"J1\",\"fw_version\":\"2.0\"}")),
            Ok(want)
        );
        assert_eq!(parse_info(&json!(" { } ")), Ok(None));
    }

    #[test]
    fn info_garbage_is_an_error() {
        assert!(parse_info(&json!("not json")).is_err());
        assert!(parse_info(&json!(42)).is_err());
        assert!(parse_info(&json!([1, 2])).is_err());
        assert!(parse_info(&json!("[1]")).is_err());
        assert!(parse_info(&json!({"job_id": "J"})).is_err());
        assert!(parse_info(&json!({"job_id": 5, "fw_version": "1"})).is_err());
        assert!(parse_info(&json!({"job_id": "x".repeat(500), "fw_version": "1"})).is_err());
        assert!(parse_info(&json!({"job_id": "a\u{0}b", "fw_version": "1"})).is_err());
        // A string holding a string holding JSON is not followed further.
        let nested = json!(json!("{\"job_id\":\"J\",\"fw_version\":\"1\"}").to_string());
        assert!(parse_info(&nested).is_err());
    }

    #[test]
    fn error_bodies_with_int_or_string_codes() {
        let a = parse_error_body(
            400,
            r#"{"status":"failure","error_code":102001,"description":"Node is offline"}"#,
        );
        assert_eq!((a.http, a.code), (400, 102001));
        let b = parse_error_body(
            429,
            r#"{"status":"failure","error_code":"100070","description":"Too many requests"}"#,
        );
        assert_eq!(b.code, 100070);
        assert_eq!(b.description, "Too many requests");
        let c = parse_error_body(502, "<html>bad gateway</html>");
        assert_eq!(c.code, 0);
        assert!(c.description.contains("bad gateway"));
        assert_eq!(parse_error_body(500, "").description, "HTTP 500");
        assert_eq!(plain_reason_for_code(102001, "x"), "node is offline");
        assert!(a.to_string().contains("node is offline"));
    }

    #[test]
    fn topics_in_both_forms_and_hostile_ids() {
        assert_eq!(
            parse_topic("node/AB12/params/local"),
            Some(("AB12", Suffix::Params))
        );
        assert_eq!(
            parse_topic("$aws/rules/esp_set_params/node/AB12/params/local/init"),
            Some(("AB12", Suffix::ParamsInit))
        );
        assert_eq!(
            parse_topic("$aws/rules/esp_node_otastatus/node/X/otastatus"),
            Some(("X", Suffix::OtaStatus))
        );
        assert_eq!(parse_topic("node/X/config"), Some(("X", Suffix::Config)));
        assert_eq!(parse_topic("node/X/otaurl"), Some(("X", Suffix::OtaUrl)));
        assert_eq!(parse_topic("node/X/other"), None);
        assert_eq!(parse_topic("node//config"), None);
        assert_eq!(parse_topic("node/a b/config"), None);
        assert_eq!(parse_topic("foo/X/config"), None);
        assert_eq!(parse_topic("$aws/rules/x"), None);
        for bad in [
            "",
            "a/b",
            "a+b",
            "a#",
            "a\nb",
            "a\u{7f}",
            "$x",
            &"A".repeat(200),
        ] {
            assert!(validate_node_id(bad).is_err(), "{bad:?}");
        }
        for good in ["7CDFA1000000", "node-1_a.b:c"] {
            assert!(validate_node_id(good).is_ok(), "{good:?}");
        }
        assert!(ingest_filters()
            .iter()
            .all(|f| f.starts_with("$aws/rules/")));
        assert_eq!(plain_filters().len(), 5);
    }

    #[test]
    fn percentages_only_when_the_text_has_one() {
        assert_eq!(percent_from_text("Downloaded 40% Firmware Image"), Some(40));
        assert_eq!(
            percent_from_text("Downloaded 100% Firmware Image"),
            Some(100)
        );
        assert_eq!(percent_from_text("Downloaded 0%"), Some(0));
        assert_eq!(percent_from_text("Downloading Firmware Image"), None);
        assert_eq!(percent_from_text("Downloaded 250% wow"), None);
        assert_eq!(percent_from_text("50 %"), None);
        assert_eq!(percent_from_text("%"), None);
        assert_eq!(percent_from_text("12345%"), None);
    }

    #[test]
    fn status_strings_map_to_classes() {
        use StatusClass::*;
        assert_eq!(classify_status("triggered", ""), Triggered);
        assert_eq!(classify_status("started", ""), Started);
        assert_eq!(
            classify_status("in-progress", "Downloaded 10%"),
            InProgress { attempt: None }
        );
        assert_eq!(
            classify_status("IN_PROGRESS", ""),
            InProgress { attempt: None }
        );
        assert_eq!(
            classify_status("delayed", "Waiting for Approval"),
            Delayed(DelayReason::WaitingForApproval)
        );
        assert_eq!(classify_status("success", ""), Success);
        assert_eq!(classify_status("completed", ""), Success);
        assert_eq!(
            classify_status("rejected", "Same version received"),
            Rejected("same version".into())
        );
        assert_eq!(
            classify_status("rejected", "Firmware rolled back"),
            RolledBack {
                as_failure: false,
                text: "Firmware rolled back".into()
            }
        );
        assert_eq!(
            classify_status("failed", "Firmware image download failed"),
            Failed {
                reason: "download failed".into(),
                attempt: None,
                last: false
            }
        );
        assert_eq!(classify_status("unknown", ""), Unknown);
        assert_eq!(classify_status("exploded", ""), Unknown);
        assert_eq!(classify_status("", ""), Unknown);
    }

    #[test]
    fn firmware_texts_carry_attempts_reboots_rollbacks_and_delays() {
        use StatusClass::*;
        let a = |n, of| Some(Attempt { n, of });
        assert_eq!(
            classify_status("in-progress", "Starting OTA Upgrade (HTTPS attempt 2/3)"),
            InProgress { attempt: a(2, 3) }
        );
        assert_eq!(
            classify_status("failed", "OTA Attempt 1/3 failed: ESP_ERR_HTTP_EAGAIN"),
            Failed {
                reason: "download failed (ESP_ERR_HTTP_EAGAIN)".into(),
                attempt: a(1, 3),
                last: false
            }
        );
        assert!(matches!(
            classify_status(
                "failed",
                "OTA Attempt 3/3 failed: Image download interrupted"
            ),
            Failed { last: true, .. }
        ));
        assert!(matches!(
            classify_status("failed", "OTA download window lapsed."),
            Failed { last: true, .. }
        ));
        assert_eq!(
            classify_status("in-progress", "Rebooting into new firmware"),
            Rebooting
        );
        assert!(matches!(
            classify_status("failed", "MQTT did not connect within 90 seconds"),
            RolledBack {
                as_failure: true,
                ..
            }
        ));
        assert_eq!(
            classify_status("delayed", "Not within download window."),
            Delayed(DelayReason::DownloadWindow { window: None })
        );
        assert_eq!(
            classify_status("delayed", "No time information available yet."),
            Delayed(DelayReason::NoClock)
        );
        assert_eq!(
            classify_status("delayed", "Not within valid window."),
            Delayed(DelayReason::NotValidYet)
        );
        assert_eq!(epoch_ms(1_700_000_000), 1_700_000_000_000);
        assert_eq!(epoch_ms(1_700_000_000_123), 1_700_000_000_123);
        assert_eq!(epoch_ms(-5), 0);
        assert_eq!(attempt_in("attempt 4/3"), None);
        assert_eq!(attempt_in("attempt x/3"), None);
        assert_eq!(attempt_in("Attempt 0/3"), None);
        assert_eq!(
            download_window(Some(
                &json!({"download_window": {"start": 120, "end": 270}})
            )),
            Some(DownloadWindow {
                start_minute: 120,
                end_minute: 270
            })
        );
        assert_eq!(
            download_window(Some(&json!({"download_window": [1380, 60]}))),
            Some(DownloadWindow {
                start_minute: 1380,
                end_minute: 60
            })
        );
        assert_eq!(
            download_window(Some(&json!({"download_window": {"start": 9999, "end": 1}}))),
            None
        );
    }

    #[test]
    fn both_layouts_of_the_ota_service() {
        let stock = json!({
            "node_id": "N", "info": {"name": "Plug", "fw_version": "1.0"},
            "services": [{"name": "OTA", "type": "esp.service.ota", "params": [
                {"name": "Status", "type": "esp.param.ota_status", "data_type": "string"},
                {"name": "Info", "type": "esp.param.ota_info", "data_type": "string"},
                {"name": "URL", "type": "esp.param.ota_url", "data_type": "string"}
            ]}]
        });
        let c = parse_config(&stock).unwrap();
        assert_eq!(c.ota, None);
        assert_eq!(c.layout(), Some(OtaLayout::Stock));
        let names = c.stock.unwrap();
        assert_eq!(
            stock_text(
                &json!({"OTA": {"Status": "", "Info": "Upgrade to 1.1 done"}}),
                &names
            ),
            Some("Upgrade to 1.1 done".into())
        );
        let recipe = json!({
            "node_id": "N", "info": {"name": "Plug", "fw_version": "1.0"},
            "services": [{"name": "OTA", "type": "esp.service.ota", "params": [
                {"name": "Operation", "type": "esp.param.ota_operation", "data_type": "string"},
                {"name": "Info", "type": "esp.param.ota_info", "data_type": "object"}
            ]}]
        });
        assert_eq!(
            parse_config(&recipe).unwrap().layout(),
            Some(OtaLayout::UserApproval)
        );
        // Operation beside a string Info is not the recipe: never written to.
        let hybrid = json!({
            "info": {"name": "X"},
            "services": [{"name": "OTA", "type": "esp.service.ota", "params": [
                {"name": "Operation", "type": "esp.param.ota_operation", "data_type": "string"},
                {"name": "Info", "type": "esp.param.ota_info", "data_type": "string"}
            ]}]
        });
        assert_eq!(
            parse_config(&hybrid).unwrap().layout(),
            Some(OtaLayout::Stock)
        );
    }

    #[test]
    fn config_finds_ota_by_type_not_name() {
        let cfg = json!({
            "node_id": "N", "info": {"name": "Lamp", "fw_version": "1.0", "model": "M"},
            "services": [
                {"name": "OTA", "type": "esp.service.other", "params": []},
                {"name": "Updater", "type": "esp.service.ota", "params": [
                    {"name": "Op", "type": "esp.param.ota_operation"},
                    {"name": "Stat", "type": "esp.param.ota_info"}
                ]}
            ]
        });
        let c = parse_config(&cfg).unwrap();
        assert_eq!(c.fw_version.as_deref(), Some("1.0"));
        assert_eq!(
            c.ota,
            Some(OtaNames {
                service: "Updater".into(),
                info: "Stat".into(),
                operation: "Op".into()
            })
        );
        assert_eq!(parse_config(&json!({"services": []})), None);
        assert_eq!(parse_config(&json!({"info": {}})).unwrap().ota, None);
    }

    #[test]
    fn jwt_exp_is_decoded() {
        let p = URL_SAFE_NO_PAD.encode(r#"{"iat":10,"exp":3610}"#);
        assert_eq!(jwt_times(&format!("h.{p}.s")), Some((Some(10), 3610)));
        assert_eq!(jwt_times("garbage"), None);
        assert_eq!(jwt_times("a.b.c.d"), None);
    }
}
