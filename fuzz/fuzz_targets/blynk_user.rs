//! The user JSON of a Blynk server's admin API
//! (`profile.dashBoards[].devices[]` with `hardwareInfo` and
//! `deviceOtaInfo`), read by `blynk::users::devices_of`, with and without a
//! token to find.
//!
//! Properties: names, owners and projects bounded and clean; a build is
//! at most 256 bytes without control characters; no device token is kept
//! (only a hint of at most four characters); the device found has exactly
//! the token asked for, and is one of the devices listed.
#![no_main]

use arbitrary::Arbitrary;
use greenlight_core::blynk::users::{devices_of, token_hint};
use greenlight_fuzz::shapes::{token, UserShape};
use greenlight_fuzz::{check, input, Input};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[derive(Debug, Arbitrary)]
struct Generated {
    user: UserShape,
    /// Look for the token of this device (index), or for this one.
    find: Option<u8>,
    other: Option<[u8; 8]>,
}

fn tokens(u: &Value) -> Vec<String> {
    let dashes = u
        .pointer("/profile/dashBoards")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    dashes
        .iter()
        .filter_map(|d| d.get("devices")?.as_array().cloned())
        .flatten()
        .filter_map(|d| d.get("token")?.as_str().map(str::to_string))
        .collect()
}

/// The JSON without its `token` fields.
fn without_tokens(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "token")
                .map(|(k, v)| (k.clone(), without_tokens(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_tokens).collect()),
        other => other.clone(),
    }
}

fuzz_target!(|data: &[u8]| {
    let (user, find) = match input::<Generated>(data) {
        None => return,
        Some(Input::Json(v)) => {
            let first = tokens(&v).into_iter().next();
            (v, first)
        }
        Some(Input::Generated(i)) => {
            let v = i.user.to_json();
            let all = tokens(&v);
            let find = match (i.find, i.other) {
                (Some(n), _) if !all.is_empty() => Some(all[n as usize % all.len()].clone()),
                (_, Some(t)) => Some(token(&t)),
                _ => None,
            };
            (v, find)
        }
    };
    let (devs, found) = devices_of(&user, find.as_deref());
    for d in &devs {
        check::clean_text(&d.name, 128);
        check::clean_text(&d.owner, 128);
        check::clean_text(&d.project, 128);
        assert!(d.token_hint.chars().count() <= 5, "{:?}", d.token_hint);
        if let Some(b) = &d.build {
            assert!(!b.is_empty() && b.len() <= 256 && !b.chars().any(char::is_control));
        }
        for s in [&d.board, &d.library].into_iter().flatten() {
            check::clean_text(s, 128);
        }
        assert!(d.ota_update_at.is_none_or(|t| t > 0));
    }
    // A token of 16+ letters and digits that the JSON holds nowhere but in
    // `token` fields must not be in what is kept.
    let shown = format!("{devs:?}");
    let elsewhere = without_tokens(&user).to_string();
    for t in tokens(&user) {
        if t.len() >= 16 && t.bytes().all(|b| b.is_ascii_alphanumeric()) && !elsewhere.contains(&t)
        {
            assert!(!shown.contains(&t), "token {t:?} kept");
        }
    }
    match (&find, &found) {
        (Some(t), Some(key)) => {
            assert!(!t.is_empty());
            assert!(devs.iter().any(|d| &d.key == key), "{key:?} not listed");
            assert!(tokens(&user).contains(t));
        }
        (None, Some(_)) => panic!("found a device without a token to look for"),
        _ => {}
    }
    if let Some(t) = &find {
        assert!(token_hint(t).chars().count() <= 5);
    }
});
