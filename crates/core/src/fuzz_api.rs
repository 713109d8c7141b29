//! The entry points of the coverage-guided fuzz targets in `fuzz/` (`make
//! fuzz`), for the parsers that are private to the crate. Only built with
//! the `fuzzing` feature; not an API. Every public parser (topics, `Info`,
//! configs, REST bodies, JWTs, URLs, fingerprints, the build tag, the
//! Blynk user JSON) is fuzzed through its own public path instead.

use serde_json::Value;

use crate::blynk::Firmware;
use crate::control::{self, OwnerLine};

/// The longest control-socket line either side accepts.
pub const CONTROL_MAX_LINE: usize = control::MAX_LINE;

/// What the owner makes of one control-socket request line: `Ok((id,
/// call))` with the call serialised back to JSON, or `Err((id, error))`
/// with the error answer it sends (as JSON) under `id`.
pub fn control_request(line: &str) -> Result<(u64, Value), (u64, Value)> {
    match control::read_request(line, "fuzz") {
        Ok(env) => {
            let call = serde_json::to_value(&env.call).expect("a call serialises");
            Ok((env.id, call))
        }
        Err((id, err)) => Err((id, serde_json::to_value(&err).expect("an error serialises"))),
    }
}

/// A request line as a client writes it, for the call `call` (JSON as
/// [`control_request`] returns it) under `id`: `None` when `call` is not
/// a call this version knows.
pub fn control_request_line(id: u64, call: &Value) -> Option<String> {
    let line = serde_json::json!({"v": crate::control::PROTOCOL, "id": id, "call": call});
    let env: control::Envelope = serde_json::from_value(line).ok()?;
    serde_json::to_string(&env).ok()
}

/// What a client makes of one line from the owner.
#[derive(Debug)]
pub enum OwnerLineKind {
    /// An event, serialised back to JSON.
    Event(Value),
    /// An answer: its id, and itself serialised back to JSON.
    Answer(u64, Value),
    /// JSON the client skips.
    Ignored,
    /// Not JSON.
    Unreadable,
}

/// Reads one line from the owner as a client does.
pub fn control_owner_line(line: &str) -> OwnerLineKind {
    match control::read_owner_line(line) {
        OwnerLine::Event(e) => {
            OwnerLineKind::Event(serde_json::to_value(&*e).expect("an event serialises"))
        }
        OwnerLine::Answer(a) => OwnerLineKind::Answer(
            a.id,
            serde_json::to_value(&a).expect("an answer serialises"),
        ),
        OwnerLine::Ignored => OwnerLineKind::Ignored,
        OwnerLine::Unreadable => OwnerLineKind::Unreadable,
    }
}

/// The multipart body a Blynk upload sends: `(content type, body)`.
pub fn firmware_multipart(fw: &Firmware) -> (String, Vec<u8>) {
    fw.multipart()
}
