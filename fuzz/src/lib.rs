//! What the fuzz targets share: structured generators (`arbitrary`) for the
//! JSON the parsers read, with the real field names and values mixed in,
//! and the properties every parser's output must have.
//!
//! Most targets take two kinds of input. Bytes that start like a JSON text
//! (`{`, `[` or `"`, after blanks) are read as JSON, exactly as a parser's
//! caller reads them: the seed corpus (`fuzz/corpus/<target>/`) is such
//! JSON, and libFuzzer mutates it byte by byte with the dictionary in
//! `fuzz/dict/`. Any other bytes drive a generator ([`arbitrary`]) that
//! builds the message's shape (`shapes`) with plausible and hostile values,
//! so coverage grows past the JSON syntax, where random bytes never get.

pub mod check;
pub mod shapes;

use arbitrary::{Arbitrary, Result, Unstructured};
use serde_json::{Map, Number, Value};

/// The field names the parsers read (verbatim from the core's parsers,
/// `docs/rainmaker.md` and `docs/blynk.md`), and a few they do not.
pub const KEYS: &[&str] = &[
    // RainMaker: Info, otastatus, otaurl, otafetch, ota_update, ota_status, errors
    "job_id",
    "fw_version",
    "status",
    "ota_job_id",
    "node_id",
    "additional_info",
    "ts",
    "timestamp",
    "ts_source",
    "url",
    "file_size",
    "file_md5",
    "metadata",
    "download_window",
    "validity",
    "start",
    "end",
    "ota_available",
    "description",
    "error_code",
    // node config, params, sweep pages
    "info",
    "name",
    "model",
    "type",
    "project_name",
    "platform",
    "services",
    "devices",
    "params",
    "data_type",
    "properties",
    "config",
    "config_version",
    "OTA",
    "Info",
    "Operation",
    "Status",
    "URL",
    "Connectivity",
    "Connected",
    "node_details",
    "next_id",
    "nodes",
    "total",
    "id",
    "connectivity",
    "connected",
    // JWT claims
    "exp",
    "iat",
    "sub",
    // Blynk user JSON
    "email",
    "appName",
    "profile",
    "dashBoards",
    "token",
    "hardwareInfo",
    "deviceOtaInfo",
    "otaUpdateAt",
    "otaInitiatedBy",
    "otaInitiatedAt",
    "build",
    "boardType",
    "version",
    "templateId",
    "connectTime",
    "disconnectTime",
    "dataReceivedAt",
    // control socket
    "v",
    "call",
    "method",
    "kind",
    "ok",
    "err",
    "event",
    "message",
];

/// Values the parsers compare with, and texts real firmware sends, besides
/// the statuses and texts in [`shapes::STATUSES`] and [`shapes::TEXTS`].
pub const STRS: &[&str] = &[
    "",
    "{}",
    " { } ",
    "esp.service.ota",
    "esp.param.ota_info",
    "esp.param.ota_operation",
    "esp.param.ota_status",
    "esp.param.ota_url",
    "string",
    "object",
    "Not within valid window.",
    "ONLINE",
    "OFFLINE",
    "7CDFA1000000",
    "J1",
    "2.0.0",
    "1.0",
    "100070",
    "Aug  4 2017 20:31:49",
    "a@b.c",
];

/// One of the known values: [`STRS`], a status or a firmware text.
fn known_str(u: &mut Unstructured<'_>) -> Result<&'static str> {
    Ok(match u.choose_index(3)? {
        0 => u.choose(STRS)?,
        1 => u.choose(&shapes::STATUSES)?,
        _ => u.choose(&shapes::TEXTS)?,
    })
}

/// Deepest nesting the generators build.
pub const MAX_DEPTH: u32 = 6;

/// A string a parser reads: a known value, anything, a known value with
/// control characters and wildcards around it, digits, or JSON text.
pub fn string(u: &mut Unstructured<'_>, depth: u32) -> Result<String> {
    // No JSON text inside JSON text beyond MAX_DEPTH: the nesting stays bounded.
    let kinds = if depth >= MAX_DEPTH { 7 } else { 8 };
    Ok(match u.choose_index(kinds)? {
        0..=2 => known_str(u)?.to_string(),
        3 => String::arbitrary(u)?,
        4 => {
            let hostile = [
                "\0", "\n", "\u{7f}", "\u{1b}", "\u{85}", "+", "#", "/", "$", " ", "%", "\u{feff}",
                "🔥",
            ];
            let mut s = String::new();
            for _ in 0..u.int_in_range(1..=4)? {
                if bool::arbitrary(u)? {
                    s.push_str(u.choose(&hostile)?);
                } else {
                    s.push_str(known_str(u)?);
                }
            }
            s
        }
        5 => i64::arbitrary(u)?.to_string(),
        6 => {
            // Long: bounds are checked on length.
            let c = char::arbitrary(u)?;
            std::iter::repeat_n(c, u.int_in_range(100..=3000)?).collect()
        }
        // A string holding JSON (the `Info` param's string form).
        _ => value(u, depth + 1)?.to_string(),
    })
}

/// An object key: mostly a known one.
pub fn key(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(if u.ratio(3, 4)? {
        (*u.choose(KEYS)?).to_string()
    } else {
        String::arbitrary(u)?
    })
}

/// Any JSON value, at most [`MAX_DEPTH`] deep, with known keys and strings.
pub fn value(u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    let kinds = if depth >= MAX_DEPTH { 6 } else { 8 };
    Ok(match u.choose_index(kinds)? {
        0 => Value::Null,
        1 => Value::Bool(bool::arbitrary(u)?),
        2 => Value::from(i64::arbitrary(u)?),
        3 => Value::from(u64::arbitrary(u)?),
        4 => Number::from_f64(f64::arbitrary(u)?).map_or(Value::Null, Value::Number),
        5 => Value::String(string(u, depth)?),
        6 => {
            let n = u.int_in_range(0..=4)?;
            let mut a = Vec::with_capacity(n);
            for _ in 0..n {
                a.push(value(u, depth + 1)?);
            }
            Value::Array(a)
        }
        _ => {
            let mut m = Map::new();
            for _ in 0..u.int_in_range(0..=4)? {
                m.insert(key(u)?, value(u, depth + 1)?);
            }
            Value::Object(m)
        }
    })
}

/// Any JSON value (see [`value`]).
#[derive(Debug, Clone)]
pub struct Json(pub Value);

impl<'a> Arbitrary<'a> for Json {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Json(value(u, 1)?))
    }
}

/// A string as [`string`] makes it.
#[derive(Debug, Clone)]
pub struct Str(pub String);

impl<'a> Arbitrary<'a> for Str {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Str(string(u, 1)?))
    }
}

/// A key as [`key`] makes it.
#[derive(Debug, Clone)]
pub struct Key(pub String);

impl<'a> Arbitrary<'a> for Key {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Key(key(u)?))
    }
}

/// One field a parser reads: absent, a string (usually what it expects),
/// or any JSON at all (a wrong type, a nested object...).
#[derive(Debug, Clone, Arbitrary)]
pub enum F {
    /// Not in the object.
    Absent,
    /// A string.
    Str(Str),
    /// Anything.
    Any(Json),
}

impl F {
    /// The value, `None` when absent.
    pub fn get(&self) -> Option<Value> {
        match self {
            F::Absent => None,
            F::Str(s) => Some(Value::String(s.0.clone())),
            F::Any(j) => Some(j.0.clone()),
        }
    }
}

/// A field that is usually a `T` (a number, a flag, a plausible id...),
/// else any field at all.
#[derive(Debug, Clone, Arbitrary)]
pub enum Typed<T> {
    /// A value of the expected type.
    Value(T),
    /// Anything, or absent.
    Other(F),
}

impl<T: Clone + Into<Value>> Typed<T> {
    /// The value, `None` when absent.
    pub fn get(&self) -> Option<Value> {
        match self {
            Typed::Value(v) => Some(v.clone().into()),
            Typed::Other(f) => f.get(),
        }
    }
}

/// The generated shape, unless the input chose any JSON in its place (a
/// list that is not a list, an object that is a number...).
pub fn or_any(other: &Option<Json>, shape: impl FnOnce() -> Value) -> Value {
    match other {
        Some(j) => j.0.clone(),
        None => shape(),
    }
}

/// An object made of named fields (absent ones left out) and extra keys.
pub fn obj(fields: &[(&str, Option<Value>)], extra: &[(Key, Json)]) -> Value {
    let mut m = Map::new();
    for (k, v) in extra {
        m.insert(k.0.clone(), v.0.clone());
    }
    for (k, v) in fields {
        if let Some(v) = v {
            m.insert((*k).to_string(), v.clone());
        }
    }
    Value::Object(m)
}

/// The bytes as a JSON text when they look like one (see the module docs).
pub fn json_text(data: &[u8]) -> Option<&[u8]> {
    let first = data.iter().find(|b| !b.is_ascii_whitespace())?;
    matches!(first, b'{' | b'[' | b'"').then_some(data)
}

/// What a target's input is (see the module docs).
#[derive(Debug)]
pub enum Input<T> {
    /// JSON text, parsed.
    Json(Value),
    /// Generated from the bytes.
    Generated(T),
}

/// The input: parsed when it looks like JSON text, else generated as a
/// `T`; `None` when it is neither valid JSON nor enough bytes for a `T`.
pub fn input<'a, T: Arbitrary<'a>>(data: &'a [u8]) -> Option<Input<T>> {
    match json_text(data) {
        Some(text) => serde_json::from_slice(text).ok().map(Input::Json),
        None => T::arbitrary_take_rest(Unstructured::new(data))
            .ok()
            .map(Input::Generated),
    }
}

/// The input as a JSON value (see [`input`]), a generated `T` turned into
/// JSON by `to_json`.
pub fn json_or<'a, T: Arbitrary<'a>>(
    data: &'a [u8],
    to_json: impl FnOnce(T) -> Value,
) -> Option<Value> {
    Some(match input(data)? {
        Input::Json(v) => v,
        Input::Generated(t) => to_json(t),
    })
}
