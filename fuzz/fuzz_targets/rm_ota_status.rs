//! A `GET user/nodes/ota_status` answer and what the engine makes of its
//! status and text: the class (`classify_status`), the attempt, the
//! percentage, the delay reason and the plain reason shown to people.
//!
//! Properties: status and text bounded and clean, timestamp not negative;
//! attempts `1 <= n <= of <= 20`; percentages `<= 100`; every reason and
//! rollback text bounded and clean; a report written back reads the same.
#![no_main]

use greenlight_core::rainmaker::parse::{
    attempt_in, classify_status, delay_reason, percent_from_text, plain_reason_for_text,
    StatusClass, MAX_TEXT,
};
use greenlight_core::rainmaker::rest::status_from_body;
use greenlight_fuzz::{check, json_or, shapes::StatusShape};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Some(v) = json_or(data, |s: StatusShape| s.rest_json()) else {
        return;
    };
    let r = status_from_body(&v);
    check::clean_text(&r.status, 40);
    check::clean_text(&r.text, MAX_TEXT);
    assert!(r.timestamp >= 0);
    let back = status_from_body(&json!({"status": r.status, "additional_info": r.text}));
    assert_eq!((&back.status, &back.text), (&r.status, &r.text));

    if let Some(a) = attempt_in(&r.text) {
        assert!(1 <= a.n && a.n <= a.of && a.of <= 20, "{a:?}");
    }
    if let Some(p) = percent_from_text(&r.text) {
        assert!(p <= 100);
    }
    check::clean_text(&plain_reason_for_text(&r.text), 200);
    let _ = delay_reason(&r.text);
    match classify_status(&r.status, &r.text) {
        StatusClass::InProgress { attempt: Some(a) }
        | StatusClass::Failed {
            attempt: Some(a), ..
        } => {
            assert!(1 <= a.n && a.n <= a.of && a.of <= 20, "{a:?}");
        }
        StatusClass::Rejected(reason) => check::clean_text(&reason, 200),
        StatusClass::RolledBack { text, .. } => check::clean_text(&text, 200),
        _ => {}
    }
    if let StatusClass::Failed { reason, .. } = classify_status(&r.status, &r.text) {
        // "download failed (<cause>)" wraps a cause of at most 200 characters.
        check::clean_text(&reason, 200 + "download failed ()".len());
    }
});
