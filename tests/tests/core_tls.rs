//! The one TLS helper every client is built on (`greenlight_core::tls`),
//! against the simulator's HTTPS cloud (a self-signed certificate on
//! loopback): the bundled web roots do not vouch for it, so a plain account
//! is refused; the user's CA file or the fingerprint they accepted lets the
//! same account log in; a wrong pin is refused naming both fingerprints; a
//! CA file without a certificate is a clear error, not silently "the web
//! roots only". The trust probe the account forms use says "unknown" with
//! the certificate's fingerprint.

use std::sync::Arc;
use std::time::Duration;

use greenlight_core::error::NetKind;
use greenlight_core::rainmaker::rest::verify_login;
use greenlight_core::tls::{self, Trust, TrustSpec};
use greenlight_core::{secret_keys, Error, MemorySecretStore, RestConfig, SecretStore};
use greenlight_sim::rainmaker::{BrokerChoice, RainmakerSim, Scenario, SimConfig, Timing};

async fn https_cloud() -> RainmakerSim {
    RainmakerSim::start(SimConfig {
        broker: BrokerChoice::Embedded("127.0.0.1:0".parse().unwrap()),
        https: true,
        scenario: Scenario::Plain,
        nodes: 0,
        timing: Timing::fast(),
        ready_timeout: Duration::from_secs(30),
        ..SimConfig::default()
    })
    .await
    .expect("simulator")
}

fn pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

async fn login(
    sim: &RainmakerSim,
    ca_file: Option<String>,
    pin: Option<String>,
) -> Result<(), Error> {
    let secrets = Arc::new(MemorySecretStore::default());
    secrets
        .set("home", secret_keys::PASSWORD, &sim.info.password)
        .unwrap();
    let cfg = RestConfig {
        base_url: sim.info.http.clone(),
        user: sim.info.user.clone(),
        ca_file,
        pinned_sha256: pin,
    };
    verify_login("home", &cfg, secrets).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_trusts_the_web_roots_plus_the_users_ca_file_or_exactly_the_pinned_certificate(
) {
    let sim = https_cloud().await;
    let der = sim.cert_der.clone().expect("the simulator serves HTTPS");
    let fp = sim.info.fingerprint.clone().expect("its fingerprint");
    let dir = std::env::temp_dir().join(format!("greenlight-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // The web roots alone: refused as an untrusted certificate.
    match login(&sim, None, None).await {
        Err(Error::Network {
            kind: NetKind::Tls, ..
        }) => {}
        other => panic!("a self-signed cloud must be refused as untrusted: {other:?}"),
    }

    // The user's CA file (here the certificate itself, as a private
    // deployment's one-certificate CA): trusted beside the web roots.
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, pem(&der)).unwrap();
    login(&sim, Some(ca.display().to_string()), None)
        .await
        .expect("logs in with the CA file");

    // The fingerprint the user accepted, in the form it is shown.
    login(&sim, None, Some(tls::pretty(&fp)))
        .await
        .expect("logs in with the pin");

    // Another pin: refused, and both fingerprints said.
    let wrong = "ab".repeat(32);
    let e = login(&sim, None, Some(wrong.clone()))
        .await
        .expect_err("a wrong pin is refused");
    let text = format!("{e} {e:?}");
    assert!(
        text.contains(&tls::pretty(&wrong)) && text.contains(&tls::pretty(&fp)),
        "names both fingerprints: {text}"
    );

    // A CA file that holds no certificate is said, not ignored.
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let e = tls::client_config(TrustSpec {
        ca_file: Some(&empty.display().to_string()),
        ..TrustSpec::default()
    })
    .expect_err("an empty CA file");
    assert!(e.to_string().contains("no certificate"), "{e}");

    // What the account forms ask before saving: unknown, with its fingerprint.
    assert_eq!(
        tls::decide_trust(&sim.info.http, None).await.unwrap(),
        Trust::Unknown {
            fingerprint: fp.clone()
        }
    );
    assert_eq!(
        tls::decide_trust(&sim.info.http, Some(&fp)).await.unwrap(),
        Trust::Pinned(fp.clone())
    );

    let _ = std::fs::remove_dir_all(&dir);
    sim.shutdown().await;
}
