//! Bounded fuzzing of every parser that reads what a node, a cloud, a broker
//! or a Blynk device sends, with proptest: the quick guard that runs in every
//! `cargo test`, with no instrumented build. The coverage-guided fuzzing of
//! the same parsers is `fuzz/` (cargo-fuzz, `make fuzz`; `make test` runs it
//! briefly); these properties stay because they run everywhere, in seconds,
//! and a few check what the fuzz targets do not (the MQTT size cap before
//! parsing, `clean`/`short` directly, percentages built to round-trip).
//!
//! Inputs are arbitrary bytes and strings, arbitrary JSON, and JSON shaped
//! like the real messages but with hostile values (control characters,
//! wildcards, huge or deep values, wrong types).
//!
//! Properties: no panic; what comes out is bounded and clean (no control
//! characters, node ids safe in a topic); round trips where there is an
//! inverse; agreement with a simple reference implementation (and, for the
//! Blynk build tag, between our client and the simulated server).
//!
//! Each property runs a fixed number of cases (see `cases`), so the whole
//! file stays within a few seconds in `cargo test`; `PROPTEST_CASES=N` runs N
//! cases of every property instead, for a longer hunt. A failure prints the
//! shrunk input and the seed; proptest keeps it in
//! `tests/tests/fuzz_parsers.proptest-regressions` (commit that file), and a
//! crash found here gets a named regression test at the end of this file.

use std::collections::HashMap;

use greenlight_core::blynk::firmware::{build_tag, Firmware, BUILD_MARKER};
use greenlight_core::blynk::users::{devices_of, token_hint};
use greenlight_core::rainmaker::mqtt::{self, on_publish, MAX_PAYLOAD};
use greenlight_core::rainmaker::parse::{
    self, classify_status, clean, jwt_times, parse_config, parse_error_body, parse_info,
    parse_topic, percent_from_text, plain_reason_for_text, short_field, validate_node_id, OtaInfo,
    Suffix, MAX_NODE_ID, MAX_SHORT, MAX_TEXT,
};
use greenlight_core::rainmaker::rest::{offer_from_body, page_from_body, status_from_body};
use greenlight_core::rainmaker::sweep::report_from_detail;
use greenlight_core::rainmaker::{Fact, InfoReport};
use greenlight_core::tls::{normalize_fingerprint, pretty};
use greenlight_sim::blynk::protocol::{body_parts, Frame, FrameDecoder, FrameError};
use greenlight_sim::blynk::server::HardwareInfo;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Value};

/// `PROPTEST_CASES` when set, else `default`: the per-property budget.
fn cases(default: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases: n,
        // Shrinking a failure is bounded too (it only runs on a failure).
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}

// ---- generators ------------------------------------------------------------

/// Strings meant to hurt: control characters, NUL, topic wildcards, quotes,
/// non-ASCII, `%` and digits next to each other, and long runs.
fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        2 => proptest::collection::vec(
            prop_oneof![
                Just('\0'), Just('\n'), Just('\r'), Just('\u{7f}'), Just('\u{1b}'),
                Just('\u{85}'), Just('\u{2028}'), Just('+'), Just('#'), Just('/'),
                Just('$'), Just(' '), Just('%'), Just('"'), Just('\\'), Just('<'),
                Just('{'), Just('}'), Just('Ä'), Just('🔥'), Just('\u{feff}'),
                proptest::char::range('0', '9'), proptest::char::range('a', 'z'),
            ],
            0..64,
        ).prop_map(|v| v.into_iter().collect()),
        1 => (any::<char>(), 100usize..5000).prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
        1 => Just(String::new()),
        1 => Just("{}".to_string()),
        1 => Just(" { } ".to_string()),
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        hostile_string().prop_map(Value::String),
    ]
}

/// Arbitrary JSON up to a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::vec((hostile_string(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A value for a field a parser looks at: usually plausible, often not.
fn field() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => "[A-Za-z0-9._:-]{1,20}".prop_map(Value::String),
        2 => json_leaf(),
        1 => any_json(),
    ]
}

/// An object with some of `keys` (plausible or hostile values) and some junk keys.
fn shaped(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    (
        proptest::collection::vec((proptest::sample::select(keys), field()), 0..keys.len() + 2),
        proptest::collection::vec((hostile_string(), json_leaf()), 0..3),
    )
        .prop_map(|(kv, junk)| {
            let mut m = serde_json::Map::new();
            for (k, v) in junk {
                m.insert(k, v);
            }
            for (k, v) in kv {
                m.insert(k.to_string(), v);
            }
            Value::Object(m)
        })
}

/// Node configs: the real shape with hostile values here and there.
fn config_json() -> impl Strategy<Value = Value> {
    let param = shaped(&["name", "type", "data_type", "properties"]);
    let ota_param = (
        prop_oneof![
            Just("esp.param.ota_info"),
            Just("esp.param.ota_operation"),
            Just("esp.param.other")
        ],
        field(),
    )
        .prop_map(|(t, name)| json!({"type": t, "name": name}));
    let service = (
        prop_oneof![Just(json!("esp.service.ota")), field()],
        field(),
        proptest::collection::vec(prop_oneof![ota_param, param], 0..4),
    )
        .prop_map(|(t, name, params)| json!({"type": t, "name": name, "params": params}));
    (
        prop_oneof![
            3 => shaped(&["name", "fw_version", "model", "type", "project_name"]),
            1 => any_json()
        ],
        proptest::collection::vec(service, 0..3),
        field(),
    )
        .prop_map(|(info, services, node_id)| {
            json!({"node_id": node_id, "info": info, "services": services, "devices": []})
        })
}

/// The `Info` param in every shape: objects, strings holding JSON, garbage.
fn info_value() -> impl Strategy<Value = Value> {
    let obj = || shaped(&["job_id", "fw_version"]);
    prop_oneof![
        3 => obj(),
        2 => obj().prop_map(|o| Value::String(o.to_string())),
        1 => any_json(),
        1 => any_json().prop_map(|v| Value::String(v.to_string())),
        1 => hostile_string().prop_map(Value::String),
    ]
}

fn valid_node_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._:-]{1,128}"
}

fn suffix() -> impl Strategy<Value = (Suffix, &'static str, &'static str)> {
    proptest::sample::select(vec![
        (Suffix::Config, "config", "esp_node_config"),
        (Suffix::ParamsInit, "params/local/init", "esp_init_params"),
        (Suffix::Params, "params/local", "esp_set_params"),
        (Suffix::OtaStatus, "otastatus", "esp_node_otastatus"),
        (Suffix::OtaFetch, "otafetch", "esp_node_otafetch"),
    ])
}

/// What comes out of a parser for people to see: bounded and clean.
fn clean_text(s: &str, max: usize) -> Result<(), TestCaseError> {
    prop_assert!(
        s.chars().count() <= max,
        "{} chars > {max}",
        s.chars().count()
    );
    prop_assert!(
        !s.chars().any(char::is_control),
        "control character in {s:?}"
    );
    Ok(())
}

fn short_ok(s: &str) -> Result<(), TestCaseError> {
    prop_assert!(!s.is_empty() && s.len() <= MAX_SHORT, "{s:?}");
    prop_assert!(s.trim() == s);
    clean_text(s, MAX_SHORT)
}

/// The reference for node ids: 1..=128 of `[A-Za-z0-9._:-]`.
fn reference_node_id_ok(id: &str) -> bool {
    (1..=MAX_NODE_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

// ---- RainMaker: topics and node ids -----------------------------------------

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn node_id_validation_agrees_with_the_reference(id in prop_oneof![hostile_string(), valid_node_id(), "[A-Za-z0-9+#/$ ._:-]{0,140}"]) {
        prop_assert_eq!(validate_node_id(&id).is_ok(), reference_node_id_ok(&id), "{:?}", id);
    }

    #[test]
    fn any_topic_parses_to_a_safe_node_id_or_nothing(topic in prop_oneof![
        any::<String>(),
        hostile_string(),
        (hostile_string(), suffix()).prop_map(|(id, (_, s, _))| format!("node/{id}/{s}")),
        (hostile_string(), hostile_string(), suffix()).prop_map(|(rule, id, (_, s, _))| format!("$aws/rules/{rule}/node/{id}/{s}")),
    ]) {
        if let Some((id, _)) = parse_topic(&topic) {
            prop_assert!(reference_node_id_ok(id), "{:?} from {:?}", id, topic);
            prop_assert!(!id.contains(['+', '#', '/', '$', '\0']));
            prop_assert!(topic.contains(id));
        }
    }

    #[test]
    fn topics_round_trip_in_both_forms(id in valid_node_id(), (sfx, s, rule) in suffix()) {
        let (plain, ingest) = (format!("node/{id}/{s}"), format!("$aws/rules/{rule}/node/{id}/{s}"));
        prop_assert_eq!(parse_topic(&plain), Some((id.as_str(), sfx)));
        prop_assert_eq!(parse_topic(&ingest), Some((id.as_str(), sfx)));
        // The same with anything after it, or a wildcard for the id, is not a node message.
        for t in [format!("node/{id}/{s}/x"), format!("node/+/{s}"), format!("node/#/{s}")] {
            prop_assert_eq!(parse_topic(&t), None);
        }
    }

    #[test]
    fn clean_and_short_field_bound_what_they_keep(s in hostile_string(), max in 0usize..300) {
        clean_text(&clean(&s, max), max)?;
        if let Some(v) = short_field(Some(&Value::String(s.clone()))) {
            short_ok(&v)?;
            prop_assert_eq!(v.as_str(), s.trim());
        }
    }
}

// ---- RainMaker: payloads --------------------------------------------------------

proptest! {
    #![proptest_config(cases(1500))]

    #[test]
    fn info_in_any_shape_gives_clean_fields_or_an_error(v in info_value()) {
        if let Ok(Some(OtaInfo { job_id, fw_version })) = parse_info(&v) {
            short_ok(&job_id)?;
            short_ok(&fw_version)?;
        }
    }

    #[test]
    fn info_round_trips_as_object_and_as_string(job in "[A-Za-z0-9._-]{1,64}", fw in "[0-9][0-9.a-z+-]{0,30}") {
        let want = Some(OtaInfo { job_id: job.clone(), fw_version: fw.clone() });
        let obj = json!({"job_id": job, "fw_version": fw});
        prop_assert_eq!(parse_info(&obj), Ok(want.clone()));
        prop_assert_eq!(parse_info(&Value::String(obj.to_string())), Ok(want));
    }

    #[test]
    fn configs_give_clean_fields(v in prop_oneof![3 => config_json(), 1 => any_json()]) {
        if let Some(c) = parse_config(&v) {
            for s in [&c.name, &c.model].into_iter().flatten() {
                clean_text(s, MAX_SHORT)?;
            }
            if let Some(f) = &c.fw_version {
                short_ok(f)?;
            }
            if let Some(o) = &c.ota {
                short_ok(&o.service)?;
                short_ok(&o.info)?;
                short_ok(&o.operation)?;
            }
        }
    }

    #[test]
    fn node_details_from_a_sweep_give_safe_reports(v in prop_oneof![
        (field(), config_json(), prop_oneof![any_json(), info_value().prop_map(|i| json!({"OTA": {"Info": i}}))], any_json())
            .prop_map(|(id, config, params, status)| json!({"id": id, "config": config, "params": params, "status": status})),
        any_json(),
    ]) {
        if let Some(r) = report_from_detail(&v) {
            prop_assert!(reference_node_id_ok(&r.node_id), "{:?}", r.node_id);
            if let InfoReport::Pending(i) = &r.info {
                short_ok(&i.job_id)?;
                short_ok(&i.fw_version)?;
            }
        }
    }

    #[test]
    fn node_list_pages_never_panic(v in prop_oneof![
        (proptest::collection::vec(any_json(), 0..4), field()).prop_map(|(d, n)| json!({"node_details": d, "next_id": n})),
        any_json(),
    ]) {
        let (details, next) = page_from_body(&v);
        prop_assert!(next.is_none_or(|n| !n.is_empty()));
        for d in &details {
            let _ = report_from_detail(d);
        }
    }

    #[test]
    fn ota_update_answers_give_clean_offers(v in prop_oneof![
        3 => shaped(&["status", "ota_available", "description", "fw_version", "ota_job_id", "file_size", "url", "file_md5"]),
        1 => (shaped(&["description", "fw_version", "ota_job_id", "file_size"]))
            .prop_map(|mut o| { o["ota_available"] = json!(true); o }),
        1 => any_json(),
    ]) {
        match offer_from_body(&v) {
            Ok(Some(o)) => {
                prop_assert_eq!(v.get("ota_available"), Some(&json!(true)));
                short_ok(&o.job_id)?;
                short_ok(&o.fw_version)?;
                if let Some(d) = &o.description {
                    clean_text(d, MAX_TEXT)?;
                }
            }
            Ok(None) => prop_assert_ne!(v.get("ota_available"), Some(&json!(true))),
            Err(_) => prop_assert_eq!(v.get("ota_available"), Some(&json!(true))),
        }
    }

    #[test]
    fn ota_status_answers_give_clean_reports(v in prop_oneof![
        3 => shaped(&["node_id", "status", "timestamp", "additional_info", "ts_source"]),
        1 => any_json(),
    ]) {
        let r = status_from_body(&v);
        clean_text(&r.status, 40)?;
        clean_text(&r.text, MAX_TEXT)?;
        let _ = classify_status(&r.status, &r.text);
        clean_text(&plain_reason_for_text(&r.text), 200)?;
        if let Some(p) = percent_from_text(&r.text) {
            prop_assert!(p <= 100);
        }
    }

    #[test]
    fn error_bodies_of_any_kind_give_a_bounded_description(
        http in 100u16..600,
        body in prop_oneof![
            2 => shaped(&["status", "error_code", "description"]).prop_map(|v| v.to_string()),
            1 => any_json().prop_map(|v| v.to_string()),
            1 => hostile_string(),
        ],
    ) {
        let e = parse_error_body(http, &body);
        prop_assert_eq!(e.http, http);
        clean_text(&e.description, 300)?;
        let _ = e.to_string();
    }

    #[test]
    fn error_codes_round_trip_as_integer_or_string(code in any::<u32>(), text in "[ -~]{0,80}", as_string in any::<bool>()) {
        let c = if as_string { json!(code.to_string()) } else { json!(code) };
        let body = json!({"status": "failure", "error_code": c, "description": text}).to_string();
        let e = parse_error_body(400, &body);
        prop_assert_eq!(e.code, u64::from(code));
        prop_assert_eq!(e.description, text);
    }

    #[test]
    fn percentages_round_trip_and_stay_in_range(n in 0u16..1000, pre in "[A-Za-z ]{0,20}", post in "[A-Za-z ]{0,20}", junk in hostile_string()) {
        let t = format!("{pre}{n}%{post}");
        let want = (n <= 100 && !pre.ends_with(|c: char| c.is_ascii_digit())).then_some(n as u8);
        prop_assert_eq!(percent_from_text(&t), want, "{:?}", t);
        if let Some(p) = percent_from_text(&junk) {
            prop_assert!(p <= 100);
        }
    }

    #[test]
    fn jwt_expiry_round_trips_and_garbage_is_none(exp in any::<u64>(), iat in proptest::option::of(any::<u64>()), junk in hostile_string()) {
        use base64::Engine as _;
        let mut claims = json!({"exp": exp, "sub": "x"});
        if let Some(i) = iat {
            claims["iat"] = json!(i);
        }
        let p = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
        prop_assert_eq!(jwt_times(&format!("h.{p}.s")), Some((iat, exp)));
        let _ = jwt_times(&junk);
    }
}

// ---- RainMaker: whole MQTT messages ---------------------------------------------

fn topic_for_fuzz() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (prop_oneof![3 => valid_node_id(), 1 => hostile_string()], suffix())
            .prop_map(|(id, (_, s, _))| format!("node/{id}/{s}")),
        1 => (valid_node_id(), suffix()).prop_map(|(id, (_, s, rule))| format!("$aws/rules/{rule}/node/{id}/{s}")),
        1 => any::<String>(),
    ]
}

fn payload_for_fuzz() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => proptest::collection::vec(any::<u8>(), 0..512),
        2 => info_value().prop_map(|i| json!({"OTA": {"Info": i}}).to_string().into_bytes()),
        1 => config_json().prop_map(|v| v.to_string().into_bytes()),
        1 => shaped(&["ota_job_id", "status", "additional_info", "ts"]).prop_map(|v| v.to_string().into_bytes()),
        1 => shaped(&["node_id", "fw_version"]).prop_map(|v| v.to_string().into_bytes()),
        1 => any_json().prop_map(|v| v.to_string().into_bytes()),
        // Deep nesting and invalid UTF-8 inside otherwise plausible JSON.
        1 => (1usize..3000).prop_map(|d| format!("{{\"OTA\":{{\"Info\":{}{}}}}}", "[".repeat(d), "]".repeat(d)).into_bytes()),
        1 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(|junk| {
            let mut v = br#"{"OTA":{"Info":{"job_id":""#.to_vec();
            v.extend(junk);
            v.extend_from_slice(br#"","fw_version":"1"}}}"#);
            v
        }),
    ]
}

proptest! {
    #![proptest_config(cases(1500))]

    #[test]
    fn any_mqtt_message_becomes_a_safe_fact_or_nothing(msgs in proptest::collection::vec((topic_for_fuzz(), payload_for_fuzz()), 1..6)) {
        // One name table across the messages, as in a connection: a config
        // may rename the OTA params that later params messages are read by.
        let mut names = HashMap::new();
        for (topic, payload) in &msgs {
            match on_publish("acct", topic, payload, &mut names) {
                None => {}
                Some(Fact::Nodes { nodes, complete, .. }) => {
                    prop_assert!(!complete);
                    prop_assert_eq!(nodes.len(), 1);
                    let n = &nodes[0];
                    prop_assert!(reference_node_id_ok(&n.node_id));
                    let inside = format!("node/{}/", n.node_id);
                    prop_assert!(topic.contains(&inside));
                    if let InfoReport::Pending(i) = &n.info {
                        short_ok(&i.job_id)?;
                        short_ok(&i.fw_version)?;
                    }
                    if let Some(f) = &n.fw_version {
                        short_ok(f)?;
                    }
                }
                Some(Fact::OtaStatus { node_id, job_id, status, text, ts, .. }) => {
                    prop_assert!(reference_node_id_ok(&node_id));
                    short_ok(&job_id)?;
                    clean_text(&status, 40)?;
                    clean_text(&text, MAX_TEXT)?;
                    prop_assert!(ts >= 0);
                }
                Some(other) => prop_assert!(false, "unexpected fact {:?}", other),
            }
        }
    }

    #[test]
    fn broker_urls_never_panic(url in prop_oneof![hostile_string(), "(mqtts?|tcp|ssl)://[a-z0-9.:\\[\\]]{0,30}(:[0-9]{0,7})?/?"]) {
        if let Ok((host, _port, _tls)) = mqtt::parse_url(&url) {
            prop_assert!(!host.is_empty());
        }
    }

    #[test]
    fn fingerprints_normalise_or_refuse(s in prop_oneof![hostile_string(), "[0-9a-fA-F: -]{0,100}"], bytes in proptest::collection::vec(any::<u8>(), 32)) {
        if let Ok(fp) = normalize_fingerprint(&s) {
            prop_assert_eq!(fp.len(), 64);
            prop_assert!(fp.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
        // Round trip: the colon form shown to people is read back as the same pin.
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        prop_assert_eq!(normalize_fingerprint(&pretty(&hex)).ok(), Some(hex));
    }
}

#[test]
fn oversized_messages_are_dropped_before_parsing() {
    let mut names = HashMap::new();
    let big = format!(
        "{{\"OTA\":{{\"Info\":{{\"job_id\":\"J\",\"fw_version\":\"{}\"}}}}}}",
        "9".repeat(MAX_PAYLOAD)
    );
    assert!(on_publish("a", "node/N/params/local", big.as_bytes(), &mut names).is_none());
}

// ---- Blynk: build tags, firmware, the admin API's user JSON -------------------------

/// The reference: a naive scan for the first marker, value up to the next NUL.
fn reference_build_tag(bytes: &[u8]) -> Option<String> {
    let m = BUILD_MARKER;
    let mut i = 0;
    while i + m.len() <= bytes.len() {
        if &bytes[i..i + m.len()] == m {
            let mut end = i + m.len();
            while end < bytes.len() && bytes[end] != 0 {
                end += 1;
            }
            let v = String::from_utf8(bytes[i + m.len()..end].to_vec()).ok()?;
            return (!v.is_empty()).then_some(v);
        }
        i += 1;
    }
    None
}

/// Byte soup with markers, partial markers and NULs sprinkled in.
fn image_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..40),
        2 => Just(BUILD_MARKER.to_vec()),
        1 => Just(b"\0build".to_vec()),
        1 => Just(b"build\0".to_vec()),
        1 => Just(vec![0u8]),
        1 => "[ -~]{0,24}".prop_map(String::into_bytes),
        1 => Just(vec![0xff, 0xfe]),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(cases(3000))]

    #[test]
    fn build_tag_agrees_with_the_reference_and_the_simulated_server(bytes in image_bytes()) {
        let ours = build_tag(&bytes);
        prop_assert_eq!(&ours, &reference_build_tag(&bytes));
        prop_assert_eq!(&ours, &greenlight_sim::blynk::build_tag(&bytes));
        match Firmware::from_bytes("fuzz.bin", bytes.clone()) {
            Ok(fw) => {
                prop_assert_eq!(Some(fw.build().to_string()), ours);
                prop_assert_eq!(fw.size() as usize, bytes.len());
                prop_assert!(fw.upload_size() > fw.size());
            }
            Err(_) => prop_assert!(ours.is_none() || bytes.is_empty()),
        }
    }

    #[test]
    fn build_tags_round_trip_through_an_image(build in "[ -~]{1,40}", size in 0usize..4096) {
        let img = greenlight_sim::blynk::make_firmware(&build, size);
        prop_assert_eq!(build_tag(&img), Some(build));
    }
}

fn user_json() -> impl Strategy<Value = Value> {
    let hw = shaped(&["version", "boardType", "build", "templateId"]);
    let device = (
        shaped(&["id", "name", "status", "boardType"]),
        prop_oneof![hw, any_json()],
        "[A-Za-z0-9]{32}",
    )
        .prop_map(|(mut d, hw, token)| {
            d["hardwareInfo"] = hw;
            d["token"] = json!(token);
            d
        });
    let dash = (
        shaped(&["id", "name"]),
        proptest::collection::vec(device, 0..4),
    )
        .prop_map(|(mut d, devs)| {
            d["devices"] = json!(devs);
            d
        });
    (
        shaped(&["email", "name", "appName"]),
        proptest::collection::vec(dash, 0..3),
    )
        .prop_map(|(mut u, dashes)| {
            u["profile"] = json!({"dashBoards": dashes});
            u
        })
}

proptest! {
    #![proptest_config(cases(800))]

    #[test]
    fn blynk_user_json_gives_clean_devices_and_never_the_token(u in prop_oneof![3 => user_json(), 1 => any_json()], token in proptest::option::of("[A-Za-z0-9]{32}")) {
        let (devs, _found) = devices_of(&u, token.as_deref());
        for d in &devs {
            clean_text(&d.name, 128)?;
            clean_text(&d.owner, 128)?;
            clean_text(&d.project, 128)?;
            prop_assert!(d.token_hint.chars().count() <= 5);
            if let Some(b) = &d.build {
                prop_assert!(b.len() <= 256 && !b.chars().any(char::is_control));
            }
        }
        // No device token is kept, only a hint of a few characters.
        let shown = format!("{devs:?}");
        let dashes = u.pointer("/profile/dashBoards").and_then(Value::as_array).cloned().unwrap_or_default();
        for d in dashes.iter().filter_map(|d| d.get("devices")?.as_array().cloned()).flatten() {
            if let Some(t) = d.get("token").and_then(Value::as_str) {
                prop_assert!(!shown.contains(t), "token {} kept", t);
            }
        }
        if let Some(t) = &token {
            prop_assert!(token_hint(t).chars().count() <= 5);
        }
    }
}

// ---- Blynk: hardware frames (the simulated server parses what devices send) ---------

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (any::<u16>(), any::<u16>()).prop_map(|(id, status)| Frame::Response { id, status }),
        (
            1u8..=255,
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(cmd, id, body)| Frame::Message { cmd, id, body }),
    ]
}

proptest! {
    #![proptest_config(cases(1500))]

    #[test]
    fn frames_round_trip_through_any_split(frames in proptest::collection::vec(frame(), 1..8), cuts in proptest::collection::vec(1usize..64, 1..40)) {
        let mut wire = vec![];
        for f in &frames {
            wire.extend(f.encode().unwrap());
        }
        let mut dec = FrameDecoder::new(300);
        let mut got = vec![];
        let mut rest = wire.as_slice();
        let mut cuts = cuts.into_iter().cycle();
        while !rest.is_empty() {
            let n = cuts.next().unwrap().min(rest.len());
            dec.push(&rest[..n]);
            rest = &rest[n..];
            while let Some(f) = dec.next_frame().unwrap() {
                got.push(f);
            }
        }
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn any_byte_stream_decodes_to_bounded_frames_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..2048), max in 0usize..600) {
        let mut dec = FrameDecoder::new(max);
        dec.push(&bytes);
        // Each frame consumes at least 5 bytes: this loop is bounded.
        for _ in 0..=bytes.len() / 5 + 1 {
            match dec.next_frame() {
                Ok(Some(Frame::Message { body, .. })) => prop_assert!(body.len() <= max),
                Ok(Some(Frame::Response { .. })) => {}
                Ok(None) => break,
                Err(FrameError::TooLong { len, .. }) => {
                    prop_assert!(len > max);
                    break;
                }
                Err(e) => prop_assert!(false, "{}", e),
            }
        }
        prop_assert!(dec.next_frame().map(|f| f.is_none()).unwrap_or(true));
    }

    #[test]
    fn device_info_bodies_never_panic(body in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..400),
        proptest::collection::vec(prop_oneof![
            Just("ver".to_string()), Just("h-beat".to_string()), Just("buff-in".to_string()),
            Just("build".to_string()), Just("dev".to_string()), hostile_string(),
            any::<i64>().prop_map(|n| n.to_string()),
        ], 0..12).prop_map(|parts| parts.join("\0").into_bytes()),
    ]) {
        let parts = body_parts(&body);
        prop_assert!(parts.len() <= body.len() + 1);
        let info = HardwareInfo::parse(&parts);
        prop_assert!(info.buff_in > 0);
        // Bodies too long for a frame are refused, not truncated.
        let f = Frame::Message { cmd: 17, id: 1, body: body.clone() };
        prop_assert_eq!(f.encode().is_ok(), body.len() <= u16::MAX as usize);
    }
}

// ---- regressions -----------------------------------------------------------------
// Inputs that once broke a parser (found by the properties above) are kept
// here by name.

#[test]
fn parse_module_is_the_one_fuzzed() {
    // Keeps the import list honest if the parse module moves.
    assert_eq!(parse::MAX_NODE_ID, MAX_NODE_ID);
}
