//! The build tag in a Blynk firmware image, read as the Blynk server reads
//! it (`blynk::build_tag`, the first `\0build\0` up to the next NUL), the
//! validation of an image (`blynk::Firmware::from_bytes`) and the multipart
//! upload built from it.
//!
//! Properties: our scanner agrees with a naive reference and with the
//! simulated server's scanner; an image is accepted exactly when it is not
//! empty and has a tag; its upload carries exactly its bytes, between a
//! boundary that does not occur in them, and is as long as announced.
#![no_main]

use greenlight_core::blynk::firmware::{build_tag, Firmware, BUILD_MARKER};
use greenlight_core::fuzz_api::firmware_multipart;
use libfuzzer_sys::fuzz_target;

/// A naive scan for the first marker, value up to the next NUL.
fn reference(bytes: &[u8]) -> Option<String> {
    let m = BUILD_MARKER;
    let mut i = 0;
    while i + m.len() <= bytes.len() {
        if &bytes[i..i + m.len()] == m {
            let mut end = i + m.len();
            while end < bytes.len() && bytes[end] != 0 {
                end += 1;
            }
            let v = String::from_utf8(bytes[i + m.len()..end].to_vec()).ok()?;
            return (!v.is_empty()).then_some(v);
        }
        i += 1;
    }
    None
}

fuzz_target!(|data: &[u8]| {
    let ours = build_tag(data);
    assert_eq!(ours, reference(data));
    assert_eq!(ours, greenlight_sim::blynk::build_tag(data));
    if let Some(t) = &ours {
        assert!(!t.is_empty() && !t.contains('\0'));
    }
    match Firmware::from_bytes("fuzz.ino.bin", data.to_vec()) {
        Ok(fw) => {
            assert_eq!(Some(fw.build()), ours.as_deref());
            assert_eq!(fw.bytes(), data);
            assert_eq!(fw.sha256().len(), 64);
            let (ct, body) = firmware_multipart(&fw);
            let boundary = ct
                .strip_prefix("multipart/form-data; boundary=")
                .expect("a multipart content type");
            assert!(!data
                .windows(boundary.len())
                .any(|w| w == boundary.as_bytes()));
            assert_eq!(body.len() as u64, fw.upload_size());
            let head_end = body
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("a part head")
                + 4;
            let tail = format!("\r\n--{boundary}--\r\n");
            assert!(body.ends_with(tail.as_bytes()));
            assert_eq!(&body[head_end..body.len() - tail.len()], data);
        }
        Err(_) => assert!(data.is_empty() || ours.is_none()),
    }
});
