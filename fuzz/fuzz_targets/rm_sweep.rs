//! A `GET user/nodes?node_details=true` page and each of its
//! `node_details` entries (`rest::page_from_body`,
//! `sweep::report_from_detail`).
//!
//! Properties: `next_id` is never empty; a report's node id is one that
//! is safe in a topic and a query; its config is what `parse_config` makes
//! of the entry's `config`; a change time is positive; an offer is clean.
#![no_main]

use greenlight_core::rainmaker::parse::parse_config;
use greenlight_core::rainmaker::rest::page_from_body;
use greenlight_core::rainmaker::sweep::report_from_detail;
use greenlight_core::rainmaker::InfoReport;
use greenlight_fuzz::{check, json_or, shapes::PageShape};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(v) = json_or(data, |s: PageShape| s.to_json()) else {
        return;
    };
    let (details, next) = page_from_body(&v);
    if let Some(n) = &next {
        assert!(!n.is_empty());
    }
    for d in &details {
        let Some(r) = report_from_detail(d) else {
            continue;
        };
        check::node_id(&r.node_id);
        assert_eq!(r.config, d.get("config").and_then(parse_config));
        assert!(r.changed_at.is_none_or(|t| t > 0));
        assert_eq!(r.fw_version, None);
        if let InfoReport::Pending(i) = &r.info {
            check::short(&i.job_id);
            check::short(&i.fw_version);
        }
        if let Some(t) = &r.ota_text {
            check::clean_text(t, 200);
        }
    }
});
