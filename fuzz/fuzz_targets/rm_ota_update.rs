//! A `GET user/nodes/ota_update` answer: the cloud job waiting for the
//! user's approval, with its download window (`rest::offer_from_body`,
//! `parse::download_window`).
//!
//! Properties: an offer only when `ota_available` is `true`, an error only
//! when it is `true` without a usable job id or version; the job id and
//! version are short and clean, the release note bounded and clean, the
//! window's minutes inside a day; an offer written back reads the same.
#![no_main]

use greenlight_core::rainmaker::parse::MAX_TEXT;
use greenlight_core::rainmaker::rest::offer_from_body;
use greenlight_fuzz::{check, json_or, shapes::OfferShape};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Some(v) = json_or(data, |s: OfferShape| s.to_json()) else {
        return;
    };
    let available = v.get("ota_available") == Some(&json!(true));
    match offer_from_body(&v) {
        Ok(None) => assert!(!available),
        Err(_) => assert!(available),
        Ok(Some(o)) => {
            assert!(available);
            check::short(&o.job_id);
            check::short(&o.fw_version);
            if let Some(d) = &o.description {
                check::clean_text(d, MAX_TEXT);
            }
            if let Some(w) = &o.window {
                assert!(w.start_minute < 1440 && w.end_minute < 1440, "{w:?}");
            }
            let mut again = json!({
                "ota_available": true,
                "ota_job_id": o.job_id,
                "fw_version": o.fw_version,
                "description": o.description,
                "file_size": o.file_size,
            });
            if let Some(w) = &o.window {
                again["metadata"] = json!({"download_window": [w.start_minute, w.end_minute]});
            }
            let back = offer_from_body(&again).ok().flatten();
            assert_eq!(
                back.as_ref(),
                Some(&o),
                "offer does not round-trip: {again}"
            );
        }
    }
});
