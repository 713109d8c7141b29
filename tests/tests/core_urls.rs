//! Every form in which people paste a cloud URL — with or without `/v1`,
//! with a trailing slash — logs in against the simulator, and is saved in
//! one canonical form (a doubled `/v1/v1/login2` answers "No such API").

use std::sync::Arc;
use std::time::Duration;

use greenlight_core::rainmaker::rest::{canonical_base, verify_login};
use greenlight_core::{secret_keys, MemorySecretStore, RestConfig, SecretStore};
use greenlight_sim::rainmaker::{BrokerChoice, RainmakerSim, Scenario, SimConfig, Timing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pasted_form_of_the_cloud_url_logs_in() {
    let sim = RainmakerSim::start(SimConfig {
        broker: BrokerChoice::Embedded("127.0.0.1:0".parse().unwrap()),
        scenario: Scenario::Plain,
        nodes: 0,
        timing: Timing::fast(),
        ready_timeout: Duration::from_secs(30),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let base = sim.info.http.trim_end_matches('/').to_string();
    for form in [
        base.clone(),
        format!("{base}/"),
        format!("{base}/v1"),
        format!("{base}/v1/"),
        format!("  {base}/v1  "),
    ] {
        let canonical = canonical_base(&form).unwrap();
        assert_eq!(canonical, base, "{form:?}");
        let secrets = Arc::new(MemorySecretStore::default());
        secrets
            .set("home", secret_keys::PASSWORD, &sim.info.password)
            .unwrap();
        let cfg = RestConfig {
            base_url: form.clone(),
            user: sim.info.user.clone(),
            ca_file: None,
            pinned_sha256: None,
        };
        verify_login("home", &cfg, secrets)
            .await
            .unwrap_or_else(|e| panic!("{form:?} did not log in: {e}"));
    }
    sim.shutdown().await;
}
