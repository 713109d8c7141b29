//! The `Info` param of a node's OTA service (user-approval layout), in each
//! shape a node reports it: an object, the string `"{}"`, a string holding
//! JSON, or garbage (`rainmaker::parse::parse_info`).
//!
//! Properties: an offer's job id and version are short, trimmed and clean;
//! an offer read back from `{"job_id","fw_version"}` (object or string
//! form) is the same offer; an object and the string holding it are read
//! the same way.
#![no_main]

use greenlight_core::rainmaker::parse::{parse_info, OtaInfo};
use greenlight_fuzz::{check, json_or, shapes::InfoShape};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let Some(v) = json_or(data, |s: InfoShape| s.to_json()) else {
        return;
    };
    let got = parse_info(&v);
    if let Ok(Some(OtaInfo { job_id, fw_version })) = &got {
        check::short(job_id);
        check::short(fw_version);
        let again = json!({"job_id": job_id, "fw_version": fw_version});
        assert_eq!(parse_info(&again), got, "offer does not round-trip");
        assert_eq!(
            parse_info(&Value::String(again.to_string())),
            got,
            "offer does not round-trip through the string form"
        );
    }
    if v.is_object() {
        assert_eq!(
            parse_info(&Value::String(v.to_string())),
            got,
            "an object and the string holding it differ"
        );
    }
});
