//! A node's params report (`params/local`, `params/local/init`, the sweep's
//! `params`) read by each layout of the OTA service: the user-approval
//! layout (`Info` offer, by the names its config declared or the usual
//! ones), the stock SDK layout (`Status`/`Info` free text, never an
//! offer), and the last will (`Connectivity`).
//!
//! Properties: an unknown node is read as the user-approval layout with
//! the usual names; an offer is what `parse_info` makes of the named param;
//! a stock node never yields an offer, and its text is bounded and clean;
//! connectivity is exactly `Connectivity.Connected` when that is a bool.
#![no_main]

use arbitrary::Arbitrary;
use greenlight_core::model::OtaNames;
use greenlight_core::rainmaker::mqtt::{read_ota_params, NodeOta};
use greenlight_core::rainmaker::parse::{params_connectivity, parse_info, StockNames};
use greenlight_core::rainmaker::InfoReport;
use greenlight_fuzz::{check, input, shapes::ParamsShape, Input, Str};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[derive(Debug, Arbitrary)]
struct Generated {
    params: ParamsShape,
    names: Option<(Str, Str, Str)>,
    status_name: Option<Str>,
}

fuzz_target!(|data: &[u8]| {
    let (params, names, status) = match input::<Generated>(data) {
        None => return,
        Some(Input::Json(v)) => (v, None, None),
        Some(Input::Generated(i)) => (i.params.to_json(), i.names, i.status_name),
    };
    let connectivity = params_connectivity(&params);
    let want = params
        .get("Connectivity")
        .and_then(|c| c.get("Connected"))
        .and_then(Value::as_bool);
    assert_eq!(connectivity, want);

    let approval = match names {
        Some((s, i, o)) => OtaNames {
            service: s.0,
            info: i.0,
            operation: o.0,
        },
        None => OtaNames::default(),
    };
    let stock = StockNames {
        service: approval.service.clone(),
        status: status.map(|s| s.0).or(Some("Status".into())),
        info: Some(approval.info.clone()),
    };

    // User-approval layout.
    let (info, text) = read_ota_params(&params, Some(&NodeOta::Approval(approval.clone())), "N");
    assert_eq!(text, None);
    let named = params
        .get(&approval.service)
        .and_then(|s| s.get(&approval.info));
    match (&info, named.map(parse_info)) {
        (InfoReport::Unknown, None | Some(Err(_))) => {}
        (InfoReport::Empty, Some(Ok(None))) => {}
        (InfoReport::Pending(p), Some(Ok(Some(q)))) => {
            assert_eq!(p, &q);
            check::short(&p.job_id);
            check::short(&p.fw_version);
        }
        (got, want) => panic!("read {got:?}, Info parses as {want:?}"),
    }

    // A node whose config was never seen: the usual names.
    let unknown = read_ota_params(&params, None, "N");
    let usual = read_ota_params(&params, Some(&NodeOta::Approval(OtaNames::default())), "N");
    assert_eq!(unknown, usual);

    // Stock layout: free text, never an offer.
    let (info, text) = read_ota_params(&params, Some(&NodeOta::Stock(stock)), "N");
    assert_eq!(info, InfoReport::Unknown);
    if let Some(t) = text {
        assert!(!t.is_empty());
        check::clean_text(&t, 200);
    }
});
