//! MQTT topics and node ids: `parse::parse_topic` (both forms) and
//! `parse::validate_node_id`.
//!
//! Properties: an accepted node id is 1..=128 of `[A-Za-z0-9._:-]` (never
//! `/`, `+`, `#`, `$` or NUL), taken from the topic; validation agrees with
//! that reference; the plain and basic-ingest topics built from an accepted
//! id and suffix parse back to the same; the subscription filters are
//! well-formed.
#![no_main]

use greenlight_core::rainmaker::parse::{
    ingest_filters, parse_topic, plain_filters, validate_node_id, Suffix,
};
use greenlight_fuzz::check;
use libfuzzer_sys::fuzz_target;

fn suffix_text(s: Suffix) -> &'static str {
    match s {
        Suffix::Config => "config",
        Suffix::ParamsInit => "params/local/init",
        Suffix::Params => "params/local",
        Suffix::OtaStatus => "otastatus",
        Suffix::OtaFetch => "otafetch",
        Suffix::OtaUrl => "otaurl",
    }
}

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    assert_eq!(
        validate_node_id(&s).is_ok(),
        check::node_id_ok(&s),
        "node id validation disagrees with the reference: {s:?}"
    );
    if let Some((id, sfx)) = parse_topic(&s) {
        check::node_id(id);
        assert!(s.contains(&format!("node/{id}/{}", suffix_text(sfx))));
        assert!(s.ends_with(suffix_text(sfx)));
        let plain = format!("node/{id}/{}", suffix_text(sfx));
        assert_eq!(parse_topic(&plain), Some((id, sfx)));
        let ingest = format!("$aws/rules/any_rule/node/{id}/{}", suffix_text(sfx));
        assert_eq!(parse_topic(&ingest), Some((id, sfx)));
    }
    // The same bytes as a node id in a topic.
    for sfx in ["config", "otastatus", "params/local"] {
        let t = format!("node/{s}/{sfx}");
        if let Some((id, _)) = parse_topic(&t) {
            check::node_id(id);
            assert_eq!(id, s, "{t:?}");
        }
    }
    if data.is_empty() {
        for f in plain_filters().iter().chain(ingest_filters().iter()) {
            assert!(f.contains("/node/+/") || f.starts_with("node/+/"), "{f}");
        }
    }
});
