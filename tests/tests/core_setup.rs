//! Adding an account, the one flow both front ends call
//! (`greenlight_core::setup::add_account`), against a real simulator: a
//! wrong password is said at once and leaves nothing behind (no account, no
//! secret), a name in use is refused, bad input is refused before anything
//! is stored, and a good login is saved with its password in the keychain
//! only.

#[path = "core_common/mod.rs"]
mod common;

use std::sync::Arc;

use common::*;
use greenlight_core::secret_keys;
use greenlight_core::setup::{self, ErrorClass, NewAccount, NewBroker, NewCloud};
use greenlight_core::{Engine, MemorySecretStore, SecretStore};
use greenlight_sim::rainmaker::Timing;

fn cloud(sim: &greenlight_sim::rainmaker::RainmakerSim, password: &str) -> NewCloud {
    NewCloud {
        url: sim.info.http.clone(),
        user: sim.info.user.clone(),
        password: password.into(),
        trust_fingerprint: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_an_account_is_all_or_nothing() {
    init_logs();
    let (mosq, sim) = mosq_and_sim(Timing::fast()).await;
    let dir = data_dir("setup-add");
    let secrets = Arc::new(MemorySecretStore::default());
    let e = Engine::open(config(&dir, secrets.clone()))
        .await
        .expect("engine");

    // A wrong password: refused as a login problem, nothing kept.
    let err = setup::add_account(
        &e,
        NewAccount {
            name: "home".into(),
            cloud: Some(cloud(&sim, "wrong-password")),
            broker: None,
        },
    )
    .await
    .expect_err("wrong password");
    assert_eq!(err.class(), ErrorClass::Auth, "{err}");
    assert!(e.accounts().await.unwrap().is_empty());
    assert_eq!(
        secrets.get("home", secret_keys::PASSWORD).unwrap(),
        None,
        "the wrong password is not kept"
    );

    // Bad input is refused before anything is stored or asked.
    for (name, broker_url) in [("a/b", "mqtt://127.0.0.1:1"), ("lan", "http://127.0.0.1:1")] {
        let err = setup::add_account(
            &e,
            NewAccount {
                name: name.into(),
                cloud: None,
                broker: Some(NewBroker {
                    url: broker_url.into(),
                    username: Some("u".into()),
                    password: Some("broker-pw".into()),
                    ..NewBroker::default()
                }),
            },
        )
        .await
        .expect_err("bad input");
        assert_eq!(err.class(), ErrorClass::Usage, "{err}");
        assert_eq!(secrets.get(name, secret_keys::MQTT_PASSWORD).unwrap(), None);
    }

    // The right password: saved, the password in the keychain only.
    let cfg = setup::add_account(
        &e,
        NewAccount {
            name: " home ".into(),
            cloud: Some(cloud(&sim, &sim.info.password)),
            broker: Some(NewBroker {
                url: mosq.url(),
                ..NewBroker::default()
            }),
        },
    )
    .await
    .expect("added");
    assert_eq!(cfg.name, "home");
    assert_eq!(
        secrets
            .get("home", secret_keys::PASSWORD)
            .unwrap()
            .as_deref(),
        Some(sim.info.password.as_str())
    );
    let accounts = e.accounts().await.unwrap();
    assert_eq!(accounts.len(), 1);
    assert!(accounts[0].0.mqtt.is_some(), "both sides kept");
    let db = std::fs::read(dir.join("greenlight.db")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&db).contains(&sim.info.password),
        "never in the database"
    );

    // The same name again: refused, and the first account's secret stays.
    let err = setup::add_account(
        &e,
        NewAccount {
            name: "home".into(),
            cloud: Some(cloud(&sim, "another-password")),
            broker: None,
        },
    )
    .await
    .expect_err("name in use");
    assert_eq!(err.class(), ErrorClass::Usage, "{err}");
    assert!(
        err.to_string().contains("already an account named home"),
        "{err}"
    );
    assert_eq!(
        secrets
            .get("home", secret_keys::PASSWORD)
            .unwrap()
            .as_deref(),
        Some(sim.info.password.as_str())
    );
    e.shutdown().await;
    sim.shutdown().await;
}
