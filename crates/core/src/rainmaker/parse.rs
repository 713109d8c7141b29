//! Pure parsing of what RainMaker nodes and the cloud send: topics, the OTA
//! `Info` param in its three shapes, node configs, error bodies, status
//! strings, progress texts and JWT expiry. Nothing here trusts its input:
//! every string is bounded and cleaned before it reaches the engine.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

use crate::error::{ApiError, Error};
use crate::model::OtaNames;

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
        _ => return None,
    };
    Some((id, s))
}

/// The subscription filters for the plain topic form.
pub fn plain_filters() -> Vec<String> {
    ["params/local", "params/local/init", "config", "otastatus"]
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

/// What a node config tells the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigInfo {
    /// `info.name`.
    pub name: Option<String>,
    /// `info.fw_version`.
    pub fw_version: Option<String>,
    /// `info.model`.
    pub model: Option<String>,
    /// The OTA service, found by type.
    pub ota: Option<OtaNames>,
}

/// Reads a node config; `None` when it is not an object with `info`.
pub fn parse_config(v: &Value) -> Option<ConfigInfo> {
    let info = v.get("info")?.as_object()?;
    let text = |k: &str| {
        info.get(k)
            .and_then(Value::as_str)
            .map(|s| clean(s, MAX_SHORT))
    };
    let ota = v
        .get("services")
        .and_then(Value::as_array)
        .and_then(|svcs| {
            svcs.iter()
                .find(|s| s.get("type").and_then(Value::as_str) == Some("esp.service.ota"))
        })
        .and_then(|svc| {
            let service = short_field(svc.get("name"))?;
            let params = svc.get("params")?.as_array()?;
            let by_type = |t: &str| {
                params
                    .iter()
                    .find(|p| p.get("type").and_then(Value::as_str) == Some(t))
                    .and_then(|p| short_field(p.get("name")))
            };
            Some(OtaNames {
                service,
                info: by_type("esp.param.ota_info")?,
                operation: by_type("esp.param.ota_operation")?,
            })
        });
    Some(ConfigInfo {
        name: text("name"),
        fw_version: short_field(info.get("fw_version")),
        model: text("model"),
        ota,
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

/// An OTA status string, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusClass {
    /// `triggered`: the job exists, not approved yet.
    Triggered,
    /// `started`.
    Started,
    /// `in-progress`.
    InProgress,
    /// `delayed`.
    Delayed,
    /// `success` / `completed`.
    Success,
    /// `failed`, with a plain reason.
    Failed(String),
    /// `rejected`, with a plain reason.
    Rejected(String),
    /// `rejected` "Firmware rolled back".
    RolledBack,
    /// `unknown` or anything not documented.
    Unknown,
}

/// Maps an OTA status and its `additional_info` text.
pub fn classify_status(status: &str, text: &str) -> StatusClass {
    let s = status.trim().to_ascii_lowercase().replace('_', "-");
    let rolled = {
        let t = text.to_ascii_lowercase();
        t.contains("rolled back") || t.contains("rollback")
    };
    match s.as_str() {
        "triggered" => StatusClass::Triggered,
        "started" => StatusClass::Started,
        "in-progress" | "inprogress" => StatusClass::InProgress,
        "delayed" => StatusClass::Delayed,
        "success" | "completed" => StatusClass::Success,
        "failed" if rolled => StatusClass::RolledBack,
        "failed" => StatusClass::Failed(plain_reason_for_text(text)),
        "rejected" if rolled => StatusClass::RolledBack,
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
        assert_eq!(parse_topic("node/X/otaurl"), None);
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
        assert_eq!(plain_filters().len(), 4);
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
        assert_eq!(classify_status("in-progress", "Downloaded 10%"), InProgress);
        assert_eq!(classify_status("IN_PROGRESS", ""), InProgress);
        assert_eq!(classify_status("delayed", "Waiting for Approval"), Delayed);
        assert_eq!(classify_status("success", ""), Success);
        assert_eq!(classify_status("completed", ""), Success);
        assert_eq!(
            classify_status("rejected", "Same version received"),
            Rejected("same version".into())
        );
        assert_eq!(
            classify_status("rejected", "Firmware rolled back"),
            RolledBack
        );
        assert_eq!(
            classify_status("failed", "Firmware image download failed after 3 attempts"),
            Failed("download failed".into())
        );
        assert_eq!(classify_status("unknown", ""), Unknown);
        assert_eq!(classify_status("exploded", ""), Unknown);
        assert_eq!(classify_status("", ""), Unknown);
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
