//! JWTs: the access token's `iat`/`exp` claims, read without checking the
//! signature (`parse::jwt_times`), to refresh ahead of expiry.
//!
//! Input: a token when the bytes contain a `.`, else generated claims
//! (`exp`, `iat` of any JSON type, junk claims) encoded as a token.
//!
//! Properties: no panic; a token with integer claims gives them back; a
//! result always comes from a three-part token whose payload decodes to a
//! JSON object with that `exp`.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use greenlight_core::rainmaker::parse::jwt_times;
use greenlight_fuzz::{obj, Json, Key, F};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

#[derive(Debug, Arbitrary)]
enum Claim {
    Int(u64),
    Signed(i64),
    Other(F),
}

impl Claim {
    fn get(&self) -> Option<Value> {
        match self {
            Claim::Int(n) => Some(json!(n)),
            Claim::Signed(n) => Some(json!(n)),
            Claim::Other(f) => f.get(),
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Claims {
    exp: Claim,
    iat: Option<Claim>,
    extra: Vec<(Key, Json)>,
    padding: bool,
}

fuzz_target!(|data: &[u8]| {
    let token = if data.contains(&b'.') {
        String::from_utf8_lossy(data).into_owned()
    } else {
        let Ok(c) = Claims::arbitrary_take_rest(Unstructured::new(data)) else {
            return;
        };
        let claims = obj(
            &[
                ("exp", c.exp.get()),
                ("iat", c.iat.as_ref().and_then(Claim::get)),
            ],
            &c.extra,
        );
        let mut p = URL_SAFE_NO_PAD.encode(claims.to_string());
        if c.padding {
            p.push_str("==");
        }
        let t = format!("eyJhbGciOiJIUzI1NiJ9.{p}.c2ln");
        let want_exp = claims.get("exp").and_then(Value::as_u64);
        let want_iat = claims.get("iat").and_then(Value::as_u64);
        let got = jwt_times(&t);
        match want_exp {
            Some(exp) => assert_eq!(got, Some((want_iat, exp)), "{claims}"),
            None => assert_eq!(got, None, "{claims}"),
        }
        t
    };
    if let Some((_iat, exp)) = jwt_times(&token) {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let payload = URL_SAFE_NO_PAD
            .decode(parts[1].trim_end_matches('='))
            .expect("the payload decoded once");
        let v: Value = serde_json::from_slice(&payload).expect("the payload is JSON");
        assert_eq!(v.get("exp").and_then(Value::as_u64), Some(exp));
    }
});
