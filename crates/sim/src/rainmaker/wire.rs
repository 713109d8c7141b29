//! Wire shapes shared by the simulated cloud and the simulated nodes: node
//! config, topics, error bodies. Field names are verbatim from the RainMaker
//! reference (`docs/rainmaker.md`).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The basic-ingest rule name for each node topic suffix, as the firmware uses
/// them in `$aws/rules/<rule>/node/<id>/<suffix>`.
pub fn ingest_rule(suffix: &str) -> Option<&'static str> {
    Some(match suffix {
        "config" => "esp_node_config",
        "params/local/init" => "esp_init_params",
        "params/local" => "esp_set_params",
        "otafetch" => "esp_node_otafetch",
        "otastatus" => "esp_node_otastatus",
        _ => return None,
    })
}

/// The topic a node publishes `suffix` on, in the plain or basic-ingest form.
pub fn node_topic(node_id: &str, suffix: &str, basic_ingest: bool) -> String {
    match (basic_ingest, ingest_rule(suffix)) {
        (true, Some(rule)) => format!("$aws/rules/{rule}/node/{node_id}/{suffix}"),
        _ => format!("node/{node_id}/{suffix}"),
    }
}

/// Splits a node topic (either form) into `(node_id, suffix)`.
pub fn parse_node_topic(topic: &str) -> Option<(&str, &str)> {
    let rest = if let Some(r) = topic.strip_prefix("$aws/rules/") {
        let (_rule, r) = r.split_once('/')?;
        r
    } else {
        topic
    };
    let rest = rest.strip_prefix("node/")?;
    let (id, suffix) = rest.split_once('/')?;
    if id.is_empty() || suffix.is_empty() {
        return None;
    }
    Some((id, suffix))
}

/// RainMaker's failure body: `{"status":"failure","error_code":<int>,"description":...}`.
pub fn failure(code: u64, description: &str) -> Value {
    json!({"status": "failure", "error_code": code, "description": description})
}

/// RainMaker's success body.
pub fn success(description: &str) -> Value {
    json!({"status": "success", "description": description})
}

/// Error codes. The documented ones are verbatim; the others (marked) are the
/// simulator's own choice for cases the public documentation does not number.
pub mod codes {
    /// "Too many requests, try again later" (documented).
    pub const TOO_MANY_REQUESTS: u64 = 100070;
    /// "Incorrect user name or password" (documented).
    pub const BAD_CREDENTIALS: u64 = 101009;
    /// Refresh token invalid or expired (documented).
    pub const BAD_REFRESH: u64 = 101017;
    /// Node is offline (documented).
    pub const NODE_OFFLINE: u64 = 102001;
    /// Node does not exist / is not mapped to this user (documented).
    pub const NO_NODE: u64 = 102004;
    /// Status not found (documented).
    pub const STATUS_NOT_FOUND: u64 = 105024;
    /// Job not associated with node (documented).
    pub const JOB_NOT_FOR_NODE: u64 = 105036;
    /// Invalid job (documented).
    pub const INVALID_JOB: u64 = 105061;
    /// "too much traffic, try again later" (documented, 423).
    pub const TOO_MUCH_TRAFFIC: u64 = 105078;
    /// Unauthorized: missing, unknown or expired access token (simulator's choice).
    pub const UNAUTHORIZED: u64 = 100010;
    /// Malformed request body (simulator's choice).
    pub const BAD_BODY: u64 = 100001;
    /// Missing or invalid query parameter (simulator's choice).
    pub const BAD_QUERY: u64 = 100002;
    /// Internal error (simulator's choice; used for injected 5xx).
    pub const INTERNAL: u64 = 100000;
}

/// Everything that describes one node's hardware and firmware.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// Node id (MQTT client id and topic segment).
    pub node_id: String,
    /// User-visible name.
    pub name: String,
    /// Device type, e.g. `esp.device.lightbulb`.
    pub device_type: String,
    /// Model string.
    pub model: String,
    /// Firmware project name (the node rejects images of another project).
    pub project_name: String,
    /// Chip, e.g. `esp32c3`.
    pub platform: String,
}

/// Which layout of the `esp.service.ota` service a node's firmware has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtaLayout {
    /// Vendor firmware following Espressif's user-approval guide: `Operation`
    /// (write, `check`/`start`) and `Info` as an object carrying the offer.
    #[default]
    UserApproval,
    /// The stock SDK's OTA over params: `Status` and `Info` (free-text
    /// **strings**, read) and `URL` (write). No `Operation`: such nodes install
    /// whatever the cloud sends them.
    Stock,
}

/// Builds the node config JSON the firmware publishes on `config`, with the
/// `esp.service.ota` service in the given layout.
pub fn node_config(info: &NodeInfo, fw_version: &str, layout: OtaLayout) -> Value {
    let ota_params = match layout {
        OtaLayout::UserApproval => json!([
            {"name": "Operation", "type": "esp.param.ota_operation", "data_type": "string",
             "properties": ["write"], "valid_strs": ["check", "start"]},
            {"name": "Info", "type": "esp.param.ota_info", "data_type": "object", "properties": ["read"]}
        ]),
        OtaLayout::Stock => json!([
            {"name": "Status", "type": "esp.param.ota_status", "data_type": "string", "properties": ["read"]},
            {"name": "Info", "type": "esp.param.ota_info", "data_type": "string", "properties": ["read"]},
            {"name": "URL", "type": "esp.param.ota_url", "data_type": "string", "properties": ["write"]}
        ]),
    };
    json!({
        "node_id": info.node_id,
        "config_version": "2020-03-20",
        "info": {
            "name": info.name,
            "fw_version": fw_version,
            "type": info.device_type,
            "model": info.model,
            "project_name": info.project_name,
            "platform": info.platform,
        },
        "devices": [{
            "name": "Light",
            "type": info.device_type,
            "primary": "Power",
            "params": [
                {"name": "Name", "type": "esp.param.name", "data_type": "string", "properties": ["read", "write"]},
                {"name": "Power", "type": "esp.param.power", "data_type": "bool", "properties": ["read", "write"], "ui_type": "esp.ui.toggle"},
                {"name": "Brightness", "type": "esp.param.brightness", "data_type": "int", "properties": ["read", "write"],
                 "bounds": {"min": 0, "max": 100, "step": 1}, "ui_type": "esp.ui.slider"}
            ]
        }],
        "services": [{
            "name": "OTA",
            "type": "esp.service.ota",
            "params": ota_params
        }]
    })
}

/// The params a node reports at boot. In the user-approval layout `Info` is
/// the **string** `"{}"` here, exactly as the firmware reports its initial
/// value; in the stock layout `Status` and `Info` are free text (empty until
/// an OTA has been reported).
pub fn initial_params(info: &NodeInfo, power: bool, brightness: i64, layout: OtaLayout) -> Value {
    let ota = match layout {
        OtaLayout::UserApproval => json!({"Operation": "", "Info": "{}"}),
        OtaLayout::Stock => json!({"Status": "", "Info": "", "URL": ""}),
    };
    json!({
        "Light": {"Name": info.name, "Power": power, "Brightness": brightness},
        "OTA": ota
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip_in_both_forms() {
        for ingest in [false, true] {
            for s in [
                "config",
                "params/local/init",
                "params/local",
                "otafetch",
                "otastatus",
            ] {
                let t = node_topic("AB12", s, ingest);
                assert_eq!(parse_node_topic(&t), Some(("AB12", s)), "{t}");
            }
        }
        assert_eq!(node_topic("X", "otaurl", true), "node/X/otaurl");
        assert_eq!(parse_node_topic("foo/bar"), None);
        assert_eq!(parse_node_topic("node//config"), None);
    }

    #[test]
    fn both_ota_layouts_are_told_apart_by_types() {
        let info = NodeInfo {
            node_id: "N".into(),
            ..NodeInfo::default()
        };
        let ota = |layout| node_config(&info, "1.0.0", layout)["services"][0].clone();
        let recipe = ota(OtaLayout::UserApproval);
        assert_eq!(recipe["type"], "esp.service.ota");
        assert_eq!(recipe["params"][0]["type"], "esp.param.ota_operation");
        assert_eq!(recipe["params"][1]["data_type"], "object");
        let stock = ota(OtaLayout::Stock);
        let types: Vec<&str> = stock["params"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["type"].as_str())
            .collect();
        assert_eq!(
            types,
            [
                "esp.param.ota_status",
                "esp.param.ota_info",
                "esp.param.ota_url"
            ]
        );
        assert_eq!(stock["params"][1]["data_type"], "string");
        assert_eq!(
            initial_params(&info, true, 1, OtaLayout::UserApproval)["OTA"]["Info"],
            "{}"
        );
        assert!(initial_params(&info, true, 1, OtaLayout::Stock)["OTA"]
            .get("Operation")
            .is_none());
    }
}
