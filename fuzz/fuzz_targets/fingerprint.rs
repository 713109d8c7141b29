//! Certificate fingerprints as people paste them (`AB:CD:...`, `ab cd`,
//! plain hex) and as saved settings hold them: `tls::normalize_fingerprint`
//! and `tls::pretty`.
//!
//! Properties: a normalised fingerprint is 64 lowercase hex digits;
//! normalising it again, its upper-case form, or the `AB:CD:...` form shown
//! to people gives it back.
#![no_main]

use greenlight_core::tls::{normalize_fingerprint, pretty};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let _ = pretty(&s);
    let Ok(fp) = normalize_fingerprint(&s) else {
        return;
    };
    assert_eq!(fp.len(), 64);
    assert!(
        fp.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{fp:?}"
    );
    assert_eq!(normalize_fingerprint(&fp).ok().as_ref(), Some(&fp));
    assert_eq!(
        normalize_fingerprint(&fp.to_uppercase()).ok().as_ref(),
        Some(&fp)
    );
    let shown = pretty(&fp);
    assert_eq!(shown.len(), 64 + 31);
    assert_eq!(normalize_fingerprint(&shown).ok().as_ref(), Some(&fp));
});
