//! The properties the parsers promise for what they let through. Each
//! panics (a crash for libFuzzer) with the offending value.

use greenlight_core::rainmaker::parse::{MAX_NODE_ID, MAX_SHORT};

/// Text shown to people: at most `max` characters, no control characters.
pub fn clean_text(s: &str, max: usize) {
    let n = s.chars().count();
    assert!(n <= max, "{n} characters > {max}: {s:?}");
    assert!(
        !s.chars().any(char::is_control),
        "control character in {s:?}"
    );
}

/// A version, job id or name: non-empty, trimmed, at most `MAX_SHORT`
/// bytes, no control characters.
pub fn short(s: &str) {
    assert!(!s.is_empty() && s.len() <= MAX_SHORT, "{s:?}");
    assert_eq!(s.trim(), s, "not trimmed");
    clean_text(s, MAX_SHORT);
}

/// The reference for node ids: 1..=128 of `[A-Za-z0-9._:-]`, so nothing
/// that changes a topic or a query (`/`, `+`, `#`, `$`, NUL, spaces...).
pub fn node_id_ok(id: &str) -> bool {
    (1..=MAX_NODE_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// An accepted node id.
pub fn node_id(id: &str) {
    assert!(node_id_ok(id), "unsafe node id {id:?}");
    assert!(!id.contains(['/', '+', '#', '$', '\0']), "{id:?}");
}

/// JSON values equal, integers exactly and floats to a few units in the
/// last place: serde_json reads a float back within an ulp or two of what
/// it printed (without its `float_roundtrip` feature), and no message
/// Greenlight sends carries a float.
pub fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x == y || (x - y).abs() <= 1e-14 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}
