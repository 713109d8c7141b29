//! JWT-shaped tokens, as the RainMaker cloud issues them.
//!
//! Clients decode `exp` from the payload locally to know when to refresh, so
//! the tokens must be real `header.payload.signature` strings with base64url
//! parts. The signature is an HMAC-like SHA-256 over a per-process secret: the
//! simulator never has to verify a token it did not issue, it only looks them
//! up, but a client that checks the shape sees a real JWT.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Which of the three Cognito-style tokens this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    /// Sent raw in `Authorization` on every authenticated call.
    Access,
    /// Identity token (returned by `login2`, not used by the API itself).
    Id,
    /// Exchanged for new access/id tokens through `login2`.
    Refresh,
}

impl TokenUse {
    fn as_str(self) -> &'static str {
        match self {
            TokenUse::Access => "access",
            TokenUse::Id => "id",
            TokenUse::Refresh => "refresh",
        }
    }
}

/// Mints a token for `email`/`user_id` that expires at `exp` (epoch seconds).
pub fn mint(
    secret: &[u8],
    use_: TokenUse,
    email: &str,
    user_id: &str,
    iat: u64,
    exp: u64,
    nonce: u64,
) -> String {
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": "greenlight-sim"});
    let payload = json!({
        "sub": user_id,
        "email": email,
        "custom:user_id": user_id,
        "token_use": use_.as_str(),
        "iss": "greenlight-sim",
        "iat": iat,
        "exp": exp,
        "jti": format!("{nonce:016x}"),
    });
    let h = URL_SAFE_NO_PAD.encode(header.to_string());
    let p = URL_SAFE_NO_PAD.encode(payload.to_string());
    let mut hasher = Sha256::new();
    hasher.update(secret);
    hasher.update(h.as_bytes());
    hasher.update(b".");
    hasher.update(p.as_bytes());
    let s = URL_SAFE_NO_PAD.encode(hasher.finalize());
    format!("{h}.{p}.{s}")
}

/// Decodes the payload of a JWT-shaped token without checking the signature.
pub fn decode_payload(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (_h, p, _s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_token_is_three_base64url_parts_with_claims() {
        let t = mint(b"k", TokenUse::Access, "a@b.c", "u1", 10, 3610, 7);
        assert_eq!(t.split('.').count(), 3);
        assert!(!t.contains('+') && !t.contains('/') && !t.contains('='));
        let p = decode_payload(&t).expect("payload");
        assert_eq!(p["exp"], 3610);
        assert_eq!(p["email"], "a@b.c");
        assert_eq!(p["custom:user_id"], "u1");
    }

    #[test]
    fn garbage_is_not_a_token() {
        assert!(decode_payload("abc").is_none());
        assert!(decode_payload("a.b.c.d").is_none());
        assert!(decode_payload("a.!!!.c").is_none());
    }
}
