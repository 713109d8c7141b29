//! Trusting servers. TLS is verified against the web's roots (or a CA file)
//! by default; a self-signed server (a home RainMaker deployment, a Blynk
//! server) is trusted only through the SHA-256 fingerprint of its certificate
//! that the user saw and accepted — never through a global "insecure" switch.
//! A pinned server that later presents another certificate is refused, with
//! both fingerprints in the message.
//!
//! Every client Greenlight opens (HTTPS to a RainMaker cloud or a Blynk
//! server, MQTT over TLS, the trust probe) gets its rustls configuration
//! from [`client_config`], on the provider from [`provider`]: one place
//! decides what is trusted on every platform. The roots are the bundled web
//! roots (`webpki-root-certs`) plus the user's CA file, never the platform
//! verifier that reqwest would pick by itself: that one needs Android-side
//! initialisation (a JVM context) before the first request, and would trust
//! differently on each OS. The price: a root that exists only in the OS's
//! store (a company's TLS-inspecting proxy) must be given as a CA file.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// SHA-256 of a DER certificate, lowercase hex (64 characters).
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Accepts `AB:CD:...`, `ab cd ...` or plain hex; returns 64 lowercase hex digits.
pub fn normalize_fingerprint(s: &str) -> Result<String> {
    let hex: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(Error::Config(format!(
            "{s:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)"
        )))
    }
}

/// Shows a fingerprint as people compare them: `AB:CD:EF:...`.
pub fn pretty(fp: &str) -> String {
    fp.as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(":")
}

/// The one crypto provider every TLS connection uses (HTTPS through
/// reqwest, MQTT over TLS, pinned certificates): ring, installed as the
/// process default the first time it is asked for, so reqwest (built
/// without a provider of its own) finds it too. One place to switch a
/// platform to another provider. ring rather than aws-lc-rs: ring was in
/// the tree already (rumqttc's webpki), and a second crypto library cost
/// about 2 MB in every binary (issue 14).
pub fn provider() -> Arc<CryptoProvider> {
    if let Some(p) = CryptoProvider::get_default() {
        return p.clone();
    }
    // Another thread may install one between the check and here: either
    // way the default that won is the one to use.
    let _ = rustls::crypto::ring::default_provider().install_default();
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Accepts exactly one end-entity certificate (by fingerprint); the
/// handshake signatures are still checked, so the server must hold its key.
#[derive(Debug)]
struct Pinned {
    pin: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = fingerprint(end_entity.as_ref());
        if got == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate changed: you trusted {}, it now presents {}; if you expected this, accept the new fingerprint",
                pretty(&self.pin),
                pretty(&got)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Whom one account's connections trust, and how they identify themselves.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrustSpec<'a> {
    /// A PEM file of extra CA certificates (a private deployment's own CA),
    /// trusted beside the bundled web roots.
    pub ca_file: Option<&'a str>,
    /// The SHA-256 fingerprint the user accepted: only that certificate is
    /// trusted, whatever the roots say.
    pub pinned_sha256: Option<&'a str>,
    /// PEM client certificate and key files (mutual TLS, MQTT only).
    pub client_auth: Option<(&'a str, &'a str)>,
}

/// The rustls configuration every TLS client of Greenlight's is built on.
pub fn client_config(spec: TrustSpec<'_>) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;
    let bad = |what: &str, e: &dyn std::fmt::Display| Error::Config(format!("{what}: {e}"));
    let provider = provider();
    let b = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS", &e))?;
    let b = match spec.pinned_sha256 {
        Some(pin) => b
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                pin: normalize_fingerprint(pin)?,
                provider,
            })),
        None => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(
                webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned(),
            );
            if let Some(ca) = spec.ca_file {
                let what = format!("CA file {ca}");
                let mut n = 0;
                for c in CertificateDer::pem_file_iter(ca).map_err(|e| bad(&what, &e))? {
                    roots
                        .add(c.map_err(|e| bad(&what, &e))?)
                        .map_err(|e| bad(&what, &e))?;
                    n += 1;
                }
                if n == 0 {
                    // An empty or wrong file would otherwise be silently
                    // the web roots alone.
                    return Err(Error::Config(format!("{what}: no certificate in it")));
                }
            }
            b.with_root_certificates(roots)
        }
    };
    match spec.client_auth {
        Some((cert, key)) => {
            let what = format!("client certificate {cert}");
            let certs = CertificateDer::pem_file_iter(cert)
                .map_err(|e| bad(&what, &e))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad(&what, &e))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| bad(&format!("client key {key}"), &e))?;
            b.with_client_auth_cert(certs, key)
                .map_err(|e| bad("client certificate", &e))
        }
        None => Ok(b.with_no_client_auth()),
    }
}

/// An HTTP client on [`client_config`]: `builder` says the timeouts, the
/// redirect policy and the user agent; this says whom it trusts.
pub fn http_client(
    builder: reqwest::ClientBuilder,
    spec: TrustSpec<'_>,
) -> Result<reqwest::Client> {
    builder
        .use_preconfigured_tls(client_config(spec)?)
        .build()
        .map_err(|e| Error::Config(format!("HTTP client: {e}")))
}

/// A rustls client configuration that trusts only the certificate with this fingerprint.
pub fn pinned_client_config(pin: &str) -> Result<rustls::ClientConfig> {
    client_config(TrustSpec {
        pinned_sha256: Some(pin),
        ..TrustSpec::default()
    })
}

/// Records the certificate a server presents and accepts nothing: used only
/// to show the user a fingerprint, never to send a request.
#[derive(Debug)]
struct Recorder {
    seen: std::sync::Mutex<Option<Vec<u8>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(end_entity.as_ref().to_vec());
        }
        // Refuse: the connection is closed right after the certificate is seen.
        Err(rustls::Error::General("fingerprint probe".into()))
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The SHA-256 fingerprint of the certificate an `https://` server presents,
/// for the user to compare and accept.
pub async fn probe_fingerprint(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| Error::Config(format!("{url}: only https:// servers have a certificate")))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse::<u16>()
                .map_err(|_| Error::Config(format!("bad port in {url}")))?,
        ),
        _ => (authority.to_string(), 443),
    };
    let provider = provider();
    let rec = Arc::new(Recorder {
        seen: std::sync::Mutex::new(None),
        provider: provider.clone(),
    });
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(rec.clone())
        .with_no_client_auth();
    let name =
        ServerName::try_from(host.clone()).map_err(|e| Error::Config(format!("{host}: {e}")))?;
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| {
        Error::network(
            crate::error::NetKind::ConnectTimeout,
            format!("{host}:{port} did not answer within 10 s"),
        )
    })?
    .map_err(|e| {
        Error::network(
            crate::error::NetKind::of_io(&e),
            format!("{host}:{port}: {e}"),
        )
    })?;
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp),
    )
    .await;
    let der = rec
        .seen
        .lock()
        .ok()
        .and_then(|s| s.clone())
        .ok_or_else(|| {
            Error::network(
                crate::error::NetKind::Tls,
                format!("{host}:{port} presented no certificate"),
            )
        })?;
    Ok(fingerprint(&der))
}

/// What to do about an `https://` server's certificate before an account is
/// added: the views ask the user only in the [`Trust::Unknown`] case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Plain `http://`, or a certificate the bundled web roots already
    /// trust and no pin was given: nothing to pin.
    System,
    /// The user's pin matches what the server presents: pin it.
    Pinned(String),
    /// The web roots do not vouch for the certificate and no pin was given: show
    /// this fingerprint and ask.
    Unknown {
        /// SHA-256 of the certificate, lowercase hex.
        fingerprint: String,
    },
}

/// Decides how an account's server is to be trusted. A `given` pin that does
/// not match what the server presents is an error naming both fingerprints.
pub async fn decide_trust(url: &str, given: Option<&str>) -> Result<Trust> {
    if !url.starts_with("https://") {
        return Ok(Trust::System);
    }
    let given = given.map(normalize_fingerprint).transpose()?;
    if given.is_none() {
        let probe = http_client(
            reqwest::Client::builder().timeout(Duration::from_secs(15)),
            TrustSpec::default(),
        )?;
        // Any HTTP answer means the TLS handshake passed verification.
        if probe
            .get(format!("{}/apiversions", url.trim_end_matches('/')))
            .send()
            .await
            .is_ok()
        {
            return Ok(Trust::System);
        }
    }
    let seen = probe_fingerprint(url).await?;
    match given {
        Some(g) if g != seen => Err(Error::Config(format!(
            "{url} presents a certificate with fingerprint {}, not the {} you gave",
            pretty(&seen),
            pretty(&g)
        ))),
        Some(_) => Ok(Trust::Pinned(seen)),
        None => Ok(Trust::Unknown { fingerprint: seen }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_normalize() {
        let fp = "ab".repeat(32);
        assert_eq!(normalize_fingerprint(&fp).unwrap(), fp);
        assert_eq!(normalize_fingerprint(&pretty(&fp)).unwrap(), fp);
        assert!(normalize_fingerprint("abc").is_err());
        assert!(normalize_fingerprint(&"zz".repeat(32)).is_err());
        assert_eq!(pretty("0a1b"), "0A:1B");
        assert_eq!(fingerprint(b"x").len(), 64);
    }
}
