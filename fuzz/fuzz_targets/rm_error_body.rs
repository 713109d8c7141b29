//! A RainMaker failure answer: any status code, any body (JSON with an
//! integer or string `error_code`, HTML from a proxy, nothing), read by
//! `parse::parse_error_body`, and the plain words for its code.
//!
//! Input: two bytes of HTTP status, then the body. A body that does not
//! start like JSON text is generated (`{"status","error_code",
//! "description"}` with hostile values) unless it is not UTF-8-clean
//! bytes, which are then used as they are (lossy, as `resp.text()` does).
//!
//! Properties: the status is kept; the description is bounded and clean;
//! a body written back from the error reads the same.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use greenlight_core::rainmaker::parse::{parse_error_body, plain_reason_for_code};
use greenlight_fuzz::{check, json_text, obj, Json, Key, F};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

#[derive(Debug, Arbitrary)]
enum Code {
    Int(u64),
    Text(u32),
    Other(F),
}

#[derive(Debug, Arbitrary)]
struct Body {
    code: Code,
    description: F,
    extra: Vec<(Key, Json)>,
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let http = u16::from_be_bytes([data[0], data[1]]);
    let rest = &data[2..];
    let body = match (json_text(rest), std::str::from_utf8(rest)) {
        (None, Ok(_)) => match Body::arbitrary_take_rest(Unstructured::new(rest)) {
            Ok(b) => {
                let code = match b.code {
                    Code::Int(n) => Some(json!(n)),
                    Code::Text(n) => Some(json!(n.to_string())),
                    Code::Other(f) => f.get(),
                };
                obj(
                    &[
                        ("status", Some(json!("failure"))),
                        ("error_code", code),
                        ("description", b.description.get()),
                    ],
                    &b.extra,
                )
                .to_string()
            }
            Err(_) => return,
        },
        _ => String::from_utf8_lossy(rest).into_owned(),
    };
    let e = parse_error_body(http, &body);
    assert_eq!(e.http, http);
    check::clean_text(&e.description, 300);
    let _ = e.to_string();
    let words = plain_reason_for_code(e.code, &e.description);
    check::clean_text(&words, 300);
    let again = json!({"status": "failure", "error_code": e.code, "description": e.description});
    let back = parse_error_body(http, &again.to_string());
    assert_eq!(back, e, "error body does not round-trip");
});
