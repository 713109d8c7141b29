//! Reading devices out of the admin API's user JSON
//! (`profile.dashBoards[].devices[]` with `hardwareInfo` and `deviceOtaInfo`).
//!
//! Everything is taken defensively: a missing or odd field makes that field
//! unknown, never a panic, and strings are bounded. Tokens are only compared,
//! never kept (a short hint is).

use serde_json::Value;

use super::model::DeviceSeen;
use crate::rainmaker::parse::clean;

/// Longest name, email or build kept.
const MAX: usize = 128;

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(|s| clean(s, MAX))
        .filter(|s| !s.is_empty())
}

/// A build is compared with the campaign's as the server compares it: the
/// exact string (not trimmed), only refused when absurd.
fn build(v: &Value) -> Option<String> {
    let s = v.get("build")?.as_str()?;
    (!s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control)).then(|| s.to_string())
}

fn int(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or(0)
}

/// The first characters of a token, to tell devices apart without revealing it.
pub fn token_hint(token: &str) -> String {
    let head: String = token
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(4)
        .collect();
    format!("{head}…")
}

/// Every device of one user. With `token`, also says which of them has it.
pub fn devices_of(user: &Value, token: Option<&str>) -> (Vec<DeviceSeen>, Option<String>) {
    let mut out = vec![];
    let mut found = None;
    let Some(owner) = text(user, "email").or_else(|| text(user, "name")) else {
        return (out, None);
    };
    let dashes = user
        .pointer("/profile/dashBoards")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for dash in dashes {
        let dash_id = int(dash, "id");
        let project = text(dash, "name").unwrap_or_else(|| format!("project {dash_id}"));
        let devices = dash
            .get("devices")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for d in devices {
            let id = int(d, "id");
            let key = format!("{owner}/{dash_id}/{id}");
            let tok = d.get("token").and_then(Value::as_str).unwrap_or_default();
            if token.is_some_and(|t| !t.is_empty() && t == tok) {
                found = Some(key.clone());
            }
            let hw = d.get("hardwareInfo").filter(|v| v.is_object());
            out.push(DeviceSeen {
                name: text(d, "name").unwrap_or_else(|| format!("device {id}")),
                owner: owner.clone(),
                project: project.clone(),
                token_hint: token_hint(tok),
                online: d.get("status").and_then(Value::as_str) == Some("ONLINE"),
                build: hw.and_then(build),
                board: hw.and_then(|h| text(h, "boardType")),
                library: hw.and_then(|h| text(h, "version")),
                connect_time: int(d, "connectTime"),
                disconnect_time: int(d, "disconnectTime"),
                data_received_at: int(d, "dataReceivedAt"),
                ota_update_at: d
                    .pointer("/deviceOtaInfo/otaUpdateAt")
                    .and_then(Value::as_i64)
                    .filter(|t| *t > 0),
                key,
            });
        }
    }
    (out, found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_devices_and_finds_a_token_without_keeping_it() {
        let u = json!({
            "email": "a@b.c",
            "profile": {"dashBoards": [
                {"id": 1, "name": "Home", "devices": [
                    {"id": 0, "name": "Lamp", "token": "abcdefghijklmnopqrstuvwxyz123456", "status": "ONLINE",
                     "connectTime": 5, "hardwareInfo": {"build": "Aug  4 2017 20:31:49", "boardType": "ESP8266"},
                     "deviceOtaInfo": {"otaUpdateAt": 9}},
                    {"id": 1, "token": "zzzz", "status": "OFFLINE", "hardwareInfo": "junk"}
                ]},
                {"id": 2, "devices": "not a list"}
            ]}
        });
        let (devs, found) = devices_of(&u, Some("abcdefghijklmnopqrstuvwxyz123456"));
        assert_eq!(devs.len(), 2);
        assert_eq!(found.as_deref(), Some("a@b.c/1/0"));
        assert_eq!(devs[0].build.as_deref(), Some("Aug  4 2017 20:31:49"));
        assert_eq!(devs[0].token_hint, "abcd…");
        assert_eq!(devs[0].ota_update_at, Some(9));
        assert!(devs[0].online && !devs[1].online);
        assert_eq!(devs[1].name, "device 1");
        assert_eq!(devs[1].build, None);
        let json = serde_json::to_string(&devs).unwrap();
        assert!(!json.contains("abcdefghijklmnop"), "{json}");
        assert_eq!(devices_of(&json!({"x": 1}), None).0.len(), 0);
    }
}
