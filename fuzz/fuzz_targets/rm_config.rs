//! A node config (`user/nodes/config`, MQTT `config`, the sweep's
//! `config`): name, version, model, and the OTA service found by its type
//! in either layout (`rainmaker::parse::parse_config`).
//!
//! Properties: the texts are bounded and clean, the names short; the
//! layout is the user-approval one exactly when `Operation` and `Info`
//! names were found; a config written back from what was read (canonical
//! form) reads as the same thing.
#![no_main]

use greenlight_core::model::OtaLayout;
use greenlight_core::rainmaker::parse::{parse_config, ConfigInfo, MAX_SHORT};
use greenlight_fuzz::{check, json_or, shapes::ConfigShape};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

/// The config a node following `c` would publish.
fn canonical(c: &ConfigInfo) -> Value {
    let mut info = serde_json::Map::new();
    for (k, v) in [
        ("name", &c.name),
        ("fw_version", &c.fw_version),
        ("model", &c.model),
    ] {
        if let Some(v) = v {
            info.insert(k.into(), json!(v));
        }
    }
    let mut services = vec![];
    if let Some(o) = &c.ota {
        services.push(
            json!({"name": o.service, "type": "esp.service.ota", "params": [
                {"name": o.operation, "type": "esp.param.ota_operation", "data_type": "string"},
                {"name": o.info, "type": "esp.param.ota_info", "data_type": "object"},
            ]}),
        );
    } else if let Some(s) = &c.stock {
        let mut params = vec![];
        if let Some(n) = &s.status {
            params.push(json!({"name": n, "type": "esp.param.ota_status", "data_type": "string"}));
        }
        if let Some(n) = &s.info {
            params.push(json!({"name": n, "type": "esp.param.ota_info", "data_type": "string"}));
        }
        services.push(json!({"name": s.service, "type": "esp.service.ota", "params": params}));
    }
    json!({"info": info, "services": services})
}

fuzz_target!(|data: &[u8]| {
    let Some(v) = json_or(data, |s: ConfigShape| s.to_json()) else {
        return;
    };
    let Some(c) = parse_config(&v) else {
        assert!(v.get("info").and_then(Value::as_object).is_none());
        return;
    };
    for s in [&c.name, &c.model].into_iter().flatten() {
        check::clean_text(s, MAX_SHORT);
    }
    if let Some(f) = &c.fw_version {
        check::short(f);
    }
    if let Some(o) = &c.ota {
        check::short(&o.service);
        check::short(&o.info);
        check::short(&o.operation);
    }
    if let Some(s) = &c.stock {
        check::short(&s.service);
        for n in [&s.status, &s.info].into_iter().flatten() {
            check::short(n);
        }
    }
    assert!(
        !(c.ota.is_some() && c.stock.is_some()),
        "two layouts at once"
    );
    match c.layout() {
        Some(OtaLayout::UserApproval) => assert!(c.ota.is_some()),
        Some(OtaLayout::Stock) => assert!(c.stock.is_some()),
        None => assert!(c.ota.is_none() && c.stock.is_none()),
    }
    let again = parse_config(&canonical(&c));
    assert_eq!(again.as_ref(), Some(&c), "config does not round-trip");
});
