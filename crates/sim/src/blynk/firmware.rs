//! Firmware images as the Blynk server sees them: opaque bytes in which the
//! library's info string (`ver`, `h-beat`, `buff-in`, `dev`, `build`, ...) sits
//! in flash, which is where the server finds a campaign's build.

/// Build used by the simulated fleet until it is updated
/// (`__DATE__ " " __TIME__`, day space-padded, as the compiler writes it).
pub const DEFAULT_BUILD: &str = "Aug 14 2017 20:31:49";

/// The info string the library embeds and sends after login, for `build`
/// (without the leading NUL the flash copy has).
pub fn info_string(build: &str, heartbeat_secs: u32) -> String {
    format!("ver\x000.6.1\x00h-beat\x00{heartbeat_secs}\x00buff-in\x001024\x00dev\x00ESP8266\x00build\x00{build}\x00")
}

/// A firmware image of `size` bytes (at least as long as the info string)
/// carrying `build` the way a real sketch binary does: filler bytes, the info
/// string `\0ver\00.6.1\0h-beat\010\0buff-in\01024\0dev\0ESP8266\0build\0<build>\0`,
/// more filler.
pub fn make_firmware(build: &str, size: usize) -> Vec<u8> {
    let mut info = vec![0u8];
    info.extend_from_slice(info_string(build, 10).as_bytes());
    let size = size.max(info.len());
    // Deterministic filler with no NULs, so nothing in it looks like a tag.
    let mut out: Vec<u8> = (0..size)
        .map(|i| 0x20 + ((i * 31 + 7) % 90) as u8)
        .collect();
    // The info string sits a little way in, as in a real image's rodata.
    let at = (size - info.len()) / 3;
    out[at..at + info.len()].copy_from_slice(&info);
    out
}

/// The build tag of a firmware image, as the server reads it: the value after
/// the first `\0build\0`, up to the next NUL. `None` without a tag, or with an
/// empty or non-UTF-8 value.
pub fn build_tag(bytes: &[u8]) -> Option<String> {
    const TAG: &[u8] = b"\0build\0";
    let at = bytes.windows(TAG.len()).position(|w| w == TAG)? + TAG.len();
    let rest = &bytes[at..];
    let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    let value = std::str::from_utf8(&rest[..end]).ok()?;
    (!value.is_empty()).then(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_round_trips() {
        let fw = make_firmware("Sep  1 2017 10:00:00", 4096);
        assert_eq!(fw.len(), 4096);
        assert_eq!(build_tag(&fw).as_deref(), Some("Sep  1 2017 10:00:00"));
    }

    #[test]
    fn first_occurrence_wins_and_missing_is_none() {
        let mut v = b"xx\0build\0one\0yy\0build\0two\0".to_vec();
        assert_eq!(build_tag(&v).as_deref(), Some("one"));
        v.truncate(2);
        assert_eq!(build_tag(&v), None);
        assert_eq!(build_tag(b"\0build\0\0"), None);
        assert_eq!(build_tag(b"a\0build\0tail").as_deref(), Some("tail"));
    }

    #[test]
    fn tiny_size_still_holds_the_tag() {
        let fw = make_firmware("b", 1);
        assert_eq!(build_tag(&fw).as_deref(), Some("b"));
    }
}
