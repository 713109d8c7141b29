//! URLs people paste and that come back from saved settings: broker URLs
//! (`mqtt::parse_url`, which the watcher connects with, and
//! `setup::check_broker_url`, which an account is checked with) and cloud
//! base URLs (`rest::canonical_base`).
//!
//! Properties: a broker host is never empty, has no brackets left and no
//! path or credentials in it; TLS exactly for `mqtts://`/`ssl://`; a broker
//! URL setup accepts is one the watcher reads as the same host, port and
//! TLS, and checking it again changes nothing; a canonical cloud base is
//! `http(s)://host[:port][/path]` without a trailing `/` or `/v1`, and
//! canonical again is itself.
#![no_main]

use greenlight_core::rainmaker::mqtt::parse_url;
use greenlight_core::rainmaker::rest::canonical_base;
use greenlight_core::setup::check_broker_url;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((host, _port, tls)) = parse_url(s) {
        assert!(!host.is_empty());
        assert!(!host.starts_with('[') && !host.ends_with(']'), "{host:?}");
        assert!(
            !host.contains(['/', '@', '?', '#', ' ']),
            "{host:?} from {s:?}"
        );
        let scheme = s.trim_start_matches(|c| c <= ' ').to_ascii_lowercase();
        if scheme.starts_with("mqtts://") || scheme.starts_with("ssl://") {
            assert!(tls, "{s:?}");
        } else if scheme.starts_with("mqtt://") || scheme.starts_with("tcp://") {
            assert!(!tls, "{s:?}");
        }
    }
    if let Ok(u) = check_broker_url(s) {
        assert_eq!(u, s.trim());
        assert_eq!(check_broker_url(&u).ok().as_deref(), Some(u.as_str()));
        // What setup accepts, the watcher connects to: the same host and port.
        let parsed = url::Url::parse(&u).expect("setup parsed it");
        let host = parsed.host_str().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let tls = parsed.scheme() == "mqtts";
        let port = parsed.port().unwrap_or(if tls { 8883 } else { 1883 });
        match parse_url(&u) {
            Ok(got) => assert_eq!(got, (host.to_string(), port, tls), "{u:?}"),
            Err(e) => panic!("setup accepts {u:?}, the watcher refuses it: {e}"),
        }
    }
    if let Ok(c) = canonical_base(s) {
        assert!(
            c.starts_with("https://") || c.starts_with("http://"),
            "{c:?}"
        );
        assert!(!c.ends_with('/'), "{c:?} from {s:?}");
        let path = url::Url::parse(&c)
            .expect("a canonical base is a URL")
            .path()
            .to_ascii_lowercase();
        assert!(!path.ends_with("/v1"), "{c:?} from {s:?}");
        match canonical_base(&c) {
            Ok(again) => assert_eq!(again, c, "not canonical: {s:?}"),
            Err(e) => panic!("the canonical form {c:?} of {s:?} is refused: {e}"),
        }
    }
});
